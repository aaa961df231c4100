"""Protocol calibration: each metric's seed-to-seed reliability, per measurement setting and training
budget, against its CPU cost per arch. This is how the bundled benchmark's protocol is chosen.

A fixed panel of canonical archs (quantiles of the bundled table's validation accuracy, so the panel has the
bundled table's spread; cells without a live route left out) is trained with two seeds under each training
budget. Every trained network is then measured once at the most expensive setting of every measurement, per
image and per draw; cheaper settings are prefixes of those outcomes (the first k flatness draws are exactly
a k-draw run, the first n images of a class-balanced order a class-balanced n-image split), so every setting
below is measured on the same networks:

* flatness R and loss sharpness: sigma 0.05 (20 draws), 0.1 and 0.2 (20 and 50 draws), each on 250, 500
  and 1,000 validation images;
* validation accuracy on 250, 500 and 1,000 images;
* corruption accuracy (15 CIFAR-10-C corruptions x 5 severities) on 50, 500 and 1,000 class-balanced test
  images, its ratio to clean test accuracy (``corr_acc_rel``) and its residual given clean test accuracy
  (``corr_acc_resid``, a least-squares line over the panel).

Results go to a JSON-lines file, one line per (budget, arch, seed); a killed run resumes with the same
command. CPU seconds are process CPU time of single-threaded workers (robust to a loaded machine).

    python benchmarks/protocol_calibration.py --data ../shared/data/cifar10/cifar10-jpeg.tar.gz \\
        --out runs/calibration.jsonl --panel 32 --workers 2
    python benchmarks/protocol_calibration.py --out runs/calibration.jsonl --report-only

``--tiny`` runs a 4-arch, 1-epoch, few-image version in seconds (the test suite runs it).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from flatnas_bench.bench.driver import balanced_subset, corruption_set_for
from flatnas_bench.core.protocol import Protocol, get_protocol
from flatnas_bench.core.results import residual_metric
from flatnas_bench.engine.device_data import DeviceData
from flatnas_bench.engine.flatness import perturbation_outcomes
from flatnas_bench.engine.train import predict, train_model
from flatnas_bench.nb201.encodings import live_route_counts
from flatnas_bench.tables.bundled import bundled_table_path
from flatnas_bench.tables.readers import read_csv
from flatnas_bench.tables.reliability import pair_reliability, replicate_pairs

SIGMAS = (0.05, 0.1, 0.2)
MEASURED = ("flatness_r", "loss_sharpness", "val_acc", "corr_acc_mean", "corr_acc_rel", "corr_acc_resid")
DRAWS = (20, 50)


@dataclass(frozen=True)
class Budget:
    """One training budget and what is measured on its networks."""

    protocol: Protocol  # training; its corruption_subset is the corruption set generated (shared)
    draws: dict[float, tuple[int, ...]]  # sigma -> draw counts reported (the largest is run)
    corr_images: tuple[int, ...]  # class-balanced corruption subsets reported (nested in the generated set)


@dataclass(frozen=True)
class Plan:
    """What one calibration run measures: budgets by name and the validation-image prefixes (the largest
    is the protocols' val_size)."""

    budgets: dict[str, Budget]
    val_images: tuple[int, ...]


def full_plan() -> Plan:
    """Budget 5k-x4ep is the bundled ``proxy`` training exactly; C8-10k-x4ep is a narrower net (C = 8) on
    twice the images, so twice the optimiser steps for about the same CPU time (C = 8 trains 2-2.7x faster
    per image on one CPU thread)."""
    corr = {"corruption_subset": 1000}
    return Plan(
        budgets={
            "5k-x4ep": Budget(
                get_protocol("proxy", **corr), {0.05: (20,), 0.1: (20, 50), 0.2: (20, 50)}, (50, 500, 1000)
            ),
            "C8-10k-x4ep": Budget(
                get_protocol("proxy", C=8, train_subset=10000, **corr),
                {0.05: (20,), 0.1: (20, 50), 0.2: (20, 50)},
                (50, 500, 1000),
            ),
        },
        val_images=(250, 500, 1000),
    )


def tiny_plan() -> Plan:
    base = {"val_size": 100, "corruption_subset": 40, "test_size": 100, "epochs": 1, "train_subset": 256}
    return Plan(
        budgets={
            "tiny-a": Budget(get_protocol("proxy", **base), {0.05: (2,), 0.2: (2, 3)}, (20, 40)),
            "tiny-b": Budget(get_protocol("proxy", **base, C=8), {0.2: (2,)}, (20,)),
        },
        val_images=(50, 100),
    )


def panel(n: int) -> list[str]:
    """``n`` canonical archs at evenly spaced quantiles of the bundled table's validation accuracy."""
    table = read_csv(bundled_table_path())
    table = table[live_route_counts(table["arch"]) > 0].sort_values("val_acc", kind="stable")
    pick = np.round((np.arange(n) + 0.5) / n * len(table) - 0.5).astype(int)
    return table["arch"].iloc[pick].tolist()


# ------------------------------------------------------------------------------------------- measuring

_WORKER: dict = {}


def _init_worker(plan: Plan, data_path: str) -> None:
    torch.set_num_threads(1)
    _WORKER["plan"] = plan
    _WORKER["data"] = {n: DeviceData.for_protocol(data_path, b.protocol) for n, b in plan.budgets.items()}
    _WORKER["corr"] = {n: corruption_set_for(b.protocol, data_path, None) for n, b in plan.budgets.items()}
    _WORKER["path"] = data_path


def _balanced_order(y: torch.Tensor) -> torch.Tensor:
    """An order of ``y`` whose every prefix is class-balanced (round-robin over classes, index order)."""
    labels = y.numpy()
    rank = np.empty(len(labels), np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[members] = np.arange(len(members))
    return torch.as_tensor(np.lexsort((labels, rank)))


def _timed(fn):
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def measure(budget: str, arch: str, seed: int) -> dict:
    """Train ``arch`` with ``seed`` under ``budget`` and measure every setting of the plan; one record."""
    plan: Plan = _WORKER["plan"]
    spec, data = plan.budgets[budget], _WORKER["data"][budget]
    protocol = spec.protocol
    wall = time.perf_counter()
    (model, stats), train_cpu = _timed(lambda: train_model(arch, protocol, data, seed))
    order = _balanced_order(data.val_y)
    val_x, val_y = data.normalize(data.val_x[order]), data.val_y[order]
    rec = {"budget": budget, "arch": arch, "seed": seed, "train_cpu": train_cpu, "train_acc": stats.train_acc}
    forwarded, eval_cpu = 0, 0.0
    for sigma, counts in spec.draws.items():
        draws = max(counts)
        out, cpu = _timed(lambda s=sigma, m=draws: perturbation_outcomes(model, val_x, val_y, s, m, seed))
        eval_cpu, forwarded = eval_cpu + cpu, forwarded + len(val_y) * (1 + draws)
        for m in counts:
            for k in plan.val_images:
                f = out.summary(draws=m, images=k)
                rec[f"flatness_r|s{sigma}|m{m}|n{k}"] = f.r
                rec[f"flatness_r_se|s{sigma}|m{m}|n{k}"] = f.r_se
                rec[f"loss_sharpness|s{sigma}|m{m}|n{k}"] = f.loss_sharpness
    for k in plan.val_images:
        rec[f"val_acc|n{k}"] = 100.0 * out.correct0[:k].double().mean().item()
    (test_correct, _), cpu = _timed(
        lambda: predict(model, data.test_x, data.test_y, transform=data.normalize)
    )
    eval_cpu, forwarded = eval_cpu + cpu, forwarded + len(data.test_y)
    rec["test_acc"] = 100.0 * test_correct.double().mean().item()
    rec["test_images"] = len(data.test_y)
    groups, cx, cy = data.corruption_tensors(_WORKER["corr"][budget], protocol.corruption_subset)
    members = _corruption_members(spec, protocol)
    keep = members[max(spec.corr_images)]
    cx = cx.view(len(groups), -1, *cx.shape[1:])[:, keep].flatten(0, 1)
    cy = cy.view(len(groups), -1)[:, keep].flatten()
    (correct, _), cpu = _timed(lambda: predict(model, cx, cy, transform=data.normalize))
    eval_cpu, forwarded = eval_cpu + cpu, forwarded + len(cy)
    per_group = correct.view(len(groups), -1).double()
    for k in spec.corr_images:
        rec[f"corr_acc_mean|n{k}"] = 100.0 * per_group[:, members[k][keep]].mean().item()
    rec.update(eval_cpu=eval_cpu, cpu_per_image=eval_cpu / forwarded, wall=time.perf_counter() - wall)
    return rec


def _corruption_members(spec: Budget, protocol: Protocol) -> dict[int, torch.Tensor]:
    """For each reported corruption subset size k: a mask over the generated set's images marking the
    class-balanced k-subset (balanced subsets are nested, so each is a subset of the generated one)."""
    from flatnas_bench.engine.data import load_images

    test_y = load_images(_WORKER["path"], protocol.dataset).test.y
    generated = balanced_subset(test_y, protocol.corruption_subset)
    return {k: torch.as_tensor(np.isin(generated, balanced_subset(test_y, k))) for k in spec.corr_images}


def run(plan: Plan, archs: list[str], seeds: list[int], data_path: str, out: Path, workers: int) -> None:
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            rec = json.loads(line)
            done.add((rec["budget"], rec["arch"], rec["seed"]))
    order = np.random.default_rng(0).permutation(len(archs))  # archs complete in a random order, so a
    jobs = [  # partial run is an unbiased panel with both seeds and both budgets of every arch it holds
        (b, archs[i], s) for i in order for s in seeds for b in plan.budgets if (b, archs[i], s) not in done
    ]
    print(f"{len(done)} records in {out}, {len(jobs)} to measure", file=sys.stderr, flush=True)
    if not jobs:
        return
    for b in plan.budgets.values():  # generate (and cache) the corruption sets once, before the workers
        corruption_set_for(b.protocol, data_path, None)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    context = mp.get_context("spawn")
    with (
        cf.ProcessPoolExecutor(workers, context, _init_worker, (plan, data_path)) as pool,
        out.open("a") as fh,
    ):
        futures = [pool.submit(measure, *job) for job in jobs]
        for i, future in enumerate(cf.as_completed(futures), 1):
            rec = future.result()
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            rate = i / (time.perf_counter() - start)
            print(
                f"[{i}/{len(jobs)}] {rec['budget']} seed {rec['seed']} val {rec['test_acc']:.1f} "
                f"train {rec['train_cpu']:.1f} cpu-s, eval {rec['eval_cpu']:.1f} cpu-s; "
                f"ETA {(len(jobs) - i) / rate / 60:.1f} min",
                file=sys.stderr,
                flush=True,
            )


# ------------------------------------------------------------------------------------------- reporting


def _settings(records: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(metric, setting label, column) for every measured column."""
    rows = []
    for col in records.columns:
        name, _, rest = col.partition("|")
        if name in (
            "flatness_r",
            "loss_sharpness",
            "val_acc",
            "corr_acc_mean",
            "corr_acc_rel",
            "corr_acc_resid",
        ):
            rows.append((name, rest.replace("|", " "), col))
    return rows


def derived(records: pd.DataFrame) -> pd.DataFrame:
    """Add relative corruption accuracy and its residual given clean accuracy (per budget)."""
    records = records.copy()
    for col in [c for c in records.columns if c.startswith("corr_acc_mean|")]:
        tag = col.partition("|")[2]
        records[f"corr_acc_rel|{tag}"] = records[col] / records["test_acc"]
        resid = np.full(len(records), np.nan)
        for _, idx in records.groupby("budget").groups.items():
            pos = records.index.get_indexer(idx)
            resid[pos] = residual_metric(records.loc[idx, col], records.loc[idx, "test_acc"])
        records[f"corr_acc_resid|{tag}"] = resid
    return records


def _images_forwarded(metric: str, setting: str) -> int:
    """Images a measurement at ``setting`` (tokens such as ``s0.1 m20 n1000``) forwards per arch."""
    tokens = {t[0]: t[1:] for t in setting.split()}
    n = int(tokens["n"])
    if metric in ("flatness_r", "loss_sharpness"):
        return n * (1 + int(tokens["m"]))
    return n * 75 if metric.startswith("corr") else n  # 15 corruptions x 5 severities


def report(records: pd.DataFrame, boot: int = 1000) -> pd.DataFrame:
    """One row per (budget, metric, setting): seed-to-seed reliability with 95 % intervals, and the CPU
    seconds per arch of training plus that one measurement."""
    records = derived(records)
    rows = []
    for budget, sub in records.groupby("budget", sort=False):
        train_cpu, per_image = sub["train_cpu"].mean(), sub["cpu_per_image"].mean()
        test = ("test_acc", f"n{int(sub['test_images'].iloc[0])}", "test_acc")
        for metric, setting, col in [*_settings(sub), test]:
            rel = pair_reliability(replicate_pairs(sub, col), col, boot=boot)
            se_col = col.replace("flatness_r|", "flatness_r_se|")
            within = float(sub[se_col].mean()) if se_col != col and se_col in sub else float("nan")
            cost = float(train_cpu + per_image * _images_forwarded(metric, setting))
            rows.append(
                {"budget": budget, "metric": metric, "setting": setting, **_fields(rel), "within_se": within,
                 "cpu_s": cost}
            )  # fmt: skip
    return pd.DataFrame(rows)


def _fields(rel) -> dict:
    keep = ("archs", "spearman", "spearman_ci", "kendall", "icc", "icc_ci", "mean", "between_sd")
    return {k: v for k, v in rel.as_dict().items() if k in keep}


def markdown(table: pd.DataFrame) -> str:
    def ci(v: tuple[float, float]) -> str:
        return f"[{v[0]:.2f}, {v[1]:.2f}]" if np.isfinite(v[0]) else "-"

    lines = [
        "| budget | metric | setting | archs | Spearman [95 % CI] | Kendall | ICC [95 % CI] | mean "
        "| between-arch sd | within SE | CPU s/arch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        se = f"{r.within_se:.3f}" if np.isfinite(r.within_se) else "-"
        lines.append(
            f"| {r.budget} | {r.metric} | {r.setting} | {r.archs} | {r.spearman:.2f} {ci(r.spearman_ci)} | "
            f"{r.kendall:.2f} | {r.icc:.2f} {ci(r.icc_ci)} | {r.mean:.3g} | {r.between_sd:.3g} | {se} | "
            f"{r.cpu_s:.1f} |"
        )
    return "\n".join(lines)


def fidelity(records: pd.DataFrame, plan: Plan, nb201_csv: Path) -> str:
    """Per budget: Kendall tau of the seed-mean accuracies against NB201's 200-epoch CIFAR-10 test accuracy
    over the panel (NB201's table is read for this check only)."""
    nb201 = read_csv(nb201_csv, usecols=["arch", "cifar10_test_acc_200ep"]).set_index("arch")
    val = f"val_acc|n{max(plan.val_images)}"
    lines = ["| budget | archs | tau(val_acc, NB201) | tau(test_acc, NB201) |", "|---|---|---|---|"]
    for budget, sub in records.groupby("budget", sort=False):
        means = sub.groupby("arch")[[val, "test_acc"]].mean().join(nb201, how="inner")
        taus = [stats.kendalltau(means[c], means["cifar10_test_acc_200ep"])[0] for c in (val, "test_acc")]
        lines.append(f"| {budget} | {len(means)} | {taus[0]:.3f} | {taus[1]:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/cifar10/cifar10-jpeg.tar.gz")
    parser.add_argument("--out", type=Path, default=Path("runs/calibration.jsonl"))
    parser.add_argument("--panel", type=int, default=32, help="archs in the panel (>= 32 for the study)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--boot", type=int, default=1000, help="bootstrap resamples per interval")
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke version (4 archs)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the report as JSON records")
    parser.add_argument("--nb201", type=Path, default=Path("../shared/data/nb201/nb201_accuracy.csv"))
    args = parser.parse_args(argv)
    plan = tiny_plan() if args.tiny else full_plan()
    archs = panel(4 if args.tiny else args.panel)
    if not args.report_only:
        run(plan, archs, [int(s) for s in args.seeds.split(",")], args.data, args.out, args.workers)
    records = pd.read_json(args.out, lines=True)
    table = report(records, boot=args.boot)
    print(markdown(table))
    if args.nb201.is_file():
        print(
            "\nFidelity (seed means against NB201 cifar10_test_acc_200ep):\n"
            + fidelity(records, plan, args.nb201)
        )
    if args.json:
        args.json.write_text(table.to_json(orient="records", indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
