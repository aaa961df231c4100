"""The console script imports only the module of the command it runs: ``COMMANDS`` names the module of
every registered command, and a query imports none of pandas, scipy.stats, torch or pymoo."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

import cli.main
from cli.main import app  # every command registered


def test_every_command_is_mapped_to_the_module_that_defines_it() -> None:
    defined = {c.name: c.callback.__module__.removeprefix("cli.") for c in app.registered_commands}
    assert defined == cli.main.COMMANDS


def test_a_query_imports_only_what_it_needs() -> None:
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    script = (
        "import sys\n"
        f"sys.argv = ['flatnas-bench', 'query', {arch!r}, '--targets', 'val_acc']\n"
        "from cli.main import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = ('pandas', 'scipy.stats', 'torch', 'pymoo', 'cli.bench', 'cli.search', 'cli.table')\n"
        "print('imported:', sorted(m for m in heavy if m in sys.modules))\n"
    )
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cifar10_val_acc_proxy" in done.stdout
    assert done.stdout.splitlines()[-1] == "imported: []"
