"""Make the installed ``tensorrt-stubs`` usable by mypy, in ``<repo>/.typings`` (git-ignored).

``tensorrt-stubs`` (10.13.0.35.1, installed with ``pip install --no-deps``: it depends on the real
wheel) has no ``py.typed`` marker, so mypy skips it (PEP 561), and its generated
``tensorrt_bindings/tensorrt.pyi`` has lines Python cannot parse: parameters named ``in`` and
parameters without a default after ones with a default. This copies the stub files to
``.typings/`` (``mypy_path`` in pyproject.toml), renaming ``in`` to ``in_`` and giving the
late parameters ``= ...``, so mypy checks every TensorRT call against the 10.x API.
Run by ``.ci/run`` and by ``tests/test_static_checks.py`` before mypy; idempotent.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".typings"
_DEF = re.compile(r"^(\s*def \w+\()(.*)(\)\s*->.*:\s*)$")


def _split_params(text: str) -> list:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def fix_line(line: str) -> str:
    match = _DEF.match(line)
    if match is None:
        return line
    params = _split_params(match.group(2))
    seen_default, fixed = False, []
    for param in params:
        name = param.strip().split(":")[0].split("=")[0].strip()
        if name == "in":
            param = param.replace("in", "in_", 1)
        if "=" in param:
            seen_default = True
        elif seen_default and not name.startswith("*"):
            param = param.rstrip() + " = ..."
        fixed.append(param)
    return match.group(1) + ",".join(fixed) + match.group(3)


def main() -> int:
    try:
        dist = metadata.distribution("tensorrt-stubs")
    except metadata.PackageNotFoundError:
        print("tensorrt-stubs is not installed: pip install --no-deps tensorrt-stubs==10.13.0.35.1",
              file=sys.stderr)
        return 1
    stubs = [f for f in dist.files or [] if str(f).endswith(".pyi")]
    for rel in stubs:
        src = Path(str(dist.locate_file(rel)))
        dst = OUT / str(rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        lines = src.read_text(encoding="utf-8").splitlines(keepends=False)
        dst.write_text("\n".join(fix_line(x) for x in lines) + "\n", encoding="utf-8")
    print(f"tensorrt stubs for mypy: {len(stubs)} files in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
