"""Sharpness-Aware Minimization as a thin wrapper around a base optimiser, plain or adaptive.

One SAM step is two forward/backward passes (Foret et al., 2021; adaptive form: Kwon et al., 2021):

1. ``first_step``: with the gradient g of the clean loss, move every weight to w + e, where
   e = rho * s^2 g / ||s g|| with s = 1 (plain) or s = |w| element-wise (adaptive);
2. ``second_step``: with the gradient taken at w + e, restore w exactly (saved copy) and let the base
   optimiser step with that gradient.

BatchNorm running statistics must come from the clean pass only; wrap the second forward in
:func:`frozen_bn_stats`.

>>> opt = SAM(model.parameters(), torch.optim.SGD(model.parameters(), lr=0.1), rho=2.0, adaptive=True)
>>> loss_fn(model(x), y).backward(); opt.first_step()  # doctest: +SKIP
>>> with frozen_bn_stats(model): loss_fn(model(x), y).backward()  # doctest: +SKIP
>>> opt.second_step()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn


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
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    @torch.no_grad()
    def first_step(self) -> None:
        """Climb to w + e along the current (clean) gradient and zero the gradients for the second pass."""
        live = [p for p in self.params if p.grad is not None]
        scaled = [p.grad * p.abs() if self.adaptive else p.grad for p in live]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in scaled]))
        scale = self.rho / (norm + 1e-12)
        self._saved = [(p, p.detach().clone()) for p in live]
        for p, g in zip(live, scaled, strict=True):
            p.add_(g * p.abs() * scale if self.adaptive else g * scale)
        self.base.zero_grad(set_to_none=True)

    @torch.no_grad()
    def second_step(self) -> None:
        """Return to w and step the base optimiser with the gradient taken at w + e."""
        for p, w in self._saved:
            p.copy_(w)
        self._saved = []
        self.base.step()
        self.base.zero_grad(set_to_none=True)


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Within the block, train-mode BatchNorm layers normalise with batch statistics but leave their
    running mean, variance and batch counter untouched (momentum 0, counter restored)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [
        (m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in bns
    ]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(bns, saved, strict=True):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)
