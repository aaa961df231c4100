"""Training protocols: frozen, hashable configs and a name-based registry.

A :class:`Protocol` fixes everything that changes a candidate's numbers except the job's own seed: data,
split, optimiser, schedule, SAM variant, network width/depth, input resolution, flatness settings,
corruption subset and precision. Its :attr:`Protocol.hash` (sha256 of the canonical JSON of every field
but the name) keys the benchmark table, so two rows with the same hash were measured the same way.

A field added after the 0.2 tables (one not in :data:`HASHED_SINCE_0_1`) enters the hash only when it
differs from its default: give a new field the default that reproduces what was done before it existed,
and every hash measured before it (the bundled tables, calibration runs) stays the same.

>>> p = get_protocol("nb201-12", sam="sam", rho=0.05)
>>> (p.epochs, p.sam, p.rho, len(p.hash))
(12, 'sam', 0.05, 12)
>>> sorted(list_protocols())
['flatnas', 'nb201', 'nb201-12', 'proxy', 'proxy-0.1', 'proxy-0.2']
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.core.registry import Registry

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
SPLITS = ("holdout", "cifar10-valid")
SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("sgd",)
SAM_VARIANTS = ("none", "sam", "asam")
PRECISIONS = ("fp32", "bf16")
CORRUPTION_RESOLUTIONS = ("native", "input")
ALL_SEVERITIES = (1, 2, 3, 4, 5)  # CIFAR-10-C's
# how the kernels compute, which changes the numbers as much as the precision does: bit-exact by seed on
# the CPU (for a given thread count), deterministic CUDA kernels without TF32, or CUDA with TF32 and
# cudnn.benchmark (fast, last bits may differ run to run)
NUMERICS = ("cpu", "cuda-deterministic", "cuda-fast")
# The fields every hash covers, whatever their value: those of the 0.1 and 0.2 tables (never add to this).
HASHED_SINCE_0_1 = frozenset(
    ("dataset", "split", "val_size", "train_subset", "test_size", "resolution", "crop_pad", "seed",
     "epochs", "batch_size", "optimizer", "lr", "lr_schedule", "momentum", "nesterov", "weight_decay",
     "label_smoothing", "sam", "rho", "C", "N", "flatness_sigma", "flatness_draws", "corruption_subset",
     "precision")
)  # fmt: skip


@dataclass(frozen=True)
class Protocol:
    """How one candidate is trained and measured. Every default lives here, with its unit.

    Build presets with :func:`get_protocol` rather than by hand; ``Protocol(...)`` validates its fields and
    raises :class:`~flatnas_bench.core.errors.ConfigError` with one line naming a bad value.
    """

    name: str = "custom"  # label only; not part of the hash
    # data
    dataset: str = "cifar10"  # one of DATASETS
    split: str = "holdout"  # "holdout": val_size images carved from train by `seed`; "cifar10-valid": 25k/25k
    val_size: int = 5000  # images in the validation split (holdout) / cap on it (cifar10-valid; 0 = all)
    train_subset: int = 0  # training images used after the carve (0 = all that remain)
    test_size: int = 0  # test images evaluated (class-balanced by `seed`; 0 = the whole official test split)
    resolution: int = 32  # input side in pixels; images are area-downsampled once when smaller than native
    crop_pad: int = 4  # random-crop padding in pixels (NB201: 4), with random horizontal flip; 0 = flip only
    seed: int = 0  # seed of the validation carve and training subset (the job's seed drives the rest)
    # optimisation
    epochs: int = 200  # passes over the training subset
    batch_size: int = 256  # images per step
    optimizer: str = "sgd"  # one of OPTIMIZERS
    lr: float = 0.1  # peak learning rate
    lr_schedule: str = "cosine"  # "cosine" (to 0 over all steps, per step) or "constant"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # L2 coefficient, applied by the optimiser to every parameter
    label_smoothing: float = 0.0  # cross-entropy smoothing in [0, 1)
    sam: str = "none"  # "none", "sam" (Foret et al.) or "asam" (adaptive, element-wise |w| scaling)
    rho: float = 0.05  # SAM neighbourhood radius (ASAM usually about 10x larger)
    # network
    C: int = 16  # channels of the first stage
    N: int = 5  # cells per stage
    # measurements
    flatness_sigma: float = 0.05  # multiplicative weight-noise scale of R(sigma, M)
    flatness_draws: int = 20  # M, noise draws per R
    corruption_subset: int = 0  # images per (corruption, severity) evaluated; 0 = corruptions off
    # "native": CIFAR-10-C made at the images' 32 px (pixel-exact), area-downsampled to `resolution` like
    # every input; "input": the CIFAR-10-C operations applied to test images already at `resolution`
    # ("CIFAR-10-C operations at 16 px", not CIFAR-10-C; docs/corruptions.md). The same when resolution = 32.
    corruption_resolution: str = "native"
    # the CIFAR-10-C severities evaluated (distinct, 1..5; "3-5", "3,4,5" or [3, 4, 5] are read too); the
    # corruption metrics average over these pairs only
    corruption_severities: tuple[int, ...] = ALL_SEVERITIES
    precision: str = "fp32"  # training: "fp32", or "bf16" autocast (CUDA, bf16 CPUs); evaluation is fp32
    numerics: str = "cpu"  # one of NUMERICS, as the workers run (numerics_for); set by the bench driver

    def __post_init__(self) -> None:
        def check(ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(f"protocol {self.name!r}: {what}")

        check(self.dataset in DATASETS, f"dataset {self.dataset!r} not one of {', '.join(DATASETS)}")
        check(self.split in SPLITS, f"split {self.split!r} not one of {', '.join(SPLITS)}")
        check(
            self.split != "cifar10-valid" or self.dataset == "cifar10", "split 'cifar10-valid' needs cifar10"
        )
        check(
            self.optimizer in OPTIMIZERS, f"optimizer {self.optimizer!r} not one of {', '.join(OPTIMIZERS)}"
        )
        check(self.lr_schedule in SCHEDULES, f"lr_schedule {self.lr_schedule!r} not one of {SCHEDULES}")
        check(self.sam in SAM_VARIANTS, f"sam {self.sam!r} not one of {', '.join(SAM_VARIANTS)}")
        if self.precision == "fp16":
            raise ConfigError(
                f"protocol {self.name!r}: precision 'fp16' is not supported (it needs loss scaling, which "
                "SAM's two passes make fragile); use 'bf16' on CUDA or 'fp32'"
            )
        check(
            self.precision in PRECISIONS, f"precision {self.precision!r} not one of {', '.join(PRECISIONS)}"
        )
        check(
            self.corruption_resolution in CORRUPTION_RESOLUTIONS,
            f"corruption_resolution {self.corruption_resolution!r} not one of "
            f"{', '.join(CORRUPTION_RESOLUTIONS)}",
        )
        object.__setattr__(self, "corruption_severities", _severities(self.name, self.corruption_severities))
        check(self.numerics in NUMERICS, f"numerics {self.numerics!r} not one of {', '.join(NUMERICS)}")
        for field in ("epochs", "batch_size", "C", "N", "resolution"):
            check(getattr(self, field) >= 1, f"{field} must be >= 1, got {getattr(self, field)}")
        for field in (
            "val_size", "train_subset", "test_size", "crop_pad", "flatness_draws", "corruption_subset", "seed"
        ):  # fmt: skip
            check(getattr(self, field) >= 0, f"{field} must be >= 0, got {getattr(self, field)}")
        check(
            self.split == "cifar10-valid" or self.val_size >= 1, "val_size must be >= 1 for a holdout split"
        )
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(0 <= self.label_smoothing < 1, f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        check(self.rho >= 0, f"rho must be >= 0, got {self.rho}")
        check(self.flatness_sigma >= 0, f"flatness_sigma must be >= 0, got {self.flatness_sigma}")

    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain dict (JSON-ready: tuples as lists, as a stored card reads back)."""
        return {k: _plain(v) for k, v in dataclasses.asdict(self).items()}

    @property
    def hash(self) -> str:
        """12 hex digits of sha256 over the canonical JSON of every field except ``name``, leaving out a
        field added after 0.2 while it has its default (so earlier hashes hold; module docstring)."""
        defaults = {f.name: _plain(f.default) for f in dataclasses.fields(self)}
        fields = {
            k: v
            for k, v in self.to_dict().items()
            if k in HASHED_SINCE_0_1 or (k != "name" and v != defaults[k])
        }
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def replace(self, **overrides: Any) -> Protocol:
        """A copy with some fields changed; unknown field names raise ConfigError."""
        return checked_replace(self, "protocol field", overrides)


def _plain(value: Any) -> Any:
    """A field value as JSON holds it (a tuple as a list)."""
    return list(value) if isinstance(value, tuple) else value


def _severities(name: str, value: Any) -> tuple[int, ...]:
    """``value`` ("3-5", "3,4,5", 4, [3, 4, 5] or a tuple) as a sorted tuple of distinct severities 1..5;
    anything else a one-line ConfigError naming the protocol.

    >>> _severities("p", "3-5"), _severities("p", [5, 3]), _severities("p", 2)
    ((3, 4, 5), (3, 5), (2,))
    """
    bad = ConfigError(
        f"protocol {name!r}: corruption_severities {value!r} must be distinct severities 1..5 "
        "(e.g. 3-5 or 3,4,5)"
    )
    try:
        if isinstance(value, str):
            lo, dash, hi = value.partition("-")
            items = range(int(lo), int(hi) + 1) if dash else [int(v) for v in value.split(",")]
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [value]
        elif isinstance(value, (list, tuple)) and all(type(v) is int for v in value):
            items = value
        else:
            raise bad
    except ValueError:
        raise bad from None
    out = tuple(sorted(items))
    if not out or len(set(out)) != len(out) or not all(1 <= s <= 5 for s in out):
        raise bad
    return out


def checked_replace(config: Any, what: str, changes: dict[str, Any]) -> Any:
    """``dataclasses.replace(config, **changes)``, a name that is no field of it a one-line ConfigError
    naming every ``what`` there is (the protocol's, the executor options')."""
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ConfigError(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(config, **changes)


def numerics_for(device: str, deterministic: bool = False) -> str:
    """The :data:`NUMERICS` a worker computing on ``device`` runs: ``"cpu"`` (``deterministic`` changes
    nothing there), else ``"cuda-deterministic"`` or ``"cuda-fast"``.

    >>> numerics_for("cpu", True), numerics_for("cuda:1", True), numerics_for("cuda")
    ('cpu', 'cuda-deterministic', 'cuda-fast')
    """
    if not device.startswith("cuda"):
        return "cpu"
    return "cuda-deterministic" if deterministic else "cuda-fast"


PROTOCOLS: Registry[Callable[[], Protocol]] = Registry("protocol")


def register_protocol(factory: Callable[[], Protocol]) -> Callable[[], Protocol]:
    """Decorator: register ``factory`` under the name of the protocol it returns."""
    return PROTOCOLS.add(factory().name, factory)


def get_protocol(name: str, **overrides: Any) -> Protocol:
    """The preset ``name`` with ``overrides`` applied, e.g. ``get_protocol("nb201", sam="asam", rho=0.5)``."""
    return PROTOCOLS.get(name)().replace(**overrides)


def list_protocols() -> list[str]:
    """Registered protocol names, in registration order."""
    return PROTOCOLS.names()


@register_protocol
def nb201() -> Protocol:
    """NAS-Bench-201's full training: SGD Nesterov 0.9, lr 0.1 cosine, wd 5e-4, batch 256, 200 epochs,
    C=16, N=5 at 32x32, on the 25k/25k ``cifar10-valid`` split. SAM off; switch it on with
    ``get_protocol("nb201", sam="sam", rho=0.05)``."""
    return Protocol(name="nb201", split="cifar10-valid", val_size=0, epochs=200)


@register_protocol
def nb201_12() -> Protocol:
    """NAS-Bench-201's short (12-epoch) fidelity, otherwise as :func:`nb201`."""
    return Protocol(name="nb201-12", split="cifar10-valid", val_size=0, epochs=12)


@register_protocol
def flatnas() -> Protocol:
    """The FlatNAS paper's candidate training: adaptive SAM (rho 2.0) over SGD lr 0.1 momentum 0.9
    (no Nesterov), wd 5e-4, constant lr, label smoothing 0.1, batch 128, 6 epochs, on NB201's C=16, N=5
    network at 32x32 with a 5,000-image validation split carved from training."""
    return Protocol(
        name="flatnas",
        epochs=6,
        batch_size=128,
        lr_schedule="constant",
        nesterov=False,
        label_smoothing=0.1,
        sam="asam",
        rho=2.0,
    )


@register_protocol
def proxy_0_2() -> Protocol:
    """The bundled benchmark's protocol of version 0.2 (hash ``e6c3fcf12411``), kept so its tables load and
    resume: :func:`proxy`'s training, with CIFAR-10-C made at 32 px and downsampled to 16 px, severities
    1-5. Chosen by reliability per CPU second (``benchmarks/protocol_calibration.py``, docs/benchmark.md
    "Choosing the bundled protocol"): on the 32-arch x 2-seed calibration panel, against v0.1's setting
    (C = 16 on 5,000 images, R at sigma 0.05 on 1,000 images, 50 corruption images) at about the same
    training CPU time, the seed-to-seed Spearman of R rose from -0.04 to 0.77, of validation accuracy
    (1,000 images) from 0.70 to 0.76, of corruption accuracy from about 0.1 (50 images) to 0.65, and the
    Kendall tau of validation accuracy against NB201's 200-epoch test accuracy from 0.51 to 0.57.
    """
    return Protocol(
        name="proxy-0.2",
        resolution=16,
        crop_pad=0,
        C=8,
        N=1,
        train_subset=10000,
        val_size=2000,
        test_size=2000,
        epochs=4,
        batch_size=128,
        label_smoothing=0.1,
        sam="sam",
        rho=0.05,
        flatness_sigma=0.2,
        flatness_draws=20,
        corruption_subset=1000,
    )


@register_protocol
def proxy() -> Protocol:
    """The cheap CPU protocol of the bundled benchmark (0.3): 0.2's training and flatness (``proxy-0.2``)
    with the corruption test that calibration round 2 chose (``benchmarks/calibration_round2.py``,
    docs/robustness.md): the CIFAR-10-C operations applied to the test images at the network's 16 px,
    averaged over severities 3-5. On the random 64-arch x 2-seed panel, on the same networks, it lifted the
    seed-to-seed Spearman of relative accuracy under the blur family from 0.04 to 0.35 [0.09, 0.56], at
    no training cost; corruption accuracy itself became less a copy of clean accuracy (0.61 -> 0.44).

    A narrow NB201 network (C = 8, N = 1) at 16 x 16 px (area-downsampled once, flip only), trained with
    plain SAM (rho 0.05) over SGD Nesterov, lr 0.1 cosine, wd 5e-4, label smoothing 0.1, batch 128, for 4
    epochs on 10,000 class-balanced training images (312 steps); R at sigma 0.2 with 20 draws on 2,000
    validation images; the 15 corruptions x severities 3-5 on 1,000 class-balanced test images; 2,000
    test images.
    """
    return proxy_0_2().replace(name="proxy", corruption_resolution="input", corruption_severities=(3, 4, 5))


@register_protocol
def proxy_0_1() -> Protocol:
    """The bundled benchmark's protocol of version 0.1 (hash ``772034ca7fcd``), kept so tables measured
    with it still load: C = 16, 5,000 training images, R at sigma 0.05 (M = 20) on 1,000 validation
    images, 50 corruption images. Its R did not repeat across training seeds (see :func:`proxy`)."""
    return Protocol(
        name="proxy-0.1",
        resolution=16,
        crop_pad=0,
        C=16,
        N=1,
        train_subset=5000,
        val_size=1000,
        test_size=2000,
        epochs=4,
        batch_size=128,
        label_smoothing=0.1,
        sam="sam",
        rho=0.05,
        corruption_subset=50,
    )
