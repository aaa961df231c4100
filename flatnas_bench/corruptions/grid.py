"""Pictures of the corruptions: one test image under every corruption and severity, as an array or a
labelled PNG (``flatnas-bench corrupt-grid``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.corruptions.imaging import area_downsample
from flatnas_bench.corruptions.operations import (
    MIN_SIZE,
    SIZE,
    check_images,
    check_names,
    check_severities,
    corrupt,
)
from flatnas_bench.corruptions.robustness import ALL_CORRUPTIONS, SEVERITIES


def corruption_grid(
    image: np.ndarray,
    corruptions: Iterable[str] = ALL_CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    index: int = 0,
) -> np.ndarray:
    """One image under every corruption and severity: uint8 (corruptions, 1 + severities, 32, 32, 3),
    column 0 the clean image. ``index`` is the image's test-set position (it seeds the draws)."""
    image = check_images(np.asarray(image)[None])
    levels = check_severities(severities)
    rows = [
        np.concatenate([image] + [corrupt(image, name, s, seed, [index]) for s in levels])
        for name in check_names(corruptions)
    ]
    return np.stack(rows)


def resolution_grid(
    image: np.ndarray,
    side: int,
    corruptions: Iterable[str] = ALL_CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    index: int = 0,
) -> np.ndarray:
    """One 32-px image under every corruption and severity, both ways to a ``side``-px corruption test:
    uint8 (corruptions, 1 + 2 x severities, side, side, 3) holding the clean image area-downsampled to
    ``side``, then CIFAR-10-C (made at 32 px) area-downsampled per severity, then the operations run on
    the downsampled image (``corruption_resolution="input"``). Same seed and index: the same draws."""
    if not MIN_SIZE <= side < SIZE:
        raise ConfigError(f"resolution must be from {MIN_SIZE} to {SIZE - 1} px, got {side}")
    image = check_images(np.asarray(image)[None])
    levels = check_severities(severities)
    small = area_downsample(image, side)
    rows = []
    for name in check_names(corruptions):
        made_at_32 = [area_downsample(corrupt(image, name, s, seed, [index]), side) for s in levels]
        made_at_side = [corrupt(small, name, s, seed, [index]) for s in levels]
        rows.append(np.concatenate([small, *made_at_32, *made_at_side]))
    return np.stack(rows)


def save_corruption_grid(
    path: str | os.PathLike[str],
    image: np.ndarray,
    corruptions: Iterable[str] = ALL_CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    index: int = 0,
    scale: int = 3,
    labels: Mapping[str, str] | None = None,
    resolution: int | None = None,
) -> Path:
    """Write a labelled PNG grid (rows: corruptions, columns: clean then severities) of one image.

    Each 32 px image is enlarged ``scale`` times (nearest neighbour). With ``resolution`` (px), the grid
    of :func:`resolution_grid` instead: per corruption the clean image at that side, CIFAR-10-C
    downsampled to it, then the operations run at it, every tile shown at the 32-px tiles' size. Returns
    the path."""
    names = check_names(corruptions)
    levels = check_severities(severities)
    rows = [(labels or {}).get(name, name.replace("_", " ")) for name in names]
    if resolution is None:
        grid = corruption_grid(image, names, levels, seed, index)
        return _draw(path, grid, rows, ["clean"] + [f"severity {s}" for s in levels], [], SIZE * scale)
    grid = resolution_grid(image, resolution, names, levels, seed, index)
    titles = [f"clean {resolution} px"] + [f"severity {s}" for s in levels] * 2
    groups = [
        (f"CIFAR-10-C (32 px), downsampled to {resolution} px", 1),
        (f"operations at {resolution} px", 1 + len(levels)),
    ]
    return _draw(path, grid, rows, titles, groups, SIZE * scale)


def _draw(
    path: str | os.PathLike[str],
    grid: np.ndarray,
    row_labels: list[str],
    titles: list[str],
    groups: list[tuple[str, int]],
    cell: int,
) -> Path:
    """Draw ``grid`` (rows, columns, h, w, 3) as a PNG of ``cell``-px tiles: a label left of each row, a
    title above each column, and for each ``(title, first column)`` of ``groups`` a wider gap before that
    column with the group's title above its columns."""
    gap, left, font = 4, 150, ImageFont.load_default(size=14)
    top = 26 * (2 if groups else 1)
    starts = {first for _, first in groups}
    xs, x = [], left
    for c in range(grid.shape[1]):
        x += 3 * gap if c in starts and c > 0 else 0
        xs.append(x)
        x += cell + gap
    canvas = Image.new("RGB", (x, top + len(row_labels) * (cell + gap)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(titles):
        draw.text((xs[c] + cell // 2, top - 13), title, fill="black", font=font, anchor="mm")
    bounds = [first for _, first in groups] + [grid.shape[1]]
    for (title, first), end in zip(groups, bounds[1:], strict=True):
        draw.text(((xs[first] + xs[end - 1] + cell) // 2, 13), title, fill="black", font=font, anchor="mm")
    for r, label in enumerate(row_labels):
        y = top + r * (cell + gap)
        draw.text((left - 8, y + cell // 2), label, fill="black", font=font, anchor="rm")
        for c, tile in enumerate(grid[r]):
            canvas.paste(Image.fromarray(tile).resize((cell, cell), Image.NEAREST), (xs[c], y))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out
