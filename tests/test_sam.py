"""SAM: running BN statistics come from the clean pass only; weights return exactly before the step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flatnas_bench.network import TinyNetwork
from flatnas_bench.sam import SAM, frozen_bn_stats

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|skip_connect~2|"


def _net() -> nn.Module:
    torch.manual_seed(0)
    return TinyNetwork(ARCH, C=4, N=1)


def _bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("adaptive", [False, True])
def test_bn_stats_equal_one_plain_forward(adaptive: bool) -> None:
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    plain = _net().train()
    plain(x)
    expected = _bn_state(plain)

    model = _net().train()
    base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sam = SAM(model.parameters(), base, rho=2.0 if adaptive else 0.05, adaptive=adaptive)
    nn.functional.cross_entropy(model(x), y).backward()
    sam.first_step()
    with frozen_bn_stats(model):
        nn.functional.cross_entropy(model(x), y).backward()
    sam.second_step()
    got = _bn_state(model)
    assert got.keys() == expected.keys()
    for k in expected:
        assert torch.equal(got[k], expected[k]), k
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_second_step_uses_perturbed_gradient_from_the_saved_weights() -> None:
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    base = torch.optim.SGD([w], lr=1.0)
    sam = SAM([w], base, rho=0.5, adaptive=False)
    (w**2).sum().backward()  # g = 2w = (2, -4)
    sam.first_step()
    e = 0.5 * torch.tensor([2.0, -4.0]) / torch.tensor([2.0, -4.0]).norm()
    assert torch.allclose(w.detach(), torch.tensor([1.0, -2.0]) + e)
    (w**2).sum().backward()
    sam.second_step()
    expected = torch.tensor([1.0, -2.0]) - 2 * (torch.tensor([1.0, -2.0]) + e)
    assert torch.allclose(w.detach(), expected)
