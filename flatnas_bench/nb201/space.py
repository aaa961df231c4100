"""The NAS-Bench-201 cell search space: arch values, parsing, isomorphism, enumeration and sampling.

A cell is a DAG on 4 nodes; node j sums ``op_ij(node_i)`` over i < j and node 3 is the output. Each of the
6 edges carries one of 5 ops, so the space holds 5**6 = 15,625 archs. Conventions are NB201's own:

* op order (index 0..4): ``none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3``;
* edge order: 0->1, 0->2, 1->2, 0->3, 1->3, 2->3;
* string: ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``.

>>> a = Arch.from_str(
...     "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"
... )
>>> a.ops
(3, 3, 4, 0, 3, 4)
>>> Arch.from_ops(a.ops) == a
True
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from flatnas_bench.core.errors import ArchError

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_EDGES = len(EDGES)
NUM_OPS = len(OPS)
NUM_ARCHS = NUM_OPS**NUM_EDGES  # 15,625
NUM_NODES = 4
NONE, SKIP, CONV1, CONV3, POOL = range(NUM_OPS)

EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
_FORMAT_HINT = f"expected 3 '+'-separated nodes of '|op~i|' edges, e.g. {EXAMPLE!r}; ops: {', '.join(OPS)}"


def _fail(text: object, reason: str) -> ArchError:
    shown = repr(text)
    if len(shown) > 120:
        shown = shown[:117] + "..."
    return ArchError(f"invalid NB201 arch {shown}: {reason}; {_FORMAT_HINT}")


def _parse_ops(text: str) -> tuple[int, ...]:
    if not isinstance(text, str):
        raise _fail(text, f"expected a string, got {type(text).__name__}")
    if not text:
        raise _fail(text, "empty string")
    if any(ch.isspace() for ch in text):
        raise _fail(text, "stray whitespace")
    nodes = text.split("+")
    if len(nodes) != NUM_NODES - 1:
        raise _fail(text, f"{len(nodes)} nodes, expected 3")
    ops: list[int] = []
    for j, node in enumerate(nodes, start=1):
        if len(node) < 2 or node[0] != "|" or node[-1] != "|":
            raise _fail(text, f"node {j} must start and end with '|'")
        edges = node[1:-1].split("|")
        if len(edges) != j:
            raise _fail(text, f"node {j} has {len(edges)} edges, expected {j}")
        for i, edge in enumerate(edges):
            name, sep, src = edge.partition("~")
            if not sep:
                raise _fail(text, f"edge {edge!r} of node {j} lacks '~'")
            if name not in OPS:
                raise _fail(text, f"unknown op {name!r}")
            if src != str(i):
                raise _fail(text, f"edge {i} of node {j} reads from node {src!r}, expected {i}")
            ops.append(OPS.index(name))
    return tuple(ops)


@dataclass(frozen=True, slots=True, order=True)
class Arch:
    """One NB201 cell as 6 op indices in edge order; immutable, hashable and ordered.

    Build it with :meth:`from_str`, :meth:`from_ops` or :meth:`from_ordinal`; :func:`as_arch` accepts any
    of those forms. ``str(arch)`` gives the NB201 string back exactly.
    """

    ops: tuple[int, ...]

    def __post_init__(self) -> None:
        ops = self.ops
        if not isinstance(ops, tuple) or len(ops) != NUM_EDGES:
            raise _fail(ops, f"expected {NUM_EDGES} op indices")
        for op in ops:
            if type(op) is not int or not 0 <= op < NUM_OPS:
                raise _fail(ops, f"op index {op!r} is not an int in 0..{NUM_OPS - 1}")

    @classmethod
    def from_str(cls, text: str) -> Arch:
        """Parse an NB201 arch string strictly; raises :class:`ArchError` on anything malformed."""
        return cls(_parse_ops(text))

    @classmethod
    def from_ops(cls, ops: Iterable[int]) -> Arch:
        """From 6 op indices in NB201 op and edge order."""
        try:
            values = tuple(int(op) if isinstance(op, np.integer) else op for op in ops)
        except TypeError as exc:
            raise _fail(ops, "expected a sequence of 6 op indices") from exc
        return cls(values)

    @classmethod
    def from_ordinal(cls, ordinal: int) -> Arch:
        """From the arch's position in :func:`all_archs` (base-5 digits, edge 0->1 most significant).

        This is *not* the NB201 benchmark index, which comes from the benchmark's meta file.
        """
        try:
            ordinal = operator.index(ordinal)  # accepts numpy integers, rejects floats
        except TypeError as exc:
            raise ArchError(f"ordinal {ordinal!r} is not an integer") from exc
        if not 0 <= ordinal < NUM_ARCHS:
            raise ArchError(f"ordinal {ordinal} outside 0..{NUM_ARCHS - 1}")
        digits = []
        for _ in range(NUM_EDGES):
            ordinal, digit = divmod(ordinal, NUM_OPS)
            digits.append(digit)
        return cls(tuple(reversed(digits)))

    @property
    def ordinal(self) -> int:
        """Position in :func:`all_archs`: the op indices read as a base-5 number."""
        value = 0
        for op in self.ops:
            value = value * NUM_OPS + op
        return value

    @property
    def op_names(self) -> tuple[str, ...]:
        return tuple(OPS[op] for op in self.ops)

    def to_str(self) -> str:
        return _ops_string(self.ops)

    def __str__(self) -> str:
        return self.to_str()

    @property
    def iso_key(self) -> str:
        """A string shared exactly by the archs that compute the same function (see :func:`iso_key`)."""
        return iso_key(self.ops)

    def canonical(self) -> Arch:
        """The representative of this arch's isomorphism class: its member with the smallest op tuple."""
        return _classes().representative[self.ordinal]

    @property
    def is_canonical(self) -> bool:
        return self.canonical() == self

    @property
    def class_size(self) -> int:
        """How many of the 15,625 archs compute the same function as this one."""
        return len(iso_class(self))

    def neighbours(self) -> list[Arch]:
        """The 24 archs at Hamming distance 1 (one edge's op changed), in edge then op order."""
        out = []
        for k in range(NUM_EDGES):
            for op in range(NUM_OPS):
                if op != self.ops[k]:
                    out.append(Arch((*self.ops[:k], op, *self.ops[k + 1 :])))
        return out


ArchLike = Arch | str | Sequence[int]


def as_arch(value: ArchLike) -> Arch:
    """Coerce an :class:`Arch`, an NB201 string or 6 op indices to an :class:`Arch`."""
    if isinstance(value, Arch):
        return value
    if isinstance(value, str):
        return Arch.from_str(value)
    return Arch.from_ops(value)


def iso_key(ops: Sequence[int]) -> str:
    """The isomorphism key of a cell, NATS-Bench's canonical form with zeros considered.

    Each node is written as the sorted '+'-join of its incoming terms: ``none`` (or an edge from a zero
    node) is the zero term ``#``, ``skip_connect`` passes its source's expression through unchanged, any
    other op wraps it as ``(src)@op``. Edges that cannot reach the output never enter the output node's
    expression. This gives exactly 6,466 classes over the 15,625 archs.
    """
    nodes = ["0"]
    for j in range(1, NUM_NODES):
        terms = []
        for k, (i, dst) in enumerate(EDGES):
            if dst != j:
                continue
            src, op = nodes[i], ops[k]
            if op == NONE or src == "#":
                terms.append("#")
            elif op == SKIP:
                terms.append(src)
            else:
                terms.append(f"({src})@{OPS[op]}")
        nodes.append("+".join(sorted(terms)))
    return nodes[-1]


@dataclass(frozen=True)
class _Classes:
    members: dict[str, tuple[Arch, ...]]
    representative: tuple[Arch, ...]  # by ordinal


@functools.cache
def _ops_string(ops: tuple[int, ...]) -> str:
    """The NB201 string of ``ops``, built once per arch (searches print and key thousands of them)."""
    return "+".join(
        "|" + "|".join(f"{OPS[ops[k]]}~{EDGES[k][0]}" for k in range(NUM_EDGES) if EDGES[k][1] == j) + "|"
        for j in range(1, NUM_NODES)
    )


@functools.cache
def all_archs() -> tuple[Arch, ...]:
    """All 15,625 archs in ordinal order (op indices as base-5 digits)."""
    return tuple(Arch.from_ordinal(k) for k in range(NUM_ARCHS))


@functools.cache
def _classes() -> _Classes:
    members: dict[str, list[Arch]] = {}
    for arch in all_archs():
        members.setdefault(arch.iso_key, []).append(arch)
    frozen = {key: tuple(group) for key, group in members.items()}
    representative = [None] * NUM_ARCHS
    for group in frozen.values():
        for arch in group:
            representative[arch.ordinal] = group[0]
    return _Classes(frozen, tuple(representative))


@functools.cache
def arch_by_string() -> dict[str, Arch]:
    """Every NB201 string -> its Arch, built once (~40 ms): parsing 15,625 strings is then ~10 ms."""
    return {str(arch): arch for arch in all_archs()}


def parse_archs(values: Sequence[ArchLike]) -> list[Arch]:
    """:func:`as_arch` of each value; for many values, NB201 strings are looked up in
    :func:`arch_by_string` (parsing all 15,625 takes ~10 ms instead of ~0.4 s)."""
    if len(values) < 256:
        return [as_arch(v) for v in values]
    known = arch_by_string()
    return [(known.get(v) if isinstance(v, str) else None) or as_arch(v) for v in values]


@functools.cache
def canonical_ordinals() -> np.ndarray:
    """``canonical_ordinals()[k]`` is the ordinal of arch ``k``'s canonical representative (read-only)."""
    out = np.array([arch.ordinal for arch in _classes().representative], dtype=np.int64)
    out.setflags(write=False)
    return out


def canonical_archs() -> tuple[Arch, ...]:
    """One representative per isomorphism class (6,466 of them), in ordinal order."""
    return tuple(sorted(group[0] for group in _classes().members.values()))


def iso_class(arch: ArchLike) -> tuple[Arch, ...]:
    """Every arch isomorphic to ``arch`` (itself included), in ordinal order."""
    return _classes().members[as_arch(arch).iso_key]


def is_isomorphic(a: ArchLike, b: ArchLike) -> bool:
    """True when the two cells compute the same function (same :func:`iso_key`)."""
    return as_arch(a).iso_key == as_arch(b).iso_key


def sample_archs(n: int, seed: int, *, unique: bool = False) -> list[Arch]:
    """``n`` distinct archs drawn uniformly without replacement, reproducibly by ``seed``.

    With ``unique=True`` the draw is uniform over the 6,466 isomorphism classes and returns their
    canonical representatives; otherwise it is uniform over all 15,625 archs.
    """
    pool = canonical_archs() if unique else all_archs()
    if not 0 <= n <= len(pool):
        raise ArchError(f"cannot sample {n} distinct archs from {len(pool)}")
    picks = np.random.default_rng(seed).choice(len(pool), size=n, replace=False)
    return [pool[int(k)] for k in picks]
