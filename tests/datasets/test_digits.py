"""The bundled digits as an image folder: layout, counts, pixels, determinism, idempotence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edge_resnet.core import InputError
from edge_resnet.datasets.digits import write_digits_folder


def _listing(root: Path) -> list:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.png"))


def test_digits_folder_layout_counts_and_stratified_split(digits_dirs: Any) -> None:
    train, test = digits_dirs.train_dir, digits_dirs.test_dir
    assert sorted(p.name for p in train.iterdir()) == [str(d) for d in range(10)]
    assert sorted(p.name for p in test.iterdir()) == [str(d) for d in range(10)]
    n_train = sum(digits_dirs.counts["train"].values())
    n_test = sum(digits_dirs.counts["test"].values())
    assert n_train + n_test == 1797 and len(_listing(train)) == n_train
    for digit in map(str, range(10)):
        total = digits_dirs.counts["train"][digit] + digits_dirs.counts["test"][digit]
        assert digits_dirs.counts["test"][digit] == round(total * 0.2)  # every class 20 %
        assert len(list((test / digit).glob("*.png"))) == digits_dirs.counts["test"][digit]
    train_ids = {p.stem for p in train.rglob("*.png")}
    assert not train_ids & {p.stem for p in test.rglob("*.png")}  # no image in both splits


def test_digits_are_rgb_png_at_the_requested_size(digits_dirs: Any) -> None:
    path = sorted((digits_dirs.test_dir / "7").glob("*.png"))[0]
    with Image.open(path) as img:
        assert (img.format, img.mode, img.size) == ("PNG", "RGB", (32, 32))
        pixels = np.asarray(img)
    assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1],
                                                                              pixels[..., 2])
    assert pixels.min() == 0 and pixels.max() > 200  # 0..16 was stretched to 0..255


def test_same_seed_gives_the_same_files_and_rerun_is_a_no_op(tmp_path: Path,
                                                             digits_dirs: Any) -> None:
    fresh = write_digits_folder(tmp_path / "d", size=32, test_fraction=0.2, seed=0)
    assert _listing(fresh.test_dir) == _listing(digits_dirs.test_dir)
    name = _listing(fresh.test_dir)[5]
    assert (fresh.test_dir / name).read_bytes() == (digits_dirs.test_dir / name).read_bytes()
    stamp = (fresh.train_dir / "3").stat().st_mtime_ns
    again = write_digits_folder(tmp_path / "d", size=32, test_fraction=0.2, seed=0)
    assert again == fresh and (fresh.train_dir / "3").stat().st_mtime_ns == stamp
    assert not [p for p in (tmp_path / "d").iterdir() if p.name.startswith(".")]
    manifest = json.loads((tmp_path / "d" / "digits.json").read_text())
    assert manifest["params"] == {"size": 32, "test_fraction": 0.2, "seed": 0}


def test_other_seed_splits_differently_and_size_is_honoured(tmp_path: Path,
                                                            digits_dirs: Any) -> None:
    other = write_digits_folder(tmp_path / "d", size=16, test_fraction=0.3, seed=1)
    assert _listing(other.test_dir) != _listing(digits_dirs.test_dir)
    for digit, n_test in other.counts["test"].items():
        assert n_test == round((n_test + other.counts["train"][digit]) * 0.3)
    with Image.open(next(other.test_dir.rglob("*.png"))) as img:
        assert img.size == (16, 16)


def test_refuses_a_folder_holding_other_digits_or_a_damaged_one(tmp_path: Path) -> None:
    folder = write_digits_folder(tmp_path / "d", size=16, seed=0)
    with pytest.raises(InputError, match="already holds digits written with"):
        write_digits_folder(tmp_path / "d", size=32, seed=0)
    next((folder.train_dir / "4").glob("*.png")).unlink()
    with pytest.raises(InputError, match=r"train/4 is incomplete or modified"):
        write_digits_folder(tmp_path / "d", size=16, seed=0)
    (tmp_path / "e" / "train").mkdir(parents=True)
    with pytest.raises(InputError, match="exists but is not a complete digits folder"):
        write_digits_folder(tmp_path / "e")
    with pytest.raises(InputError, match="test fraction must be in"):
        write_digits_folder(tmp_path / "f", test_fraction=1.0)
