"""Stored weights of trained candidates, so a table's networks can be measured again without retraining.

``bench --save-weights DIR`` writes each row's trained network (its ``state_dict`` right after training,
before any measurement) to ``DIR/{protocol_hash}/{ordinal:05d}_seed{seed}.pt``; :func:`load_weights`
rebuilds the network and reads the file back with ``torch.load(weights_only=True)`` (no pickle).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from flatnas_bench.core.errors import ModelFileError
from flatnas_bench.core.protocol import Protocol
from flatnas_bench.nb201.space import ArchLike, as_arch


def weights_path(root: str | os.PathLike[str], arch: ArchLike, protocol: Protocol, seed: int) -> Path:
    """Where the weights of ``arch`` (its canonical form) trained under ``protocol`` with ``seed`` live."""
    ordinal = as_arch(arch).canonical().ordinal
    return Path(root) / protocol.hash / f"{ordinal:05d}_seed{seed}.pt"


def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s state dict to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, path)
    return path


def load_weights(
    path: str | os.PathLike[str],
    arch: ArchLike,
    protocol: Protocol,
    num_classes: int,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """The network of ``arch`` under ``protocol`` with the weights stored at ``path``, in eval mode.

    A missing, unreadable or mismatched file raises :class:`ModelFileError` with one line naming it.
    """
    from flatnas_bench.engine.train import build_model

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"no weights file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{path} is not a weights file torch can read: {type(exc).__name__}") from None
    model = build_model(as_arch(arch).canonical(), protocol, num_classes, 0, torch.device(device))
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(
            f"{path} does not fit {as_arch(arch)} under {protocol.name!r}: {first}"
        ) from None
    return model.eval()
