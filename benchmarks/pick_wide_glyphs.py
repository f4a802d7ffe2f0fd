"""How ``WIDE_TRAIN_GLYPHS`` (edge_resnet/datasets/glyphs.py) was chosen; re-run to check it.

Face recognition trains embeddings on many identities; the 65 Cyrillic/Greek glyphs of the
narrow train set are few. This script picks more training identities from other scripts and
symbol blocks, keeping a glyph only when

* at least 4 DejaVu faces draw it (its "photos" vary in typeface), it is a letter, digit or
  symbol (no combining marks), and its drawn shape is not tiny;
* its shape does not look like an eval identity: the tight-cropped, square-padded 20x20
  rendering in DejaVu Sans/Serif/Mono (mean-removed, unit norm) has cosine < 0.7 to every such
  rendering of a Latin letter or digit (``I``, ``l``, ``O`` included);
* it is not a near-copy of a glyph kept before it (cosine of the mean descriptors < 0.9).

    python benchmarks/pick_wide_glyphs.py        # prints the picks; exit 1 if they differ

Renderings depend on the fonts and Pillow, so another machine may pick a slightly different
list; the constant in the package is what the benchmark and docs used.
"""

from __future__ import annotations

import sys
import unicodedata
from typing import List, Optional, Tuple

import numpy as np

BLOCKS = [(0x531, 0x587), (0x5D0, 0x5EA), (0x621, 0x64A), (0x10A0, 0x10FF), (0x1400, 0x167F),
          (0x2D30, 0x2D7F), (0xE81, 0xEDD), (0x7C0, 0x7FA), (0x2200, 0x22FF),
          (0x2190, 0x21FF), (0x25A0, 0x25FF)]  # Armenian ... geometric shapes, in this order
CATEGORIES = ("Lu", "Ll", "Lo", "Sm", "So", "Nd")


def _descriptor(glyph: str, font: object) -> Optional[Tuple[np.ndarray, int]]:
    from PIL import Image

    from edge_resnet.datasets.glyphs import _draw

    ink = _draw(glyph, font, 160).astype(np.float32)
    ys, xs = np.nonzero(ink > 64)
    if len(ys) == 0:
        return None
    ink = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = ink.shape
    side = max(h, w)
    square = np.zeros((side, side), np.float32)
    square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = ink
    vec = np.asarray(Image.fromarray(square).resize((20, 20), Image.Resampling.BILINEAR)).ravel()
    vec = vec - vec.mean()
    norm = float(np.linalg.norm(vec))
    return None if norm == 0 else (vec / norm, side)


def pick() -> str:
    from PIL import ImageFont

    from edge_resnet.datasets.glyphs import EVAL_GLYPHS, _covers, dejavu_fonts

    fonts = dejavu_fonts()
    probes = [ImageFont.truetype(str(p), 48) for p in fonts]
    named = {p.name: p for p in fonts}
    shape_fonts = [ImageFont.truetype(str(named[n]), 96)
                   for n in ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")]

    def descriptors(glyph: str) -> List[Tuple[np.ndarray, int]]:
        found = [_descriptor(glyph, f) for f in shape_fonts if _covers(f, glyph, 128)]
        return [d for d in found if d is not None]

    latin = np.stack([d for g in EVAL_GLYPHS + "IlO" for d, _ in descriptors(g)])
    kept: List[np.ndarray] = []
    picks = []
    for first, last in BLOCKS:
        for code in range(first, last + 1):
            glyph = chr(code)
            if sum(_covers(p, glyph, 64) for p in probes) < 4:
                continue
            found = descriptors(glyph)
            if not found or max(s for _, s in found) < 40:
                continue
            if max(float((latin @ d).max()) for d, _ in found) >= 0.7:
                continue
            mean = np.mean([d for d, _ in found], axis=0)
            mean /= np.linalg.norm(mean)
            if kept and max(float(k @ mean) for k in kept) >= 0.9:
                continue
            kept.append(mean)
            if unicodedata.category(glyph) in CATEGORIES:
                picks.append(glyph)
    return "".join(picks)


def main() -> int:
    from edge_resnet.datasets.glyphs import TRAIN_GLYPHS, WIDE_TRAIN_GLYPHS

    picked = pick()
    print(f"{len(picked)} glyphs: {picked}")
    same = picked == WIDE_TRAIN_GLYPHS[len(TRAIN_GLYPHS):]
    print("same as WIDE_TRAIN_GLYPHS" if same else "differs from WIDE_TRAIN_GLYPHS")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
