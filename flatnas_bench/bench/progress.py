"""Progress of a long run: a live display on a terminal, plain timestamped lines in a log file.

``bench``, ``loop`` and ``retrain`` run for hours under ``nohup`` or slurm, where stderr is a file and a
live display prints nothing useful. :func:`progress_display` picks: a rich progress bar when stderr is a
terminal, else a :class:`ProgressLog` that writes one line when the run starts, one per finished
candidate, and a heartbeat at least every ``interval`` seconds (done, failed, in flight, rate, ETA), so a
``tail -f`` of the log always shows where the run is::

    2026-12-01T07:50:02Z bench proxy 772034ca7fcd on serial x1: loading data
    2026-12-01T07:50:09Z bench proxy 772034ca7fcd on serial x1: 20 to run (0 already in the table)
    2026-12-01T07:50:21Z done |nor_conv_3x3~0|+...| seed 0: val_acc 47.0 (12.1 s) | 1/20 done, 0 failed, ...

>>> with progress_display("bench proxy", enabled=True) as shown:  # doctest: +SKIP
...     shown.begin(total=20, skipped=0)
...     shown.started(job); shown.finished(row)
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any, TextIO

HEARTBEAT_S = 60.0  # longest silence in a log, seconds


def _clock() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: float) -> str:
    """``"42 s"``, ``"12.5 min"`` or ``"3.2 h"``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class ProgressLog:
    """Plain progress lines on ``stream``: what the run is doing, each finished candidate, and a heartbeat
    every ``interval`` seconds from a background thread (also while data loads or nothing finishes)."""

    def __init__(self, title: str, stream: TextIO | None = None, interval: float = HEARTBEAT_S) -> None:
        self.title = title
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.total = 0
        self.counts = {"ok": 0, "failed": 0, "busy": 0}
        self.phase = "starting"
        self.start = time.monotonic()
        self.first_done: float | None = None  # when the first candidate finished (rates count from there)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name="progress-heartbeat", daemon=True)

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(f"{_clock()} {text}\n")
            self.stream.flush()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval):
            self._write(f"{self.title}: {self.phase}; {self.status()}" if not self.total else self.status())

    def status(self) -> str:
        """``"3/20 done, 0 failed, 2 in flight, 4.1/h, ETA 4.2 h"`` (rate and ETA once one has finished)."""
        c = self.counts
        finished = c["ok"] + c["failed"]
        text = f"{finished}/{self.total} done, {c['failed']} failed, {c['busy']} in flight"
        elapsed = time.monotonic() - self.start
        text += f", {_duration(elapsed)} elapsed"
        if finished and elapsed > 0:
            rate = finished / elapsed  # candidates per second over the whole run, startup included
            text += f", {rate * 3600:.1f}/h, ETA {_duration((self.total - finished) / rate)}"
        return text

    def note(self, phase: str) -> None:
        """Say what the run is doing before its candidates start (loading data, generating corruptions)."""
        self.phase = phase
        self._write(f"{self.title}: {phase}")

    def begin(self, total: int, skipped: int = 0) -> None:
        self.total = total
        self.phase = "running"
        self._write(f"{self.title}: {total} to run ({skipped} already in the table)")

    def started(self, job: Any) -> None:
        self.counts["busy"] += 1

    def finished(self, row: dict[str, Any]) -> None:
        self.counts["busy"] -= 1
        self.counts["failed" if row.get("error") else "ok"] += 1
        what = f"failed: {row['error']}" if row.get("error") else _measured(row)
        self._write(f"done {row.get('arch')} seed {row.get('seed')}: {what} | {self.status()}")

    def __enter__(self) -> ProgressLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _measured(row: dict[str, Any]) -> str:
    parts = [f"{key} {row[key]:.2f}" for key in ("val_acc", "flatness_r") if row.get(key) is not None]
    seconds = sum(row.get(key) or 0.0 for key in ("train_sec", "eval_sec"))
    return ", ".join(parts) + f" ({seconds:.1f} s)"


class LiveDisplay:
    """The terminal display (rich): a bar with done / failed / in flight, ETA and the arch last started."""

    def __init__(self, title: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.title = title
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("ok {task.fields[ok]} · failed {task.fields[failed]} · in flight {task.fields[busy]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[current]}"),
            console=Console(stderr=True),
        )
        self.counts = {"ok": 0, "failed": 0, "busy": 0}
        self.task = self.progress.add_task(title, total=None, current="", **self.counts)

    def note(self, phase: str) -> None:
        self.progress.update(self.task, current=phase)

    def begin(self, total: int, skipped: int = 0) -> None:
        self.progress.update(self.task, total=total, current="")

    def started(self, job: Any) -> None:
        self.counts["busy"] += 1
        self.progress.update(self.task, current=job.arch, **self.counts)

    def finished(self, row: dict[str, Any]) -> None:
        self.counts["busy"] -= 1
        self.counts["failed" if row.get("error") else "ok"] += 1
        self.progress.update(self.task, advance=1, **self.counts)

    def __enter__(self) -> LiveDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


class Silent:
    """No display (``progress=False``): the same calls, doing nothing."""

    def note(self, phase: str) -> None: ...
    def begin(self, total: int, skipped: int = 0) -> None: ...
    def started(self, job: Any) -> None: ...
    def finished(self, row: dict[str, Any]) -> None: ...
    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None: ...


def progress_display(title: str, enabled: bool = True) -> LiveDisplay | ProgressLog | Silent:
    """The right display for this process: live on a terminal, :class:`ProgressLog` lines when stderr is
    redirected (a log file, nohup, slurm), nothing when ``enabled`` is False."""
    if not enabled:
        return Silent()
    return LiveDisplay(title) if sys.stderr.isatty() else ProgressLog(title)
