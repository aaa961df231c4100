"""``benchmarks/gpu_check.py --tiny``: every section of the prepared device check runs on the CPU, prints
a Markdown table and writes JSON with real figures (the full run waits for a lent GPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_gpu_check_tiny_runs_every_section(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "gpu_check.json"
    module.main(["--tiny", "--out", str(out)])
    results = json.loads(out.read_text())
    table = capsys.readouterr().out
    assert table.splitlines()[:2] == ["| section | measure | value |", "|---|---|---|"]
    assert results["device"]["name"] == "cpu"
    training = results["training (flatnas settings)"]
    for arch in ("all-conv3x3", "median", "all-skip"):
        assert training[f"{arch} fp32 img/s"] > 0
    # the heaviest arch trains slower than the lightest
    assert training["all-conv3x3 fp32 img/s"] < training["all-skip fp32 img/s"]
    per = results["candidates per device"]
    assert per["x1 img/s"] > 0 and per["x2 img/s"] > 0, per
    assert results["bf16 vs fp32"]["bf16 vs fp32"].startswith("n/a")
    assert results["vs train_speed baseline"]["ratio"] > 0
    extra = results["extrapolated"]
    assert extra["flatnas: 6,466 classes (h)"] > 0 and extra["nb201 (200 epochs): 6,466 classes (h)"] > 0, (
        extra
    )
    assert all("error" not in section for section in results.values() if isinstance(section, dict))
    assert f"| extrapolated | speedup used | {extra['speedup used']} |" in table
