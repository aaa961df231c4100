#!/usr/bin/env bash
# Measures the bundled benchmark (flatnas_bench/bundled/PROVENANCE.md), resumably: the 150 replicated archs
# with seeds 0 and 1 first, then seed 0 of every one of the 503 archs. Kill it at any point and run it
# again: finished (arch, seed) rows are skipped. The table is committed as it grows; when it is complete,
# `flatnas-bench table export` writes flatnas_bench/bundled/proxy_cifar10.csv from it.
#
#   benchmarks/build_bundled.sh [path/to/cifar10]   # default ../shared/data/cifar10/cifar10-jpeg.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/cifar10/cifar10-jpeg.tar.gz}
common=(--data "$data" --protocol proxy --table benchmarks/bundled_build/proxy_cifar10.sqlite
        --executor local --workers 2 --threads 1 --device cpu)
flatnas-bench bench "${common[@]}" --arch-file flatnas_bench/bundled/replicates.txt --seeds 0,1
flatnas-bench bench "${common[@]}" --arch-file flatnas_bench/bundled/archs.txt --seed 0
