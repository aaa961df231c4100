"""The definitions the benchmark's numbers rest on, pinned with exact expected values.

* FoM = alpha * Err + alpha_norm * (1 - alpha) * R, at alpha != 0.5 and alpha_norm != Err / R, so that
  returning Err, or swapping alpha and 1 - alpha, fails; alpha_norm over the complete rows only; and the
  search's ``fom`` objective computes exactly this (one definition, :mod:`flatnas_bench.search.fom`);
* R(sigma, M) recomputed here from the same seeded draws (multiplicative w + sigma * w * eps over every
  parameter, eps from a CPU generator seeded with the seed, drawn in sequence); the test also shows that
  additive noise, perturbing only the conv weights, or another seed give a different R, so it would catch
  each of them;
* a candidate's R and val accuracy come from the validation split (recomputed on ``data.val_x``, and
  different from the same recomputation on the test split);
* result-row identities: params/FLOPs equal ``arch_costs`` of the protocol's network, mce = 100 -
  corr_acc_mean, corr_per holds each corruption's accuracy and averages to corr_acc_mean (on a fresh row
  and on every row of the bundled benchmark);
* the preset protocols' hashes, which key every table.
"""

from __future__ import annotations

import doctest
import json
from importlib import resources

import numpy as np
import pandas as pd
import pytest
import torch

from flatnas_bench.core import protocol
from flatnas_bench.core.protocol import Protocol, get_protocol, list_protocols
from flatnas_bench.corruptions.robustness import CorruptionSet
from flatnas_bench.engine.candidate import CandidateJob, evaluate_candidate
from flatnas_bench.engine.data import Dataset, Images, make_splits
from flatnas_bench.engine.device_data import DeviceData
from flatnas_bench.engine.flatness import flatness
from flatnas_bench.engine.train import train_model
from flatnas_bench.nb201.costs import arch_costs
from flatnas_bench.nb201.network import TinyNetwork
from flatnas_bench.nb201.space import canonical_archs
from flatnas_bench.search.context import ObjectiveContext
from flatnas_bench.search.fom import alpha_norm, fom
from flatnas_bench.search.objectives import make_objective
from flatnas_bench.tables.readers import read_csv

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|skip_connect~2|"

# ------------------------------------------------------------------------------------------------- FoM


def test_fom_weighs_err_by_alpha_and_r_by_alpha_norm_times_one_minus_alpha() -> None:
    errs, rs = [10.0, 40.0], [2.0, 5.0]
    # alpha 0.2, alpha_norm 3: 0.2 * 10 + 3 * 0.8 * 2 = 6.8 and 0.2 * 40 + 3 * 0.8 * 5 = 20
    np.testing.assert_allclose(fom(errs, rs, alpha=0.2, alpha_norm=3.0), [6.8, 20.0], rtol=1e-12)
    # alpha and 1 - alpha swapped would give 0.8 * 10 + 3 * 0.2 * 2 = 9.2; alpha_norm dropped 3.6
    assert fom(10.0, 2.0, alpha=0.8, alpha_norm=3.0) == pytest.approx(9.2)
    assert fom(10.0, 2.0, alpha=0.2) == pytest.approx(3.6)
    # defaults: alpha 0.5, alpha_norm 1 -> 5 + 1 = 6
    assert fom(10.0, 2.0) == pytest.approx(6.0)
    # the extremes: alpha 1 is Err alone, alpha 0 is alpha_norm * R alone
    assert fom(10.0, 2.0, alpha=1.0, alpha_norm=3.0) == pytest.approx(10.0)
    assert fom(10.0, 2.0, alpha=0.0, alpha_norm=3.0) == pytest.approx(6.0)
    # broadcasting a scalar Err over several R, as float64
    out = fom(10.0, np.array([0.0, 1.0], dtype=np.float32), alpha=0.25, alpha_norm=2.0)
    assert out.dtype == np.float64 and out.tolist() == [2.5, 4.0]


def test_alpha_norm_is_mean_err_over_mean_r_of_the_complete_rows() -> None:
    # complete rows 0 and 1: mean Err 25, mean R 3.5; row 2 lacks Err, row 3 lacks R
    errs, rs = [10.0, 40.0, np.nan, 20.0], [2.0, 5.0, 1.0, np.nan]
    norm = alpha_norm(errs, rs)
    assert norm == pytest.approx(25.0 / 3.5)
    # with it, FoM = alpha * Err + (25 / 3.5) * (1 - alpha) * R, at alpha 0.3 for row 0:
    # 3 + 7.142857 * 0.7 * 2 = 13
    assert fom(10.0, 2.0, alpha=0.3, alpha_norm=norm) == pytest.approx(13.0)
    assert alpha_norm([5.0], [0.0]) == 1.0 and alpha_norm([], []) == 1.0
    assert alpha_norm([np.inf, 4.0], [1.0, 2.0]) == pytest.approx(2.0)  # infinite rows ignored too


def test_the_search_fom_objective_is_this_definition_with_its_nan_rule() -> None:
    # Err [10, 20] and R [NaN, 2]: only the second row is complete, so alpha_norm = 20 / 2 = 10 (averaging
    # Err over every row instead would give 15 / 2 = 7.5); the first row's FoM is NaN, the second's
    # 0.2 * 20 + 10 * 0.8 * 2 = 20
    archs = list(canonical_archs()[:2])
    table = pd.DataFrame({"arch": [str(a) for a in archs], "acc": [90.0, 80.0], "r": [np.nan, 2.0]})
    objective = make_objective("fom(alpha=0.2,acc=acc,r=r)", ObjectiveContext(table=table))
    assert "alpha_norm=10," in objective.description
    values = objective(archs)
    assert np.isnan(values[0]) and values[1] == pytest.approx(20.0)
    np.testing.assert_array_equal(values, fom([10.0, 20.0], [np.nan, 2.0], alpha=0.2, alpha_norm=10.0))


# --------------------------------------------------------------------------------------------------- R


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * (model(x).argmax(1) == y).double().mean().item()


@torch.no_grad()
def recomputed_r(model, x, y, sigma, draws, seed, *, additive=False, only=None) -> tuple[float, list[float]]:
    """R and per-draw accuracies, computed here: eps ~ N(0, I) for all parameters at once per draw, from a
    CPU generator seeded with ``seed``; ``additive`` and ``only`` (a parameter filter) are the wrong
    definitions the test must tell apart."""
    params = list(model.parameters())
    saved = [p.detach().clone() for p in params]
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    acc0 = _accuracy(model, x, y)
    accs = []
    for _ in range(draws):
        eps = torch.randn(sum(p.numel() for p in params), generator=generator)
        offset = 0
        for p, w in zip(params, saved, strict=True):
            e = eps[offset : offset + w.numel()].view(w.shape)
            offset += w.numel()
            if only is None or only(p):
                p.copy_(w + sigma * e if additive else w + sigma * w * e)
        accs.append(_accuracy(model, x, y))
        for p, w in zip(params, saved, strict=True):
            p.copy_(w)
    model.train(was_training)
    return float(np.mean([abs(acc0 - a) for a in accs])), accs


@pytest.fixture(scope="module")
def net() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = TinyNetwork(ARCH, C=4, N=1).to(memory_format=torch.channels_last)
    x = torch.randn(300, 3, 16, 16)
    y = torch.randint(0, 10, (300,))
    model.train()
    with torch.no_grad():
        model(x)  # running statistics away from their initial values
    return model, x.contiguous(memory_format=torch.channels_last), y


def test_r_is_the_mean_accuracy_drop_under_multiplicative_noise_on_every_parameter(net) -> None:
    model, x, y = net
    f = flatness(model, x, y, sigma=0.3, draws=6, seed=11)
    r, accs = recomputed_r(model, x, y, 0.3, 6, 11)
    assert f.r == pytest.approx(r, abs=1e-9) and f.r > 0
    assert list(f.draw_accs) == pytest.approx(accs, abs=1e-9)
    assert f.acc == pytest.approx(_accuracy(model.eval(), x, y), abs=1e-9)
    model.train()
    assert f.r_std == pytest.approx(float(np.std([abs(f.acc - a) for a in accs])), abs=1e-9)
    # the wrong definitions give other values, so the equality above pins the definition
    for wrong in (
        recomputed_r(model, x, y, 0.3, 6, 11, additive=True)[0],
        recomputed_r(model, x, y, 0.3, 6, 11, only=lambda p: p.ndim == 4)[0],  # conv weights only
        recomputed_r(model, x, y, 0.3, 6, 12)[0],  # another seed
        recomputed_r(model, x, y, 0.15, 6, 11)[0],  # sigma halved
    ):
        assert wrong != pytest.approx(r, abs=1e-6)


def test_r_loss_sharpness_is_the_mean_cross_entropy_increase(net) -> None:
    model, x, y = net
    f = flatness(model, x, y, sigma=0.2, draws=3, seed=2)
    params = list(model.parameters())
    saved = [p.detach().clone() for p in params]
    generator = torch.Generator().manual_seed(2)
    model.eval()
    with torch.no_grad():
        loss0 = torch.nn.functional.cross_entropy(model(x), y).item()
        increases = []
        for _ in range(3):
            eps = torch.randn(sum(p.numel() for p in params), generator=generator)
            for p, w, e in zip(params, saved, eps.split([w.numel() for w in saved]), strict=True):
                p.copy_(w * (1 + 0.2 * e.view(w.shape)))
            increases.append(torch.nn.functional.cross_entropy(model(x), y).item() - loss0)
        for p, w in zip(params, saved, strict=True):
            p.copy_(w)
    model.train()
    assert f.loss == pytest.approx(loss0, rel=1e-5)
    assert f.loss_sharpness == pytest.approx(float(np.mean(increases)), rel=1e-4, abs=1e-6)


def test_r_defaults_are_sigma_005_twenty_draws_seed_0(net) -> None:
    model, x, y = net
    x, y = x[:64], y[:64]
    assert flatness(model, x, y) == flatness(model, x, y, sigma=0.05, draws=20, seed=0, batch_size=1000)
    r, _ = recomputed_r(model, x, y, 0.05, 20, 0)
    assert flatness(model, x, y).r == pytest.approx(r, abs=1e-9)


def test_r_of_zero_draws_is_zero_with_the_clean_accuracy(net) -> None:
    model, x, y = net
    f = flatness(model, x, y, sigma=0.3, draws=0, seed=0)
    assert (f.r, f.r_std, f.loss_sharpness, f.draw_accs, f.r_se) == (0.0, 0.0, 0.0, (), 0.0)
    assert f.acc == pytest.approx(_accuracy(model.eval(), x, y), abs=1e-9)
    model.train()


# ------------------------------------------------------------------------------- a candidate's result row

PROTOCOL = get_protocol(
    "proxy", C=4, N=1, epochs=2, train_subset=0, val_size=60, test_size=0, flatness_draws=3,
    flatness_sigma=0.2, corruption_subset=12, batch_size=64,
)  # fmt: skip
CORRUPTIONS = ("fog", "contrast", "gaussian_noise")


@pytest.fixture(scope="module")
def candidate() -> tuple[DeviceData, CorruptionSet, dict]:
    """A tiny learnable dataset (the colour shifts with the label), a 3-corruption x 2-severity set made
    of its test images, and the result row of one candidate trained and measured on them."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 400)
    x = (rng.integers(0, 60, (400, 32, 32, 3)) + 19 * y[:, None, None, None]).astype(np.uint8)
    ds = Dataset("cifar10", Images(x[:300], y[:300]), Images(x[300:], y[300:]), tuple("abcdefghij"))
    data = DeviceData(make_splits(ds, val_size=60, seed=0), resolution=16, crop_pad=0)
    test_x, test_y = x[300:320], y[300:320]
    images = {
        "fog": np.stack([np.clip(test_x.astype(int) + 40 * s, 0, 255) for s in (1, 2)]).astype(np.uint8),
        "contrast": np.stack([(test_x // (s + 1)) for s in (1, 2)]).astype(np.uint8),
        "gaussian_noise": np.stack(
            [np.clip(test_x + rng.normal(0, 30 * s, test_x.shape), 0, 255) for s in (1, 2)]
        ).astype(np.uint8),
    }
    cset = CorruptionSet(images, test_y, severities=(1, 2))
    row = evaluate_candidate(CandidateJob(ARCH, PROTOCOL, 3), data, corruption_set=cset)
    assert row["error"] is None
    return data, cset, row


def test_row_r_and_val_acc_come_from_the_validation_split(candidate) -> None:
    data, _, row = candidate
    model, _ = train_model(row["arch"], PROTOCOL, data, 3)  # deterministic on CPU: the row's network
    val = recomputed_r(model, data.normalize(data.val_x), data.val_y, 0.2, 3, 3)
    test = recomputed_r(model, data.normalize(data.test_x), data.test_y, 0.2, 3, 3)
    model.eval()
    with torch.no_grad():
        val_acc = _accuracy(model, data.normalize(data.val_x), data.val_y)
        test_acc = _accuracy(model, data.normalize(data.test_x), data.test_y)
    assert row["flatness_r"] == pytest.approx(val[0], abs=1e-9)
    assert row["val_acc"] == pytest.approx(val_acc, abs=1e-9)
    assert row["test_acc"] == pytest.approx(test_acc, abs=1e-5)
    assert (val_acc, val[0]) != (pytest.approx(test_acc), pytest.approx(test[0]))  # the splits tell apart
    assert len(data.val_y) == 60 and len(data.test_y) == 100


def test_row_costs_equal_arch_costs_of_the_protocols_network(candidate) -> None:
    _, _, row = candidate
    costs = arch_costs(row["arch"], C=4, N=1, num_classes=10, resolution=16)
    assert (row["params_m"], row["flops_m"]) == (costs.params_m, costs.flops_m)
    # and not NB201's C=16, N=5, 32 px network that arch_costs defaults to
    assert row["flops_m"] != arch_costs(row["arch"]).flops_m
    model = TinyNetwork(row["arch"], C=4, N=1, num_classes=10)
    assert row["params_m"] == sum(p.numel() for p in model.parameters()) / 1e6


def test_row_corruption_fields_are_the_per_corruption_accuracies(candidate) -> None:
    data, cset, row = candidate
    model, _ = train_model(row["arch"], PROTOCOL, data, 3)
    model.eval()
    labels = torch.as_tensor(cset.labels[:12])
    expected = {}
    with torch.no_grad():
        for name in CORRUPTIONS:
            blocks = [data.normalize(data.images(cset.images[name][i, :12])) for i in range(2)]
            expected[name] = float(np.mean([_accuracy(model, x, labels) for x in blocks]))
    per = json.loads(row["corr_per"])
    assert per == pytest.approx(expected, abs=1e-4)
    assert row["corr_acc_mean"] == pytest.approx(np.mean(list(per.values())), abs=1e-9)
    assert row["mce"] == pytest.approx(100.0 - row["corr_acc_mean"], abs=1e-9)
    assert len(set(per.values())) > 1  # the corruptions are told apart


def test_every_bundled_row_keeps_the_identities() -> None:
    """The shipped benchmark (measured rows): costs are the proxy network's, mce = 100 - corr_acc_mean,
    corr_per averages to corr_acc_mean over the 15 benchmark corruptions."""
    path = resources.files("flatnas_bench") / "bundled" / "proxy_cifar10.csv"
    with resources.as_file(path) as csv:
        rows = read_csv(csv)
    (measured,) = set(rows["protocol_hash"])  # one protocol: the preset (current or earlier) with that hash
    proxy = next(get_protocol(n) for n in list_protocols() if get_protocol(n).hash == measured)
    assert len(rows) > 100
    for arch, params_m, flops_m in zip(rows["arch"], rows["params_m"], rows["flops_m"], strict=True):
        costs = arch_costs(arch, proxy.C, proxy.N, 10, proxy.resolution)
        assert (params_m, flops_m) == pytest.approx((costs.params_m, costs.flops_m), abs=1e-9), arch
    done = rows[rows["error"].isna()]
    np.testing.assert_allclose(done["mce"], 100.0 - done["corr_acc_mean"], atol=1e-6)
    per = done["corr_per"].map(lambda text: list(json.loads(text).values()))
    assert per.map(len).eq(15).all()
    np.testing.assert_allclose(per.map(np.mean), done["corr_acc_mean"], atol=1e-6)


# ----------------------------------------------------------------------------------------- protocol hashes


def test_preset_protocol_hashes_are_pinned() -> None:
    """Changing a preset, a default, or how the hash is computed re-keys every table: these must only
    change on purpose, with the bundled tables re-measured."""
    assert {name: get_protocol(name).hash for name in list_protocols()} == {
        "nb201": "2ff2664c42d2",
        "nb201-12": "b21660569d63",
        "flatnas": "cbd7147bd4a8",
        "proxy": "7ad30ccad8e7",
        "proxy-0.2": "e6c3fcf12411",
        "proxy-0.1": "772034ca7fcd",
    }
    assert Protocol().hash == Protocol(name="other").hash == "ed1d59f3c2ac"
    assert get_protocol("nb201", sam="sam", rho=0.05).hash == "353c9b6cf35a"


def test_protocol_examples_run() -> None:
    result = doctest.testmod(protocol)
    assert result.failed == 0 and result.attempted >= 3
