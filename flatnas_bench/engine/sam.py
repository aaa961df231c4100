"""Sharpness-Aware Minimization as a thin wrapper around a base optimiser, plain or adaptive.

One SAM step is two forward/backward passes (Foret et al., 2021; adaptive form: Kwon et al., 2021):

1. ``first_step``: with the gradient g of the clean loss, move every weight to w + e, where
   e = rho * s^2 g / ||s g|| with s = 1 (plain) or s = |w| element-wise (adaptive);
2. ``second_step``: with the gradient taken at w + e, restore w exactly (saved copy) and let the base
   optimiser step with that gradient.

Both steps work on whole parameter lists (``torch._foreach_*``: a handful of kernels per step, not a few
per tensor) and the norm stays on the device, so a step never waits for the host. BatchNorm running
statistics must come from the clean pass only; wrap the second forward in :func:`frozen_bn_stats`, given
the layer list from :func:`batchnorms` built once.

>>> opt = SAM(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1), rho=2.0, adaptive=True)
>>> bns = batchnorms(model)
>>> loss_fn(model(x), y).backward(); opt.first_step()  # doctest: +SKIP
>>> with frozen_bn_stats(bns): loss_fn(model(x), y).backward()  # doctest: +SKIP
>>> opt.second_step()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

BatchNorm = nn.modules.batchnorm._BatchNorm


class SAM:
    """SAM / adaptive SAM over ``base_optimizer`` (which owns ``params``); ``rho`` is the radius of the
    neighbourhood, in weight units (plain) or relative to |w| (adaptive)."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        base_optimizer: torch.optim.Optimizer,
        rho: float,
        adaptive: bool,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.base = base_optimizer
        self.rho = rho
        self.adaptive = adaptive
        self._live: list[torch.Tensor] = []  # the weights moved by first_step
        self._saved: list[torch.Tensor] = []  # their values before it (buffers reused across steps)

    def first_step(self) -> None:
        """Climb to w + e along the current (clean) gradient and zero the gradients for the second pass."""
        with torch.no_grad():  # a block, not a decorator: mutation testing skips decorated functions
            live = [p for p in self.params if p.grad is not None]
            grads = [p.grad for p in live]
            if len(self._saved) != len(live) or any(
                s.shape != p.shape for s, p in zip(self._saved, live, strict=True)
            ):
                self._saved = [torch.empty_like(p) for p in live]
            torch._foreach_copy_(self._saved, live)
            self._live = live
            if self.adaptive:
                magnitude = torch._foreach_abs(live)
                scaled = torch._foreach_mul(grads, magnitude)  # s g
            else:
                scaled = grads
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(scaled)))
            scale = self.rho / (norm + 1e-12)
            step = torch._foreach_mul(scaled, magnitude) if self.adaptive else scaled  # s^2 g
            torch._foreach_add_(live, torch._foreach_mul(step, scale))
        self.base.zero_grad(set_to_none=True)

    def second_step(self) -> None:
        """Return to w and step the base optimiser with the gradient taken at w + e."""
        if self._live:  # (an empty list is an error to the foreach kernels)
            with torch.no_grad():
                torch._foreach_copy_(self._live, self._saved)
        self._live = []
        self.base.step()
        self.base.zero_grad(set_to_none=True)


def batchnorms(model: nn.Module) -> list[BatchNorm]:
    """The model's BatchNorm layers, for :func:`frozen_bn_stats` (walk the modules once, not every step)."""
    return [m for m in model.modules() if isinstance(m, BatchNorm)]


@contextlib.contextmanager
def frozen_bn_stats(layers: nn.Module | Sequence[BatchNorm]) -> Iterator[None]:
    """Within the block, train-mode BatchNorm layers (a model's, or a :func:`batchnorms` list) normalise with
    batch statistics but leave their running mean, variance and batch counter untouched: momentum 0 and
    the counter buffer set aside, so no tensor is copied."""
    bns = batchnorms(layers) if isinstance(layers, nn.Module) else list(layers)
    saved = [(m.momentum, m.num_batches_tracked) for m in bns]
    for m in bns:
        m.momentum = 0.0
        m.num_batches_tracked = None  # BatchNorm counts only when the buffer is there
    try:
        yield
    finally:
        for m, (momentum, count) in zip(bns, saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked = count
