"""Whole corruption sets: every requested corruption and severity of a test set, in memory
(:func:`generate_corruption_set`) or written once in the official CIFAR-10-C file layout
(:func:`write_corruption_set`, resumable), optionally spread over worker processes.

Example::

    >>> from flatnas_bench.corruptions.generate import generate_corruption_set
    >>> cset = generate_corruption_set(test_x, test_y, seed=0)         # 15 benchmark x 5 severities
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from flatnas_bench.core.errors import ConfigError, DataError
from flatnas_bench.corruptions.operations import (
    check_images,
    check_names,
    check_severities,
    corrupt,
)
from flatnas_bench.corruptions.robustness import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    SEVERITIES,
    CorruptionSet,
    read_meta,
    save_corruption,
    save_labels,
)
from flatnas_bench.corruptions.textures import frost_source

# Bumped whenever the pixels a seed produces change: 2 = parity with make_cifar_c.py (package 0.2).
GENERATOR_VERSION = 2
CHUNK = 250  # images per job when generating a set (bounds memory, feeds the progress bar)
_SHARED: dict[str, np.ndarray] = {}  # in a worker process: the images of the set being generated


def _worker_start(images: np.ndarray) -> None:
    cv2.setNumThreads(1)  # one process per core: OpenCV's own threads would only oversubscribe
    _SHARED["images"] = images  # sent once per worker; each job then names only its slice


def _corrupt_chunk(name: str, severity: int, seed: int, start: int, stop: int) -> np.ndarray:
    return corrupt(_SHARED["images"][start:stop], name, severity, seed, range(start, stop))


def _ordered(pool: Executor, calls: Iterable[tuple[Any, ...]], window: int) -> Iterator[np.ndarray]:
    """Results of ``pool.submit(*call)`` in call order, at most ``window`` calls in flight (bounds memory)."""
    calls = iter(calls)
    pending = deque(pool.submit(*call) for call in itertools.islice(calls, window))
    while pending:
        result = pending.popleft().result()
        for call in itertools.islice(calls, 1):
            pending.append(pool.submit(*call))
        yield result


def iter_corruptions(
    images: np.ndarray,
    corruptions: Iterable[str] = BENCHMARK_CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    chunk: int = CHUNK,
    on_progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, uint8 (len(severities), n, 32, 32, 3))`` one corruption at a time.

    Works through ``chunk`` images per call (memory stays small) and calls ``on_progress(k)`` after
    every ``k`` images corrupted at one severity (for a progress bar: total = names x severities x n).
    ``workers > 1`` spreads the chunks over that many processes; every image draws from its own seeded
    generator, so the pixels are the same for any ``workers``."""
    images = check_images(images)
    names, levels = check_names(corruptions), check_severities(severities)
    if int(workers) < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    calls = [
        (name, severity, seed, start, min(start + chunk, len(images)))
        for name in names
        for severity in levels
        for start in range(0, len(images), chunk)
    ]
    with contextlib.ExitStack() as stack:
        if int(workers) == 1 or len(calls) <= 1:
            results: Iterator[np.ndarray] = (
                corrupt(images[a:b], name, severity, seed, range(a, b))
                for name, severity, seed, a, b in calls
            )
        else:  # spawn: safe after torch or a CUDA context exists in the parent (as under ``bench``)
            pool = ProcessPoolExecutor(
                min(int(workers), len(calls)),
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
                initargs=(images,),
            )
            stack.enter_context(pool)
            results = _ordered(pool, ((_corrupt_chunk, *call) for call in calls), window=4 * int(workers))
        chunks = len(range(0, len(images), chunk))
        for name in names:
            out = np.empty((len(levels), *images.shape), dtype=np.uint8)
            for k, part in enumerate(itertools.islice(results, len(levels) * chunks)):
                s, c = divmod(k, chunks)
                out[s, c * chunk : c * chunk + len(part)] = part
                if on_progress is not None:
                    on_progress(len(part))
            yield name, out


def generate_corruption_set(
    images: np.ndarray,
    labels: np.ndarray,
    corruptions: Iterable[str] = BENCHMARK_CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> CorruptionSet:
    """Corrupt a clean test set in memory: a :class:`CorruptionSet` with every requested corruption.

    Memory: 15 x 5 x 10,000 CIFAR images are 2.3 GB; use :func:`write_corruption_set` for full sets."""
    images = check_images(images)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(images),):
        raise DataError(f"need one label per image: {len(images)} images, labels of shape {labels.shape}")
    levels = check_severities(severities)
    generated = dict(
        iter_corruptions(images, corruptions, levels, seed, on_progress=on_progress, workers=workers)
    )
    return CorruptionSet(generated, labels, levels)


def write_corruption_set(
    images: np.ndarray,
    labels: np.ndarray,
    out_dir: str | os.PathLike[str],
    corruptions: Iterable[str] = ALL_CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> list[str]:
    """Generate corruptions into ``out_dir`` in the official layout, one ``.npy`` at a time.

    Files already there from the same settings (``meta.json`` agrees: seed, severities, image count and
    the frost texture source, ``"photographs"`` or ``"procedural"``) are kept, so an interrupted run
    resumes and generation happens once. ``workers`` processes share the work (same pixels for any
    count). Returns the names written now. Reading it back:
    :func:`flatnas_bench.corruptions.robustness.load_cifar_c`."""
    images = check_images(images)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(images),):
        raise DataError(f"need one label per image: {len(images)} images, labels of shape {labels.shape}")
    names, levels = check_names(corruptions), check_severities(severities)
    out = Path(out_dir)
    # the frost source changes frost's pixels: a set from the photographs never resumes from the fallback
    meta: dict[str, object] = {
        "seed": int(seed),
        "generator": "flatnas_bench.corruptions",  # a fixed name: sets written by 0.2 stay readable
        "generator_version": GENERATOR_VERSION,
        "frost": frost_source(),
    }
    wanted = {"severities": list(levels), "n_images": len(images), **meta}
    existing = read_meta(out)
    if existing and any(existing.get(key) != value for key, value in wanted.items()):
        raise DataError(
            f"{out} holds a corruption set made with other settings ({existing}); use an empty directory"
        )
    save_labels(out, labels, levels, meta)
    todo = [name for name in names if not (out / f"{name}.npy").is_file()]
    if on_progress is not None and len(todo) < len(names):
        on_progress(len(images) * len(levels) * (len(names) - len(todo)))
    if not todo:
        return []
    written = []
    for name, array in iter_corruptions(images, todo, levels, seed, on_progress=on_progress, workers=workers):
        save_corruption(out, name, array)
        written.append(name)
    return written
