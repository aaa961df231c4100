"""How long generating every corruption takes: 19 corruptions x 5 severities of a clean test set.

Prints a table with, per corruption (all five severities, in the chunks that generation uses), the wall
seconds and the CPU seconds of this process (all its threads), their totals, and the machine's load
average before and after: on a shared machine the wall time grows with the other processes' load, the CPU
time much less, so both are reported. One timed pass: generation is deterministic and each corruption runs
for seconds; the one-off warm-up (reading and resizing the frost photographs) is reported separately.

    python benchmarks/corruption_speed.py ../shared/data/cifar10/cifar10-jpeg.tar.gz
    python benchmarks/corruption_speed.py DATA --images 2000 --corruptions fog,snow
"""

from __future__ import annotations

import argparse
import os
import time

import cv2
import numpy as np

from flatnas_bench.corruption_textures import frost_source, frost_textures
from flatnas_bench.corruptions import ALL_CORRUPTIONS, SEVERITIES, iter_corruptions
from flatnas_bench.data import load_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="clean dataset (any layout flatnas_bench.data.load_images reads)")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--images", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument("--corruptions", default=",".join(ALL_CORRUPTIONS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    test = load_images(args.data, args.dataset).test
    x = test.x[: args.images]
    names = args.corruptions.split(",")
    cores = len(os.sched_getaffinity(0))
    print(f"{len(x)} images x {len(names)} corruptions x {len(SEVERITIES)} severities")
    print(f"cores usable: {cores} (of {os.cpu_count()}); OpenCV threads: {cv2.getNumThreads()}")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    start = time.perf_counter()
    frost_textures()
    print(f"warm-up (frost textures, {frost_source()}): {time.perf_counter() - start:.2f} s")

    print()
    print("| corruption | wall s | CPU s | mean abs change per severity 1..5 (levels, first 1,000 images) |")
    print("|---|---:|---:|---|")
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    tick, tock = time.perf_counter(), time.process_time()
    for name, out in iter_corruptions(x, names, SEVERITIES, seed=args.seed):
        wall[name], cpu[name] = time.perf_counter() - tick, time.process_time() - tock
        sample = slice(0, 1000)  # the change figure on 1,000 images keeps the untimed part cheap
        change = np.abs(out[:, sample].astype(np.float32) - x[None, sample]).mean(axis=(1, 2, 3, 4))
        shown = " ".join(f"{c:.1f}" for c in change)
        print(f"| {name} | {wall[name]:.2f} | {cpu[name]:.2f} | {shown} |")
        tick, tock = time.perf_counter(), time.process_time()
    total_wall, total_cpu = sum(wall.values()), sum(cpu.values())
    print(f"| **total** | **{total_wall:.1f}** | **{total_cpu:.1f}** | |")
    print()
    print(f"total: {total_wall:.1f} s wall, {total_cpu:.1f} s CPU for {len(x)} images")
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
