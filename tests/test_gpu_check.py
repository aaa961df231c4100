"""``benchmarks/gpu_check.py``, the device check, as it must run on a bare GPU machine: from the repository
alone, with only PyTorch, numpy, pandas, scipy, OpenCV and scikit-image (the other packages blocked here);
``--tiny`` rehearses every section on the CPU; without CUDA it stops with one line; its JSON is rewritten
after every section, so a run cut short keeps what it measured."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
# what the GPU machine lacks: the project's other dependencies (module names) and this venv's extras
MISSING = ("pymoo", "xgboost", "ray", "nas_201_api", "nats_bench", "torchvision", "typer", "rich",
           "matplotlib", "pyarrow", "hypothesis")  # fmt: skip
SECTIONS = ("device", "sam step", "evaluation", "cuda graph", "flatness cuda vs cpu",
            "bf16 vs fp32 evaluation", "batchnorm frozen pass", "deterministic twice", "end to end",
            "candidates per gpu", "extrapolated")  # fmt: skip


def _bare_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python cannot import MISSING (a sitecustomize shim, inherited by the spawned
    workers) and does not have this repository on its path."""
    shim = tmp_path / "shim"
    shim.mkdir()
    lines = ["import sys", f"for name in {MISSING!r}:", "    sys.modules[name] = None  # import raises"]
    (shim / "sitecustomize.py").write_text("\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CUDA_VISIBLE_DEVICES")}
    return {**env, "PYTHONPATH": str(shim), "FLATNAS_CACHE": str(tmp_path / "cache")}


def _python(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_tiny_runs_every_section_with_only_the_gpu_machines_packages(tmp_path):
    env = _bare_env(tmp_path)
    blocked = _python(["-c", "import xgboost"], env, tmp_path)
    assert "ModuleNotFoundError" in blocked.stderr or "ImportError" in blocked.stderr  # the shim bites
    out = tmp_path / "out" / "gpu_check.json"
    done = _python([str(SCRIPT), "--tiny", "--out", str(out)], env, tmp_path)  # not from the repository
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert [s for s in SECTIONS if s in results] == list(SECTIONS)
    assert [name for name, values in results.items() if isinstance(values, dict) and "error" in values] == []
    assert results["device"]["package"] == str(ROOT / "flatnas_bench")  # this repository's package
    lines = done.stdout.splitlines()
    assert lines[:2] == ["| section | measure | value |", "|---|---|---|"]
    assert "| batchnorm frozen pass | changed | none |" in lines
    assert "| deterministic twice | columns that differ | none |" in lines
    flat = results["flatness cuda vs cpu"]  # CPU against CPU in --tiny: the same outcomes
    assert flat["outcomes that differ (%)"] == 0.0 and flat["max per-draw acc diff (points)"] == 0.0
    e2e = results["end to end"]
    assert e2e["row error"] is None and 0 <= e2e["corr_acc_mean"] <= 100 and e2e["flatness_r"] >= 0
    steps = results["sam step"]
    assert steps["flatnas all-conv3x3 fp32 ms/step"] > 0 and steps["proxy light fp32 img/s"] > 0
    per = results["candidates per gpu"]
    assert per["x1 img/s"] > 0 and per["x2 img/s"] > 0, per
    assert results["cuda graph"]["cuda graph"] == "n/a on the CPU"
    assert results["extrapolated"]["flatnas: 6,466 classes (h)"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible")
def test_without_cuda_it_stops_with_one_line(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = _python([str(SCRIPT), "--out", str(out)], _bare_env(tmp_path), tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("gpu_check: no CUDA device visible") and len(done.stderr.splitlines()) == 1
    assert not out.exists()


def _module(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


def test_the_json_is_rewritten_after_every_section_and_a_failing_one_is_one_line(tmp_path, monkeypatch):
    module = _module(monkeypatch)
    out = tmp_path / "gpu_check.json"

    def second() -> dict:
        return {"saw": sorted(json.loads(out.read_text()))}  # what a run cut short here would have kept

    def broken() -> dict:
        raise RuntimeError("CUDA error: an illegal memory access was encountered\ndetails")

    fake = [("first", lambda: {"value": 1}), ("second", second), ("broken", broken), ("after", dict)]
    monkeypatch.setattr(module, "sections", lambda run, deadline: fake)
    assert module.main(["--tiny", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["second"]["saw"] == ["device", "first"]
    assert results["broken"]["error"] == "RuntimeError: CUDA error: an illegal memory access was encountered"
    total = results["total seconds"]
    assert "after" in results and isinstance(total, float) and total >= 0


def test_prepare_writes_a_class_balanced_slice(tmp_path, monkeypatch):
    from helpers import make_imagefolder

    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    folder = make_imagefolder(tmp_path / "images", train_per_class=6, test_per_class=3)
    module = _module(monkeypatch)
    out = tmp_path / "slice.npz"
    assert module.main(["--prepare", "--source", str(folder), "--data", str(out)]) == 0
    with np.load(out) as f:
        assert f["train_x"].shape == (60, 32, 32, 3) and f["test_x"].shape == (30, 32, 32, 3)
        assert (
            np.bincount(f["train_y"]).tolist() == [6] * 10 and np.bincount(f["test_y"]).tolist() == [3] * 10
        )
    ds, source = module.load_dataset(str(out), module.SIZES["full"], tiny=False)
    assert source == str(out) and len(ds.train) == 60 and len(ds.test) == 30
    assert module.load_dataset(str(tmp_path / "none.npz"), module.SIZES["tiny"], tiny=False)[1] == "synthetic"
