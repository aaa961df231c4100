"""The prepared device check: one run (at most about 8 minutes on one GPU) that measures the GPU path.

Prints a Markdown table and writes JSON (``--out``) with:

1. the device (name, memory, capability, torch and CUDA versions);
2. for the lightest (all skip_connect), a median (51 MMAC) and the heaviest (all nor_conv_3x3) arch at the
   ``flatnas`` protocol's network and batch (C=16, N=5, 32 px, batch 128, ASAM rho 2): SAM training
   images/s in fp32 and in bf16 autocast (both channels_last), and the peak memory of one candidate
   (training + one evaluation pass);
3. aggregate training images/s of 1, 2, 4 and 8 candidates per GPU through the ``local`` executor;
4. agreement of val accuracy and flatness R between bf16 and fp32 after a short run with the same seed;
5. the ratio to the plain baseline of ``benchmarks/train_speed.py`` (DataLoader + PIL, fp32, NCHW);
6. the extrapolated wall time of the ``flatnas`` protocol over all 6,466 classes and of ``nb201``
   (200 epochs) over them, on this device with the best number of candidates per GPU.

Sections run in that order and the run stops starting new ones at ``--budget-s`` (reported as skipped),
so a short device slot always returns what it measured. CUDA timers are synchronised. ``--tiny`` runs
every section on the CPU with a synthetic dataset and a 4-channel network (the test suite runs it).

    python benchmarks/gpu_check.py --data ../shared/data/cifar10/cifar10-jpeg.tar.gz --out gpu_check.json
    python benchmarks/gpu_check.py --tiny --out /tmp/gpu_check_tiny.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import ARCHS, baseline_seconds

from flatnas_bench.bench.driver import run_protocol
from flatnas_bench.bench.executors import LocalExecutor, RunContext
from flatnas_bench.bench.plan import plan_bench
from flatnas_bench.core.protocol import Protocol, get_protocol
from flatnas_bench.engine.candidate import CandidateJob
from flatnas_bench.engine.data import Dataset, Images, make_splits
from flatnas_bench.engine.device_data import DeviceData
from flatnas_bench.engine.flatness import flatness
from flatnas_bench.engine.train import configure_numerics, train_model
from flatnas_bench.nb201.space import canonical_archs

# What each mode measures; every size in one place. Steps are optimiser steps of `batch` images.
SETTINGS = {
    "full": {"steps": 30, "agree_images": 10000, "workers": (1, 2, 4, 8), "job_steps": 40, "plan_steps": 8},
    "tiny": {"steps": 3, "agree_images": 320, "workers": (1, 2), "job_steps": 3, "plan_steps": 2},
}
TINY = {"C": 4, "N": 1, "resolution": 16, "batch_size": 32, "val_size": 64, "test_size": 64}


def synthetic_splits(n: int = 800, seed: int = 0):
    """A learnable 10-class 32x32 dataset in memory (colour offset by class), for ``--tiny``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = (rng.integers(0, 60, (n, 32, 32, 3)) + 19 * y[:, None, None, None]).astype(np.uint8)
    cut = n * 4 // 5
    ds = Dataset("cifar10", Images(x[:cut], y[:cut]), Images(x[cut:], y[cut:]), tuple("abcdefghij"))
    return make_splits(ds, val_size=TINY["val_size"], test_size=TINY["test_size"], seed=0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def with_train_images(data: DeviceData, n: int) -> DeviceData:
    """The same resident data with only its first ``n`` training images (a short, timed epoch)."""
    short = copy.copy(data)
    short.train_x, short.train_y = data.train_x[:n], data.train_y[:n]
    return short


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
        )
    else:
        info.update(name="cpu", threads=torch.get_num_threads())
    return info


def train_throughput(p: Protocol, data: DeviceData, steps: int) -> dict[str, Any]:
    """SAM training images/s per arch and precision (median of 3 runs after a warm-up), and peak memory."""
    out: dict[str, Any] = {}
    precisions = ("fp32", "bf16") if data.device.type == "cuda" else ("fp32",)
    timed = with_train_images(data, steps * p.batch_size)
    for label, arch in ARCHS.items():
        for precision in precisions:
            run = p.replace(precision=precision, epochs=1)
            train_model(arch, run, with_train_images(data, 2 * p.batch_size), 0)  # warm-up (cuDNN autotune)
            if data.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(data.device)
            seconds = statistics.median(train_model(arch, run, timed, r)[1].seconds for r in range(3))
            out[f"{label} {precision} img/s"] = round(steps * p.batch_size / seconds)
            if data.device.type == "cuda":  # the resident dataset included
                out[f"{label} {precision} peak MiB"] = round(
                    torch.cuda.max_memory_allocated(data.device) / 2**20
                )
    return out


def executor_throughput(p: Protocol, context: RunContext, device: str, counts, job_steps: int) -> dict:
    """Aggregate training images/s with k candidates at once on one device through the local executor:
    2k short jobs of the median arch (``job_steps`` steps each, bf16 on CUDA); the second k (steady
    state, workers warm) are timed."""
    out: dict[str, Any] = {}
    short = p.replace(epochs=1, flatness_draws=1, corruption_subset=0, train_subset=job_steps * p.batch_size)
    short = run_protocol(short, device)
    if context.splits is not None:  # --tiny: the in-memory splits, whatever their size
        job_steps = len(context.splits.train.y) // p.batch_size
    for k in counts:
        executor = LocalExecutor(workers=k, device=device, threads=1 if device == "cpu" else None)
        jobs = [CandidateJob(ARCHS["median"], short, seed) for seed in range(2 * k)]
        rows = list(executor.run(jobs, RunContext(short, context.data_path, context.splits)))
        errors = [r["error"] for r in rows if r["error"]]
        if errors:
            out[f"x{k} error"] = errors[0]
            continue
        seconds = statistics.median(r["train_sec"] for r in rows[k:])
        out[f"x{k} img/s"] = round(k * job_steps * p.batch_size / seconds)
    return out


def agreement(p: Protocol, data: DeviceData, n: int) -> dict[str, Any]:
    """Val accuracy and R (M=20) of the median arch after one short epoch in fp32 and in bf16, same seed."""
    if data.device.type != "cuda":
        return {"bf16 vs fp32": "n/a (bf16 autocast needs CUDA)"}
    short = with_train_images(data, n)
    val_x = data.normalize(data.val_x)
    got = {}
    for precision in ("fp32", "bf16"):
        model, _ = train_model(ARCHS["median"], p.replace(precision=precision, epochs=1), short, seed=0)
        f = flatness(model, val_x, data.val_y, p.flatness_sigma, 20, 0, precision=precision)
        got[precision] = (f.acc, f.r)
    return {
        "fp32 val_acc / R": [round(v, 2) for v in got["fp32"]],
        "bf16 val_acc / R": [round(v, 2) for v in got["bf16"]],
        "val_acc diff (points)": round(got["bf16"][0] - got["fp32"][0], 2),
        "R diff (points)": round(got["bf16"][1] - got["fp32"][1], 2),
    }


def baseline_ratio(p: Protocol, data: DeviceData, steps: int) -> dict[str, Any]:
    """Engine (bf16 on CUDA) vs the plain DataLoader + PIL fp32 NCHW baseline, median arch, same steps."""
    precision = "bf16" if data.device.type == "cuda" else "fp32"
    run = p.replace(precision=precision, epochs=1)
    timed = with_train_images(data, steps * p.batch_size)
    train_model(ARCHS["median"], run, timed, 0)  # warm-up
    engine = statistics.median(train_model(ARCHS["median"], run, timed, r)[1].seconds for r in range(3))
    base = statistics.median(
        baseline_seconds(ARCHS["median"], p, timed, steps, data.device) for _ in range(3)
    )
    images = steps * p.batch_size
    return {"engine img/s": round(images / engine), "baseline img/s": round(images / base),
            "ratio": round(base / engine, 2)}  # fmt: skip


def extrapolate(protocols: dict[str, Protocol], data_path, splits, device: str, speedup: float, steps):
    """Hours for every one of the 6,466 classes under each protocol on this device: the plan's per-job
    estimate (timed lightest / median / heaviest arch), divided by the measured multi-candidate speedup."""
    archs = [str(a) for a in canonical_archs()]
    out: dict[str, Any] = {}
    for name, p in protocols.items():
        source = _tiny_source(splits) if splits is not None else data_path  # --tiny: synthetic images
        plan = plan_bench(archs, p, "/nonexistent/plan.sqlite", source, "serial", device=device, steps=steps)
        hours = sum(plan.job_s) / speedup / 3600
        out[f"{name}: 6,466 classes (h)"] = round(hours, 2)
    out["speedup used"] = round(speedup, 2)
    return out


def _tiny_source(splits) -> str:
    """Write the synthetic splits as a small ImageFolder under a temporary cache (for plan_bench)."""
    import os
    import tempfile

    from PIL import Image

    root = Path(os.environ.get("FLATNAS_CACHE", tempfile.gettempdir())) / "gpu_check_tiny"
    if not (root / "test").is_dir():
        for split, images in (("train", splits.train), ("test", splits.test)):
            for i, (x, y) in enumerate(zip(images.x, images.y, strict=True)):
                folder = root / split / f"c{y}"
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(x).save(folder / f"{i:04d}.png")
    return str(root)


def markdown(results: dict[str, Any]) -> str:
    lines = ["| section | measure | value |", "|---|---|---|"]
    for section, values in results.items():
        for key, value in values.items() if isinstance(values, dict) else [("", values)]:
            lines.append(f"| {section} | {key} | {value} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10/cifar10-jpeg.tar.gz")
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--tiny", action="store_true", help="CPU, synthetic data, 4-channel network")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no section after this")
    args = parser.parse_args(argv)
    begin = time.perf_counter()
    mode = SETTINGS["tiny" if args.tiny else "full"]
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu":
        torch.set_num_threads(1)
    configure_numerics(device)
    flat = get_protocol("flatnas", **(TINY if args.tiny else {}))
    nb201 = get_protocol("nb201", **(TINY if args.tiny else {}))
    splits = synthetic_splits() if args.tiny else None
    data = (
        DeviceData.from_splits(splits, flat, device)
        if args.tiny
        else DeviceData.for_protocol(args.data, flat, device)
    )
    context = RunContext(flat, None if args.tiny else str(args.data), splits)
    results: dict[str, Any] = {"device": device_info(device)}
    sections = [
        ("training (flatnas settings)", lambda: train_throughput(flat, data, mode["steps"])),
        ("candidates per device",
         lambda: executor_throughput(flat, context, device.type, mode["workers"], mode["job_steps"])),
        ("bf16 vs fp32", lambda: agreement(flat, data, mode["agree_images"])),
        ("vs train_speed baseline", lambda: baseline_ratio(flat, data, mode["steps"])),
    ]  # fmt: skip
    for name, run in sections:
        results[name] = _timed(run, begin, args.budget_s)
    per = results.get("candidates per device", {})
    rates = {int(k[1:].split()[0]): v for k, v in per.items() if k.endswith("img/s")}
    speedup = max(rates.values()) / rates[1] if rates.get(1) else 1.0
    protocols = {"flatnas": flat, "nb201 (200 epochs)": nb201}
    results["extrapolated"] = _timed(
        lambda: extrapolate(protocols, args.data, splits, device.type, speedup, mode["plan_steps"]),
        begin, args.budget_s,
    )  # fmt: skip
    results["total seconds"] = round(time.perf_counter() - begin, 1)
    print(markdown(results), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True))
    return results


def _timed(run, begin: float, budget: float) -> dict[str, Any]:
    """Run one section unless the budget is spent; its seconds go into its results."""
    if time.perf_counter() - begin > budget:
        return {"skipped": f"over the {budget:.0f} s budget"}
    start = time.perf_counter()
    try:
        out = run()
    except Exception as exc:  # a section that fails must not lose the others' figures
        out = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


if __name__ == "__main__":
    main()
