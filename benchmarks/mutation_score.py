"""Mutation score of the core modules: how many small code changes (mutants) the tests notice.

For each module, mutmut (configured under ``[tool.mutmut]`` in pyproject.toml) rewrites one operator,
constant or call at a time and runs that module's own tests against the change; a mutant is *killed*
when a test fails. Each module runs in its own throw-away copy of the project with only its tests
selected, so one module's figure neither waits for nor depends on the whole suite. Prints, per module,
mutants / killed / survived / other (timeout, no tests, suspicious) and the raw score killed / mutants,
then every survivor's diff, to be judged: killed by a new test, or equivalent (no test can tell it from
the original); docs/testing.md records the judgements and the score over non-equivalent mutants.

Slow (minutes per module on 2 cores, far longer for the modules whose tests train networks); not in CI.

    nice -n 19 python benchmarks/mutation_score.py surrogates/metrics.py
    nice -n 19 python benchmarks/mutation_score.py --all --jobs 2
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    """The tests that exercise one module, and (optionally) which of its functions to mutate, as globs
    over mutmut's mutant names (``x_<function>__mutmut_<n>``, ``xǁ<Class>ǁ<method>__mutmut_<n>``)."""

    tests: tuple[str, ...]
    functions: tuple[str, ...] = ("*",)


# Must name exactly the modules of [tool.mutmut] only_mutate (checked at start).
TARGETS: dict[str, Target] = {
    "flatnas_bench/nb201/space.py": Target(("tests/test_space.py",)),
    "flatnas_bench/nb201/costs.py": Target(("tests/test_costs.py",)),
    "flatnas_bench/nb201/encodings.py": Target(("tests/test_encodings.py",)),
    "flatnas_bench/engine/flatness.py": Target(
        (
            "tests/test_flatness.py",
            "tests/test_definitions.py::test_r_is_the_mean_accuracy_drop_under_multiplicative_noise_on_every_parameter",
            "tests/test_definitions.py::test_r_loss_sharpness_is_the_mean_cross_entropy_increase",
            "tests/test_definitions.py::test_r_defaults_are_sigma_005_twenty_draws_seed_0",
            "tests/test_definitions.py::test_r_of_zero_draws_is_zero_with_the_clean_accuracy",
        ),
        # the CUDA branch of _noise (pinned buffers, events) cannot run on a CPU: gpu_check exercises it
        (
            "xǁFlatnessǁ*",
            "xǁPerturbationOutcomesǁ*",
            "x_perturbation_outcomes__*",
            "x__load__*",
            "x_flatness__*",
        ),
    ),
    "flatnas_bench/engine/sam.py": Target(("tests/test_sam.py",)),
    "flatnas_bench/search/fom.py": Target(
        (
            "tests/test_flatness.py::test_fom_and_alpha_norm",
            "tests/test_flatness.py::test_alpha_norm_and_fom_read_missing_values_as_nan",
            "tests/test_flatness.py::test_fom_reads_a_missing_r_as_nan",
            "tests/test_definitions.py::test_fom_weighs_err_by_alpha_and_r_by_alpha_norm_times_one_minus_alpha",
            "tests/test_definitions.py::test_alpha_norm_is_mean_err_over_mean_r_of_the_complete_rows",
        )
    ),
    "flatnas_bench/search/fronts.py": Target(
        ("tests/test_search.py",), ("x_pareto_front__*", "xǁBoundsǁ*", "x_hypervolume__*")
    ),
    "flatnas_bench/corruptions/robustness.py": Target(
        ("tests/test_robustness.py", "tests/test_metric_values.py"),
        ("x_corruption_metrics__*", "x_corruption_accuracies__*"),
    ),
    "surrogates/metrics.py": Target(
        (
            "tests/test_metric_values.py",
            "tests/test_surrogates.py::test_rank_metrics_known_case",
            "tests/test_surrogates.py::test_kfold_and_cross_validate",
        )
    ),
}
KILLED = {"killed", "caught by type check"}


def project_files() -> list[str]:
    """Tracked files and untracked ones git does not ignore (the working tree as it is)."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return [line for line in out.stdout.splitlines() if (ROOT / line).is_file()]


def mutmut_table(module: str, target: Target) -> str:
    """The ``[tool.mutmut]`` table for one module's run."""
    quote = lambda items: "[" + ", ".join(f'"{item}"' for item in items) + "]"  # noqa: E731
    return (
        "[tool.mutmut]\n"
        f"source_paths = {quote([module.split('/')[0]])}\n"
        f"only_mutate = {quote([module])}\n"
        f"pytest_add_cli_args_test_selection = {quote(target.tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q"]\n'
        f"also_copy = {quote(['cli', 'benchmarks'])}\n"
        'process_isolation = "forkserver"\n'
    )


def without_table(toml: str, table: str) -> str:
    """``toml`` without the lines of ``[table]`` (its header up to the next table header)."""
    kept, inside = [], False
    for line in toml.splitlines():
        if line.startswith("["):
            inside = line.strip() == f"[{table}]"
        if not inside:
            kept.append(line)
    return "\n".join(kept) + "\n"


def mutant_prefix(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".") + "."


def run_module(module: str, target: Target, jobs: int, keep: Path | None) -> dict:
    """Run mutmut on ``module`` in a fresh copy of the project; return its counts and survivors."""
    work = Path(tempfile.mkdtemp(prefix="mutmut-" + Path(module).stem + "-"))
    for name in project_files():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, work / name)
    pyproject = without_table((work / "pyproject.toml").read_text(), "tool.mutmut")
    (work / "pyproject.toml").write_text(pyproject.rstrip() + "\n\n" + mutmut_table(module, target))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("FLATNAS_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    env["HYPOTHESIS_PROFILE"] = "mutation"  # no shrinking: see tests/conftest.py
    mutmut = [sys.executable, "-m", "mutmut"]
    names = [mutant_prefix(module) + f for f in target.functions]
    start = time.perf_counter()
    run = subprocess.run(
        [*mutmut, "run", "--max-children", str(jobs), *names],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        tail = "\n".join((run.stdout + run.stderr).splitlines()[-20:])
        raise SystemExit(f"mutmut failed on {module} (rc {run.returncode}); kept {work}:\n{tail}")
    listing = subprocess.run(
        [*mutmut, "results", "--all", "true"], cwd=work, env=env, check=True, capture_output=True, text=True
    )
    status = {}
    for line in listing.stdout.splitlines():
        name, _, state = line.strip().rpartition(": ")
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in names):
            status[name] = state
    survivors = sorted(name for name, state in status.items() if state == "survived")
    diffs = {
        name: subprocess.run(
            [*mutmut, "show", name], cwd=work, env=env, check=True, capture_output=True, text=True
        ).stdout
        for name in survivors
    }
    if keep is None:
        shutil.rmtree(work)
    else:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.move(str(work), keep / work.name)
    killed = sum(state in KILLED for state in status.values())
    return {
        "module": module,
        "mutants": len(status),
        "killed": killed,
        "survived": len(survivors),
        "other": len(status) - killed - len(survivors),
        "other_states": sorted({s for s in status.values() if s not in KILLED and s != "survived"}),
        "seconds": seconds,
        "diffs": diffs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"modules to measure, of: {', '.join(TARGETS)}")
    parser.add_argument("--all", action="store_true", help="measure every configured module")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested in parallel (default 1)")
    parser.add_argument("--keep", type=Path, help="keep each module's mutmut folder under this directory")
    args = parser.parse_args()

    configured = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    if sorted(configured) != sorted(TARGETS):
        raise SystemExit(f"pyproject's [tool.mutmut] only_mutate {configured} differs from TARGETS")
    modules = list(TARGETS) if args.all else args.modules
    unknown = sorted(set(modules) - set(TARGETS))
    if unknown or not modules:
        parser.error(f"name modules among {', '.join(TARGETS)} (or --all); unknown: {', '.join(unknown)}")

    results = [run_module(m, TARGETS[m], args.jobs, args.keep) for m in modules]
    print(f"{'module':32} {'mutants':>7} {'killed':>6} {'survived':>8} {'other':>5} {'score':>6} {'sec':>6}")
    for r in results:
        score = 100.0 * r["killed"] / r["mutants"] if r["mutants"] else float("nan")
        print(f"{r['module']:32} {r['mutants']:7d} {r['killed']:6d} {r['survived']:8d} {r['other']:5d} "
              f"{score:5.1f}% {r['seconds']:6.0f}" + (f"  other: {', '.join(r['other_states'])}" if r["other"]
                                                      else ""))  # fmt: skip
    for r in results:
        for name, diff in r["diffs"].items():
            print(f"\n--- survived: {name}\n{diff.rstrip()}")


if __name__ == "__main__":
    main()
