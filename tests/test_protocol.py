"""Every registered protocol gets the same contract test; the hash is stable and field-sensitive."""

from __future__ import annotations

import pytest

from flatnas_bench.core.errors import ConfigError
from flatnas_bench.core.protocol import Protocol, get_protocol, list_protocols


@pytest.mark.parametrize("name", list_protocols())
def test_registered_protocol_contract(name: str) -> None:
    p = get_protocol(name)
    assert p.name == name
    assert hash(p) == hash(get_protocol(name))
    assert len(p.hash) == 12 and p.hash == get_protocol(name).hash
    assert get_protocol(name, seed=p.seed + 1).hash != p.hash
    assert p.replace(name="other").hash == p.hash  # the name is a label only


def test_presets_follow_the_references() -> None:
    nb = get_protocol("nb201")
    assert (nb.epochs, nb.batch_size, nb.lr, nb.lr_schedule, nb.nesterov, nb.weight_decay) == (
        200, 256, 0.1, "cosine", True, 5e-4
    )  # fmt: skip
    assert get_protocol("nb201-12").epochs == 12
    assert get_protocol("nb201", sam="sam").sam == "sam"
    fl = get_protocol("flatnas")
    assert (fl.sam, fl.rho, fl.lr_schedule, fl.label_smoothing, fl.batch_size, fl.epochs) == (
        "asam", 2.0, "constant", 0.1, 128, 6
    )  # fmt: skip
    assert get_protocol("proxy").sam != "none"


@pytest.mark.parametrize(
    "overrides",
    [{"precision": "fp16"}, {"sam": "bogus"}, {"epochs": 0}, {"lr": -1.0}, {"not_a_field": 1}],
)
def test_bad_values_raise_config_error(overrides: dict) -> None:
    with pytest.raises(ConfigError, match=r"protocol|unknown"):
        get_protocol("nb201", **overrides)


def test_unknown_protocol_lists_known() -> None:
    with pytest.raises(ConfigError, match="proxy"):
        get_protocol("nope")


def test_fp16_message_names_alternatives() -> None:
    with pytest.raises(ConfigError, match="bf16"):
        Protocol(precision="fp16")


# Every registered protocol's hash as the bundled tables and calibration runs stored it: a field added to
# Protocol must leave these alone (the hash rule in flatnas_bench.core.protocol).
PINNED_HASHES = {
    "nb201": "2ff2664c42d2",
    "nb201-12": "b21660569d63",
    "flatnas": "cbd7147bd4a8",
    "proxy": "e6c3fcf12411",
    "proxy-0.1": "772034ca7fcd",
}


@pytest.mark.parametrize("name", list_protocols())
def test_registered_hashes_stay_as_stored(name: str) -> None:
    assert get_protocol(name).hash == PINNED_HASHES[name]


def test_a_later_field_enters_the_hash_only_off_its_default() -> None:
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Later(Protocol):
        extra: int = 0  # a field added after 0.2, at the default that reproduces earlier runs

    proxy = get_protocol("proxy")
    later = Later(**proxy.to_dict())
    assert later.hash == proxy.hash == PINNED_HASHES["proxy"]
    assert later.replace(extra=1).hash not in {proxy.hash, later.replace(extra=2).hash}
    # the fields of 0.2 count as before, whatever their value
    assert later.replace(precision="bf16").hash == proxy.replace(precision="bf16").hash


def test_corruption_resolution_is_checked_and_enters_the_hash_only_when_input() -> None:
    proxy = get_protocol("proxy")
    assert proxy.corruption_resolution == "native"
    assert proxy.replace(corruption_resolution="native").hash == PINNED_HASHES["proxy"]
    at_input = proxy.replace(corruption_resolution="input")
    assert at_input.hash not in PINNED_HASHES.values() and at_input.hash == at_input.replace(name="x").hash
    with pytest.raises(ConfigError, match="corruption_resolution 'inputs' not one of native, input"):
        proxy.replace(corruption_resolution="inputs")
