"""Data: layouts, cache, deterministic balanced splits, on-device augmentation."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from flatnas_bench.core.errors import DataError
from flatnas_bench.engine.data import load_images, make_splits
from flatnas_bench.engine.device_data import DeviceData


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "imgs"
    for split, n in (("train", 6), ("test", 2)):
        for c, cls in enumerate(("cat", "dog")):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                (root / split / cls / f"{i}.png").write_bytes(_png(10 * c + i))
    return root


def test_image_folder_dir_and_tar_agree_and_cache(folder: Path, tmp_path: Path) -> None:
    ds = load_images(folder)
    assert ds.classes == ("cat", "dog") and ds.train.x.shape == (12, 8, 8, 3) and len(ds.test) == 4
    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="imgs")
    from_tar = load_images(archive)
    assert np.array_equal(from_tar.train.x, ds.train.x) and np.array_equal(from_tar.test.y, ds.test.y)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    assert np.array_equal(load_images(archive).train.x, ds.train.x)  # from the cache


def test_wrong_path_is_one_line_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ImageFolder") as info:
        load_images(tmp_path / "missing")
    assert "\n" not in str(info.value)


def test_splits_are_seeded_balanced_and_disjoint(folder: Path) -> None:
    ds = load_images(folder)
    a = make_splits(ds, val_size=4, train_subset=6, seed=1)
    assert np.array_equal(a.val.x, make_splits(ds, val_size=4, train_subset=6, seed=1).val.x)
    assert np.bincount(a.val.y).tolist() == [2, 2] and np.bincount(a.train.y).tolist() == [3, 3]
    seen = {int(v[0, 0, 0]) for v in a.val.x} & {int(v[0, 0, 0]) for v in a.train.x}
    assert not seen
    half = make_splits(ds, split="cifar10-valid", seed=0)
    assert len(half.train) == len(half.val) == 6


def test_device_batches_are_deterministic_normalised_channels_last(folder: Path) -> None:
    data = DeviceData(make_splits(load_images(folder), val_size=2, seed=0), resolution=4)
    assert data.train_x.shape == (10, 3, 4, 4) and data.train_x.dtype == torch.uint8
    x1, y1 = next(data.train_batches(4, torch.Generator().manual_seed(5)))
    x2, y2 = next(data.train_batches(4, torch.Generator().manual_seed(5)))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.dtype == torch.float32 and x1.is_contiguous(memory_format=torch.channels_last)
    assert data.steps_per_epoch(4) == 2


def test_augment_is_a_crop_of_the_padded_image_possibly_flipped(folder: Path) -> None:
    data = DeviceData(make_splits(load_images(folder), val_size=2, seed=0))
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    out = data.augment(x, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(len(x)):
        crops = [padded[i, :, r : r + 8, c : c + 8] for r in range(9) for c in range(9)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)
