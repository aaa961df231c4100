"""Flatness R: deterministic by seed, weights restored exactly, bounded, zero at sigma 0; FoM helpers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from flatnas_bench.engine.flatness import flatness, perturbation_outcomes
from flatnas_bench.nb201.network import TinyNetwork
from flatnas_bench.search.fom import alpha_norm, fom

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|skip_connect~2|"


@pytest.fixture(scope="module")
def setup() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = TinyNetwork(ARCH, C=4, N=1).to(memory_format=torch.channels_last)
    x, y = torch.randn(200, 3, 16, 16), torch.randint(0, 10, (200,))
    model.train()
    with torch.no_grad():
        model(x)  # non-trivial running statistics
    return model, x.contiguous(memory_format=torch.channels_last), y


def test_same_seed_same_r_bit_for_bit_and_exact_restore(setup) -> None:
    model, x, y = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = flatness(model, x, y, sigma=0.05, draws=5, seed=3)
    b = flatness(model, x, y, sigma=0.05, draws=5, seed=3)
    assert a == b
    assert model.training  # mode restored
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
        assert v.stride() == before[k].stride(), k
    assert 0.0 <= a.r <= 100.0
    assert flatness(model, x, y, sigma=0.5, draws=5, seed=4).r > 0


def test_sigma_zero_gives_zero(setup) -> None:
    model, x, y = setup
    f = flatness(model, x, y, sigma=0.0, draws=3, seed=0)
    assert f.r == 0.0 and f.loss_sharpness == 0.0


def test_fom_and_alpha_norm() -> None:
    errs, rs = [10.0, 30.0], [1.0, 3.0]
    norm = alpha_norm(errs, rs)
    assert norm == pytest.approx(10.0)
    np.testing.assert_allclose(fom(errs, rs, alpha=0.5, alpha_norm=norm), [10.0, 30.0])
    assert alpha_norm([], []) == 1.0
    assert alpha_norm([10.0, np.nan], [0.0, 1.0]) == 1.0  # failed row ignored; R all zero


def test_outcome_prefixes_equal_shorter_runs(setup) -> None:
    """The first k draws (and first n images) of one long run are exactly a k-draw run on n images."""
    from flatnas_bench.engine.flatness import perturbation_outcomes

    model, x, y = setup
    long = perturbation_outcomes(model, x, y, sigma=0.1, draws=6, seed=5)
    assert long.summary(draws=3, images=120) == flatness(model, x[:120], y[:120], sigma=0.1, draws=3, seed=5)
    f = long.summary()
    assert f.r_se == pytest.approx(f.r_std / np.sqrt(6))
    with pytest.raises(ValueError):
        long.summary(draws=7)


def test_zero_draws_give_empty_outcomes_of_the_right_shape(setup) -> None:
    model, x, y = setup
    out = perturbation_outcomes(model, x[:10], y[:10], sigma=0.1, draws=0)
    assert out.correct.shape == (0, 10) and out.correct.dtype == torch.bool
    assert out.loss.shape == (0, 10) and out.loss.dtype == torch.float32
    f = out.summary()
    assert (f.r, f.r_std, f.loss_sharpness, f.draw_accs) == (0.0, 0.0, 0.0, ())
    with pytest.raises(ValueError) as info:
        out.summary(draws=1)
    assert str(info.value) == "asked for 1 draws x 10 images of (0, 10)"


def test_alpha_norm_and_fom_read_missing_values_as_nan() -> None:
    # only complete finite rows count: row 0 (err 10, R 0.5) -> 10 / 0.5; a mean R below 1 still divides
    assert alpha_norm([10, None, 20], [0.5, 4, None]) == 20.0
    assert np.isnan(fom([None, 2], [1, 1], alpha=0.5, alpha_norm=1.0)).tolist() == [True, False]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" when nothing is complete
        assert alpha_norm([np.nan], [1.0]) == 1.0


def test_perturbation_outcomes_defaults_are_sigma_005_twenty_draws_seed_0(setup) -> None:
    model, x, y = setup
    out = perturbation_outcomes(model, x[:20], y[:20])
    assert out.correct.shape == (20, 20)
    assert out.summary() == flatness(model, x[:20], y[:20], sigma=0.05, draws=20, seed=0)


def test_fom_reads_a_missing_r_as_nan() -> None:
    assert np.isnan(fom([1, 2], [None, 1], alpha=0.5, alpha_norm=1.0)).tolist() == [True, False]
