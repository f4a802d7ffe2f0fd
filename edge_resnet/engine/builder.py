"""Execute a :class:`~edge_resnet.devices.plan.BuildPlan` with the TensorRT Python API.

Direct TensorRT calls, not Polygraphy loaders: the plan already decides every flag, the calls
are few (parse → config → profile → build → inspect), and each one is type-checked against
``tensorrt-stubs``; Polygraphy would add a dependency that JetPack does not ship for the same
calls (``docs/jetson.md`` says more). Per build, beside the engine: ``<engine>.build.log``
(every TensorRT message), ``<engine>.layers.json`` (the engine inspector's per-layer JSON) and
the timing cache of the plan (loaded before, saved after). A heartbeat line goes to stderr at
least every 10 s, because a Jetson build takes minutes.
Device side: Python 3.8; TensorRT imported on call.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from edge_resnet.core import InputError, ModelError
from edge_resnet.devices.plan import BuildPlan
from edge_resnet.engine import trt_api
from edge_resnet.engine.artifacts import engine_artifact, model_metadata
from edge_resnet.engine.cache import CacheEntry, cache_key, engine_path, get_or_build
from edge_resnet.io_utils import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ["Heartbeat", "build_cached", "build_engine", "summarize_layers"]

HEARTBEAT_SECONDS = 10.0


class Heartbeat:
    """Prints ``building NAME: PHASE (N s)`` on stderr at each phase change and every
    ``interval`` seconds in between, from its own thread (TensorRT builds block the caller)."""

    def __init__(self, name: str, interval: float = HEARTBEAT_SECONDS, stream: Any = None) -> None:
        self.name, self.interval = name, interval
        self.stream = stream if stream is not None else sys.stderr
        self.phase = "starting"
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="build-heartbeat", daemon=True)

    def _say(self) -> None:
        elapsed = time.monotonic() - self._start
        print(f"building {self.name}: {self.phase} ({elapsed:.0f} s)", file=self.stream,
              flush=True)

    def set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            self._say()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._say()

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        self._say()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _parse(network: "trt.INetworkDefinition", logger: "trt.ILogger", plan: BuildPlan) -> None:
    import tensorrt as trt

    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(plan.input_model):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ModelError(f"TensorRT's ONNX parser rejected {plan.input_model}: "
                         + " | ".join(errors[:3]))


def _dla_fallback(config: "trt.IBuilderConfig",
                  network: "trt.INetworkDefinition") -> List[Tuple[str, str]]:
    """(layer name, layer type) of every layer the DLA cannot run (they fall back to the GPU)."""
    return [(network.get_layer(i).name, str(network.get_layer(i).type).rsplit(".", 1)[-1])
            for i in range(network.num_layers)
            if not config.can_run_on_DLA(network.get_layer(i))]


def _configure_dla(builder: "trt.Builder", config: "trt.IBuilderConfig",
                   network: "trt.INetworkDefinition", plan: BuildPlan) -> List[Tuple[str, str]]:
    import tensorrt as trt

    if plan.dla_core is None:
        return []
    if builder.num_DLA_cores <= plan.dla_core:
        raise InputError(f"TensorRT sees {builder.num_DLA_cores} DLA core(s) here; "
                         f"dla_core={plan.dla_core} is not one of them")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = plan.dla_core
    fallback = _dla_fallback(config, network)
    limit = plan.max_gpu_fallback
    if limit is not None and len(fallback) > limit:
        listed = ", ".join(f"{name} ({kind})" for name, kind in fallback[:8])
        raise ModelError(f"{len(fallback)} layers cannot run on the DLA (limit "
                         f"max_gpu_fallback={limit}): {listed}; their layer types are not "
                         "DLA-supported (a stock ResNet50 head: GlobalAveragePool/Flatten)")
    return fallback


def _add_profile(builder: "trt.Builder", config: "trt.IBuilderConfig",
                 network: "trt.INetworkDefinition",
                 plan: BuildPlan) -> "Optional[trt.IOptimizationProfile]":
    import tensorrt as trt

    tensor = network.get_input(0)
    dims = [tensor.shape[i] for i in range(len(tensor.shape))]
    if dims[0] != -1:
        return None  # a fixed-batch model needs no optimization profile
    profile = builder.create_optimization_profile()
    b = plan.batch
    profile.set_shape(tensor.name, trt.Dims([b.min] + dims[1:]), trt.Dims([b.opt] + dims[1:]),
                      trt.Dims([b.max] + dims[1:]))
    config.add_optimization_profile(profile)
    return profile


def _calibrator(plan: BuildPlan) -> "Optional[trt.IInt8Calibrator]":
    """A calibrator that only reads the plan's cache, of the class its header names (TensorRT
    skips a cache labelled for another calibrator, NVIDIA/TensorRT#1378). It has no data: a
    rejected cache fails the build instead of calibrating on nothing."""
    import tensorrt as trt

    if plan.calibration_cache is None or plan.calibrator is None:
        return None
    data = Path(plan.calibration_cache).read_bytes()
    batch = plan.batch.opt

    bases = {"EntropyCalibration2": trt.IInt8EntropyCalibrator2,
             "MinMaxCalibration": trt.IInt8MinMaxCalibrator}
    base = bases.get(plan.calibrator)
    if base is not None:
        return _cache_reader(base, data, batch)
    raise ModelError(f"calibration cache header names {plan.calibrator!r}: edge-resnet reads "
                     "EntropyCalibration2 and MinMaxCalibration caches; rewrite it with "
                     "`edge-resnet calibrate`")


def _cache_reader(base: Any, data: bytes, batch: int) -> "trt.IInt8Calibrator":
    """An instance of a subclass of TensorRT calibrator class ``base`` that hands TensorRT the
    cache bytes and no batches: one body for every calibrator class, since only the class (which
    TensorRT matches against the cache header) differs."""

    def __init__(self: Any) -> None:
        base.__init__(self)

    methods: Dict[str, Any] = {
        "__init__": __init__,
        "get_batch_size": lambda self: batch,
        "get_batch": lambda self, names: [],
        "read_calibration_cache": lambda self: data,
        "write_calibration_cache": lambda self, cache: None,
    }
    calibrator: "trt.IInt8Calibrator" = type(f"CacheOnly{base.__name__}", (base,), methods)()
    return calibrator


def _load_timing_cache(config: "trt.IBuilderConfig", path: Path) -> "trt.ITimingCache":
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, False)
    return cache


def summarize_layers(inspector_json: str) -> Dict[str, Any]:
    """Layer count and output data types as the engine inspector reports them (JSON format).

    The inspector's field names: ``Layers`` (a list; with DETAILED verbosity each a dict with
    ``Name``, ``LayerType`` and ``Outputs`` holding ``Format/Datatype`` strings)."""
    try:
        info = json.loads(inspector_json)
    except ValueError:
        return {"layers": None, "note": "inspector output is not JSON"}
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    formats: Dict[str, int] = {}
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        for out in layer.get("Outputs", []):
            kind = str(out.get("Format/Datatype", "?")) if isinstance(out, dict) else "?"
            formats[kind] = formats.get(kind, 0) + 1
    return {"layers": len(layers), "output_formats": formats}


def _check_installed(trt: Any, plan: BuildPlan) -> None:
    here = trt_api.installed_version(trt)
    if here.major_minor != tuple(int(p) for p in plan.trt_version.split(".")[:2]):
        raise InputError(f"the plan is for TensorRT {plan.trt_version}, TensorRT {here} is "
                         "installed: plan again with this version")


def build_engine(plan: BuildPlan, out_path: Path, final_path: Path,
                 progress: bool = True) -> Dict[str, Any]:
    """Build ``plan`` into ``out_path``; log and layer report beside ``final_path``."""
    trt_api.import_tensorrt()  # one clear error when TensorRT is absent
    import tensorrt as trt

    _check_installed(trt, plan)
    started = time.monotonic()
    with Heartbeat(final_path.name, stream=sys.stderr if progress else io.StringIO()) as beat:
        logger = trt_api.CapturingLogger()
        builder = trt.Builder(logger.impl)
        flags = trt_api.network_flags(trt_api.installed_version(trt), plan.strongly_typed)
        network = builder.create_network(flags)
        beat.set_phase("parsing ONNX")
        _parse(network, logger.impl, plan)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
        trt_api.set_precision_flags(config, plan.flags)
        if plan.optimization_level is not None:
            config.builder_optimization_level = plan.optimization_level
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        monitor = trt_api.make_progress_monitor(beat.set_phase)
        if monitor is not None:
            config.progress_monitor = monitor
        fallback = _configure_dla(builder, config, network, plan)
        profile = _add_profile(builder, config, network, plan)
        calibrator = _calibrator(plan)
        if calibrator is not None:
            config.int8_calibrator = calibrator
            if profile is not None:
                config.set_calibration_profile(profile)
        timing_path = Path(plan.timing_cache)
        _load_timing_cache(config, timing_path)
        beat.set_phase("building (TensorRT measures kernels; minutes on a Jetson)")
        serialized = builder.build_serialized_network(network, config)
        log_path = final_path.with_name(final_path.name + ".build.log")
        atomic_write_text(log_path, "\n".join(logger.lines) + "\n")
        if serialized is None:
            errors = [line for line in logger.lines if line.startswith(("[ERROR", "[INTERNAL"))]
            raise ModelError("TensorRT could not build the engine: "
                             + (" | ".join(errors[-3:]) or f"see {log_path}"))
        atomic_write_bytes(timing_path, bytes(config.get_timing_cache().serialize()))
        out_path.write_bytes(bytes(serialized))
        beat.set_phase("inspecting layers")
        report = _inspect(logger.impl, bytes(serialized))
    report_path = final_path.with_name(final_path.name + ".layers.json")
    atomic_write_text(report_path, report)
    return {"build_seconds": round(time.monotonic() - started, 1),
            "tensorrt_installed": str(trt.__version__), "build_log": log_path.name,
            "layer_report": report_path.name, "layers": summarize_layers(report),
            "dla_gpu_fallback": [{"layer": n, "type": t} for n, t in fallback]}


def _inspect(logger: "trt.ILogger", serialized: bytes) -> str:
    import tensorrt as trt

    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise ModelError("TensorRT built an engine it cannot deserialize; see the build log")
    inspector = engine.create_engine_inspector()
    return str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


def build_cached(plan: BuildPlan, model_sha256: str, cache_sha256: str = "",
                 progress: bool = True) -> CacheEntry:
    """The engine for ``plan`` from the cache, or built now (under the cache's lock)."""
    final = engine_path(plan, cache_key(plan, model_sha256, cache_sha256))
    spec = model_metadata(plan.input_model)

    def build(tmp: Path) -> Dict[str, Any]:
        return dict(build_engine(plan, tmp, final, progress), spec=spec)
    return get_or_build(plan, model_sha256, cache_sha256, build,
                        artifact=engine_artifact(plan, model_sha256))
