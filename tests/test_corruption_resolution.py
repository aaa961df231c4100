"""Corruptions at the network's input resolution (issue 19): the operations at sides below 32 px (their
contract, severity order and determinism at 16 and 8 px are in test_corruptions.py), the protocol
setting ``corruption_resolution``, the set it selects for a candidate, and the picture of both."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import CONV, make_imagefolder, tiny_protocol
from PIL import Image
from test_corruptions import smooth_images
from typer.testing import CliRunner

from flatnas_bench.bench.driver import balanced_subset, corruption_set_for, run_bench
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.core.errors import ConfigError
from flatnas_bench.corruptions import operations as C
from flatnas_bench.corruptions.generate import generate_corruption_set, write_corruption_set
from flatnas_bench.corruptions.grid import resolution_grid
from flatnas_bench.corruptions.imaging import area_downsample
from flatnas_bench.corruptions.robustness import BENCHMARK_CORRUPTIONS
from flatnas_bench.engine.data import load_images
from flatnas_bench.engine.device_data import DeviceData
from flatnas_bench.tables.store import ResultStore

NAMES = list(C.CORRUPTIONS)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory):
    return make_imagefolder(tmp_path_factory.mktemp("tiny") / "images")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def at16(n: int = 6) -> np.ndarray:
    return area_downsample(smooth_images(n), 16)


def test_area_downsample_gives_the_pixels_the_network_sees():
    x = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    for side in (16, 20, 11):
        data = DeviceData.__new__(DeviceData)  # only .images is used: device and resolution
        data.device, data.resolution = torch.device("cpu"), side
        seen = data.images(x).permute(0, 2, 3, 1).numpy()
        assert np.array_equal(area_downsample(x, side), seen), side
    assert np.array_equal(area_downsample(x, 16)[0, 0, 0], np.round(x[0, :2, :2].mean(axis=(0, 1))))


def test_lengths_given_as_image_fractions_follow_the_side_and_pixel_lengths_do_not():
    x = at16(4)
    # pixelate: 16 -> int(16 * 0.65) = 10 -> 16 px, Pillow BOX both ways
    from flatnas_bench.corruptions.imaging import pil_box_resize

    assert np.array_equal(C.corrupt(x, "pixelate", 5), pil_box_resize(pil_box_resize(x, 10), 16))
    # gaussian_blur: sigma 1.0 px at any side
    from flatnas_bench.corruptions.imaging import gaussian, to255

    expected = to255(gaussian(x / 255.0, 1.0)).astype(np.uint8)
    assert np.array_equal(C.corrupt(x, "gaussian_blur", 5), expected)


def test_a_set_at_the_input_resolution_reaches_the_candidate(tmp_path, tiny_data, monkeypatch):
    native = tiny_protocol(corruption_subset=8)
    at_input = tiny_protocol(corruption_subset=8, corruption_resolution="input")
    assert native.hash != at_input.hash
    big, small = corruption_set_for(native, tiny_data), corruption_set_for(at_input, tiny_data)
    assert big.images["fog"].shape == (5, 8, 32, 32, 3) and small.images["fog"].shape == (5, 8, 16, 16, 3)
    assert small is corruption_set_for(at_input, tiny_data)  # built once per process
    test = load_images(tiny_data, "cifar10").test
    pick = balanced_subset(test.y, 8)
    expected = generate_corruption_set(area_downsample(test.x[pick], 16), test.y[pick])
    for name in BENCHMARK_CORRUPTIONS:
        assert np.array_equal(small.images[name], expected.images[name]), name
    assert np.array_equal(small.labels, test.y[pick])
    three = corruption_set_for(at_input, tiny_data, severities=(3, 4, 5))
    assert three.severities == (3, 4, 5) and np.array_equal(three.images["snow"], small.images["snow"][2:])

    seen = []  # the corruption images each candidate is evaluated on
    evaluate = DeviceData.corruption_tensors

    def spy(self, cset, subset):
        seen.append(cset.images["fog"].shape)
        return evaluate(self, cset, subset)

    monkeypatch.setattr(DeviceData, "corruption_tensors", spy)
    table = tmp_path / "t.sqlite"
    for protocol in (native, at_input):
        run_bench([CONV], protocol, table, tiny_data, progress=False, options=ExecutorOptions(threads=1))
    with ResultStore(table, readonly=True) as store:
        rows = store.to_frame().set_index("protocol_hash")
        cards = dict(zip(store.protocols()["hash"], store.protocols()["card"], strict=True))
    assert cards[at_input.hash]["corruption_resolution"] == "input"
    one, two = rows.loc[native.hash], rows.loc[at_input.hash]
    # the same training (the setting is evaluation only), another corruption test
    assert (one["val_acc"], one["test_acc"]) == (two["val_acc"], two["test_acc"])
    assert seen == [(5, 8, 32, 32, 3), (5, 8, 16, 16, 3)]


def test_a_protocol_of_severities_3_to_5_evaluates_and_averages_only_those(tmp_path, tiny_data, monkeypatch):
    all_five = tiny_protocol(corruption_subset=8, corruption_resolution="input")
    three = all_five.replace(corruption_severities="3-5")
    seen = []
    evaluate = DeviceData.corruption_tensors

    def spy(self, cset, subset):
        seen.append(cset.severities)
        return evaluate(self, cset, subset)

    monkeypatch.setattr(DeviceData, "corruption_tensors", spy)
    table = tmp_path / "t.sqlite"
    for protocol in (all_five, three):
        run_bench([CONV], protocol, table, tiny_data, progress=False, options=ExecutorOptions(threads=1))
    assert seen == [(1, 2, 3, 4, 5), (3, 4, 5)]
    with ResultStore(table, readonly=True) as store:
        rows = store.to_frame().set_index("protocol_hash")
    one, two = rows.loc[all_five.hash], rows.loc[three.hash]
    assert (one["val_acc"], one["test_acc"]) == (two["val_acc"], two["test_acc"])  # same training
    per = two["corr_per"] if isinstance(two["corr_per"], dict) else json.loads(two["corr_per"])
    # each corruption's figure is a mean over 3 severities x 8 images: a whole number of 24ths of 100 %
    counts = [v * 24 / 100 for v in per.values()]
    assert len(counts) == 15 and all(abs(c - round(c)) < 1e-4 for c in counts)
    assert two["corr_acc_mean"] == pytest.approx(sum(per.values()) / 15, abs=1e-6)


def test_input_resolution_refuses_a_32_px_directory(tmp_path, tiny_data):
    test = load_images(tiny_data, "cifar10").test
    write_corruption_set(test.x[:8], test.y[:8], tmp_path / "c", ["fog"], (1,))
    at_input = tiny_protocol(corruption_subset=8, corruption_resolution="input")
    with pytest.raises(ConfigError, match=r"set made at 16 px, .* holds 32 px images"):
        corruption_set_for(at_input, tiny_data, tmp_path / "c")
    with pytest.raises(ConfigError, match="severities must be distinct ones"):
        corruption_set_for(tiny_protocol(corruption_subset=8), tiny_data, tmp_path / "c", severities=(2,))


def test_resolution_grid_and_its_cli(tmp_path, tiny_data):
    from cli.main import app

    image = load_images(tiny_data, "cifar10").test.x[3]
    grid = resolution_grid(image, 16, ["fog", "glass_blur"], (1, 5), seed=0, index=3)
    assert grid.shape == (2, 5, 16, 16, 3)
    small = area_downsample(image[None], 16)
    assert np.array_equal(grid[0, 0], small[0])
    assert np.array_equal(grid[1, 2], area_downsample(C.corrupt(image[None], "glass_blur", 5, 0, [3]), 16)[0])
    assert np.array_equal(grid[1, 4], C.corrupt(small, "glass_blur", 5, 0, [3])[0])
    png = tmp_path / "grid.png"
    args = ["corrupt-grid", "--data", str(tiny_data), "--out", str(png), "--index", "3", "--scale", "1"]
    result = CliRunner().invoke(app, [*args, "--corruptions", "fog,snow", "--resolution", "16"])
    assert result.exit_code == 0, result.output
    assert Image.open(png).size == (150 + 11 * 36 + 2 * 12, 52 + 2 * 36)
    result = CliRunner().invoke(app, [*args, "--resolution", "32"])
    assert result.exit_code == 2 and "resolution must be from 8 to 31 px, got 32" in result.output
