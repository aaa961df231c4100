"""Feature encodings of NB201 cells for surrogate models: one-hot, path encoding and exact cost features.

Three kinds, concatenated by :func:`encode` in the order asked for. Every value is a float32; names are
stable and listed by :func:`feature_names`. A saved surrogate should store :data:`FEATURE_VERSION` and
refuse to load when it differs.

``onehot`` (30 columns)
    Edge k (NB201 edge order 0->1, 0->2, 1->2, 0->3, 1->3, 2->3) takes columns ``5k .. 5k+4``, one per op
    in NB201 op order; exactly one is 1. Name: ``onehot:<src>-><dst>:<op>``, e.g. ``onehot:0->3:none``.

``path`` (84 columns)
    The cell has 4 input-to-output routes: 0->3, 0->1->3, 0->2->3 and 0->1->2->3. A route is *live* when
    none of its edges is ``none``; it is then read as the sequence of its ops. There is one column per
    possible sequence of the 4 non-``none`` ops: the 4 of length 1, then the 16 of length 2, then the 64
    of length 3, each block in lexicographic NB201 op order (``skip_connect`` < ``nor_conv_1x1`` <
    ``nor_conv_3x3`` < ``avg_pool_3x3``). A column holds how many live routes spell that sequence (0, 1 or
    2: only the two length-2 routes can coincide). Name: ``path:<op>><op>...``, e.g.
    ``path:nor_conv_3x3>skip_connect``. The encoding reads the arch as written: isomorphic archs can differ
    (encode ``arch.canonical()`` for a class-level feature).

``cost`` (14 columns)
    ``params_m`` and ``flops_m`` (millions of parameters / MACs of the NB201 CIFAR-10 network, exactly as
    :func:`flatnas_bench.nb201.costs.cost_arrays`); ``count:<op>`` for the 5 ops over all 6 edges (what the
    costs depend on); ``live:<op>`` for the 4 non-``none`` ops, counting only *live edges* (edges on a
    live route); ``live_routes`` (0..4); ``longest_live_route`` (edges on the longest live route, 0..3;
    0 when the output is constant zero); ``max_live_convs`` (most conv edges on one live route, 0..3).

>>> X, names = encode([
...     "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"
... ])
>>> X.shape, X.dtype, len(names)
((1, 128), dtype('float32'), 128)
>>> for name, value in zip(names, X[0]):  # route 0->3 is dead (none)
...     if name.startswith("path:") and value:
...         print(name, value)
path:nor_conv_3x3>nor_conv_3x3 1.0
path:nor_conv_3x3>avg_pool_3x3 1.0
path:nor_conv_3x3>avg_pool_3x3>avg_pool_3x3 1.0
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.nb201.costs import cost_arrays, op_counts
from flatnas_bench.nb201.space import (
    CONV1,
    CONV3,
    EDGES,
    NONE,
    NUM_EDGES,
    NUM_OPS,
    OPS,
    ArchLike,
    all_archs,
    as_arch,
)

__all__ = [
    "FEATURE_VERSION",
    "KINDS",
    "ROUTES",
    "cost_features",
    "encode",
    "feature_names",
    "onehot",
    "path_encoding",
]

FEATURE_VERSION = "nb201-features-1"  # bump whenever a column's meaning, order or count changes
KINDS: tuple[str, ...] = ("onehot", "path", "cost")

# input-to-output routes as edge indices (EDGES order): 0->3, 0->1->3, 0->2->3, 0->1->2->3
ROUTES: tuple[tuple[int, ...], ...] = ((3,), (0, 4), (1, 5), (0, 2, 5))
_LIVE_OPS = tuple(range(1, NUM_OPS))  # every op but none
_PATH_SEQS = [seq for n in (1, 2, 3) for seq in itertools.product(_LIVE_OPS, repeat=n)]
_PATH_OFFSET = {1: 0, 2: 4, 3: 20}  # first column of each route length

_NAMES: dict[str, tuple[str, ...]] = {
    "onehot": tuple(f"onehot:{i}->{j}:{op}" for i, j in EDGES for op in OPS),
    "path": tuple("path:" + ">".join(OPS[op] for op in seq) for seq in _PATH_SEQS),
    "cost": (
        "params_m",
        "flops_m",
        *(f"count:{op}" for op in OPS),
        *(f"live:{OPS[op]}" for op in _LIVE_OPS),
        "live_routes",
        "longest_live_route",
        "max_live_convs",
    ),
}


def _live_routes(ops: np.ndarray) -> np.ndarray:
    """``(n, 4)`` bool: is each route of :data:`ROUTES` free of ``none``."""
    return np.stack([(ops[:, list(route)] != NONE).all(axis=1) for route in ROUTES], axis=1)


def _onehot(ops: np.ndarray) -> np.ndarray:
    return (ops[:, :, None] == np.arange(NUM_OPS)).reshape(len(ops), NUM_EDGES * NUM_OPS)


def _paths(ops: np.ndarray) -> np.ndarray:
    out = np.zeros((len(ops), len(_PATH_SEQS)), dtype=np.int64)
    rows = np.arange(len(ops))
    live = _live_routes(ops)
    for r, route in enumerate(ROUTES):
        column = np.full(len(ops), _PATH_OFFSET[len(route)])
        for pos, k in enumerate(route):  # base-4 digits of the non-none ops, first edge most significant
            column = column + (ops[:, k] - 1) * 4 ** (len(route) - 1 - pos)
        np.add.at(out, (rows[live[:, r]], column[live[:, r]]), 1)
    return out


def _costs(ops: np.ndarray) -> np.ndarray:
    """Cost features of all archs; ``ops`` must be the whole space in ordinal order."""
    params_m, flops_m = cost_arrays()
    live_routes = _live_routes(ops)
    live_edge = np.zeros(ops.shape, dtype=bool)
    longest = np.zeros(len(ops), dtype=np.int64)
    convs = np.zeros(len(ops), dtype=np.int64)
    is_conv = (ops == CONV1) | (ops == CONV3)
    for r, route in enumerate(ROUTES):
        live = live_routes[:, r]
        live_edge[:, list(route)] |= live[:, None]
        longest = np.maximum(longest, live * len(route))
        convs = np.maximum(convs, live * is_conv[:, list(route)].sum(axis=1))
    live_counts = op_counts(np.where(live_edge, ops, NONE))[:, 1:]
    return np.column_stack(
        [
            params_m,
            flops_m,
            op_counts(ops),
            live_counts,
            live_routes.sum(axis=1),
            longest,
            convs,
        ]
    )


@functools.cache
def _table(kind: str) -> np.ndarray:
    """The float32 features of one kind for all 15,625 archs, row = ordinal; computed once, read-only."""
    ops = np.array([arch.ops for arch in all_archs()])  # row = ordinal
    if kind == "onehot":
        values = _onehot(ops)
    elif kind == "path":
        values = _paths(ops)
    else:
        values = _costs(ops)
    table = np.ascontiguousarray(values, dtype=np.float32)
    table.flags.writeable = False
    return table


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    if isinstance(kinds, str):
        kinds = (kinds,)
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds or len(set(kinds)) != len(kinds):
        raise ConfigError(f"feature kinds must be distinct names from {', '.join(KINDS)}; got {list(kinds)}")
    return tuple(kinds)


def feature_names(kinds: Sequence[str] = KINDS) -> list[str]:
    """Column names of :func:`encode` for these kinds, in order (30 + 84 + 14 = 128 for all three)."""
    return [name for kind in _check_kinds(kinds) for name in _NAMES[kind]]


def _ordinals(archs: Iterable[ArchLike]) -> np.ndarray:
    return np.fromiter((as_arch(arch).ordinal for arch in archs), dtype=np.int64)


def encode(archs: Iterable[ArchLike], kinds: Sequence[str] = KINDS) -> tuple[np.ndarray, list[str]]:
    """Features of ``archs`` (Arch values, NB201 strings or op tuples): ``(X, names)``.

    ``X`` is a new float32 array of shape ``(len(archs), len(names))``, rows in the given order, columns
    the requested kinds concatenated in the order given (see the module docstring for each layout). All
    15,625 archs take well under a second; the per-kind tables are built once per process.
    """
    kinds = _check_kinds(kinds)
    ordinals = _ordinals(archs)
    X = np.concatenate([_table(kind)[ordinals] for kind in kinds], axis=1)
    return X, feature_names(kinds)


def onehot(archs: Iterable[ArchLike]) -> np.ndarray:
    """``(n, 30)`` float32 one-hot of each edge's op (layout in the module docstring)."""
    return encode(archs, ("onehot",))[0]


def live_route_counts(archs: Iterable[ArchLike]) -> np.ndarray:
    """``(n,)`` int: input-to-output routes free of ``none`` (0..4); 0 means the cell outputs zeros."""
    features, names = encode(archs, ("cost",))
    return features[:, names.index("live_routes")].astype(np.int64)


def path_encoding(archs: Iterable[ArchLike]) -> np.ndarray:
    """``(n, 84)`` float32 counts of live input-to-output routes per op sequence (module docstring)."""
    return encode(archs, ("path",))[0]


def cost_features(archs: Iterable[ArchLike]) -> np.ndarray:
    """``(n, 14)`` float32 exact costs and live-op counts (see the module docstring)."""
    return encode(archs, ("cost",))[0]
