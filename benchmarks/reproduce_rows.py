"""Re-measures rows of a benchmark table and compares them with the stored ones, column by column.

CPU results are bit-exact for the same command, thread count and CPU model; this is the check. It draws
``--rows`` stored rows at random (seeded; or takes ``--arch`` with ``--seed``), re-benches them under the
same protocol into a temporary table with ``--threads`` torch threads (the bundled build used 1), and
prints, per row, whether every measured column is identical, else each differing column with both values.

    python benchmarks/reproduce_rows.py [--table T] [--data D] [--rows 2] [--threads 1] [--arch A --seed S]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from flatnas_bench.bench.driver import run_bench
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.core.protocol import get_protocol
from flatnas_bench.core.results import RESULT_COLUMNS
from flatnas_bench.tables.store import ResultStore

ROOT = Path(__file__).resolve().parents[1]
# what a re-run may change: timing, the device label (it names the thread count) and the package version
UNMEASURED = ("train_sec", "eval_sec", "device", "version")
MEASURED = [c for c in RESULT_COLUMNS if c not in UNMEASURED]


def differences(stored: pd.Series, again: pd.Series) -> dict[str, tuple]:
    """Measured columns whose values differ (NaN equals NaN), with (stored, re-measured)."""
    out = {}
    for column in MEASURED:
        a, b = stored[column], again[column]
        if not (a == b or (pd.isna(a) and pd.isna(b))):
            out[column] = (a, b)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    build = ROOT / "benchmarks/bundled_build/proxy_cifar10-0.3.sqlite"
    parser.add_argument("--table", type=Path, default=build)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/cifar10/cifar10-jpeg.tar.gz")
    parser.add_argument("--protocol", default="proxy")
    parser.add_argument("--rows", type=int, default=2, help="stored rows drawn at random (seed 0)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arch", help="re-measure this stored arch instead (with --seed)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    protocol = get_protocol(args.protocol)
    with ResultStore(args.table, readonly=True) as store:
        rows = store.to_frame(protocol.hash, include_failed=False)
    if args.arch:
        chosen = rows[(rows["arch"] == args.arch) & (rows["seed"] == args.seed)]
    else:
        chosen = rows.iloc[np.random.default_rng(0).choice(len(rows), args.rows, replace=False)]
    if chosen.empty:
        raise SystemExit(f"no stored row of {args.arch} seed {args.seed} under {protocol.name}")
    print(f"{args.table}: {len(rows)} rows of {protocol.name} {protocol.hash}; re-measuring {len(chosen)} "
          f"with --threads {args.threads}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for k, (_, stored) in enumerate(chosen.iterrows()):
            table = Path(tmp) / f"again{k}.sqlite"
            options = ExecutorOptions(device="cpu", threads=args.threads)
            run_bench([stored["arch"]], protocol, table, args.data, seeds=(int(stored["seed"]),),
                      options=options, progress=False)  # fmt: skip
            with ResultStore(table, readonly=True) as store:
                again = store.to_frame().iloc[0]
            diff = differences(stored, again)
            verdict = "identical" if not diff else f"{len(diff)} of {len(MEASURED)} measured columns differ"
            print(f"\n{stored['arch']} seed {stored['seed']}: {verdict}")
            print(f"   stored on {stored['device']}; re-measured on {again['device']}")
            for column, (a, b) in diff.items():
                print(f"   {column:16} stored {a!r:>22}  again {b!r:>22}")


if __name__ == "__main__":
    main()
