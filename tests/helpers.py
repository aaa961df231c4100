"""Helpers shared by the engine, bench, loop and retrain tests: a tiny protocol and a synthetic
ImageFolder dataset that a 4-channel network learns something from in 2 epochs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from flatnas_bench.bench.driver import resolve_protocol
from flatnas_bench.nb201.space import Arch
from flatnas_bench.tables.table import BenchTable

# A protocol small enough for tests: a 4-channel, 1-cell network at 16x16, 2 epochs, 2 flatness draws.
TINY = {
    "C": 4,
    "N": 1,
    "resolution": 16,
    "epochs": 2,
    "batch_size": 32,
    "val_size": 40,
    "flatness_draws": 2,
    "corruption_subset": 0,
    # 0.2's corruption test (CIFAR-10-C at 32 px, downsampled; severities 1-5), which the tiny fixtures'
    # 32-px corruption directories fit; proxy's own (0.3) is tested where it is asked for
    "corruption_resolution": "native",
    "corruption_severities": "1-5",
}
TINY_SETTINGS = [f"{k}={v}" for k, v in TINY.items()]
CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
SKIP = Arch.from_ops((1, 0, 0, 0, 0, 1))
SKIP_TWIN = next(a for a in SKIP.neighbours() if a.iso_key == SKIP.iso_key and a != SKIP.canonical())
MIXED = "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def make_imagefolder(root: Path, train_per_class: int = 16, test_per_class: int = 4, seed: int = 0) -> Path:
    """A 10-class 32x32 ImageFolder (``train/<class>/*.png``, ``test/...``) whose classes differ in colour,
    so a tiny network learns something in 2 epochs."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for c in range(10):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            colour = np.array([(37 * c) % 256, (91 * c + 40) % 256, (255 - 23 * c) % 256], np.float64)
            for i in range(count):
                image = np.clip(colour + rng.normal(0, 50, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root


def tiny_protocol(**extra: Any):
    return resolve_protocol("proxy", {**TINY, **extra})


def _onehot(archs) -> np.ndarray:
    ops = np.array([a.ops for a in archs])
    return np.concatenate([(ops == k).astype(float) for k in range(5)] + [np.ones((len(archs), 1))], axis=1)


class LinearSurrogate:
    """Least squares on one-hot ops: a fast stand-in with the SurrogateSet predict contract."""

    def __init__(self, archive: BenchTable, targets: list[str]) -> None:
        self.targets = list(targets)
        X = _onehot(archive.archs)
        self.coef = {t: np.linalg.lstsq(X, archive.values(t), rcond=None)[0] for t in targets}

    def predict(self, archs):
        X = _onehot(archs)
        out = {"arch": [str(a) for a in archs]}
        for t, coef in self.coef.items():
            out[t], out[f"{t}_std"] = X @ coef, np.zeros(len(archs))
        return pd.DataFrame(out)


def linear_fit(archive: BenchTable, targets: list[str], seed: int) -> LinearSurrogate:
    """The loop's ``fit`` hook with :class:`LinearSurrogate` (the seed is unused: least squares)."""
    return LinearSurrogate(archive, targets)
