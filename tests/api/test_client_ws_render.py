"""The client WebSocket renders an event once for all its subscribers."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from tether.api import client_ws
from tether.api.views import encoder, notification_view
from tether.core.model import Notification

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _notification(i: int) -> Notification:
    return Notification(id=i, device_id="d", name="tick", parameters={"i": i}, timestamp=AT)


def test_one_event_is_rendered_once_and_each_new_event_afresh() -> None:
    memo = client_ws._Rendered()
    first = _notification(1)
    rendered = memo.of(first)
    assert bytes(rendered) == encoder.encode(notification_view(first))
    assert memo.of(first) is rendered  # the same object: no second encode
    second = _notification(2)
    of_second = memo.of(second)
    assert msgspec.json.decode(bytes(of_second))["parameters"] == {"i": 2}
    # An equal but distinct event is rendered again (identity, not equality, is the key).
    again = _notification(2)
    assert memo.of(again) is not of_second


def test_the_event_frame_embeds_the_rendered_data() -> None:
    from tether.api.codec import EventFrame

    memo = client_ws._Rendered()
    item = _notification(7)
    frame = encoder.encode(EventFrame(subscription_id=3, topic="notification", data=memo.of(item)))
    decoded = msgspec.json.decode(frame)
    assert decoded["type"] == "event"
    assert decoded["subscriptionId"] == 3
    assert decoded["data"] == msgspec.json.decode(encoder.encode(notification_view(item)))
