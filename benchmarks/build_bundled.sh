#!/usr/bin/env bash
# Measures the bundled benchmark 0.3 (flatnas_bench/bundled/PROVENANCE.md), resumably: the 503 archs of
# flatnas_bench/bundled/archs.txt, each with training seeds 0 and 1 (1,006 rows, arch by arch), under the
# proxy protocol of 0.3: 0.2's training and flatness, the corruption test made by the CIFAR-10-C operations
# at the network's 16 px and averaged over severities 3-5 (hash 7ad30ccad8e7; calibration round 2,
# docs/robustness.md). Once every row is in, it exports the table to flatnas_bench/bundled/proxy_cifar10.csv,
# refits the bundled surrogate and reruns benchmarks/bundled_validation.py (its output, JSON figures and
# claim tables to benchmarks/results/bundled_validation.txt, .json, bundled_claim.md). Stop it at any point
# and run it again: finished (arch, seed) rows are skipped. To stop it, signal its process group: Ctrl-C in its
# terminal, else SIGTERM to the group (below); the bench finishes and stores the candidates in flight, then
# exits 130, and no later step starts. The table in benchmarks/bundled_build/ is committed as it grows.
# Rows reproduce exactly on the same CPU model with one thread per worker (every row records both).
#
#   benchmarks/build_bundled.sh [path/to/cifar10]   # default ../shared/data/cifar10/cifar10-jpeg.tar.gz
#   setsid nohup benchmarks/build_bundled.sh > runs/bundled.log 2>&1 &   # in the background (own group)
#   kill -TERM -- -"$(pgrep -f '^bash benchmarks/build_bundled.sh')"      # stops it cleanly
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/cifar10/cifar10-jpeg.tar.gz}
table=${TABLE:-benchmarks/bundled_build/proxy_cifar10-0.3.sqlite}
bundle=flatnas_bench/bundled
flatnas-bench bench --data "$data" --protocol proxy --table "$table" --executor local --workers 2 \
  --threads 1 --device cpu --arch-file "$bundle/archs.txt" --seeds 0,1 --no-progress
[ -n "${BENCH_ONLY:-}" ] && exit 0
flatnas-bench table export "$table" "$bundle/proxy_cifar10.csv"
flatnas-bench fit-surrogate --table "$bundle/proxy_cifar10.csv" \
  --targets val_acc,test_acc,flatness_r,loss_sharpness,corr_acc_mean,corr_acc_rel,corr_acc_resid,corr_rel_blur \
  --out "$bundle/surrogate" --bootstrap --folds 5 --models 5 --seed 0
python benchmarks/bundled_validation.py --json benchmarks/results/bundled_validation.json \
  --markdown benchmarks/results/bundled_claim.md | tee benchmarks/results/bundled_validation.txt
