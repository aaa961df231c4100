"""Flatness R: deterministic by seed, weights restored exactly, bounded, zero at sigma 0; FoM helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flatnas_bench.flatness import alpha_norm, flatness, fom
from flatnas_bench.network import TinyNetwork

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
    from flatnas_bench.flatness import perturbation_outcomes

    model, x, y = setup
    long = perturbation_outcomes(model, x, y, sigma=0.1, draws=6, seed=5)
    assert long.summary(draws=3, images=120) == flatness(model, x[:120], y[:120], sigma=0.1, draws=3, seed=5)
    f = long.summary()
    assert f.r_se == pytest.approx(f.r_std / np.sqrt(6))
    with pytest.raises(ValueError):
        long.summary(draws=7)
