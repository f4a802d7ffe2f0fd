"""Q/DQ placement before and after the shortcut-only residual rule: node counts, agreement with
FP32 per range method, and OpenVINO INT8 latency of both graphs.

"before" is rebuilt from the same ranges by adding the old extra pair on each residual Add's
Conv->Add input and dropping the pool pairs, so both graphs differ only in placement.

    python benchmarks/qdq_placement.py MODEL.onnx CALIB_DIR TEST_DIR [--num-images 200]

Example (the test suite's digits model, after one test run has cached it):
    python benchmarks/qdq_placement.py .cache/test-fixtures/digits-resnet50-*-fp32.onnx \
        .cache/test-fixtures/digits-32-s0/train .cache/test-fixtures/digits-32-s0/test
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List

import numpy as np


def _old_placement(qdq: Any, ranges: Dict[str, float]) -> Any:
    """The pre-fix graph: a pair on both Add inputs and none on pool inputs."""
    import onnx

    from edge_resnet.calibration.graph import GraphIndex, conv_depths, resnet_layout, \
        residual_inputs
    from edge_resnet.calibration.mixed import float_layers
    from edge_resnet.calibration.qdq import _Inserter

    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    layout = resnet_layout(model)
    index = GraphIndex(model)
    depths = conv_depths(index)
    nodes = {n.name: n for n in model.graph.node}
    for pool in layout.pools:  # bypass the pool pairs
        dq = index.producer[nodes[pool].input[0]]
        nodes[pool].input[0] = index.producer[dq.input[0]].input[0]
    inserter = _Inserter(model)
    for add in layout.residual_adds:
        main = residual_inputs(index, nodes[add], depths)[0]
        tensor = nodes[add].input[main]
        inserter.pair(nodes[add], main, np.array(ranges[tensor] / 127.0, np.float32))
    inserter.finish()
    return float_layers(model, [])  # drops the now-dead pool pairs


def _logits(model: Any, batches: List[np.ndarray], exact: bool) -> np.ndarray:
    """Logits with Q/DQ run as written (what TensorRT computes) or through ONNX Runtime's
    CPU INT8 kernels (what this CPU computes)."""
    from edge_resnet.backends.onnxruntime import OnnxRuntimeBackend
    from edge_resnet.evaluation.comparator import run_backend

    with OnnxRuntimeBackend(model, exact_qdq=exact) as backend:
        return run_backend(backend, batches)


def _openvino_ms(models: List[Any], batch: np.ndarray, rounds: int = 15,
                 per_round: int = 30) -> List[float]:
    """Median batch-1 latency (ms) of each model under OpenVINO CPU, measured in alternating
    rounds so that load from other processes hits every model alike."""
    import openvino as ov

    core = ov.Core()
    requests = []
    for model in models:
        compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                      {"INFERENCE_NUM_THREADS": 2})
        request = compiled.create_infer_request()
        for _ in range(20):
            request.infer({0: batch})
        requests.append(request)
    times: List[List[float]] = [[] for _ in models]
    for _ in range(rounds):
        for request, spent in zip(requests, times):
            for _ in range(per_round):
                started = time.perf_counter()
                request.infer({0: batch})
                spent.append(time.perf_counter() - started)
    return [1000.0 * float(np.median(t)) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("calib_dir", type=Path)
    parser.add_argument("test_dir", type=Path)
    parser.add_argument("--num-images", type=int, default=200)
    args = parser.parse_args()

    from edge_resnet.calibration.methods import compute_ranges, method_names
    from edge_resnet.calibration.options import MethodOptions, ReaderOptions
    from edge_resnet.calibration.qdq import build_qdq, QdqOptions
    from edge_resnet.calibration.readers import open_reader, records_reader
    from edge_resnet.calibration.stats import collect_stats, load_onnx
    from edge_resnet.core import ModelSpec
    from edge_resnet.images import ImageFolder

    model = load_onnx(args.model)
    spec = ModelSpec.from_metadata({p.key: p.value for p in model.metadata_props})
    reader = open_reader(args.calib_dir, spec, ReaderOptions(args.num_images, 0, 32))
    stats = collect_stats(model, reader, progress=False)  # all images, as the pre-fix code did
    test = ImageFolder(args.test_dir, labels=spec.labels, labeled=True)
    batches = [b for b, _ in records_reader(test.sample(None, 0), spec, batch_size=64)]
    ref = _logits(model, batches, False).argmax(1)
    print(f"{args.model.name}: statistics from {stats.num_images} images, "
          f"agreement on {len(ref)} test images")
    print("| method | placement | Q/DQ pairs | Add inputs quantized | pool inputs quantized "
          "| agreement % (Q/DQ as written) | agreement % (ORT CPU INT8 kernels) "
          "| OpenVINO b1 ms |\n|---|---|---|---|---|---|---|---|")
    for method in method_names():
        ranges = compute_ranges(stats, method, MethodOptions())
        new = build_qdq(model, ranges, QdqOptions(method=method))
        graphs = {"before": _old_placement(new, ranges), "after": new}
        try:
            latency = [f"{ms:.2f}" for ms in _openvino_ms(list(graphs.values()),
                                                             batches[0][:1])]
        except ImportError:
            latency = ["n/a (no openvino)"] * 2
        for (name, graph), ms in zip(graphs.items(), latency):
            ops = Counter(n.op_type for n in graph.graph.node)
            producers = {o: n.op_type for n in graph.graph.node for o in n.output}
            feeds: Counter = Counter()
            for node in graph.graph.node:
                if node.op_type in ("Add", "MaxPool", "GlobalAveragePool"):
                    feeds[node.op_type] += sum(producers.get(i) == "DequantizeLinear"
                                               for i in node.input)
            agree_kernels = 100.0 * float(np.mean(_logits(graph, batches, False).argmax(1) == ref))
            agree_exact = 100.0 * float(np.mean(_logits(graph, batches, True).argmax(1) == ref))
            print(f"| {method} | {name} | {ops['QuantizeLinear']} | {feeds['Add']} | "
                  f"{feeds['MaxPool'] + feeds['GlobalAveragePool']} | {agree_exact:.2f} | "
                  f"{agree_kernels:.2f} | {ms} |")

if __name__ == "__main__":
    main()
