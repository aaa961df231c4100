"""The device check: one command, run from the repository root on a bare GPU machine, that measures the GPU
path and checks its numbers in about 5 minutes (8 at most) on one GPU.

It needs only the repository and PyTorch, numpy, pandas, scipy, OpenCV and scikit-image (no pymoo,
xgboost, Ray, nas-bench-201 or nats_bench, and the project need not be installed: this script puts the
repository on ``sys.path``). Its data is made inside the repository: the CIFAR-10 slice that ``--prepare``
writes to ``runs/gpu_check/`` (10,000 training and 2,000 test images, class-balanced; 35 MB) when it is
there, else a synthetic 10-class set. Each section prints its rows of a Markdown table as it finishes and
rewrites the JSON (``--out``), so a run cut short still returns what it measured; no section starts after
``--budget-s``. Without a CUDA device it stops with one line (exit code 2), unless ``--tiny``.

Sections (sizes for one H200; the estimate in brackets is from FLOPs and kernel counts, not measured):

1. ``device``: name, memory, capability, torch / CUDA versions, the data used;
2. ``sam step``: ms/step, images/s and peak memory of the SAM step (median of 3 runs of 20 steps after a
   warm-up) for the ``flatnas`` (C=16, N=5, 32 px, batch 128, ASAM) and ``proxy`` (C=8, N=1, 16 px,
   batch 128, SAM) settings, on the light (all skip), median and all-conv3x3 archs, in bf16 and fp32
   [12 x 2-4 s];
3. ``evaluation``: fp32 evaluation images/s of the same archs (2,000 validation images) [5 s];
4. ``cuda graph``: the same SAM step (bf16, ``flatnas``) captured in a CUDA graph with static input
   buffers, replayed: the ceiling of one process [10 s];
5. ``flatness cuda vs cpu``: per-draw outcomes of R (20 draws, 1,000 images) of the same weights on CUDA in
   fp32 (TF32 off) and on the CPU [15 s];
6. ``bf16 vs fp32 evaluation``: the same weights evaluated both ways: predictions that flip, accuracy and R
   (the issue: bf16 evaluation inflates R) [5 s];
7. ``batchnorm frozen pass``: the running statistics after SAM's second (frozen) pass equal those after
   the first [1 s];
8. ``deterministic twice``: two ``local`` workers run the same job with ``--deterministic``; their rows
   must be identical (``--tiny``: the serial executor) [20 s];
9. ``end to end``: one candidate through ``evaluate_candidate`` with a 100-image corruption set
   (15 corruptions x 5 severities, generated here) [25 s];
10. ``candidates per gpu``: aggregate training images/s of 1, 2, 4 and 8 candidates on the GPU at once
    through the ``local`` executor (warm workers; each job trains for about 20 s alone; by the wall clock
    from the first job's start to the last job's end) [15 s start-up + 20-60 s each, a k whose predicted
    time exceeds the budget left is skipped];
11. ``extrapolated``: hours for all 6,466 classes under ``flatnas`` and ``proxy`` on this GPU, from the
    measured steps, evaluation rates and the best multi-candidate speed-up.

``--tiny`` runs every section on the CPU (a 4-channel network, 800 synthetic images); the test suite runs
it with the packages the GPU machine lacks blocked.

    python benchmarks/gpu_check.py --prepare --source ../shared/data/cifar10/cifar10-jpeg.tar.gz
    python benchmarks/gpu_check.py --out runs/gpu_check/gpu_check.json
    python benchmarks/gpu_check.py --tiny --out runs/gpu_check/tiny.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this repository's package, installed or not

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from flatnas_bench.bench.driver import balanced_subset, run_protocol  # noqa: E402
from flatnas_bench.bench.executor import Executor, SerialExecutor  # noqa: E402
from flatnas_bench.bench.local import LocalExecutor  # noqa: E402
from flatnas_bench.bench.options import ExecutorOptions  # noqa: E402
from flatnas_bench.bench.worker import RunContext  # noqa: E402
from flatnas_bench.core.protocol import Protocol, get_protocol  # noqa: E402
from flatnas_bench.core.results import RESULT_COLUMNS  # noqa: E402
from flatnas_bench.engine.candidate import CandidateJob, evaluate_candidate  # noqa: E402
from flatnas_bench.engine.data import Dataset, Images, Splits, make_splits  # noqa: E402
from flatnas_bench.engine.device_data import DeviceData  # noqa: E402
from flatnas_bench.engine.flatness import perturbation_outcomes  # noqa: E402
from flatnas_bench.engine.sam import SAM, batchnorms, frozen_bn_stats  # noqa: E402
from flatnas_bench.engine.train import (  # noqa: E402
    build_model,
    configure_numerics,
    cpu_bf16_supported,
    predict,
    train_model,
)
from flatnas_bench.nb201.costs import arch_costs  # noqa: E402
from flatnas_bench.nb201.space import Arch, canonical_archs  # noqa: E402

SLICE = ROOT / "runs" / "gpu_check" / "cifar10-slice.npz"  # written by --prepare; git-ignored
ARCHS = {  # op indices in NB201 edge order: 1 skip, 2 conv1x1, 3 conv3x3, 4 avg-pool
    "light": str(Arch.from_ops((1, 1, 1, 1, 1, 1))),
    "median": str(Arch.from_ops((3, 1, 2, 4, 1, 2))),  # 51 MMAC at NB201 size (median 47)
    "all-conv3x3": str(Arch.from_ops((3, 3, 3, 3, 3, 3))),
}
# Every size in one place: images, steps, draws, seconds.
SIZES = {
    "full": {"train": 10000, "val": 2000, "test": 1000, "steps": 20, "repeats": 3, "graph_replays": 50,
             "flat_images": 1000, "draws": 20, "check_steps": 200, "det_steps": 50, "corrupt_images": 100,
             "e2e_steps": 20, "counts": (1, 2, 4, 8), "job_s": 20.0, "cpu_threads": 16},
    "tiny": {"train": 640, "val": 64, "test": 96, "steps": 2, "repeats": 1, "graph_replays": 3,
             "flat_images": 64, "draws": 4, "check_steps": 10, "det_steps": 4, "corrupt_images": 8,
             "e2e_steps": 3, "counts": (1, 2), "job_s": 1.0, "cpu_threads": 1},
}  # fmt: skip
TINY = {"C": 4, "N": 1, "resolution": 16, "crop_pad": 0, "batch_size": 32}  # the --tiny network and batch
MEASURED = [c for c in RESULT_COLUMNS if c not in ("train_sec", "eval_sec", "device")]


# ---- data ---------------------------------------------------------------------------------------------


def synthetic_dataset(train: int, test: int, seed: int = 0) -> Dataset:
    """A 10-class 32x32 set a short training learns only partly: each class a smooth random pattern, each
    image 40 % its class's pattern and 60 % noise (so near-ties exist, as in CIFAR)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (10, 4, 4, 3))
    patterns = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)  # 10 x 32 x 32 x 3
    y = np.arange(train + test) % 10
    x = 0.4 * patterns[y] + 0.6 * rng.uniform(0, 255, (len(y), 32, 32, 3))
    x = x.astype(np.uint8)
    return Dataset("cifar10", Images(x[:train], y[:train]), Images(x[train:], y[train:]), tuple("abcdefghij"))


def prepare(source: str, out: Path, train: int = 10000, test: int = 2000) -> Path:
    """Write a class-balanced CIFAR-10 slice of ``source`` (any layout ``load_images`` reads) as ``out``."""
    from flatnas_bench.engine.data import load_images

    ds = load_images(source, "cifar10")
    tr, te = balanced_subset(ds.train.y, train), balanced_subset(ds.test.y, test)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, train_x=ds.train.x[tr], train_y=ds.train.y[tr], test_x=ds.test.x[te],
                        test_y=ds.test.y[te])  # fmt: skip
    return out


def load_dataset(data: str, sizes: dict[str, Any], tiny: bool) -> tuple[Dataset, str]:
    """The prepared slice (``data`` a .npz path, default :data:`SLICE` when present) or a synthetic set."""
    path = Path(data) if data != "synthetic" else None
    if tiny or path is None or not path.is_file():
        return synthetic_dataset(sizes["train"] + sizes["val"], sizes["test"]), "synthetic"
    with np.load(path) as f:
        train, test = Images(f["train_x"], f["train_y"]), Images(f["test_x"], f["test_y"])
    return Dataset("cifar10", train, test, tuple(str(c) for c in range(10))), str(path)


def splits_for(ds: Dataset, protocol: Protocol) -> Splits:
    """The splits ``protocol`` asks for, from an in-memory dataset (as ``protocol_splits`` from a path)."""
    p = protocol
    return make_splits(ds, split=p.split, val_size=p.val_size, train_subset=p.train_subset,
                       test_size=p.test_size, seed=p.seed)  # fmt: skip


def with_batches(data: DeviceData, batches: int, batch_size: int) -> DeviceData:
    """The same resident data with only its first ``batches`` training batches (a short, timed epoch)."""
    short = copy.copy(data)
    n = min(len(data.train_y), batches * batch_size)
    short.train_x, short.train_y = data.train_x[:n], data.train_y[:n]
    return short


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- the run's settings -------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """What every section works with: the device, sizes, dataset, the two settings and their device data."""

    device: torch.device
    sizes: dict[str, Any]
    dataset: Dataset
    settings: dict[str, Protocol]
    data: dict[str, DeviceData]
    precisions: tuple[str, ...]
    tiny: bool
    results: dict[str, Any] = dataclasses.field(default_factory=dict)


def make_run(args: argparse.Namespace) -> Run:
    tiny = args.tiny
    sizes = SIZES["tiny" if tiny else "full"]
    device = torch.device("cpu" if tiny else "cuda")
    if tiny:
        torch.set_num_threads(1)
    configure_numerics(device)  # TF32 and cudnn.benchmark: as the executors' workers run by default
    ds, source = load_dataset(args.data, sizes, tiny)
    overrides = {**(TINY if tiny else {}), "val_size": sizes["val"], "test_size": sizes["test"]}
    settings = {name: get_protocol(name, **overrides) for name in ("flatnas", "proxy")}
    numerics = "cpu" if tiny else "cuda-fast"
    settings = {name: run_protocol(p, numerics, "fp32") for name, p in settings.items()}
    data = {name: DeviceData.from_splits(splits_for(ds, p), p, device) for name, p in settings.items()}
    both = device.type == "cuda" or cpu_bf16_supported()
    run = Run(device, sizes, ds, settings, data, ("bf16", "fp32") if both else ("fp32",), tiny)
    run.results["device"] = device_info(device, source)
    return run


def device_info(device: torch.device, source: str) -> dict[str, Any]:
    import flatnas_bench

    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "data": source,
                            "package": str(Path(flatnas_bench.__file__).parent)}  # fmt: skip
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda)  # fmt: skip
    else:
        info.update(name="cpu", threads=torch.get_num_threads(), cpu_bf16=cpu_bf16_supported())
    return info


# ---- measurements -------------------------------------------------------------------------------------


def sam_steps(run: Run) -> dict[str, Any]:
    """ms/step, images/s and peak memory of the SAM step per setting, arch and precision."""
    out: dict[str, Any] = {}
    steps, device = run.sizes["steps"], run.device
    for name, p in run.settings.items():
        timed = with_batches(run.data[name], steps, p.batch_size)
        for label, arch in ARCHS.items():
            for precision in run.precisions:
                one = p.replace(precision=precision, epochs=1)
                train_model(arch, one, with_batches(timed, 3, p.batch_size), 0)  # warm-up (cuDNN autotune)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                seconds = statistics.median(
                    train_model(arch, one, timed, r)[1].seconds for r in range(run.sizes["repeats"])
                )
                key = f"{name} {label} {precision}"
                out[f"{key} ms/step"] = round(1e3 * seconds / steps, 2)
                out[f"{key} img/s"] = round(steps * p.batch_size / seconds)
                if device.type == "cuda":  # the resident dataset included
                    out[f"{key} peak MiB"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return out


def evaluation(run: Run) -> dict[str, Any]:
    """fp32 evaluation images/s (validation split, batches of 1,000) per setting and arch."""
    out: dict[str, Any] = {}
    for name, p in run.settings.items():
        data = run.data[name]
        x = data.normalize(data.val_x)
        for label, arch in ARCHS.items():
            model = build_model(arch, p, data.num_classes, 0, run.device)
            predict(model, x, data.val_y)  # warm-up
            times = []
            for _ in range(run.sizes["repeats"]):
                sync(run.device)
                start = time.perf_counter()
                predict(model, x, data.val_y)
                sync(run.device)
                times.append(time.perf_counter() - start)
            out[f"{name} {label} img/s"] = round(len(data.val_y) / statistics.median(times))
    return out


def cuda_graph(run: Run) -> dict[str, Any]:
    """The ``flatnas`` SAM step (bf16) captured in a CUDA graph with static inputs, replayed: ms/step."""
    if run.device.type != "cuda":
        return {"cuda graph": "n/a on the CPU"}
    out: dict[str, Any] = {}
    p = run.settings["flatnas"]
    for label, arch in ARCHS.items():
        step, static_x, batches = _graphable_step(arch, p, run.data["flatnas"], run.device)
        side = torch.cuda.Stream(device=run.device)  # warm-up off the default stream, as capture requires
        side.wait_stream(torch.cuda.current_stream(run.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream(run.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.device(run.device), torch.cuda.graph(graph):
            step()
        times = []
        for _ in range(run.sizes["repeats"]):
            sync(run.device)
            start = time.perf_counter()
            for k in range(run.sizes["graph_replays"]):
                static_x.copy_(batches[k % len(batches)])  # new images into the static buffer
                graph.replay()
            sync(run.device)
            times.append((time.perf_counter() - start) / run.sizes["graph_replays"])
        eager = run.results.get("sam step", {}).get(f"flatnas {label} bf16 ms/step")
        out[f"{label} graph ms/step"] = round(1e3 * statistics.median(times), 2)
        out[f"{label} graph img/s"] = round(p.batch_size / statistics.median(times))
        if eager:
            out[f"{label} eager / graph"] = round(eager / out[f"{label} graph ms/step"], 2)
    return out


def _graphable_step(arch: str, p: Protocol, data: DeviceData, device: torch.device):
    """(one SAM step over static buffers, the static image buffer, a few normalised batches)."""
    model = build_model(arch, p, data.num_classes, 0, device)
    base = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay,
                           nesterov=p.nesterov and p.momentum > 0, fused=True)  # fmt: skip
    sam = SAM(model.parameters(), base, p.rho, p.sam == "asam")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=p.label_smoothing)
    bns = batchnorms(model)
    generator = torch.Generator().manual_seed(0)
    batches = [x for x, _ in zip(data.train_batches(p.batch_size, generator), range(4), strict=False)]
    static_x, static_y = batches[0][0].clone(), batches[0][1].clone()
    images = [x for x, _ in batches]
    amp = torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)  # no autocast cache in a graph

    def step() -> None:
        with amp:
            loss = loss_fn(model(static_x), static_y)
        loss.backward()
        sam.first_step()
        with frozen_bn_stats(bns), amp:
            loss_fn(model(static_x), static_y).backward()
        sam.second_step()

    return step, static_x, images


# ---- checks -------------------------------------------------------------------------------------------


def _trained(run: Run, precision: str = "bf16") -> tuple[nn.Module, DeviceData, Protocol]:
    """The median arch after ``check_steps`` steps of the ``flatnas`` setting on the device."""
    p = run.settings["flatnas"]
    data = run.data["flatnas"]
    short = with_batches(data, run.sizes["check_steps"], p.batch_size)
    precision = precision if precision in run.precisions else "fp32"
    epochs = max(1, run.sizes["check_steps"] // max(1, short.steps_per_epoch(p.batch_size)))
    model, _ = train_model(ARCHS["median"], p.replace(precision=precision, epochs=epochs), short, 0)
    return model, data, p


def flatness_cuda_vs_cpu(run: Run) -> dict[str, Any]:
    """Per-draw outcomes of R for the same weights on the device (fp32, TF32 off) and on the CPU."""
    model, data, p = _trained(run)
    n, draws = run.sizes["flat_images"], run.sizes["draws"]
    x, y = data.normalize(data.val_x[:n]), data.val_y[:n]
    on_device = perturbation_outcomes(model, x, y, p.flatness_sigma, draws, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(run.sizes["cpu_threads"])
    try:
        on_cpu = perturbation_outcomes(
            copy.deepcopy(model).cpu(), x.cpu(), y.cpu(), p.flatness_sigma, draws, 0
        )
    finally:
        torch.set_num_threads(threads)
    a, b = on_device.summary(), on_cpu.summary()
    per_draw = np.abs(np.subtract(a.draw_accs, b.draw_accs))
    flips = (on_device.correct != on_cpu.correct).float().mean().item()
    return {"images x draws": f"{n} x {draws}", "R device / cpu": [round(a.r, 3), round(b.r, 3)],
            "val acc device / cpu": [round(a.acc, 2), round(b.acc, 2)],
            "max per-draw acc diff (points)": round(float(per_draw.max(initial=0.0)), 3),
            "outcomes that differ (%)": round(100 * flips, 3)}  # fmt: skip


def bf16_vs_fp32_evaluation(run: Run) -> dict[str, Any]:
    """The same weights evaluated in fp32 (what the engine does) and under bf16 autocast: flips, acc, R."""
    if "bf16" not in run.precisions:
        return {"bf16 vs fp32": f"n/a: {run.device} has no bf16"}
    model, data, p = _trained(run)
    n, draws = run.sizes["flat_images"], run.sizes["draws"]
    x, y = data.normalize(data.val_x[:n]), data.val_y[:n]
    bf16 = _Bf16Eval(model, run.device.type)
    fp32_out = perturbation_outcomes(model, x, y, p.flatness_sigma, draws, seed=0)
    bf16_out = perturbation_outcomes(bf16, x, y, p.flatness_sigma, draws, seed=0)
    a, b = fp32_out.summary(), bf16_out.summary()
    flips = (fp32_out.correct0 != bf16_out.correct0).float().mean().item()
    return {"val acc fp32 / bf16": [round(a.acc, 2), round(b.acc, 2)],
            "R fp32 / bf16": [round(a.r, 3), round(b.r, 3)],
            "R std over draws fp32 / bf16": [round(a.r_std, 3), round(b.r_std, 3)],
            "unperturbed predictions that flip (%)": round(100 * flips, 3)}  # fmt: skip


class _Bf16Eval(nn.Module):
    """``model`` evaluated under bf16 autocast (re-enabled inside the engine's fp32 evaluation)."""

    def __init__(self, model: nn.Module, device_type: str) -> None:
        super().__init__()
        self.model, self.device_type = model, device_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.model(x).float()


def batchnorm_frozen_pass(run: Run) -> dict[str, Any]:
    """Running mean, variance and batch count after a clean pass equal those after the frozen second pass."""
    p, data = run.settings["flatnas"], run.data["flatnas"]
    model = build_model(ARCHS["median"], p, data.num_classes, 0, run.device)
    model.train()
    x, _ = next(data.train_batches(p.batch_size, torch.Generator().manual_seed(0)))
    with torch.no_grad():
        model(x)
        before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
        with frozen_bn_stats(batchnorms(model)):
            model(x * 1.5)  # other statistics: a pass that updated them would show
    after = model.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    return {"buffers compared": len(before), "changed": changed or "none"}


def deterministic_twice(run: Run) -> dict[str, Any]:
    """Two ``local`` workers with ``--deterministic`` run the same job: every measured column agrees.
    (``--tiny``: the serial executor, one worker process fewer to start.)"""
    if run.tiny:
        executor: Executor = SerialExecutor(ExecutorOptions(device="cpu", threads=1, deterministic=True))
    else:
        executor = LocalExecutor(ExecutorOptions(device="cuda", workers=2, deterministic=True))
    p = _job_protocol(run, executor.numerics, run.sizes["det_steps"])
    context = RunContext(p, splits=splits_for(run.dataset, p))
    rows = list(executor.run([CandidateJob(ARCHS["median"], p, 0)] * 2, context))
    errors = [r["error"] for r in rows if r["error"]]
    if errors:
        return {"error in a job": errors[0]}
    differ = [c for c in MEASURED if rows[0][c] != rows[1][c]]
    return {"numerics": p.numerics, "device label": rows[0]["device"],
            "columns that differ": differ or "none",
            "val_acc / flatness_r": [rows[0]["val_acc"], rows[0]["flatness_r"]]}  # fmt: skip


def _job_protocol(run: Run, numerics: str, steps: int, **extra: Any) -> Protocol:
    """The ``flatnas`` setting cut to about ``steps`` optimiser steps (epochs over the training images
    there are) and a small evaluation, as ``numerics`` (bf16 on CUDA) runs it (:func:`job_steps`)."""
    p = run.settings["flatnas"].replace(**{"flatness_draws": 5, "corruption_subset": 0, **extra})
    val = min(500, p.val_size)
    per_epoch = max(1, min(steps * p.batch_size, len(run.dataset.train) - val) // p.batch_size)
    short = p.replace(epochs=max(1, round(steps / per_epoch)), train_subset=per_epoch * p.batch_size,
                      val_size=val, test_size=min(500, p.test_size))  # fmt: skip
    return run_protocol(short, numerics, None if numerics.startswith("cuda") else "fp32")


def job_steps(p: Protocol) -> int:
    """Optimiser steps of one job under ``p`` (its epochs over ``train_subset`` images, whole batches)."""
    return p.epochs * (p.train_subset // p.batch_size)


def end_to_end(run: Run) -> dict[str, Any]:
    """One candidate through evaluate_candidate with a generated corruption set (15 x 5, small)."""
    from flatnas_bench.corruptions.operations import corrupt
    from flatnas_bench.corruptions.robustness import BENCHMARK_CORRUPTIONS, SEVERITIES, CorruptionSet

    n = run.sizes["corrupt_images"]
    test = run.dataset.test.take(np.arange(n))
    start = time.perf_counter()
    images = {c: np.stack([corrupt(test.x, c, s, seed=0) for s in SEVERITIES]) for c in BENCHMARK_CORRUPTIONS}
    generated = time.perf_counter() - start
    numerics = "cpu" if run.tiny else "cuda-fast"
    p = _job_protocol(run, numerics, run.sizes["e2e_steps"], corruption_subset=n)
    p = p.replace(flatness_draws=run.sizes["draws"])
    data = DeviceData.from_splits(splits_for(run.dataset, p), p, run.device)
    row = evaluate_candidate(CandidateJob(ARCHS["median"], p, 0), data, CorruptionSet(images, test.y))
    keys = ("val_acc", "flatness_r", "test_acc", "corr_acc_mean", "mce", "train_sec", "eval_sec")
    return {"corruption set s": round(generated, 1), "protocol": f"{p.name} {p.hash} ({p.precision})",
            **{k: round(row[k], 3) for k in keys if row[k] is not None},
            "row error": row["error"]}  # fmt: skip


def candidates_per_gpu(run: Run, deadline: float) -> dict[str, Any]:
    """Aggregate training images/s with k candidates on the device at once (warm ``local`` workers; by
    the wall clock from the first start to the last end); a k predicted to overrun ``deadline`` is skipped."""
    counts, device = run.sizes["counts"], "cpu" if run.tiny else "cuda"
    options = ExecutorOptions(device=device, workers=max(counts), threads=1 if run.tiny else None,
                              keep_alive=True)  # fmt: skip
    executor = LocalExecutor(options)
    p = run.settings["flatnas"]
    rate = _single_rate(run)
    steps = max(2, round(run.sizes["job_s"] * rate / p.batch_size))
    job = _job_protocol(run, executor.numerics, steps, flatness_draws=1, val_size=min(200, p.val_size))
    context = RunContext(job, splits=splits_for(run.dataset, job))
    steps = job_steps(job)
    out: dict[str, Any] = {"steps per job": steps}
    try:
        start = time.perf_counter()
        _warm_up(executor, context, ARCHS["median"], job)
        out["worker start-up s"] = round(time.perf_counter() - start, 1)
        best = None
        for k in counts:
            predicted = run.sizes["job_s"] * k / (best or 1.0) * 1.2
            if time.perf_counter() + predicted > deadline:
                out[f"x{k}"] = f"skipped: predicted {predicted:.0f} s, over the budget"
                continue
            start = time.perf_counter()
            rows = list(executor.run([CandidateJob(ARCHS["median"], job, s) for s in range(k)], context))
            wall = time.perf_counter() - start
            errors = [r["error"] for r in rows if r["error"]]
            if errors:
                out[f"x{k} error"] = errors[0]
                continue
            out[f"x{k} img/s"] = round(k * steps * p.batch_size / wall)
            out[f"x{k} wall s"] = round(wall, 1)
            best = max(best or 0.0, out[f"x{k} img/s"] / out.get("x1 img/s", out[f"x{k} img/s"]))
    finally:
        executor.close()
    return out


def _warm_up(executor: LocalExecutor, context: RunContext, arch: str, job: Protocol) -> None:
    """Start every worker of ``executor`` for ``context`` and let each train ``arch`` for 3 steps (process,
    CUDA context, data upload and cuDNN autotuning done), so the timed runs see warm workers only."""
    executor._context, executor._workers = context, executor._start(context, len(executor.placements))
    pools = list(executor._workers)
    for future in [pool.submit(_train_in_worker, arch, job, 3) for pool in pools]:
        future.result()


def _train_in_worker(arch: str, protocol: Protocol, batches: int) -> None:
    """Run in a local worker process: a few training steps on its resident data."""
    from flatnas_bench.bench import local

    data = local._PROCESS_WORKER.data
    train_model(arch, protocol, with_batches(data, batches, protocol.batch_size), 0)


def _single_rate(run: Run) -> float:
    """Training images/s of one median-arch candidate as jobs run it (from section 2, else measured now)."""
    precision = "bf16" if run.device.type == "cuda" else "fp32"
    known = run.results.get("sam step", {}).get(f"flatnas median {precision} img/s")
    if known:
        return float(known)
    p = run.settings["flatnas"].replace(precision=precision, epochs=1)
    _, stats = train_model(ARCHS["median"], p, with_batches(run.data["flatnas"], 5, p.batch_size), 0)
    return stats.steps * p.batch_size / stats.seconds


def extrapolated(run: Run) -> dict[str, Any]:
    """Hours for all 6,466 classes per setting (full size), from the measured step and evaluation rates,
    interpolated by MACs, divided by the best multi-candidate speed-up measured."""
    rates = {k: v for k, v in run.results.get("candidates per gpu", {}).items() if k.endswith("img/s")}
    speedup = max(rates.values()) / rates["x1 img/s"] if rates.get("x1 img/s") else 1.0
    archs = [str(a) for a in canonical_archs()]
    out: dict[str, Any] = {"speed-up used": round(speedup, 2)}
    for name in run.settings:
        per_job = _candidate_seconds(run, name, archs)
        out[f"{name}: s per candidate (median)"] = round(float(np.median(per_job)), 1)
        out[f"{name}: 6,466 classes (h)"] = round(float(per_job.sum()) / speedup / 3600, 2)
    return out


def _candidate_seconds(run: Run, name: str, archs: list[str]) -> np.ndarray:
    """Seconds of each arch under the full ``name`` protocol: its steps at the measured seconds per step
    and its evaluation images at the measured rate, both interpolated by MACs from the three timed archs."""
    steps, evals = run.results["sam step"], run.results["evaluation"]
    precision = "bf16" if "bf16" in run.precisions else "fp32"
    full = get_protocol(name)
    macs = [arch_costs(a, full.C, full.N, 10, full.resolution).flops_m for a in archs]
    timed = sorted(
        (arch_costs(a, full.C, full.N, 10, full.resolution).flops_m, label) for label, a in ARCHS.items()
    )
    x = [m for m, _ in timed]
    step_s = np.interp(macs, x, [steps[f"{name} {label} {precision} ms/step"] / 1e3 for _, label in timed])
    eval_rate = np.interp(macs, x, [evals[f"{name} {label} img/s"] for _, label in timed])
    train = full.train_subset or 50000 - full.val_size
    images = (
        (1 + full.flatness_draws) * full.val_size + (full.test_size or 10000) + 75 * full.corruption_subset
    )
    return step_s * full.epochs * (train // full.batch_size) + images / eval_rate


# ---- the run ------------------------------------------------------------------------------------------


def sections(run: Run, deadline: float) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    return [
        ("sam step", lambda: sam_steps(run)),
        ("evaluation", lambda: evaluation(run)),
        ("cuda graph", lambda: cuda_graph(run)),
        ("flatness cuda vs cpu", lambda: flatness_cuda_vs_cpu(run)),
        ("bf16 vs fp32 evaluation", lambda: bf16_vs_fp32_evaluation(run)),
        ("batchnorm frozen pass", lambda: batchnorm_frozen_pass(run)),
        ("deterministic twice", lambda: deterministic_twice(run)),
        ("end to end", lambda: end_to_end(run)),
        ("candidates per gpu", lambda: candidates_per_gpu(run, deadline)),
        ("extrapolated", lambda: extrapolated(run)),
    ]


def write_json(path: Path, results: dict[str, Any]) -> None:
    """Rewrite the JSON whole (write then rename: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(path.suffix + ".part")
    part.write_text(json.dumps(results, indent=2, sort_keys=True))
    part.replace(path)


def print_rows(section: str, values: dict[str, Any]) -> None:
    for key, value in values.items():
        print(f"| {section} | {key} | {value} |", flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SLICE), help="the slice --prepare writes (.npz) or 'synthetic'")
    parser.add_argument("--out", default="runs/gpu_check/gpu_check.json", help="JSON, rewritten per section")
    parser.add_argument("--tiny", action="store_true", help="every section on the CPU, tiny network and data")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no section after this many s")
    parser.add_argument("--prepare", action="store_true", help="write the CIFAR-10 slice from --source, stop")
    parser.add_argument("--source", help="the dataset --prepare reads (any layout the package reads)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.prepare:
        if not args.source:
            print("gpu_check: --prepare needs --source DATASET", file=sys.stderr)
            return 2
        out = prepare(args.source, Path(args.data))
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
        return 0
    if not args.tiny and not torch.cuda.is_available():
        message = (
            f"gpu_check: no CUDA device visible (torch {torch.__version__}); --tiny rehearses it on the CPU"
        )
        print(message, file=sys.stderr)
        return 2
    begin = time.perf_counter()
    out = Path(args.out)
    run = make_run(args)
    print("| section | measure | value |\n|---|---|---|", flush=True)
    print_rows("device", run.results["device"])
    write_json(out, run.results)
    for name, section in sections(run, begin + args.budget_s):
        run.results[name] = _timed(section, begin, args.budget_s)
        print_rows(name, run.results[name])
        write_json(out, run.results)
    run.results["total seconds"] = round(time.perf_counter() - begin, 1)
    write_json(out, run.results)
    print(f"wrote {out} ({run.results['total seconds']} s)", flush=True)
    return 0


def _timed(section: Callable[[], dict[str, Any]], begin: float, budget: float) -> dict[str, Any]:
    """Run one section unless the budget is spent; a failure is its one-line result, not the run's end."""
    if time.perf_counter() - begin > budget:
        return {"skipped": f"over the {budget:.0f} s budget"}
    start = time.perf_counter()
    try:
        values = section()
    except Exception as exc:  # one failing section must not lose the others' figures
        values = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    values["seconds"] = round(time.perf_counter() - start, 1)
    return values


if __name__ == "__main__":
    sys.exit(main())
