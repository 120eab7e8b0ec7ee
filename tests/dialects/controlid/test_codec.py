"""The sans-I/O codec and the shaper: golden examples from the reference, and fuzzing."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.core.errors import BadRequest
from tether.dialects.controlid import codec
from tether.dialects.controlid.agent import Terminal
from tether.dialects.controlid.requeue import endpoints_of
from tether.dialects.controlid.shaper import make_shaper

shape = make_shaper(1 << 20)


# --- golden examples (reference A.5, A.6, A.9, A.10) -----------------------------------------


def test_push_body_matches_the_vendor_example() -> None:
    shaped = shape("set_configuration", {"general": {"language": "pt_BR"}}).parameters
    assert codec.push_body(shaped, body_as_string=False) == {
        "verb": "POST",
        "endpoint": "set_configuration",
        "body": {"general": {"language": "pt_BR"}},
        "contentType": "application/json",
    }


def test_push_body_as_string_matches_the_online_server_example() -> None:
    shaped = shape("load_objects", {"object": "users"}).parameters
    assert codec.push_body(shaped, body_as_string=True) == {
        "verb": "POST",
        "endpoint": "load_objects",
        "body": '{"object":"users"}',
        "contentType": "application/json",
    }


def test_user_set_image_is_octet_stream_with_query() -> None:
    image = base64.b64encode(b"\xff\xd8\xff\xe0jpeg").decode()
    shaped = shape(
        "user_set_image", {"user_id": 40001, "image": image, "timestamp": 1704472804, "match": 0}
    ).parameters
    assert codec.push_body(shaped, body_as_string=True) == {
        "verb": "POST",
        "endpoint": "user_set_image",
        "body": image,
        "contentType": "application/octet-stream",
        "queryString": "user_id=40001&timestamp=1704472804&match=0",
    }


def test_transactions_batch() -> None:
    shaped = shape(
        "transactions",
        {
            "transactions": [
                {"endpoint": "set_configuration", "body": {"general": {"language": "en_US"}}},
                {
                    "endpoint": "message_to_screen",
                    "body": {"message": "hello world!", "timeout": 5000},
                },
            ]
        },
    ).parameters
    wire = codec.push_body(shaped, body_as_string=False)
    assert [t["transactionid"] for t in wire["transactions"]] == ["1", "2"]
    assert wire["transactions"][1]["body"] == {"message": "hello world!", "timeout": 5000}
    assert endpoints_of(shaped) == ["set_configuration", "message_to_screen"]


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (
            b'{"response": {"users": [{"id": 1000, "name": "John Doe", "registration": "0123"}]}}',
            "application/json",
            codec.Result(
                True, {"users": [{"id": 1000, "name": "John Doe", "registration": "0123"}]}, None
            ),
        ),
        (
            b'{"error": "Node or attribute not found. Node path: config->general->param[name=x]"}',
            "application/json",
            codec.Result(
                False,
                None,
                "Node or attribute not found. Node path: config->general->param[name=x]",
            ),
        ),
        (b"response=%7B%22ids%22%3A%5B1%5D%7D", codec.FORM, codec.Result(True, {"ids": [1]}, None)),
        (b'{"response": {}}', "", codec.Result(True, {}, None)),
        (b'{"response": {}, "uuid": "U2"}', "text/plain", codec.Result(True, {}, None, "U2")),
        (
            b'{"transactions_results": [{"transactionid": 1, "success": true, "response": "{}"},'
            b' {"transactionid": 2, "success": false, "error": "bad"}]}',
            "application/json",
            codec.Result(
                False,
                [
                    {"transactionid": 1, "success": True, "response": {}},
                    {"transactionid": 2, "success": False, "error": "bad", "response": None},
                ],
                "1 of 2 transactions failed",
            ),
        ),
    ],
)
def test_results(body: bytes, content_type: str, expected: codec.Result) -> None:
    assert codec.parse_result(body, content_type) == expected


def test_monitor_bodies() -> None:
    door = codec.parse_monitor(
        b'{"door": {"id": 1, "open": true}, "access_event_id": 15, "device_id": 1038508,'
        b' "time": 1575475894}',
        "application/json",
    )
    assert (door.device_id, door.time) == ("1038508", 1575475894)
    secbox = codec.parse_monitor(
        b'{"secbox": {"id": 122641794704911600, "open": true}, "device_id": 4408955728035889,'
        b' "time": 1658155691}'
    )
    assert secbox.device_id == "4408955728035889"
    dao = codec.parse_monitor(
        json.dumps(
            {
                "object_changes": [
                    {"object": "access_logs", "type": "inserted", "values": {"id": "519"}},
                    {"object": "access_logs", "type": "deleted", "values": {"id": "518"}},
                ],
                "device_id": 478435,
            }
        ).encode()
    )
    assert codec.dao_keys(dao.payload, "478435") == [("478435", "access_logs", "519")]
    raw = codec.parse_monitor(b"\x00\x01", codec.BINARY)
    assert raw.payload == {"raw": "AAE="}


def test_device_ids() -> None:
    assert codec.parse_device_id("4408955728035889") == "4408955728035889"
    assert codec.parse_device_id("007") == "7"
    assert codec.parse_device_id(str((1 << 64) - 1)) == str((1 << 64) - 1)
    for bad in (None, "", "x1", "-1", " 1", "1.0", "9" * 21, str(1 << 64), "١٢٣"):
        with pytest.raises(codec.CodecError):
            codec.parse_device_id(bad)


# --- shaper ------------------------------------------------------------------------------------


def test_shaper_accepts_an_envelope_and_any_endpoint() -> None:
    shaped = shape(
        "anything",
        {"endpoint": "remote_enroll", "body": {"type": "face", "save": True, "user_id": 1}},
    ).parameters
    assert shaped["endpoint"] == "remote_enroll"
    assert shape("reboot", None).parameters == {
        "endpoint": "reboot",
        "verb": "POST",
        "contentType": "application/json",
    }
    got = shape("user_get_image", {"verb": "GET", "queryString": "user_id=1000"}).parameters
    assert got == {
        "endpoint": "user_get_image",
        "verb": "GET",
        "contentType": "application/json",
        "queryString": "user_id=1000",
    }
    # Integers in a configuration become the strings the terminal stores.
    assert shape("set_configuration", {"push_server": {"push_request_period": 5}}).parameters[
        "body"
    ] == {"push_server": {"push_request_period": "5"}}


def test_shaper_execute_actions() -> None:
    for action, parameters in (
        ("door", "door=1"),
        ("sec_box", "id=65793, reason=3"),
        ("catra", "allow=clockwise"),
        ("catra", "allow=both"),
    ):
        body = {"actions": [{"action": action, "parameters": parameters}]}
        assert shape("execute_actions", body).parameters["body"] == body
    with pytest.raises(BadRequest):
        shape("execute_actions", {"actions": [{"action": "sec_box", "parameters": "id=x"}]})


# --- the emulated terminal's local API ---------------------------------------------------------


def test_terminal_local_api() -> None:
    device = Terminal("http://unused", 5)
    assert device.execute(
        {"endpoint": "create_objects", "body": {"object": "users", "values": [{"name": "a"}]}}
    ) == {"response": {"ids": [1]}}
    assert "error" in device.execute(
        {"endpoint": "create_objects", "body": {"object": "users", "values": [{"id": 1}]}}
    )
    assert device.execute(
        {
            "endpoint": "modify_objects",
            "body": '{"object": "users", "values": {"name": "b"}, "where": {"users": {"id": 1}}}',
        }
    ) == {"response": {"changes": 1}}
    assert device.execute({"endpoint": "count_objects", "body": {"object": "users"}}) == {
        "response": {"count": 1}
    }
    assert device.execute(
        {"endpoint": "destroy_objects", "body": {"object": "users", "where": {"users": {"id": 1}}}}
    ) == {"response": {"changes": 1}}
    assert device.execute({"endpoint": "nope"}) == {"error": "Invalid endpoint: nope"}
    assert device.execute({"endpoint": "_table"}) == {"error": "Invalid endpoint: _table"}
    device.execute(
        {
            "endpoint": "execute_actions",
            "body": {"actions": [{"action": "door", "parameters": "door=2"}]},
        }
    )
    assert device.api.events[0][0] == "door"
    assert device.api.events[0][1]["door"] == {"id": 2, "open": True}


# --- fuzzing -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
content_types = st.sampled_from(["application/json", codec.FORM, codec.BINARY, "", "text/plain"])


@settings(max_examples=120, deadline=None)
@given(st.binary(max_size=512), content_types)
def test_parse_result_never_raises_anything_but_codec_error(body: bytes, kind: str) -> None:
    try:
        result = codec.parse_result(body, kind)
    except codec.CodecError:
        return
    assert isinstance(result.success, bool)
    assert result.error is None or isinstance(result.error, str)


@settings(max_examples=120, deadline=None)
@given(json_values, content_types)
def test_parse_result_of_any_json(value: Any, kind: str) -> None:
    for document in (value, {"response": value}, {"error": value}, {"transactions_results": value}):
        try:
            result = codec.parse_result(json.dumps(document).encode(), kind)
        except codec.CodecError:
            continue
        if isinstance(document, dict) and "response" in document:
            assert result.success


@settings(max_examples=120, deadline=None)
@given(st.binary(max_size=512), content_types)
def test_parse_monitor_never_raises_anything_but_codec_error(body: bytes, kind: str) -> None:
    try:
        event = codec.parse_monitor(body, kind)
    except codec.CodecError:
        return
    assert event.device_id is None or event.device_id.isdigit()
    codec.dao_keys(event.payload, "1")


@settings(max_examples=120, deadline=None)
@given(st.text(max_size=40))
def test_parse_device_id_is_canonical_or_refused(raw: str) -> None:
    try:
        parsed = codec.parse_device_id(raw)
    except codec.CodecError:
        return
    assert parsed == str(int(parsed))
    assert int(parsed) <= codec.MAX_DEVICE_ID


@settings(max_examples=120, deadline=None)
@given(st.text(max_size=30), json_values)
def test_shaper_refuses_with_bad_request_only(name: str, parameters: Any) -> None:
    try:
        shaped = shape(name, parameters).parameters
    except BadRequest:
        return
    wire = codec.push_body(shaped, body_as_string=True)
    json.dumps(wire)  # always encodable
    assert codec.ENDPOINT.fullmatch(wire["endpoint"])


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64), st.integers(min_value=0, max_value=200))
def test_decode_base64_bounds(data: bytes, limit: int) -> None:
    text = base64.b64encode(data).decode()
    if len(data) <= limit:
        assert codec.decode_base64(text, limit) == data
    else:
        with pytest.raises(codec.CodecError):
            codec.decode_base64(text, limit)
