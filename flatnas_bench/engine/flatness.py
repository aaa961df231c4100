"""Flatness of a trained network: R(sigma, M) and the loss sharpness (the FoM that weighs R against the
error is defined in :mod:`flatnas_bench.search.fom`).

R(sigma, M) = (1/M) sum_m |A(w) - A(w + sigma * w * eps_m)|, eps_m ~ N(0, I) over every parameter (conv and
linear weights, biases, BN gamma and beta), A = top-1 accuracy in % on the validation split, network in
eval mode, BN running statistics neither perturbed nor recalibrated, every pass in fp32 (TF32 off on
CUDA; :func:`~flatnas_bench.engine.train.fp32_evaluation`) whatever the training precision. Smaller R =
flatter. The noise comes
from a CPU ``torch.Generator`` seeded by ``seed`` (same weights and seed give the same R bit for bit on
CPU, and the same noise on every device; on CUDA it reaches the GPU through pinned buffers without
blocking); weights are perturbed in place from one saved flat copy and restored exactly afterwards.

>>> f = flatness(model, data.normalize(data.val_x), data.val_y, sigma=0.05, draws=20, seed=0)
>>> f.r, f.loss_sharpness  # doctest: +SKIP
(3.1, 0.08)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from flatnas_bench.engine.train import predict


@dataclass(frozen=True)
class Flatness:
    """R and friends: ``r`` and ``r_std`` (accuracy points, std over draws), ``loss_sharpness`` (mean CE
    increase over the same draws), the unperturbed ``acc`` (%) and ``loss``, and per-draw accuracies.
    ``r_se`` is the standard error of ``r`` over its draws (``r_std / sqrt(M)``, points)."""

    r: float
    r_std: float
    loss_sharpness: float
    acc: float
    loss: float
    draw_accs: tuple[float, ...]

    @property
    def r_se(self) -> float:
        return self.r_std / math.sqrt(len(self.draw_accs)) if self.draw_accs else 0.0


@dataclass(frozen=True)
class PerturbationOutcomes:
    """What one perturbation run saw, image by image: ``correct0``/``loss0`` (n,) of the unperturbed net,
    ``correct``/``loss`` (M, n) under each draw. :meth:`summary` reduces them to a :class:`Flatness` over
    the first ``draws`` draws and the first ``images`` images, so one run prices every smaller setting."""

    correct0: torch.Tensor
    loss0: torch.Tensor
    correct: torch.Tensor
    loss: torch.Tensor

    def summary(self, draws: int | None = None, images: int | None = None) -> Flatness:
        m = self.correct.shape[0] if draws is None else draws
        n = self.correct0.shape[0] if images is None else images
        if m > self.correct.shape[0] or n > self.correct0.shape[0]:
            raise ValueError(f"asked for {m} draws x {n} images of {tuple(self.correct.shape)}")
        acc0 = 100.0 * self.correct0[:n].double().mean().item()
        loss0 = self.loss0[:n].double().mean().item()
        accs = (100.0 * self.correct[:m, :n].double().mean(1)).tolist()
        losses = self.loss[:m, :n].double().mean(1).numpy()
        gaps = np.abs(acc0 - np.asarray(accs, dtype=np.float64)) if m else np.zeros(1)
        sharp = float(np.mean(losses - loss0)) if m else 0.0
        return Flatness(float(gaps.mean()), float(gaps.std()), sharp, acc0, loss0, tuple(accs))


def perturbation_outcomes(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float = 0.05,
    draws: int = 20,
    seed: int = 0,
    batch_size: int = 1000,
) -> PerturbationOutcomes:
    """Per-image outcomes of ``model`` on normalised images ``x`` before and under ``draws`` seeded
    multiplicative perturbations w' = w + sigma * w * eps of every parameter (eps ~ N(0, I), drawn on the
    CPU in sequence, so the first k draws of a longer run are exactly a k-draw run). The model's weights,
    buffers and train/eval mode are exactly as before on return (also when an evaluation raises)."""
    with torch.no_grad():  # a block, not a decorator: mutation testing skips decorated functions
        params = list(model.parameters())
        flat = torch.cat([p.detach().reshape(-1) for p in params])  # the one saved copy
        sizes = [p.numel() for p in params]
        generator = torch.Generator().manual_seed(seed)
        correct0, loss0 = predict(model, x, y, batch_size)
        correct, losses = [], []
        try:
            for eps in _noise(generator, flat.numel(), draws, flat.device):
                _load(params, (flat + sigma * flat * eps).split(sizes))
                c, loss = predict(model, x, y, batch_size)
                correct.append(c)  # kept on the device until the end: no synchronisation per draw
                losses.append(loss)
        finally:
            _load(params, flat.split(sizes))
    n = len(y)
    return PerturbationOutcomes(
        correct0.cpu(),
        loss0.cpu(),
        torch.stack(correct).cpu() if draws else torch.zeros(0, n, dtype=torch.bool),
        torch.stack(losses).cpu() if draws else torch.zeros(0, n),
    )


def _load(params: list[nn.Parameter], values: Sequence[torch.Tensor]) -> None:
    """Copy flat ``values`` into ``params`` in place, one fused call."""
    torch._foreach_copy_(params, [v.view(p.shape) for p, v in zip(params, values, strict=True)])


def _noise(
    generator: torch.Generator, numel: int, draws: int, device: torch.device
) -> Iterator[torch.Tensor]:
    """The ``draws`` noise vectors eps ~ N(0, I), drawn on the CPU from ``generator`` (the same numbers on
    every device), on ``device``. On CUDA they go through two pinned buffers by non-blocking copies: the
    next draw is generated while the GPU still evaluates this one, and a buffer is reused only once its
    copy has finished. Every CUDA call names ``device`` (its stream, its context), so on ``cuda:1`` the
    wait covers that device's copy, not one on the current device."""
    if device.type != "cuda":
        for _ in range(draws):
            yield torch.randn(numel, generator=generator)
        return
    with torch.cuda.device(device):  # the pinned buffers belong to this device's context
        buffers = [torch.empty(numel, pin_memory=True) for _ in range(2)]
    copied: list[torch.cuda.Event | None] = [None, None]
    for k in range(draws):
        slot = k % 2
        if copied[slot] is not None:
            copied[slot].synchronize()
        torch.randn(numel, generator=generator, out=buffers[slot])
        eps = buffers[slot].to(device, non_blocking=True)  # enqueued on the device's current stream
        copied[slot] = torch.cuda.Event()
        copied[slot].record(torch.cuda.current_stream(device))
        yield eps


def flatness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float = 0.05,
    draws: int = 20,
    seed: int = 0,
    batch_size: int = 1000,
) -> Flatness:
    """R(sigma, M=draws) of ``model`` on normalised validation images ``x`` with labels ``y``.

    Every parameter is scaled multiplicatively, w' = w + sigma * w * eps (see :func:`perturbation_outcomes`).
    """
    return perturbation_outcomes(model, x, y, sigma, draws, seed, batch_size).summary()
