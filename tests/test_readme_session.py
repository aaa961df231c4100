"""The README's "typical session on your own data" runs as written, at reduced settings: its commands are
read from README.md itself, and only sizes are shrunk (a tiny image folder, a few archs, a 4-channel
1-cell network for 1 epoch, one ensemble member)."""

from __future__ import annotations

import re
import shlex

import pandas as pd
import pytest
from conftest import ROOT
from helpers import TINY, make_imagefolder
from typer.testing import CliRunner

import cli.main  # noqa: F401  (registers every command)
from cli.app import app

SMALL = [f"--set={k}={v}" for k, v in {**TINY, "epochs": 1, "corruption_subset": 4}.items()]


def session_commands() -> list[str]:
    """The ``flatnas-bench`` lines of the README block that follows "A typical session"."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"A typical session[^\n]*\n+```bash\n(.*?)```", text, re.S)
    assert block, "README.md lost its typical-session block"
    return [line for line in block.group(1).splitlines() if line.startswith("flatnas-bench ")]


def reduced(command: str, data: str) -> list[str]:
    """The README command with the dataset replaced and its sizes shrunk; every name and option it uses
    is kept as written."""
    args = shlex.split(command)[1:]
    args = [data if a == "cifar-10-batches-py" else a for a in args]
    if args[0] == "bench":
        args[args.index("--archs") + 1] = "6"
        args += [*SMALL, "--no-progress", "--threads", "1"]
    elif args[0] == "retrain":
        args += SMALL
    elif args[0] == "fit-surrogate":
        args += ["--folds", "2", "--models", "1", "--param", "n_estimators=20"]
    elif args[0] == "search":
        args += ["--pop-size", "20", "--generations", "5"]
    return args


@pytest.mark.slow
def test_the_readme_session_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    data = str(make_imagefolder(tmp_path / "images", train_per_class=8, test_per_class=4))
    commands = session_commands()
    assert [shlex.split(c)[1] for c in commands] == ["info", "bench", "fit-surrogate", "search", "retrain"]
    runner = CliRunner()
    for command in commands:
        result = runner.invoke(app, reduced(command, data))
        assert result.exit_code == 0, (command, result.output, result.exception)
    front = pd.read_csv(tmp_path / "search" / "pareto.csv")
    report = pd.read_csv(tmp_path / "retrain" / "retrain.csv")
    assert set(front["arch"]) <= set(report["arch"])  # every pick retrained
    assert (report["role"].str.contains("baseline")).sum() == 1  # the best val_acc on sur/, by its short name
    assert report[["test_acc", "flatness_r", "corr_acc_mean"]].notna().all().all()
    assert (report["n_seeds"] == 1).all()
    ratio = report["corr_acc_mean"] / report["test_acc"].where(report["test_acc"] != 0)  # NaN at 0 %
    pd.testing.assert_series_equal(report["corr_acc_rel"], ratio, check_names=False)
