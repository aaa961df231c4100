"""The training data on the device: :class:`DeviceData` holds the splits as uint8 NCHW tensors on the
training device and draws augmented, normalised ``channels_last`` batches with whole-batch tensor ops
(NB201's pad-4 random crop and horizontal flip), so the training loop does no per-image Python work.

The splits come from :mod:`flatnas_bench.engine.data` (readers, cache, splits).

>>> data = DeviceData.for_protocol("../shared/data/cifar10/cifar10-jpeg.tar.gz", protocol)  # doctest: +SKIP
>>> x, y = next(data.train_batches(128, torch.Generator().manual_seed(0)))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from flatnas_bench.core.errors import DataError
from flatnas_bench.engine.data import STATS, Images, Splits, protocol_splits


class DeviceData:
    """The splits as uint8 NCHW tensors resident on ``device``, with batch drawing and augmentation.

    Images are resized once to ``resolution`` (area averaging) when smaller than native. Batches come out
    float32, normalised with the dataset's mean/std, in ``channels_last`` memory format. All randomness is
    drawn from a CPU ``torch.Generator`` so the same seed gives the same batches on every device.

    >>> data = DeviceData(splits, device="cuda", resolution=32)  # doctest: +SKIP
    >>> for x, y in data.train_batches(256, torch.Generator().manual_seed(0)): ...  # doctest: +SKIP
    """

    def __init__(
        self,
        splits: Splits,
        device: str | torch.device = "cpu",
        resolution: int | None = None,
        crop_pad: int = 4,
    ) -> None:
        self.device = torch.device(device)
        self.pad = crop_pad  # random-crop padding, pixels (NB201: 4); 0 = flip only
        self.dataset = splits.dataset
        self.num_classes = splits.num_classes
        self.resolution = resolution or splits.train.x.shape[1]
        mean, std = STATS[splits.dataset]
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255
        self.key: tuple | None = None  # set by for_protocol: the protocol fields this data was built for
        self._corruptions: tuple | None = None  # (corruption set, subset, tensors) of the last request
        self.train_x, self.train_y = self._to_device(splits.train)
        self.val_x, self.val_y = self._to_device(splits.val)
        self.test_x, self.test_y = self._to_device(splits.test)

    def _to_device(self, images: Images) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images(images.x), torch.as_tensor(images.y, dtype=torch.long, device=self.device)

    def images(self, x: np.ndarray) -> torch.Tensor:
        """uint8 (n, H, W, 3) array -> uint8 (n, 3, r, r) tensor on the device at this data's resolution."""
        x = x if x.flags.writeable else np.array(x)  # a read-only cache slice: copy, never share
        t = torch.as_tensor(x).to(self.device).permute(0, 3, 1, 2).contiguous()
        if t.shape[-1] != self.resolution:
            t = F.interpolate(t.float(), size=(self.resolution, self.resolution), mode="area")
            t = t.round_().clamp_(0, 255).to(torch.uint8)
        return t

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> float32 NCHW, mean/std normalised, channels_last."""
        x = (x.float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last)

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Pad-``self.pad`` random crop + random horizontal flip for a whole uint8 batch in one gather."""
        return self._crop_flip(x, self._upload(self._draw_crop_flip(len(x), generator)))

    def _draw_crop_flip(self, b: int, generator: torch.Generator) -> torch.Tensor:
        """(3, b) int64 on the CPU: each image's row offset, column offset and flip (0/1), drawn in that
        order from ``generator`` (the order fixes the numbers, on every device)."""
        span = 2 * self.pad + 1
        dy = torch.randint(0, span, (b, 1), generator=generator)
        dx = torch.randint(0, span, (b, 1), generator=generator)
        flip = torch.rand(b, 1, generator=generator) < 0.5
        return torch.cat([dy, dx, flip.long()], dim=1).T

    def _upload(self, t: torch.Tensor) -> torch.Tensor:
        """A CPU tensor on the device: pinned and copied without blocking the host on CUDA."""
        if self.device.type != "cuda":
            return t.to(self.device)
        return t.pin_memory().to(self.device, non_blocking=True)

    def _crop_flip(self, x: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """Crop and flip the uint8 batch ``x`` as the on-device ``draws`` of :meth:`_draw_crop_flip` say."""
        b, _, h, w = x.shape
        p = self.pad
        padded = F.pad(x, (p, p, p, p))
        dy, dx, flip = draws[0].view(b, 1), draws[1].view(b, 1), draws[2].view(b, 1).bool()
        ar_h = torch.arange(h, device=self.device)
        ar_w = torch.arange(w, device=self.device)
        rows = dy + ar_h
        cols = dx + torch.where(flip, w - 1 - ar_w, ar_w)
        idx_b = torch.arange(b, device=self.device).view(b, 1, 1, 1)
        idx_c = torch.arange(x.shape[1], device=self.device).view(1, -1, 1, 1)
        return padded[idx_b, idx_c, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]

    def train_batches(
        self, batch_size: int, generator: torch.Generator, augment: bool = True, drop_last: bool = True
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of shuffled, augmented, normalised training batches (x float32 NHWC-strided, y long).

        The epoch's order and every batch's crop/flip draws are drawn on the CPU up front (in the order a
        batch-by-batch draw would take them) and reach the device in one non-blocking copy per epoch, so
        the host never waits for the GPU between steps.
        """
        n = len(self.train_y)
        perm = torch.randperm(n, generator=generator)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        starts = range(0, stop, batch_size)
        sizes = [min(batch_size, stop - start) for start in starts]
        draws = [self._draw_crop_flip(size, generator) for size in sizes] if augment else []
        on_device = self._upload(torch.cat([perm, *(d.reshape(-1) for d in draws)]))
        perm, flat_draws = on_device[:n], on_device[n:]
        offset = 0
        for start, size in zip(starts, sizes, strict=True):
            idx = perm[start : start + size]
            x = self.train_x[idx]
            if augment:
                x = self._crop_flip(x, flat_draws[offset : offset + 3 * size].view(3, size))
                offset += 3 * size
            yield self.normalize(x), self.train_y[idx]

    def steps_per_epoch(self, batch_size: int, drop_last: bool = True) -> int:
        n = len(self.train_y)
        return n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images, labels) of ``"train"``, ``"val"`` or ``"test"``."""
        if name not in ("train", "val", "test"):
            raise DataError(f"unknown split {name!r}; known: train, val, test")
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")

    def corruption_tensors(
        self, corruption_set, subset: int
    ) -> tuple[list[tuple[str, int]], torch.Tensor, torch.Tensor]:
        """(groups, uint8 images, labels) for the first ``subset`` images of every (corruption, severity)
        of a :class:`flatnas_bench.corruptions.robustness.CorruptionSet`, group after group, resident on the
        device.
        Cached for the last set asked for, so a worker evaluating many candidates pays once."""
        cached = self._corruptions
        if cached is not None and cached[0] is corruption_set and cached[1] == subset:
            return cached[2]
        groups, chunks = [], []
        for name in sorted(corruption_set.images):
            stack = corruption_set.images[name]
            for i, severity in enumerate(corruption_set.severities):
                groups.append((name, int(severity)))
                chunks.append(self.images(stack[i, :subset]))
        labels = np.asarray(corruption_set.labels[:subset], np.int64)
        y = torch.as_tensor(np.tile(labels, len(groups)), device=self.device)
        tensors = (groups, torch.cat(chunks), y)
        self._corruptions = (corruption_set, subset, tensors)
        return tensors

    @staticmethod
    def protocol_key(protocol) -> tuple:
        """The protocol fields that decide which images a DeviceData holds."""
        p = protocol
        return (p.dataset, p.split, p.val_size, p.train_subset, p.test_size, p.seed, p.resolution, p.crop_pad)

    @classmethod
    def for_protocol(
        cls, path: str | os.PathLike, protocol, device: str | torch.device = "cpu"
    ) -> DeviceData:
        """Load, split and place the data a :class:`~flatnas_bench.core.protocol.Protocol` asks for."""
        return cls.from_splits(protocol_splits(path, protocol), protocol, device)

    @classmethod
    def from_splits(cls, splits: Splits, protocol, device: str | torch.device = "cpu") -> DeviceData:
        """Place already-made splits (e.g. shipped to a Ray actor) with the protocol's resolution and crop."""
        data = cls(splits, device=device, resolution=protocol.resolution, crop_pad=protocol.crop_pad)
        data.key = cls.protocol_key(protocol)
        return data
