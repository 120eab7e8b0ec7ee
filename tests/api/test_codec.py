"""The native wire codec: golden frames, and hostile input never crashes a decoder."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.api.codec import (
    AckFrame,
    ClientInbound,
    CommandCreate,
    DeviceInbound,
    HelloFrame,
    ResultFrame,
    SubscribeFrame,
)
from tether.api.views import command_view
from tether.core.lifecycle import CommandState
from tether.core.model import Command, CommandStep

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

device_decoder = msgspec.json.Decoder(DeviceInbound)
client_decoder = msgspec.json.Decoder(ClientInbound)


def test_device_frames_decode_by_type() -> None:
    assert device_decoder.decode(b'{"type":"ack","id":5}') == AckFrame(id=5)
    hello = device_decoder.decode(b'{"type":"hello","deviceId":"d","credential":"c"}')
    assert hello == HelloFrame(device_id="d", credential="c")
    result = device_decoder.decode(
        b'{"type":"result","id":1,"success":false,"error":"jammed","requestId":"r"}'
    )
    assert result == ResultFrame(id=1, success=False, error="jammed", request_id="r")


def test_client_subscribe_frame() -> None:
    frame = client_decoder.decode(
        b'{"type":"subscribe","topic":"notification","deviceIds":["a"],"names":["t"]}'
    )
    assert frame == SubscribeFrame(topic="notification", device_ids=["a"], names=["t"])


def test_unknown_fields_and_types_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match="bogus"):
        device_decoder.decode(b'{"type":"ack","id":1,"bogus":true}')
    with pytest.raises(msgspec.ValidationError):
        device_decoder.decode(b'{"type":"ack","id":"one"}')
    with pytest.raises(msgspec.ValidationError):
        device_decoder.decode(b'{"type":"teleport"}')
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"name":"x","timeout":"soon"}', type=CommandCreate)


def test_command_golden_view() -> None:
    command = Command(
        id=41,
        device_id="lamp-1",
        name="echo",
        parameters={"on": True},
        state=CommandState.SUCCEEDED,
        result={"on": True},
        steps=(CommandStep(name="switch", state="done", time=T0),),
        created_at=T0,
        updated_at=T0,
        completed_at=T0,
        timeout=30.0,
    )
    encoded = msgspec.json.encode(command_view(command))
    assert encoded == (
        b'{"id":41,"deviceId":"lamp-1","name":"echo","parameters":{"on":true},'
        b'"state":"succeeded","status":null,"result":{"on":true},"error":null,'
        b'"steps":[{"name":"switch","state":"done","description":null,'
        b'"time":"2026-01-02T03:04:05.678000Z","data":null}],"ref":null,"createdBy":null,'
        b'"createdAt":"2026-01-02T03:04:05.678000Z","updatedAt":"2026-01-02T03:04:05.678000Z",'
        b'"sentAt":null,"deliveredAt":null,"completedAt":"2026-01-02T03:04:05.678000Z",'
        b'"expiresAt":null,"timeout":30.0}'
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
frame_like = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "ack",
                "result",
                "progress",
                "notification",
                "state",
                "ping",
                "hello",
                "subscribe",
                "command.create",
                "nope",
            ]
        )
    },
    optional={
        "id": json_values,
        "requestId": json_values,
        "name": json_values,
        "parameters": json_values,
        "reported": json_values,
        "topic": json_values,
        "deviceIds": json_values,
        "success": json_values,
    },
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=200) | frame_like.map(msgspec.json.encode))
def test_arbitrary_input_decodes_or_raises_a_decode_error(raw: bytes) -> None:
    for decoder in (device_decoder, client_decoder):
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            decoder.decode(raw)
