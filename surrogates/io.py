"""Reading and writing a surrogate directory: JSON metadata, file checksums, content hashes.

Nothing here pickles: models are XGBoost JSON, metadata is plain JSON. Every unreadable, missing,
altered or incompatible file becomes a one-line :class:`~flatnas_bench.core.errors.ModelFileError`.

>>> sha256_bytes(b"flatnas")[:8]
'68ef6326'
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from flatnas_bench.core.errors import ModelFileError

METADATA_FILE = "metadata.json"
FORMAT = "flatnas-bench-surrogate"
FORMAT_VERSION = 1


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes; :class:`ModelFileError` when it cannot be read."""
    try:
        return sha256_bytes(Path(path).read_bytes())
    except OSError as exc:
        raise ModelFileError(f"cannot read surrogate file {path}: {exc.strerror or exc}") from None


def frame_hash(archs: list[str], columns: dict[str, np.ndarray]) -> str:
    """Content hash of a training table: arch strings plus each target column as float64 bytes."""
    h = hashlib.sha256("\n".join(archs).encode())
    for name in sorted(columns):
        h.update(name.encode())
        h.update(np.ascontiguousarray(columns[name], dtype=np.float64).tobytes())
    return h.hexdigest()


def _strict(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None, so the file is standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented standard JSON (NaN as null) atomically: temporary file, then rename."""
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(_strict(data), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)


def read_metadata(directory: Path) -> dict[str, Any]:
    """The metadata of a surrogate directory, checked for format; :class:`ModelFileError` otherwise."""
    directory = Path(directory)
    path = directory / METADATA_FILE
    if not directory.is_dir():
        raise ModelFileError(f"surrogate directory not found: {directory}")
    if not path.is_file():
        raise ModelFileError(f"not a surrogate directory (no {METADATA_FILE}): {directory}")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"corrupt surrogate metadata {path}: {reason}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not flatnas-bench surrogate metadata")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has format version {meta.get('format_version')}, this code reads {FORMAT_VERSION}"
        )
    required = ("model", "targets", "feature_version", "feature_names", "models", "hyperparameters")
    missing = [k for k in required if k not in meta]
    if missing:
        raise ModelFileError(f"corrupt surrogate metadata {path}: missing {', '.join(missing)}")
    return meta


def verify_files(directory: Path, files: dict[str, str]) -> None:
    """Check that every ``{name: sha256}`` file exists in ``directory`` with that checksum."""
    for name, digest in files.items():
        path = Path(directory) / name
        if not path.is_file():
            raise ModelFileError(f"surrogate model file missing: {path}")
        if sha256_file(path) != digest:
            raise ModelFileError(f"surrogate model file {path} was altered or is corrupt (checksum differs)")
