"""SAM: running BN statistics come from the clean pass only; weights return exactly before the step."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from flatnas_bench.engine.sam import SAM, batchnorms, frozen_bn_stats
from flatnas_bench.nb201.network import TinyNetwork

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_3x3~1|skip_connect~2|"


def _net() -> nn.Module:
    torch.manual_seed(0)
    return TinyNetwork(ARCH, C=4, N=1)


def _bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("adaptive", [False, True])
def test_bn_stats_equal_one_plain_forward(adaptive: bool) -> None:
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    plain = _net().train()
    plain(x)
    expected = _bn_state(plain)

    model = _net().train()
    base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sam = SAM(model.parameters(), base, rho=2.0 if adaptive else 0.05, adaptive=adaptive)
    nn.functional.cross_entropy(model(x), y).backward()
    sam.first_step()
    with frozen_bn_stats(model):
        nn.functional.cross_entropy(model(x), y).backward()
    sam.second_step()
    got = _bn_state(model)
    assert got.keys() == expected.keys()
    for k in expected:
        assert torch.equal(got[k], expected[k]), k
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_second_step_uses_perturbed_gradient_from_the_saved_weights() -> None:
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    base = torch.optim.SGD([w], lr=1.0)
    sam = SAM([w], base, rho=0.5, adaptive=False)
    (w**2).sum().backward()  # g = 2w = (2, -4)
    sam.first_step()
    e = 0.5 * torch.tensor([2.0, -4.0]) / torch.tensor([2.0, -4.0]).norm()
    assert torch.allclose(w.detach(), torch.tensor([1.0, -2.0]) + e)
    (w**2).sum().backward()
    sam.second_step()
    expected = torch.tensor([1.0, -2.0]) - 2 * (torch.tensor([1.0, -2.0]) + e)
    assert torch.allclose(w.detach(), expected)


class _PerTensorSAM:
    """The reference: SAM written tensor by tensor (the textbook form), over a per-tensor SGD."""

    def __init__(self, params, base, rho, adaptive):
        self.params, self.base, self.rho, self.adaptive = list(params), base, rho, adaptive

    @torch.no_grad()
    def first_step(self):
        live = [p for p in self.params if p.grad is not None]
        scaled = [p.grad * p.abs() if self.adaptive else p.grad for p in live]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in scaled]))
        scale = self.rho / (norm + 1e-12)
        self.saved = [(p, p.detach().clone()) for p in live]
        for p, g in zip(live, scaled, strict=True):
            p.add_(g * p.abs() * scale if self.adaptive else g * scale)
        self.base.zero_grad(set_to_none=True)

    @torch.no_grad()
    def second_step(self):
        for p, w in self.saved:
            p.copy_(w)
        self.base.step()
        self.base.zero_grad(set_to_none=True)


def _per_tensor_frozen(model):
    import contextlib

    @contextlib.contextmanager
    def frozen():
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
        for m in bns:
            m.momentum = 0.0
        yield
        for m, (momentum, count) in zip(bns, saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)

    return frozen


def _train(model, make_sam, frozen, foreach, steps, adaptive):
    base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=foreach)
    sam = make_sam(model.parameters(), base, 2.0 if adaptive else 0.05, adaptive)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(16, 3, 16, 16, generator=gen), torch.randint(0, 10, (16,), generator=gen)
        nn.functional.cross_entropy(model(x), y).backward()
        sam.first_step()
        with frozen():
            nn.functional.cross_entropy(model(x), y).backward()
        sam.second_step()
    return model


@pytest.mark.parametrize("adaptive", [False, True])
def test_list_sam_matches_the_per_tensor_reference(adaptive: bool) -> None:
    ref_model = _net().train()
    ref = _train(ref_model, _PerTensorSAM, _per_tensor_frozen(ref_model), False, 5, adaptive)
    model = _net().train()
    bns = batchnorms(model)
    got = _train(model, SAM, lambda: frozen_bn_stats(bns), True, 5, adaptive)
    ref_state, got_state = ref.state_dict(), got.state_dict()
    assert ref_state.keys() == got_state.keys()
    for key, want in ref_state.items():
        if "num_batches" in key:
            assert int(got_state[key]) == int(want) == 5, key
        else:  # the norm is reduced in another order: equal to float32 rounding, not bit for bit
            torch.testing.assert_close(got_state[key], want, rtol=1e-5, atol=1e-6, msg=key)
    assert not torch.equal(got_state["classifier.weight"], _net().state_dict()["classifier.weight"])


def test_list_sam_is_deterministic_by_seed() -> None:
    runs = []
    for _ in range(2):
        model = _net().train()
        bns = batchnorms(model)
        runs.append(_train(model, SAM, lambda bns=bns: frozen_bn_stats(bns), True, 3, True).state_dict())
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def _sam_step_ops(model, sam, frozen, x, y) -> int:
    """Ops dispatched by one SAM step outside its two forward/backward passes: first_step, entering and
    leaving the frozen-BN block, second_step (which includes the base optimiser's step)."""
    counter = _CountOps()
    nn.functional.cross_entropy(model(x), y).backward()
    with counter:
        sam.first_step()
        block = frozen()
        block.__enter__()
    nn.functional.cross_entropy(model(x), y).backward()
    with counter:
        block.__exit__(None, None, None)
        sam.second_step()
    return counter.count


@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_adds_five_times_fewer_ops_than_the_per_tensor_form(adaptive: bool) -> None:
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    added = {}
    for name in ("reference", "list"):
        torch.manual_seed(0)
        model = TinyNetwork(ARCH, C=4, N=5).train()  # NB201's depth: 5 cells per stage, ~150 tensors
        rho = 2.0 if adaptive else 0.05
        if name == "reference":
            base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=False)
            sam, frozen = _PerTensorSAM(model.parameters(), base, rho, adaptive), _per_tensor_frozen(model)
        else:
            base = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, foreach=True)
            bns = batchnorms(model)
            sam, frozen = SAM(model.parameters(), base, rho, adaptive), lambda bns=bns: frozen_bn_stats(bns)
        _sam_step_ops(model, sam, frozen, x, y)  # first step: momentum buffers are created
        added[name] = _sam_step_ops(model, sam, frozen, x, y)
    print(f"ops SAM adds per step ({'ASAM' if adaptive else 'SAM'}): {added}")
    assert added["list"] * 5 <= added["reference"], added


def test_second_step_without_a_first_step_is_a_plain_base_step() -> None:
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = SAM([w], torch.optim.SGD([w], lr=0.5), rho=0.05, adaptive=False)
    w.grad = torch.tensor([2.0, 4.0])
    opt.second_step()  # nothing was moved, so nothing is restored: only SGD's w - lr * g
    assert w.detach().tolist() == [0.0, -4.0] and w.grad is None


def test_first_step_sets_grads_to_none_and_moves_by_rho_over_norm_plus_1e12() -> None:
    w = nn.Parameter(torch.tensor([0.0, 1.0], dtype=torch.float64))
    opt = SAM([w], torch.optim.SGD([w], lr=0.1), rho=0.5, adaptive=False)
    w.grad = torch.tensor([1e-12, 0.0], dtype=torch.float64)  # ||g|| = 1e-12, the size of the epsilon
    opt.first_step()
    assert w.grad is None  # set to None, not zeroed: the second backward starts clean
    assert w.detach().tolist() == [0.5 * 1e-12 / (1e-12 + 1e-12), 1.0]  # e = rho g / (||g|| + 1e-12)


def test_saved_buffers_follow_a_change_of_the_parameters_with_gradients() -> None:
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.full((3,), 2.0))
    opt = SAM([a, b], torch.optim.SGD([a, b], lr=0.0), rho=0.1, adaptive=False)
    for live, value in ((a, 1.0), (b, 2.0)):  # one live tensor each time, of another shape
        live.grad = torch.ones_like(live)
        opt.first_step()
        assert not torch.equal(live.detach(), torch.full_like(live, value))
        live.grad = torch.ones_like(live)
        opt.second_step()
        assert torch.equal(live.detach(), torch.full_like(live, value))  # restored exactly (lr 0)
