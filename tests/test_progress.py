"""Progress lines for logs: a start line, one line per finished candidate, a heartbeat between them."""

from __future__ import annotations

import io
import re
import time

from flatnas_bench.bench.progress import ProgressLog, Silent, progress_display

STAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "


class _Job:
    arch = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def test_log_lines_per_candidate_and_heartbeat():
    out = io.StringIO()
    with ProgressLog("bench proxy abc on serial x1", out, interval=0.05) as log:
        log.note("loading data")
        log.begin(total=2, skipped=3)
        log.started(_Job())
        log.finished({"arch": _Job.arch, "seed": 0, "val_acc": 47.123, "flatness_r": 0.8, "train_sec": 2.0,
                      "eval_sec": 0.5, "error": None})  # fmt: skip
        log.started(_Job())
        time.sleep(0.3)  # nothing finishes: the heartbeat keeps the log alive
        log.finished({"arch": _Job.arch, "seed": 1, "error": "diverged: loss nan at epoch 1 step 2"})
    lines = out.getvalue().splitlines()
    assert all(re.match(STAMP, line) for line in lines)
    assert lines[0].endswith("bench proxy abc on serial x1: loading data")
    assert lines[1].endswith("bench proxy abc on serial x1: 2 to run (3 already in the table)")
    assert (
        f"done {_Job.arch} seed 0: val_acc 47.12, flatness_r 0.80 (2.5 s) | 1/2 done, 0 failed, 0 in flight"
        in lines[2]
    )
    assert "/h, ETA" in lines[2]
    beats = [line for line in lines[3:-1] if "1/2 done, 0 failed, 1 in flight" in line]
    assert len(beats) >= 2, lines
    assert "seed 1: failed: diverged: loss nan at epoch 1 step 2 | 2/2 done, 1 failed" in lines[-1]


def test_heartbeat_before_the_run_starts_names_the_phase():
    out = io.StringIO()
    with ProgressLog("bench x", out, interval=0.05) as log:
        log.note("loading data")
        time.sleep(0.2)
    assert "bench x: loading data; 0/0 done" in out.getvalue()


def test_the_display_follows_the_stream(monkeypatch):
    assert isinstance(progress_display("t", enabled=False), Silent)
    assert isinstance(progress_display("t"), ProgressLog)  # pytest captures stderr: not a terminal
