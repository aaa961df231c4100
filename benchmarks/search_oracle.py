"""Anytime comparison of the loop's strategies on NB201, with the NB201 table as a zero-cost oracle.

Every strategy of ``loop --strategy`` (``flatnas``, ``random``, ``evolution``, ``local``, ``nsga2``) runs
with its defaults to a budget of distinct canonical archs (live cells only), once per seed, on each task:

* ``single``: one objective, the searched accuracy (max). The curve is the *reported* accuracy of the arch
  with the best searched accuracy so far, after every evaluation. CIFAR-10 searches the ``cifar10-valid``
  validation accuracy and reports the test accuracy (``cifar10_test_acc_200ep``, best 94.37). The table
  has no validation column for CIFAR-100 and ImageNet16-120: there the 200-epoch test accuracy is both
  searched and reported.
* ``pair``: (searched accuracy max, params min); the curve is the hypervolume of the archive's front over
  the exhaustive front's (both normalised by the exhaustive live set's min/max, reference point 1.1).
* ``hybrid`` (CIFAR-10): (FoM min, params min), FoM = fom(acc = NB201 validation accuracy, R = the bundled
  surrogate's predicted flatness R), alpha_norm frozen at its value over the whole space; hypervolume
  ratio as above.

CIFAR-10 curves also get a second x-axis: simulated GPU seconds, the sum over evaluated archs of 200 x the
table's recorded training seconds per epoch (``cifar10_valid_train_sec_per_epoch``, NB201's GPU); the
other datasets have no recorded time.

Outputs (``--out``, default ``benchmarks/results``): ``search_comparison_curves.csv.gz`` (every curve:
task, strategy, seed, evaluation, value, simulated GPU seconds), ``search_comparison.png`` (mean and 95 %
t-interval band per strategy against evaluations), ``search_comparison_gpu.png`` (CIFAR-10 against
simulated GPU hours) and ``search_comparison.md`` (mean [95 % interval] and median at 25 / 50 / 100 / 200
evaluations). Runs are cached one JSON line each in ``--cache`` so an interrupted comparison resumes.

Run (one thread per XGBoost fit; the figures in docs/search-comparison.md):
``nice -n 10 python benchmarks/search_oracle.py --seeds 0-24 --budget 200``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flatnas_bench.nb201.space import Arch, canonical_archs
from flatnas_bench.search.context import ObjectiveContext
from flatnas_bench.search.engine import exhaustive
from flatnas_bench.search.evaluators import TableOracle
from flatnas_bench.search.flatnas import FIT_PARAMS, N_MODELS
from flatnas_bench.search.fom import alpha_norm
from flatnas_bench.search.fronts import Bounds, hypervolume, pareto_front
from flatnas_bench.search.loop import LoopConfig, run_loop
from flatnas_bench.search.objectives import LIVE_CONSTRAINT, make_constraint, make_objectives
from flatnas_bench.search.strategy import list_strategies, make_strategy
from flatnas_bench.tables.bundled import bundled_surrogate_dir
from flatnas_bench.tables.readers import load_table
from flatnas_bench.tables.table import BenchTable
from surrogates import load_surrogate

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = (
    Path(os.environ.get("FLATNAS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "nb201/nb201_accuracy.csv"
)
TIME_COLUMN, EPOCHS = "cifar10_valid_train_sec_per_epoch", 200
BUDGETS = (25, 50, 100, 200)
C10_VALID, C10_TEST = "cifar10_valid_acc_200ep", "cifar10_test_acc_200ep"
SEARCHED = {
    "cifar10": (C10_VALID, C10_TEST),
    "cifar100": ("cifar100_test_acc_200ep", "cifar100_test_acc_200ep"),
    "imagenet16": ("imagenet16_test_acc_200ep", "imagenet16_test_acc_200ep"),
}


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str
    kind: str  # "single", "pair" or "hybrid"

    @property
    def searched(self) -> str:
        return SEARCHED[self.dataset][0]

    @property
    def reported(self) -> str:
        return SEARCHED[self.dataset][1]

    def label(self) -> str:
        if self.kind == "single" and self.searched != self.reported:
            return f"{self.dataset}: test acc. of best-validation arch, validation searched"
        if self.kind == "single":
            return f"{self.dataset}: best test acc. so far, test searched (no validation column)"
        if self.kind == "pair":
            return f"{self.dataset}: HV ratio ({self.searched}, params)"
        return f"{self.dataset} hybrid: HV ratio (FoM of NB201 valid acc. and bundled R, params)"


TASKS = {
    t.name: t
    for t in [Task(f"{d}-{k}", d, k) for k in ("single", "pair") for d in SEARCHED]
    + [Task("cifar10-hybrid", "cifar10", "hybrid")]
}


def hybrid_table(table: BenchTable) -> BenchTable:
    """Every canonical arch with NB201's CIFAR-10 accuracies and the bundled surrogate's predicted R."""
    archs = list(canonical_archs())
    surrogate = load_surrogate(bundled_surrogate_dir())
    r = surrogate.predict(archs, targets=["cifar10_flatness_r_proxy"])["cifar10_flatness_r_proxy"]
    values = table.lookup([C10_VALID, C10_TEST, TIME_COLUMN], archs, fill="class")
    frame = pd.DataFrame(values, columns=[C10_VALID, C10_TEST, TIME_COLUMN])
    frame.insert(0, "arch", [str(a) for a in archs])
    frame["flatness_r"] = r.to_numpy()
    return BenchTable.from_frame(frame, source="NB201 CIFAR-10 accuracy + bundled predicted R")


class Oracle:
    """One task's oracle table, objective specs and exact reference front."""

    def __init__(self, task: Task, table: BenchTable, hybrid: BenchTable | None) -> None:
        self.task = task
        self.table = hybrid if task.kind == "hybrid" else table
        if task.kind == "single":
            self.specs = [f"{task.searched}:max"]
        elif task.kind == "pair":
            self.specs = [f"{task.searched}:max", "params"]
        else:
            norm = alpha_norm(100.0 - self.table.values(C10_VALID), self.table.values("flatness_r"))
            self.specs = [f"fom(acc={C10_VALID},r=flatness_r,alpha_norm={norm:.6g})", "params"]
        self.metrics = sorted(
            {task.searched, task.reported} | ({"flatness_r"} if task.kind == "hybrid" else set())
        )
        if task.kind != "single":
            context = ObjectiveContext(table=self.table)
            self.objectives = make_objectives(self.specs, context)
            truth = exhaustive(self.objectives, [make_constraint(LIVE_CONSTRAINT, context)])
            self.bounds = Bounds.of(truth.F[truth.feasible])
            self.true_hv = hypervolume(truth.F[truth.front], self.bounds)

    def curve(self, archs: list[Arch]) -> np.ndarray:
        """The task's value after each of the first 1..len(archs) evaluations."""
        if self.task.kind == "single":
            searched = self.table.values(self.task.searched, archs, fill="class")
            reported = self.table.values(self.task.reported, archs, fill="class")
            best = np.array([int(np.argmax(searched[: n + 1])) for n in range(len(archs))])
            return reported[best]
        F = np.column_stack([o.minimised(archs) for o in self.objectives])
        out, last = np.empty(len(archs)), 0.0
        for n in range(len(archs)):
            front = pareto_front(F[: n + 1])
            if n in front:  # a dominated newcomer leaves the front, and so the hypervolume, as it was
                last = hypervolume(F[front], self.bounds) / self.true_hv
            out[n] = last
        return out


def run_one(oracle: Oracle, strategy: str, seed: int, budget: int) -> tuple[list[Arch], float]:
    """The archs ``strategy`` evaluates, in order, and its wall seconds."""
    start = time.perf_counter()
    evaluator = TableOracle(oracle.table, metrics=oracle.metrics)
    result = run_loop(evaluator, oracle.specs, config=LoopConfig(budget=budget, seed=seed), strategy=strategy)
    return [Arch.from_str(a) for a in result.archive["arch"]], time.perf_counter() - start


_ORACLES: dict[str, Oracle] = {}  # per worker process: each task's oracle, built once


def _run_key(job: tuple[Path, tuple]) -> dict:
    """One cached run (a worker's job): the key's strategy on its task and seed."""
    csv, key = job
    name, strategy, seed, budget, _ = key
    if name not in _ORACLES:
        table = load_table(csv)
        _ORACLES[name] = Oracle(
            TASKS[name], table, hybrid_table(table) if TASKS[name].kind == "hybrid" else None
        )
    archs, wall = run_one(_ORACLES[name], strategy, seed, budget)
    run = dict(zip(("task", "strategy", "seed", "budget", "config"), key, strict=True))
    return {**run, "wall_s": round(wall, 2), "archs": [a.ordinal for a in archs]}


def strategy_config(name: str) -> str:
    """What identifies a strategy's defaults in the cache (a changed default reruns it)."""
    made = make_strategy(name)
    return f"{made!r} n_init={made.n_init} k={made.k} fit={FIT_PARAMS} models={N_MODELS}"


def parse_seeds(text: str) -> list[int]:
    """``0-24`` or ``0,3,7`` (or a mix) into a list of seeds."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds += list(range(int(lo), int(hi or lo) + 1))
    return seeds


def collect(args: argparse.Namespace) -> pd.DataFrame:
    """Run (or read from the cache) every task x strategy x seed, ``args.jobs`` runs at a time; one row
    per evaluation."""
    from multiprocessing import get_context

    cache = Path(args.cache)
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            run = json.loads(line)
            done[(run["task"], run["strategy"], run["seed"], run["budget"], run["config"])] = run
    configs = {s: strategy_config(s) for s in args.strategies}
    keys = [
        (t, s, seed, args.budget, configs[s])
        for t in args.tasks
        for s in args.strategies
        for seed in args.seeds
    ]
    missing = [(args.csv, k) for k in keys if k not in done]
    pool = get_context("spawn").Pool(args.jobs) if args.jobs > 1 else None
    for run in pool.imap_unordered(_run_key, missing) if pool else map(_run_key, missing):
        key = (run["task"], run["strategy"], run["seed"], run["budget"], run["config"])
        done[key] = run
        with cache.open("a") as f:
            f.write(json.dumps(run) + "\n")
        print(f"{run['task']} {run['strategy']} seed {run['seed']}: {run['wall_s']:.1f} s", flush=True)
    if pool:
        pool.close()
    table = load_table(args.csv)
    hybrid = hybrid_table(table) if any(TASKS[t].kind == "hybrid" for t in args.tasks) else None
    oracles = {t: Oracle(TASKS[t], table, hybrid) for t in args.tasks}
    frames = []
    for key in keys:
        name, strategy, seed = key[:3]
        archs = [Arch.from_ordinal(k) for k in done[key]["archs"]]
        frame = pd.DataFrame(
            {"task": name, "strategy": strategy, "seed": seed, "n": np.arange(1, len(archs) + 1)}
        )
        frame["value"] = oracles[name].curve(archs)
        if TASKS[name].dataset == "cifar10":
            frame["gpu_s"] = np.cumsum(EPOCHS * table.values(TIME_COLUMN, archs, fill="class"))
        frame["wall_s"] = done[key]["wall_s"]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and its 95 % t-interval over seeds (rows of ``values``' first axis)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    mean = values.mean(axis=0)
    if len(values) < 2:
        return mean, mean, mean
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(axis=0, ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def markdown(curves: pd.DataFrame, budgets: tuple[int, ...]) -> str:
    """One table per task: mean [95 % interval] / median per strategy at each budget; the best mean bold."""
    lines = []
    for name, task_rows in curves.groupby("task", sort=False):
        task = TASKS[name]
        digits = 2 if task.kind == "single" else 4
        lines += [f"### {name}: {task.label()}", ""]
        lines += ["| strategy | " + " | ".join(f"{b} evals" for b in budgets) + " | wall s per run |"]
        lines += ["|---|" + "---|" * (len(budgets) + 1)]
        cells: dict[str, list[str]] = {}
        means = {}
        for strategy, rows in task_rows.groupby("strategy", sort=False):
            wide = rows.pivot(index="seed", columns="n", values="value")
            cells[strategy] = []
            for b in budgets:
                column = wide[b].to_numpy() if b in wide else np.full(len(wide), np.nan)
                mean, lo, hi = interval(column)
                means[(strategy, b)] = mean
                cells[strategy].append(
                    f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}] / {np.median(column):.{digits}f}"
                )
            cells[strategy].append(f"{rows.groupby('seed')['wall_s'].first().median():.1f}")
        for j, b in enumerate(budgets):
            top = max(means[(s, b)] for s in cells)
            for s in [s for s in cells if means[(s, b)] >= top - 1e-9]:  # ties all bold
                cells[s][j] = f"**{cells[s][j].split(' [')[0]}** [" + cells[s][j].split(" [", 1)[1]
        lines += [f"| {s} | " + " | ".join(c) + " |" for s, c in cells.items()]
        n_seeds = task_rows["seed"].nunique()
        lines += [
            "",
            f"Mean [95 % t-interval] / median over {n_seeds} seeds; bold: the best mean (ties all).",
            "",
        ]
    return "\n".join(lines)


def plot(curves: pd.DataFrame, path: Path, x: str) -> Path:
    """Mean and 95 % band per strategy, one panel per task, against evaluations or simulated GPU hours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in curves["task"].unique() if x == "n" or TASKS[t].dataset == "cifar10"]
    cols = min(3, len(tasks))
    rows = int(np.ceil(len(tasks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows), dpi=110, squeeze=False)
    for ax, name in zip(axes.flat, tasks, strict=False):
        for strategy, data in curves[curves["task"] == name].groupby("strategy", sort=False):
            wide = data.pivot(index="seed", columns="n", values="value")
            if x == "n":
                grid = wide.columns.to_numpy()
                values = wide.to_numpy()
            else:
                times = data.pivot(index="seed", columns="n", values="gpu_s").to_numpy()
                grid = np.linspace(np.max(times[:, 0]), np.min(times[:, -1]), 200)
                idx = [np.searchsorted(t, grid, side="right") - 1 for t in times]
                values = np.array([v[i] for v, i in zip(wide.to_numpy(), idx, strict=True)])
                grid = grid / 3600
            mean, lo, hi = interval(values)
            ax.plot(grid, mean, lw=1.4, label=strategy)
            ax.fill_between(grid, lo, hi, alpha=0.2)
        task = TASKS[name]
        ax.set_title(task.label(), fontsize=8)
        ax.set_xlabel("evaluations (distinct canonical archs)" if x == "n" else "simulated GPU hours (NB201)")
        ax.set_ylabel("test accuracy (%)" if task.kind == "single" else "hypervolume ratio")
        if task.kind == "single":
            top = float(np.max(curves.loc[curves["task"] == name, "value"]))
            ax.set_ylim(top - 3.0, top + 0.3)
        else:
            ax.set_ylim(0.9, 1.002)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-24"))
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    order = sorted(list_strategies(), key=lambda s: (s != "flatnas", s != "random", s))
    parser.add_argument("--strategies", nargs="+", default=order, choices=order)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "search_comparison.jsonl")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (processes)")
    args = parser.parse_args()
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    curves = collect(args)
    stem = args.out / "search_comparison"
    with gzip.GzipFile(f"{stem}_curves.csv.gz", "wb", mtime=0) as f:
        f.write(curves.to_csv(index=False, float_format="%.5g").encode())
    budgets = tuple(b for b in BUDGETS if b <= args.budget)
    table = markdown(curves, budgets)
    seeds = f"{min(args.seeds)}-{max(args.seeds)}" if len(args.seeds) > 1 else str(args.seeds[0])
    seeds += "" if args.tasks == list(TASKS) else " --tasks " + " ".join(args.tasks)
    header = (f"# Search strategies on NB201 (table oracle)\n\n{len(args.seeds)} seeds, budget "
              f"{args.budget} distinct canonical archs, live cells only; every strategy with its defaults. "
              f"Command: `nice -n 10 python benchmarks/search_oracle.py --seeds {seeds} --budget "
              f"{args.budget}`.\n\n")  # fmt: skip
    Path(f"{stem}.md").write_text(header + table)
    plot(curves, Path(f"{stem}.png"), "n")
    if "gpu_s" in curves and curves["gpu_s"].notna().any():
        plot(curves.dropna(subset=["gpu_s"]), Path(f"{stem}_gpu.png"), "gpu_s")
    print(table)


if __name__ == "__main__":
    main()
