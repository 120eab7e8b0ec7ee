"""The sans-I/O codec: envelopes, lenient key lookup, MACs, results, device tokens.

Golden values come from the reference's documented samples (section C.2); parsers are
also driven with hypothesis, since device bodies are whatever a shell script produced.
"""

from __future__ import annotations

import contextlib
import json

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.core.errors import BadRequest, Unauthorized
from tether.dialects.infiniteclouds import codec

KEY = b"k" * 32
SAMPLE_KEEPALIVE_RESPONSE = {
    "data": {"triggerEvent": {"configUpdate": False, "firmwareUpdate": False, "commands": []}},
    "message": "success",
    "status": 200,
    "errors": False,
    "httpCode": 200,
    "errorCode": 0,
}


def test_envelope_matches_the_documented_keepalive_reply() -> None:
    data = codec.trigger_event(
        config_update=False, firmware_update=False, send_status=False, commands=[]
    )
    answer = json.loads(codec.envelope(data))
    # The documented reply plus sendStatus (seen in the curl sample), in that key order.
    expected = SAMPLE_KEEPALIVE_RESPONSE
    assert {k: v for k, v in answer.items() if k != "data"} == {
        k: v for k, v in expected.items() if k != "data"
    }
    trigger = answer["data"]["triggerEvent"]
    assert list(trigger) == ["configUpdate", "firmwareUpdate", "sendStatus", "commands"]
    assert {k: trigger[k] for k in expected["data"]["triggerEvent"]} == {
        "configUpdate": False,
        "firmwareUpdate": False,
        "commands": [],
    }


def test_error_envelope() -> None:
    answer = json.loads(codec.envelope(None, "Token expired", 401))
    assert answer == {
        "data": None,
        "message": "Token expired",
        "status": 401,
        "errors": True,
        "httpCode": 401,
        "errorCode": 401,
    }


def test_fields_are_found_in_any_case() -> None:
    body = {"triggerevent": {"configupdate": True}, "Config": {"REVISIONID": "r1"}}
    assert codec.field(body, "triggerEvent") == {"configupdate": True}
    assert codec.reported_revision(body) == "r1"
    assert codec.field(body, "missing") is None
    assert codec.reported_revision({}) is None
    assert codec.reported_revision({"config": {}}) is None
    assert codec.reported_revision({"config": {"revisionId": ""}}) == ""
    assert codec.reported_revision({"config": {"revisionId": 7}}) == "7"
    with pytest.raises(BadRequest):
        codec.reported_revision({"config": {"revisionId": {"x": 1}}})
    assert codec.field("not a dict", "x") is None


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("c4:4b:d1:a0:32:c1", "c4:4b:d1:a0:32:c1"),
        ("C4-4B-D1-A0-32-C1", "c4:4b:d1:a0:32:c1"),
        ("c44bd1a032c1", "c4:4b:d1:a0:32:c1"),
    ],
)
def test_macs(raw: str, normal: str) -> None:
    assert codec.normal_mac(raw) == normal
    assert codec.device_id_for(normal) == "ic-c44bd1a032c1"


@pytest.mark.parametrize("raw", [None, "", "c4:4b:d1:a0:32", "zz:4b:d1:a0:32:c1", "0" * 12])
def test_bad_macs(raw: str | None) -> None:
    with pytest.raises(BadRequest):
        codec.normal_mac(raw)


def test_decode_body() -> None:
    assert codec.decode_body(b"  ") == {}
    assert codec.decode_body(b'{"a": 1}') == {"a": 1}
    for bad in (b"{", b"[1]", b'"x"', b"\xff"):
        with pytest.raises(BadRequest):
            codec.decode_body(bad)


def test_status_types() -> None:
    assert codec.status_type({}) is None
    assert codec.status_type({"statusType": ""}) is None
    assert codec.status_type({"statusType": "keepAlive"}) == codec.KEEPALIVE
    assert codec.status_type({"statustype": "STATISTICS"}) == codec.STATISTICS
    with pytest.raises(BadRequest):
        codec.status_type({"statusType": 3})


def test_command_results() -> None:
    body = {
        "commands": [
            {"commandId": "7", "status": "SUCCEEDED", "exitCode": 0, "output": "ok"},
            {"commandId": "cmd_8", "status": "FAILED", "exitCode": 2, "output": "boom"},
            {"commandId": 9, "exitCode": 0},
            {"commandId": "10", "exitCode": 1},
            {"commandId": "11", "status": "IN_PROGRESS"},
        ]
    }
    found = codec.command_results(body)
    assert [(o.command_id, o.state) for o in found] == [
        (7, "succeeded"),
        (8, "failed"),
        (9, "succeeded"),
        (10, "failed"),
        (11, "in_progress"),
    ]
    assert found[0].result == {"exitCode": 0, "output": "ok"}
    assert found[1].error == "boom"
    assert found[3].error == "failed (exit code 1)"
    assert codec.command_results({"commands": None}) == []
    assert codec.command_results({}) == []
    single = codec.command_results({"commandId": "5", "status": "success"})
    assert [(o.command_id, o.state) for o in single] == [(5, "succeeded")]


@pytest.mark.parametrize(
    "body",
    [
        {"commands": {"commandId": "1"}},
        {"commands": ["x"]},
        {"commands": [{"commandId": "abc", "status": "SUCCEEDED"}]},
        {"commands": [{"commandId": "1", "status": "MAYBE"}]},
        {"commands": [{"commandId": "1"}]},
    ],
)
def test_bad_command_results(body: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        codec.command_results(body)


def test_token_round_trip_in_the_documented_shape() -> None:
    token = codec.DeviceToken("ic-c44bd1a032c1", "c4:4b:d1:a0:32:c1", 3)
    raw = codec.issue_token(KEY, token, now=1000, ttl=3600, audience="aud", issuer="iss")
    claims = jwt.decode(raw, options={"verify_signature": False})
    assert claims["deviceData"] == {"macAddress": "c4:4b:d1:a0:32:c1", "deviceId": token.device_id}
    assert (claims["iat"], claims["exp"], claims["aud"], claims["iss"]) == (
        1000,
        4600,
        "aud",
        "iss",
    )
    assert jwt.get_unverified_header(raw)["alg"] == "HS256"
    back = codec.verify_token(KEY, raw, now=4599, audience="aud", issuer="iss")
    assert back == codec.DeviceToken(token.device_id, token.mac, 3, 4600)
    with pytest.raises(Unauthorized, match="Token expired"):
        codec.verify_token(KEY, raw, now=4600, audience="aud", issuer="iss")
    for key, audience, issuer in (
        (b"x" * 32, "aud", "iss"),
        (KEY, "other", "iss"),
        (KEY, "aud", "x"),
    ):
        with pytest.raises(Unauthorized, match="Invalid token"):
            codec.verify_token(key, raw, now=2000, audience=audience, issuer=issuer)


def test_tokens_without_our_claims_are_refused() -> None:
    base = {"exp": 9999, "aud": "aud", "iss": "iss"}
    for claims in (
        base,  # no deviceData
        {**base, "deviceData": {"deviceId": "d", "macAddress": "m"}, "own": 1},  # no typ
        {**base, "typ": codec.TOKEN_TYPE, "deviceData": {"deviceId": "d"}, "own": 1},
        {**base, "typ": codec.TOKEN_TYPE, "deviceData": {"deviceId": "d", "macAddress": "m"}},
    ):
        raw = jwt.encode(claims, KEY, algorithm="HS256")
        with pytest.raises(Unauthorized):
            codec.verify_token(KEY, raw, now=1, audience="aud", issuer="iss")
    none = jwt.encode({**base, "typ": codec.TOKEN_TYPE}, None, algorithm="none")
    with pytest.raises(Unauthorized):
        codec.verify_token(KEY, none, now=1, audience="aud", issuer="iss")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer  ", "Basic abc", "token"])
def test_bearer_missing(header: str | None) -> None:
    with pytest.raises(Unauthorized, match="Missing token"):
        codec.bearer(header)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(["commands", "commandId", "status", "config", "firmware", "x"]), JSON
    )
)
def test_parsers_never_fail_other_than_bad_request(body: dict[str, object]) -> None:
    """Whatever a device sends, parsing either works or says BadRequest (never a 500)."""
    for parse in (
        codec.command_results,
        codec.reported_revision,
        codec.reported_firmware,
        codec.status_type,
    ):
        with contextlib.suppress(BadRequest):
            parse(body)


@given(st.binary(max_size=64))
def test_decode_body_never_crashes(raw: bytes) -> None:
    """Bytes in: a dict, or BadRequest; any other error escapes and fails the test."""
    try:
        decoded = codec.decode_body(raw)
    except BadRequest:
        return
    assert isinstance(decoded, dict)
