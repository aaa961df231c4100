"""The official CIFAR-C layout loader and the corruption metrics (checked on a hand-computed example)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flatnas_bench.core.errors import ConfigError, DataError
from flatnas_bench.corruptions.robustness import (
    CorruptionSet,
    ReferenceModel,
    corruption_accuracies,
    corruption_metrics,
    load_cifar_c,
)


def official_dir(tmp_path, n: int = 6, names=("fog", "snow")):
    """A small directory in the official layout: 5 severities x n images, labels repeated 5 times."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    np.save(tmp_path / "labels.npy", np.tile(labels, 5))
    arrays = {}
    for name in names:
        arrays[name] = rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8)
        np.save(tmp_path / f"{name}.npy", arrays[name])
    return labels, arrays


def test_loads_official_layout_in_official_order(tmp_path) -> None:
    labels, arrays = official_dir(tmp_path, names=("snow", "fog"))
    np.save(tmp_path / "notes.npy", np.zeros(3))  # unknown files are ignored
    cset = load_cifar_c(tmp_path)
    assert cset.names == ("snow", "fog") and cset.severities == (1, 2, 3, 4, 5) and len(cset) == 6
    assert np.array_equal(cset.labels, labels) and cset.labels.dtype == np.int64
    assert np.array_equal(cset.images["fog"].reshape(30, 32, 32, 3), arrays["fog"])
    first = load_cifar_c(tmp_path, corruptions=["fog"], subset=2)
    assert first.names == ("fog",) and first.images["fog"].shape == (5, 2, 32, 32, 3)
    assert np.array_equal(first.images["fog"][3], arrays["fog"][18:20])  # severity 4, images 0 and 1


def test_save_round_trips_with_meta(tmp_path) -> None:
    rng = np.random.default_rng(1)
    images = {"contrast": rng.integers(0, 256, (2, 4, 32, 32, 3), dtype=np.uint8)}
    cset = CorruptionSet(images, np.array([3, 1, 4, 1]), severities=(2, 5))
    cset.save(tmp_path, meta={"seed": 9})
    back = load_cifar_c(tmp_path)
    assert back.severities == (2, 5) and np.array_equal(back.images["contrast"], images["contrast"])
    assert np.array_equal(back.labels, cset.labels)
    assert json.loads((tmp_path / "meta.json").read_text())["seed"] == 9
    assert [(name, s, block.shape) for name, s, block in back.items()] == [
        ("contrast", 2, (4, 32, 32, 3)),
        ("contrast", 5, (4, 32, 32, 3)),
    ]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "labels.npy").unlink(), "no labels.npy"),
        (lambda d: np.save(d / "fog.npy", np.zeros((30, 32, 32, 3), np.float32)), "expected uint8"),
        (lambda d: np.save(d / "fog.npy", np.zeros((29, 32, 32, 3), np.uint8)), "expected uint8"),
        (lambda d: np.save(d / "fog.npy", np.zeros((30, 32, 32), np.uint8)), "expected uint8"),
        (lambda d: np.save(d / "labels.npy", np.arange(30)), "differ between severity blocks"),
        (lambda d: np.save(d / "labels.npy", np.zeros(31, np.uint8)), "labels of length"),
        (lambda d: (d / "fog.npy").write_bytes(b"not numpy"), "unreadable"),
        (lambda d: np.save(d / "snow.npy", np.zeros((30, 16, 16, 3), np.uint8)), "image size"),
    ],
)
def test_wrong_layout_is_one_line_data_error(tmp_path, damage, message: str) -> None:
    official_dir(tmp_path)
    damage(tmp_path)
    with pytest.raises(DataError, match=message) as info:
        load_cifar_c(tmp_path)
    assert "\n" not in str(info.value)


def test_missing_things_and_bad_options(tmp_path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_cifar_c(tmp_path / "nowhere")
    official_dir(tmp_path)
    with pytest.raises(DataError, match="missing"):
        load_cifar_c(tmp_path, corruptions=["frost"])
    with pytest.raises(ConfigError, match="unknown corruption"):
        load_cifar_c(tmp_path, corruptions=["rain"])
    with pytest.raises(ConfigError, match="subset"):
        load_cifar_c(tmp_path, subset=7)
    for name in ("fog", "snow"):
        (tmp_path / f"{name}.npy").unlink()
    with pytest.raises(DataError, match="no corruption files"):
        load_cifar_c(tmp_path)


def test_metrics_on_a_hand_computed_example() -> None:
    acc = {("fog", 1): 80.0, ("fog", 2): 60.0, ("snow", 1): 70.0, ("snow", 2): 50.0, ("saturate", 1): 85.0}
    out = corruption_metrics(acc, clean_acc=90.0)
    assert out["per_corruption"] == {"fog": 70.0, "snow": 60.0, "saturate": 85.0}
    assert out["corr_acc_mean"] == pytest.approx(65.0)  # extras (saturate) excluded
    assert out["mce"] == pytest.approx(35.0)  # mean of CE_fog = 30 and CE_snow = 40
    assert out["mce_norm"] is None and out["rel_mce"] is None
    reference = ReferenceModel(
        {("fog", 1): 60.0, ("fog", 2): 40.0, ("snow", 1): 50.0, ("snow", 2): 30.0}, 80.0
    )
    out = corruption_metrics(acc, clean_acc=90.0, reference=reference)
    # normalised: fog (20 + 40) / (40 + 60) = 0.6, snow (30 + 50) / (50 + 70) = 2/3
    assert out["mce_norm"] == pytest.approx(100 * (0.6 + 2 / 3) / 2)
    # relative: fog (10 + 30) / (20 + 40) = 2/3, snow (20 + 40) / (30 + 50) = 0.75
    assert out["rel_mce"] == pytest.approx(100 * (2 / 3 + 0.75) / 2)


def test_metrics_errors() -> None:
    with pytest.raises(ConfigError, match="benchmark corruption"):
        corruption_metrics({("saturate", 1): 50.0}, 90.0)
    with pytest.raises(ConfigError, match="reference model lacks"):
        corruption_metrics({("fog", 1): 50.0}, 90.0, ReferenceModel({("snow", 1): 40.0}, 80.0))


def test_corruption_accuracies_with_a_predict_function() -> None:
    images = np.zeros((2, 3, 32, 32, 3), np.uint8)
    images[1] = 255  # severity 2: all-white images
    cset = CorruptionSet({"fog": images}, np.array([0, 1, 1]), severities=(1, 2))
    acc = corruption_accuracies(lambda x: (x.mean(axis=(1, 2, 3)) > 128).astype(int), cset)
    assert acc == {("fog", 1): pytest.approx(100 / 3), ("fog", 2): pytest.approx(200 / 3)}
