"""Do the CIFAR-10-C severities need rescaling when the operations run at 16 px? (issue 19, item 2)

Over class-balanced CIFAR-10 test images (the proxy's corruption images: ``balanced_subset(test.y, n)``),
per benchmark corruption and severity, the damage under four corruption tests:

* ``A 32``: CIFAR-10-C itself (the operations at 32 px), against the clean 32-px image: what a network
  trained at 32 px sees;
* ``B 32->16``: A area-downsampled to 16 px (the proxy's test until now), against the clean 16-px image;
* ``C 16``: the operations at 16 px as ``corruption_resolution="input"`` runs them (the original's code
  with the image side as IMSIZE: pixel lengths as at 32, image-fraction lengths follow the side);
* ``D 16 alt``: the other choice of units for the corruptions with a length parameter: pixel lengths
  scaled by 16/32 (blurs, snow's streaks, spatter), and image-fraction lengths kept in 32-px pixels
  (elastic x 2, zoom factors 1 + 2 (z - 1)).

Damage is the mean absolute change in grey levels (0-255), and, with ``--weights``, the accuracy drop
(clean test accuracy minus corrupted accuracy, points, mean over the networks) of proxy networks kept by
``bench --save-weights`` (16-px networks on B, C and D). The 16-px set's generation time is measured on
the way (one process).

    python benchmarks/corruption_resolution.py --images 1000 --threads 1 \\
        --weights ../calib2/runs/calibration2_weights --networks 12 \\
        > benchmarks/results/corruption_resolution.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from flatnas_bench.bench.driver import balanced_subset, corruption_set_for
from flatnas_bench.core.protocol import get_protocol
from flatnas_bench.corruptions.generate import generate_corruption_set
from flatnas_bench.corruptions.imaging import area_downsample
from flatnas_bench.corruptions.operations import CORRUPTIONS, _ImageRngs
from flatnas_bench.corruptions.robustness import BENCHMARK_CORRUPTIONS, SEVERITIES, CorruptionSet
from flatnas_bench.engine.data import load_images

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared/data/cifar10/cifar10-jpeg.tar.gz"


def _half(values: tuple, *index: int) -> tuple:
    return tuple(v * 0.5 if i in index else v for i, v in enumerate(values))


# The alternative units (D): each corruption's parameters at one severity -> the other choice.
ALTERNATIVE = {
    "defocus_blur": lambda p: _half(p, 0, 1),  # disk radius, alias sigma (px)
    "glass_blur": lambda p: _half(p, 0),  # sigma (px); the 1-2 px shuffle cannot halve
    "motion_blur": lambda p: _half(p, 0, 1),  # radius, sigma (px)
    "snow": lambda p: _half(p, 4, 5),  # streak radius, sigma (px)
    "zoom_blur": lambda p: 1 + 2 * (np.asarray(p) - 1),  # same pixel shift at the border as at 32 px
    "elastic_transform": lambda p: tuple(2 * v for v in p),  # the 32-px lengths, in pixels
}


def alternative_set(x: np.ndarray, y: np.ndarray, seed: int = 0) -> CorruptionSet:
    """D: the corruptions of :data:`ALTERNATIVE` at x's side with the other units (same random draws)."""
    images = {}
    for name, change in ALTERNATIVE.items():
        spec = CORRUPTIONS.get(name)
        blocks = []
        for severity in SEVERITIES:
            params = change(spec.params[severity - 1])
            out = []
            for a in range(0, len(x), spec.batch):
                rngs = _ImageRngs(seed, name, severity, np.arange(a, min(a + spec.batch, len(x))))
                part = spec.apply(x[a : a + spec.batch], params, rngs)
                out.append(part if part.dtype == np.uint8 else np.clip(part, 0, 255).astype(np.uint8))
            blocks.append(np.concatenate(out))
        images[name] = np.stack(blocks)
    return CorruptionSet(images, y, SEVERITIES)


def damage(cset: CorruptionSet, clean: np.ndarray) -> dict[tuple[str, int], float]:
    """Mean absolute change (grey levels) per (corruption, severity)."""
    return {
        (name, s): float(np.abs(block.astype(np.float64) - clean).mean()) for name, s, block in cset.items()
    }


def downsampled(cset: CorruptionSet, side: int) -> CorruptionSet:
    return CorruptionSet(
        {k: np.stack([area_downsample(b, side) for b in v]) for k, v in cset.images.items()},
        cset.labels,
        cset.severities,
    )


def accuracy_drops(
    weights: Path, networks: int, sets: dict[str, CorruptionSet], clean16: np.ndarray, data_path: Path
) -> dict:
    """Per test and (corruption, severity), the (clean - corrupted) accuracy of each of up to ``networks``
    saved proxy networks, on the corruption sets' own images (clean: ``clean16``)."""
    from flatnas_bench.engine.device_data import DeviceData
    from flatnas_bench.engine.train import predict
    from flatnas_bench.engine.weights import load_weights
    from flatnas_bench.nb201.space import Arch

    protocol = get_protocol("proxy")
    files = sorted((weights / protocol.hash).glob("*_seed*.pt"))[:networks]
    data = DeviceData.for_protocol(data_path, protocol, "cpu")
    y = torch.as_tensor(next(iter(sets.values())).labels)  # every set holds the same images' labels
    drops: dict[str, dict[tuple[str, int], list[float]]] = {k: {} for k in sets}
    clean_accs = []
    for path in files:
        arch = Arch.from_ordinal(int(path.name.split("_")[0]))
        model = load_weights(path, arch, protocol, data.num_classes)
        correct, _ = predict(model, data.images(clean16), y, transform=data.normalize)
        clean = correct.float().mean().item() * 100
        clean_accs.append(clean)
        for test, cset in sets.items():
            groups, x, yy = data.corruption_tensors(cset, len(cset))
            correct, _ = predict(model, x, yy, transform=data.normalize)
            accs = (correct.view(len(groups), -1).float().mean(1) * 100).tolist()
            for group, acc in zip(groups, accs, strict=True):
                drops[test].setdefault(group, []).append(clean - acc)
    return {"networks": len(files), "clean": float(np.mean(clean_accs)), "drops": drops}


def table(rows: dict[str, dict[tuple[str, int], float]], title: str) -> str:
    """Markdown: one row per corruption, per test the five severities and their mean."""
    tests = list(rows)
    head = ["corruption", *(f"{t} (s1..s5; mean)" for t in tests)]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in BENCHMARK_CORRUPTIONS:
        cells = [name]
        for t in tests:
            if (name, 1) not in rows[t]:
                cells.append("")
                continue
            values = [rows[t][(name, s)] for s in SEVERITIES]
            cells.append(" ".join(f"{v:.1f}" for v in values) + f"; **{np.mean(values):.1f}**")
        lines.append("| " + " | ".join(cells) + " |")
    overall = ["mean of the 15"]
    for t in tests:
        vals = [rows[t][(n, s)] for n in BENCHMARK_CORRUPTIONS for s in SEVERITIES if (n, s) in rows[t]]
        overall.append(f"**{np.mean(vals):.1f}**" if len(vals) == 75 else "")
    lines.append("| " + " | ".join(overall) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--networks", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    test = load_images(args.data, "cifar10").test
    pick = balanced_subset(test.y, args.images)
    x32, y = test.x[pick], test.y[pick].astype(np.int64)
    x16 = area_downsample(x32, 16)
    # CIFAR-10-C of these images: the proxy's cached set when it is there (same images, seed 0)
    a = corruption_set_for(get_protocol("proxy", corruption_subset=args.images), args.data)
    start, cpu = time.perf_counter(), time.process_time()
    c = generate_corruption_set(x16, y)
    c_wall, c_cpu = time.perf_counter() - start, time.process_time() - cpu
    b, d = downsampled(a, 16), alternative_set(x16, y)
    sets16 = {"B 32->16": b, "C 16": c, "D 16 alt": d}
    out = [
        f"# Corruption damage at 16 px ({args.images} class-balanced CIFAR-10 test images, seed 0, "
        f"{args.threads} thread(s))",
        "",
        f"Generating the 16-px set (15 corruptions x 5 severities x {args.images} images) in one process: "
        f"{c_wall:.0f} s wall, {c_cpu:.0f} s CPU.",
        "",
        table(
            {"A 32": damage(a, x32), **{k: damage(v, x16) for k, v in sets16.items()}},
            "Mean absolute change (grey levels), per severity 1..5 and their mean",
        ),
    ]
    if args.weights is not None:
        acc = accuracy_drops(args.weights, args.networks, sets16, x16, args.data)
        means = {t: {g: float(np.mean(v)) for g, v in rows.items()} for t, rows in acc["drops"].items()}
        out += [
            "",
            table(
                means,
                f"Accuracy drop (points) of {acc['networks']} proxy networks (clean accuracy "
                f"{acc['clean']:.1f} % on these images)",
            ),
        ]
    print("\n".join(out))


if __name__ == "__main__":
    main()
