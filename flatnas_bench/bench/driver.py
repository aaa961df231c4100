"""The bench driver: measure a list of archs under one protocol into a durable table, resumably.

:func:`run_bench` canonicalises the archs (isomorphic cells are one candidate), drops the
``(arch, seed)`` pairs the table already holds, fans the rest out over an executor, and commits each result
row the moment it arrives, from this process only. Kill it at any point and run the same call again: it
picks up where the table stops, never duplicating a row. A live display shows done / failed / in flight,
the ETA and the arch being trained on a terminal, and plain lines (one per candidate, a heartbeat every
60 s) when stderr is a log file.

>>> from flatnas_bench.nb201.space import sample_archs
>>> data = "../shared/data/cifar10/cifar10-jpeg.tar.gz"
>>> summary = run_bench(sample_archs(20, seed=0, unique=True), "proxy", "runs/proxy.sqlite", data,
...                     executor="local", options=ExecutorOptions(workers=2))  # doctest: +SKIP
>>> summary.done, summary.failed, summary.skipped  # doctest: +SKIP
(20, 0, 0)
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnas_bench.bench.executor import Executor
from flatnas_bench.bench.executors import get_executor
from flatnas_bench.bench.options import ExecutorOptions
from flatnas_bench.bench.progress import progress_display
from flatnas_bench.bench.worker import DEVICE_FAILURE_MARKS, RunContext
from flatnas_bench.core.cores import usable_cores
from flatnas_bench.core.errors import ArchError, ConfigError, DataError
from flatnas_bench.core.protocol import ALL_SEVERITIES, Protocol, get_protocol
from flatnas_bench.nb201.space import ArchLike, as_arch
from flatnas_bench.tables.store import ResultStore

if TYPE_CHECKING:
    from flatnas_bench.corruptions.robustness import CorruptionSet


@dataclass(frozen=True)
class BenchSummary:
    """What one :func:`run_bench` call did. ``jobs`` counts distinct ``(canonical arch, seed)`` pairs asked
    for, ``isomorphs`` the input archs dropped as isomorphic duplicates, ``skipped`` the pairs already in the
    table, ``done``/``failed`` the rows this call committed, ``seconds`` its wall time."""

    table: Path
    protocol: str
    protocol_hash: str
    executor: str
    jobs: int
    isomorphs: int
    skipped: int
    done: int
    failed: int
    seconds: float

    def line(self) -> str:
        """A one-line report, e.g. for the CLI."""
        return (
            f"{self.done} done, {self.failed} failed, {self.skipped} already in {self.table} "
            f"({self.jobs} jobs, {self.isomorphs} isomorphic duplicates dropped; protocol {self.protocol} "
            f"{self.protocol_hash}; {self.executor}; {self.seconds:.1f} s)"
        )


def parse_settings(settings: Iterable[str]) -> dict[str, Any]:
    """``["epochs=1", "sam=none", "lr=0.05"]`` -> ``{"epochs": 1, "sam": "none", "lr": 0.05}``.

    Values are read as JSON where they parse (numbers, true/false, null) and as text otherwise; the
    protocol then checks names and types.
    """
    out: dict[str, Any] = {}
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"setting {item!r} is not key=value (e.g. epochs=1)")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[key.strip()] = value
    return out


def resolve_protocol(protocol: Protocol | str, overrides: dict[str, Any] | None = None) -> Protocol:
    """A registered protocol by name (or a :class:`Protocol` as is) with ``overrides`` applied.

    An override's value is converted to the field's type (``"1"`` -> 1 for an int field, ``1`` -> 1.0 for
    a float field); a value of the wrong kind raises :class:`ConfigError` naming the field.
    """
    base = get_protocol(protocol) if isinstance(protocol, str) else protocol
    if not overrides:
        return base
    typed = {key: _coerce(key, value, getattr(base, key, None)) for key, value in overrides.items()}
    return base.replace(**typed)  # unknown names raise ConfigError listing the known ones


def run_protocol(protocol: Protocol, numerics: str = "cpu", precision: str | None = None) -> Protocol:
    """``protocol`` as an executor whose workers compute with ``numerics`` runs it (``executor.numerics``,
    one of :data:`~flatnas_bench.core.protocol.NUMERICS`): ``numerics`` set, and ``precision`` when given,
    else bf16 autocast on CUDA for a protocol that says fp32 (every preset does) and the protocol's own
    precision on the CPU. The hash follows both, so rows of different numerics or training precision never
    share a key (CPU fp32 rows keep the hashes of earlier versions).

    bf16 on a CPU without native bf16 is a :class:`ConfigError` here, before anything runs: raised in the
    workers instead, it would be stored as every candidate's failed row (and those rows skipped after).

    >>> proxy = get_protocol("proxy")
    >>> run_protocol(proxy, "cuda-fast").precision, run_protocol(proxy, "cpu").hash == proxy.hash
    ('bf16', True)
    """
    on_cuda = numerics.startswith("cuda")
    if precision is not None:
        protocol = protocol.replace(precision=precision)
    elif on_cuda and protocol.precision == "fp32":
        protocol = protocol.replace(precision="bf16")
    if protocol.precision == "bf16" and not on_cuda:
        from flatnas_bench.engine.train import cpu_bf16_supported

        if not cpu_bf16_supported():
            raise ConfigError(
                "precision 'bf16' needs a CUDA device or a CPU with bf16 instructions; use fp32"
            )
    return protocol.replace(numerics=numerics)


def _coerce(key: str, value: Any, current: Any) -> Any:
    """``value`` as the type of the field's ``current`` value (an int is a valid float, anything a str)."""
    if current is None or (type(value) is type(current)) or isinstance(current, tuple):
        return value  # a tuple field (corruption_severities) reads its own forms
    if isinstance(current, float) and type(value) is int:
        return float(value)
    if isinstance(current, str) and value is not None:
        return str(value)
    raise ConfigError(f"protocol setting {key}={value!r} must be {type(current).__name__}")


def unique_archs(archs: Iterable[ArchLike]) -> tuple[list[str], int]:
    """(canonical arch strings in first-seen order, number of inputs dropped as isomorphic duplicates)."""
    seen: dict[str, None] = {}
    total = 0
    for arch in archs:
        total += 1
        seen.setdefault(str(as_arch(arch).canonical()), None)
    return list(seen), total - len(seen)


def read_arch_file(path: str | os.PathLike[str]) -> list[str]:
    """Arch strings from a text file, one per line; blank lines and ``#`` comments are skipped."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read arch file {path}: {exc.strerror}") from None
    archs = [line.split("#", 1)[0].strip() for line in lines]
    archs = [a for a in archs if a]
    if not archs:
        raise ConfigError(f"arch file {path} lists no archs")
    for number, arch in enumerate(archs, start=1):
        try:
            as_arch(arch)
        except ArchError as exc:
            raise ConfigError(f"{path}, arch {number}: {exc}") from None
    return archs


def corruption_set_for(
    protocol: Protocol,
    data_path: str | os.PathLike[str],
    corruptions: str | os.PathLike[str] | None = None,
    severities: Sequence[int] | None = None,
) -> CorruptionSet | None:
    """The corruption set every worker evaluates, or None when ``protocol.corruption_subset`` is 0.

    From ``corruptions`` (an official CIFAR-C directory, whose first images are in test-set order) when
    given; otherwise the 15 benchmark corruptions x 5 severities (seed 0) of ``corruption_subset``
    class-balanced test images, generated once and cached in the official layout under the data cache
    directory. (Folder layouts list the test set class by class, so its first images would be one class.)
    With ``protocol.corruption_resolution == "input"`` and a resolution below the images' own, the test
    images are area-downsampled to the resolution first (as the network sees them) and the operations
    run at that size ("CIFAR-10-C operations at 16 px"; cached apart). ``severities`` keeps only those
    blocks (e.g. ``(3, 4, 5)``). To evaluate saved weights under this set::

        cset = corruption_set_for(get_protocol("proxy", corruption_resolution="input"), DATA)
        groups, x, y = data.corruption_tensors(cset, protocol.corruption_subset)   # a DeviceData
    """
    subset = protocol.corruption_subset
    if subset <= 0:
        return None
    at_input = protocol.resolution if protocol.corruption_resolution == "input" else None
    cset = _corruption_set(
        protocol.dataset, subset, str(data_path), None if corruptions is None else str(corruptions), at_input
    )
    if severities is None and protocol.corruption_severities != ALL_SEVERITIES:
        severities = protocol.corruption_severities
    return cset if severities is None else _severity_view(cset, tuple(int(s) for s in severities))


_SEVERITY_VIEWS: dict[tuple[int, tuple[int, ...]], tuple[CorruptionSet, CorruptionSet]] = {}


def _severity_view(cset: CorruptionSet, severities: tuple[int, ...]) -> CorruptionSet:
    """``cset.only_severities(severities)``, the same object on every call for the same set and severities,
    so workers kept alive across runs (the loop's generations) recognise it and keep their tensors."""
    key = (id(cset), severities)
    if key not in _SEVERITY_VIEWS or _SEVERITY_VIEWS[key][0] is not cset:
        _SEVERITY_VIEWS[key] = (cset, cset.only_severities(severities))
    return _SEVERITY_VIEWS[key][1]


@functools.lru_cache(maxsize=4)
def _corruption_set(
    dataset: str, subset: int, data_path: str, corruptions: str | None, at_input: int | None
) -> CorruptionSet:
    """The corruption set of one request, built once per process: the same object every call, so workers
    kept alive across runs (the loop's generations) recognise it. ``at_input``: the side (px) to corrupt
    the images at when below theirs, or None for their own."""
    from flatnas_bench.corruptions.robustness import load_cifar_c

    if corruptions is not None:
        cset = load_cifar_c(corruptions, subset=subset)
        side = cset.images[cset.names[0]].shape[2]
        if at_input is not None and side > at_input:
            raise ConfigError(
                f"corruption_resolution 'input' asks for a set made at {at_input} px, {corruptions} holds "
                f"{side} px images: drop --corruptions to generate it, or set corruption_resolution=native"
            )
        return cset
    from flatnas_bench.corruptions.generate import GENERATOR_VERSION, write_corruption_set
    from flatnas_bench.corruptions.imaging import area_downsample
    from flatnas_bench.corruptions.robustness import BENCHMARK_CORRUPTIONS
    from flatnas_bench.corruptions.textures import frost_source
    from flatnas_bench.engine.data import cache_dir, load_images

    test = load_images(data_path, dataset).test
    if subset > len(test):
        raise DataError(f"corruption_subset {subset} exceeds the {len(test)} {dataset} test images")
    pick = balanced_subset(test.y, subset)
    x, y = test.x[pick], test.y[pick]
    digest = hashlib.sha256(np.ascontiguousarray(x).tobytes() + y.tobytes()).hexdigest()[:16]
    # generator version and frost source in the name: a cache made by other code is never reused
    tag = f"g{GENERATOR_VERSION}-{frost_source()}"
    if at_input is not None and at_input < x.shape[1]:
        x, tag = area_downsample(x, at_input), f"{tag}-at{at_input}px"
    folder = cache_dir() / "corruptions" / f"{dataset}-{subset}-{digest}-{tag}"
    # keeps what an earlier run wrote; made before any candidate trains, so every core is free for it
    write_corruption_set(x, y, folder, BENCHMARK_CORRUPTIONS, seed=0, workers=usable_cores())
    return load_cifar_c(folder, BENCHMARK_CORRUPTIONS, subset=subset)


def balanced_subset(labels: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` images dealt round-robin over the classes (the first of each class, then the second
    ...), in ascending order: deterministic and class-balanced to within one image.

    >>> balanced_subset(np.array([0, 0, 0, 1, 1, 2]), 4).tolist()
    [0, 1, 3, 5]
    """
    labels = np.asarray(labels)
    rank = np.empty(len(labels), np.int64)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rank[members] = np.arange(len(members))
    return np.sort(np.lexsort((labels, rank))[:n])


def _bench_inputs(archs: Iterable[ArchLike], seeds: Sequence[int]) -> tuple[list[str], int, list[int]]:
    """(distinct canonical archs, isomorphs dropped, distinct seeds); ConfigError when either is empty."""
    seeds = [int(s) for s in dict.fromkeys(seeds)]
    if not seeds:
        raise ConfigError("no seeds given")
    canonical, isomorphs = unique_archs(archs)
    if not canonical:
        raise ConfigError("no archs given")
    return canonical, isomorphs, seeds


def _commit_results(executor: Executor, jobs: list, context: RunContext, store: ResultStore, display) -> dict:
    """Run ``jobs`` on ``executor`` and commit each row the moment it arrives; ok / failed counts.

    The first SIGINT or SIGTERM stops dealing jobs: the ones in flight finish and are committed, then
    KeyboardInterrupt is raised. A second one aborts at once (the jobs in flight are lost)."""
    counts = {"ok": 0, "failed": 0}
    with _graceful_stop(display) as stopping:
        # closing() stops the workers even when the driver is interrupted
        with closing(executor.run(jobs, context, on_start=display.started, stop=stopping)) as results:
            for row in results:
                store.add(row)
                counts["failed" if row.get("error") else "ok"] += 1
                display.finished(row)
        if stopping():
            raise KeyboardInterrupt
    return counts


@contextmanager
def _graceful_stop(display) -> Iterator[Callable[[], bool]]:
    """While active, the first SIGINT / SIGTERM only sets the returned flag (and says so); the second raises
    KeyboardInterrupt. Outside the main thread, where signals cannot be caught, the flag stays false."""
    asked: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum: int, frame: Any) -> None:
        if asked:
            raise KeyboardInterrupt
        asked.append(signum)
        display.note("stopping: finishing the candidates in flight (interrupt again to abort them)")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(asked)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_bench(
    archs: Iterable[ArchLike],
    protocol: Protocol | str,
    table_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    executor: Executor | str = "serial",
    seeds: Sequence[int] = (0,),
    *,
    options: ExecutorOptions | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    corruptions: str | os.PathLike[str] | None = None,
    precision: str | None = None,
    save_weights: str | os.PathLike[str] | None = None,
) -> BenchSummary:
    """Measure ``archs`` x ``seeds`` under ``protocol`` into the SQLite table at ``table_path``; resumable.

    ``protocol`` is a :class:`Protocol` or a registered name; ``data_path`` any layout
    :func:`flatnas_bench.engine.data.load_images` reads. ``executor`` is a name from
    :func:`~flatnas_bench.bench.executors.list_executors` (built with ``options``: device, workers,
    threads, workers per GPU, CUDA determinism) or a ready :class:`Executor`. Rows are keyed by the
    executor's numerics (:func:`run_protocol`). Pairs already stored are skipped, failed ones too
    unless ``retry_failed``. ``corruptions`` is an official CIFAR-C directory, used when the protocol's
    ``corruption_subset`` > 0 (otherwise corruptions are generated once and cached). Every result is
    committed as it arrives. The first SIGINT / SIGTERM (Ctrl-C) lets the candidates in flight finish and
    commits them, then raises KeyboardInterrupt; a second one, or a kill, loses only those in flight.
    On CUDA an fp32 protocol trains in bf16 autocast unless ``precision="fp32"`` (see :func:`run_protocol`);
    evaluation is fp32 in every case.
    ``progress`` shows a live display on a terminal and plain lines when stderr is a log file.
    ``save_weights``: a directory that keeps each new row's trained network (:mod:`~.engine.weights`).
    """
    from flatnas_bench.engine.candidate import CandidateJob
    from flatnas_bench.engine.data import find_layout, load_images

    start = time.perf_counter()
    canonical, isomorphs, seeds = _bench_inputs(archs, seeds)
    if isinstance(executor, str):
        executor = get_executor(executor, options)
    protocol = run_protocol(resolve_protocol(protocol), executor.numerics, precision)
    find_layout(data_path, protocol.dataset)  # a wrong path fails here, before any display or table
    counts, jobs = {"ok": 0, "failed": 0}, []
    title = f"bench {protocol.name} {protocol.hash} on {executor.describe()}"
    with progress_display(title, progress) as display:
        display.note(f"{len(canonical)} archs x {len(seeds)} seeds; loading {data_path}")
        load_images(data_path, protocol.dataset)  # checks the path; decodes + caches once before workers read
        with ResultStore(table_path) as store:
            store.add_protocol(protocol)
            done = store.done_keys(
                protocol.hash, include_failed=not retry_failed, retry_errors=DEVICE_FAILURE_MARKS
            )
            jobs = [CandidateJob(a, protocol, s) for a in canonical for s in seeds if (a, s) not in done]
            if jobs:
                if protocol.corruption_subset:
                    display.note("preparing the corruption set")
                context = RunContext(
                    protocol,
                    data_path=str(data_path),
                    corruption_set=corruption_set_for(protocol, data_path, corruptions),
                    save_weights=None if save_weights is None else str(Path(save_weights).resolve()),
                )
                display.begin(len(jobs), len(canonical) * len(seeds) - len(jobs))
                counts = _commit_results(executor, jobs, context, store, display)
    return BenchSummary(
        table=Path(table_path),
        protocol=protocol.name,
        protocol_hash=protocol.hash,
        executor=executor.describe(),
        jobs=len(canonical) * len(seeds),
        isomorphs=isomorphs,
        skipped=len(canonical) * len(seeds) - len(jobs),
        done=counts["ok"],
        failed=counts["failed"],
        seconds=time.perf_counter() - start,
    )
