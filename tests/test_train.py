"""Training and the candidate row: seeded determinism, divergence as an error row, the row contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.core.protocol import get_protocol
from flatnas_bench.corruptions.robustness import BENCHMARK_CORRUPTIONS, CorruptionSet
from flatnas_bench.engine.candidate import ROW_KEYS, CandidateJob, evaluate_candidate
from flatnas_bench.engine.data import Dataset, Images, make_splits
from flatnas_bench.engine.device_data import DeviceData
from flatnas_bench.engine.train import train_model

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|skip_connect~2|"
PROTOCOL = get_protocol(
    "proxy", C=4, N=1, epochs=2, train_subset=0, val_size=100, test_size=0, flatness_draws=3,
    corruption_subset=20, batch_size=64,
)  # fmt: skip


@pytest.fixture(scope="module")
def data() -> DeviceData:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 500)
    x = (rng.integers(0, 60, (500, 32, 32, 3)) + 19 * y[:, None, None, None]).astype(np.uint8)  # learnable
    ds = Dataset("cifar10", Images(x[:400], y[:400]), Images(x[400:], y[400:]), tuple("abcdefghij"))
    splits = make_splits(ds, val_size=100, seed=0)
    return DeviceData(splits, resolution=16, crop_pad=0)


def test_same_seed_same_weights_on_cpu(data: DeviceData) -> None:
    a, sa = train_model(ARCH, PROTOCOL, data, seed=1)
    b, sb = train_model(ARCH, PROTOCOL, data, seed=1)
    assert sa.train_loss == sb.train_loss and sa.steps == 2 * 4
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


def _corruption_set() -> CorruptionSet:
    rng = np.random.default_rng(1)
    images = {n: rng.integers(0, 256, (5, 30, 32, 32, 3), dtype=np.uint8) for n in BENCHMARK_CORRUPTIONS}
    return CorruptionSet(images, rng.integers(0, 10, 30))


def test_row_contract_and_corruptions(data: DeviceData) -> None:
    cset = _corruption_set()
    row = evaluate_candidate(CandidateJob(ARCH, PROTOCOL, 0), data, corruption_set=cset)
    assert tuple(row) == ROW_KEYS and row["error"] is None
    assert row["arch"] == ARCH and row["protocol_hash"] == PROTOCOL.hash
    assert 0 <= row["flatness_r"] <= 100 and row["val_acc"] > 20  # synthetic data is easy
    assert row["corr_acc_mean"] is not None and row["corr_per"].startswith("{")
    assert row["params_m"] > 0 and row["train_sec"] > 0 and row["device"].startswith("cpu")
    again = evaluate_candidate(CandidateJob(ARCH, PROTOCOL, 0), data, corruption_set=cset)
    assert again["flatness_r"] == row["flatness_r"] and again["val_acc"] == row["val_acc"]


def test_divergence_is_an_error_row(data: DeviceData) -> None:
    row = evaluate_candidate(CandidateJob(ARCH, PROTOCOL.replace(lr=1e30, sam="none"), 0), data)
    assert row["error"].startswith("diverged: loss") and "epoch 1" in row["error"]
    assert row["val_acc"] is None and row["arch"] == ARCH


def test_bf16_on_a_cpu_without_it_is_refused(data: DeviceData, monkeypatch) -> None:
    import flatnas_bench.engine.train as train

    monkeypatch.setattr(train, "cpu_bf16_supported", lambda: False)
    with pytest.raises(ConfigError, match="needs a CUDA device or a CPU with bf16 instructions"):
        train_model(ARCH, PROTOCOL.replace(precision="bf16"), data, seed=0)


def test_a_bf16_protocol_trains_in_bf16_and_evaluates_in_fp32(data: DeviceData, monkeypatch) -> None:
    """Logits of every forward pass, by phase: bf16 under autocast while training, fp32 without autocast
    in every evaluation (validation, the flatness draws, test, corruptions); the row's R is fp32's."""
    import flatnas_bench.engine.train as train

    if not train.cpu_bf16_supported():
        pytest.skip("this CPU has no native bf16")
    seen: set[tuple[bool, torch.dtype, bool]] = set()
    real = train.build_model

    def spied(*args, **kwargs):
        model = real(*args, **kwargs)
        hook = lambda m, i, out: seen.add((m.training, out.dtype, torch.is_autocast_enabled("cpu")))  # noqa: E731
        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(train, "build_model", spied)
    bf16 = PROTOCOL.replace(precision="bf16")
    row = evaluate_candidate(CandidateJob(ARCH, bf16, 0), data, corruption_set=_corruption_set())
    assert seen == {(True, torch.bfloat16, True), (False, torch.float32, False)}
    assert row["error"] is None and row["protocol_hash"] == bf16.hash != PROTOCOL.hash
    assert row["corr_acc_mean"] is not None and row["flatness_r"] >= 0


def test_fp32_evaluation_turns_tf32_off_on_cuda_and_restores_it() -> None:
    from flatnas_bench.engine.train import fp32_evaluation

    flags = lambda: (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)  # noqa: E731
    before = flags()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True  # the fast numerics
    try:
        with fp32_evaluation(torch.device("cuda", 1)):
            assert flags() == (False, False)
        assert flags() == (True, True)
        with fp32_evaluation(torch.device("cpu")):
            assert flags() == (True, True) and not torch.is_autocast_enabled("cpu")
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
