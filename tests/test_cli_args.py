"""The shared CLI argument groups (edge_resnet/cli_args.py): one spelling per concept across every
command, old spellings that still parse and warn once, registry choices for every --backend, and
library errors said in flags by the CLI (and in parameter names by the library)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set, Tuple

import pytest

from edge_resnet import cli_args
from edge_resnet.backends.base import backend_names
from edge_resnet.backends.reference import parse_model_ref
from edge_resnet.cli import build_parser, main

# Flags spelled differently before the argument groups; none may show in any command's --help.
_OLD = ("--batch", "--max-images", "--json-out")


def _commands(parser: argparse.ArgumentParser, path: str = "") -> Iterator[Tuple[str, Any]]:
    """Every command and sub-command parser, by its words (``bundle install``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                words = f"{path} {name}".strip()
                yield words, child
                yield from _commands(child, words)


def _visible(parser: Any) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if action.option_strings and action.help != argparse.SUPPRESS \
                and not isinstance(action, argparse._HelpAction):
            yield action


def _action(command: str, dest: str) -> argparse.Action:
    parsers = dict(_commands(build_parser()))
    return next(a for a in _visible(parsers[command]) if a.dest == dest)


def test_each_concept_has_one_spelling_across_commands() -> None:
    spellings: Dict[str, Set[str]] = {}
    where: Dict[Tuple[str, str], List[str]] = {}
    commands = list(_commands(build_parser()))
    assert len(commands) >= 20  # every registrar's commands are walked, nested ones included
    for command, parser in commands:
        for action in _visible(parser):
            flag = max(action.option_strings, key=len)
            spellings.setdefault(action.dest, set()).add(flag)
            where.setdefault((action.dest, flag), []).append(command)
            assert flag not in _OLD, f"{command} still shows the old spelling {flag}"
    mixed = {dest: {flag: where[dest, flag] for flag in flags}
             for dest, flags in spellings.items() if len(flags) > 1}
    assert mixed == {}


@pytest.mark.parametrize("command", ["run", "bench", "eval", "calibrate", "finetune",
                                     "gallery enroll", "gallery eval", "bundle run"])
def test_batch_size_is_the_one_spelling(command: str) -> None:
    assert _action(command, "batch_size").option_strings == ["--batch-size"]


def test_deprecated_alias_still_parses_and_warns_once(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(cli_args, "_WARNED", set())
    parser = build_parser()
    first = parser.parse_args(["run", "m.onnx", "0", "--batch", "4"])
    second = parser.parse_args(["run", "m.onnx", "0", "--batch", "6"])
    assert (first.batch_size, second.batch_size) == (4, 6)
    err = capsys.readouterr().err
    assert err.count("--batch is deprecated, use --batch-size") == 1
    bench = parser.parse_args(["bench", "m.onnx", "--batch", "2", "--max-images", "9",
                               "--json", "t.json"])
    assert (bench.batch_size, bench.num_images, bench.report) == (2, 9, "t.json")
    build = parser.parse_args(["build", "m.onnx", "--precision", "fp16", "--out", "e",
                               "--batch", "1:8:16"])
    assert build.engine_batch == "1:8:16"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all("deprecated" in line for line in err)
    assert parser.parse_args(["run", "m.onnx", "0"]).batch_size == 1  # the library's default


def test_alias_keeps_the_type_check(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", "m.onnx", "0", "--batch", "0"])
    assert exit_info.value.code == 2
    assert "must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["eval", "run", "gallery enroll", "gallery verify",
                                     "bundle run", "bundle install"])
def test_every_backend_flag_takes_the_registry_names(command: str) -> None:
    action = _action(command, "backend")
    assert list(action.choices or []) == ["auto"] + backend_names()
    assert action.default == "auto"


def test_eval_refuses_an_unknown_backend_and_keeps_the_per_model_prefix(
        capsys: pytest.CaptureFixture) -> None:
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "d", "--reference", "r.onnx", "--backend", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    args = parser.parse_args(["eval", "d", "--reference", "r.onnx", "--backend", "onnxruntime",
                              "--candidate", "openvino:m.int8.onnx", "--candidate", "m.fp16.onnx"])
    refs = [parse_model_ref(text, args.backend) for text in args.candidate]
    assert [(r.backend, r.path) for r in refs] == [("openvino", "m.int8.onnx"),
                                                  ("onnxruntime", "m.fp16.onnx")]


def test_library_names_become_the_failing_commands_flags() -> None:
    commands = dict(_commands(build_parser()))
    run, evaluate = commands["run"], commands["eval"]
    assert cli_args.in_flag_terms("top_k=0: must be >= 1", run) == "--top-k 0: must be >= 1"
    assert cli_args.in_flag_terms("max_batch must be >= 1", run) == "--batch-size must be >= 1"
    # a plain word stays a noun; a name the command has no flag for stays the library's
    assert cli_args.in_flag_terms("the threshold 1.3 of x", run) == "the threshold 1.3 of x"
    assert cli_args.in_flag_terms("a larger max_drop", run) == "a larger max_drop"
    assert cli_args.in_flag_terms("max_drop and max_drop_upper", evaluate) \
        == "--max-drop and --max-drop-upper"
    assert cli_args.in_flag_terms("spec.top_k=0", run) == "spec.top_k=0"


def test_cli_says_a_nested_commands_library_error_in_its_flags(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["bundle", "create", "--name", "x", "--version", "1.0.0", "--model",
                 str(tmp_path / "m.onnx"), "--key", str(tmp_path / "k"),
                 "--out", str(tmp_path / "b"), "--latency-budget-ms", "-5"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "edge-resnet bundle: error: --latency-budget-ms -5.0: must be positive\n"
    assert not (tmp_path / "b").exists()


def test_build_refusal_names_build_flags(digits_onnx: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    code = main(["build", str(digits_onnx), "--device", "orin-nx-16gb", "--precision", "fp32",
                 "--trt-version", "10.3.0", "--dla", "0", "--out", str(tmp_path), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "use --precision fp16 or int8 with --dla" in err


def test_bench_backends_list_takes_only_registry_names(capsys: pytest.CaptureFixture) -> None:
    parser = build_parser()
    assert parser.parse_args(["bench", "m.onnx"]).backends == ["auto"]
    assert parser.parse_args(["bench", "m.onnx", "--backends", "onnxruntime, auto"]).backends \
        == ["onnxruntime", "auto"]
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "m.onnx", "--backends", "onnxruntime,nope"])
    assert "'onnxruntime,nope': choose from auto, " in capsys.readouterr().err


def _numeric(action: argparse.Action) -> bool:
    try:
        return callable(action.type) and isinstance(action.type("1"), (int, float))
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        return False


def test_each_number_flag_has_one_unit_across_commands() -> None:
    """A number flag spelled alike takes its value alike (type and metavar): ``--min-agreement``
    once meant a fraction in ``export`` and a percentage in ``eval``, so 0.99 gated nothing
    there."""
    kinds: Dict[str, Dict[Tuple[Any, Any], List[str]]] = {}
    for command, parser in _commands(build_parser()):
        for action in filter(_numeric, _visible(parser)):
            flag = max(action.option_strings, key=len)
            key = (getattr(action.type, "__name__", action.type), action.metavar)
            kinds.setdefault(flag, {}).setdefault(key, []).append(command)
    assert "--min-agreement" in kinds and len(kinds) >= 10
    assert {flag: k for flag, k in kinds.items() if len(k) > 1} == {}


@pytest.mark.parametrize("command", ["eval", "export"])
def test_min_agreement_is_a_percentage_everywhere(command: str,
                                                  capsys: pytest.CaptureFixture) -> None:
    base = {"eval": ["eval", "data", "--reference", "r.onnx"],
            "export": ["export", "random", "--out", "x.onnx"]}[command]
    args = build_parser().parse_args(base + ["--min-agreement", "99.5"])
    assert args.min_agreement == 99.5
    if command == "export":
        from edge_resnet.export.cli import _min_agreement

        assert _min_agreement(args) == pytest.approx(0.995)
        assert _min_agreement(build_parser().parse_args(base)) == 0.99
    for bad, said in (("0.99", "for 99 % give 99"), ("150", "got 150")):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(base + ["--min-agreement", bad])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "--min-agreement: is a percentage in [1, 100]" in err and said in err
