"""Every registered protocol gets the same contract test; the hash is stable and field-sensitive."""

from __future__ import annotations

import json

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
    "proxy": "7ad30ccad8e7",
    "proxy-0.2": "e6c3fcf12411",
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

    proxy = get_protocol("proxy-0.2")
    later = Later(**proxy.to_dict())
    assert later.hash == proxy.hash == PINNED_HASHES["proxy-0.2"]
    assert later.replace(extra=1).hash not in {proxy.hash, later.replace(extra=2).hash}
    # the fields of 0.2 count as before, whatever their value
    assert later.replace(precision="bf16").hash == proxy.replace(precision="bf16").hash


def test_corruption_resolution_is_checked_and_enters_the_hash_only_when_input() -> None:
    proxy = get_protocol("proxy-0.2")
    assert proxy.corruption_resolution == "native"
    assert proxy.replace(corruption_resolution="native").hash == PINNED_HASHES["proxy-0.2"]
    at_input = proxy.replace(corruption_resolution="input")
    assert at_input.hash not in PINNED_HASHES.values() and at_input.hash == at_input.replace(name="x").hash
    with pytest.raises(ConfigError, match="corruption_resolution 'inputs' not one of native, input"):
        proxy.replace(corruption_resolution="inputs")


@pytest.mark.parametrize("form", ["3-5", "3,4,5", "5,4,3", [3, 4, 5], (5, 3, 4)])
def test_corruption_severities_read_every_form_as_one_sorted_tuple(form) -> None:
    from flatnas_bench.bench.driver import parse_settings, resolve_protocol

    three = get_protocol("proxy-0.2", corruption_severities=form)
    assert three.corruption_severities == (3, 4, 5)
    assert three.hash not in PINNED_HASHES.values()
    # the CLI's --set reads the same protocol, and a stored card (JSON list) rebuilds it
    text = form if isinstance(form, str) else json.dumps(list(form))
    assert resolve_protocol("proxy-0.2", parse_settings([f"corruption_severities={text}"])).hash == three.hash
    assert Protocol(**{**three.to_dict(), "corruption_severities": [3, 4, 5]}).hash == three.hash


def test_corruption_severities_enter_the_hash_only_off_all_five() -> None:
    proxy = get_protocol("proxy-0.2")
    assert proxy.corruption_severities == (1, 2, 3, 4, 5)
    # 0.3's proxy is 0.2's with the corruption test at 16 px over severities 3-5, nothing else
    assert get_protocol("proxy") == proxy.replace(
        name="proxy", corruption_resolution="input", corruption_severities="3-5"
    )
    assert get_protocol("proxy-0.2", corruption_severities="1-5").hash == PINNED_HASHES["proxy-0.2"]
    assert get_protocol("proxy-0.2", corruption_severities=[5, 4, 3, 2, 1]).hash == PINNED_HASHES["proxy-0.2"]
    hashes = {get_protocol("proxy-0.2", corruption_severities=s).hash for s in ("3-5", "4-5", "5", "1,3")}
    assert len(hashes) == 4


@pytest.mark.parametrize("bad", ["0-2", "3-6", "3,3", "", "a-b", "high", [], [1.5], [True], 6, 2.0])
def test_bad_corruption_severities_are_one_line_config_errors(bad) -> None:
    with pytest.raises(ConfigError, match=r"^protocol 'proxy-0.2': corruption_severities .* must be"):
        get_protocol("proxy-0.2", corruption_severities=bad)
