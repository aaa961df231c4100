"""``flatnas-bench info``: plain and JSON output, tables, one-line errors; in-process and as a subprocess."""

from __future__ import annotations

import doctest
import json
import subprocess
import sys

import pytest
from conftest import ROOT, require_shared
from typer.testing import CliRunner

from cli import info as info_module
from cli.main import app
from flatnas_bench.nb201.costs import arch_costs

INDEX0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
INDEX0_CANONICAL = (
    "|skip_connect~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|avg_pool_3x3~0|avg_pool_3x3~1|skip_connect~2|"
)
runner = CliRunner()


def info(*args: str):
    return runner.invoke(app, ["info", *args])


def assert_one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_plain_output() -> None:
    result = info(INDEX0)
    assert result.exit_code == 0, result.output
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if not line.startswith("class"))
    assert lines["arch"] == INDEX0 and lines["canonical"] == INDEX0_CANONICAL
    assert "class size  8 of 15,625 archs (6,466 classes)" in result.stdout
    assert lines["params"].startswith("0.129306 M  (C=16, N=5, cifar10")
    assert lines["flops"] == "15.64737 M MACs"


def test_json_output_and_size_options() -> None:
    result = info(INDEX0, "--json", "--dataset", "ImageNet16-120", "-C", "8", "-N", "1")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["canonical"] == INDEX0_CANONICAL and data["class_size"] == 8
    assert (data["C"], data["N"], data["num_classes"], data["resolution"]) == (8, 1, 120, 16)
    assert "nb201_index" not in data
    default = json.loads(info(INDEX0, "--json").stdout)
    assert (default["params_m"], default["flops_m"]) == (0.129306, 15.64737)
    small = arch_costs(INDEX0, C=8, N=1, num_classes=120, resolution=16)
    assert (data["params_m"], data["flops_m"]) == (small.params_m, small.flops_m) != (0.129306, 15.64737)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["|nor_conv_3x3~0|+|none~0|"], "invalid NB201 arch"),
        ([INDEX0.replace("~1", "~2", 1)], "reads from node '2'"),
        ([""], "empty string"),
        ([INDEX0, "--dataset", "mnist"], "unknown dataset 'mnist'"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args: list[str], needle: str) -> None:
    assert_one_line_error(info(*args), needle)


def test_an_interrupt_is_one_line_and_exit_130(monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(info_module, "arch_costs", interrupted)
    result = info(INDEX0)
    assert result.exit_code == 130, result.output
    assert result.stderr.strip() == "interrupted: finished results are kept (bench, loop, retrain resume)"


def test_missing_table_is_a_one_line_error(tmp_path) -> None:
    assert_one_line_error(info(INDEX0, "--table", str(tmp_path / "nope.csv")), "nope.csv")


def test_table_adds_index_and_metrics(nb201_csv) -> None:
    result = info(INDEX0, "--table", str(nb201_csv), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["nb201_index"] == 0
    assert data["metrics"]["cifar10_test_acc_200ep"] == pytest.approx(85.8633)
    plain = info(INDEX0, "--table", str(nb201_csv)).stdout
    assert "nb201 index" in plain and "cifar10_valid_acc_200ep" in plain


def test_nats_table_without_records_for_the_arch() -> None:
    nats = require_shared("nats-tss-fixture", "NATS-tss-v1_0-3ffb9-simple")
    data = json.loads(
        info("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "--table", str(nats), "--json").stdout
    )
    assert data["nb201_index"] == 8421 and data["metrics"] is None
    record = json.loads(info(INDEX0, "--table", str(nats), "--json").stdout)
    assert record["metrics"]["cifar10_params_m"] == record["params_m"]
    assert record["metrics"]["cifar10_flops_m"] == record["flops_m"]


def test_real_subprocess() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "cli.main", "info", INDEX0, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["flops_m"] == 15.64737
    bad = subprocess.run(
        [sys.executable, "-m", "cli.main", "info", "|bogus~0|"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: invalid NB201 arch")


def test_module_examples_run() -> None:
    assert doctest.testmod(info_module).failed == 0
