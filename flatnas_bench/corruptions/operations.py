"""CIFAR-10-C / CIFAR-100-C corruptions: the 15 benchmark and 4 extra operations, and set generation.

Each operation follows Hendrycks & Dietterich's CIFAR generator (``make_cifar_c.py``) with its CIFAR
parameters (not the stronger ImageNet-C ones), vectorised over a batch of 32x32 RGB uint8 images where
that keeps the original's arithmetic. Output is uint8 by truncation, as in the original. Given the same
random draws, every corruption gives the original's pixels, checked on real CIFAR-10 test images by
``tests/test_corruptions.py`` against golden outputs of the original functions (README: the measured
figures). How each of the original's libraries is matched:

* OpenCV's own arithmetic (``Canny``, ``distanceTransform`` with its 5x5 mask, ``equalizeHist``,
  ``filter2D``, ``blur``, ``getAffineTransform`` / ``warpAffine``, ``resize``, ``cvtColor``,
  ``imread``) is OpenCV's: we call ``opencv-python-headless``, image by image where the original does.
* ImageMagick's motion blur (``motion_blur``, the snow streaks) is rebuilt in numpy: its one-sided
  Gaussian line kernel in 16-bit quanta, rounded to a quantum and truncated to 8 bits as Debian's
  ImageMagick 6.9 Q16 writes its PNG (bit-exact with it).
* scikit-image / scipy / Pillow steps are written with the same operations in the same precision
  (float64 where the original is, float32 where it is); Pillow's BOX resize bit-exactly in numpy.
* ``frost``: the original five photographs, shipped with the package
  (:mod:`flatnas_bench.corruptions.textures`; procedural textures only as a fallback with a warning).
* ``spatter``: the original's uint8 wrap-around of the liquid layer is reproduced (at severity 3); an
  image whose water layer is empty stays clean, where the original divides 0 by 0.
* ``glass_blur``: the original's pixel "swap" ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` acts on numpy
  views, so it really copies ``x[h', w']`` into ``x[h, w]``; we do that copy (it is what the official
  files contain), in the original sweep order.

Randomness: every image draws from its own generator seeded by ``(seed, crc32(name), severity, index)``,
where ``index`` is the image's position in the whole test set, so results do not depend on how the set is
split into batches. The original sets no seed.

Example::

    >>> from flatnas_bench.corruptions.operations import corrupt, generate_corruption_set
    >>> foggy = corrupt(test_x[:100], "fog", severity=3, seed=0)      # uint8 (100, 32, 32, 3)
    >>> cset = generate_corruption_set(test_x, test_y, seed=0)         # 15 benchmark x 5 severities
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import multiprocessing
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage, sparse

from flatnas_bench.core.errors import ConfigError, DataError
from flatnas_bench.corruptions.robustness import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    CorruptionSet,
    read_meta,
    save_corruption,
    save_labels,
)
from flatnas_bench.corruptions.textures import frost_source, frost_textures

# Bumped whenever the pixels a seed produces change: 2 = parity with make_cifar_c.py (package 0.2).
GENERATOR_VERSION = 2

__all__ = [
    "ALL_CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "Corruption",
    "corrupt",
    "corruption_grid",
    "generate_corruption_set",
    "iter_corruptions",
    "list_corruptions",
    "save_corruption_grid",
    "write_corruption_set",
]

SIZE = 32  # px: every parameter below is the original's CIFAR (32x32) setting
CHUNK = 250  # images per job when generating a set (bounds memory, feeds the progress bar)


class _ImageRngs:
    """One generator per image, seeded by (seed, corruption, severity, image index)."""

    def __init__(self, seed: int, name: str, severity: int, indices: np.ndarray) -> None:
        self.keys = [(seed, zlib.crc32(name.encode()), severity, int(i)) for i in indices]

    def generators(self) -> list[np.random.Generator]:
        """Fresh generators, one per image: draw everything an image needs from one pass over them."""
        return [np.random.default_rng(key) for key in self.keys]

    def draw(self, fn: Callable[[np.random.Generator], Any]) -> Any:
        """Call ``fn`` once per image with its generator; stack the results (arrays, or tuples of them)."""
        results = [fn(g) for g in self.generators()]
        if isinstance(results[0], tuple):
            return tuple(np.stack(parts) for parts in zip(*results, strict=True))
        return np.stack(results)


Operation = Callable[[np.ndarray, Any, _ImageRngs], np.ndarray]


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: ``apply(x uint8 (n, 32, 32, 3), params, rngs)`` returns values in [0, 255]."""

    name: str
    params: tuple[Any, ...]  # one entry per severity 1..5
    apply: Operation
    batch: int = 50  # images per ``apply`` call: larger batches spill the float64 temporaries out of cache

    @property
    def benchmark(self) -> bool:
        """True for the 15 corruptions that mCE averages over."""
        return self.name in BENCHMARK_CORRUPTIONS


CORRUPTIONS: dict[str, Corruption] = {}


def _register(
    name: str, params: Sequence[Any], batch: int = Corruption.batch
) -> Callable[[Operation], Operation]:
    def decorate(fn: Operation) -> Operation:
        CORRUPTIONS[name] = Corruption(name, tuple(params), fn, batch)
        return fn

    return decorate


def list_corruptions(kind: str = "all") -> tuple[str, ...]:
    """Corruption names in the official order: ``kind`` is ``"all"``, ``"benchmark"`` or ``"extra"``."""
    kinds = {"all": ALL_CORRUPTIONS, "benchmark": BENCHMARK_CORRUPTIONS, "extra": EXTRA_CORRUPTIONS}
    if kind not in kinds:
        raise ConfigError(f"unknown corruption kind {kind!r}; known: {', '.join(kinds)}")
    return kinds[kind]


# ---------------------------------------------------------------------------------------------------
# Shared numerical helpers (batched: images are (n, H, W, C) or (n, H, W))


def _unit(x: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float64 [0, 1]."""
    return x / 255.0


def _to255(x: np.ndarray) -> np.ndarray:
    """float [0, 1] -> clipped [0, 255], the original's ``np.clip(x, 0, 1) * 255``."""
    return np.clip(x, 0.0, 1.0) * 255.0


def _correlate(x: np.ndarray, kernel: np.ndarray, mode: str) -> np.ndarray:
    """2-D correlation of every image (and channel) of a float batch with ``kernel`` (odd sizes).

    ``mode`` names the border as scipy does: ``nearest`` (OpenCV REPLICATE), ``mirror`` (OpenCV
    REFLECT_101, its default), ``reflect`` (half-sample symmetric)."""
    return ndimage.correlate(x, kernel.reshape(1, *kernel.shape, *[1] * (x.ndim - 3)), mode=mode)


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy's 1-D Gaussian weights (radius int(truncate * sigma + 0.5)), computed as scipy does."""
    radius = int(truncate * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return np.ones(1)
    t = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * t**2)
    return weights / weights.sum()


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """skimage ``filters.gaussian`` over the two spatial axes of a float batch (channels untouched).

    Same weights, same axis order and the input's precision (float32 stays float32, float64 stays
    float64), as scipy's ``gaussian_filter`` under skimage computes it."""
    k = _gaussian_kernel(sigma, truncate)
    out = x
    for axis in (1, 2):
        out = ndimage.correlate1d(out, k, axis=axis, mode=mode)
    return out


def _index(i: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Map integer positions outside [0, n) back inside, for the border ``mode`` (scipy names)."""
    if mode == "nearest":
        return np.clip(i, 0, n - 1)
    period = 2 * n if mode == "reflect" else 2 * n - 2
    i = np.mod(i, period)
    return np.where(i >= n, period - i - (1 if mode == "reflect" else 0), i)


def _bilinear(x: np.ndarray, ys: np.ndarray, xs: np.ndarray, mode: str) -> np.ndarray:
    """scipy ``map_coordinates(order=1)`` of every image of ``x`` (n, H, W, C) at float positions ``ys``,
    ``xs`` (n, H', W'), with its arithmetic: float64 weights (1 - t, t) per axis, the four neighbours'
    ``value * w_y * w_x`` added in scipy's order, the result in the input's dtype. Neighbours outside
    the image are taken by the border ``mode``."""
    n, h, w = x.shape[:3]
    y0, x0 = np.floor(ys), np.floor(xs)
    ty, tx = (ys - y0)[..., None], (xs - x0)[..., None]
    wy, wx = (1.0 - ty, ty), (1.0 - tx, tx)
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    base = (np.arange(n) * h * w)[:, None, None]
    rows = [base + _index(y0 + d, h, mode) * w for d in (0, 1)]
    cols = [_index(x0 + d, w, mode) for d in (0, 1)]
    flat = x.reshape(n * h * w, -1).astype(np.float64)
    out = np.zeros((*ys.shape, x.shape[-1]), dtype=np.float64)
    for a, b in itertools.product((0, 1), repeat=2):
        out += np.take(flat, rows[a] + cols[b], axis=0) * wy[a] * wx[b]
    return out.astype(x.dtype)


def _shift_gather(x: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """``out[k, y, x] = x[k, y + dy[k], x + dx[k]]`` with edge pixels repeated; dy, dx int (n,)."""
    n, h, w = x.shape[:3]
    rows = np.clip(np.arange(h)[None, :] + dy[:, None], 0, h - 1)
    cols = np.clip(np.arange(w)[None, :] + dx[:, None], 0, w - 1)
    index = (np.arange(n) * h * w)[:, None, None] + rows[:, :, None] * w + cols[:, None, :]
    return np.take(x.reshape(n * h * w, *x.shape[3:]), index, axis=0)


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick 6 ``-motion-blur radius x sigma + angle`` on a uint8 batch, one angle (degrees) per
    image, as the original's PNG round trip through Wand returns it: uint8.

    ImageMagick averages ``width = 2 * ceil(radius) + 1`` pixels along the angle with one-sided Gaussian
    weights ``exp(-i^2 / (2 sigma^2))``, i = 0..width-1, normalised by their running sum, taking pixel i
    at offset ``(ceil(i cos a - 0.5), ceil(i sin a - 0.5))`` and repeating edge pixels outside the image.
    It sums 16-bit quanta (level * 257), rounds to a quantum, and its 8-bit PNG keeps ``quantum // 257``:
    a truncation, so about half the pixels are one level below a rounded blur. Bit-exact with Debian's
    ImageMagick 6.9.11 Q16."""
    width = int(2 * np.ceil(radius) + 1)
    i = np.arange(width, dtype=np.float64)
    kernel = np.exp(-(i * i) / (2.0 * sigma * sigma)) / (np.sqrt(2.0 * np.pi) * sigma)
    kernel /= np.cumsum(kernel)[-1]
    rad = np.pi * np.asarray(angles, dtype=np.float64) / 180.0
    along_x, along_y = width * np.cos(rad), width * np.sin(rad)
    length = np.hypot(along_y, along_x)
    total = np.zeros(x.shape, dtype=np.float64)
    for k in range(width):
        dx = np.ceil(k * along_x / length - 0.5).astype(np.int64)
        dy = np.ceil(k * along_y / length - 0.5).astype(np.int64)
        total += kernel[k] * (_shift_gather(x, dy, dx) * 257.0)  # weight times 16-bit quantum
    return (np.floor(np.clip(total, 0.0, 65535.0) + 0.5) // 257).astype(np.uint8)


@functools.lru_cache(maxsize=128)
def _zoom_matrix(zoom: float) -> np.ndarray:
    """The (32, 32) matrix of the original ``clipped_zoom`` along one axis.

    ``clipped_zoom`` takes the central ``ceil(32 / zoom)`` pixels, zooms them with scipy's order-1
    spline and trims the centre 32; that is linear, so we get it by zooming an identity matrix."""
    crop = int(np.ceil(SIZE / zoom))
    top = (SIZE - crop) // 2
    zoomed = ndimage.zoom(np.eye(crop), (zoom, 1.0), order=1)
    trim = (zoomed.shape[0] - SIZE) // 2
    matrix = np.zeros((SIZE, SIZE))
    matrix[:, top : top + crop] = zoomed[trim : trim + SIZE]
    return matrix


@functools.lru_cache(maxsize=64)
def _zoom_operator(zoom: float) -> sparse.csr_matrix:
    """The 2-D ``clipped_zoom`` by ``zoom`` as a sparse (1024, 1024) matrix on flattened images."""
    return sparse.csr_matrix(np.kron(_zoom_matrix(zoom), _zoom_matrix(zoom)))


def _clipped_zoom_sum(x: np.ndarray, zooms: Sequence[float]) -> np.ndarray:
    """Sum over ``zooms`` of the original ``clipped_zoom`` of every image of a batch (n, 32, 32, C).

    As in the original, each zoom is computed in float64 (as scipy's ``zoom`` does), cast to the input's
    dtype and added in turn in that dtype: a float32 sum in another order differs in the last bit."""
    n, h, w, c = x.shape
    flat = np.moveaxis(x.reshape(n, h * w, c), 1, 0).reshape(h * w, n * c).astype(np.float64)
    out = np.zeros((h * w, n * c), dtype=x.dtype)
    for zoom in zooms:
        out += (_zoom_operator(float(zoom)) @ flat).astype(x.dtype)
    return np.moveaxis(out.reshape(h * w, n, c), 0, 1).reshape(x.shape)


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """skimage ``color.rgb2hsv`` with its arithmetic (red's formula, overwritten where green and then
    blue is the maximum, so ties go to blue, then green), vectorised over any batch of channel planes."""
    r, g, b = np.moveaxis(rgb, -1, 0).copy()  # contiguous planes: the channel-axis reductions were slower
    v = np.maximum(np.maximum(r, g), b)
    delta = v - np.minimum(np.minimum(r, g), b)
    flat = delta == 0
    safe = np.where(flat, 1.0, delta)
    h = (g - b) / safe
    green = g == v
    h[green] = 2.0 + (b[green] - r[green]) / safe[green]
    blue = b == v
    h[blue] = 4.0 + (r[blue] - g[blue]) / safe[blue]
    h = (h / 6.0) % 1.0
    h[flat] = 0.0
    s = delta / np.where(v == 0, 1.0, v)
    s[flat] = 0.0
    return np.stack([h, s, v], axis=-1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """skimage ``color.hsv2rgb`` with its arithmetic, vectorised over any batch: sector i = floor(6 h),
    f = 6 h - i, p = v (1 - s), q = v (1 - f s), t = v (1 - (1 - f) s), each channel picked by sector."""
    h, s, v = np.moveaxis(hsv, -1, 0).copy()
    sector = np.floor(h * 6)
    f = h * 6 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    sector = sector.astype(np.int8) % 6  # h in [0, 1], so 0..6 before the modulo
    out = np.empty(hsv.shape, hsv.dtype)
    for k, options in enumerate(((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))):
        out[..., k] = np.choose(sector, options)
    return out


@functools.lru_cache(maxsize=32)
def _box_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's BOX resampling from ``n_in`` to ``n_out`` pixels as ``(index, weight)``, both (n_out, k):
    output o is sum_t weight[o, t] * input[index[o, t]], weights in Pillow's 22-bit fixed point."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    matrix = np.zeros((n_out, n_in))
    for out in range(n_out):
        center = (out + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        taps = (np.arange(lo, hi) - center + 0.5) / filterscale
        weights = ((taps > -0.5) & (taps <= 0.5)).astype(float)
        matrix[out, lo:hi] = weights / weights.sum()
    matrix = np.trunc(0.5 + matrix * (1 << 22))
    k = int((matrix > 0).sum(axis=1).max())  # a box covers k consecutive inputs at most
    first = np.minimum(np.argmax(matrix > 0, axis=1), n_in - k)
    index = first[:, None] + np.arange(k)
    return index, np.take_along_axis(matrix, index, axis=1)


def _pil_box_resize(x: np.ndarray, size: int) -> np.ndarray:
    """Pillow ``Image.resize((size, size), Image.BOX)`` on a uint8 batch, bit-exact.

    Pillow resamples columns, rounds to uint8, then rows, with 22-bit fixed-point weights."""

    def apply(x: np.ndarray, axis: int) -> np.ndarray:
        index, weight = _box_taps(x.shape[axis], size)
        moved = np.moveaxis(x, axis, -1).astype(np.float64)
        acc = float(1 << 21)
        for t in range(index.shape[1]):
            acc = acc + np.take(moved, index[:, t], axis=-1) * weight[:, t]
        return np.moveaxis(np.clip(np.floor(acc / (1 << 22)), 0, 255), -1, axis).astype(np.uint8)

    return apply(apply(x, 2), 1)


# ---------------------------------------------------------------------------------------------------
# The 15 benchmark corruptions


@_register("gaussian_noise", (0.04, 0.06, 0.08, 0.09, 0.10))
def _gaussian_noise(x: np.ndarray, std: float, rngs: _ImageRngs) -> np.ndarray:
    """x + N(0, std) in [0, 1] units."""
    return _to255(_unit(x) + std * rngs.draw(lambda g: g.standard_normal(x.shape[1:])))


@_register("shot_noise", (500, 250, 100, 75, 50))
def _shot_noise(x: np.ndarray, c: float, rngs: _ImageRngs) -> np.ndarray:
    """Poisson(x * c) / c: photon noise at c photons per unit intensity."""
    lam = _unit(x) * c
    return _to255(np.stack([g.poisson(image) for g, image in zip(rngs.generators(), lam, strict=True)]) / c)


@_register("impulse_noise", (0.01, 0.02, 0.03, 0.05, 0.07))
def _impulse_noise(x: np.ndarray, amount: float, rngs: _ImageRngs) -> np.ndarray:
    """Salt and pepper: each value flips with probability ``amount``, half to 0, half to 1
    (skimage ``random_noise(mode="s&p")``)."""
    flip, salt = rngs.draw(lambda g: (g.random(x.shape[1:]) <= amount, g.random(x.shape[1:]) <= 0.5))
    out = _unit(x)
    out[flip & salt] = 1.0
    out[flip & ~salt] = 0.0
    return _to255(out)


@functools.lru_cache(maxsize=8)
def _disk(radius: float, alias_blur: float) -> np.ndarray:
    """The original's antialiased disk: a normalised float32 disk on the 17x17 grid -8..8 smoothed by
    OpenCV's ``GaussianBlur`` (3x3, sigma ``alias_blur``), cropped to its non-zero support (the zeros
    add nothing to the correlation)."""
    t = np.arange(-8, 9)
    disk = (t[:, None] ** 2 + t[None, :] ** 2 <= radius**2).astype(np.float32)
    disk /= disk.sum()
    kernel = cv2.GaussianBlur(disk, ksize=(3, 3), sigmaX=alias_blur)
    rows, cols = np.nonzero(kernel)
    return kernel[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


@_register("defocus_blur", ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)))
def _defocus_blur(x: np.ndarray, p: tuple[float, float], rngs: _ImageRngs) -> np.ndarray:
    """Convolution with an antialiased disk (radius px, alias sigma px); OpenCV's REFLECT_101 border."""
    return _to255(_correlate(_unit(x), _disk(*p), "mirror"))


# its sweep is a Python loop over positions, vectorised over the batch: larger batches amortise it
@_register("glass_blur", ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)), batch=250)
def _glass_blur(x: np.ndarray, p: tuple[float, int, int], rngs: _ImageRngs) -> np.ndarray:
    """Gaussian blur (sigma px), to uint8, local pixel shuffling, Gaussian blur again.

    The shuffle sweeps h and w from 31 - delta down to delta + 1, ``iterations`` times, setting pixel
    (h, w) to pixel (h + dy, w + dx), dx, dy uniform integers in [-delta, delta): the original's tuple
    "swap" of numpy views is this copy. Sequential within an image, vectorised across images."""
    sigma, delta, iterations = p
    img = (_gaussian(_unit(x), sigma) * 255).astype(np.uint8)
    sweep = [(h, w) for h in range(SIZE - delta, delta, -1) for w in range(SIZE - delta, delta, -1)]
    shifts = rngs.draw(lambda g: g.integers(-delta, delta, size=(iterations, len(sweep), 2)))
    batch = np.arange(len(img))
    for it in range(iterations):
        for k, (h, w) in enumerate(sweep):
            dx, dy = shifts[:, it, k, 0], shifts[:, it, k, 1]
            img[:, h, w] = img[batch, h + dy, w + dx]
    return _to255(_gaussian(_unit(img), sigma))


@_register("motion_blur", ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)), batch=25)
def _motion_blur_op(x: np.ndarray, p: tuple[float, float], rngs: _ImageRngs) -> np.ndarray:
    """ImageMagick motion blur (radius px, sigma px) at an angle uniform in [-45, 45] degrees."""
    angles = rngs.draw(lambda g: g.uniform(-45, 45))
    return _motion_blur(x, *p, angles)


@_register("zoom_blur", tuple(np.arange(1, top, 0.01) for top in (1.06, 1.11, 1.16, 1.21, 1.26)))
def _zoom_blur(x: np.ndarray, zooms: np.ndarray, rngs: _ImageRngs) -> np.ndarray:
    """Mean of x and its centre zooms by each factor (the original's ``np.arange(1, 1 + s, 0.01)``,
    floating-point end included: 7, 12, 16, 21, 26 factors)."""
    img = _unit(x).astype(np.float32)
    return _to255((img + _clipped_zoom_sum(img, zooms)) / (len(zooms) + 1))


@_register(
    "snow",
    (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
)
def _snow(x: np.ndarray, p: tuple[float, ...], rngs: _ImageRngs) -> np.ndarray:
    """Snow flakes (normal(loc, scale) zoomed, thresholded, motion-blurred at [-135, -45] degrees, as 8-bit
    images like the original's PNG round trip), added twice (and rotated 180 degrees) to an image paled
    towards OpenCV's grey (``cvtColor`` RGB2GRAY, float32)."""
    loc, scale, zoom, threshold, radius, sigma, mix = p
    flakes, angles = rngs.draw(lambda g: (g.normal(loc, scale, (SIZE, SIZE)), g.uniform(-135, -45)))
    flakes = _clipped_zoom_sum(flakes[..., None], [zoom])
    flakes[flakes < threshold] = 0
    flakes = (np.clip(flakes, 0, 1) * 255).astype(np.uint8)
    flakes = _motion_blur(flakes, radius, sigma, angles) / 255.0
    img = _unit(x).astype(np.float32)
    # cvtColor is per pixel, so the batch goes through as one tall image
    gray = cv2.cvtColor(img.reshape(-1, SIZE, 3), cv2.COLOR_RGB2GRAY).reshape(*img.shape[:3], 1)
    img = mix * img + (1 - mix) * np.maximum(img, gray * 1.5 + 0.5)
    return _to255(img + flakes + flakes[:, ::-1, ::-1])


def _frost_picks(rngs: _ImageRngs, textures: Sequence[np.ndarray]) -> np.ndarray:
    """Each image's frost crop as the original draws it: int (n, 3) rows (texture, top, left), the
    texture uniform over the five, then the crop's top and left uniform in [0, size - 32)."""

    def pick(g: np.random.Generator) -> np.ndarray:
        k = int(g.integers(len(textures)))
        height, width = textures[k].shape[:2]
        return np.array([k, g.integers(0, height - SIZE), g.integers(0, width - SIZE)])

    return rngs.draw(pick)


@_register("frost", ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)))
def _frost(x: np.ndarray, p: tuple[float, float], rngs: _ImageRngs) -> np.ndarray:
    """a * x + b * frost (both 0..255), frost a random 32x32 crop of one of the five frost photographs
    after the original's 0.2 resize (:func:`~flatnas_bench.corruptions.textures.frost_textures`)."""
    textures = frost_textures()
    crops = np.stack(
        [textures[k][top : top + SIZE, left : left + SIZE] for k, top, left in _frost_picks(rngs, textures)]
    )
    return np.clip(p[0] * x + p[1] * crops.astype(np.float64), 0, 255)


def _plasma_fractal(uniforms: np.ndarray, decay: float, size: int = SIZE) -> np.ndarray:
    """Diamond-square height maps in [0, 1], one per row of ``uniforms`` ((n, size**2 - 1) in [0, 1)).

    The original's ``plasma_fractal``: each new point is the mean of its neighbours (corners for
    squares, neighbours for diamonds) plus wibble * uniform(-wibble, wibble); wibble starts at 100 and
    is divided by ``decay`` per level."""
    n = len(uniforms)
    maps = np.zeros((n, size, size))
    used = 0
    step, wibble = size, 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        nonlocal used
        count = total[0].size
        noise = uniforms[:, used : used + count].reshape(total.shape)
        used += count
        return total / 4 + wibble * (-wibble + 2 * wibble * noise)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=1)
        squares = squares + np.roll(squares, -1, axis=2)
        maps[:, half:size:step, half:size:step] = wibbled_mean(squares)
        centres = maps[:, half:size:step, half:size:step]
        corners = maps[:, 0:size:step, 0:size:step]
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0:size:step, half:size:step] = wibbled_mean(left)
        top = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half:size:step, 0:size:step] = wibbled_mean(top)
        step //= 2
        wibble /= decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


@_register("fog", ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)))
def _fog(x: np.ndarray, p: tuple[float, float], rngs: _ImageRngs) -> np.ndarray:
    """x + amount * plasma fractal (wibble decay), rescaled by max(x) / (max(x) + amount)."""
    amount, decay = p
    img = _unit(x)
    peak = img.max(axis=(1, 2, 3), keepdims=True)
    plasma = _plasma_fractal(rngs.draw(lambda g: g.random(SIZE * SIZE - 1)), decay)
    return _to255((img + amount * plasma[..., None]) * peak / (peak + amount))


@_register("brightness", (0.05, 0.1, 0.15, 0.2, 0.3))
def _brightness(x: np.ndarray, c: float, rngs: _ImageRngs) -> np.ndarray:
    """In HSV, V = clip(V + c)."""
    hsv = _rgb_to_hsv(_unit(x))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _to255(_hsv_to_rgb(hsv))


@_register("contrast", (0.75, 0.5, 0.4, 0.3, 0.15))
def _contrast(x: np.ndarray, c: float, rngs: _ImageRngs) -> np.ndarray:
    """(x - per-image, per-channel mean) * c + mean."""
    img = _unit(x)
    mean = img.mean(axis=(1, 2), keepdims=True)
    return _to255((img - mean) * c + mean)


def _affine_warp(img: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """OpenCV ``warpAffine`` (bilinear, REFLECT_101 border) of every float32 image of a batch by the affine
    map that sends the points (26, 26), (26, 6), (6, 6) (x, y) to themselves plus ``offsets`` (n, 3, 2).

    OpenCV's own ``getAffineTransform`` and ``warpAffine``: the latter resolves source positions in its
    fixed point (1/32 px), which only OpenCV reproduces exactly. OpenCV 3.4 and 4.x agree bit for bit
    (3.x made the official files); 5.0 computes it otherwise, hence the dependency's pin below 5."""
    centre, third = SIZE // 2, SIZE // 3
    src = np.array(
        [[centre + third] * 2, [centre + third, centre - third], [centre - third] * 2], dtype=np.float32
    )
    out = np.empty_like(img)
    for k, (image, offset) in enumerate(zip(img, offsets.astype(np.float32), strict=True)):
        matrix = cv2.getAffineTransform(src, src + offset)
        out[k] = cv2.warpAffine(image, matrix, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT_101)
    return out


@_register(
    "elastic_transform",
    tuple(
        (SIZE * a, SIZE * s, SIZE * f)
        for a, s, f in (
            (0, 0, 0.08),
            (0.05, 0.2, 0.07),
            (0.08, 0.06, 0.06),
            (0.1, 0.04, 0.05),
            (0.1, 0.03, 0.03),
        )
    ),
)
def _elastic_transform(x: np.ndarray, p: tuple[float, float, float], rngs: _ImageRngs) -> np.ndarray:
    """Random affine (corner points jittered by +-affine px, REFLECT_101 border), then an elastic
    displacement: uniform(-1, 1) fields smoothed by a Gaussian (sigma px, reflect, truncate 3), times
    alpha px, resampled bilinearly with a reflect border."""
    alpha, sigma, affine = p
    jitter, fields = rngs.draw(
        lambda g: (g.uniform(-affine, affine, (3, 2)), g.uniform(-1, 1, (2, SIZE, SIZE)))
    )
    img = _unit(x).astype(np.float32)
    img = _affine_warp(img, jitter)
    dx = (_gaussian(fields[:, 0], sigma, "reflect", truncate=3.0) * alpha).astype(np.float32)
    dy = (_gaussian(fields[:, 1], sigma, "reflect", truncate=3.0) * alpha).astype(np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return _to255(_bilinear(img, yy + dy, xx + dx, mode="reflect"))


@_register("pixelate", (0.95, 0.9, 0.85, 0.75, 0.65))
def _pixelate(x: np.ndarray, c: float, rngs: _ImageRngs) -> np.ndarray:
    """Pillow BOX resize to int(32 c) px and back to 32 px."""
    return _pil_box_resize(_pil_box_resize(x, int(SIZE * c)), SIZE)


@_register("jpeg_compression", (80, 65, 58, 50, 40))
def _jpeg_compression(x: np.ndarray, quality: int, rngs: _ImageRngs) -> np.ndarray:
    """Pillow JPEG encode at ``quality`` and decode, image by image."""
    out = np.empty_like(x)
    for k, image in enumerate(x):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        out[k] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


# ---------------------------------------------------------------------------------------------------
# The 4 extra corruptions


@_register("speckle_noise", (0.06, 0.10, 0.12, 0.16, 0.20))
def _speckle_noise(x: np.ndarray, c: float, rngs: _ImageRngs) -> np.ndarray:
    """x + x * N(0, c)."""
    img = _unit(x)
    return _to255(img + img * (c * rngs.draw(lambda g: g.standard_normal(x.shape[1:]))))


@_register("gaussian_blur", (0.4, 0.6, 0.7, 0.8, 1.0))
def _gaussian_blur(x: np.ndarray, sigma: float, rngs: _ImageRngs) -> np.ndarray:
    """skimage Gaussian blur, sigma in px (nearest border, truncate 4)."""
    return _to255(_gaussian(_unit(x), sigma))


_EMBOSS = np.array([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]], dtype=np.float32)
_WATER = np.array([175 / 255, 238 / 255, 238 / 255], dtype=np.float32)  # pale turquoise (RGB), float32
_MUD = np.array([63 / 255, 42 / 255, 20 / 255], dtype=np.float32)  # mud brown (RGB), float32 as there


def _water_relief(layer: np.ndarray) -> np.ndarray:
    """The original's relief of one uint8 water layer (32, 32) -> float32, with OpenCV's operations.

    Distance to the layer's Canny edges (OpenCV's ``distanceTransform`` DIST_L2 with its 5x5 mask, an
    approximation of the Euclidean distance that the original's images carry), capped at 20 px,
    box-blurred to uint8, histogram-equalised, embossed and box-blurred again (uint8 results, OpenCV's
    rounding)."""
    dist = cv2.distanceTransform(255 - cv2.Canny(layer, 50, 150), cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
    return cv2.blur(cv2.filter2D(dist, cv2.CV_8U, _EMBOSS), (3, 3)).astype(np.float32)


@_register(
    "spatter",
    (
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
)
def _spatter(x: np.ndarray, p: tuple[float, ...], rngs: _ImageRngs) -> np.ndarray:
    """Liquid layer = Gaussian-blurred normal(loc, scale) noise, zero below the threshold.

    Mode 0 (water): an embossed, equalised distance-to-edge map of the layer (:func:`_water_relief`)
    tints the image pale turquoise; an image whose layer is empty stays clean, where the original divides
    0 by 0. Mode 1 (mud): blurred blobs (sigma = intensity) above 0.8 replace the image with mud brown."""
    loc, scale, sigma, threshold, intensity, mode = p
    liquid = _gaussian(rngs.draw(lambda g: g.normal(loc, scale, (SIZE, SIZE))), sigma)
    liquid[liquid < threshold] = 0
    img = _unit(x).astype(np.float32)
    if mode == 0:
        # The original casts liquid * 255 to uint8 unclipped: a level of 256 or more wraps around modulo
        # 256 (1.073 -> 273.6 -> 17). At severity 3 (scale 0.3) about 18 % of the layers reach above 1,
        # and the files the original saves hold the wrapped layers, so we wrap too.
        layer = (np.floor(liquid * 255).astype(np.int64) % 256).astype(np.uint8)
        m = layer * np.stack([_water_relief(image) for image in layer])
        peak = m.max(axis=(1, 2), keepdims=True)
        m = np.where(peak > 0, m / np.where(peak > 0, peak, 1), 0) * np.float32(intensity)
        return _to255(img + m[..., None] * _WATER)
    m = _gaussian((liquid > threshold).astype(np.float32), intensity)
    m[m < 0.8] = 0
    return _to255(img * (1 - m[..., None]) + _MUD * m[..., None])


@_register("saturate", ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)))
def _saturate(x: np.ndarray, p: tuple[float, float], rngs: _ImageRngs) -> np.ndarray:
    """In HSV, S = clip(S * scale + shift)."""
    hsv = _rgb_to_hsv(_unit(x))
    hsv[..., 1] = np.clip(hsv[..., 1] * p[0] + p[1], 0, 1)
    return _to255(_hsv_to_rgb(hsv))


# ---------------------------------------------------------------------------------------------------
# Public API


def _check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (SIZE, SIZE, 3):
        raise DataError(
            f"corruptions use CIFAR parameters and need uint8 (n, 32, 32, 3) images, "
            f"got {images.dtype} {images.shape}"
        )
    return images


def _check_names(corruptions: Iterable[str]) -> tuple[str, ...]:
    names = tuple(corruptions)
    unknown = [name for name in names if name not in CORRUPTIONS]
    if unknown or not names:
        raise ConfigError(
            f"unknown corruption(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(CORRUPTIONS)}"
        )
    return names


def _check_severities(severities: Iterable[int]) -> tuple[int, ...]:
    values = tuple(int(s) for s in severities)
    if not values or any(s not in SEVERITIES for s in values) or len(set(values)) != len(values):
        raise ConfigError(f"severities must be distinct values in 1..5, got {list(values)}")
    return values


def corrupt(
    images: np.ndarray, name: str, severity: int, seed: int = 0, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Corrupt a batch of CIFAR images: uint8 (n, 32, 32, 3) in, uint8 (n, 32, 32, 3) out.

    ``severity`` is 1..5. ``indices`` are the images' positions in the whole test set (default
    0..n-1); with ``seed`` they fix each image's random draws, so corrupting a slice with its indices
    equals slicing the corrupted whole. Example: ``corrupt(x[100:200], "snow", 3, seed=0,
    indices=range(100, 200))``.
    """
    images = _check_images(images)
    (name,) = _check_names([name])
    (severity,) = _check_severities([severity])
    if int(seed) < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    index = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
    if index.shape != (len(images),):
        raise ConfigError(f"indices must give one position per image ({len(images)}), got {index.shape}")
    if len(images) == 0:
        return images.copy()
    spec = CORRUPTIONS[name]
    if len(images) > spec.batch:  # same pixels: every image draws from its own generator
        parts = range(0, len(images), spec.batch)
        return np.concatenate(
            [
                corrupt(images[a : a + spec.batch], name, severity, seed, index[a : a + spec.batch])
                for a in parts
            ]
        )
    out = spec.apply(images, spec.params[severity - 1], _ImageRngs(int(seed), name, severity, index))
    if out.dtype == np.uint8:
        return out
    return np.clip(out, 0, 255).astype(np.uint8)  # truncation, like the original's np.uint8(...)


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
    images = _check_images(images)
    names, levels = _check_names(corruptions), _check_severities(severities)
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
    images = _check_images(images)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(images),):
        raise DataError(f"need one label per image: {len(images)} images, labels of shape {labels.shape}")
    levels = _check_severities(severities)
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
    images = _check_images(images)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(images),):
        raise DataError(f"need one label per image: {len(images)} images, labels of shape {labels.shape}")
    names, levels = _check_names(corruptions), _check_severities(severities)
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


def corruption_grid(
    image: np.ndarray,
    corruptions: Iterable[str] = ALL_CORRUPTIONS,
    severities: Iterable[int] = SEVERITIES,
    seed: int = 0,
    index: int = 0,
) -> np.ndarray:
    """One image under every corruption and severity: uint8 (corruptions, 1 + severities, 32, 32, 3),
    column 0 the clean image. ``index`` is the image's test-set position (it seeds the draws)."""
    image = _check_images(np.asarray(image)[None])
    levels = _check_severities(severities)
    rows = [
        np.concatenate([image] + [corrupt(image, name, s, seed, [index]) for s in levels])
        for name in _check_names(corruptions)
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
    names = _check_names(corruptions)
    levels = _check_severities(severities)
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
