"""Every command that README.md and the pages under docs/ show runs as written, at reduced settings.

The commands are read from the pages themselves: each fenced ``bash`` block is a unit whose lines run in
order in one fresh directory, and each ``python`` block is executed. What a command needs decides how it
is exercised:

- ``flatnas-bench ...`` runs in-process (typer's CliRunner) with only its sizes shrunk: a tiny image
  folder for the dataset, a few archs, a 4-channel 1-cell network for 1 epoch, one small ensemble
  member, a short search (:func:`reduced`). A command that needs what a test machine lacks (a Ray
  cluster named by an environment variable, ``--executor ray``, ``--device cuda`` without CUDA) is parsed
  by the CLI instead: every option must exist and every value convert.
- ``python benchmarks/X.py ARGS`` (measurements of minutes to hours) is parsed by the script's own
  argument parser, which then stops it.
- ``ray start ...`` is parsed by Ray's own command line; a ``#!/bin/bash`` script block is checked by
  ``bash -n`` and its ``flatnas-bench`` lines as above.
- ``pip install``, ``pytest``, ``ruff``, ``.ci/run``: the extras exist, the suite is this one, ruff runs,
  the CI script exists and parses.

A command no rule knows fails :func:`test_every_command_has_a_rule`: a page that shows a new kind of
command adds its rule here. Relative links and their anchors must resolve as well.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pandas as pd
import pytest
import tomllib
import typer
from conftest import ROOT, shared_data_dir
from helpers import TINY, make_imagefolder
from typer.testing import CliRunner

import surrogates
from cli.main import app  # every command registered
from flatnas_bench.tables.readers import read_csv

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SMALL = [f"--set={k}={v}" for k, v in {**TINY, "epochs": 1, "corruption_subset": 4}.items()]
DATASET = "cifar-10-batches-py"  # the dataset name the pages use; replaced by a tiny image folder
SHARED = "../shared/data/"  # pages give real data relative to the repository root
IN_REPO = ("benchmarks/", "flatnas_bench/")  # and the project's own files too


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page: its language, first line number and text."""

    page: str
    line: int
    lang: str
    text: str
    output: str | None = None  # a ``text`` block right after it: what its one command prints

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def is_script(self) -> bool:
        return self.text.startswith("#!")

    def commands(self) -> list[list[str]]:
        """The block's commands as word lists: continuation lines joined, comments and blank lines
        dropped, ``&&`` chains split; in a script, only its ``flatnas-bench`` and ``ray`` commands (from
        their environment assignments up to a trailing ``&``)."""
        out = []
        for line in re.sub(r"\\\n\s*", " ", self.text).splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                out.append(words[:cut])
                words = words[cut + 1 :]
        if self.is_script:
            out = [_ours(words) for words in out if {"flatnas-bench", "ray"} & set(words)]
        return out


def _ours(words: list[str]) -> list[str]:
    """The ``flatnas-bench`` or ``ray`` command inside a script line such as ``srun ... ray start ... &``."""
    start = next(k for k, w in enumerate(words) if w in ("flatnas-bench", "ray"))
    while start and re.fullmatch(r"[A-Z_]+=.*", words[start - 1]):
        start -= 1
    words = words[start:]
    return words[: words.index("&")] if "&" in words else words


def blocks(lang: str) -> list[Block]:
    """Every ``lang`` block of README.md and docs/*.md, in page order."""
    out = []
    for page in PAGES:
        text = page.read_text()
        name = str(page.relative_to(ROOT))
        found = list(re.finditer(r"^```(\w*)\n(.*?)^```\n", text, re.S | re.M))
        for k, match in enumerate(found):
            after = found[k + 1] if k + 1 < len(found) else None
            if match.group(1) != lang:
                continue
            adjacent = after and after.group(1) == "text" and not text[match.end() : after.start()].strip()
            line = text.count("\n", 0, match.start()) + 1
            out.append(Block(name, line, lang, match.group(2), after.group(2) if adjacent else None))
    return out


def program(words: list[str]) -> str:
    """What runs: the first word after environment assignments and ``nice -n K``."""
    words = [w for w in words if not re.fullmatch(r"[A-Z_]+=.*", w)]
    if words[:2] == ["nice", "-n"]:
        words = words[3:]
    if words[0] == "python" and len(words) > 1 and words[1].startswith("benchmarks/"):
        return "benchmark script"
    return words[0]


RULES = ("flatnas-bench", "benchmark script", "ray", "pip", "pytest", "ruff", ".ci/run")


def test_every_command_has_a_rule() -> None:
    unknown = [(b.id, shlex.join(c)) for b in blocks("bash") for c in b.commands() if program(c) not in RULES]
    assert not unknown, f"commands no rule exercises (add one in {Path(__file__).name}): {unknown}"
    assert len([c for b in blocks("bash") for c in b.commands()]) >= 10  # the pages still show commands


# ---- flatnas-bench ------------------------------------------------------------------------------------


def needs_hardware(words: list[str]) -> str | None:
    """Why a ``flatnas-bench`` command cannot run here, or None."""
    if re.fullmatch(r"[A-Z_]+=.*", words[0]):
        return f"names a cluster ({words[0]})"
    if "--executor" in words and words[words.index("--executor") + 1] == "ray":
        return "starts Ray"
    if "--device" in words and words[words.index("--device") + 1] == "cuda":
        import torch

        return None if torch.cuda.is_available() else "needs CUDA"
    return None


def _swap(args: list[str], option: str, value: str) -> list[str]:
    """``args`` with ``option``'s value set to ``value`` (added when absent)."""
    if option in args:
        args = list(args)
        args[args.index(option) + 1] = value
        return args
    return [*args, option, value]


def reduced(args: list[str], data: str) -> list[str]:
    """A page's ``flatnas-bench`` arguments with the dataset replaced and only its sizes shrunk; every name
    and option it uses is kept as written."""
    args = [data if a == DATASET else a for a in args]
    args = [str(shared_data_dir() / a[len(SHARED) :]) if a.startswith(SHARED) else a for a in args]
    args = [str(ROOT / a) if a.startswith(IN_REPO) else a for a in args]
    if args[0] == "bench":
        args = _swap(_swap(args, "--archs", "6") if "--archs" in args else args, "--threads", "1")
        args += [*SMALL, "--no-progress"]
    elif args[0] in ("retrain", "loop"):
        args += SMALL
    elif args[0] == "fit-surrogate":
        args += ["--folds", "2", "--models", "1", "--param", "n_estimators=20"]
    elif args[0] == "search" and "exhaustive" not in args:
        args += ["--pop-size", "20", "--generations", "5"]
    elif args[:2] == ["table", "reliability"]:
        args = _swap(args, "--boot", "50")
    return args


def parse_click(command: click.Command, name: str, args: list[str]) -> None:
    """Parse ``args`` with a click command line's own parser, down to the (sub)command, without running
    it: every option must exist and every value convert."""
    ctx = click.Context(command, info_name=name)
    while isinstance(command, click.Group):
        name, *args = args
        sub = command.get_command(ctx, name)
        assert sub is not None, f"no command {name!r}"
        command, ctx = sub, click.Context(sub, info_name=name, parent=ctx)
    command.make_context(name, list(args), parent=ctx.parent)


def run_flatnas(words: list[str], data: str, output: str | None = None) -> None:
    reason = needs_hardware(words)
    args = [w for w in words if not re.fullmatch(r"[A-Z_]+=.*", w)][1:]
    if reason:
        parse_click(typer.main.get_command(app), "flatnas-bench", args)
        return
    shown = args
    args = reduced(args, data)
    missing = [a for a in args if a.startswith(str(shared_data_dir())) and not Path(a).exists()]
    if missing:
        pytest.skip(f"real data not found at {missing[0]} (set FLATNAS_SHARED_DATA)")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    assert result.output.strip(), args
    if output is not None and args == shown:  # the page shows what this command prints
        assert result.output.rstrip() == output.rstrip(), "the page shows other output than the command's"


# ---- the other programs -------------------------------------------------------------------------------


class _Parsed(Exception):
    pass


def run_benchmark_script(words: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse the arguments with the script's own parser (its ``main`` stops right after parsing)."""
    words = words[3:] if words[:2] == ["nice", "-n"] else words
    script = ROOT / words[1]
    assert script.is_file(), f"{words[1]} does not exist"
    parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        parse(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", [str(script), *words[2:]])
    with pytest.raises(_Parsed):
        runpy.run_path(str(script), run_name="docs_check")["main"]()


def run_ray(words: list[str]) -> None:
    from ray.scripts.scripts import cli as ray_cli

    parse_click(ray_cli, "ray", words[1:])


def run_pip(words: list[str]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = words[-1]
    if target.startswith("."):
        extras = re.fullmatch(r"\.(?:\[(.*)\])?", target).group(1) or ""
        declared = project["project"].get("optional-dependencies", {})
        assert all(e in declared for e in extras.split(",") if e), (target, list(declared))
    else:  # a measuring tool the project configures
        assert target in project.get("tool", {}), f"pip install {target}: not configured in pyproject.toml"


def run_other(words: list[str]) -> None:
    name = words[0]
    if name == "pytest":
        assert words == ["pytest"]  # the suite this test belongs to
    elif name == "ruff":
        if not shutil.which("ruff"):
            pytest.skip("ruff is not installed (pip install -e '.[test]')")
        done = subprocess.run(words, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    else:  # .ci/run builds a fresh environment: it must exist, be executable and parse
        script = ROOT / name
        assert os.access(script, os.X_OK), f"{name} is not an executable file"
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("block", blocks("bash"), ids=lambda b: b.id)
def test_bash_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLATNAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    data = str(make_imagefolder(tmp_path / "images", train_per_class=8, test_per_class=4))
    if block.is_script:
        assert subprocess.run(["bash", "-n"], input=block.text, text=True).returncode == 0
    for words in block.commands():
        kind = program(words)
        if kind == "flatnas-bench":
            run_flatnas(words, data, block.output if len(block.commands()) == 1 else None)
        elif kind == "benchmark script":
            run_benchmark_script(words, monkeypatch)
        elif kind == "ray":
            run_ray(words)
        elif kind == "pip":
            run_pip(words)
        else:
            run_other(words)
    if session_block() == block:
        check_session_results(tmp_path)


# ---- the README's typical session: what it leaves behind ------------------------------------------------


def session_block() -> Block:
    """The README block that follows "A typical session"."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"A typical session[^\n]*\n+```bash\n", text)
    assert found, "README.md lost its typical-session block"
    line = text.count("\n", 0, found.end() - len("```bash\n")) + 1
    return next(b for b in blocks("bash") if b.page == "README.md" and b.line == line)


def test_the_typical_session_is_the_whole_pipeline() -> None:
    names = [words[1] for words in session_block().commands()]
    assert names == ["info", "bench", "fit-surrogate", "search", "retrain"]


def check_session_results(cwd: Path) -> None:
    front = read_csv(cwd / "search" / "pareto.csv")
    report = read_csv(cwd / "retrain" / "retrain.csv")
    assert set(front["arch"]) <= set(report["arch"])  # every pick retrained
    assert (report["role"].str.contains("baseline")).sum() == 1  # the best val_acc on sur/, by its short name
    assert report[["test_acc", "flatness_r", "corr_acc_mean"]].notna().all().all()
    assert (report["n_seeds"] == 1).all()
    ratio = report["corr_acc_mean"] / report["test_acc"].where(report["test_acc"] != 0)  # NaN at 0 %
    pd.testing.assert_series_equal(report["corr_acc_rel"], ratio, check_names=False)


# ---- python blocks and links ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("block", blocks("python"), ids=lambda b: b.id)
def test_python_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in a directory holding NB201's table (skipped without it), the surrogate fit shrunk."""
    source = shared_data_dir() / "nb201" / "nb201_accuracy.csv"
    if "nb201_accuracy.csv" in block.text and not source.exists():
        pytest.skip(f"real data not found at {source} (set FLATNAS_SHARED_DATA)")
    if source.exists():
        (tmp_path / source.name).symlink_to(source)
    monkeypatch.chdir(tmp_path)
    fit = surrogates.fit_surrogate

    def small_fit(table, targets, **options):
        return fit(table, targets, **{"n_models": 1, "folds": 2, "params": {"n_estimators": 20}, **options})

    monkeypatch.setattr(surrogates, "fit_surrogate", small_fit)
    exec(compile(block.text, block.id, "exec"), {"__name__": "docs_check"})


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # an external address
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: dead link {target}"
        if anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", file.read_text(), re.M)
            assert anchor in {slug(h) for h in headings}, f"{page.name}: no heading for #{anchor}"
