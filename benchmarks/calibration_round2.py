"""Calibration round 2 (issue 19): which corruption test lets the CPU proxy see robustness.

A random panel of 64 of the bundle's 503 archs (``numpy.random.default_rng(19).choice(503, 64,
replace=False)`` over ``flatnas_bench/bundled/archs.txt``; ``benchmarks/results/calibration2_panel.txt``)
is trained with seeds 0 and 1 under two training budgets, keeping every network
(``benchmarks/results/calibration2_run.sh``, ``bench --save-weights``):

* ``proxy``: the bundled protocol of 0.2 (C 8, N 1, 16 px, 10,000 images, 4 epochs);
* ``proxy32``: the same network at 32 px (crop padding 4) on 5,000 images, R on 1,000 validation images,
  1,000 test images and 500 corruption images: about 1.9x ``proxy``'s CPU per arch.

``measure`` then evaluates every stored network under every corruption test its resolution allows, per
(corruption, severity), on the same weights: for ``proxy`` the CIFAR-10-C set made at 32 px and
area-downsampled to 16 px (today's test) and the CIFAR-10-C operations applied at 16 px; for ``proxy32``
the pixel-exact 32-px set. ``report`` turns rows and evaluations into settings (each test with all five
severities and with severities 3-5 only) and prints, per setting, the seed-to-seed Spearman with a
bootstrap 95 % interval of validation accuracy, R, corruption accuracy and relative corruption accuracy
(corruption accuracy / clean test accuracy), overall and per CIFAR-10-C family, and CPU seconds per arch.

    benchmarks/results/calibration2_run.sh                                  # train (resumable)
    python benchmarks/calibration_round2.py measure --threads 1             # evaluate (resumable)
    python benchmarks/calibration_round2.py report                          # the table
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from flatnas_bench.core.cores import cpu_model
from flatnas_bench.core.protocol import Protocol
from flatnas_bench.tables.reliability import pair_reliability
from flatnas_bench.tables.store import ResultStore

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "benchmarks/results/calibration2.sqlite"
EVALS = ROOT / "benchmarks/results/calibration2_evals.jsonl"
WEIGHTS = ROOT / "runs/calibration2_weights"
DATA = ROOT.parent / "shared/data/cifar10/cifar10-jpeg.tar.gz"
FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
SEVERITIES = {"all": (1, 2, 3, 4, 5), "3-5": (3, 4, 5)}


def training_label(protocol: Protocol) -> str:
    """``proxy`` for the bundled 16-px training, ``proxy32`` for the 32-px one."""
    return "proxy" if protocol.resolution == 16 else f"proxy{protocol.resolution}"


def corruption_tests(protocol: Protocol, data_path: Path) -> dict[str, Callable[[], object]]:
    """The corruption sets a network trained under ``protocol`` is evaluated on, by name, built lazily."""
    from flatnas_bench.bench.driver import corruption_set_for

    tests: dict[str, Callable[[], object]] = {
        "cifar10c" if protocol.resolution == 32 else "cifar10c-downsampled": lambda: corruption_set_for(
            protocol, data_path, None
        )
    }
    if protocol.resolution != 32 and "corruption_resolution" in Protocol.__dataclass_fields__:
        at_input = protocol.replace(corruption_resolution="input")
        tests[f"ops-at-{protocol.resolution}px"] = lambda: corruption_set_for(at_input, data_path, None)
    return tests


def _done(path: Path) -> set[tuple]:
    if not path.exists():
        return set()
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(e["hash"], e["arch"], e["seed"], e["test"]) for e in lines}


def measure(table: Path, weights: Path, data_path: Path, out: Path) -> None:
    """Evaluate every stored network under every corruption test; append one JSON line per (row, test)."""
    from flatnas_bench.engine.device_data import DeviceData
    from flatnas_bench.engine.train import predict
    from flatnas_bench.engine.weights import load_weights, weights_path

    done = _done(out)
    with ResultStore(table, readonly=True) as store:
        known = store.protocols()
        cards = dict(zip(known["hash"], known["card"], strict=True))
        frame = store.to_frame(include_failed=False)
    for hash_, card in cards.items():
        protocol = Protocol(**card)
        rows = frame[frame["protocol_hash"] == hash_]
        data = DeviceData.for_protocol(data_path, protocol, "cpu")
        for test, build in corruption_tests(protocol, data_path).items():
            todo = [r for r in rows.itertuples() if (hash_, r.arch, int(r.seed), test) not in done]
            if not todo:
                continue
            groups, x, y = data.corruption_tensors(build(), protocol.corruption_subset)
            for r in todo:
                path = weights_path(weights, r.arch, protocol, int(r.seed))
                if not path.exists():
                    print(f"skip {r.arch} seed {r.seed}: no weights at {path}", file=sys.stderr)
                    continue
                model = load_weights(path, r.arch, protocol, data.num_classes)
                start = time.process_time()
                correct, _ = predict(model, x, y, transform=data.normalize)
                accs = (correct.view(len(groups), -1).float().mean(1) * 100).tolist()
                line = {"hash": hash_, "arch": r.arch, "seed": int(r.seed), "test": test,
                        "cpu_s": time.process_time() - start, "cpu": cpu_model(),
                        "acc": {f"{n}/{s}": a for (n, s), a in zip(groups, accs, strict=True)}}  # fmt: skip
                with out.open("a") as f:
                    f.write(json.dumps(line) + "\n")
            print(f"{training_label(protocol)} {test}: {len(todo)} networks evaluated", flush=True)


@dataclass(frozen=True)
class Setting:
    training: str  # proxy / proxy32
    test: str  # corruption test name
    severities: str  # key of SEVERITIES

    @property
    def label(self) -> str:
        return f"{self.training}, {self.test}, severities {self.severities}"


def _robustness(acc: dict[str, float], clean: float, severities: tuple[int, ...]) -> dict[str, float]:
    """Corruption accuracy and relative accuracy, overall and per family, from per-(corruption, severity)
    accuracies."""
    picked = {k: v for k, v in acc.items() if int(k.split("/")[1]) in severities}
    out = {"corr_acc": float(np.mean(list(picked.values())))}
    out["rel"] = out["corr_acc"] / clean
    for family, names in FAMILIES.items():
        values = [v for k, v in picked.items() if k.split("/")[0] in names]
        out[f"rel_{family}"] = float(np.mean(values)) / clean
    return out


def setting_values(table: Path, evals: Path) -> Iterator[tuple[Setting, pd.DataFrame]]:
    """Per setting, the long frame (arch, seed, val_acc, flatness_r, corr_acc, rel, rel_<family>, cpu_s)."""
    with ResultStore(table, readonly=True) as store:
        known = store.protocols()
        cards = dict(zip(known["hash"], known["card"], strict=True))
        frame = store.to_frame(include_failed=False)
    lines = [json.loads(line) for line in evals.read_text().splitlines() if line.strip()]
    by_key = {(e["hash"], e["arch"], e["seed"], e["test"]): e for e in lines}
    tests = sorted({(e["hash"], e["test"]) for e in lines})
    for hash_, test in tests:
        training = training_label(Protocol(**cards[hash_]))
        rows = frame[frame["protocol_hash"] == hash_]
        for severities in SEVERITIES:
            records = []
            for r in rows.itertuples():
                e = by_key.get((hash_, r.arch, int(r.seed), test))
                if e is None or not r.test_acc:
                    continue
                records.append({"arch": r.arch, "seed": int(r.seed), "val_acc": r.val_acc,
                                "flatness_r": r.flatness_r, "test_acc": r.test_acc,
                                "cpu_s": r.train_sec + r.eval_sec,
                                **_robustness(e["acc"], r.test_acc, SEVERITIES[severities])})  # fmt: skip
            yield Setting(training, test, severities), pd.DataFrame(records)


def _pairs(long: pd.DataFrame, metric: str) -> np.ndarray:
    wide = long.pivot_table(index="arch", columns="seed", values=metric)
    if not {0, 1} <= set(wide.columns):
        return np.empty((0, 2))
    return wide[[0, 1]].dropna().to_numpy()


METRICS = ("val_acc", "flatness_r", "corr_acc", "rel", *(f"rel_{f}" for f in FAMILIES))


BASELINE = Setting("proxy", "cifar10c-downsampled", "all")  # today's instrument (0.2)
ROBUSTNESS = tuple(m for m in METRICS if m.startswith("rel"))


@dataclass(frozen=True)
class Measured:
    archs: int
    wall: float  # median train + evaluation seconds per arch
    values: dict[str, tuple[float, float, float]]  # metric -> (Spearman, interval low, interval high)


def measure_settings(table: Path, evals: Path, boot: int = 2000) -> dict[Setting, Measured]:
    """Every setting's seed-to-seed Spearman with its bootstrap 95 % interval, per metric."""
    out = {}
    for setting, long in setting_values(table, evals):
        if long.empty:
            continue
        values = {}
        for metric in METRICS:
            rel = pair_reliability(_pairs(long, metric), metric, boot=boot, seed=0)
            values[metric] = (rel.spearman, *rel.spearman_ci)
        wall = float(long.groupby("arch")["cpu_s"].median().median())
        out[setting] = Measured(len(_pairs(long, "val_acc")), wall, values)
    return out


def choose(measured: dict[Setting, Measured], max_cost: float = 2.0) -> tuple[Setting, str] | None:
    """Issue 19's rule: among settings at most ``max_cost`` x today's seconds per arch that lower neither
    validation accuracy's nor R's seed-to-seed Spearman, the (setting, relative-robustness measure, overall
    or one family) whose bootstrap interval lies wholly above today's figure for that measure, the one with
    the highest Spearman; None when none qualifies."""
    base = measured[BASELINE]
    best, best_value = None, -math.inf
    for setting, m in measured.items():
        if setting == BASELINE or m.wall > max_cost * base.wall:
            continue
        if any(m.values[k][0] < base.values[k][0] for k in ("val_acc", "flatness_r")):
            continue
        for metric in ROBUSTNESS:
            value, low, _ = m.values[metric]
            if low > base.values[metric][0] and value > best_value:
                best, best_value = (setting, metric), value
    return best


def _cell(value: tuple[float, float, float]) -> str:
    rho, lo, hi = value
    return "-" if math.isnan(rho) else f"{rho:.2f} [{lo:.2f}, {hi:.2f}]"


def report(table: Path, evals: Path, boot: int = 2000) -> str:
    """The Markdown table of every setting's seed-to-seed Spearman [95 % interval], and the choice."""
    measured = measure_settings(table, evals, boot)
    head = ["setting", "archs", *METRICS, "wall s/arch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for setting, m in measured.items():
        cells = " | ".join(_cell(m.values[metric]) for metric in METRICS)
        lines.append(f"| {setting.label} | {m.archs} | {cells} | {m.wall:.0f} |")
    picked = choose(measured) if BASELINE in measured else None
    if picked is None:
        lines.append("\nChoice: no setting qualifies; the 0.2 protocol stays.")
    else:
        setting, metric = picked
        m, base = measured[setting], measured[BASELINE]
        lines.append(
            f"\nChoice: {setting.label}, for {metric}: {_cell(m.values[metric])} against today's "
            f"{base.values[metric][0]:.2f}; val_acc {m.values['val_acc'][0]:.2f} and flatness_r "
            f"{m.values['flatness_r'][0]:.2f} (today {base.values['val_acc'][0]:.2f}, "
            f"{base.values['flatness_r'][0]:.2f}); {m.wall / base.wall:.2f}x today's seconds per arch."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("measure", "report"))
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--evals", type=Path, default=EVALS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="report: also write the table to this Markdown file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.action == "measure":
        measure(args.table, args.weights, args.data, args.evals)
    else:
        table = report(args.table, args.evals)
        print(table)
        if args.out:
            args.out.write_text(
                "# Calibration round 2: seed-to-seed Spearman [bootstrap 95 % interval] per setting\n\n"
                f"`python benchmarks/calibration_round2.py report` over `{args.table.name}` and "
                f"`{args.evals.name}` (2,000 resamples, seed 0); relative accuracy = corruption accuracy / "
                "clean test accuracy; wall s/arch = median train + evaluation seconds of the rows (wall "
                "time on a loaded machine, not CPU).\n\n" + table + "\n"
            )


if __name__ == "__main__":
    main()
