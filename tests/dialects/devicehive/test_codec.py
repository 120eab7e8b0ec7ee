"""Golden forms from the DeviceHive reference, and the millisecond clock."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.core.clock import ManualClock
from tether.core.lifecycle import CommandState
from tether.core.model import Command, Device, Notification
from tether.dialects.devicehive import codec
from tether.dialects.devicehive.clock import MillisecondClock

T0 = datetime(2018, 6, 20, 11, 22, 33, 206_512, tzinfo=UTC)


def test_timestamp_format_is_millisecond_utc_without_zone() -> None:
    assert codec.fmt_ts(T0) == "2018-06-20T11:22:33.206"
    assert codec.fmt_ts(T0.replace(microsecond=0)) == "2018-06-20T11:22:33.000"
    assert codec.fmt_ts(None) is None


@pytest.mark.parametrize(
    "raw",
    ["2018-06-20T11:22:33.206", "2018-06-20T11:22:33.206Z", "2018-06-20T13:22:33.206+02:00"],
)
def test_timestamps_parse_leniently_no_zone_is_utc(raw: str) -> None:
    assert codec.parse_ts(raw) == T0.replace(microsecond=206_000)


def test_unparseable_timestamp_is_400() -> None:
    with pytest.raises(codec.DhError) as caught:
        codec.parse_ts("yesterday")
    assert caught.value.code == 400


def test_a_millisecond_cursor_covers_its_whole_millisecond() -> None:
    assert codec.cursor("2018-06-20T11:22:33.206") == T0.replace(microsecond=206_999)
    assert codec.cursor("2018-06-20T11:22:33.206512") == T0


def test_golden_command_event_has_all_twelve_keys() -> None:
    """Reference §3.4: the ``command/insert`` event of the wire trace."""
    command = Command(
        id=1002,
        device_id="trace-device-1",
        name="a",
        parameters={"x": 1},
        created_by=1,
        created_at=T0,
        updated_at=T0,
        expires_at=T0 + timedelta(seconds=5),
    )
    frame = codec.event("command/insert", 1000, "command", codec.command_view(command, 1, 1))
    assert codec.encode(frame) == (
        '{"action":"command/insert","subscriptionId":1000,"command":{"id":1002,"command":"a",'
        '"timestamp":"2018-06-20T11:22:33.206","lastUpdated":"2018-06-20T11:22:33.206",'
        '"userId":1,"deviceId":"trace-device-1","networkId":1,"deviceTypeId":1,'
        '"parameters":{"x":1},"lifetime":5,"status":null,"result":null}}'
    )


def test_updated_command_view_maps_the_lifecycle() -> None:
    later = T0 + timedelta(milliseconds=5)
    base = Command(id=1, device_id="d", name="a", created_at=T0, updated_at=later)
    delivered = Command(**{**_fields(base), "state": CommandState.DELIVERED})
    assert not codec.is_updated(delivered)
    assert codec.command_view(delivered, 1, 1)["lastUpdated"] == codec.fmt_ts(T0)
    done = Command(
        **{**_fields(base), "state": CommandState.SUCCEEDED, "status": "done", "result": 1}
    )
    view = codec.command_view(done, 1, 1)
    assert (view["status"], view["result"], view["lastUpdated"]) == ("done", 1, codec.fmt_ts(later))
    failed = Command(**{**_fields(base), "state": CommandState.FAILED, "error": "boom"})
    view = codec.command_view(failed, None, None)
    assert (view["status"], view["result"]) == ("failed", {"error": "boom"})


def _fields(command: Command) -> dict[str, object]:
    return {f: getattr(command, f) for f in command.__struct_fields__}


@pytest.mark.parametrize(
    ("status", "result", "outcome"),
    [
        ("done", {"ok": True}, "succeeded"),
        (None, {"ok": True}, "succeeded"),
        ("Completed", None, "succeeded"),
        ("failed", {"why": "x"}, "failed"),
        ("Error", None, "failed"),
        ("in progress", None, "progress"),
    ],
)
def test_update_outcome(status: str | None, result: object, outcome: str) -> None:
    assert codec.update_outcome(status, result) == outcome


def test_golden_notification_and_device_views() -> None:
    note = Notification(
        id=1003, device_id="trace-device-1", name="temp", parameters={"v": 21.5}, timestamp=T0
    )
    assert codec.notification_view(note, 1, 1) == {
        "id": 1003,
        "notification": "temp",
        "deviceId": "trace-device-1",
        "networkId": 1,
        "deviceTypeId": 1,
        "timestamp": "2018-06-20T11:22:33.206",
        "parameters": {"v": 21.5},
    }
    device = Device(id="trace-device-1", name="trace-device-1", created_at=T0, updated_at=T0)
    assert codec.device_view(device) == {
        "id": "trace-device-1",
        "name": "trace-device-1",
        "data": None,
        "networkId": None,
        "deviceTypeId": None,
        "isBlocked": False,
    }


def test_golden_envelopes() -> None:
    """Reference §3.1: key order action, requestId, status, then payload or code/error."""
    ok = codec.success("device/get", "b8763a8f", {"device": {"id": "x"}})
    assert list(ok) == ["action", "requestId", "status", "device"]
    bad = codec.failure("device/get", "x", 404, "Device with such deviceId = nope not found")
    assert codec.encode(bad) == (
        '{"action":"device/get","requestId":"x","status":"error","code":404,'
        '"error":"Device with such deviceId = nope not found"}'
    )
    assert codec.rest_error(401, "Unauthorized") == {"error": 401, "message": "Unauthorized"}


@pytest.mark.parametrize(
    "raw", ["", "[]", "{", '{"requestId": 1}', '{"action": 5}', "null", '"text"']
)
def test_bad_frames_raise_400(raw: str) -> None:
    with pytest.raises(codec.DhError) as caught:
        codec.parse_request(raw)
    assert caught.value.code == 400


@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_any_text_parses_or_gives_a_400(raw: str) -> None:
    try:
        action, _, message = codec.parse_request(raw)
    except codec.DhError as error:
        code = error.code
    else:
        code = 0
        assert isinstance(action, str)
        assert isinstance(message, dict)
    assert code in (0, 400)


def test_millisecond_clock_never_repeats_a_millisecond() -> None:
    class Frozen:
        def __init__(self) -> None:
            self.value = T0

        def now(self) -> datetime:
            return self.value

        def monotonic(self) -> float:
            return 0.0

    inner = Frozen()
    clock = MillisecondClock(inner, max_lead=0.01)
    seen = [codec.fmt_ts(clock.now()) for _ in range(10)]
    assert len(set(seen)) == 10
    assert seen == sorted(seen)
    # Past the lead cap it keeps strictly increasing in microseconds instead of drifting.
    values = [clock.now() for _ in range(20)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert values[-1] - inner.value < timedelta(milliseconds=12)


def test_manual_clocks_are_left_alone() -> None:
    clock = ManualClock()
    assert clock.now() == clock.now()


def test_millisecond_clock_passes_a_later_millisecond_through_unchanged() -> None:
    class Stepping:
        def __init__(self) -> None:
            self.value = T0.replace(microsecond=123_456)

        def now(self) -> datetime:
            self.value += timedelta(microseconds=1_250)
            return self.value

        def monotonic(self) -> float:
            return 0.0

    inner = Stepping()
    clock = MillisecondClock(inner, max_lead=1.0)
    readings = [clock.now() for _ in range(5)]
    # Each reading is already in a later millisecond: returned exactly, microseconds kept.
    assert readings == [
        T0.replace(microsecond=123_456) + timedelta(microseconds=1_250 * k) for k in range(1, 6)
    ]
    # A reading in the same millisecond moves to the start of the next one.
    inner.value -= timedelta(microseconds=1_250)
    bumped = clock.now()
    assert bumped == readings[-1].replace(
        microsecond=readings[-1].microsecond // 1000 * 1000
    ) + timedelta(milliseconds=1)
    assert bumped.tzinfo is not None
