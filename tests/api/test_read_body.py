"""Request bodies: one decoder per body type, reused, with the same errors as before."""

from __future__ import annotations

from tests.api.conftest import Api

from tether.api import http
from tether.api.codec import DeviceCreate


async def test_a_body_type_is_decoded_by_one_reused_decoder(api: Api) -> None:
    made = await api.device("body-dev-1", data={"n": 1})
    assert made["data"] == {"n": 1}
    decoder = http._body_decoders[DeviceCreate]
    made = await api.device("body-dev-2", data={"n": 2})
    assert made["data"] == {"n": 2}  # decoded afresh, by the same decoder
    assert http._body_decoders[DeviceCreate] is decoder


async def test_a_bad_body_is_still_a_clear_400(api: Api) -> None:
    body = await api.call(
        "POST",
        "/api/v1/devices",
        data=b'{"id": "body-dev-3", "name": 5}',
        headers={**api.admin, "Content-Type": "application/json"},
        expect=400,
    )
    assert "name" in body["error"]["message"]
