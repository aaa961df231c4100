"""One candidate job: train one arch under one protocol and seed, measure it, and return a result row.

The row is the "Result row" contract (:mod:`flatnas_bench.core.results`): a flat dict, derived columns
(``corr_acc_rel``) filled in, that
:class:`flatnas_bench.tables.store.ResultStore` stores as is. Training runs on the training split, every
number a
search sees (val accuracy and loss, flatness R, loss sharpness) comes from the validation split, and the
test split gives ``test_acc``/``test_loss`` for final reporting only. The arch is trained as its canonical
representative (isomorphic cells compute the same function), so the row's arch, params and FLOPs agree.

>>> data = DeviceData.for_protocol("../shared/data/cifar10/cifar10-jpeg.tar.gz", get_protocol("proxy"))
>>> row = evaluate_candidate(CandidateJob("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|"
...                                       "nor_conv_3x3~1|nor_conv_3x3~2|", get_protocol("proxy"), 0), data)
>>> row["val_acc"], row["flatness_r"], row["error"]  # doctest: +SKIP
(49.3, 4.2, None)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

import flatnas_bench
from flatnas_bench.core.cores import cpu_generation, cpu_model
from flatnas_bench.core.errors import ConfigError
from flatnas_bench.core.protocol import Protocol
from flatnas_bench.core.results import RESULT_COLUMNS, complete_row
from flatnas_bench.engine.device_data import DeviceData
from flatnas_bench.engine.flatness import flatness
from flatnas_bench.engine.train import Diverged, numerics_label, predict, train_model
from flatnas_bench.nb201.costs import arch_costs
from flatnas_bench.nb201.space import as_arch

if TYPE_CHECKING:
    from flatnas_bench.corruptions.robustness import CorruptionSet

ROW_KEYS = tuple(RESULT_COLUMNS)  # the result row's keys, in contract order


@dataclass(frozen=True)
class CandidateJob:
    """What to evaluate: an arch (any form :func:`~flatnas_bench.nb201.space.as_arch` takes; stored as its
    canonical NB201 string), a :class:`~flatnas_bench.core.protocol.Protocol` and the training seed."""

    arch: str
    protocol: Protocol
    seed: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", str(as_arch(self.arch).canonical()))
        if not isinstance(self.protocol, Protocol):
            raise ConfigError(f"CandidateJob.protocol must be a Protocol, got {type(self.protocol).__name__}")


def cpu_label() -> str:
    """The CPU as a row's device label names it after the thread count: model name, x86 family and model
    where the OS gives them, and the vector instructions PyTorch's kernels use (``"AMD EPYC, family 25 model
    1, AVX2"``)."""
    return ", ".join(filter(None, (cpu_model(), cpu_generation(), torch.backends.cpu.get_cpu_capability())))


def device_name(device: torch.device) -> str:
    """A readable device label for the row, e.g. ``"cpu (1 thread, AMD EPYC, family 25 model 1, AVX2)"`` or
    ``"cuda:0 (GPU 3) NVIDIA H200 (tf32, cudnn.benchmark, nondeterministic)"``: what the numbers depend on
    besides the protocol. On CPU the thread count, the CPU model and generation and the vector instructions
    PyTorch's kernels use (float results change with each); on CUDA the physical GPU a worker restricted by
    ``CUDA_VISIBLE_DEVICES`` sees as ``cuda:0``, and whether the numbers reproduce."""
    if device.type == "cuda":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
        physical = f" (GPU {visible})" if visible and "," not in visible else ""
        return f"{device}{physical} {torch.cuda.get_device_name(device)} ({numerics_label(device)})"
    threads = torch.get_num_threads()
    return f"{device.type} ({threads} thread{'s' if threads > 1 else ''}, {cpu_label()})"


def evaluate_candidate(
    job: CandidateJob,
    data: DeviceData | None = None,
    corruption_set: CorruptionSet | None = None,
    device: str | torch.device | None = None,
    *,
    data_path: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train and measure ``job``; return its result row. Divergence gives a row with ``error`` set.

    Pass ``data`` (a :class:`DeviceData` built for this protocol, kept resident across jobs) or
    ``data_path`` (loaded here, on ``device``, default CPU). With ``corruption_set`` (a
    :class:`flatnas_bench.corruptions.robustness.CorruptionSet`) and ``protocol.corruption_subset > 0``, the
    first
    ``corruption_subset`` images of every (corruption, severity) are evaluated too. With ``weights_dir``,
    the trained network is saved there (:func:`flatnas_bench.engine.weights.weights_path`) before it is
    measured.
    """
    protocol = job.protocol
    if data is None:
        if data_path is None:
            raise ConfigError("evaluate_candidate needs data (a DeviceData) or data_path")
        data = DeviceData.for_protocol(data_path, protocol, device=device or "cpu")
    elif device is not None and torch.device(device) != data.device:
        raise ConfigError(f"device {device} differs from the data's device {data.device}")
    if data.key is not None and data.key != DeviceData.protocol_key(protocol):
        raise ConfigError(f"data was prepared for {data.key}, protocol {protocol.name!r} needs "
                          f"{DeviceData.protocol_key(protocol)}")  # fmt: skip
    if data.dataset != protocol.dataset or data.resolution != protocol.resolution:
        raise ConfigError(f"data is {data.dataset} at {data.resolution}px, protocol {protocol.name!r} wants "
                          f"{protocol.dataset} at {protocol.resolution}px")  # fmt: skip

    costs = arch_costs(job.arch, protocol.C, protocol.N, data.num_classes, protocol.resolution)
    row: dict[str, Any] = dict.fromkeys(ROW_KEYS)
    row.update(
        arch=job.arch, protocol=protocol.name, protocol_hash=protocol.hash, seed=job.seed,
        params_m=costs.params_m, flops_m=costs.flops_m, device=device_name(data.device),
        version=flatnas_bench.__version__,
    )  # fmt: skip
    try:
        model, stats = train_model(job.arch, protocol, data, job.seed)
    except Diverged as exc:
        return complete_row({**row, "error": str(exc)})
    row.update(train_acc=stats.train_acc, train_loss=stats.train_loss, train_sec=stats.seconds)
    if weights_dir is not None:
        from flatnas_bench.engine.weights import save_weights, weights_path

        save_weights(model, weights_path(weights_dir, job.arch, protocol, job.seed))

    start = time.perf_counter()
    val_x = data.normalize(data.val_x)  # normalised once: flatness evaluates it 1 + M times
    # every measurement below is fp32 whatever the training precision (train.fp32_evaluation)
    flat = flatness(model, val_x, data.val_y, protocol.flatness_sigma, protocol.flatness_draws, job.seed)
    row.update(val_acc=flat.acc, val_loss=flat.loss, flatness_r=flat.r, flatness_r_std=flat.r_std)
    row["flatness_r_se"] = flat.r_se
    row.update(loss_sharpness=flat.loss_sharpness)
    correct, losses = predict(model, data.test_x, data.test_y, transform=data.normalize)
    row["test_acc"], row["test_loss"] = 100.0 * correct.float().mean().item(), losses.mean().item()
    if corruption_set is not None and protocol.corruption_subset > 0:
        row.update(_corruption_row(model, data, corruption_set, protocol, row["test_acc"]))
    if data.device.type == "cuda":
        torch.cuda.synchronize(data.device)
    row["eval_sec"] = time.perf_counter() - start
    return complete_row(row)


def _corruption_row(
    model: torch.nn.Module,
    data: DeviceData,
    corruption_set: CorruptionSet,
    protocol: Protocol,
    clean_acc: float,
) -> dict[str, Any]:
    """corr_acc_mean, mce and corr_per from one batched pass over every (corruption, severity) subset."""
    from flatnas_bench.corruptions.robustness import corruption_metrics

    groups, x, y = data.corruption_tensors(corruption_set, protocol.corruption_subset)
    correct, _ = predict(model, x, y, transform=data.normalize)
    accs = (correct.view(len(groups), -1).float().mean(1) * 100).tolist()
    metrics = corruption_metrics(dict(zip(groups, accs, strict=True)), clean_acc)
    return {
        "corr_acc_mean": metrics["corr_acc_mean"],
        "mce": metrics["mce"],
        "corr_per": json.dumps(metrics["per_corruption"], sort_keys=True),
    }
