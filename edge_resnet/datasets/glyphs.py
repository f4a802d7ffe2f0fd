"""Glyph identities: an offline open-set protocol with many identities, made deterministically.

No face data set ships with a package here, and digits split by class are only ten identities.
A glyph (one Unicode character) is an "identity"; its "photos" are renderings in different
typefaces (DejaVu Sans/Serif/Mono, bold, oblique, condensed, light: the faces of one person
under different conditions) with augmentation (scale, shift, rotation, stroke colour, paper,
blur, noise). Two disjoint sets:

* ``train``: Cyrillic and Greek letters whose upright forms do not look like Latin letters or
  digits (the embedding is trained on these);
* ``eval``: Latin letters and digits, less ``I``, ``l`` and ``O`` (near-copies of ``1``/``l``/
  ``0``): 59 identities the embedding never saw;
* ``train-wide``: ``train`` plus 846 glyphs of other scripts and symbol blocks (911 identities),
  for training embeddings the way face recognition does, on many identities.

Fonts come from fontconfig (``fc-list``), DejaVu only so that every machine with
``fonts-dejavu-core`` (+ ``fonts-dejavu-extra`` for the other 16 styles) makes the same set.
A folder is written once per parameter set (``glyphs.json`` records them) and then reused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_resnet.core import DataError, DependencyError, InputError
from edge_resnet.io_utils import atomic_write_json

__all__ = ["EVAL_GLYPHS", "TRAIN_GLYPHS", "WIDE_TRAIN_GLYPHS", "dejavu_fonts", "identity_name",
           "render_glyph", "write_glyph_folder"]

_LATIN = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789"
EVAL_GLYPHS = _LATIN  # 59: no I, l, O
# Upright shapes unlike any Latin letter or digit (А/а, В, Е/е, К, М, Н, О/о, Р/р, С/с, Т, Х/х,
# У/у, З, Ь, Α, Β, Ε, Ζ, Η, Ι, Κ, Μ, Ν, Ο/ο, Ρ, Τ, Υ/υ, Χ, ι, κ, ν are left out).
TRAIN_GLYPHS = ("БГДЖИЙЛПФЦЧШЩЪЫЭЮЯбгджийлпфцчшщъыэюя"
                "ΓΔΘΛΞΠΣΦΨΩαβγδεζηθλμξπρστφχψω")
# 911 training identities for a face-recognition-like regime (many identities, a few dozen
# photos each): TRAIN_GLYPHS + 846 Armenian, Hebrew, Arabic, Georgian, Canadian syllabics,
# Tifinagh, Lao, N'Ko letters and math/arrow/geometric symbols that at least 4 DejaVu faces draw,
# whose tight-cropped shape (20x20, Sans/Serif/Mono) has cosine < 0.7 to every Latin letter and
# digit and < 0.9 to every glyph kept before it (benchmarks/pick_wide_glyphs.py made the list).
WIDE_TRAIN_GLYPHS = TRAIN_GLYPHS + (
    "ԹԽԾՀՃՇՊՌՓՔՖխկձչպվփֆևאבגדךכלמנעףצקרשתءؤئبتثخدذرزسشصضطعغفقكموى"
    "يႡႢႣႥႧႨႪႫႮႯႰႴႵႻႿჀჃჄჅადორტუფღშჭჯჰჴჶᐂᐄᐅᐆᐊᐋᐌᐍᐎᐏᐐᐑᐒᐓᐔᐕᐗᐘᐙᐚᐞᐫᐬᐭᐮᐰ"
    "ᐲᐳᐴᐵᐸᐹᐻᐼᐽᐾᐿᑀᑁᑂᑃᑄᑅᑆᑇᑈᑑᑖᑗᑘᑙᑚᑛᑜᑝᑞᑟᑠᑡᑢᑣᑤᑥᑧᑨᑩᑪᑬᑮᑰᑱᑳᑴᑵᑶᑷᑸᑹᑺᑻᑼᑽᑾᑿᒀᒁ"
    "ᒂᒅᒆᒇᒈᒊᒌᒒᒓᒔᒕᒖᒗᒘᒙᒚᒜᒝᒟᒠᒣᒤᒦᒧᒩᒬᒭᒯᒰᒱᒲᒴᒷᒺᓀᓁᓂᓃᓄᓅᓇᓈᓉᓊᓋᓍᓐᓒᓓᓔᓕᓖᓗᓘᓙᓚᓛᓜᓝᓞ"
    "ᓟᓠᓡᓢᓣᓤᓥᓦᓧᓨᓩᓪᓬᓭᓮᓯᓰᓱᓲᓳᓴᓵᓶᓷᓸᓹᓺᓻᓼᓽᓾᓿᔀᔁᔂᔃᔄᔐᔑᔒᔓᔔᔕᔖᔗᔘᔙᔚᔛᔜᔝᔞᔟᔠᔡᔢᔣᔤᔥᔦ"
    "ᔧᔨᔩᔪᔫᔬᔭᔮᔯᔰᔱᔲᔳᔴᔵᔶᔷᔸᔹᔺᔻᔼᔽᕂᕃᕄᕅᕆᕇᕉᕋᕌᕍᕎᕏᕒᕔᕕᕖᕗᕘᕙᕚᕛᕜᕢᕣᕥᕧᕨᕩᕪᕴᕵᕶᕷᕸᕹᕺᕾ"
    "ᕿᖀᖁᖂᖃᖄᖅᖊᖋᖌᖍᖎᖏᖐᖑᖒᖓᖔᖕᖖᖠᖢᖣᖤᖥᖦᖧᖨᖩᖪᖫᖬᖭᙇᙯᙰᙱᙲᙳᙴᙵᙶⴰⴲⴻⴼⴽⴾⴿⵀⵁⵂⵄⵆⵈⵋⵌⵐⵒⵓ"
    "ⵖⵗⵘⵞⵢⵣⵤⵥກຂຄງຈຊຍຕຖທນຜພຟມຣລສຫອຮຯະາຳຽເແໂໃໄ໑໒໓໔໕໖໗໘໙ໜ߂߃߄߆߇߈߉ߌߍߎߏ"
    "ߐߑߒߓߔߖߘߛߝߞߟߢߣ∂∄∅∉∊∌∍∎∓∔∕∖∗√∛∜∝∞∟∡∢∥∬∭∮∯∰∱∴∵∶∷∸∹∺∻∼∽∾∿≁≂≃≄≅≆≇"
    "≈≉≊≋≌≍≎≏≐≑≒≓≔≖≗≘≙≚≛≜≝≞≟≠≡≢≣≤≥≦≧≨≩≪≫≬≭≮≯≰≱≲≳≵≶≷≸≹≺≻≼≽≾≿⊀⊁⊂⊃⊄⊅"
    "⊆⊇⊈⊉⊊⊋⊏⊐⊑⊒⊗⊚⊛⊜⊞⊟⊠⊡⊢⊣⊧⊨⊩⊪⊫⊬⊭⊮⊯⊰⊱⊲⊳⊴⊵⊶⊷⊸⊹⊼⊾⊿⋄⋇⋈⋉⋊⋋⋌⋍⋏⋐⋑⋒⋓⋔⋕⋖⋗⋘"
    "⋙⋚⋛⋜⋝⋞⋟⋠⋡⋢⋣⋤⋦⋧⋨⋩⋪⋫⋬⋭⋰⋱⋲⋳⋴⋵⋶⋷⋸⋹⋺⋻⋼⋽⋾⋿←→↔↖↗↘↙↚↛↜↝↢↣↤↦↩↪↫↬↭↮↯↰↱"
    "↲↳↴↵↶↷↸↹↺↻↼↽⇀⇁⇄⇆⇇⇉⇋⇌⇍⇎⇏⇑⇓⇔⇕⇖⇗⇘⇙⇚⇛⇤⇥⇦⇧⇨⇩⇫⇭⇮⇯⇰⇱⇲⇳⇴⇶⇷⇸⇺⇼⇿■□▣▤▥▦"
    "▧▨▩▪▬▭▮▰▱▲△▵▶▷►▻▼◀◁◄◅◆◇◈◉◊◌◍◎●◐◑◒◓◔◕◖◗◘◙◚◛◠◡◢◣◤◥◧◨◩◪◫◭◰◱◲◳◴◵"
    "◶◷◸◹◺◿")
_MISSING = "\U0010FFFD"  # a private-use code point no font draws: its rendering is the .notdef box
_FORMAT = 1


def identity_name(glyph: str) -> str:
    """Folder name of a glyph identity: ``U+0041`` (case-safe on any file system)."""
    return f"U+{ord(glyph):04X}"


def dejavu_fonts() -> List[Path]:
    """The DejaVu font files fontconfig knows, sorted; DependencyError naming the package."""
    found: List[Path] = []
    if shutil.which("fc-list"):
        out = subprocess.run(["fc-list", "--format", "%{file}\\n"], capture_output=True,
                             text=True, check=False).stdout
        found = [Path(line) for line in out.splitlines()
                 if Path(line).name.startswith("DejaVu") and line.endswith(".ttf")]
    if not found:
        found = list(Path("/usr/share/fonts").rglob("DejaVu*.ttf"))
    if not found:
        raise DependencyError("glyph identities need the DejaVu fonts: apt-get install "
                              "fontconfig fonts-dejavu-core fonts-dejavu-extra")
    return sorted(set(found), key=lambda p: p.name)


def _draw(glyph: str, font: Any, side: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (side, side), 0)
    ImageDraw.Draw(canvas).text((side / 2, side / 2), glyph, fill=255, font=font, anchor="mm")
    return np.asarray(canvas)


def _covers(font: Any, glyph: str, side: int) -> bool:
    """False when the font draws its .notdef box for ``glyph`` (or nothing)."""
    drawn = _draw(glyph, font, side)
    return bool(drawn.any()) and not np.array_equal(drawn, _draw(_MISSING, font, side))


def render_glyph(glyph: str, font_path: Path, size: int, rng: np.random.Generator) -> np.ndarray:
    """One augmented ``size`` x ``size`` uint8 RGB rendering (drawn at 4x, then downsampled)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    big = 4 * size
    font = ImageFont.truetype(str(font_path), int(big * rng.uniform(0.55, 0.75)))
    mask = Image.new("L", (big, big), 0)
    centre = (big / 2 + rng.uniform(-0.08, 0.08) * big, big / 2 + rng.uniform(-0.08, 0.08) * big)
    ImageDraw.Draw(mask).text(centre, glyph, fill=255, font=font, anchor="mm")
    mask = mask.rotate(float(rng.uniform(-12, 12)), resample=Image.Resampling.BILINEAR)
    mask = mask.resize((size, size), Image.Resampling.LANCZOS)
    blur = float(rng.uniform(0.0, 0.8))
    if blur > 0.3:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    paper = rng.uniform(150, 255, size=3)
    ink = paper * rng.uniform(0.0, 0.45)  # stroke darker than the paper, any hue
    img = paper * (1 - alpha) + ink * alpha + rng.normal(0, rng.uniform(0, 8), (size, size, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def _probe_font(path: Path) -> Any:
    """The font at 48 px for coverage checks, loaded once per process."""
    from PIL import ImageFont

    return ImageFont.truetype(str(path), 48)


def _write_identity(job: Tuple[Path, str, int, int, int, Sequence[Path]]) -> bool:
    """Render one glyph's photos into ``out/U+XXXX``; False when no font draws it."""
    from PIL import Image

    out, glyph, per_identity, size, seed, fonts = job
    usable = [p for p in fonts if _covers(_probe_font(p), glyph, 64)]
    if not usable:
        return False
    folder = out / identity_name(glyph)
    folder.mkdir(parents=True, exist_ok=True)
    for j in range(per_identity):
        key = hashlib.sha256(f"{seed}/{ord(glyph)}/{j}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
        pixels = render_glyph(glyph, usable[j % len(usable)], size, rng)
        Image.fromarray(pixels).save(folder / f"{j:03d}.png")
    return True


def _params(glyphs: str, per_identity: int, size: int, seed: int, fonts: Sequence[Path]
            ) -> Dict[str, Any]:
    return {"format": _FORMAT, "glyphs": glyphs, "per_identity": per_identity, "size": size,
            "seed": seed, "fonts": [p.name for p in fonts]}


def write_glyph_folder(out_dir: "str | Path", glyphs: str, per_identity: int = 24,
                       size: int = 32, seed: int = 0,
                       fonts: Optional[Sequence[Path]] = None,
                       workers: int = 0) -> Dict[str, Any]:
    """Write ``out_dir/U+XXXX/NN.png`` for every glyph (one subfolder per identity).

    Deterministic for the parameters and font files: image j of a glyph uses the j-th font
    that covers it (cycling) and a generator seeded by (seed, code point, j). Reuses a folder
    written with the same parameters; refuses to write into another non-empty folder.
    Returns the parameters (with the glyphs skipped for lack of fonts). ``workers`` > 1 renders
    glyphs in that many processes (the same files: each image has its own generator).
    """
    if per_identity < 1 or size < 8 or not glyphs:
        raise InputError(f"need glyphs, per_identity >= 1 and size >= 8 (got {len(glyphs)}, "
                         f"{per_identity}, {size})")
    out = Path(out_dir)
    record = out / "glyphs.json"
    if record.is_file():
        done = json.loads(record.read_text())
        wanted = _params(glyphs, per_identity, size, seed, [Path(n) for n in
                                                            done["params"]["fonts"]])
        if done["params"] == wanted and (fonts is None or
                                         [p.name for p in fonts] == wanted["fonts"]):
            return dict(done)  # written before (possibly on a machine with the fonts)
    fonts = list(fonts) if fonts is not None else dejavu_fonts()
    params = _params(glyphs, per_identity, size, seed, fonts)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} is not empty and was not written with these parameters; give "
                         "a new folder")
    if workers > 1 and len(glyphs) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: the caller may hold torch/OpenMP threads, which a forked child must not inherit
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(glyphs)), mp_context=spawn) as pool:
            drawn = list(pool.map(_write_identity, [(out, g, per_identity, size, seed, fonts)
                                                    for g in glyphs], chunksize=8))
    else:
        drawn = [_write_identity((out, g, per_identity, size, seed, fonts)) for g in glyphs]
    skipped = [g for g, ok in zip(glyphs, drawn) if not ok]
    if len(skipped) == len(glyphs):
        raise DataError(f"none of the fonts {[p.name for p in fonts]} draws these glyphs")
    result = {"params": params, "identities": len(glyphs) - len(skipped), "skipped": skipped}
    atomic_write_json(record, result)
    return result
