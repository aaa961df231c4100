"""SAM-training throughput (images/s): this engine vs a plain baseline written the common way.

Engine: :func:`flatnas_bench.engine.train.train_model` on
:class:`~flatnas_bench.engine.device_data.DeviceData` (uint8 data on the device, whole-batch augmentation,
channels_last, bf16 autocast on CUDA). Baseline, same process, same network and SAM step: a torchvision
``DataLoader`` over the same uint8 arrays with PIL transforms (RandomCrop, RandomHorizontalFlip, ToTensor,
Normalize), fp32, eager, NCHW. Both run the same number of
steps after a warm-up; the figure is the median of ``--repeats`` runs.

    python benchmarks/train_speed.py --data ../shared/data/cifar10/cifar10-jpeg.tar.gz --steps 20
    python benchmarks/train_speed.py --devices cuda   # the GPU only (a short device slot)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms

from flatnas_bench.core.protocol import Protocol, get_protocol
from flatnas_bench.engine.data import STATS, load_images, make_splits
from flatnas_bench.engine.device_data import DeviceData
from flatnas_bench.engine.sam import SAM, frozen_bn_stats
from flatnas_bench.engine.train import build_model, configure_numerics, train_model
from flatnas_bench.nb201.space import Arch

ARCHS = {  # op indices in NB201 edge order: 1 skip, 2 conv1x1, 3 conv3x3, 4 avg-pool
    "all-conv3x3": str(Arch.from_ops((3, 3, 3, 3, 3, 3))),
    "median": str(Arch.from_ops((3, 1, 2, 4, 1, 2))),  # 51 MMAC at NB201 size (median 47)
    "all-skip": str(Arch.from_ops((1, 1, 1, 1, 1, 1))),
}


class ArrayDataset(torch.utils.data.Dataset):
    """uint8 NHWC arrays -> PIL image -> torchvision transforms, one image at a time."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: transforms.Compose) -> None:
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def baseline_seconds(arch: str, p: Protocol, data: DeviceData, steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` SAM steps with a DataLoader + PIL pipeline (fp32, eager, NCHW)."""
    x = data.train_x.permute(0, 2, 3, 1).cpu().numpy()  # same images, already at the protocol's resolution
    mean, std = STATS[p.dataset]
    tf = transforms.Compose([
        transforms.RandomCrop(p.resolution, padding=p.crop_pad),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])  # fmt: skip
    loader = torch.utils.data.DataLoader(
        ArrayDataset(x, data.train_y.cpu().numpy(), tf), batch_size=p.batch_size, shuffle=True, drop_last=True
    )
    model = build_model(arch, p, data.num_classes, 0, device).to(memory_format=torch.contiguous_format)
    base = torch.optim.SGD(model.parameters(), lr=p.lr, momentum=p.momentum, weight_decay=p.weight_decay)
    sam = SAM(model.parameters(), base, p.rho, p.sam == "asam")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=p.label_smoothing)
    start = time.perf_counter()
    for _, (xb, yb) in zip(range(steps), loader, strict=False):
        xb, yb = xb.to(device), yb.to(device)
        loss_fn(model(xb), yb).backward()
        sam.first_step()
        with frozen_bn_stats(model):
            loss_fn(model(xb), yb).backward()
        sam.second_step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10/cifar10-jpeg.tar.gz")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settings", default="proxy,nb201")
    parser.add_argument(
        "--devices",
        default="cuda,cpu",
        help="in this order; CUDA first so a short device slot gets its figures",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [d.strip() for d in args.devices.split(",") if d.strip()]
    devices = [torch.device(d) for d in names if d != "cuda" or torch.cuda.is_available()]
    ds = load_images(args.data, "cifar10")
    for device in devices:
        configure_numerics(device)  # cuDNN autotuning and TF32 on CUDA, as the executors' workers run
        for name in args.settings.split(","):
            p = get_protocol(name, sam="sam" if name != "proxy" else get_protocol(name).sam)
            if device.type == "cuda":
                p = p.replace(precision="bf16")
            n = args.steps * p.batch_size
            splits = make_splits(ds, val_size=1000, train_subset=n, seed=0)
            data = DeviceData(splits, device=device, resolution=p.resolution, crop_pad=p.crop_pad)
            run = p.replace(epochs=1, split="holdout", val_size=1000, train_subset=n)
            ratios = []
            for label, arch in ARCHS.items():
                train_model(arch, run.replace(train_subset=2 * p.batch_size), data, 0)  # warm-up
                eng = statistics.median(
                    train_model(arch, run, data, r)[1].seconds for r in range(args.repeats)
                )
                base = statistics.median(
                    baseline_seconds(arch, p, data, args.steps, device) for _ in range(args.repeats)
                )
                ratios.append(base / eng)
                print(
                    f"{device.type:4} {name:6} {label:12} engine {n / eng:8.0f} img/s  "
                    f"baseline {n / base:8.0f} img/s  ratio {base / eng:5.2f}x",
                    flush=True,
                )
            print(
                f"{device.type:4} {name:6} geometric mean ratio {np.exp(np.mean(np.log(ratios))):.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
