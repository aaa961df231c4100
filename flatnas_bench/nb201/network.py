"""TinyNetwork: the NAS-Bench-201 macro skeleton around one cell, module for module as in the benchmark.

Layout for ``C`` channels, ``N`` cells per stage and a ``resolution`` x ``resolution`` input::

    stem      conv3x3 3->C (no bias) + BN
    stage 1   N cells at C channels           (resolution)
    reduce    ResNet basic block C->2C, stride 2
    stage 2   N cells at 2C                   (resolution / 2)
    reduce    ResNet basic block 2C->4C, stride 2
    stage 3   N cells at 4C                   (resolution / 4)
    head      BN + ReLU, global average pooling, linear 4C->num_classes

Every cell edge is instantiated, including convolutions whose input is always zero, so the parameter
count equals the benchmark's ``params`` field (see :mod:`flatnas_bench.nb201.costs`). All BatchNorms are
affine
and track running statistics, as in the benchmark.

>>> net = TinyNetwork(
...     "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"
... )
>>> sum(p.numel() for p in net.parameters())  # 0.802426 M, the NB201 CIFAR-10 record
802426
>>> net(torch.zeros(2, 3, 32, 32)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import torch
from torch import nn

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.nb201.space import (
    CONV1,
    CONV3,
    EDGES,
    NONE,
    NUM_NODES,
    OPS,
    POOL,
    SKIP,
    Arch,
    ArchLike,
    as_arch,
)

__all__ = ["Cell", "ReLUConvBN", "ResNetBasicBlock", "TinyNetwork", "Zero", "make_op"]


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv2d (no bias, 'same' padding) -> BatchNorm2d; the benchmark's conv op and block layer."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),  # the input feeds several edges: never overwrite it
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out, affine=True, track_running_stats=True),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros of the input's shape, dtype and memory format."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def make_op(op: int, channels: int) -> nn.Module:
    """The module for op index ``op`` (NB201 order) on an edge at ``channels`` channels, stride 1."""
    if op == NONE:
        return Zero()
    if op == SKIP:
        return nn.Identity()
    if op == CONV1:
        return ReLUConvBN(channels, channels, 1)
    if op == CONV3:
        return ReLUConvBN(channels, channels, 3)
    if op == POOL:
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"op index {op} outside 0..{len(OPS) - 1}")


class Cell(nn.Module):
    """One NB201 cell: node j = sum over i < j of ``edges[k](node i)``; returns node 3.

    ``edges`` holds one module per edge in NB201 edge order (0->1, 0->2, 1->2, 0->3, 1->3, 2->3).
    ``none`` edges are kept as modules but left out of the sums, which is the same as adding zeros; a node
    with no other input is zeros.
    """

    def __init__(self, arch: Arch, channels: int) -> None:
        super().__init__()
        self.arch = arch
        self.edges = nn.ModuleList(make_op(op, channels) for op in arch.ops)
        # per node j >= 1: the (edge index, source node) pairs that contribute
        self._inputs: tuple[tuple[tuple[int, int], ...], ...] = tuple(
            tuple((k, i) for k, (i, dst) in enumerate(EDGES) if dst == j and arch.ops[k] != NONE)
            for j in range(1, NUM_NODES)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for inputs in self._inputs:
            if not inputs:
                nodes.append(torch.zeros_like(x))
                continue
            total = self.edges[inputs[0][0]](nodes[inputs[0][1]])
            for k, i in inputs[1:]:
                total = total + self.edges[k](nodes[i])
            nodes.append(total)
        return nodes[-1]

    def extra_repr(self) -> str:
        return str(self.arch)


class ResNetBasicBlock(nn.Module):
    """The stride-2 reduction block: ReLUConvBN 3x3 stride 2, ReLUConvBN 3x3, plus a shortcut of
    AvgPool2d(2, 2) then a 1x1 conv (no bias, no BN)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class TinyNetwork(nn.Module):
    """The NB201 network for one cell (see the module docstring for the layout).

    Args:
        arch: the cell, as an :class:`~flatnas_bench.nb201.space.Arch`, NB201 string or 6 op indices.
        C: channels of the first stage (NB201: 16); stages run at C, 2C, 4C.
        N: cells per stage (NB201: 5).
        num_classes: outputs of the linear head (CIFAR-10: 10, CIFAR-100: 100, ImageNet16-120: 120).

    Inputs are float images ``(batch, 3, H, W)`` with H and W divisible by 4, contiguous or channels-last
    (``net.to(memory_format=torch.channels_last)`` keeps the whole forward in that format). Returns logits
    ``(batch, num_classes)``.
    """

    def __init__(self, arch: ArchLike, C: int = 16, N: int = 5, num_classes: int = 10) -> None:
        super().__init__()
        if C < 1 or N < 0 or num_classes < 1:
            raise ConfigError(f"need C >= 1, N >= 0, num_classes >= 1; got C={C}, N={N}, {num_classes=}")
        self.arch = as_arch(arch)
        self.C, self.N, self.num_classes = C, N, num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(3, C, 3, padding=1, bias=False),
            nn.BatchNorm2d(C, affine=True, track_running_stats=True),
        )
        layers: list[nn.Module] = []
        for stage in range(3):
            channels = C * 2**stage
            if stage > 0:
                layers.append(ResNetBasicBlock(channels // 2, channels))
            layers.extend(Cell(self.arch, channels) for _ in range(N))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.global_pooling(x), 1))

    def extra_repr(self) -> str:
        return f"arch={self.arch}, C={self.C}, N={self.N}, num_classes={self.num_classes}"
