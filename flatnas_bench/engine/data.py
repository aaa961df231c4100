"""Datasets as uint8 arrays: the readers of every supported layout, a decode-once cache, and
deterministic splits.

1. :func:`load_images` reads a dataset from one of the layouts below, decodes it once and caches it as
   uint8 arrays in an ``.npz`` file (no pickle) under ``$FLATNAS_CACHE`` or ``~/.cache/flatnas-bench``,
   keyed by the source path, size and modification time.
2. :func:`make_splits` carves a validation split from the training images by seed (the test split is only
   for final reporting) and optionally a training subset; :func:`protocol_splits` does both steps as a
   :class:`~flatnas_bench.core.protocol.Protocol` says.

The training hot path takes the splits from here onto the device:
:class:`~flatnas_bench.engine.device_data.DeviceData`.

Layouts read (``path`` may point at the folder holding them or at them directly):

* CIFAR-10 / CIFAR-100 official python layout: ``cifar-10-batches-py/`` / ``cifar-100-python/``
  (downloaded, by torchvision, only with ``download=True``);
* ImageFolder: ``train/<class>/*.{jpg,png}`` and ``test/<class>/*.{jpg,png}``, as a folder or inside a
  ``.tar.gz`` / ``.tgz`` / ``.tar`` read straight from the archive;
* ImageNet16-120 in NB201's downsampled format: ``ImageNet16/train_data_batch_{1..10}`` and ``val_data``.

>>> ds = load_images("../shared/data/cifar10/cifar10-jpeg.tar.gz", "cifar10")  # doctest: +SKIP
>>> splits = make_splits(ds, val_size=1000, train_subset=5000, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from flatnas_bench.core.errors import DataError

CACHE_VERSION = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
LAYOUT_HINT = (
    "expected a CIFAR python folder (cifar-10-batches-py/ or cifar-100-python/), an ImageFolder tree "
    "train/<class>/*.jpg + test/<class>/*.jpg (a folder or a .tar.gz of one), or NB201's ImageNet16/ "
    "(train_data_batch_1..10, val_data)"
)
# per-channel mean and std of the training images, on the 0..1 scale (NB201's values)
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "ImageNet16-120": ((0.4811, 0.4575, 0.4078), (0.2471, 0.2410, 0.2584)),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}


@dataclass(frozen=True)
class Images:
    """One split: ``x`` uint8 (n, H, W, 3) and ``y`` int64 (n,) class indices."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> Images:
        return Images(self.x[index], self.y[index])


@dataclass(frozen=True)
class Dataset:
    """A decoded dataset: official ``train`` and ``test`` splits, class names, and its name."""

    name: str
    train: Images
    test: Images
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Splits:
    """The splits one protocol uses: ``train`` (after the carve and subset), ``val`` (carved from the
    official training set, for everything a search sees) and ``test`` (final reporting only)."""

    dataset: str
    train: Images
    val: Images
    test: Images
    num_classes: int


# ---------------------------------------------------------------------------------------------- loading


def cache_dir() -> Path:
    """Where decoded datasets are cached: ``$FLATNAS_CACHE`` or ``~/.cache/flatnas-bench``."""
    return Path(os.environ.get("FLATNAS_CACHE", Path.home() / ".cache" / "flatnas-bench"))


def find_layout(path: str | os.PathLike, dataset: str = "cifar10") -> Path:
    """The file or folder :func:`load_images` would read for ``dataset`` at ``path``, found without
    decoding anything; raises :class:`DataError` as it would (checks a path before a long run starts)."""
    if dataset not in NUM_CLASSES:
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(NUM_CLASSES)}")
    return _find_layout(Path(path).expanduser(), dataset)[1]


def load_images(path: str | os.PathLike, dataset: str = "cifar10", *, download: bool = False) -> Dataset:
    """Decode the dataset at ``path`` (any layout in the module docstring) once, then read it from cache.

    ``dataset`` is ``"cifar10"``, ``"cifar100"`` or ``"ImageNet16-120"``. A path that holds none of the
    layouts raises :class:`DataError` naming them. ``download=True`` lets torchvision fetch CIFAR into
    ``path`` when absent; nothing is ever downloaded otherwise.
    """
    if dataset not in NUM_CLASSES:
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(NUM_CLASSES)}")
    path = Path(path).expanduser()
    if download and dataset in ("cifar10", "cifar100"):
        _download_cifar(path, dataset)
    reader, source = _find_layout(path, dataset)
    stat = source.stat()
    key = f"{CACHE_VERSION}|{dataset}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cached = cache_dir() / f"{dataset}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if cached.exists():
        with np.load(cached, allow_pickle=False) as z:
            return Dataset(
                dataset,
                Images(z["train_x"], z["train_y"]),
                Images(z["test_x"], z["test_y"]),
                tuple(z["classes"]),
            )
    ds = reader()
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(
        tmp,
        train_x=ds.train.x,
        train_y=ds.train.y,
        test_x=ds.test.x,
        test_y=ds.test.y,
        classes=np.array(ds.classes),
    )
    os.replace(tmp, cached)
    return ds


def _find_layout(path: Path, dataset: str):
    """(reader, source path whose size/mtime key the cache) for the first layout found at ``path``."""
    if path.is_file() and path.name.endswith(TAR_SUFFIXES):
        return (lambda: _image_folder_tar(path, dataset)), path
    if path.is_dir():
        pickle_dir = CIFAR_PICKLES.get(dataset, (None,))[0]
        if pickle_dir is not None:
            root = path.parent if path.name == pickle_dir else path
            if (root / pickle_dir).is_dir():
                return (lambda: _cifar_pickle(root, dataset)), root / pickle_dir
        if dataset == "ImageNet16-120":
            for folder in (path / "ImageNet16", path):
                if (folder / "val_data").is_file():
                    return (lambda folder=folder: _imagenet16(folder)), folder / "val_data"
        if (path / "train").is_dir() and (path / "test").is_dir():
            return (lambda: _image_folder_dir(path, dataset)), path / "train"
    raise DataError(f"no {dataset} data at {path}: {LAYOUT_HINT}")


# dataset -> (folder, training files, test files, meta file, label key, class-name key)
CIFAR_PICKLES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}  # fmt: skip


def _download_cifar(root: Path, dataset: str) -> None:
    """Let torchvision fetch (and checksum) the official CIFAR archive into ``root`` when absent."""
    from torchvision.datasets import CIFAR10, CIFAR100

    (CIFAR10 if dataset == "cifar10" else CIFAR100)(str(root), train=True, download=True)


def _unpickle(path: Path) -> dict:
    """One file of the official pickle layouts (CIFAR, ImageNet16); a one-line DataError naming it when
    missing or unreadable. The official formats are pickles; we never write one."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except FileNotFoundError:
        raise DataError(f"missing {path}: {LAYOUT_HINT}") from None
    except Exception as exc:  # a truncated or foreign pickle raises nearly anything
        raise DataError(f"unreadable {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(entry, dict):
        raise DataError(f"unreadable {path}: not a dict of arrays")
    return entry


def _pickled_images(
    folder: Path, names: list[str], label_key: str, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated (uint8 (n, side, side, 3), int64 labels) of pickled batches whose ``data`` rows hold
    the red, green and blue planes in turn, each row-major."""
    entries = [_unpickle(folder / name) for name in names]
    try:
        x = np.concatenate([np.asarray(e["data"], np.uint8) for e in entries])
        y = np.concatenate([np.asarray(e[label_key], np.int64) for e in entries])
    except KeyError as exc:
        raise DataError(f"a batch in {folder} has no {exc} entry: {LAYOUT_HINT}") from None
    x = x.reshape(-1, 3, side, side).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y


def _cifar_pickle(root: Path, dataset: str) -> Dataset:
    """The official CIFAR python folder under ``root``, read batch by batch in the official order."""
    folder_name, train_names, test_names, meta_name, label_key, classes_key = CIFAR_PICKLES[dataset]
    folder = root / folder_name
    meta = _unpickle(folder / meta_name)
    if classes_key not in meta:
        raise DataError(f"{folder / meta_name} has no {classes_key!r}: {LAYOUT_HINT}")
    train = Images(*_pickled_images(folder, train_names, label_key, 32))
    test = Images(*_pickled_images(folder, test_names, label_key, 32))
    return Dataset(dataset, train, test, tuple(meta[classes_key]))


def _imagenet16(folder: Path) -> Dataset:
    """NB201's ImageNet16 pickles (1-based labels over 1000 classes); keep classes 1..120."""

    def read(names: list[str]) -> Images:
        x, y = _pickled_images(folder, names, "labels", 16)
        keep = (y >= 1) & (y <= 120)
        return Images(np.ascontiguousarray(x[keep]), y[keep] - 1)

    train_names = [f"train_data_batch_{i}" for i in range(1, 11)]
    if not all((folder / n).is_file() for n in train_names):
        raise DataError(f"incomplete ImageNet16 folder {folder}: {LAYOUT_HINT}")
    return Dataset("ImageNet16-120", read(train_names), read(["val_data"]), tuple(str(i) for i in range(120)))


def _decode(blob: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as im:
        return np.asarray(im.convert("RGB"), np.uint8)


def _assemble(dataset: str, files: dict[str, list[tuple[str, str, bytes]]]) -> Dataset:
    """Build a Dataset from {split: [(class, file name, encoded bytes)]}, ordered by class then name."""
    classes = tuple(sorted({c for c, _, _ in files.get("train", [])}))
    if not classes or not files.get("test"):
        raise DataError(f"no images found for {dataset}: {LAYOUT_HINT}")
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split in ("train", "test"):
        items = sorted(files[split])
        unknown = {c for c, _, _ in items} - set(index)
        if unknown:
            raise DataError(f"test classes {sorted(unknown)} absent from train/: {LAYOUT_HINT}")
        x = np.stack([_decode(blob) for _, _, blob in items])
        splits[split] = Images(x, np.array([index[c] for c, _, _ in items], np.int64))
    return Dataset(dataset, splits["train"], splits["test"], classes)


def _split_class_name(rel: str) -> tuple[str, str, str] | None:
    parts = rel.strip("/").split("/")
    if len(parts) >= 3 and parts[-3] in ("train", "test") and parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return parts[-3], parts[-2], parts[-1]
    return None


def _image_folder_tar(path: Path, dataset: str) -> Dataset:
    files: dict[str, list[tuple[str, str, bytes]]] = {"train": [], "test": []}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parsed = _split_class_name(member.name) if member.isfile() else None
                if parsed:
                    split, cls, name = parsed
                    files[split].append((cls, name, tar.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read archive {path}: {exc}") from None
    return _assemble(dataset, files)


def _image_folder_dir(path: Path, dataset: str) -> Dataset:
    files: dict[str, list[tuple[str, str, bytes]]] = {"train": [], "test": []}
    for split in files:
        for file in sorted((path / split).glob("*/*")):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                files[split].append((file.parent.name, file.name, file.read_bytes()))
    return _assemble(dataset, files)


# ----------------------------------------------------------------------------------------------- splits


def _balanced_order(y: np.ndarray, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(len(y))`` that deals classes round-robin, so every prefix is
    class-balanced (to within one image per class)."""
    perm = np.random.default_rng(seed).permutation(len(y))
    labels = y[perm]
    by_label = np.argsort(labels, kind="stable")
    counts = np.bincount(labels)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(y), np.int64)
    rank[by_label] = np.arange(len(y)) - np.repeat(starts, counts)
    return perm[np.lexsort((labels, rank))]


def make_splits(
    ds: Dataset,
    *,
    split: str = "holdout",
    val_size: int = 5000,
    train_subset: int = 0,
    test_size: int = 0,
    seed: int = 0,
) -> Splits:
    """Carve the validation split from ``ds.train`` by ``seed``; the official test split stays untouched.

    ``split="holdout"``: ``val_size`` class-balanced training images become the validation split.
    ``split="cifar10-valid"``: NB201's convention, half of every class trains and the other half validates
    (25k/25k on CIFAR-10; drawn by ``seed``, not NB201's own file); ``val_size > 0`` then keeps only that
    many validation images. ``train_subset > 0`` keeps that many class-balanced training images and
    ``test_size > 0`` that many class-balanced test images.
    """
    n = len(ds.train)
    order = _balanced_order(ds.train.y, seed)
    if split == "holdout":
        if not 0 < val_size < n:
            raise DataError(f"val_size {val_size} must be between 1 and {n - 1} for {ds.name}")
        val_idx, train_idx = order[:val_size], order[val_size:]
    elif split == "cifar10-valid":
        half = n // 2
        val_idx, train_idx = order[half:], order[:half]
        if val_size:
            val_idx = val_idx[:val_size]
    else:
        raise DataError(f"unknown split {split!r}; known: holdout, cifar10-valid")
    if train_subset:
        train_idx = train_idx[:train_subset]
    test = ds.test
    if test_size:
        test = test.take(np.sort(_balanced_order(test.y, seed)[:test_size]))
    return Splits(
        ds.name,
        ds.train.take(np.sort(train_idx)),
        ds.train.take(np.sort(val_idx)),
        test,
        NUM_CLASSES[ds.name],
    )


# -------------------------------------------------------------------------------------- for a protocol


def protocol_splits(path: str | os.PathLike, protocol) -> Splits:
    """The train/val/test splits a :class:`~flatnas_bench.core.protocol.Protocol` asks for, of the dataset at
    ``path`` (decoded once, then read from the cache)."""
    ds = load_images(path, protocol.dataset)
    return make_splits(
        ds,
        split=protocol.split,
        val_size=protocol.val_size,
        train_subset=protocol.train_subset,
        test_size=protocol.test_size,
        seed=protocol.seed,
    )
