"""Corruption test sets in the official CIFAR-10-C / CIFAR-100-C layout, and corruption metrics.

Layout (Hendrycks & Dietterich): a directory with one ``<corruption>.npy`` per corruption, uint8
``(5 * n, H, W, 3)`` = severities 1..5 stacked in order, each block the ``n`` test images in test-set
order, plus ``labels.npy`` = the ``n`` labels repeated 5 times. Sets that
:mod:`flatnas_bench.corruptions.operations`
generates use the same layout; when they hold fewer severities, a ``meta.json`` next to the files names
them. :func:`load_cifar_c` reads both; :func:`corruption_metrics` turns accuracies into the numbers a
result row stores.

Example::

    >>> cset = load_cifar_c("CIFAR-10-C", corruptions=["fog", "contrast"], subset=1000)
    >>> acc = corruption_accuracies(predict, cset)          # {(name, severity): accuracy %}
    >>> corruption_metrics(acc, clean_acc=93.1)["mce"]      # unnormalised mCE, %
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flatnas_bench.core.errors import ConfigError, DataError

# The 15 benchmark corruptions in the official order; mCE and the mean corruption accuracy use these.
BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
# The 4 extra (validation) corruptions of the official release.
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
LABELS_FILE = "labels.npy"
META_FILE = "meta.json"  # only in generated sets: {"severities": [...], "seed": ..., ...}


@dataclass(frozen=True, eq=False)
class CorruptionSet:
    """Corrupted copies of one test set.

    ``images[name]`` is uint8 ``(len(severities), n, H, W, 3)``; ``labels`` is int64 ``(n,)``;
    ``severities`` the severity (1..5) of each leading block, in order.
    """

    images: dict[str, np.ndarray]
    labels: np.ndarray
    severities: tuple[int, ...] = SEVERITIES

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name, array in self.images.items():
            if array.dtype != np.uint8 or array.ndim != 5 or array.shape[:2] != (len(self.severities), n):
                raise DataError(
                    f"corruption {name!r}: expected uint8 ({len(self.severities)}, {n}, H, W, 3), "
                    f"got {array.dtype} {array.shape}"
                )

    @property
    def names(self) -> tuple[str, ...]:
        """The corruptions held, in insertion order."""
        return tuple(self.images)

    def __len__(self) -> int:
        """Number of test images per (corruption, severity)."""
        return len(self.labels)

    def items(self) -> Iterator[tuple[str, int, np.ndarray]]:
        """Yield ``(name, severity, images (n, H, W, 3) uint8)`` for every block."""
        for name, array in self.images.items():
            for block, severity in zip(array, self.severities, strict=True):
                yield name, severity, block

    def only_severities(self, severities: Iterable[int]) -> CorruptionSet:
        """The same set with only the blocks of ``severities`` (held ones, in the order given)."""
        wanted = [int(s) for s in severities]
        missing = sorted(set(wanted) - set(self.severities))
        if missing or not wanted or len(set(wanted)) != len(wanted):
            raise ConfigError(
                f"severities must be distinct ones of this set's {list(self.severities)}, got {wanted}"
            )
        rows = [self.severities.index(s) for s in wanted]
        return CorruptionSet({k: v[rows] for k, v in self.images.items()}, self.labels, tuple(wanted))

    def save(self, directory: str | os.PathLike[str], meta: Mapping[str, object] | None = None) -> Path:
        """Write the official layout (plus ``meta.json``) into ``directory``; returns it."""
        out = Path(directory)
        save_labels(out, self.labels, self.severities, meta)
        for name, array in self.images.items():
            save_corruption(out, name, array)
        return out


def save_labels(
    directory: Path, labels: np.ndarray, severities: Sequence[int], meta: Mapping[str, object] | None = None
) -> None:
    """Write ``labels.npy`` (labels repeated once per severity) and ``meta.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels)
    dtype = np.uint8 if labels.size == 0 or (labels.min() >= 0 and labels.max() < 256) else np.int64
    _atomic_save(directory / LABELS_FILE, np.tile(labels.astype(dtype), len(severities)))
    info = {"severities": [int(s) for s in severities], "n_images": len(labels), **(meta or {})}
    tmp = directory / f"{META_FILE}.{os.getpid()}.part"
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    tmp.replace(directory / META_FILE)  # atomic: a concurrent reader never sees a half-written file


def save_corruption(directory: Path, name: str, array: np.ndarray) -> None:
    """Write ``<name>.npy``: uint8 ``(k, n, H, W, 3)`` stored as ``(k * n, H, W, 3)``, atomically."""
    _atomic_save(directory / f"{name}.npy", array.reshape(-1, *array.shape[2:]))


def _atomic_save(path: Path, array: np.ndarray) -> None:
    """Write then rename (per-process temporary name), so concurrent writers and readers are safe."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part.npy")
    np.save(tmp, array, allow_pickle=False)
    tmp.replace(path)


def read_meta(directory: str | os.PathLike[str]) -> dict[str, object]:
    """The ``meta.json`` of a generated set, or ``{}`` for an official directory without one."""
    path = Path(directory) / META_FILE
    if not path.exists():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable {path}: {exc}") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path} is not a JSON object")
    return meta


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable {path}: {str(exc).splitlines()[0]}") from None


def load_cifar_c(
    directory: str | os.PathLike[str], corruptions: Iterable[str] | None = None, subset: int | None = None
) -> CorruptionSet:
    """Read a CIFAR-10-C / CIFAR-100-C directory (or one we generated) into a :class:`CorruptionSet`.

    ``corruptions``: names to read (default: every known corruption with a file in the directory, in the
    official order). ``subset``: keep the first ``subset`` test images of every severity block (files are
    memory-mapped, so a small subset reads little). A wrong layout (missing ``labels.npy``, wrong shape or
    dtype, labels that are not one test set repeated per severity) raises a one-line :class:`DataError`.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DataError(f"corruption directory not found: {root}")
    if not (root / LABELS_FILE).is_file():
        raise DataError(f"{root} has no {LABELS_FILE}: not a CIFAR-10-C / CIFAR-100-C directory")
    severities = tuple(int(s) for s in read_meta(root).get("severities", SEVERITIES))  # type: ignore[union-attr]
    labels = np.asarray(_load_npy(root / LABELS_FILE))
    k = len(severities)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) == 0 or len(labels) % k:
        raise DataError(
            f"{root / LABELS_FILE}: expected integer labels of length {k} x n, "
            f"got {labels.dtype} {labels.shape}"
        )
    n = len(labels) // k
    blocks = labels.reshape(k, n)
    if not (blocks == blocks[0]).all():
        raise DataError(f"{root / LABELS_FILE}: labels differ between severity blocks")
    if corruptions is None:
        names = [name for name in ALL_CORRUPTIONS if (root / f"{name}.npy").is_file()]
        if not names:
            raise DataError(f"{root} holds no corruption files (<name>.npy for {', '.join(ALL_CORRUPTIONS)})")
    else:
        names = list(corruptions)
        unknown = sorted(set(names) - set(ALL_CORRUPTIONS))
        if unknown:
            raise ConfigError(
                f"unknown corruption(s) {', '.join(unknown)}; known: {', '.join(ALL_CORRUPTIONS)}"
            )
    keep = n if subset is None else subset
    if not 0 < keep <= n:
        raise ConfigError(f"subset must be between 1 and {n}, got {subset}")
    images: dict[str, np.ndarray] = {}
    for name in names:
        path = root / f"{name}.npy"
        if not path.is_file():
            raise DataError(f"missing {path}")
        array = _load_npy(path)
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[0] != k * n or array.shape[3] != 3:
            raise DataError(
                f"{path}: expected uint8 ({k * n}, H, W, 3) to match {LABELS_FILE}, "
                f"got {array.dtype} {array.shape}"
            )
        images[name] = np.ascontiguousarray(array.reshape(k, n, *array.shape[1:])[:, :keep])
    shapes = {a.shape[2:] for a in images.values()}
    if len(shapes) > 1:
        raise DataError(f"{root}: corruption files disagree on image size: {sorted(shapes)}")
    return CorruptionSet(images, blocks[0, :keep].astype(np.int64), severities)


def corruption_accuracies(
    predict: Callable[[np.ndarray], np.ndarray], cset: CorruptionSet
) -> dict[tuple[str, int], float]:
    """Accuracy (%) per ``(corruption, severity)``; ``predict`` maps uint8 NHWC images to class ids."""
    return {
        (name, severity): float(np.mean(np.asarray(predict(block)) == cset.labels) * 100.0)
        for name, severity, block in cset.items()
    }


@dataclass(frozen=True)
class ReferenceModel:
    """A reference model's accuracies (%), for Hendrycks' normalised and relative mCE.

    ``acc`` maps ``(corruption, severity)`` to accuracy; ``clean_acc`` is its clean test accuracy.
    """

    acc: Mapping[tuple[str, int], float]
    clean_acc: float


def corruption_metrics(
    acc: Mapping[tuple[str, int], float], clean_acc: float, reference: ReferenceModel | None = None
) -> dict[str, object]:
    """Summary corruption metrics from accuracies (%) per ``(corruption, severity)``.

    Returns (all in %):

    * ``corr_acc_mean``: mean accuracy over the benchmark (corruption, severity) pairs in ``acc``
      (the 15 x 5 for the official number);
    * ``mce``: unnormalised mCE, the mean over benchmark corruptions of CE_c = mean error over severities;
    * ``mce_norm``: Hendrycks' mCE, mean over c of sum_s E_{s,c} / sum_s E^ref_{s,c} (None without reference);
    * ``rel_mce``: relative mCE, mean over c of sum_s (E_{s,c} - E_clean) / sum_s (E^ref_{s,c} - E^ref_clean)
      (None without reference);
    * ``per_corruption``: {name: mean accuracy over severities} for every corruption in ``acc``, extras
      included.

    Example: ``corruption_metrics({("fog", 1): 90.0, ("fog", 2): 80.0}, clean_acc=95.0)["mce"] == 15.0``.
    """
    by_name: dict[str, dict[int, float]] = {}
    for (name, severity), value in acc.items():
        by_name.setdefault(name, {})[int(severity)] = float(value)
    bench = [name for name in BENCHMARK_CORRUPTIONS if name in by_name]
    if not bench:
        raise ConfigError("corruption_metrics needs accuracies for at least one benchmark corruption")
    per_corruption = {name: float(np.mean(list(sev.values()))) for name, sev in by_name.items()}
    errors = {name: {s: 100.0 - a for s, a in by_name[name].items()} for name in bench}
    out: dict[str, object] = {
        "corr_acc_mean": float(np.mean([a for name in bench for a in by_name[name].values()])),
        "mce": float(np.mean([np.mean(list(errors[name].values())) for name in bench])),
        "mce_norm": None,
        "rel_mce": None,
        "per_corruption": per_corruption,
    }
    if reference is not None:
        missing = sorted((name, s) for name in bench for s in errors[name] if (name, s) not in reference.acc)
        if missing:
            raise ConfigError(
                f"reference model lacks accuracies for {missing[0]} and {len(missing) - 1} more"
            )
        clean_err, ref_clean_err = 100.0 - clean_acc, 100.0 - reference.clean_acc
        norm, rel = [], []
        for name in bench:
            ref = {s: 100.0 - reference.acc[(name, s)] for s in errors[name]}
            ref_sum = sum(ref.values())
            ref_rel = sum(e - ref_clean_err for e in ref.values())
            if ref_sum <= 0 or ref_rel == 0:
                raise ConfigError(f"reference model's errors on {name} leave nothing to normalise by")
            norm.append(sum(errors[name].values()) / ref_sum)
            rel.append(sum(e - clean_err for e in errors[name].values()) / ref_rel)
        out["mce_norm"] = float(np.mean(norm) * 100.0)
        out["rel_mce"] = float(np.mean(rel) * 100.0)
    return out
