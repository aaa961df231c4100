#!/usr/bin/env bash
# Measures the bundled benchmark (flatnas_bench/bundled/PROVENANCE.md), resumably: the 150 replicated archs
# with seeds 0 and 1 first, then seed 0 of every one of the 503 archs; once every row is in, it exports the
# table to flatnas_bench/bundled/proxy_cifar10.csv, refits the bundled surrogate and reruns
# benchmarks/bundled_validation.py. Stop it at any point and run it again: finished (arch, seed) rows are
# skipped. To stop it, signal its process group: Ctrl-C in its terminal, else SIGTERM to the group (below);
# the bench finishes and stores the candidates in flight, then exits 130, and no later step starts. (A
# signal to the script's pid alone waits for the running step; a job started with & ignores SIGINT, so
# use SIGTERM there.) The table in benchmarks/bundled_build/ is committed as it grows.
#
#   benchmarks/build_bundled.sh [path/to/cifar10]   # default ../shared/data/cifar10/cifar10-jpeg.tar.gz
#   setsid nohup benchmarks/build_bundled.sh > runs/bundled.log 2>&1 &   # in the background (own group)
#   kill -TERM -- -"$(pgrep -f '^bash benchmarks/build_bundled.sh')"      # stops it cleanly
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/cifar10/cifar10-jpeg.tar.gz}
table=benchmarks/bundled_build/proxy_cifar10.sqlite
bundle=flatnas_bench/bundled
common=(--data "$data" --protocol proxy --table "$table" --executor local --workers 2 --threads 1 --device cpu)

flatnas-bench bench "${common[@]}" --arch-file "$bundle/replicates.txt" --seeds 0,1
flatnas-bench bench "${common[@]}" --arch-file "$bundle/archs.txt" --seed 0
flatnas-bench table export "$table" "$bundle/proxy_cifar10.csv"
flatnas-bench fit-surrogate --table "$bundle/proxy_cifar10.csv" \
  --targets val_acc,test_acc,flatness_r,loss_sharpness,corr_acc_mean,corr_acc_rel,corr_acc_resid \
  --out "$bundle/surrogate" --bootstrap --folds 5 --models 5 --seed 0
python benchmarks/bundled_validation.py
