"""How long generating every corruption takes: 19 corruptions x 5 severities of a clean test set.

Generation runs in ``--workers`` processes (default: every usable core), as ``flatnas-bench corrupt`` does.
Prints a table with, per corruption (all five severities, in the chunks that generation uses), the wall
seconds; then the total wall seconds, the CPU seconds of this process and its workers together, and the
machine's load average before and after: on a shared machine the wall time grows with the other
processes' load, the CPU time much less, so both are reported. The baseline, measured in the same run, is
one process (``workers=1``) on the first ``--baseline`` images; the speed-up is per image against it. One
timed pass: generation is deterministic and each corruption runs for seconds; the one-off warm-up
(reading and resizing the frost photographs) is reported separately.

    python benchmarks/corruption_speed.py ../shared/data/cifar10/cifar10-jpeg.tar.gz
    python benchmarks/corruption_speed.py DATA --images 2000 --corruptions fog,snow --workers 1
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import cv2
import numpy as np

from flatnas_bench.core.cores import usable_cores
from flatnas_bench.corruptions.generate import iter_corruptions
from flatnas_bench.corruptions.robustness import ALL_CORRUPTIONS, SEVERITIES
from flatnas_bench.corruptions.textures import frost_source, frost_textures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="clean dataset (any layout flatnas_bench.engine.data.load_images reads)")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--images", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument("--corruptions", default=",".join(ALL_CORRUPTIONS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers", type=int, default=usable_cores(), help="processes (default: usable cores)"
    )
    parser.add_argument(
        "--baseline", type=int, default=1000, help="images of the one-process baseline (0: none)"
    )
    args = parser.parse_args()
    # imported here, not at the top: the worker processes import this script, and the data module pulls
    # in torch (seconds of start-up that generation does not need)
    from flatnas_bench.engine.data import load_images

    test = load_images(args.data, args.dataset).test
    x = test.x[: args.images]
    names = args.corruptions.split(",")
    cores = usable_cores()
    print(f"{len(x)} images x {len(names)} corruptions x {len(SEVERITIES)} severities")
    print(f"cores usable: {cores} (of {os.cpu_count()}); OpenCV threads: {cv2.getNumThreads()}")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    start = time.perf_counter()
    frost_textures()
    print(f"warm-up (frost textures, {frost_source()}): {time.perf_counter() - start:.2f} s")

    print()
    print("| corruption | wall s | mean abs change per severity 1..5 (levels, first 1,000 images) |")
    print("|---|---:|---|")
    wall: dict[str, float] = {}
    first, cpu_before = time.perf_counter(), _cpu_seconds()
    tick = first
    for name, out in iter_corruptions(x, names, SEVERITIES, seed=args.seed, workers=args.workers):
        wall[name] = time.perf_counter() - tick
        sample = slice(0, 1000)  # the change figure on 1,000 images keeps the untimed part cheap
        change = np.abs(out[:, sample].astype(np.float32) - x[None, sample]).mean(axis=(1, 2, 3, 4))
        shown = " ".join(f"{c:.1f}" for c in change)
        print(f"| {name} | {wall[name]:.2f} | {shown} |")
        tick = time.perf_counter()
    total_wall = time.perf_counter() - first  # includes starting the workers
    total_cpu = _cpu_seconds() - cpu_before  # the workers' CPU counts once they have exited
    print(f"| **total** | **{total_wall:.1f}** | |")
    print()
    print(
        f"total: {total_wall:.1f} s wall, {total_cpu:.1f} s CPU "
        f"({args.workers} worker(s)) for {len(x)} images"
    )
    if args.baseline:
        base = x[: args.baseline]
        start = time.perf_counter()
        for _ in iter_corruptions(base, names, SEVERITIES, seed=args.seed, workers=1):
            pass
        base_wall = time.perf_counter() - start
        per_image = (base_wall / len(base)) / (total_wall / len(x))
        print(
            f"baseline, one process on {len(base)} images: {base_wall:.1f} s wall; "
            f"speed-up {per_image:.2f}x per image"
        )
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (user + system)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
