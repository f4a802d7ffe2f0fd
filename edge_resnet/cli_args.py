"""Argument groups shared by the ``edge-resnet`` commands, and the library-name -> flag table.

Polygraphy's shape (``ModelArgs``, ``TrtConfigArgs``): a concept that several commands take
(the backend, the batch size, how many images, progress bars, the output) is added by one helper
here, so its spelling, choices, default and help exist once. Choices and defaults are read from
the library (the backend registry, the option dataclasses) by the caller, never re-typed.

Old spellings stay as hidden aliases that still parse and warn once (``--batch`` ->
``--batch-size``). Library errors name parameters (``top_k``, ``batch_size``); the CLI says them
as flags with :func:`in_flag_terms`, applied once where :mod:`edge_resnet.cli` prints an error.

Light: stdlib + argparse; device side (Python 3.8).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

__all__ = ["positive_int", "add_deprecated_alias", "add_backend_args", "add_backends_list_args", "backend_options",
           "add_threads_args",
           "add_batch_args", "add_images_args", "add_seed_args", "add_progress_args",
           "add_output_args", "add_report_args", "add_json_args", "add_playback_args",
           "add_results_args", "add_profile_args", "add_engine_batch_args",
           "add_gallery_model_args", "progress_enabled", "FLAG_NAMES",
           "mark_commands", "in_flag_terms"]

# Library parameter names (and a few phrases) as the CLI spells them. The library writes a
# parameter as ``name=value``, or bare where the name cannot be a plain word (it has ``_``, ``.``
# or a space: ``max_drop``, ``BundleSpec.models``), so "the threshold 1.3" stays a noun. A name
# is rewritten only when the failing command has its flag.
FLAG_NAMES: Dict[str, str] = {
    "num_images": "--num-images", "batch_size": "--batch-size", "max_batch": "--batch-size",
    "percentile": "--percentile", "frame_stride": "--frame-stride", "max_drop": "--max-drop",
    "max_drop_upper": "--max-drop-upper", "min_agreement": "--min-agreement",
    "threads": "--threads", "max_float_layers": "--max-float-layers",
    "evaluation folder": "--eval-data folder", "method auto": "--method auto",
    "name a method": "choose a --method", "stats_path": "--stats",
    "top_k": "--top-k", "smoothing": "--smooth", "threshold": "--threshold",
    "match_threshold": "--match-threshold", "metrics_port": "--metrics-port",
    "golden_count": "--golden-count", "BundleSpec.tolerance": "--tolerance",
    "BundleSpec.models": "--model",
    "latency_budget_ms": "--latency-budget-ms", "int8_weights": "--int8-weights",
    "dla_core": "--dla", "max_gpu_fallback": "--max-gpu-fallback",
    "batch profile": "--engine-batch", "calibration_cache": "--calibration-cache",
    "optimization_level": "--opt-level", "precision": "--precision", "out_dir": "--out",
    "engine_batch": "--engine-batch", "max_wait_ms": "--max-wait-ms", "preprocess": "--preprocess",
    "commit_after": "--commit-after", "allow_downgrade": "--allow-downgrade",
    "exact_qdq": "--exact-qdq", "backend": "--backend", "device": "--device",
    "trust_pickle": "--trust-pickle", "sign_key": "--sign-key", "target_far": "--target-far",
    "device_types entry": "--device-type", "set overwrite": "pass --force",
    "check_data": "--check-data",
}

_WARNED: Set[str] = set()


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (refused at parse time, before any model is loaded)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def agreement_percent(text: str) -> float:
    """argparse type: a top-1 agreement gate in percent, 0 (no gate) or 1..100.

    Refuses values below 1: ``0.99`` is almost always a fraction meant as 99 %, and taken as
    0.99 % it would let any model through the gate without a word.
    """
    value = float(text)
    if not (value == 0.0 or 1.0 <= value <= 100.0):
        hint = f" ({value:g} would mean {value:g} %; for {value * 100:g} % give {value * 100:g})" \
            if 0.0 < value < 1.0 else ""
        raise argparse.ArgumentTypeError(f"is a percentage in [1, 100], got {value:g}{hint}")
    return value


def add_agreement_args(p: Any, what: str) -> None:
    """``--min-agreement PCT``: one unit (percent) wherever a command gates top-1 agreement."""
    p.add_argument("--min-agreement", type=agreement_percent, default=None, metavar="PCT",
                   help=f"{what}, in percent")


class _DeprecatedAlias(argparse.Action):
    """An old spelling: stores into the new flag's dest and says once per process to move on."""

    def __init__(self, option_strings: List[str], dest: str, new_flag: str = "",
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new_flag = new_flag

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:
        key = f"{parser.prog} {option_string}"
        if key not in _WARNED:
            _WARNED.add(key)
            print(f"{parser.prog}: {option_string} is deprecated, use {self.new_flag}",
                  file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated_alias(p: Any, alias: str, flag: str, dest: str,
                         type: Optional[Callable[[str], Any]] = None) -> None:
    """``alias`` parses like ``flag`` (same dest and type), hidden from --help."""
    p.add_argument(alias, dest=dest, type=type, action=_DeprecatedAlias, new_flag=flag,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_backend_args(p: Any, threads: bool = True, extra: str = "") -> None:
    """``--backend`` (the registry's names + auto) and ``--threads``: the names ``args.backend``
    and ``args.threads`` are what :mod:`edge_resnet.backends` maps to backend options."""
    from edge_resnet.backends.base import backend_names

    p.add_argument("--backend", default="auto", choices=["auto"] + backend_names(),
                   help="inference backend (default auto: TensorRT for engines, PyTorch for .pt, "
                        "OpenVINO for INT8 QDQ on a CPU with VNNI/AMX when installed, else ONNX "
                        "Runtime; the choice and the reason are logged)" + extra)
    if threads:
        add_threads_args(p, "CPU inference threads (0: the backend's default)")


def add_backends_list_args(p: Any, default: Sequence[str]) -> None:
    """``--backends a,b``: several backends to compare, each one of ``--backend``'s choices."""
    from edge_resnet.backends.base import backend_names

    known = ["auto"] + backend_names()

    def names(text: str) -> List[str]:
        listed = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in listed if name not in known]
        if unknown or not listed:
            raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(known)}, "
                                             "comma-separated")
        return listed

    p.add_argument("--backends", type=names, default=list(default), metavar="NAME[,NAME...]",
                   help=f"comma-separated backends to compare, from {', '.join(known)} "
                        "(default auto: chosen per model, the table says which and why)")


def backend_options(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """The one place the CLI turns backend flags into backend options: ``--device`` and
    ``--precision`` (pytorch), ``--exact-qdq`` (onnxruntime); None when none is given."""
    options = {key: getattr(args, key) for key in ("device", "precision")
               if getattr(args, key, None) is not None}
    if getattr(args, "exact_qdq", False):
        options["exact_qdq"] = True
    return options or None


def add_threads_args(p: Any, help: str, default: int = 0) -> None:
    """``--threads``: how many CPU threads the command's work may use."""
    p.add_argument("--threads", type=int, default=default, help=help)


def add_batch_args(p: Any, default: int, what: str = "images per inference batch") -> None:
    """``--batch-size`` (``--batch`` still parses, deprecated)."""
    p.add_argument("--batch-size", type=positive_int, default=default, metavar="N",
                   help=f"{what} (default {default}; --batch is a deprecated alias)")
    add_deprecated_alias(p, "--batch", "--batch-size", "batch_size", positive_int)


def add_images_args(p: Any, default: Optional[int], what: str) -> None:
    """``--num-images``: how many images the command uses (``--max-images`` deprecated)."""
    shown = "all" if default is None else str(default)
    p.add_argument("--num-images", type=positive_int, default=default, metavar="N",
                   help=f"{what} (default {shown})")
    add_deprecated_alias(p, "--max-images", "--num-images", "num_images", positive_int)


def add_seed_args(p: Any, default: int = 0, what: str = "random seed") -> None:
    p.add_argument("--seed", type=int, default=default, help=f"{what} (default {default})")


def add_progress_args(p: Any) -> None:
    """``--no-progress``; without it a bar runs on stderr when stderr is a terminal."""
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (default: one on stderr when it is a terminal)")


def progress_enabled(args: argparse.Namespace) -> bool:
    """The bar for commands whose library takes a plain bool (no TTY check of its own)."""
    return bool(args.progress) and sys.stderr.isatty()


def add_output_args(p: Any, metavar: str, what: str, required: bool = True) -> None:
    """``--out``: where the command writes; nothing is written anywhere else."""
    p.add_argument("--out", required=required, metavar=metavar, help=what)


def add_report_args(p: Any, metavar: str, what: str, old: Optional[str] = None) -> None:
    """``--report``: a machine-readable report file (``old``: a former spelling, deprecated)."""
    p.add_argument("--report", default=None, metavar=metavar,
                   help=what + (f" ({old} is a deprecated alias)" if old else ""))
    if old:
        add_deprecated_alias(p, old, "--report", "report")


def add_json_args(p: Any) -> None:
    """``--json``: print the answer as JSON instead of a table."""
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def add_playback_args(p: Any) -> None:
    """Sources read from files: rate, repeats, real-time pacing (``run`` and ``bundle run``)."""
    p.add_argument("--fps", type=float, help="camera capture rate (and video output rate)")
    p.add_argument("--loop", type=int, default=0, help="files: play N extra times (-1: forever)")
    p.add_argument("--realtime", action="store_true",
                   help="files: play at the file's rate, dropping frames like a camera")


def add_results_args(p: Any, defaults: Any) -> None:
    """Batching, top-k, stats and frame limit of the pipeline (``run`` and ``bundle run``);
    ``defaults`` is :class:`edge_resnet.runtime.pipeline.PipelineConfig`'s instance."""
    add_batch_args(p, defaults.max_batch, "max frames per inference batch")
    p.add_argument("--top-k", type=positive_int, default=defaults.top_k,
                   help=f"classes per result (default {defaults.top_k})")
    p.add_argument("--stats-interval", type=float, default=10.0,
                   help="seconds between metrics lines on stderr (0: only the summary)")
    p.add_argument("--max-frames", type=positive_int, help="stop after N frames")
    p.add_argument("--commit-after", type=positive_int, metavar="N",
                   help="with a slot root: commit a pending release once N frames have turned "
                        "into results")


def add_profile_args(p: Any, default: Optional[str], what: str) -> None:
    """``--device``: a device profile name (``edge-resnet devices`` lists them)."""
    p.add_argument("--device", default=default, metavar="PROFILE",
                   help=f"{what} (`edge-resnet devices` lists the profiles)")


def add_engine_batch_args(p: Any, default: Optional[str], what: str) -> None:
    """``--engine-batch N|MIN:OPT:MAX``: the batch profile of TensorRT engines built here."""
    p.add_argument("--engine-batch", default=default, metavar="N|MIN:OPT:MAX",
                   help=f"batch profile of the engines built, e.g. 1:8:16 ({what})")


def add_gallery_model_args(p: Any, required: bool, what: str) -> None:
    """``--model`` of a gallery command (an ONNX with a features output) and its backend."""
    p.add_argument("--model", required=required, help=what)
    add_backend_args(p)


def mark_commands(parser: argparse.ArgumentParser) -> None:
    """Each leaf command stores its own parser as ``args.cli_parser`` (for :func:`in_flag_terms`);
    only leaves, so no parent's default can shadow the leaf's on any Python version."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        parser.set_defaults(cli_parser=parser)
    for action in subs:
        for child in set(action.choices.values()):
            mark_commands(child)


def _flags_of(parser: Optional[argparse.ArgumentParser]) -> Set[str]:
    if parser is None:
        return set()
    return {flag for action in parser._actions for flag in action.option_strings}


def in_flag_terms(message: str, parser: Optional[argparse.ArgumentParser]) -> str:
    """``message`` with the library's parameter names said as ``parser``'s flags:
    ``top_k=0`` -> ``--top-k 0``, ``max_drop`` -> ``--max-drop`` (whole words only, and only the
    flags that command has)."""
    flags = _flags_of(parser)
    for name, flag in FLAG_NAMES.items():
        if not any(word in flags for word in flag.split()):
            continue
        edge = r"(?<![\w.-])" + re.escape(name)
        message = re.sub(edge + "=", flag + " ", message)
        if any(mark in name for mark in "_ ."):
            message = re.sub(edge + r"(?![\w-])", flag, message)
    return message
