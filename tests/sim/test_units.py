"""The simulator's pure parts: plans, mixes, ids, shards and histograms."""

from __future__ import annotations

import random

import pytest

from tether.sim.plan import DIALECTS, Plan, PlanError, check, default_mix, is_local, parse_mix
from tether.sim.provision import DeviceSpec, Fleet, device_id, mac_of
from tether.sim.runner import shards
from tether.sim.stats import Histogram, Tally


def test_default_mix_adds_up_and_covers_every_dialect() -> None:
    for n in (1, 7, 13, 200, 2_000, 99_999):
        mix = default_mix(n)
        assert sum(mix.values()) == n
        if n >= len(DIALECTS):
            assert set(mix) == set(DIALECTS)


def test_parse_mix_accepts_aliases_and_refuses_nonsense() -> None:
    assert parse_mix("ws=2, ewelink=3,ic=1") == {"native-ws": 2, "ewelink": 3, "infiniteclouds": 1}
    for bad, words in (
        ("lora=3", "lora=3"),
        ("ewelink", "DIALECT=COUNT"),
        ("ewelink=x", "not a whole number"),
        ("ewelink=-1", "0 or more"),
    ):
        with pytest.raises(PlanError) as caught:
            parse_mix(bad)
        assert caught.value.option == "--mix"
        assert words in caught.value.message


@pytest.mark.parametrize(
    ("change", "option"),
    [
        ({"mix": {}}, "--devices"),
        ({"mix": {"native-ws": 100_001}}, "--devices"),
        ({"duration": 0.0}, "--duration"),
        ({"duration": 10 * 86_400.0}, "--duration"),
        ({"url": "ftp://x"}, "--url"),
        ({"name": "Bad Name"}, "--name"),
        ({"command_rate": -1.0}, "--command-rate"),
        ({"payload_bytes": 10**6}, "--payload"),
        ({"processes": 0}, "--processes"),
        ({"source_addresses": ["not-an-ip"]}, "--source-addresses"),
    ],
)
def test_check_names_the_option_at_fault(change: dict[str, object], option: str) -> None:
    fields: dict[str, object] = {"mix": {"native-ws": 1}, **change}
    with pytest.raises(PlanError) as caught:
        check(Plan(**fields))  # type: ignore[arg-type]
    assert caught.value.option == option


def test_is_local() -> None:
    assert is_local("http://127.0.0.1:8080")
    assert is_local("http://127.3.4.5")
    assert is_local("http://localhost:8080")
    assert is_local("http://[::1]:8080")
    assert not is_local("http://192.0.2.10:8080")
    assert not is_local("https://tether.example.com")


def test_ids_follow_each_dialect_form_and_differ_by_run_name() -> None:
    assert device_id("a", "native-ws", 3) == "sim-a-ws-3"
    ewelink = device_id("a", "ewelink", 3)
    assert len(ewelink) == 10
    assert int(ewelink, 16) >= 0
    assert 0 < int(device_id("a", "controlid", 3)) < 2**63
    assert device_id("a", "infiniteclouds", 3) == "ic-" + mac_of("a", 3).replace(":", "")
    assert device_id("a", "ewelink", 3) != device_id("b", "ewelink", 3)


def test_shards_split_each_dialect_round_robin_and_interleave() -> None:
    mix = {"native-ws": 5, "ewelink": 3, "opengate": 2}
    devices = [DeviceSpec(dialect=d, id=f"{d}-{n}") for d, c in mix.items() for n in range(c)]
    plan = Plan(mix=mix, processes=2)
    parts = shards(plan, Fleet(network_id=1, devices=devices))
    assert [len(p) for p in parts] == [6, 4]
    # Device n of a dialect runs in shard n % 2 (the OpenGate endpoints depend on it).
    assert [s.id for s in parts[1] if s.dialect == "opengate"] == ["opengate-1"]
    # The ramp starts a mix, not one dialect after another.
    assert [s.dialect for s in parts[0][:3]] == ["native-ws", "ewelink", "opengate"]


def test_histogram_percentiles_are_within_two_percent_and_merge_exactly() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-5, 1.2) for _ in range(20_000)]
    whole, left, right = Histogram(), Histogram(), Histogram()
    for i, value in enumerate(values):
        whole.record(value)
        (left if i % 2 else right).record(value)
    left.merge(right)
    assert (left.counts, left.count, left.low, left.high) == (
        whole.counts,
        whole.count,
        whole.low,
        whole.high,
    )
    assert left.total == pytest.approx(whole.total)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.99, 0.999):
        exact = ordered[int(q * len(values)) - 1]
        found = whole.quantile(q)
        assert found is not None
        assert abs(found - exact) / exact < 0.021, (q, found, exact)
    assert whole.quantile(1.0) == max(values)
    assert len(whole.counts) < 1_300  # bounded, whatever the run length
    assert Histogram().quantile(0.5) is None


def test_tallies_merge_by_dialect() -> None:
    a, b = Tally(), Tally()
    a.command_done("ewelink", 0.01)
    b.command_done("ewelink", 0.02)
    b.telemetry_done("infiniteclouds", None, 5)
    b.error("ewelink_disconnected")
    a.merge(b)
    assert a.commands_succeeded == 2
    assert a.dialects["ewelink"].command_round_trip.count == 2
    assert a.telemetry_sent == 5
    assert a.telemetry_round_trip.count == 0  # counted, not timed
    assert a.errors == {"ewelink_disconnected": 1}
