"""The corruption operations: parity with the original generator's outputs (golden file), contract per
registered corruption, severity ordering, determinism, and equivalence with the original's building blocks
(skimage, scipy, Pillow, OpenCV, the literal loops)."""

from __future__ import annotations

import io
import itertools
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import require_shared
from PIL import Image
from scipy import ndimage
from skimage import color, filters
from typer.testing import CliRunner

from flatnas_bench.core.errors import ConfigError, DataError
from flatnas_bench.corruptions import generate as G
from flatnas_bench.corruptions import grid as V
from flatnas_bench.corruptions import imaging as I
from flatnas_bench.corruptions import operations as C
from flatnas_bench.corruptions import textures as T
from flatnas_bench.corruptions.imaging import area_downsample
from flatnas_bench.corruptions.robustness import load_cifar_c, read_meta
from flatnas_bench.corruptions.textures import frost_texture, frost_textures
from flatnas_bench.engine.data import load_images

NAMES = list(C.CORRUPTIONS)
# corruptions whose parameters strengthen at every step, so the pixel change must grow at every step
MONOTONE = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "speckle_noise",
    "defocus_blur",
    "gaussian_blur",
    "zoom_blur",
    "fog",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
}
DETERMINISTIC = {
    "defocus_blur",
    "zoom_blur",
    "brightness",
    "contrast",
    "pixelate",
    "jpeg_compression",
    "gaussian_blur",
    "saturate",
}


def smooth_images(n: int = 6, seed: int = 0) -> np.ndarray:
    """Photo-like uint8 (n, 32, 32, 3) images: smooth colour gradients plus a sharp-edged shape."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    images = []
    for _ in range(n):
        freq, phase = rng.uniform(0.5, 2.5, (3, 2)), rng.uniform(0, 2 * np.pi, 3)
        img = np.stack(
            [
                0.5 + 0.3 * np.sin(2 * np.pi * (f[0] * xx + f[1] * yy) + p)
                for f, p in zip(freq, phase, strict=True)
            ],
            axis=-1,
        )
        top, left = rng.integers(4, 16, 2)
        img[top : top + 12, left : left + 10] = rng.uniform(0.1, 0.9, 3)
        images.append(np.clip(img * 255, 0, 255).astype(np.uint8))
    return np.stack(images)


def real_images(per_class: int = 1) -> np.ndarray:
    """The first test images of every CIFAR-10 class from the shared archive (skips when absent)."""
    archive = require_shared("cifar10", "cifar10-jpeg.tar.gz")
    wanted = {f"{i:04d}.jpg" for i in range(per_class)}
    images = []
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and parts[0] == "test" and parts[2] in wanted:
                images.append(
                    np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB"))
                )
    return np.stack(images)


def elastic_residuals(side: int = 32) -> list[float]:
    """Mean distance (grey levels) of elastic_transform's output from the best-fitting plane, on linear
    ramps of ``side`` px, per severity: zero for any affine map, so it measures the elastic displacement
    alone."""
    yy, xx = np.mgrid[0:side, 0:side].astype(float)
    c = side // 2
    ramps = np.stack(
        [128 + 5 * ((xx - c) * np.cos(a) + (yy - c) * np.sin(a)) for a in (0.3, 1.2, 2.0, 2.9)]
    ).astype(np.uint8)
    inner = slice(side // 4, 3 * side // 4)  # away from the reflected border
    design = np.stack([xx[inner, inner].ravel(), yy[inner, inner].ravel(), np.ones(c * c)], axis=1)
    residuals = []
    for severity in C.SEVERITIES:
        out = C.corrupt(np.repeat(ramps[..., None], 3, axis=-1), "elastic_transform", severity)
        values = out[:, inner, inner, 0].reshape(len(out), -1).T.astype(float)
        coef = np.linalg.lstsq(design, values, rcond=None)[0]
        residuals.append(float(np.abs(values - design @ coef).mean()))
    return residuals


@pytest.fixture(scope="module", params=["synthetic", "real", "synthetic-16px", "real-16px"])
def images(request: pytest.FixtureRequest) -> np.ndarray:
    """32-px images, and the same area-downsampled to 16 px (the operations at the input resolution)."""
    kind, _, side = request.param.partition("-")
    x = smooth_images(16) if kind == "synthetic" else real_images(per_class=2)
    return area_downsample(x, 16) if side else x


@pytest.fixture(scope="module")
def changes(images: np.ndarray) -> dict[str, list[float]]:
    """Mean absolute change (grey levels) per corruption and severity 1..5."""
    return {
        name: [float(np.abs(C.corrupt(images, name, s).astype(float) - images).mean()) for s in C.SEVERITIES]
        for name in NAMES
    }


def test_registry_holds_the_official_corruptions() -> None:
    assert tuple(C.CORRUPTIONS) == C.ALL_CORRUPTIONS == C.BENCHMARK_CORRUPTIONS + C.EXTRA_CORRUPTIONS
    assert len(C.BENCHMARK_CORRUPTIONS) == 15 and len(C.EXTRA_CORRUPTIONS) == 4
    assert all(len(C.CORRUPTIONS.get(name).params) == 5 for name in C.CORRUPTIONS)
    assert C.list_corruptions("benchmark") == C.BENCHMARK_CORRUPTIONS
    zooms = C.CORRUPTIONS.get("zoom_blur").params
    assert [len(z) for z in zooms] == [7, 12, 16, 21, 26]  # np.arange's float end


@pytest.mark.parametrize("side", [32, 16, 8])
@pytest.mark.parametrize("name", NAMES)
def test_contract_shape_dtype_range(name: str, side: int) -> None:
    x = area_downsample(smooth_images(3), side)
    for severity in C.SEVERITIES:
        out = C.corrupt(x, name, severity, seed=1)
        assert out.shape == x.shape and out.dtype == np.uint8
        assert 0 < out.mean() < 255 and out.std() > 0
        assert not np.shares_memory(out, x)
    assert not np.array_equal(C.corrupt(x, name, 5), x)
    assert np.array_equal(x, area_downsample(smooth_images(3), side))  # input untouched


@pytest.mark.parametrize("name", NAMES)
def test_change_grows_with_severity(name: str, images: np.ndarray, changes: dict[str, list[float]]) -> None:
    change = changes[name]
    assert min(change) > 0
    if name == "elastic_transform":
        # The original CIFAR parameters trade a shrinking random affine (+-2.56 px at severity 1, +-0.96 px
        # at 5) for a growing elastic field (alpha 0 -> 3.2 px), so the raw pixel change falls with
        # severity; what grows is the non-affine part, checked on ramps (an affine map keeps a ramp a plane).
        residual = elastic_residuals(images.shape[1])
        assert all(b > a - 0.02 for a, b in itertools.pairwise(residual)), residual
        assert residual[4] > 3 * residual[0]
        return
    assert change[4] > change[0]
    if name in MONOTONE:
        assert all(b > a for a, b in itertools.pairwise(change)), change


@pytest.mark.parametrize("side", [32, 16])
@pytest.mark.parametrize("name", NAMES)
def test_deterministic_by_seed_and_independent_of_batching(name: str, side: int) -> None:
    x = area_downsample(smooth_images(5), side)
    whole = C.corrupt(x, name, 4, seed=7)
    assert np.array_equal(whole, C.corrupt(x, name, 4, seed=7))
    part = C.corrupt(x[2:5], name, 4, seed=7, indices=range(2, 5))
    assert np.array_equal(whole[2:5], part)
    other_seed = C.corrupt(x, name, 4, seed=8)
    assert np.array_equal(whole, other_seed) == (name in DETERMINISTIC)


def test_iter_corruptions_chunks_do_not_change_results() -> None:
    x = smooth_images(5)
    ((_, small_chunks),) = G.iter_corruptions(x, ["snow"], (2, 5), seed=3, chunk=2)
    ((_, one_chunk),) = G.iter_corruptions(x, ["snow"], (2, 5), seed=3, chunk=100)
    assert small_chunks.shape == (2, 5, 32, 32, 3)
    assert np.array_equal(small_chunks, one_chunk)


def test_worker_processes_give_the_serial_pixels_in_order() -> None:
    x = smooth_images(7)
    names, levels = ["snow", "frost", "glass_blur"], (1, 4)
    serial = dict(G.iter_corruptions(x, names, levels, seed=5, chunk=3))
    seen: list[int] = []
    parallel = list(G.iter_corruptions(x, names, levels, seed=5, chunk=3, on_progress=seen.append, workers=2))
    assert [name for name, _ in parallel] == names
    for name, out in parallel:
        assert np.array_equal(out, serial[name]), name
    assert sum(seen) == len(names) * len(levels) * len(x) and max(seen) == 3
    with pytest.raises(ConfigError, match="workers"):
        next(G.iter_corruptions(x, names, levels, workers=0))


def test_bad_inputs_raise_one_line_errors() -> None:
    x = smooth_images(2)
    with pytest.raises(DataError, match="32, 32, 3"):
        C.corrupt(x.astype(np.float32), "fog", 1)
    for shape in ((2, 4, 4, 3), (2, 64, 64, 3), (2, 16, 24, 3), (2, 16, 16, 1)):  # 8..32 px squares only
        with pytest.raises(DataError, match="S from 8 to 32 px"):
            C.corrupt(np.zeros(shape, np.uint8), "fog", 1)
    with pytest.raises(ConfigError, match="unknown corruption"):
        C.corrupt(x, "rain", 1)
    with pytest.raises(ConfigError, match="severities"):
        C.corrupt(x, "fog", 6)
    with pytest.raises(ConfigError, match="indices"):
        C.corrupt(x, "fog", 1, indices=[0])


# ------------------------------------------------------------------ parity with the original generator

GOLDEN = Path(__file__).parent / "data" / "cifar10c_golden.npz"  # how it was made: cifar10c_golden.md


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def test_golden_file_covers_every_corruption_and_severity(golden: dict[str, np.ndarray]) -> None:
    assert tuple(golden["names"]) == C.ALL_CORRUPTIONS
    assert golden["outputs"].shape == (19, 5, len(golden["images"]), 32, 32, 3)
    assert golden["images"].shape == (4, 32, 32, 3) and golden["indices"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("name", NAMES)
def test_parity_with_the_original_generator(name: str, golden: dict[str, np.ndarray]) -> None:
    """Every severity gives the original functions' pixels exactly, given the same random draws: on 4 real
    CIFAR-10 test images the original was fed, call by call, the numbers our per-image generators draw."""
    expected = golden["outputs"][C.ALL_CORRUPTIONS.index(name)]
    for severity in C.SEVERITIES:
        ours = C.corrupt(golden["images"], name, severity, int(golden["seed"]), golden["indices"])
        diff = np.abs(ours.astype(int) - expected[severity - 1])
        assert diff.max() == 0, f"severity {severity}: {int(diff.max())} levels at {(diff > 0).mean():.2%}"


def test_frost_draws_pick_and_crop_as_recorded(golden: dict[str, np.ndarray]) -> None:
    textures = frost_textures()
    for severity in C.SEVERITIES:
        rngs = C._ImageRngs(int(golden["seed"]), "frost", severity, golden["indices"])
        assert np.array_equal(C._frost_picks(rngs, textures), golden["frost_draws"][severity - 1])
    assert set(golden["frost_draws"][..., 0].ravel()) == {0, 1, 2, 3, 4}  # every photograph is used


def test_spatter_wraps_its_liquid_layer_like_the_original(golden: dict[str, np.ndarray]) -> None:
    """At severity 3 the layer of golden image 2 reaches above 1 and the original's uint8 cast wraps it
    around (the parity test checks those pixels); clipping it instead would change the water."""
    loc, scale, sigma, threshold, _, _ = C.CORRUPTIONS.get("spatter").params[2]
    rngs = C._ImageRngs(int(golden["seed"]), "spatter", 3, golden["indices"])
    liquid = I.gaussian(rngs.draw(lambda g: g.normal(loc, scale, (32, 32))), sigma)
    liquid[liquid < threshold] = 0
    assert (liquid * 255 >= 256).any(axis=(1, 2)).tolist() == [False, False, True, False]
    wrapped = (np.floor(liquid[2] * 255) % 256).astype(np.uint8)
    clipped = (np.clip(liquid[2], 0, 1) * 255).astype(np.uint8)
    assert sorted(wrapped[wrapped != clipped].tolist()) == [3, 13]  # levels 259 and 269, not 255
    assert not np.array_equal(wrapped * C._water_relief(wrapped), clipped * C._water_relief(clipped))


# ------------------------------------------------------------------ equivalence with the original's parts


def test_hsv_matches_skimage() -> None:
    rgb = np.random.default_rng(0).random((500, 3))
    rgb[:50, 1] = rgb[:50, 0]  # ties between channels
    rgb[50:60] = 0.4  # grey
    hsv = I.rgb_to_hsv(rgb)
    assert np.array_equal(hsv, color.rgb2hsv(rgb))
    assert np.array_equal(I.hsv_to_rgb(hsv), color.hsv2rgb(hsv))


def test_pixelate_is_bit_exact_with_pillow() -> None:
    x = np.concatenate(
        [smooth_images(2), np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), np.uint8)]
    )
    for c in C.CORRUPTIONS.get("pixelate").params:
        size = int(32 * c)
        expected = np.stack(
            [
                np.asarray(Image.fromarray(img).resize((size, size), Image.BOX).resize((32, 32), Image.BOX))
                for img in x
            ]
        )
        assert np.array_equal(I.pil_box_resize(I.pil_box_resize(x, size), 32), expected)


def test_gaussian_is_skimage_bit_for_bit_in_both_precisions() -> None:
    x = smooth_images(2) / 255.0
    for sigma in (0.05, 0.4, 1.0):
        for data in (x, x.astype(np.float32)):
            expected = np.stack([filters.gaussian(image, sigma=sigma, channel_axis=-1) for image in data])
            ours = I.gaussian(data, sigma)
            assert ours.dtype == data.dtype and np.array_equal(ours, expected)


def test_bilinear_is_map_coordinates_bit_for_bit_with_reflect_border() -> None:
    rng = np.random.default_rng(2)
    x = rng.random((2, 32, 32, 3)).astype(np.float32)
    ys, xs = rng.uniform(-2.5, 33.5, (2, 2, 32, 32))
    ours = I.bilinear(x, ys, xs, "reflect")
    for k in range(2):
        for c in range(3):
            expected = ndimage.map_coordinates(x[k, ..., c], [ys[k], xs[k]], order=1, mode="reflect")
            assert np.array_equal(ours[k, ..., c], expected)


def test_affine_warp_is_identity_without_jitter_and_shifts_with_it() -> None:
    x = (smooth_images(2) / 255.0).astype(np.float32)
    assert np.array_equal(C._affine_warp(x, np.zeros((2, 3, 2))), x)
    shifted = C._affine_warp(x, np.tile([[1.0, 0.0]], (2, 3, 1)))  # every point 1 px right
    assert np.array_equal(shifted[:, :, 1:], x[:, :, :-1])


def test_clipped_zoom_matches_scipy_zoom() -> None:
    x = smooth_images(2).astype(np.float64)
    for zoom in (1.0, 1.07, 1.75, 2.25):
        crop = int(np.ceil(32 / zoom))
        top = (32 - crop) // 2
        expected = []
        for img in x:
            zoomed = ndimage.zoom(img[top : top + crop, top : top + crop], (zoom, zoom, 1), order=1)
            trim = (zoomed.shape[0] - 32) // 2
            expected.append(zoomed[trim : trim + 32, trim : trim + 32])
        assert np.allclose(I.clipped_zoom_sum(x, [zoom]), np.stack(expected), atol=1e-9)


def test_glass_blur_equals_the_original_sequential_swap_loop() -> None:
    """The original's ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on numpy views, with our draws."""
    x = smooth_images(2)
    for severity in (2, 5):
        sigma, delta, iterations = C.CORRUPTIONS.get("glass_blur").params[severity - 1]
        rngs = C._ImageRngs(0, "glass_blur", severity, np.arange(2))
        expected = []
        for img, g in zip(x, rngs.generators(), strict=True):
            y = (I.gaussian(img[None] / 255.0, sigma)[0] * 255).astype(np.uint8)
            shifts = g.integers(-delta, delta, size=(iterations, (32 - 2 * delta) ** 2, 2))
            for it in range(iterations):
                k = 0
                for h in range(32 - delta, delta, -1):
                    for w in range(32 - delta, delta, -1):
                        dx, dy = shifts[it, k]
                        k += 1
                        y[h, w], y[h + dy, w + dx] = y[h + dy, w + dx], y[h, w]
            expected.append(np.clip(I.gaussian(y[None] / 255.0, sigma)[0], 0, 1) * 255)
        assert np.array_equal(C.corrupt(x, "glass_blur", severity), np.stack(expected).astype(np.uint8))


def test_plasma_fractal_equals_the_original_diamond_square() -> None:
    uniforms = np.random.default_rng(3).random((1, 1023))
    decay = 2.5
    used = 0
    maparray = np.zeros((32, 32))
    stepsize, wibble = 32, 100.0

    def wibbledmean(array: np.ndarray) -> np.ndarray:
        nonlocal used
        u = uniforms[0, used : used + array.size].reshape(array.shape)
        used += array.size
        return array / 4 + wibble * (-wibble + 2 * wibble * u)

    while stepsize >= 2:
        cornerref = maparray[0:32:stepsize, 0:32:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2 : 32 : stepsize, stepsize // 2 : 32 : stepsize] = wibbledmean(squareaccum)
        drgrid = maparray[stepsize // 2 : 32 : stepsize, stepsize // 2 : 32 : stepsize]
        ulgrid = maparray[0:32:stepsize, 0:32:stepsize]
        ltsum = drgrid + np.roll(drgrid, 1, axis=0) + ulgrid + np.roll(ulgrid, -1, axis=1)
        maparray[0:32:stepsize, stepsize // 2 : 32 : stepsize] = wibbledmean(ltsum)
        ttsum = drgrid + np.roll(drgrid, 1, axis=1) + ulgrid + np.roll(ulgrid, -1, axis=0)
        maparray[stepsize // 2 : 32 : stepsize, 0:32:stepsize] = wibbledmean(ttsum)
        stepsize //= 2
        wibble /= decay
    maparray -= maparray.min()
    assert np.allclose(I.plasma_fractal(uniforms, decay, 32)[0], maparray / maparray.max())


def test_motion_blur_kernel_follows_imagemagick() -> None:
    x = np.zeros((1, 32, 32, 1), np.uint8)
    x[0, 10, 10] = 255
    out = I.motion_blur(x, radius=6, sigma=2.0, angles=np.array([0.0]))[0, ..., 0]
    weights = np.exp(-(np.arange(13) ** 2) / 8.0)
    # at angle 0 pixel (10, c) averages pixels (10, c + i): the dot spreads to the left, one-sided, and the
    # 16-bit sum is rounded to a quantum, then truncated to 8 bits
    expected = np.zeros(32)
    expected[10 - np.arange(11)] = np.floor(np.floor(255 * 257 * weights[:11] / weights.sum() + 0.5) / 257)
    assert out.dtype == np.uint8 and np.array_equal(out[10], expected) and out.sum() == out[10].sum()
    assert out[10, :11].tolist() == [0, 0, 0, 0, 0, 3, 11, 27, 51, 74, 84]


def test_frost_uses_the_five_photographs_after_the_original_resize() -> None:
    textures = frost_textures()
    assert T.frost_source() == "photographs"
    assert [t.shape for t in textures] == [
        (120, 180, 3),
        (63, 112, 3),
        (63, 112, 3),
        (70, 105, 3),
        (99, 132, 3),
    ]
    assert [round(float(t.mean()), 1) for t in textures] == [130.8, 206.9, 206.9, 152.3, 123.4]
    bgr = cv2.resize(cv2.imread(str(T.FROST_DIR / "frost4.jpg")), (0, 0), fx=0.2, fy=0.2)
    assert np.array_equal(textures[3], bgr[..., ::-1]) and not textures[3].flags.writeable


def test_frost_falls_back_to_procedural_textures_with_a_warning(tmp_path, monkeypatch) -> None:
    assert T.frost_photographs(tmp_path) is None
    monkeypatch.setattr(T, "FROST_DIR", tmp_path)
    T._frost.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="procedural"):
            assert T.frost_source() == "procedural"
        textures = frost_textures()
        assert np.array_equal(textures[2], frost_texture(160, 240, 55, 13))
        for texture in textures:
            assert texture.dtype == np.uint8 and min(texture.shape[:2]) > 64
            assert (
                0.55 < texture.mean() / 255 < 0.8 and texture.std() / 255 > 0.1
            )  # bright ice, some contrast
            assert texture[..., 2].mean() > texture[..., 0].mean()  # blue-white
        x = smooth_images(3)
        assert not np.array_equal(C.corrupt(x, "frost", 3), C.corrupt(x, "frost", 3, seed=1))
    finally:
        monkeypatch.undo()
        T._frost.cache_clear()
    assert T.frost_source() == "photographs"


# --------------------------------------------------------------------------------- generation, grid, CLI


def test_write_corruption_set_round_trips_and_resumes(tmp_path) -> None:
    x, y = smooth_images(4), np.arange(4) % 3
    assert G.write_corruption_set(x, y, tmp_path, ["fog", "contrast"], (1, 3), seed=2) == ["fog", "contrast"]
    cset = load_cifar_c(tmp_path)
    assert cset.names == ("fog", "contrast") and cset.severities == (1, 3)
    assert np.array_equal(cset.images["fog"][1], C.corrupt(x, "fog", 3, seed=2))
    assert np.array_equal(cset.labels, y)
    assert read_meta(tmp_path)["frost"] == "photographs"
    assert G.write_corruption_set(x, y, tmp_path, ["fog", "snow"], (1, 3), seed=2) == ["snow"]
    with pytest.raises(DataError, match="other settings"):
        G.write_corruption_set(x, y, tmp_path, ["fog"], (1, 3), seed=3)
    memory = G.generate_corruption_set(x, y, ["fog"], (1, 3), seed=2)
    assert np.array_equal(memory.images["fog"], cset.images["fog"])


def test_corruption_grid_and_png(tmp_path) -> None:
    image = smooth_images(1)[0]
    grid = V.corruption_grid(image, ["fog", "frost"], (1, 5), seed=0, index=3)
    assert grid.shape == (2, 3, 32, 32, 3) and np.array_equal(grid[0, 0], image)
    assert np.array_equal(grid[1, 2], C.corrupt(image[None], "frost", 5, 0, [3])[0])
    path = V.save_corruption_grid(tmp_path / "grid.png", image, ["fog", "frost"], (1, 5), scale=2)
    with Image.open(path) as png:
        assert png.size[0] > 3 * 64 and png.size[1] > 2 * 64


@pytest.fixture
def image_folder(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "data"
    x = smooth_images(6)
    for split in ("train", "test"):
        for k, img in enumerate(x):
            folder = root / split / f"class{k % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(folder / f"{k:04d}.png")
    return root


def test_cli_corrupt_and_grid(image_folder, tmp_path) -> None:
    from cli.main import app

    runner = CliRunner()
    out = tmp_path / "c"
    args = ["corrupt", "--data", str(image_folder), "--out", str(out), "--severities", "1,2"]
    result = runner.invoke(app, [*args, "--corruptions", "fog,pixelate", "--subset", "4", "--seed", "1"])
    assert result.exit_code == 0, result.output
    cset = load_cifar_c(out)
    assert cset.names == ("fog", "pixelate") and len(cset) == 4 and cset.severities == (1, 2)
    x = load_images(image_folder, "cifar10").test.x[:4]
    assert np.array_equal(cset.images["fog"][1], C.corrupt(x, "fog", 2, seed=1))
    two = tmp_path / "c2"
    args2 = ["corrupt", "--data", str(image_folder), "--out", str(two), "--severities", "1,2", "--seed", "1"]
    result = runner.invoke(app, [*args2, "--corruptions", "fog,pixelate", "--subset", "4", "--workers", "2"])
    assert result.exit_code == 0, result.output
    for name in ("fog", "pixelate"):
        assert (two / f"{name}.npy").read_bytes() == (out / f"{name}.npy").read_bytes()
    result = runner.invoke(app, [*args2, "--workers", "0"])
    assert result.exit_code == 2 and "--workers must be at least 1" in result.output
    result = runner.invoke(app, [*args, "--corruptions", "fog,rain"])
    assert result.exit_code == 2 and "unknown corruption" in result.output
    png = tmp_path / "grid.png"
    result = runner.invoke(
        app,
        [
            "corrupt-grid",
            "--data",
            str(image_folder),
            "--out",
            str(png),
            "--index",
            "1",
            "--corruptions",
            "snow",
        ],
    )
    assert result.exit_code == 0, result.output
    test_x = load_images(image_folder, "cifar10").test.x
    direct = V.save_corruption_grid(tmp_path / "direct.png", test_x[1], ["snow"], [1, 2, 3, 4, 5], index=1)
    assert png.read_bytes() == direct.read_bytes()  # --index 1: the second test image
    other = V.save_corruption_grid(tmp_path / "first.png", test_x[0], ["snow"], [1, 2, 3, 4, 5], index=0)
    assert other.read_bytes() != png.read_bytes()


def test_a_set_names_its_generator_by_a_fixed_name_so_sets_written_by_0_2_stay_readable(tmp_path):
    images = np.zeros((2, 32, 32, 3), np.uint8)
    G.write_corruption_set(images, np.array([0, 1]), tmp_path, ["brightness"], severities=(1,), seed=0)
    assert read_meta(tmp_path)["generator"] == "flatnas_bench.corruptions"
