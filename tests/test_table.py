"""The benchmark table: NB201's CSV, NATS-Bench's directory, the official .pth file and our own SQLite
results load into one type and answer the same queries; lookups never return -1 and bad files fail with
one line."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import require_shared

from flatnas_bench.core.errors import ArchError, TableError
from flatnas_bench.core.protocol import get_protocol
from flatnas_bench.nb201.space import Arch, all_archs, canonical_archs, iso_class
from flatnas_bench.tables.readers import load_table, read_csv
from flatnas_bench.tables.store import ResultStore
from flatnas_bench.tables.table import BenchTable

INDEX0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
INDEX1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
NATS_DIR = ("nats-tss-fixture", "NATS-tss-v1_0-3ffb9-simple")


@pytest.fixture(scope="module")
def nb201(nb201_csv) -> BenchTable:
    return load_table(nb201_csv)


@pytest.fixture(scope="module")
def nats() -> BenchTable:
    return load_table(require_shared(*NATS_DIR))


def a_class_with(size: int) -> tuple[Arch, ...]:
    """The first isomorphism class with at least ``size`` members whose canonical form is not the rest."""
    return next(iso_class(a) for a in canonical_archs() if len(iso_class(a)) >= size)


# ------------------------------------------------------------------------------------------ real tables
def test_nb201_csv_loads_fast_in_a_few_mb(nb201_csv):
    times = []
    for _ in range(3):
        start = time.perf_counter()
        table = load_table(nb201_csv)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    load_table(nb201_csv)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(table) == 15_625 and min(times) < 1.0, times
    assert peak < 30e6, f"peak {peak / 1e6:.1f} MB"
    assert table.metrics[:3] == (
        "cifar10_valid_acc_200ep",
        "cifar10_valid_test_acc_200ep",
        "cifar10_test_acc_200ep",
    )


def test_lookups_by_string_ops_arch_and_index_agree(nb201):
    metric = "cifar10_test_acc_200ep"
    arch = Arch.from_str(INDEX1)
    got = {nb201.get(key, metric) for key in (INDEX1, arch.ops, list(arch.ops), arch, 1, np.int64(1))}
    assert got == {93.66}
    assert nb201.index_of(INDEX1) == 1 and nb201.index_of(arch.ops) == 1 and nb201.index_of(0) == 0
    assert nb201.row(0)[metric] == pytest.approx(85.8633)
    best = int(np.argmax(nb201.values(metric)))
    assert nb201.values(metric)[best] == pytest.approx(94.3733)
    assert nb201.values(metric, [INDEX1, 0]).tolist() == [93.66, 85.8633]


def test_unknown_archs_and_indices_raise_never_minus_one(nb201):
    with pytest.raises(TableError, match="NB201 index 15625 is not in"):
        nb201.get(15_625, "cifar10_test_acc_200ep")
    with pytest.raises(ArchError, match="unknown op"):
        nb201.get("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "cifar10_test_acc_200ep")
    small = BenchTable.from_frame(pd.DataFrame({"arch": [INDEX1], "x_acc": [1.0]}))
    with pytest.raises(TableError, match=r"nor any isomorphic arch\) is not in DataFrame"):
        small.row(INDEX0)
    with pytest.raises(TableError, match="has no NB201 indices"):
        small.get(1, "x_acc")
    assert small.index_of(INDEX1) is None and INDEX1 in small and INDEX0 not in small


def test_metric_names_are_explicit_with_close_names_on_a_miss(nb201):
    with pytest.raises(TableError, match=r"ambiguous metric 'cifar10_test_acc'.*_200ep, .*_12ep_1seed"):
        nb201.get(0, "cifar10_test_acc")
    with pytest.raises(
        TableError, match=r"unknown metric 'cifar10_tst_acc_200ep'.*close names: cifar10_test_acc_200ep"
    ):
        nb201.values("cifar10_tst_acc_200ep")
    with pytest.raises(TableError, match="unknown metric 'val_acc'"):
        nb201.get(0, "val_acc")


def test_nats_parent_directory_finds_its_one_archive(nats, tmp_path):
    assert load_table(require_shared(NATS_DIR[0])).archs == nats.archs
    with pytest.raises(TableError, match=r"not a NATS-Bench topology fast-mode archive \(no meta"):
        load_table(tmp_path)


def test_nats_fixture_and_nb201_csv_answer_alike(nats, nb201):
    assert len(nats) == 3 and sorted(nats.index_of(a) for a in nats.archs) == [0, 11, 284]
    shared = [m for m in nats.metrics if m in nb201.metrics]
    assert set(shared) == set(nb201.metrics)  # every NB201 CSV column, under the same name
    for index in (0, 11, 284):
        for metric in shared:
            assert nats.get(index, metric) == pytest.approx(nb201.get(index, metric), abs=6e-4), (
                index,
                metric,
            )
    assert nats.get(INDEX0, "cifar10_test_acc_200ep") == pytest.approx(85.8633, abs=1e-4)
    assert nats.get(INDEX0, "cifar10_test_acc_12ep_1seed") == pytest.approx(69.55)
    assert nats.get(0, "cifar10_params_m") == pytest.approx(0.129306)
    assert nats.get(0, "cifar10_flops_m") == pytest.approx(15.64737)
    assert "cifar10_valid_acc_12ep" in nats.metrics  # two seeds at 12 epochs: a mean, no "_1seed"
    assert nats.index_of(INDEX1) == 1  # the meta file knows every index ...
    with pytest.raises(TableError, match="is not in"):
        nats.get(1, "cifar10_test_acc_200ep")  # ... the fixture holds records of three only


def test_joined_latency_table(nb201):
    latency = load_table(require_shared("nb201", "nb201_latency_help.csv"))
    both = nb201.join(latency)
    assert len(both) == 15_625 and both.metrics[: len(nb201.metrics)] == nb201.metrics
    assert both.get(0, "pixel3_ms") == pytest.approx(3.6058)
    assert both.get(INDEX1, "cifar10_test_acc_200ep") == 93.66 and both.index_of(INDEX1) == 1
    with pytest.raises(TableError, match="both have cifar10"):
        nb201.join(nb201)


def test_class_frame_has_one_row_per_isomorphism_class(nb201):
    frame = nb201.class_frame()
    assert len(frame) == 6_466 and frame["n_rows"].sum() == 15_625
    members = a_class_with(3)
    row = frame.set_index("arch").loc[str(members[0])]
    expected = np.mean([nb201.get(a, "cifar10_test_acc_200ep") for a in members])
    assert row["cifar10_test_acc_200ep"] == pytest.approx(expected)


# ---------------------------------------------------------------------------------- isomorph lookups
def test_canonical_only_table_answers_for_every_isomorph():
    reps = [a for a in canonical_archs() if len(iso_class(a)) > 1][:50]
    table = BenchTable.from_frame(
        pd.DataFrame({"arch": [str(a) for a in reps], "acc": np.arange(50.0)}), source="ours"
    )
    for k, rep in enumerate(reps):
        for member in iso_class(rep):
            assert table.get(member, "acc") == k
    assert len(table) == 50 and table.to_frame()["arch"].tolist() == [str(a) for a in reps]


def test_left_join_of_a_canonical_only_table_fills_every_isomorph(nb201):
    reps = [a for a in canonical_archs() if len(iso_class(a)) > 1][:50]
    ours = BenchTable.from_frame(pd.DataFrame({"arch": [str(a) for a in reps], "acc": np.arange(50.0)}))
    both = nb201.join(ours, how="left")
    assert len(both) == 15_625 and np.isfinite(both.values("acc")).sum() == sum(
        len(iso_class(a)) for a in reps
    )
    assert len(nb201.join(ours)) == sum(len(iso_class(a)) for a in reps)


def test_several_members_of_a_class_average_for_a_missing_one():
    a, b, c = a_class_with(3)[:3]
    table = BenchTable.from_frame(pd.DataFrame({"arch": [str(a), str(b)], "acc": [1.0, 3.0]}))
    assert table.get(a, "acc") == 1.0 and table.get(b, "acc") == 3.0  # own rows first
    assert table.get(c, "acc") == 2.0 and table.row(c) == {"acc": 2.0}


def test_values_are_read_only_and_frames_are_copies():
    table = BenchTable.from_frame(
        pd.DataFrame({"arch": [INDEX0, INDEX1], "index": [0, 1], "acc": [1.0, 2.0]})
    )
    with pytest.raises(ValueError, match="read-only"):
        table.values("acc")[0] = 5.0
    frame = table.to_frame()
    frame.loc[0, "acc"] = 5.0
    assert table.get(0, "acc") == 1.0 and frame["index"].tolist() == [0, 1]


def test_csv_floats_read_back_bit_for_bit(tmp_path):
    """read_csv (the project's one CSV reader) returns every written double exactly, under pandas 2 as under
    pandas 3; pandas 2's default parser reads the first value as 47.7 and is off by one ulp on about one in
    seven random doubles."""
    values = np.concatenate(
        [[47.699999999999996, 1.5164156111404299], np.random.default_rng(0).uniform(0, 100, 3000)]
    )
    pd.DataFrame({"x": values}).to_csv(tmp_path / "f.csv", index=False)
    back = read_csv(tmp_path / "f.csv")["x"].to_numpy()
    assert back.tobytes() == values.tobytes()


def test_parquet_round_trip(tmp_path, nb201):
    path = tmp_path / "nb201.parquet"
    nb201.to_frame().to_parquet(path)
    back = load_table(path)
    assert back.metrics == nb201.metrics and back.index_of(INDEX1) == 1
    np.testing.assert_array_equal(
        back.values("cifar100_test_acc_200ep"), nb201.values("cifar100_test_acc_200ep")
    )


# -------------------------------------------------------------------------------------- corrupt inputs
def write(path, text: str | bytes):
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "benchmark table not found"),
        ("empty.csv", "", "is empty"),
        ("blank.csv", "\n\n", "has no columns"),
        ("garbage.csv", bytes(range(256)) * 4, "unknown table format"),
        ("notes.docx", "arch,acc\n", "unknown table format"),
        ("noarch.csv", "name,acc\nx,1\n", r"no arch column 'arch' \(columns: name, acc\); pass arch_column="),
        (
            "badarch.csv",
            f"arch,acc\n{INDEX0},1\n|nor_conv_3x3~0|+|none~0|,2\n",
            "malformed arch string in row 1",
        ),
        (
            "dupe.csv",
            f"arch,acc\n{INDEX0},1\n{INDEX1},2\n{INDEX0},3\n",
            "duplicate rows.*row 2 repeats row 0",
        ),
        ("badindex.csv", f"index,arch,acc\n0,{INDEX0},1\n-3,{INDEX1},2\n", "bad NB201 index in row 1"),
        ("mixed.csv", f"arch,acc\n{INDEX0},1\n{INDEX1},n/a?\n", "column 'acc' .* mixes numbers and text"),
        ("garbage.pth", b"\x80\x02garbage", "cannot read .* as a torch file"),
        ("fake.sqlite", b"SQLite format 3\x00" + b"\x00" * 200, "SQLite"),
        ("fake.parquet", b"PAR1 but not really", "cannot read"),
        ("fake.pbz2", b"BZh91AY&SY garbage", "cannot read .* NATS-Bench"),
    ],
)
def test_bad_files_raise_one_line(tmp_path, name, content, message):
    path = tmp_path / name if content is None else write(tmp_path / name, content)
    with pytest.raises(TableError, match=message) as info:
        load_table(path)
    assert "\n" not in str(info.value)


def test_wrong_directory_and_custom_arch_column(tmp_path):
    with pytest.raises(TableError, match="not a NATS-Bench topology fast-mode archive"):
        load_table(tmp_path)
    path = write(tmp_path / "genotypes.csv", f"genotype,acc\n{INDEX1},2.5\n")
    assert load_table(path, arch_column="genotype").get(INDEX1, "acc") == 2.5


def test_a_torch_file_that_is_not_nb201(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "model.pth")
    with pytest.raises(TableError, match="not a NAS-Bench-201 benchmark"):
        load_table(tmp_path / "model.pth")


# ------------------------------------------------------------------------- official NAS-Bench-201 .pth
EVAL_SETS = {
    "cifar10-valid": ("x-valid", "ori-test"),
    "cifar10": ("ori-test",),
    "cifar100": ("x-valid", "x-test", "ori-test"),
    "ImageNet16-120": ("x-valid", "x-test", "ori-test"),
}


def results_count(arch: str, dataset: str, seed: int, epochs: int, acc: float) -> dict:
    """One trial as the official file stores it: ``ResultsCount.state_dict()``."""
    sets = EVAL_SETS[dataset]
    per_epoch = {f"{s}@{e}": acc + k + e / epochs for k, s in enumerate(sets) for e in range(epochs)}
    return {
        "name": f"{dataset}-{seed}",
        "net_state_dict": None,
        "train_acc1es": {e: acc for e in range(epochs)},
        "train_acc5es": None,
        "train_losses": {e: 1.0 for e in range(epochs)},
        "train_times": {e: 7.5 for e in range(epochs)},
        "arch_config": {"channel": 16, "num_cells": 5, "arch_str": arch, "class_num": 10},
        "params": 0.1 + seed * 1e-9,
        "flop": 15.0,
        "seed": seed,
        "epochs": epochs,
        "latency": [0.01],
        "eval_names": list(sets),
        "eval_acc1es": per_epoch,
        "eval_times": {key: 1.0 for key in per_epoch},
        "eval_losses": {key: 1.0 for key in per_epoch},
    }


def arch_results(index: int, arch: str, epochs: int, seeds: dict[str, list[int]], base: float) -> dict:
    """One arch at one fidelity as the official file stores it: ``ArchResults.state_dict()``."""
    return {
        "arch_index": index,
        "arch_str": arch,
        "all_results": {
            (data, seed): results_count(arch, data, seed, epochs, base + seed / 100)
            for data, data_seeds in seeds.items()
            for seed in data_seeds
        },
        "dataset_seed": seeds,
        "clear_net_done": True,
    }


def fake_nb201_file() -> dict:
    meta = [str(a) for a in all_archs()[:5]]
    full3 = {data: [777, 888, 999] for data in EVAL_SETS}
    full1 = {data: [777] for data in EVAL_SETS}
    less = {"cifar10-valid": [111, 777], "cifar10": [111], "cifar100": [111], "ImageNet16-120": [111]}
    infos = {
        0: {
            "full": arch_results(0, meta[0], 200, full3, 80.0),
            "less": arch_results(0, meta[0], 12, less, 60.0),
        },
        3: {
            "full": arch_results(3, meta[3], 200, full1, 70.0),
            "less": arch_results(3, meta[3], 12, less, 50.0),
        },
    }
    return {"meta_archs": meta, "arch2infos": infos, "evaluated_indexes": [0, 3]}


@pytest.mark.parametrize("zipped", [True, False])
def test_official_pth_matches_the_official_api(tmp_path, zipped):
    from nas_201_api import NASBench201API

    data = fake_nb201_file()
    path = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    torch.save(data, path, _use_new_zipfile_serialization=zipped)
    table = load_table(path)
    api = NASBench201API(data, verbose=False)
    assert len(table) == 2 and [table.index_of(a) for a in table.archs] == [0, 3]
    assert table.index_of(str(all_archs()[4])) == 4  # the meta list covers archs without records
    for index in (0, 3):
        for hp, suffix in (("200", "200ep"), ("12", "12ep")):
            c10v = api.get_more_info(index, "cifar10-valid", hp=hp, is_random=False)
            c10 = api.get_more_info(index, "cifar10", hp=hp, is_random=False)
            c100 = api.get_more_info(index, "cifar100", hp=hp, is_random=False)
            one = "_1seed" if hp == "12" else ""
            assert table.get(index, f"cifar10_valid_acc_{suffix}") == pytest.approx(c10v["valid-accuracy"])
            assert table.get(index, f"cifar10_valid_test_acc_{suffix}") == pytest.approx(
                c10v["test-accuracy"]
            )
            assert table.get(index, f"cifar10_test_acc_{suffix}{one}") == pytest.approx(c10["test-accuracy"])
            assert table.get(index, f"cifar100_valid_acc_{suffix}{one}") == pytest.approx(
                c100["valid-accuracy"]
            )
            assert table.get(index, f"cifar100_test_acc_{suffix}{one}") == pytest.approx(
                c100["test-accuracy"]
            )
        assert table.get(index, "cifar10_params_m") == pytest.approx(
            api.get_cost_info(index, "cifar10", "200")["params"]
        )
    assert table.get(0, "cifar10_test_acc_200ep") == pytest.approx(80.0 + 8.88 + 199 / 200)  # mean of 3 seeds


# ----------------------------------------------------------------------------- NATS-Bench single file
def test_nats_single_file_reads_like_the_directory(tmp_path, nats):
    from nats_bench.api_utils import pickle_load, pickle_save

    folder = require_shared(*NATS_DIR)
    records = {i: pickle_load(str(folder / f"{i:06d}.pickle.pbz2")) for i in (0, 11, 284)}
    meta = pickle_load(str(folder / "meta.pickle.pbz2"))
    path = tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2"
    pickle_save(
        {"meta_archs": meta["meta_archs"], "arch2infos": records, "evaluated_indexes": [0, 11, 284]},
        str(path.with_suffix("")),  # pickle_save appends ".pbz2" itself
    )
    single = load_table(path)
    assert single.metrics == nats.metrics
    np.testing.assert_allclose(single.to_frame()[list(nats.metrics)], nats.to_frame()[list(nats.metrics)])


# ---------------------------------------------------------------------------------- our result tables
def result_rows(protocol: str = "proxy", phash: str = "abc123abc123") -> pd.DataFrame:
    conv = Arch.from_ops((3, 3, 3, 3, 3, 3)).canonical()
    skip = a_class_with(2)[0]
    rows = [
        (conv, 0, 60.0, 2.0, None),
        (conv, 1, 62.0, 4.0, None),
        (conv, 2, np.nan, np.nan, "diverged: loss nan at epoch 2 step 13"),
        (skip, 0, 30.0, 1.0, None),
    ]
    return pd.DataFrame(
        {
            "arch": [str(r[0]) for r in rows],
            "protocol": protocol,
            "protocol_hash": phash,
            "seed": [r[1] for r in rows],
            "val_acc": [r[2] for r in rows],
            "flatness_r": [r[3] for r in rows],
            "corr_acc_mean": np.nan,
            "device": "cpu",
            "error": [r[4] for r in rows],
        }
    )


def test_from_results_averages_successful_seeds():
    frame = result_rows()
    table = BenchTable.from_results(frame, "cifar10", "proxy")
    conv = Arch.from_ops((3, 3, 3, 3, 3, 3))
    assert table.metrics == ("cifar10_val_acc_proxy", "cifar10_flatness_r_proxy", "cifar10_n_seeds_proxy")
    assert table.row(conv) == {
        "cifar10_val_acc_proxy": 61.0,
        "cifar10_flatness_r_proxy": 3.0,
        "cifar10_n_seeds_proxy": 2.0,
    }
    member = a_class_with(2)[1]  # a non-canonical isomorph of a stored canonical arch
    assert table.get(member, "cifar10_val_acc_proxy") == 30.0
    with pytest.raises(TableError, match=r"no rows of protocol 'flatnas'.*protocols: proxy"):
        BenchTable.from_results(frame, "cifar10", "flatnas")
    two = pd.concat([frame, result_rows(phash="def456def456")])
    with pytest.raises(TableError, match=r"2 configurations.*pass protocol_hash="):
        BenchTable.from_results(two, "cifar10", "proxy")
    assert len(BenchTable.from_results(two, "cifar10", "proxy", protocol_hash="def456def456")) == 2
    with pytest.raises(TableError, match=r"duplicate rows.*seed 0 repeats"):
        BenchTable.from_results(pd.concat([frame, frame.iloc[:1]]), "cifar10", "proxy")


def test_our_sqlite_table_and_its_exports_load_alike(tmp_path):
    protocol = get_protocol("proxy", dataset="cifar100")
    path = tmp_path / "bench.sqlite"
    with ResultStore(path) as store:
        store.add_protocol(protocol)
        for row in result_rows(protocol.name, protocol.hash).to_dict("records"):
            store.add({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()})
        store.export(tmp_path / "bench.csv")
    table = load_table(path)
    assert table.get((3, 3, 3, 3, 3, 3), "cifar100_val_acc_proxy") == 61.0  # dataset from the stored card
    assert "cifar100_corr_acc_mean_proxy" not in table.metrics  # never measured
    # the export names each row's dataset: an override of the preset loads on its own
    assert set(read_csv(tmp_path / "bench.csv")["dataset"]) == {"cifar100"}
    exported = load_table(tmp_path / "bench.csv")
    assert exported.metrics == table.metrics
    np.testing.assert_array_equal(
        exported.values("cifar100_flatness_r_proxy"), table.values("cifar100_flatness_r_proxy")
    )
    bare = read_csv(tmp_path / "bench.csv").drop(columns="dataset")  # an export made before 0.3
    bare.to_csv(tmp_path / "bare.csv", index=False)
    assert load_table(tmp_path / "bare.csv", dataset="cifar100").metrics == table.metrics
    with pytest.raises(TableError, match=r"cannot tell which dataset protocol 'proxy'.*pass dataset="):
        load_table(tmp_path / "bare.csv")  # an override of the preset: its dataset is not the registry's
    preset = get_protocol("proxy")
    result_rows(preset.name, preset.hash).to_csv(tmp_path / "preset.csv", index=False)
    assert load_table(tmp_path / "preset.csv").metrics[0] == "cifar10_val_acc_proxy"  # the preset's dataset
