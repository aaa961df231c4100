"""CIFAR-10-C / CIFAR-100-C corruptions: the 15 benchmark and 4 extra operations, their registry and
:func:`corrupt`, which applies one to a batch of images.

Each operation follows Hendrycks & Dietterich's CIFAR generator (``make_cifar_c.py``) with its CIFAR
parameters (not the stronger ImageNet-C ones), vectorised over a batch of 32x32 RGB uint8 images where
that keeps the original's arithmetic. Output is uint8 by truncation, as in the original. Given the same
random draws, every corruption gives the original's pixels, checked on real CIFAR-10 test images by
``tests/test_corruptions.py`` against golden outputs of the original functions (docs/figures.md: the measured
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

At other sides (8 to 31 px; ``corruption_resolution="input"``, "CIFAR-10-C operations at 16 px", not
CIFAR-10-C): every operation is the original's code with the image side in place of ``IMSIZE = 32`` and
the CIFAR parameters unchanged, in the original's units. Lengths the original gives in pixels stay those
pixels (noise per pixel, blur radii and sigmas, glass blur's shuffle, snow's streaks, frost's texture
scale, spatter); lengths it gives as fractions of the image follow the side (elastic transform, the
affine anchors, zoom factors, pixelate's factor); fog's plasma map is made at the next power of two and
cropped. ``benchmarks/corruption_resolution.py`` measured that this keeps the damage of CIFAR-10-C at
32 px without rescaling the severities (docs/corruptions.md).

Example::

    >>> from flatnas_bench.corruptions.operations import corrupt
    >>> foggy = corrupt(test_x[:100], "fog", severity=3, seed=0)      # uint8 (100, 32, 32, 3)

Whole sets: :mod:`flatnas_bench.corruptions.generate`; pictures: :mod:`flatnas_bench.corruptions.grid`;
the numeric helpers: :mod:`flatnas_bench.corruptions.imaging`.
"""

from __future__ import annotations

import functools
import io
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image

from flatnas_bench.core.errors import ConfigError, DataError
from flatnas_bench.core.registry import Registry
from flatnas_bench.corruptions.imaging import (
    bilinear,
    clipped_zoom_sum,
    correlate,
    gaussian,
    hsv_to_rgb,
    motion_blur,
    pil_box_resize,
    plasma_fractal,
    rgb_to_hsv,
    to255,
    unit,
)
from flatnas_bench.corruptions.robustness import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
)
from flatnas_bench.corruptions.textures import frost_textures

__all__ = [
    "ALL_CORRUPTIONS",
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "Corruption",
    "corrupt",
    "list_corruptions",
]

SIZE = 32  # px: every parameter below is the original's CIFAR (32x32) setting
MIN_SIZE = 8  # px: the smallest side the operations accept (at other sides than 32: module docstring)


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
    """A registered corruption: ``apply(x uint8 (n, S, S, 3), params, rngs)`` returns values in [0, 255]."""

    name: str
    params: tuple[Any, ...]  # one entry per severity 1..5
    apply: Operation
    batch: int = 50  # images per ``apply`` call: larger batches spill the float64 temporaries out of cache

    @property
    def benchmark(self) -> bool:
        """True for the 15 corruptions that mCE averages over."""
        return self.name in BENCHMARK_CORRUPTIONS


CORRUPTIONS: Registry[Corruption] = Registry("corruption")  # in the official order


def _register(
    name: str, params: Sequence[Any], batch: int = Corruption.batch
) -> Callable[[Operation], Operation]:
    def decorate(fn: Operation) -> Operation:
        CORRUPTIONS.add(name, Corruption(name, tuple(params), fn, batch))
        return fn

    return decorate


def list_corruptions(kind: str = "all") -> tuple[str, ...]:
    """Corruption names in the official order: ``kind`` is ``"all"``, ``"benchmark"`` or ``"extra"``."""
    kinds = {"all": ALL_CORRUPTIONS, "benchmark": BENCHMARK_CORRUPTIONS, "extra": EXTRA_CORRUPTIONS}
    if kind not in kinds:
        raise ConfigError(f"unknown corruption kind {kind!r}; known: {', '.join(kinds)}")
    return kinds[kind]


# ---------------------------------------------------------------------------------------------------
# The 15 benchmark corruptions


@_register("gaussian_noise", (0.04, 0.06, 0.08, 0.09, 0.10))
def _gaussian_noise(x: np.ndarray, std: float, rngs: _ImageRngs) -> np.ndarray:
    """x + N(0, std) in [0, 1] units."""
    return to255(unit(x) + std * rngs.draw(lambda g: g.standard_normal(x.shape[1:])))


@_register("shot_noise", (500, 250, 100, 75, 50))
def _shot_noise(x: np.ndarray, c: float, rngs: _ImageRngs) -> np.ndarray:
    """Poisson(x * c) / c: photon noise at c photons per unit intensity."""
    lam = unit(x) * c
    return to255(np.stack([g.poisson(image) for g, image in zip(rngs.generators(), lam, strict=True)]) / c)


@_register("impulse_noise", (0.01, 0.02, 0.03, 0.05, 0.07))
def _impulse_noise(x: np.ndarray, amount: float, rngs: _ImageRngs) -> np.ndarray:
    """Salt and pepper: each value flips with probability ``amount``, half to 0, half to 1
    (skimage ``random_noise(mode="s&p")``)."""
    flip, salt = rngs.draw(lambda g: (g.random(x.shape[1:]) <= amount, g.random(x.shape[1:]) <= 0.5))
    out = unit(x)
    out[flip & salt] = 1.0
    out[flip & ~salt] = 0.0
    return to255(out)


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
    return to255(correlate(unit(x), _disk(*p), "mirror"))


# its sweep is a Python loop over positions, vectorised over the batch: larger batches amortise it
@_register("glass_blur", ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)), batch=250)
def _glass_blur(x: np.ndarray, p: tuple[float, int, int], rngs: _ImageRngs) -> np.ndarray:
    """Gaussian blur (sigma px), to uint8, local pixel shuffling, Gaussian blur again.

    The shuffle sweeps h and w from 31 - delta down to delta + 1, ``iterations`` times, setting pixel
    (h, w) to pixel (h + dy, w + dx), dx, dy uniform integers in [-delta, delta): the original's tuple
    "swap" of numpy views is this copy. Sequential within an image, vectorised across images."""
    sigma, delta, iterations = p
    img = (gaussian(unit(x), sigma) * 255).astype(np.uint8)
    size = x.shape[1]
    sweep = [(h, w) for h in range(size - delta, delta, -1) for w in range(size - delta, delta, -1)]
    shifts = rngs.draw(lambda g: g.integers(-delta, delta, size=(iterations, len(sweep), 2)))
    batch = np.arange(len(img))
    for it in range(iterations):
        for k, (h, w) in enumerate(sweep):
            dx, dy = shifts[:, it, k, 0], shifts[:, it, k, 1]
            img[:, h, w] = img[batch, h + dy, w + dx]
    return to255(gaussian(unit(img), sigma))


@_register("motion_blur", ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)), batch=25)
def _motion_blur_op(x: np.ndarray, p: tuple[float, float], rngs: _ImageRngs) -> np.ndarray:
    """ImageMagick motion blur (radius px, sigma px) at an angle uniform in [-45, 45] degrees."""
    angles = rngs.draw(lambda g: g.uniform(-45, 45))
    return motion_blur(x, *p, angles)


@_register("zoom_blur", tuple(np.arange(1, top, 0.01) for top in (1.06, 1.11, 1.16, 1.21, 1.26)))
def _zoom_blur(x: np.ndarray, zooms: np.ndarray, rngs: _ImageRngs) -> np.ndarray:
    """Mean of x and its centre zooms by each factor (the original's ``np.arange(1, 1 + s, 0.01)``,
    floating-point end included: 7, 12, 16, 21, 26 factors)."""
    img = unit(x).astype(np.float32)
    return to255((img + clipped_zoom_sum(img, zooms)) / (len(zooms) + 1))


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
    size = x.shape[1]
    flakes, angles = rngs.draw(lambda g: (g.normal(loc, scale, (size, size)), g.uniform(-135, -45)))
    flakes = clipped_zoom_sum(flakes[..., None], [zoom])
    flakes[flakes < threshold] = 0
    flakes = (np.clip(flakes, 0, 1) * 255).astype(np.uint8)
    flakes = motion_blur(flakes, radius, sigma, angles) / 255.0
    img = unit(x).astype(np.float32)
    # cvtColor is per pixel, so the batch goes through as one tall image
    gray = cv2.cvtColor(img.reshape(-1, size, 3), cv2.COLOR_RGB2GRAY).reshape(*img.shape[:3], 1)
    img = mix * img + (1 - mix) * np.maximum(img, gray * 1.5 + 0.5)
    return to255(img + flakes + flakes[:, ::-1, ::-1])


def _frost_picks(rngs: _ImageRngs, textures: Sequence[np.ndarray], size: int = SIZE) -> np.ndarray:
    """Each image's frost crop as the original draws it: int (n, 3) rows (texture, top, left), the
    texture uniform over the five, then the crop's top and left uniform in [0, texture side - size)."""

    def pick(g: np.random.Generator) -> np.ndarray:
        k = int(g.integers(len(textures)))
        height, width = textures[k].shape[:2]
        return np.array([k, g.integers(0, height - size), g.integers(0, width - size)])

    return rngs.draw(pick)


@_register("frost", ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)))
def _frost(x: np.ndarray, p: tuple[float, float], rngs: _ImageRngs) -> np.ndarray:
    """a * x + b * frost (both 0..255), frost a random crop (32x32 at 32 px) of one of the five frost
    photographs after the original's 0.2 resize
    (:func:`~flatnas_bench.corruptions.textures.frost_textures`)."""
    textures, size = frost_textures(), x.shape[1]
    picks = _frost_picks(rngs, textures, size)
    crops = np.stack([textures[k][top : top + size, left : left + size] for k, top, left in picks])
    return np.clip(p[0] * x + p[1] * crops.astype(np.float64), 0, 255)


@_register("fog", ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)))
def _fog(x: np.ndarray, p: tuple[float, float], rngs: _ImageRngs) -> np.ndarray:
    """x + amount * plasma fractal (wibble decay), rescaled by max(x) / (max(x) + amount). The map is made
    at the power of two at least the image side and cropped to it (as the original's ImageNet version
    crops its 256-px map to 224)."""
    amount, decay = p
    img, size = unit(x), x.shape[1]
    peak = img.max(axis=(1, 2, 3), keepdims=True)
    mapsize = 1 << (size - 1).bit_length()
    uniforms = rngs.draw(lambda g: g.random(mapsize * mapsize - 1))
    plasma = plasma_fractal(uniforms, decay, mapsize)[:, :size, :size]
    return to255((img + amount * plasma[..., None]) * peak / (peak + amount))


@_register("brightness", (0.05, 0.1, 0.15, 0.2, 0.3))
def _brightness(x: np.ndarray, c: float, rngs: _ImageRngs) -> np.ndarray:
    """In HSV, V = clip(V + c)."""
    hsv = rgb_to_hsv(unit(x))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return to255(hsv_to_rgb(hsv))


@_register("contrast", (0.75, 0.5, 0.4, 0.3, 0.15))
def _contrast(x: np.ndarray, c: float, rngs: _ImageRngs) -> np.ndarray:
    """(x - per-image, per-channel mean) * c + mean."""
    img = unit(x)
    mean = img.mean(axis=(1, 2), keepdims=True)
    return to255((img - mean) * c + mean)


def _affine_warp(img: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """OpenCV ``warpAffine`` (bilinear, REFLECT_101 border) of every float32 image of a batch by the affine
    map that sends the points (c + t, c + t), (c + t, c - t), (c - t, c - t) (x, y), c = side // 2 and
    t = side // 3 ((26, 26), (26, 6), (6, 6) at 32 px), to themselves plus ``offsets`` (n, 3, 2).

    OpenCV's own ``getAffineTransform`` and ``warpAffine``: the latter resolves source positions in its
    fixed point (1/32 px), which only OpenCV reproduces exactly. OpenCV 3.4 and 4.x agree bit for bit
    (3.x made the official files); 5.0 computes it otherwise, hence the dependency's pin below 5."""
    size = img.shape[1]
    centre, third = size // 2, size // 3
    src = np.array(
        [[centre + third] * 2, [centre + third, centre - third], [centre - third] * 2], dtype=np.float32
    )
    out = np.empty_like(img)
    for k, (image, offset) in enumerate(zip(img, offsets.astype(np.float32), strict=True)):
        matrix = cv2.getAffineTransform(src, src + offset)
        out[k] = cv2.warpAffine(image, matrix, (size, size), borderMode=cv2.BORDER_REFLECT_101)
    return out


@_register(
    "elastic_transform",
    ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
)
def _elastic_transform(x: np.ndarray, p: tuple[float, float, float], rngs: _ImageRngs) -> np.ndarray:
    """Random affine (corner points jittered by +-affine px, REFLECT_101 border), then an elastic
    displacement: uniform(-1, 1) fields smoothed by a Gaussian (sigma px, reflect, truncate 3), times
    alpha px, resampled bilinearly with a reflect border. The three lengths are fractions of the image
    side, as the original gives them (``IMSIZE * 0.05``...)."""
    size = x.shape[1]
    alpha, sigma, affine = (size * fraction for fraction in p)
    jitter, fields = rngs.draw(
        lambda g: (g.uniform(-affine, affine, (3, 2)), g.uniform(-1, 1, (2, size, size)))
    )
    img = unit(x).astype(np.float32)
    img = _affine_warp(img, jitter)
    dx = (gaussian(fields[:, 0], sigma, "reflect", truncate=3.0) * alpha).astype(np.float32)
    dy = (gaussian(fields[:, 1], sigma, "reflect", truncate=3.0) * alpha).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    return to255(bilinear(img, yy + dy, xx + dx, mode="reflect"))


@_register("pixelate", (0.95, 0.9, 0.85, 0.75, 0.65))
def _pixelate(x: np.ndarray, c: float, rngs: _ImageRngs) -> np.ndarray:
    """Pillow BOX resize to int(side c) px and back (32 -> int(32 c) -> 32 at 32 px)."""
    size = x.shape[1]
    return pil_box_resize(pil_box_resize(x, int(size * c)), size)


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
    img = unit(x)
    return to255(img + img * (c * rngs.draw(lambda g: g.standard_normal(x.shape[1:]))))


@_register("gaussian_blur", (0.4, 0.6, 0.7, 0.8, 1.0))
def _gaussian_blur(x: np.ndarray, sigma: float, rngs: _ImageRngs) -> np.ndarray:
    """skimage Gaussian blur, sigma in px (nearest border, truncate 4)."""
    return to255(gaussian(unit(x), sigma))


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
    size = x.shape[1]
    liquid = gaussian(rngs.draw(lambda g: g.normal(loc, scale, (size, size))), sigma)
    liquid[liquid < threshold] = 0
    img = unit(x).astype(np.float32)
    if mode == 0:
        # The original casts liquid * 255 to uint8 unclipped: a level of 256 or more wraps around modulo
        # 256 (1.073 -> 273.6 -> 17). At severity 3 (scale 0.3) about 18 % of the layers reach above 1,
        # and the files the original saves hold the wrapped layers, so we wrap too.
        layer = (np.floor(liquid * 255).astype(np.int64) % 256).astype(np.uint8)
        m = layer * np.stack([_water_relief(image) for image in layer])
        peak = m.max(axis=(1, 2), keepdims=True)
        m = np.where(peak > 0, m / np.where(peak > 0, peak, 1), 0) * np.float32(intensity)
        return to255(img + m[..., None] * _WATER)
    m = gaussian((liquid > threshold).astype(np.float32), intensity)
    m[m < 0.8] = 0
    return to255(img * (1 - m[..., None]) + _MUD * m[..., None])


@_register("saturate", ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)))
def _saturate(x: np.ndarray, p: tuple[float, float], rngs: _ImageRngs) -> np.ndarray:
    """In HSV, S = clip(S * scale + shift)."""
    hsv = rgb_to_hsv(unit(x))
    hsv[..., 1] = np.clip(hsv[..., 1] * p[0] + p[1], 0, 1)
    return to255(hsv_to_rgb(hsv))


# ---------------------------------------------------------------------------------------------------
# Applying one


def check_images(images: np.ndarray) -> np.ndarray:
    """``images`` as a uint8 (n, S, S, 3) array with 8 <= S <= 32; DataError otherwise."""
    images = np.asarray(images)
    shape = images.shape
    square = images.ndim == 4 and shape[1] == shape[2] and shape[3] == 3
    if images.dtype != np.uint8 or not square or not MIN_SIZE <= shape[1] <= SIZE:
        raise DataError(
            f"corruptions use CIFAR parameters and need uint8 (n, S, S, 3) images, S from {MIN_SIZE} to "
            f"{SIZE} px (32 for CIFAR-10-C itself), got {images.dtype} {shape}"
        )
    return images


def check_names(corruptions: Iterable[str]) -> tuple[str, ...]:
    """The registered names asked for, in order; ConfigError for an unknown name or none."""
    names = tuple(corruptions)
    unknown = [name for name in names if name not in CORRUPTIONS]
    if unknown or not names:
        raise ConfigError(
            f"unknown corruption(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(CORRUPTIONS)}"
        )
    return names


def check_severities(severities: Iterable[int]) -> tuple[int, ...]:
    """Distinct severities in 1..5, in order; ConfigError otherwise."""
    values = tuple(int(s) for s in severities)
    if not values or any(s not in SEVERITIES for s in values) or len(set(values)) != len(values):
        raise ConfigError(f"severities must be distinct values in 1..5, got {list(values)}")
    return values


def corrupt(
    images: np.ndarray, name: str, severity: int, seed: int = 0, indices: Sequence[int] | None = None
) -> np.ndarray:
    """Corrupt a batch of CIFAR images: uint8 (n, S, S, 3) in, uint8 (n, S, S, 3) out; CIFAR-10-C itself at
    S = 32, its operations at S px for 8 <= S < 32 (module docstring).

    ``severity`` is 1..5. ``indices`` are the images' positions in the whole test set (default
    0..n-1); with ``seed`` they fix each image's random draws, so corrupting a slice with its indices
    equals slicing the corrupted whole. Example: ``corrupt(x[100:200], "snow", 3, seed=0,
    indices=range(100, 200))``.
    """
    images = check_images(images)
    (name,) = check_names([name])
    (severity,) = check_severities([severity])
    if int(seed) < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    index = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
    if index.shape != (len(images),):
        raise ConfigError(f"indices must give one position per image ({len(images)}), got {index.shape}")
    if len(images) == 0:
        return images.copy()
    spec = CORRUPTIONS.get(name)
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
