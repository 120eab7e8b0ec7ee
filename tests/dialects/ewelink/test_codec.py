"""The sans-I/O protocol core: device-bound transform, outlet merge, TH rule, selection."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tether.dialects.ewelink import codec

# What the one JSON codec accepts: 64-bit integers, text without NUL.
_ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_text = st.text(
    st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=5
)
json_values = st.recursive(
    st.none() | st.booleans() | _ints | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)


def _has_empty_or_bool(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, dict):
        return not value or any(_has_empty_or_bool(v) for v in value.values())
    if isinstance(value, list):
        return not value or any(_has_empty_or_bool(v) for v in value)
    return False


@given(json_values)
def test_device_bound_values_have_no_empty_containers_nulls_or_booleans(value: Any) -> None:
    out = codec.to_device(value)
    assert not _has_empty_or_bool(out)
    assert codec.decode(codec.encode(out)) == out


def test_device_bound_examples_and_compact_encoding() -> None:
    assert codec.to_device({}) == 0
    assert codec.to_device({"timers": [], "on": True, "off": False, "x": None}) == {
        "timers": 0,
        "on": 1,
        "off": 0,
        "x": 0,
    }
    assert codec.encode({"a": [1, {"b": "c"}]}) == '{"a":[1,{"b":"c"}]}'


@given(
    st.lists(st.sampled_from(["on", "off"]), min_size=1, max_size=6),
    st.dictionaries(st.integers(0, 7), st.sampled_from(["on", "off"]), max_size=8),
)
def test_outlet_merge_keeps_every_channel(current: list[str], changes: dict[int, str]) -> None:
    old = [{"switch": s, "outlet": i} for i, s in enumerate(current)]
    patch = {"switches": [{"outlet": o, "switch": s} for o, s in changes.items()]}
    merged = codec.merge_params({"switches": old}, patch)["switches"]
    outlets = [item["outlet"] for item in merged]
    assert outlets == sorted(set(range(len(current))) | set(changes))
    for item in merged:
        expected = changes.get(item["outlet"])
        if expected is None:
            expected = current[item["outlet"]]
        assert item["switch"] == expected


def test_merge_leaves_other_params_alone() -> None:
    assert codec.merge_params({"switch": "on"}, {"rssi": -50}) == {"rssi": -50}
    # Not outlet-shaped: replaced as sent.
    assert codec.merge_params({"switches": [1]}, {"switches": [2]}) == {"switches": [2]}


HEAT = [
    {"targetHigh": "20", "reaction": {"switch": "off"}},
    {"targetLow": "18", "reaction": {"switch": "on"}},
]


@given(st.floats(-50, 80, allow_nan=False), st.sampled_from(["on", "off"]))
def test_th_rule(temperature: float, switch: str) -> None:
    params = {
        "deviceType": "temperature",
        "mainSwitch": "on",
        "currentTemperature": str(temperature),
        "targets": HEAT,
        "switch": switch,
    }
    reaction = codec.th_reaction(params)
    if temperature > 20:
        want = "off"
    elif temperature < 18:
        want = "on"
    else:
        want = switch  # the hysteresis band changes nothing
    assert ({**params, **(reaction or {})})["switch"] == want
    assert reaction is None or reaction == {"switch": want}


def test_th_rule_needs_auto_mode_and_accepts_numbers() -> None:
    base = {
        "currentHumidity": 70,
        "targets": [
            {"targetHigh": 60, "reaction": {"switch": "on"}},
            {"targetLow": 40, "reaction": {"switch": "off"}},
        ],
        "switch": "off",
    }
    assert codec.th_reaction({**base, "deviceType": "humidity", "mainSwitch": "on"}) == {
        "switch": "on"
    }
    assert codec.th_reaction({**base, "deviceType": "humidity", "mainSwitch": "off"}) is None
    assert codec.th_reaction({**base, "deviceType": "normal", "mainSwitch": "on"}) is None
    assert (
        codec.th_reaction(
            {**base, "currentHumidity": "unavailable", "deviceType": "humidity", "mainSwitch": "on"}
        )
        is None
    )


def test_select_params_and_sequence_keys_and_dates() -> None:
    stored = {"switch": "on", "timers": [], "rssi": -40}
    assert codec.select_params(stored, []) == stored
    assert codec.select_params(stored, ["switch", "nope"]) == {"switch": "on"}
    assert codec.select_params(stored, "switch|rssi") == {"switch": "on", "rssi": -40}
    assert codec.sequence_key("1") != codec.sequence_key(1)
    when = datetime(2017, 9, 17, 0, 24, 54, 955123, tzinfo=UTC)
    assert codec.iso_millis(when) == "2017-09-17T00:24:54.955Z"
