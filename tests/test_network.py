"""TinyNetwork: NB201 module layout, every edge instantiated, batch-independent channels-last forward."""

from __future__ import annotations

import doctest
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.nb201 import network
from flatnas_bench.nb201.network import Cell, ReLUConvBN, ResNetBasicBlock, TinyNetwork, Zero
from flatnas_bench.nb201.space import CONV1, CONV3, NONE, POOL, SKIP, Arch

RECORD_11 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"
ALL_OPS = Arch((NONE, SKIP, CONV1, CONV3, POOL, CONV3))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny forwards run 20-80x slower with 2 intra-op threads on a contended 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_layout_is_nb201s() -> None:
    net = TinyNetwork(RECORD_11)
    stem_conv, stem_bn = net.stem
    assert (stem_conv.in_channels, stem_conv.out_channels, stem_conv.kernel_size) == (3, 16, (3, 3))
    assert stem_conv.bias is None and isinstance(stem_bn, nn.BatchNorm2d)
    kinds = [type(m) for m in net.cells]
    assert kinds == [Cell] * 5 + [ResNetBasicBlock] + [Cell] * 5 + [ResNetBasicBlock] + [Cell] * 5
    assert [m.conv_a[1].out_channels for m in net.cells if isinstance(m, ResNetBasicBlock)] == [32, 64]
    assert isinstance(net.lastact[0], nn.BatchNorm2d) and isinstance(net.lastact[1], nn.ReLU)
    assert (net.classifier.in_features, net.classifier.out_features) == (64, 10)
    assert net.classifier.bias is not None
    assert n_params(net) == 802_426  # the NB201 CIFAR-10 record


def test_reduction_block_matches_nb201() -> None:
    block = ResNetBasicBlock(16, 32)
    assert block.conv_a[1].stride == (2, 2) and block.conv_a[1].kernel_size == (3, 3)
    assert block.conv_b[1].stride == (1, 1) and block.conv_b[1].bias is None
    pool, conv = block.downsample
    assert isinstance(pool, nn.AvgPool2d) and (pool.kernel_size, pool.stride) == (2, 2)
    assert conv.kernel_size == (1, 1) and conv.bias is None
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)


def test_every_edge_is_instantiated_with_nb201_ops() -> None:
    cell = Cell(ALL_OPS, 8)
    assert len(cell.edges) == 6
    none, skip, conv1, conv3, pool, conv3_from_zero = cell.edges
    assert isinstance(none, Zero) and isinstance(skip, nn.Identity)
    for op, k in ((conv1, 1), (conv3, 3), (conv3_from_zero, 3)):
        relu, conv, bn = op
        assert isinstance(op, ReLUConvBN) and isinstance(relu, nn.ReLU) and not relu.inplace
        assert conv.kernel_size == (k, k) and conv.padding == (k // 2, k // 2) and conv.bias is None
        assert bn.affine and bn.track_running_stats
    assert isinstance(pool, nn.AvgPool2d) and pool.stride == 1 and pool.padding == 1
    assert pool.count_include_pad is False
    # a conv whose input is always zero still has its parameters (they count in NB201's params)
    assert n_params(Cell(Arch((NONE, NONE, NONE, NONE, CONV3, NONE)), 8)) == 9 * 64 + 16


def test_all_batchnorms_are_affine_and_track_statistics() -> None:
    for module in TinyNetwork(ALL_OPS, C=4, N=1).modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.affine and module.track_running_stats


def test_cell_computes_the_sum_over_edges() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6)
    # node1 = x, node2 = pool(x), node3 = none(x) + skip(node1) + skip(node2) = x + pool(x)
    cell = Cell(Arch((SKIP, POOL, NONE, NONE, SKIP, SKIP)), 4)
    expected = x + nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    assert torch.allclose(cell(x), expected)
    assert torch.equal(Cell(Arch((NONE,) * 6), 4)(x), torch.zeros_like(x))


def test_forward_is_batch_independent_in_eval() -> None:
    torch.manual_seed(0)
    net = TinyNetwork(ALL_OPS, C=8, N=1, num_classes=7).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        batch = net(x)
        single = torch.cat([net(x[i : i + 1]) for i in range(3)])
    assert batch.shape == (3, 7)
    assert torch.allclose(batch, single, atol=1e-5)


def test_channels_last_gives_the_same_logits_and_keeps_the_format() -> None:
    torch.manual_seed(0)
    net = TinyNetwork(ALL_OPS, C=8, N=2).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        reference = net(x)
        fast = net.to(memory_format=torch.channels_last)
        stem_out = fast.stem(x.to(memory_format=torch.channels_last))
        out = fast(x.to(memory_format=torch.channels_last))
    assert stem_out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, reference, atol=1e-5)


def test_training_step_runs_and_reaches_every_parameter_on_a_live_edge() -> None:
    torch.manual_seed(0)
    net = TinyNetwork(RECORD_11, C=4, N=1, num_classes=3)
    loss = nn.functional.cross_entropy(net(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in net.parameters())


def test_imagenet16_shape_and_head() -> None:
    net = TinyNetwork(RECORD_11, num_classes=120)
    assert net(torch.zeros(1, 3, 16, 16)).shape == (1, 120)
    assert n_params(net) == 809_576  # the NB201 ImageNet16-120 record


@pytest.mark.parametrize("kwargs", [{"C": 0}, {"N": -1}, {"num_classes": 0}])
def test_bad_sizes_raise_config_error(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        TinyNetwork(RECORD_11, **kwargs)


def test_module_examples_run() -> None:
    result = doctest.testmod(network)
    assert result.failed == 0 and result.attempted >= 3  # deleting the examples fails too
