"""Flatness of a trained network: R(sigma, M), the loss sharpness, and the FlatNAS figure of merit.

R(sigma, M) = (1/M) sum_m |A(w) - A(w + sigma * w * eps_m)|, eps_m ~ N(0, I) over every parameter (conv and
linear weights, biases, BN gamma and beta), A = top-1 accuracy in % on the validation split, network in
eval mode, BN running statistics neither perturbed nor recalibrated. Smaller R = flatter. The noise comes
from a CPU ``torch.Generator`` seeded by ``seed`` (same weights and seed give the same R bit for bit on
CPU, and the same noise on every device); weights are perturbed in place from one saved flat copy and
restored exactly with ``copy_`` afterwards.

>>> f = flatness(model, data.normalize(data.val_x), data.val_y, sigma=0.05, draws=20, seed=0)
>>> f.r, f.loss_sharpness  # doctest: +SKIP
(3.1, 0.08)
>>> fom([10.0, 20.0], [2.0, 4.0], alpha=0.5, alpha_norm=alpha_norm([10.0, 20.0], [2.0, 4.0]))
array([10., 20.])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from flatnas_bench.train import predict


@dataclass(frozen=True)
class Flatness:
    """R and friends: ``r`` and ``r_std`` (accuracy points, std over draws), ``loss_sharpness`` (mean CE
    increase over the same draws), the unperturbed ``acc`` (%) and ``loss``, and per-draw accuracies."""

    r: float
    r_std: float
    loss_sharpness: float
    acc: float
    loss: float
    draw_accs: tuple[float, ...]


@torch.no_grad()
def flatness(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float = 0.05,
    draws: int = 20,
    seed: int = 0,
    batch_size: int = 1000,
    precision: str = "fp32",
) -> Flatness:
    """R(sigma, M=draws) of ``model`` on normalised validation images ``x`` with labels ``y``.

    Every parameter is scaled multiplicatively, w' = w + sigma * w * eps. The model's weights, buffers and
    train/eval mode are exactly as before on return (also when an evaluation raises).
    """

    def measure() -> tuple[float, float]:
        correct, losses = predict(model, x, y, batch_size, precision)
        return 100.0 * correct.float().mean().item(), losses.mean().item()

    params = list(model.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])  # the one saved copy
    sizes = [p.numel() for p in params]
    generator = torch.Generator().manual_seed(seed)
    acc0, loss0 = measure()
    accs, losses = [], []
    try:
        for _ in range(draws):
            eps = torch.randn(flat.numel(), generator=generator).to(flat.device)
            noisy = flat + sigma * flat * eps
            for p, chunk in zip(params, noisy.split(sizes), strict=True):
                p.copy_(chunk.view(p.shape))
            acc, loss = measure()
            accs.append(acc)
            losses.append(loss)
    finally:
        for p, chunk in zip(params, flat.split(sizes), strict=True):
            p.copy_(chunk.view(p.shape))
    gaps = np.abs(acc0 - np.asarray(accs, dtype=np.float64)) if draws else np.zeros(1)
    sharp = float(np.mean(np.asarray(losses) - loss0)) if draws else 0.0
    return Flatness(float(gaps.mean()), float(gaps.std()), sharp, acc0, loss0, tuple(accs))


def fom(
    err: float | Sequence[float] | np.ndarray,
    r: float | Sequence[float] | np.ndarray,
    alpha: float = 0.5,
    alpha_norm: float = 1.0,
) -> np.ndarray:
    """FlatNAS's first objective (minimised): alpha * Err + alpha_norm * (1 - alpha) * R.

    ``err`` is top-1 error in %, ``r`` is R(sigma, M) in accuracy points; both broadcast.
    ``fom(9.0, 2.0, alpha=0.5, alpha_norm=4.5)`` -> 9.0.
    """
    return alpha * np.asarray(err, dtype=np.float64) + alpha_norm * (1 - alpha) * np.asarray(
        r, dtype=np.float64
    )


def alpha_norm(errs: Sequence[float] | np.ndarray, rs: Sequence[float] | np.ndarray) -> float:
    """mean(Err) / mean(R) over the networks evaluated so far (NaNs, e.g. failed rows, ignored), so both
    terms of :func:`fom` weigh alike; 1.0 when there is nothing to normalise by (no rows, or all R = 0)."""
    errs, rs = np.asarray(errs, dtype=np.float64), np.asarray(rs, dtype=np.float64)
    ok = np.isfinite(errs) & np.isfinite(rs)
    mean_r = rs[ok].mean() if ok.any() else 0.0
    return float(errs[ok].mean() / mean_r) if mean_r > 0 else 1.0
