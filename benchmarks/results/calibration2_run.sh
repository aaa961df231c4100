#!/usr/bin/env bash
# Calibration round 2 (issue 19), training part: the 64-arch random panel (numpy default_rng(19).choice(503,
# 64, replace=False) over flatnas_bench/bundled/archs.txt, in draw order) x seeds 0 and 1, under today's
# proxy and under a 32-px proxy at about 1.9x its CPU per arch (C 8, N 1, 32 px with crop padding 4, 5,000
# training images, R on 1,000 validation images, 1,000 test images, 500 pixel-exact CIFAR-10-C images per
# corruption and severity). Every trained network is kept (--save-weights) so the evaluation-only settings
# are measured on the same weights. Resumable: run it again after a stop.
set -euo pipefail
data=${1:-../shared/data/cifar10/cifar10-jpeg.tar.gz}
table=benchmarks/results/calibration2.sqlite
weights=${WEIGHTS:-runs/calibration2_weights}
common=(--data "$data" --table "$table" --arch-file benchmarks/results/calibration2_panel.txt --seeds 0,1
        --executor local --workers 2 --threads 1 --device cpu --save-weights "$weights" --no-progress)
flatnas-bench bench "${common[@]}" --protocol proxy
flatnas-bench bench "${common[@]}" --protocol proxy --set resolution=32 --set crop_pad=4 \
  --set train_subset=5000 --set val_size=1000 --set test_size=1000 --set corruption_subset=500
