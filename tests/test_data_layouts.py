"""The pickle layouts users have on disk, on small fake folders written here in the real formats:
CIFAR-10's ``cifar-10-batches-py/``, CIFAR-100's ``cifar-100-python/`` and NB201's ``ImageNet16/``.
Each test asserts the exact pixels, labels and class names read back (and read again from the cache)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from flatnas_bench.core.errors import DataError
from flatnas_bench.engine.data import load_images

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))


def _dump(path: Path, entry: dict) -> None:
    """Write one batch as the official files are written: a pickled dict (protocol 2) whose ``data`` is
    uint8 (n, 3072), each row the red plane, then green, then blue, each plane row-major."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def _planes(images: np.ndarray) -> np.ndarray:
    """(n, H, W, 3) -> (n, 3 * H * W) rows, channel-major: how the pickles store pixels."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)


def write_cifar10(root: Path, per_batch: int = 3, test: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    train_x, train_y = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        _dump(folder / f"data_batch_{i}", {
            "batch_label": f"training batch {i} of 5", "labels": y, "data": _planes(x),
            "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)],
        })  # fmt: skip
        train_x.append(x)
        train_y += y
    x = rng.integers(0, 256, (test, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, test).tolist()
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": y, "data": _planes(x),
                                  "filenames": [f"test_{j}.png" for j in range(test)]})  # fmt: skip
    _dump(folder / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": CIFAR10_CLASSES,
                                    "num_vis": 3072})  # fmt: skip
    return np.concatenate(train_x), np.array(train_y), x, np.array(y)


def test_cifar10_python_folder_reads_exact_pixels_labels_and_classes(tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = write_cifar10(tmp_path)
    # a hand-placed pixel: image 0 of batch 1, row 2, column 5, green channel, is byte 1024 + 2 * 32 + 5
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    assert train_x[0, 2, 5, 1] == raw["data"][0, 1024 + 2 * 32 + 5]
    for path in (tmp_path, tmp_path / "cifar-10-batches-py"):  # the folder holding it, or the folder
        ds = load_images(path, "cifar10")
        assert ds.name == "cifar10" and ds.classes == tuple(CIFAR10_CLASSES)
        assert ds.train.x.dtype == np.uint8 and ds.train.x.shape == (15, 32, 32, 3)
        np.testing.assert_array_equal(ds.train.x, train_x)  # batches 1..5, in order
        np.testing.assert_array_equal(ds.train.y, train_y)
        np.testing.assert_array_equal(ds.test.x, test_x)
        np.testing.assert_array_equal(ds.test.y, test_y)
        assert ds.train.y.dtype == np.int64


def test_cifar10_python_folder_missing_a_batch_is_one_line(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DataError, match="data_batch_4") as info:
        load_images(tmp_path, "cifar10")
    assert "\n" not in str(info.value)


def test_cifar100_python_folder_reads_fine_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    x_train = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    y_train, y_test = [99, 0, 42, 7, 7], [3, 98]
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        _dump(folder / name, {
            "filenames": [f"{name}{j}.png" for j in range(len(y))], "batch_label": name,
            "fine_labels": y, "coarse_labels": [v // 5 for v in y], "data": _planes(x),
        })  # fmt: skip
    names = [f"class{i:02d}" for i in range(100)]
    _dump(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"s{i}" for i in range(20)]})
    ds = load_images(tmp_path, "cifar100")
    assert ds.classes == tuple(names)
    np.testing.assert_array_equal(ds.train.x, x_train)
    assert ds.train.y.tolist() == y_train and ds.test.y.tolist() == y_test  # fine, not coarse, labels
    np.testing.assert_array_equal(ds.test.x, x_test)


def write_imagenet16(root: Path, seed: int = 0):
    """NB201's ImageNet16 folder: ``train_data_batch_1..10`` and ``val_data``, each a pickled dict with
    ``data`` uint8 (n, 768) channel-major 16x16 images and ``labels`` 1-based over the 1,000 classes."""
    rng = np.random.default_rng(seed)
    folder = root / "ImageNet16"
    kept_x, kept_y = [], []
    for i in range(1, 11):
        x = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
        y = [1, 120, 121, int(rng.integers(1, 1001))]  # first and last kept class, first dropped one
        _dump(folder / f"train_data_batch_{i}", {"data": _planes(x), "labels": y, "mean": np.zeros(768)})
        keep = [j for j, label in enumerate(y) if label <= 120]
        kept_x.append(x[keep])
        kept_y += [y[j] - 1 for j in keep]
    x = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    _dump(folder / "val_data", {"data": _planes(x), "labels": [500, 60, 2]})
    return np.concatenate(kept_x), np.array(kept_y), x[[1, 2]], np.array([59, 1])


def test_imagenet16_120_keeps_classes_1_to_120_zero_based(tmp_path: Path) -> None:
    train_x, train_y, val_x, val_y = write_imagenet16(tmp_path)
    for path in (tmp_path, tmp_path / "ImageNet16"):
        ds = load_images(path, "ImageNet16-120")
        assert ds.name == "ImageNet16-120" and len(ds.classes) == 120
        assert ds.train.x.shape[1:] == (16, 16, 3) and ds.train.x.dtype == np.uint8
        np.testing.assert_array_equal(ds.train.x, train_x)
        np.testing.assert_array_equal(ds.train.y, train_y)
        assert ds.train.y.min() == 0 and ds.train.y.max() == 119
        np.testing.assert_array_equal(ds.test.x, val_x)  # val_data is the test split
        np.testing.assert_array_equal(ds.test.y, val_y)


def test_imagenet16_missing_a_training_batch_is_one_line(tmp_path: Path) -> None:
    write_imagenet16(tmp_path)
    (tmp_path / "ImageNet16" / "train_data_batch_7").unlink()
    with pytest.raises(DataError, match="incomplete ImageNet16 folder"):
        load_images(tmp_path, "ImageNet16-120")


def test_a_second_load_comes_from_the_cache_and_is_identical(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    first = load_images(tmp_path, "cifar10")
    assert len(list((tmp_path / "cache").glob("cifar10-*.npz"))) == 1
    second = load_images(tmp_path / "cifar-10-batches-py", "cifar10")  # same source, same cache entry
    assert len(list((tmp_path / "cache").glob("cifar10-*.npz"))) == 1
    np.testing.assert_array_equal(first.train.x, second.train.x)
    assert first.classes == second.classes and first.test.y.tolist() == second.test.y.tolist()
