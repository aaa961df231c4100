"""The NB201 space: strict parsing (property-based), enumeration, isomorphism, sampling, neighbours."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from flatnas_bench.core.errors import ArchError
from flatnas_bench.nb201 import space
from flatnas_bench.nb201.space import (
    CONV1,
    CONV3,
    NONE,
    NUM_ARCHS,
    OPS,
    POOL,
    SKIP,
    Arch,
    all_archs,
    as_arch,
    canonical_archs,
    is_isomorphic,
    iso_class,
    sample_archs,
)

relaxed = settings(deadline=None)  # a shared CI machine's timing is not what these tests check
INDEX0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"

op_tuples = st.tuples(*[st.integers(0, len(OPS) - 1)] * 6)
archs = op_tuples.map(Arch)
# characters that occur in arch strings, plus a few that never should
parser_chars = st.sampled_from([*"|~+0123_abcmnoprstvxyz456 \t\n-.", "é", "\x00"])


def parses_to_itself_or_raises_arch_error(text: object) -> None:
    """The parser's contract: a string it accepts prints back to exactly that string; anything else is
    an ArchError (any other exception type propagates and fails the test)."""
    try:
        arch = Arch.from_str(text)  # type: ignore[arg-type]
    except ArchError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert str(arch) == text


# ---------------------------------------------------------------------------------------- parsing


@relaxed
@given(archs)
def test_valid_strings_round_trip(arch: Arch) -> None:
    text = str(arch)
    assert Arch.from_str(text) == arch
    assert str(Arch.from_str(text)) == text
    assert Arch.from_ops(arch.ops) == arch
    assert as_arch(text) == as_arch(list(arch.ops)) == as_arch(arch) == arch


@relaxed
@given(st.text(max_size=200))
@example("")
@example(" ")
@example("+")
@example("++")
@example("|+|+|")
@example("||+||||+||||")
def test_random_text_parses_exactly_or_raises(text: str) -> None:
    parses_to_itself_or_raises_arch_error(text)


@relaxed
@given(st.text(alphabet=parser_chars, max_size=120))
def test_random_near_grammar_text_parses_exactly_or_raises(text: str) -> None:
    parses_to_itself_or_raises_arch_error(text)


@st.composite
def mutated_strings(draw: st.DrawFn) -> str:
    text = str(draw(archs))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "space", "index", "edges", "nodes"]))
        pos = draw(st.integers(0, max(len(text) - 1, 0)))
        if kind == "insert":
            text = text[:pos] + draw(parser_chars) + text[pos:]
        elif kind == "delete" and text:
            text = text[:pos] + text[pos + 1 :]
        elif kind == "replace" and text:
            text = text[:pos] + draw(parser_chars) + text[pos + 1 :]
        elif kind == "space":
            text = text[:pos] + draw(st.sampled_from([" ", "\t", "\n", "\u00a0"])) + text[pos:]
        elif kind == "index":  # point one edge at another (or a non-existent) node
            sources = [k for k, ch in enumerate(text) if ch == "~"]
            if sources:
                k = draw(st.sampled_from(sources)) + 1
                text = text[:k] + draw(st.sampled_from("0123459")) + text[k + 1 :]
        elif kind == "edges":  # drop or duplicate one edge of one node
            nodes = text.split("+")
            j = draw(st.integers(0, len(nodes) - 1))
            edges = nodes[j].strip("|").split("|")
            e = draw(st.integers(0, len(edges) - 1))
            if draw(st.booleans()):
                del edges[e]
            else:
                edges.insert(e, edges[e])
            nodes[j] = "|" + "|".join(edges) + "|"
            text = "+".join(nodes)
        else:  # drop or repeat a whole node
            nodes = text.split("+")
            j = draw(st.integers(0, len(nodes) - 1))
            nodes = nodes[:j] + nodes[j + 1 :] if draw(st.booleans()) else nodes[: j + 1] + nodes[j:]
            text = "+".join(nodes)
    return text


@relaxed
@given(mutated_strings())
@example(INDEX0.replace("~1|", "~2|", 1))  # swapped node index
@example(INDEX0.replace("nor_conv_1x1", "nor_conv_5x5", 1))  # unknown op
@example(INDEX0 + "|")  # stray character
@example(INDEX0 + "+|none~0|none~1|none~2|none~3|")  # a fourth node
@example(INDEX0.replace("|skip_connect~2|", "|"))  # too few edges
@example(INDEX0.replace("skip_connect", "Skip_Connect"))  # case matters
def test_mutated_strings_parse_exactly_or_raise(text: str) -> None:
    parses_to_itself_or_raises_arch_error(text)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        (" " + INDEX0, "whitespace"),
        (INDEX0.replace("avg_pool_3x3", "max_pool_3x3"), "unknown op 'max_pool_3x3'"),
        (INDEX0.replace("+", "", 1), "2 nodes"),
        (INDEX0.replace("|skip_connect~1|+", "|+", 1), "node 2 has 1 edges"),
        (INDEX0.replace("skip_connect~1|+", "skip_connect~0|+", 1), "reads from node '0', expected 1"),
        (INDEX0.replace("~", "", 1), "lacks '~'"),
    ],
)
def test_error_messages_name_the_problem_and_show_the_format(text: str, needle: str) -> None:
    with pytest.raises(ArchError) as info:
        Arch.from_str(text)
    message = str(info.value)
    assert needle in message
    assert "expected 3 '+'-separated nodes" in message and "\n" not in message


HINT = space._FORMAT_HINT


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (7, "expected a string, got int"),
        ("", "empty string"),
        ("a b", "stray whitespace"),
        ("|none~0|", "1 nodes, expected 3"),
        ("|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 must start and end with '|'"),
        ("||+|none~0|none~1|+|none~0|none~1|none~2|", "edge '' of node 1 lacks '~'"),
        ("|none~0+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 must start and end with '|'"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 must start and end with '|'"),
        ("|none~0|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 has 2 edges, expected 1"),
        (
            "|none~0~1|+|none~0|none~1|+|none~0|none~1|none~2|",
            "edge 0 of node 1 reads from node '0~1', expected 0",
        ),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
        ((1, 2), "expected 6 op indices"),
        ((0, 1, 2, 3, 4, 5), "op index 5 is not an int in 0..4"),
        ((0, 1, 2, 3, 4, True), "op index True is not an int in 0..4"),
        (None, "expected a sequence of 6 op indices"),
        (2.5, "expected a sequence of 6 op indices"),
    ],
)
def test_every_error_message_exactly(value: object, reason: str) -> None:
    with pytest.raises(ArchError) as info:
        Arch.from_str(value) if isinstance(value, str | int) else Arch.from_ops(value)  # type: ignore[arg-type]
    assert str(info.value) == f"invalid NB201 arch {value!r}: {reason}; {HINT}"


def test_long_inputs_are_shown_cut_to_120_characters() -> None:
    def message(text: str) -> str:
        with pytest.raises(ArchError) as info:
            Arch.from_str(text)
        return str(info.value)

    fits = "x" * 118  # repr adds two quotes: 120 characters, shown whole
    assert message(fits) == f"invalid NB201 arch {fits!r}: 1 nodes, expected 3; {HINT}"
    cut = "x" * 119  # 121 characters: the first 117 and '...'
    assert message(cut) == f"invalid NB201 arch {repr(cut)[:117]}...: 1 nodes, expected 3; {HINT}"


def test_ordinal_and_sample_errors_exactly() -> None:
    with pytest.raises(ArchError) as info:
        Arch.from_ordinal(2.5)  # type: ignore[arg-type]
    assert str(info.value) == "ordinal 2.5 is not an integer"
    with pytest.raises(ArchError) as info:
        Arch.from_ordinal(NUM_ARCHS)
    assert str(info.value) == "ordinal 15625 outside 0..15624"
    with pytest.raises(ArchError) as info:
        sample_archs(6467, 0, unique=True)
    assert str(info.value) == "cannot sample 6467 distinct archs from 6466"


def test_parse_archs_equals_as_arch_for_few_and_many_values() -> None:
    few = [INDEX0, (0, 1, 2, 3, 4, 0), [4, 4, 4, 4, 4, 4]]
    assert space.parse_archs(few) == [as_arch(v) for v in few]
    many = [str(a) for a in all_archs()[:300]] + [
        (1, 1, 1, 1, 1, 1),
        [2, 2, 2, 2, 2, 2],
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    ]
    assert space.parse_archs(many) == [as_arch(v) for v in many]
    with pytest.raises(ArchError):
        space.parse_archs([*many, "not an arch"])


def test_iso_key_strings_are_the_nats_canonical_form() -> None:
    mixed = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|skip_connect~2|"
    assert space.iso_key(Arch.from_str(mixed).ops) == (
        "#+((0)@nor_conv_3x3)@avg_pool_3x3+((0)@nor_conv_3x3)@nor_conv_1x1+0"
    )
    assert space.iso_key((SKIP,) * 6) == "0+0+0+0"


junk = st.one_of(st.none(), st.integers(), st.floats(), st.binary(), st.lists(st.integers(-2, 7), max_size=7))


@relaxed
@given(junk)
def test_non_strings_raise_arch_error_or_are_valid_op_lists(value: object) -> None:
    try:
        arch = as_arch(value)  # type: ignore[arg-type]
    except ArchError:
        return
    assert isinstance(value, list) and tuple(value) == arch.ops


@pytest.mark.parametrize(
    "ops", [(0, 1, 2, 3, 4), (0, 1, 2, 3, 4, 5), (0, 1, 2, 3, 4, -1), (0.0,) * 6, (True,) * 6, "012340"]
)
def test_bad_op_tuples_raise(ops: tuple) -> None:
    with pytest.raises(ArchError):
        Arch.from_ops(ops)


# ----------------------------------------------------------------------------------- enumeration


def test_space_has_15625_archs_in_6466_classes() -> None:
    archs_ = all_archs()
    assert len(archs_) == len(set(archs_)) == NUM_ARCHS == 15_625
    reps = canonical_archs()
    assert len(reps) == len(set(reps)) == 6_466
    assert sum(rep.class_size for rep in reps) == NUM_ARCHS
    assert all(rep.is_canonical for rep in reps)
    assert len({str(arch) for arch in archs_}) == NUM_ARCHS


def test_ordinals_round_trip_over_the_whole_space() -> None:
    for k, arch in enumerate(all_archs()):
        assert arch.ordinal == k
        assert Arch.from_ordinal(k) == arch
    assert Arch.from_ordinal(np.int64(7)) == all_archs()[7]
    assert Arch.from_ordinal(0).ops == (NONE,) * 6 and Arch.from_ordinal(NUM_ARCHS - 1).ops == (POOL,) * 6


@pytest.mark.parametrize("bad", [-1, NUM_ARCHS, 3.0, "3", None])
def test_bad_ordinals_raise_arch_error(bad: object) -> None:
    with pytest.raises(ArchError):
        Arch.from_ordinal(bad)  # type: ignore[arg-type]


@relaxed
@given(archs)
def test_from_ops_and_ordinal_round_trip(arch: Arch) -> None:
    assert Arch.from_ops(np.array(arch.ops)) == arch
    assert Arch.from_ordinal(arch.ordinal) == arch
    assert hash(Arch.from_str(str(arch))) == hash(arch)


def test_ops_and_edges_follow_nb201_order() -> None:
    assert OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert space.EDGES == ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
    assert Arch.from_str(INDEX0).ops == (POOL, CONV1, SKIP, CONV1, SKIP, SKIP)


# ----------------------------------------------------------------------------------- isomorphism


def ops_with(base: tuple[int, ...], **edges: int) -> Arch:
    """``base`` with edges replaced by name: e01, e02, e12, e03, e13, e23."""
    names = ("e01", "e02", "e12", "e03", "e13", "e23")
    ops = list(base)
    for name, op in edges.items():
        ops[names.index(name)] = op
    return Arch(tuple(ops))


@relaxed
@given(op_tuples, st.integers(0, 4), st.integers(0, 4))
def test_edges_into_a_node_that_cannot_reach_the_output_do_not_matter(ops: tuple, a: int, b: int) -> None:
    dead2 = ops_with(ops, e23=NONE)  # node 2 feeds nothing
    assert is_isomorphic(dead2, ops_with(dead2.ops, e02=a, e12=b))
    dead1 = ops_with(ops, e12=NONE, e13=NONE)  # node 1 feeds nothing
    assert is_isomorphic(dead1, ops_with(dead1.ops, e01=a))


@relaxed
@given(op_tuples, st.integers(0, 4))
def test_ops_applied_to_a_zero_node_are_zero(ops: tuple, op: int) -> None:
    zero1 = ops_with(ops, e01=NONE)  # node 1 is zero, so every op on 1->2 and 1->3 acts like none
    assert is_isomorphic(zero1, ops_with(zero1.ops, e13=op, e12=NONE))


@relaxed
@given(archs)
def test_isomorphism_is_an_equivalence_with_a_canonical_member(arch: Arch) -> None:
    rep = arch.canonical()
    assert is_isomorphic(arch, arch) and is_isomorphic(arch, rep) and is_isomorphic(rep, arch)
    assert rep.canonical() == rep and rep in iso_class(arch) and arch in iso_class(rep)
    assert rep <= arch and rep == min(iso_class(arch))
    assert arch.class_size == len(iso_class(str(arch)))


def test_isomorphism_examples() -> None:
    conv3, pool, skip = CONV3, POOL, SKIP
    # a skip edge is the identity: conv3 on node 1 = skip(x) equals conv3 on x directly
    assert is_isomorphic(Arch((skip, 0, 0, 0, conv3, 0)), Arch((0, 0, 0, conv3, 0, 0)))
    # summation is commutative: conv3(x) + pool(x) whichever edge carries which
    assert is_isomorphic(Arch((skip, 0, 0, conv3, pool, 0)), Arch((skip, 0, 0, pool, conv3, 0)))
    # different ops, different functions
    assert not is_isomorphic(Arch((0, 0, 0, CONV1, 0, 0)), Arch((0, 0, 0, conv3, 0, 0)))
    # depth matters: conv3(conv3(x)) is not conv3(x) + conv3(x)
    assert not is_isomorphic(Arch((conv3, 0, 0, 0, conv3, 0)), Arch((0, 0, 0, conv3, conv3, 0)))
    # a zero output: all-none and every cell whose output is cut off form one class
    zero = Arch((NONE,) * 6)
    assert is_isomorphic(zero, Arch((conv3, conv3, conv3, 0, 0, 0)))
    assert zero.canonical() == zero and zero.class_size == 225


def test_zero_propagation_follows_nats_bench_convention() -> None:
    """NATS-Bench's canonical form (which defines the 6,466 count) treats a node as zero only when it has
    a single zero term; node 2 = none(x) + none(node 1) is the sum "#+#" and stays a distinct term. So
    these cells, whose output is zero too, are not in the all-none class."""
    zero = Arch((NONE,) * 6)
    assert not is_isomorphic(zero, Arch((0, 0, 0, 0, 0, SKIP)))
    assert not is_isomorphic(zero, Arch((0, 0, 0, 0, 0, CONV3)))
    assert is_isomorphic(Arch((0, 0, 0, 0, 0, SKIP)), Arch((0, 0, 0, 0, SKIP, SKIP)))


# ------------------------------------------------------------------------------ sampling, neighbours


def test_sampling_is_seeded_and_without_replacement() -> None:
    first = sample_archs(50, seed=3)
    assert first == sample_archs(50, seed=3)
    assert first != sample_archs(50, seed=4)
    assert len(set(first)) == 50
    assert sample_archs(0, seed=0) == []
    assert sorted(sample_archs(NUM_ARCHS, seed=1)) == list(all_archs())


def test_unique_sampling_gives_distinct_canonical_representatives() -> None:
    picks = sample_archs(200, seed=0, unique=True)
    assert picks == sample_archs(200, seed=0, unique=True)
    assert all(arch.is_canonical for arch in picks)
    assert len({arch.iso_key for arch in picks}) == 200
    assert set(sample_archs(6_466, seed=2, unique=True)) == set(canonical_archs())


@pytest.mark.parametrize(("n", "unique"), [(-1, False), (NUM_ARCHS + 1, False), (6_467, True)])
def test_impossible_sample_sizes_raise(n: int, unique: bool) -> None:
    with pytest.raises(ArchError):
        sample_archs(n, seed=0, unique=unique)


@relaxed
@given(archs)
def test_neighbours_are_the_24_archs_one_edge_away(arch: Arch) -> None:
    neighbours = arch.neighbours()
    assert len(neighbours) == len(set(neighbours)) == 24
    assert all(sum(a != b for a, b in zip(arch.ops, n.ops, strict=True)) == 1 for n in neighbours)


def test_module_examples_run() -> None:
    result = doctest.testmod(space)
    assert result.failed == 0 and result.attempted >= 3  # deleting the examples fails too
