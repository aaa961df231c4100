"""Zero-cost proxies at initialisation: ``synflow``, ``jacob_cov`` and ``snip`` for a TinyNetwork.

Each proxy scores an untrained network (seeded initialisation) from one small batch, so it needs no data
download: the batch is seeded standard-normal images with seeded random labels, which makes every score a
deterministic function of (arch, :class:`ZeroCostConfig`). Cost: one forward+backward pass per proxy,
about 0.65 s per arch at the default C=16, N=5, batch 16 on one core of a busy 2-core CPU host, so
the 6,466 classes take over an hour; scores are cached per canonical arch in a JSON file, so each class is
paid for once.

* synflow (Tanaka et al. 2020): sum |theta * dR/dtheta| with all weights made positive and an all-ones
  input, R = sum of the outputs; stored as log10(1 + score).
* jacob_cov (Mellor et al. 2021): -sum(log(l + k) + 1/(l + k)) over eigenvalues l of the correlation
  matrix of the per-image input Jacobians, k = 1e-5.
* snip (Lee et al. 2019): sum |w * dL/dw| over conv and linear weights, L = cross-entropy on the batch.

>>> from flatnas_bench.nb201.space import EXAMPLE
>>> scores = zero_cost_scores(Arch.from_str(EXAMPLE), ZeroCostConfig(C=4, N=1, batch_size=8))
>>> sorted(scores)
['jacob_cov', 'snip', 'synflow']
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from flatnas_bench.core.errors import ModelFileError
from flatnas_bench.nb201.space import Arch

ZERO_COST_VERSION = "1"  # bump when a proxy's definition changes (invalidates caches and models)
PROXIES: tuple[str, ...] = ("synflow", "jacob_cov", "snip")


@dataclass(frozen=True)
class ZeroCostConfig:
    """Everything a proxy score depends on besides the arch; its hash names the cache file."""

    C: int = 16  # channels of the first stage
    N: int = 5  # cells per stage
    num_classes: int = 10
    resolution: int = 32  # input height = width, pixels
    batch_size: int = 16  # images in the scoring batch
    seed: int = 0  # seeds the initialisation, the images and the labels

    @property
    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": ZERO_COST_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = net(x)
    return out[-1] if isinstance(out, tuple) else out


def _network(arch: Arch, config: ZeroCostConfig, dtype: torch.dtype = torch.float32) -> nn.Module:
    from flatnas_bench.nb201.network import TinyNetwork

    torch.manual_seed(config.seed)
    return TinyNetwork(arch, C=config.C, N=config.N, num_classes=config.num_classes).to(dtype)


def zero_cost_scores(arch: Arch, config: ZeroCostConfig | None = None) -> dict[str, float]:
    """The three proxy scores of ``arch`` (computed, not cached) on the CPU: snip and jacob_cov in float32,
    synflow in float64 (its products of absolute weights overflow float32 in deep cells)."""
    config = config or ZeroCostConfig()
    gen = torch.Generator().manual_seed(config.seed)
    shape = (config.batch_size, 3, config.resolution, config.resolution)
    images = torch.randn(shape, generator=gen)
    labels = torch.randint(0, config.num_classes, (config.batch_size,), generator=gen)

    net = _network(arch, config).train()
    loss = nn.functional.cross_entropy(_logits(net, images), labels)
    loss.backward()
    snip = sum(
        float((m.weight * m.weight.grad).abs().sum().detach())
        for m in net.modules()
        if isinstance(m, nn.Conv2d | nn.Linear) and m.weight.grad is not None
    )

    net = _network(arch, config).train()
    x = images.clone().requires_grad_(True)
    _logits(net, x).sum().backward()
    jac = x.grad.reshape(config.batch_size, -1).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.corrcoef(jac), nan=0.0)
    eig = np.linalg.eigvalsh(corr)
    jacob_cov = float(-np.sum(np.log(np.abs(eig) + 1e-5) + 1.0 / (np.abs(eig) + 1e-5)))

    net = _network(arch, config, torch.float64).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ones = torch.ones((1, *shape[1:]), dtype=torch.float64)
    _logits(net, ones).sum().backward()
    synflow = sum(float((p * p.grad).abs().sum().detach()) for p in net.parameters() if p.grad is not None)
    return {"synflow": float(np.log10(1.0 + synflow)), "jacob_cov": jacob_cov, "snip": snip}


def default_cache_path(config: ZeroCostConfig) -> Path:
    """``zero_cost-<config key>.json`` in the project's cache directory (``$FLATNAS_CACHE``, default
    ``~/.cache/flatnas-bench``), beside the decoded datasets."""
    from flatnas_bench.engine.data import cache_dir

    return cache_dir() / f"zero_cost-{config.key}.json"


def _read_cache(path: Path, config: ZeroCostConfig) -> dict[str, list[float]]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if data["config_key"] != config.key:
            raise ModelFileError(
                f"zero-cost cache {path} was made with another config ({data['config_key']})"
            )
        return {str(k): [float(v) for v in vals] for k, vals in data["scores"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"corrupt zero-cost cache {path}: {exc}; delete it to recompute") from None


def zero_cost_matrix(
    archs: Sequence[Arch], *, config: ZeroCostConfig | None = None, cache_path: str | Path | None = None
) -> np.ndarray:
    """Proxy scores ``(len(archs), len(PROXIES))`` float32 for canonical archs, via the JSON cache.

    Scores missing from the cache are computed (see the module docstring for the cost) and the cache is
    rewritten atomically once at the end.
    """
    config = config or ZeroCostConfig()
    path = Path(cache_path) if cache_path else default_cache_path(config)
    cache = _read_cache(path, config)
    missing = sorted({str(a) for a in archs} - set(cache))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # these tiny kernels run ~5x slower with 2 threads on a busy host (measured)
    try:
        for text in missing:
            scores = zero_cost_scores(Arch.from_str(text), config)
            cache[text] = [scores[p] for p in PROXIES]
    finally:
        torch.set_num_threads(threads)
    if missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        payload = {"config": asdict(config), "config_key": config.key, "proxies": PROXIES, "scores": cache}
        tmp.write_text(json.dumps(payload, sort_keys=True))
        tmp.replace(path)
    return np.array([cache[str(a)] for a in archs], dtype=np.float32).reshape(len(archs), len(PROXIES))
