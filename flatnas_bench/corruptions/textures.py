"""Frost textures for the ``frost`` corruption: the original five photographs, or a procedural fallback.

The original CIFAR-10-C generator blends a random 32x32 crop of one of five frost photographs into the
image, each photograph read with OpenCV (``cv2.imread``, BGR) and shrunk by 0.2 with ``cv2.resize``
(bilinear). :func:`frost_textures` does the same with the five photographs shipped in
``flatnas_bench/bundled/frost/`` (byte-identical to those in the Apache-2.0 ``imagecorruptions`` 1.1.2
wheel; licence and checksums beside them). After the resize they are 120x180, 63x112, 63x112, 70x105
and 99x132 px (mean levels 130.8, 206.9, 206.9, 152.3, 123.4), and with the same texture pick and crop
``frost`` is bit-exact with the original.

Only where those files are missing (a stripped install) does :func:`frost_textures` fall back, with a
warning, to five procedural textures grown from fixed seeds, the same on every machine:

* a bluish-white haze (smooth multi-octave value noise), the fogged glass;
* dendritic ice crystals: curved stems with side branches at +-60 degrees (the hexagonal habit of ice),
  and side branches of those, drawn as anti-aliased lines; a narrow and a wide blur of the lines give the
  sharp needles and their glow.

They approximate the look of frost, not its pixels: brighter (mean level 173.0 over the five, against
164.1 for the photographs) and larger. Which source was used is :func:`frost_source`, and
``write_corruption_set`` records it in ``meta.json``.

Example::

    >>> from flatnas_bench.corruptions.textures import frost_source, frost_textures
    >>> frost_source(), [t.shape for t in frost_textures()][0]
    ('photographs', (120, 180, 3))
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

FROST_DIR = Path(__file__).resolve().parent.parent / "bundled" / "frost"
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")  # the original's order
FROST_SCALE = 0.2  # the original's resize factor of the photographs

# The fallback's textures: (height px, width px, number of stems, seed). The sizes are free choices, larger
# than the photographs after the original's 0.2 resize (120x180 and smaller, above); more stems mean denser
# frost.
TEXTURE_SPECS: tuple[tuple[int, int, int, int], ...] = (
    (176, 264, 70, 11),
    (200, 200, 90, 12),
    (160, 240, 55, 13),
    (216, 216, 110, 14),
    (184, 248, 80, 15),
)
TINT = np.array([0.84, 0.92, 1.0])  # RGB multiplier of the ice: a pale blue-white


def _value_noise(rng: np.random.Generator, shape: tuple[int, int], octaves: int = 4) -> np.ndarray:
    """Smooth noise in [0, 1] of ``shape``: random grids of 4, 8, 16, ... cells, bilinearly upsampled."""
    out = np.zeros(shape)
    for octave in range(octaves):
        cells = 4 * 2**octave
        grid = rng.random((cells + 1, cells + 1))
        out += (
            ndimage.zoom(grid, (shape[0] / (cells + 1), shape[1] / (cells + 1)), order=1)[
                : shape[0], : shape[1]
            ]
            / 2**octave
        )
    out -= out.min()
    return out / out.max()


def _branches(
    rng: np.random.Generator, starts: np.ndarray, angles: np.ndarray, lengths: np.ndarray, wiggle: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of curved lines, one per row: ``(x, y, angle)`` arrays of shape (lines, steps), 1 px apart.

    Points past a line's length are NaN. ``wiggle`` is the per-step standard deviation of the heading
    (radians)."""
    steps = max(int(np.ceil(lengths.max(initial=1.0))), 1)
    heading = angles[:, None] + np.cumsum(rng.normal(0.0, wiggle, (len(angles), steps)), axis=1)
    x = starts[:, :1] + np.cumsum(np.cos(heading), axis=1)
    y = starts[:, 1:] + np.cumsum(np.sin(heading), axis=1)
    beyond = np.arange(steps)[None, :] >= lengths[:, None]
    x[beyond] = np.nan
    y[beyond] = np.nan
    return x, y, heading


def _children(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, heading: np.ndarray, every: int, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Side branches at +-60 degrees every ``every`` steps; shorter towards the parent's tip.

    Returns ``(starts (k, 2), angles (k,), lengths (k,))``."""
    remaining = np.isfinite(x)[:, ::-1].cumsum(axis=1)[:, ::-1]  # steps left to the tip
    rows, cols = np.nonzero(np.isfinite(x[:, every::every]))
    cols = (cols + 1) * every
    rows, cols = np.repeat(rows, 2), np.repeat(cols, 2)
    side = np.tile([1.0, -1.0], len(rows) // 2)
    angles = heading[rows, cols] + side * np.pi / 3 + rng.normal(0.0, 0.15, len(rows))
    lengths = scale * remaining[rows, cols] * rng.uniform(0.5, 1.0, len(rows)) + 1.0
    return np.stack([x[rows, cols], y[rows, cols]], axis=1), angles, lengths


def _splat(image: np.ndarray, x: np.ndarray, y: np.ndarray, weight: float) -> None:
    """Add ``weight`` at the points (x, y) into ``image`` in place, with bilinear anti-aliasing."""
    keep = np.isfinite(x) & (x >= 0) & (y >= 0) & (x < image.shape[1] - 1) & (y < image.shape[0] - 1)
    x, y = x[keep], y[keep]
    x0, y0 = x.astype(int), y.astype(int)
    fx, fy = x - x0, y - y0
    flat = image.reshape(-1)
    width = image.shape[1]
    for dy, dx, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (0, 1, fx * (1 - fy)),
        (1, 0, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        flat += weight * np.bincount((y0 + dy) * width + x0 + dx, weights=w, minlength=flat.size)


def frost_texture(height: int, width: int, stems: int, seed: int) -> np.ndarray:
    """One procedural frost texture, uint8 (height, width, 3); same arguments, same pixels."""
    rng = np.random.default_rng(seed)
    lines = np.zeros((height, width))
    margin = 30.0  # px: stems may start outside the texture and grow into it
    starts = rng.uniform([-margin, -margin], [width + margin, height + margin], (stems, 2))
    level = (starts, rng.uniform(0, 2 * np.pi, stems), rng.uniform(25.0, 70.0, stems))
    for weight, wiggle, every, scale in ((1.0, 0.06, 4, 0.35), (0.75, 0.04, 3, 0.3), (0.55, 0.03, 0, 0.0)):
        x, y, heading = _branches(rng, *level, wiggle=wiggle)
        _splat(lines, x, y, weight)
        if every:
            level = _children(rng, x, y, heading, every, scale)
    needles = 1.0 - np.exp(-1.6 * ndimage.gaussian_filter(lines, 0.5))
    glow = 1.0 - np.exp(-0.8 * ndimage.gaussian_filter(lines, 2.5))
    haze = 0.35 + 0.35 * _value_noise(rng, (height, width))
    value = np.clip(haze + 0.55 * needles + 0.35 * glow, 0.0, 1.0)
    return (value[..., None] * TINT * 255.0).astype(np.uint8)


def frost_photographs(folder: Path = FROST_DIR) -> tuple[np.ndarray, ...] | None:
    """The five frost photographs as the original uses them, uint8 RGB, or None if any file is missing.

    Each is read by ``cv2.imread`` (BGR), resized by 0.2 with ``cv2.resize`` (its default bilinear
    interpolation, whose fixed-point arithmetic only OpenCV reproduces) and turned to RGB."""
    paths = [folder / name for name in FROST_FILES]
    if not all(path.is_file() for path in paths):
        return None
    textures = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            return None
        small = cv2.resize(bgr, (0, 0), fx=FROST_SCALE, fy=FROST_SCALE)
        textures.append(np.ascontiguousarray(small[..., ::-1]))
    return tuple(textures)


@functools.lru_cache(maxsize=1)
def _frost() -> tuple[str, tuple[np.ndarray, ...]]:
    textures = frost_photographs(FROST_DIR)
    source = "photographs"
    if textures is None:
        warnings.warn(
            f"frost photographs not found in {FROST_DIR}: frost uses procedural textures, "
            "so its images differ from CIFAR-10-C's",
            RuntimeWarning,
            stacklevel=3,
        )
        textures, source = tuple(frost_texture(*spec) for spec in TEXTURE_SPECS), "procedural"
    for texture in textures:
        texture.setflags(write=False)
    return source, textures


def frost_source() -> str:
    """``"photographs"`` (the original's, bit-exact frost) or ``"procedural"`` (the fallback)."""
    return _frost()[0]


def frost_textures() -> tuple[np.ndarray, ...]:
    """The five frost textures the ``frost`` corruption picks from (uint8 RGB, read-only, cached)."""
    return _frost()[1]
