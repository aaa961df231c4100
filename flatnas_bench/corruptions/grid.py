"""Pictures of the corruptions: one test image under every corruption and severity, as an array or a
labelled PNG (``flatnas-bench corrupt-grid``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from flatnas_bench.corruptions.operations import (
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


def save_corruption_grid(
    path: str | os.PathLike[str],
    image: np.ndarray,
    corruptions: Iterable[str] = ALL_CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    index: int = 0,
    scale: int = 3,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Write a labelled PNG grid (rows: corruptions, columns: clean then severities) of one image.

    Each 32 px image is enlarged ``scale`` times (nearest neighbour). Returns the path."""
    names = check_names(corruptions)
    levels = check_severities(severities)
    grid = corruption_grid(image, names, levels, seed, index)
    cell, gap, left, top = SIZE * scale, 4, 150, 26
    canvas = Image.new("RGB", (left + grid.shape[1] * (cell + gap), top + len(names) * (cell + gap)), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=14)
    for c, title in enumerate(["clean"] + [f"severity {s}" for s in levels]):
        draw.text(
            (left + c * (cell + gap) + cell // 2, top // 2), title, fill="black", font=font, anchor="mm"
        )
    for r, name in enumerate(names):
        y = top + r * (cell + gap)
        label = (labels or {}).get(name, name.replace("_", " "))
        draw.text((left - 8, y + cell // 2), label, fill="black", font=font, anchor="rm")
        for c, tile in enumerate(grid[r]):
            enlarged = Image.fromarray(tile).resize((cell, cell), Image.NEAREST)
            canvas.paste(enlarged, (left + c * (cell + gap), y))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out
