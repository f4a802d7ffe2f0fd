"""The ``edge-resnet`` command: a thin layer over the library API.

Each stage registers its own subcommands (``edge_resnet/<stage>/cli.py`` exposes
``register(subparsers)``); this module only assembles them and turns an
:class:`~edge_resnet.core.EdgeResnetError` into one line on stderr and a non-zero exit.
Registrar modules import nothing heavy, so ``edge-resnet --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, Optional, Sequence

from edge_resnet import __version__
from edge_resnet.cli_args import in_flag_terms, mark_commands
from edge_resnet.core import EdgeResnetError, GateError

# Modules that define ``register(subparsers)``, in the order their commands are listed.
_REGISTRARS: List[str] = [
    "edge_resnet.demo_cli",
    "edge_resnet.export.cli",
    "edge_resnet.training.cli",
    "edge_resnet.calibration.cli",
    "edge_resnet.evaluation.cli",
    "edge_resnet.runtime.cli",
    "edge_resnet.devices.cli",
    "edge_resnet.bundle.cli",
]

EXIT_ERROR = 2
EXIT_GATE = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-resnet",
        description="ResNet50 from PyTorch to Jetson: export, calibrate, evaluate, run.")
    parser.add_argument("--version", action="version", version=f"edge-resnet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _REGISTRARS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a stage not installed in this build (e.g. host tools on a device)
        module.register(subparsers)
    mark_commands(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    try:
        code = args.func(args)
    except GateError as exc:
        message = in_flag_terms(str(exc), getattr(args, "cli_parser", None))
        print(f"edge-resnet {args.command}: {message}", file=sys.stderr)
        return EXIT_GATE
    except ImportError as exc:  # host tools (export, finetune, demo) on a machine without torch
        from edge_resnet._deps import dependency_error

        error = dependency_error(exc)
        if error is None:
            raise
        print(f"edge-resnet {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except EdgeResnetError as exc:  # the library names parameters; say them as this command's flags
        message = in_flag_terms(str(exc), getattr(args, "cli_parser", None))
        print(f"edge-resnet {args.command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"edge-resnet {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
