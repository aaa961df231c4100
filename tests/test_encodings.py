"""Feature encodings: layouts and names, agreement with plain-Python references, speed over the space."""

from __future__ import annotations

import doctest
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flatnas_bench.core.errors import ArchError, ConfigError
from flatnas_bench.nb201 import encodings
from flatnas_bench.nb201.costs import cost_arrays
from flatnas_bench.nb201.encodings import (
    FEATURE_VERSION,
    KINDS,
    cost_features,
    encode,
    feature_names,
    live_route_counts,
    onehot,
    path_encoding,
)
from flatnas_bench.nb201.space import CONV1, CONV3, NONE, NUM_ARCHS, OPS, Arch, all_archs

relaxed = settings(deadline=None)  # a shared CI machine's timing is not what these tests check
archs = st.tuples(*[st.integers(0, len(OPS) - 1)] * 6).map(Arch)
ROUTES = ((3,), (0, 4), (1, 5), (0, 2, 5))  # input-to-output routes as edge indices, written out by hand


def live_routes(arch: Arch) -> list[tuple[int, ...]]:
    return [route for route in ROUTES if all(arch.ops[k] != NONE for k in route)]


def test_names_and_sizes() -> None:
    X, names = encode(all_archs()[:3])
    assert X.shape == (3, 128) and X.dtype == np.float32
    assert len(names) == len(set(names)) == 128
    assert [len(feature_names([kind])) for kind in KINDS] == [30, 84, 14]
    assert names[:5] == [f"onehot:0->1:{op}" for op in OPS]
    assert names[30:34] == [f"path:{op}" for op in OPS[1:]]
    assert names[34] == "path:skip_connect>skip_connect" and names[113] == "path:" + ">".join([OPS[4]] * 3)
    assert names[114:116] == ["params_m", "flops_m"]
    assert isinstance(FEATURE_VERSION, str) and FEATURE_VERSION


@relaxed
@given(archs)
def test_onehot_marks_each_edges_op(arch: Arch) -> None:
    X = onehot([arch]).reshape(6, 5)
    assert (X.sum(axis=1) == 1).all()
    assert tuple(X.argmax(axis=1)) == arch.ops


@relaxed
@given(archs)
def test_path_encoding_counts_live_route_op_sequences(arch: Arch) -> None:
    expected: dict[str, int] = {}
    for route in live_routes(arch):
        name = "path:" + ">".join(OPS[arch.ops[k]] for k in route)
        expected[name] = expected.get(name, 0) + 1
    X, names = encode([arch], ("path",))
    assert {n: int(v) for n, v in zip(names, X[0], strict=True) if v} == expected


@relaxed
@given(archs)
def test_cost_features_match_plain_python(arch: Arch) -> None:
    row = dict(zip(feature_names(["cost"]), cost_features([arch])[0].tolist(), strict=True))
    params_m, flops_m = cost_arrays()
    assert row["params_m"] == pytest.approx(params_m[arch.ordinal], rel=1e-6)
    assert row["flops_m"] == pytest.approx(flops_m[arch.ordinal], rel=1e-6)
    for op, name in enumerate(OPS):
        assert row[f"count:{name}"] == arch.ops.count(op)
    routes = live_routes(arch)
    live_edges = {k for route in routes for k in route}
    for op, name in enumerate(OPS[1:], start=1):
        assert row[f"live:{name}"] == sum(arch.ops[k] == op for k in live_edges)
    assert row["live_routes"] == len(routes)
    assert row["longest_live_route"] == max((len(r) for r in routes), default=0)
    convs = [sum(arch.ops[k] in (CONV1, CONV3) for k in r) for r in routes]
    assert row["max_live_convs"] == max(convs, default=0)


def test_kinds_concatenate_in_the_order_asked_and_rows_follow_the_input() -> None:
    picks = [all_archs()[k] for k in (9_000, 3, 15_624, 3)]
    X, _ = encode(picks)
    Y, reversed_names = encode(picks, ("cost", "path", "onehot"))
    assert reversed_names == feature_names(["cost"]) + feature_names(["path"]) + feature_names(["onehot"])
    assert np.array_equal(Y, np.concatenate([X[:, 114:], X[:, 30:114], X[:, :30]], axis=1))
    assert np.array_equal(X[1], X[3])
    mixed = [str(picks[0]), picks[1].ops, list(picks[2].ops), picks[3]]
    assert np.array_equal(encode(mixed)[0], X)
    assert np.array_equal(path_encoding(picks), X[:, 30:114])
    assert encode(picks, "onehot")[1] == feature_names(["onehot"])


def test_results_are_fresh_arrays() -> None:
    X, _ = encode(all_archs()[:2])
    X[:] = -1
    assert (encode(all_archs()[:2])[0] >= 0).all()


def test_empty_input_and_bad_kinds() -> None:
    X, names = encode([])
    assert X.shape == (0, 128) and len(names) == 128
    with pytest.raises(ConfigError, match="zero_cost"):
        encode(all_archs()[:1], ("onehot", "zero_cost"))
    with pytest.raises(ConfigError):
        encode(all_archs()[:1], ())
    with pytest.raises(ConfigError, match="distinct"):
        encode(all_archs()[:1], ("path", "path"))
    with pytest.raises(ArchError):
        encode(["|none~0|"])


def test_encoding_the_whole_space_takes_well_under_a_second() -> None:
    encodings._table.cache_clear()
    start = time.perf_counter()
    X, _ = encode(all_archs())
    elapsed = time.perf_counter() - start
    assert X.shape == (NUM_ARCHS, 128)
    assert elapsed < 1.0  # measured: about 0.05 s cold, 0.01 s warm
    assert len(np.unique(X[:, :30], axis=0)) == NUM_ARCHS


def test_module_examples_run() -> None:
    result = doctest.testmod(encodings)
    assert result.failed == 0 and result.attempted >= 3  # deleting the examples fails too


def test_live_route_counts_are_int_counts_of_none_free_routes() -> None:
    cells = [
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|",
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|",
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~0|+|skip_connect~0|none~1|+|none~0|none~1|skip_connect~2|",
    ]
    counts = live_route_counts(cells)
    assert counts.dtype == np.int64 and counts.tolist() == [4, 3, 0, 1]  # by hand over ROUTES


def test_unknown_feature_kinds_are_named_exactly() -> None:
    with pytest.raises(ConfigError) as info:
        feature_names(["onehot", "graph"])
    assert str(info.value) == (
        "feature kinds must be distinct names from onehot, path, cost; got ['onehot', 'graph']"
    )
