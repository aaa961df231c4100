"""The training hot path, top to bottom: data on the device -> TinyNetwork (channels_last, bf16 autocast
when the protocol asks) -> SGD or SAM step -> evaluation (always fp32).

No framework and no per-image Python: :class:`~flatnas_bench.engine.device_data.DeviceData` hands over whole
augmented
batches already on the device. A non-finite loss raises :class:`Diverged` naming the epoch and step, which
:func:`flatnas_bench.engine.candidate.evaluate_candidate` turns into a failed result row.

>>> model, stats = train_model("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|"
...                            "nor_conv_3x3~1|nor_conv_3x3~2|", get_protocol("proxy"), data, seed=0)
>>> evaluate(model, data.normalize(data.val_x), data.val_y)  # doctest: +SKIP
(48.7, 1.49)
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from flatnas_bench.core.errors import ConfigError, FlatnasError
from flatnas_bench.core.protocol import Protocol
from flatnas_bench.engine.device_data import DeviceData
from flatnas_bench.engine.sam import SAM, batchnorms, frozen_bn_stats
from flatnas_bench.nb201.network import TinyNetwork
from flatnas_bench.nb201.space import ArchLike


class Diverged(FlatnasError):
    """The training loss became NaN or infinite; the message says where."""


@dataclass(frozen=True)
class TrainStats:
    """Numbers from training: mean loss (optimised, i.e. with label smoothing) and accuracy (%) over the
    last epoch's augmented batches, wall seconds, and optimiser steps taken."""

    train_loss: float
    train_acc: float
    seconds: float
    steps: int


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The training autocast context for ``precision``: none for fp32; bf16 autocast on CUDA, and on a CPU
    with native bf16 (:func:`cpu_bf16_supported`); bf16 on another CPU is refused."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16" and (device.type == "cuda" or cpu_bf16_supported()):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ConfigError(
        f"precision {precision!r} needs a CUDA device or a CPU with bf16 instructions (got {device}); "
        "use precision='fp32'"
    )


def cpu_bf16_supported() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX, as oneDNN sees it): where it does,
    bf16 autocast can train faster than fp32 (``bench --plan`` times both)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN's bf16 query
        return False


@contextlib.contextmanager
def fp32_evaluation(device: torch.device) -> Iterator[None]:
    """Evaluation numerics: no autocast, and on CUDA no TF32 (restored after), so accuracies, losses and
    the flatness draws are fp32 whatever the training precision: bf16 logits would flip near-ties
    differently under each perturbation and inflate R."""
    with torch.autocast(device.type, enabled=False):
        if device.type != "cuda":
            yield
            return
        flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def configure_numerics(device: torch.device | str, deterministic: bool = False) -> None:
    """Set the process's CUDA numerics for training on ``device`` (nothing to set on CPU, which is
    bit-exact by seed already).

    Default (fast): cuDNN autotuning and TF32 convolutions and matmuls, so repeated runs may differ in the
    last bits. ``deterministic=True``: no autotuning, no TF32, deterministic kernels only (PyTorch raises
    where an op has none), so the same seed gives the same numbers on the same GPU and software.
    :func:`numerics_label` records which one a row was measured under.
    """
    if torch.device(device).type != "cuda":
        return
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's condition for determinism
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.allow_tf32 = not deterministic
    torch.backends.cuda.matmul.allow_tf32 = not deterministic
    torch.use_deterministic_algorithms(deterministic)


def numerics_label(device: torch.device | str) -> str:
    """How this process computes on ``device``, for the result row: ``""`` on CPU (exact by seed),
    ``"deterministic"`` or e.g. ``"tf32, cudnn.benchmark"`` on CUDA."""
    if torch.device(device).type != "cuda":
        return ""
    if torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.allow_tf32:
        return "deterministic"
    flags = [("tf32", torch.backends.cudnn.allow_tf32), ("cudnn.benchmark", torch.backends.cudnn.benchmark)]
    return ", ".join([name for name, on in flags if on] + ["nondeterministic"])


def build_model(
    arch: ArchLike, protocol: Protocol, num_classes: int, seed: int, device: torch.device
) -> nn.Module:
    """TinyNetwork at the protocol's C and N, initialised from ``seed`` (global RNG state left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyNetwork(arch, C=protocol.C, N=protocol.N, num_classes=num_classes)
    return model.to(device, memory_format=torch.channels_last)


def train_model(
    arch: ArchLike, protocol: Protocol, data: DeviceData, seed: int
) -> tuple[nn.Module, TrainStats]:
    """Train ``arch`` under ``protocol`` on ``data`` (already on its device); same seed, same numbers on CPU.

    The seed fixes initialisation, batch order and augmentation. Returns the model (train mode) and
    :class:`TrainStats`. Raises :class:`Diverged` on a NaN/inf loss, ConfigError on bf16 where neither
    CUDA nor the CPU supports it.
    """
    device = data.device
    amp = autocast(protocol.precision, device)
    model = build_model(arch, protocol, data.num_classes, seed, device)
    on_cuda = device.type == "cuda"
    base = torch.optim.SGD(
        model.parameters(),
        lr=protocol.lr,
        momentum=protocol.momentum,
        nesterov=protocol.nesterov and protocol.momentum > 0,
        weight_decay=protocol.weight_decay,
        foreach=None if on_cuda else True,  # one kernel per step over all parameters, not one per tensor
        fused=True if on_cuda else None,
    )
    sam = (
        None
        if protocol.sam == "none"
        else SAM(model.parameters(), base, protocol.rho, protocol.sam == "asam")
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=protocol.label_smoothing)
    steps_per_epoch = data.steps_per_epoch(protocol.batch_size)
    total_steps = protocol.epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(seed)
    bns = batchnorms(model)  # walked once, not every step

    start = time.perf_counter()
    step = 0
    model.train()
    for epoch in range(protocol.epochs):
        losses, correct, seen = [], torch.zeros((), device=device), 0
        for x, y in data.train_batches(protocol.batch_size, generator):
            if protocol.lr_schedule == "cosine":
                lr = 0.5 * protocol.lr * (1 + math.cos(math.pi * step / total_steps))
                for group in base.param_groups:
                    group["lr"] = lr
            with amp:
                out = model(x)
                loss = loss_fn(out, y)
            loss.backward()
            if sam is None:
                base.step()
                base.zero_grad(set_to_none=True)
            else:
                sam.first_step()
                with frozen_bn_stats(bns), amp:
                    loss_fn(model(x), y).backward()
                sam.second_step()
            losses.append(loss.detach())
            correct += (out.argmax(1) == y).sum()
            seen += len(y)
            step += 1
        epoch_losses = torch.stack(losses).float()
        bad = (~torch.isfinite(epoch_losses)).nonzero()
        if len(bad):  # one host sync per epoch, not per step
            i = int(bad[0])
            raise Diverged(f"diverged: loss {epoch_losses[i].item()} at epoch {epoch + 1} step {i + 1}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return model, TrainStats(epoch_losses.mean().item(), 100.0 * correct.item() / seen, seconds, step)


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (correct: bool, cross-entropy loss: float32) of ``model`` in eval mode on ``x``: normalised
    images, or raw ones with ``transform`` (e.g. ``data.normalize``) applied batch by batch. Always fp32
    (:func:`fp32_evaluation`), whatever precision the model was trained in."""
    was_training = model.training
    model.eval()
    correct, losses = [], []
    with fp32_evaluation(x.device):
        for start in range(0, len(y), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            if transform is not None:
                xb = transform(xb)
            out = model(xb).float()
            correct.append(out.argmax(1) == yb)
            losses.append(nn.functional.cross_entropy(out, yb, reduction="none"))
    model.train(was_training)
    return torch.cat(correct), torch.cat(losses)


def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
) -> tuple[float, float]:
    """(top-1 accuracy in %, mean cross-entropy) of ``model`` in eval mode on normalised images ``x``."""
    correct, losses = predict(model, x, y, batch_size)
    return 100.0 * correct.float().mean().item(), losses.mean().item()
