"""Shared test fixtures. The real data lives outside the project, in ``../shared/data`` (or wherever
``FLATNAS_SHARED_DATA`` points); tests that need it take the ``shared_data`` fixture and skip with a
reason where it is absent, so a user's fresh clone still passes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import Phase, settings

ROOT = Path(__file__).resolve().parents[1]

# benchmarks/mutation_score.py runs the tests with HYPOTHESIS_PROFILE=mutation: a property a mutant breaks
# fails at once instead of shrinking its example for minutes (which mutmut would count as a timeout).
settings.register_profile("mutation", phases=(Phase.explicit, Phase.reuse, Phase.generate), database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _fresh_caches_under_mutmut():
    """mutmut records which tests call each function (its "stats" run) and later runs only those against
    that function's mutants. A ``functools`` cache (the feature tables, the cost tables, the space's
    classes) filled by an earlier test hides the call from every later test, so under mutmut (stats and
    mutant runs alike) each test starts with every project cache empty."""
    if os.environ.get("MUTANT_UNDER_TEST"):
        for name, module in list(sys.modules.items()):
            if name.split(".")[0] in ("flatnas_bench", "surrogates"):
                for value in list(vars(module).values()):
                    if callable(getattr(value, "cache_clear", None)):
                        value.cache_clear()
    yield


def shared_data_dir() -> Path:
    """Where the real data is: ``$FLATNAS_SHARED_DATA`` or ``<project>/../shared/data``."""
    return Path(os.environ.get("FLATNAS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def require_shared(*parts: str) -> Path:
    """The path ``shared_data_dir()/parts...``, or skip the calling test with a reason."""
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set FLATNAS_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def nb201_csv() -> Path:
    return require_shared("nb201", "nb201_accuracy.csv")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test runs torch on one thread: reproducible numbers and no oversubscription under xdist."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
