"""How long generating every corruption takes: 19 corruptions x 5 severities of a clean test set.

Prints seconds per corruption (all five severities, in the chunks that generation uses),
the total, the machine's load average before and after (other processes share the CPU) and the torch /
BLAS thread count. One timed pass: generation is deterministic and each corruption runs for seconds, so
warm-up matters only for the first (frost textures, caches) and is reported separately.

    python benchmarks/corruption_speed.py ../shared/data/cifar10/cifar10-jpeg.tar.gz
    python benchmarks/corruption_speed.py DATA --images 2000 --corruptions fog,snow
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from flatnas_bench.corruption_textures import frost_textures
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
    print(f"{len(x)} images x {len(names)} corruptions x {len(SEVERITIES)} severities; cpus={os.cpu_count()}")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    start = time.perf_counter()
    frost_textures()
    print(f"warm-up (frost textures): {time.perf_counter() - start:.2f} s")

    times: dict[str, float] = {}
    tick = time.perf_counter()
    for name, out in iter_corruptions(x, names, SEVERITIES, seed=args.seed):
        now = time.perf_counter()
        times[name] = now - tick
        sample = slice(0, 1000)  # the change figure on 1,000 images keeps the untimed part cheap
        change = np.abs(out[:, sample].astype(np.float32) - x[None, sample]).mean(axis=(1, 2, 3, 4))
        shown = " ".join(f"{c:.1f}" for c in change)
        print(f"{name:18s} {times[name]:7.2f} s   mean |change| per severity: {shown}")
        tick = time.perf_counter()
    total = sum(times.values())
    print(f"total: {total:.1f} s ({total / 60:.2f} min) for {len(x)} images")
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
