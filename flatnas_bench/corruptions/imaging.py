"""Numeric imaging helpers of the corruption operations, batched over images (n, H, W, C) or (n, H, W).

Each one reproduces the arithmetic of the library the original CIFAR-10-C generator called (scipy,
scikit-image, Pillow, ImageMagick), in the same precision, so that the operations in
:mod:`flatnas_bench.corruptions.operations` give the original's pixels.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import numpy as np
from scipy import ndimage, sparse


def unit(x: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float64 [0, 1]."""
    return x / 255.0


def to255(x: np.ndarray) -> np.ndarray:
    """float [0, 1] -> clipped [0, 255], the original's ``np.clip(x, 0, 1) * 255``."""
    return np.clip(x, 0.0, 1.0) * 255.0


def correlate(x: np.ndarray, kernel: np.ndarray, mode: str) -> np.ndarray:
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


def gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
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


def bilinear(x: np.ndarray, ys: np.ndarray, xs: np.ndarray, mode: str) -> np.ndarray:
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


def motion_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
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
def _zoom_matrix(zoom: float, size: int) -> np.ndarray:
    """The (size, size) matrix of the original ``clipped_zoom`` along one axis.

    ``clipped_zoom`` takes the central ``ceil(size / zoom)`` pixels, zooms them with scipy's order-1
    spline and trims the centre ``size``; that is linear, so we get it by zooming an identity matrix."""
    crop = int(np.ceil(size / zoom))
    top = (size - crop) // 2
    zoomed = ndimage.zoom(np.eye(crop), (zoom, 1.0), order=1)
    trim = (zoomed.shape[0] - size) // 2
    matrix = np.zeros((size, size))
    matrix[:, top : top + crop] = zoomed[trim : trim + size]
    return matrix


@functools.lru_cache(maxsize=64)
def _zoom_operator(zoom: float, size: int) -> sparse.csr_matrix:
    """The 2-D ``clipped_zoom`` by ``zoom`` as a sparse (size**2, size**2) matrix on flattened images."""
    return sparse.csr_matrix(np.kron(_zoom_matrix(zoom, size), _zoom_matrix(zoom, size)))


def clipped_zoom_sum(x: np.ndarray, zooms: Sequence[float]) -> np.ndarray:
    """Sum over ``zooms`` of the original ``clipped_zoom`` of every image of a square batch (n, S, S, C).

    As in the original, each zoom is computed in float64 (as scipy's ``zoom`` does), cast to the input's
    dtype and added in turn in that dtype: a float32 sum in another order differs in the last bit."""
    n, h, w, c = x.shape
    flat = np.moveaxis(x.reshape(n, h * w, c), 1, 0).reshape(h * w, n * c).astype(np.float64)
    out = np.zeros((h * w, n * c), dtype=x.dtype)
    for zoom in zooms:
        out += (_zoom_operator(float(zoom), h) @ flat).astype(x.dtype)
    return np.moveaxis(out.reshape(h * w, n, c), 0, 1).reshape(x.shape)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
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


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
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


def pil_box_resize(x: np.ndarray, size: int) -> np.ndarray:
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


def plasma_fractal(uniforms: np.ndarray, decay: float, size: int) -> np.ndarray:
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


@functools.lru_cache(maxsize=16)
def _area_windows(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) 0/1 membership of PyTorch's adaptive average pooling along one axis: output o covers
    inputs floor(o n_in / n_out) .. ceil((o + 1) n_in / n_out) - 1."""
    matrix = np.zeros((n_out, n_in))
    for out in range(n_out):
        matrix[out, (out * n_in) // n_out : -((-(out + 1) * n_in) // n_out)] = 1.0
    return matrix


def area_downsample(x: np.ndarray, size: int) -> np.ndarray:
    """uint8 (n, H, W, C) -> uint8 (n, size, size, C) by area averaging, rounded half to even: the pixels
    :class:`flatnas_bench.engine.data.DeviceData` makes (``F.interpolate(mode="area")``, ``round``) when a
    protocol's resolution is below the images'. Each output pixel is the integer sum of its input
    rectangle divided by the rectangle's pixel count, so halves are exact and round as PyTorch's do."""
    rows, cols = _area_windows(x.shape[1], size), _area_windows(x.shape[2], size)
    sums = np.einsum("oh,nhwc,pw->nopc", rows, x.astype(np.float64), cols, optimize=True)
    counts = np.outer(rows.sum(1), cols.sum(1))[None, :, :, None]
    return np.clip(np.round(sums / counts), 0, 255).astype(np.uint8)
