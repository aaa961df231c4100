"""Analytic params / MACs: NB201's records to every printed digit, the built module, the whole space."""

from __future__ import annotations

import doctest
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from conftest import require_shared
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.nb201 import costs
from flatnas_bench.nb201.costs import Costs, arch_costs, cost_arrays, dataset_config, op_counts
from flatnas_bench.nb201.network import TinyNetwork
from flatnas_bench.nb201.space import NUM_ARCHS, Arch, all_archs, sample_archs

# NB201 / NATS-Bench CIFAR-10 records: (arch, params M, MFLOPs = M MACs)
RECORDS = [
    (
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
        0.129306,
        15.64737,
    ),
    (
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|",
        0.802426,
        113.95137,
    ),
    ("|skip_connect~0|+|skip_connect~0|skip_connect~1|+|none~0|nor_conv_1x1~1|none~2|", 0.101306, 11.71521),
]
CONFIGS = [  # (C, N, num_classes, resolution)
    (16, 5, 10, 32),
    (16, 5, 120, 16),
    (8, 1, 3, 8),
    (4, 2, 100, 12),
]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny forwards run 20-80x slower with 2 intra-op threads on a contended 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("arch", "params_m", "flops_m"), RECORDS)
def test_nb201_records_match_exactly(arch: str, params_m: float, flops_m: float) -> None:
    assert arch_costs(arch) == Costs(params_m, flops_m)
    all_params, all_flops = cost_arrays()
    ordinal = Arch.from_str(arch).ordinal
    assert (all_params[ordinal], all_flops[ordinal]) == (params_m, flops_m)
    assert f"{arch_costs(arch).params_m}" == f"{params_m}"  # prints the same digits, nothing extra


def test_nats_fixture_records_on_every_dataset() -> None:
    nats_bench = pytest.importorskip("nats_bench")
    path = require_shared("nats-tss-fixture", "NATS-tss-v1_0-3ffb9-simple")
    api = nats_bench.create(str(path), "tss", fast_mode=True, verbose=False)
    for index in (0, 11, 284):
        for dataset in ("cifar10", "cifar10-valid", "cifar100", "ImageNet16-120"):
            record = api.get_cost_info(index, dataset, hp="200")
            num_classes, resolution = dataset_config(dataset)
            ours = arch_costs(api.arch(index), num_classes=num_classes, resolution=resolution)
            assert ours.params_m == pytest.approx(float(record["params"]), abs=5e-13), (index, dataset)
            assert ours.flops_m == pytest.approx(float(record["flops"]), abs=5e-12), (index, dataset)


def built_macs(net: nn.Module, resolution: int) -> int:
    """MACs of one forward counted as NB201's counter does: convs and linears only (with their bias)."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            per_position = kh * kw * module.in_channels * module.out_channels // module.groups
            total += per_position * output.shape[2] * output.shape[3]
        else:
            total += module.in_features * module.out_features + module.out_features

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, resolution, resolution))
    for handle in handles:
        handle.remove()
    return total


@pytest.mark.parametrize(("C", "N", "num_classes", "resolution"), CONFIGS)
def test_params_equal_the_built_module(C: int, N: int, num_classes: int, resolution: int) -> None:
    archs = [Arch.from_str(r[0]) for r in RECORDS] + sample_archs(4, seed=C + N)
    for arch in archs:
        net = TinyNetwork(arch, C=C, N=N, num_classes=num_classes)
        expected = arch_costs(arch, C=C, N=N, num_classes=num_classes, resolution=resolution)
        assert sum(p.numel() for p in net.parameters()) == round(expected.params_m * 1e6), str(arch)


@pytest.mark.parametrize(
    ("C", "N", "num_classes", "resolution"), [(16, 5, 10, 32), (8, 2, 3, 8), (4, 2, 100, 12)]
)
def test_macs_equal_a_forward_count_on_the_built_module(
    C: int, N: int, num_classes: int, resolution: int
) -> None:
    for arch in [Arch.from_str(r[0]) for r in RECORDS[:2]] + sample_archs(2, seed=N):
        net = TinyNetwork(arch, C=C, N=N, num_classes=num_classes)
        expected = arch_costs(arch, C=C, N=N, num_classes=num_classes, resolution=resolution)
        assert built_macs(net, resolution) == round(expected.flops_m * 1e6), str(arch)


def test_space_wide_ranges_match_nb201() -> None:
    params_m, flops_m = cost_arrays()
    assert params_m.shape == flops_m.shape == (NUM_ARCHS,)
    assert (round(flops_m.min(), 2), round(flops_m.max(), 2), round(float(np.median(flops_m)), 1)) == (
        7.78,
        220.12,
        47.1,
    )
    assert (round(params_m.min(), 3), round(params_m.max(), 3), round(float(np.median(params_m)), 3)) == (
        0.073,
        1.532,
        0.344,
    )
    # each conv edge adds the same amount in all 3 stages: 35.39 M MACs (3x3) and 3.93 M MACs (1x1)
    base = Arch((0,) * 6).ordinal
    assert round(flops_m[Arch((3, 0, 0, 0, 0, 0)).ordinal] - flops_m[base], 2) == 35.39
    assert round(flops_m[Arch((2, 0, 0, 0, 0, 0)).ordinal] - flops_m[base], 2) == 3.93


@settings(max_examples=50, deadline=None)
@given(st.integers(0, NUM_ARCHS - 1), st.sampled_from(CONFIGS))
def test_arrays_agree_with_single_arch_costs(ordinal: int, config: tuple[int, int, int, int]) -> None:
    params_m, flops_m = cost_arrays(*config)
    single = arch_costs(all_archs()[ordinal], *config)
    assert (params_m[ordinal], flops_m[ordinal]) == (single.params_m, single.flops_m)


def test_cost_arrays_is_fast_cached_and_read_only() -> None:
    cost_arrays.cache_clear()
    start = time.perf_counter()
    params_m, _ = cost_arrays(C=24, N=3)
    assert time.perf_counter() - start < 0.5  # measured: about 4 ms for all 15,625 archs
    assert cost_arrays(C=24, N=3)[0] is params_m
    with pytest.raises(ValueError):
        params_m[0] = 1.0


@pytest.mark.parametrize(
    "kwargs", [{"C": 0}, {"N": -1}, {"num_classes": 0}, {"resolution": 30}, {"resolution": 0}]
)
def test_bad_configs_raise_config_error(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        arch_costs(RECORDS[0][0], **kwargs)
    with pytest.raises(ConfigError):
        cost_arrays(**kwargs)


def test_dataset_configs() -> None:
    assert dataset_config("cifar10") == (10, 32) and dataset_config("ImageNet16-120") == (120, 16)
    with pytest.raises(ConfigError) as info:
        dataset_config("mnist")
    assert (
        str(info.value)
        == "unknown dataset 'mnist'; choose one of cifar10, cifar10-valid, cifar100, ImageNet16-120"
    )


def test_the_smallest_valid_config_is_accepted_and_exact() -> None:
    # C = 1, N = 0 (no normal cells), one class, 4 px: every bound of the check is inclusive
    for arch in [Arch.from_str(r[0]) for r in RECORDS[:2]]:
        net = TinyNetwork(arch, C=1, N=0, num_classes=1)
        costs = arch_costs(arch, C=1, N=0, num_classes=1, resolution=4)
        assert sum(p.numel() for p in net.parameters()) == round(costs.params_m * 1e6)
        assert built_macs(net, 4) == round(costs.flops_m * 1e6)
    with pytest.raises(ConfigError) as info:
        arch_costs(RECORDS[0][0], C=0)
    assert str(info.value) == (
        "need C >= 1, N >= 0, num_classes >= 1 and a resolution divisible by 4; "
        "got C=0, N=5, num_classes=10, resolution=32"
    )


def test_op_counts_are_int64_counts_per_op() -> None:
    counts = op_counts(np.array([[0, 1, 2, 3, 4, 4], [3, 3, 3, 3, 3, 3]]))
    assert counts.dtype == np.int64
    assert counts.tolist() == [[1, 1, 1, 1, 2], [0, 0, 0, 6, 0]]


def test_module_examples_run() -> None:
    result = doctest.testmod(costs)
    assert result.failed == 0 and result.attempted >= 5  # deleting the examples fails too
