"""The protocol-calibration study in its tiny setting: records resume, and the report's reliabilities are the
statistics of the recorded replicate pairs."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, require_shared
from scipy import stats


@pytest.fixture
def cal(monkeypatch):
    """The benchmark script as a module (importable by name, so its spawned workers find it too)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("protocol_calibration")


@pytest.mark.slow
def test_tiny_calibration_measures_every_setting_and_resumes(cal, tmp_path, capsys) -> None:
    cifar10_tar = require_shared("cifar10", "cifar10-jpeg.tar.gz")
    out = tmp_path / "cal.jsonl"
    args = ["--tiny", "--data", str(cifar10_tar), "--out", str(out), "--workers", "1", "--boot", "20"]
    assert cal.main(args) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 * 4 * 2  # budgets x archs x seeds
    rec = records[0]
    # every (sigma, draws, images) setting of the tiny plan, prefixes of one perturbation run
    for sigma, draws in ((0.05, (2,)), (0.2, (2, 3))):
        for m in draws:
            for n in (50, 100):
                assert 0.0 <= rec[f"flatness_r|s{sigma}|m{m}|n{n}"] <= 100.0
    assert {f"corr_acc_mean|n{k}" for k in (20, 40)} <= set(rec)
    table = capsys.readouterr().out
    assert "| tiny-a | flatness_r | s0.2 m3 n100 | 4 |" in table

    # the report's Spearman is scipy's on the two seeds' values
    frame = pd.DataFrame(records)
    sub = frame[frame.budget == "tiny-a"].sort_values(["arch", "seed"])
    col = "flatness_r|s0.2|m3|n100"
    pairs = sub.pivot(index="arch", columns="seed", values=col).to_numpy()
    report = cal.report(frame, boot=0)
    row = report[
        (report.budget == "tiny-a") & (report.metric == "flatness_r") & (report.setting == "s0.2 m3 n100")
    ]
    expected = stats.spearmanr(pairs[:, 0], pairs[:, 1])[0]
    assert row["spearman"].item() == pytest.approx(expected, nan_ok=True)
    rel = frame.assign(rel=frame["corr_acc_mean|n40"] / frame["test_acc"])
    derived = cal.derived(frame)
    np.testing.assert_allclose(derived["corr_acc_rel|n40"], rel["rel"])

    # a second call measures nothing new
    assert cal.main(args) == 0
    assert len(out.read_text().splitlines()) == len(records)
    assert "16 records" in capsys.readouterr().err
