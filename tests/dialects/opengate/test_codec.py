"""The pure codec: golden bodies from the reference (B.3, B.4, B.6, B.9) and properties."""

from __future__ import annotations

import contextlib
import gzip
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.core.errors import BadRequest, PayloadTooLarge
from tether.dialects.opengate import catalog, codec

REBOOT_REQUEST_B3 = {
    "operation": {
        "request": {
            "timestamp": 1432454277950,
            "name": "REBOOT_EQUIPMENT",
            "parameters": {"type": "HARDWARE"},
            "id": "072b08d1-0fcb-4a0c-a2d8-99773f9b9327",
        }
    }
}
LEGACY_REQUEST_B3 = {
    "operation": {
        "request": {
            "id": "f508ce84-01e9-11e5-a322-1697f925ec7b",
            "deviceId": "device_1",
            "path": [],
            "timestamp": 1432454275000,
            "name": "REBOOT_EQUIPMENT",
            "parameters": [{"name": "type", "value": {"string": "HARDWARE"}}],
        }
    }
}
RESPONSE_B4 = {
    "version": "7.0",
    "operation": {
        "response": {
            "id": "05d17fb4-b2a8-49d8-8461-cda0d24f852b",
            "deviceId": "649843",
            "timestamp": 1614253700835,
            "name": "REBOOT_EQUIPMENT",
            "resultCode": "SUCCESSFUL",
            "resultDescription": "Success",
            "steps": [
                {
                    "name": "REBOOT_EQUIPMENT",
                    "timestamp": 1614253700835,
                    "result": "SUCCESSFUL",
                    "description": "The system will be rebooted",
                    "response": [{"name": "responseParamName", "value": "responseParamValue"}],
                }
            ],
        }
    },
}


def test_request_envelope_matches_the_reference_in_both_encodings() -> None:
    at = datetime.fromtimestamp(1432454277.950, UTC)
    body = codec.request_envelope(
        ref="072b08d1-0fcb-4a0c-a2d8-99773f9b9327",
        name="REBOOT_EQUIPMENT",
        parameters={"type": "HARDWARE"},
        timestamp=at,
    )
    assert body == REBOOT_REQUEST_B3
    legacy = codec.request_envelope(
        ref="f508ce84-01e9-11e5-a322-1697f925ec7b",
        name="REBOOT_EQUIPMENT",
        parameters={"type": "HARDWARE"},
        timestamp=datetime.fromtimestamp(1432454275, UTC),
        device_id="device_1",
        encoding="typed_array",
    )
    assert legacy == LEGACY_REQUEST_B3


def test_parse_request_reads_both_encodings() -> None:
    for body in (REBOOT_REQUEST_B3, LEGACY_REQUEST_B3):
        request = codec.parse_request(body)
        assert request.name == "REBOOT_EQUIPMENT"
        assert request.parameters == {"type": "HARDWARE"}


def test_parse_final_response() -> None:
    response = codec.parse_response(RESPONSE_B4)
    assert response.final
    assert response.result_code == "SUCCESSFUL"
    assert response.version == "7.0"
    (step,) = response.steps
    assert step.name == "REBOOT_EQUIPMENT"
    assert step.at == datetime.fromtimestamp(1614253700.835, UTC)
    assert step.response == [{"name": "responseParamName", "value": "responseParamValue"}]


def test_partial_and_pending_responses_are_not_final() -> None:
    partial = {"operation": {"response": {"id": "a", "steps": [{"name": "BEGINUPDATE"}]}}}
    assert not codec.parse_response(partial).final
    pending = {"operation": {"response": {"id": "a", "resultCode": "OPERATION_PENDING"}}}
    assert not codec.parse_response(pending).final
    assert codec.outcome("OPERATION_PENDING") == "in_progress"
    assert codec.outcome("SUCCESSFUL") == "succeeded"
    for code in ("ERROR_IN_PARAM", "NOT_SUPPORTED", "ERROR_PROCESSING", "CANCELLED", "X"):
        assert codec.outcome(code) == "failed"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ([], "body must be a JSON object"),
        ({"operation": []}, "operation must be"),
        ({"operation": {"response": {"steps": []}}}, "operation.response.id"),
        ({"operation": {"response": {"id": "a"}}}, "partial response needs steps"),
        ({"operation": {"response": {"id": "a", "steps": {}}}}, "steps must be an array"),
        ({"operation": {"response": {"id": "a", "steps": [{}]}}}, "steps[0].name"),
        ({"operation": {"response": {"id": "a", "resultCode": 3}}}, "resultCode"),
        (
            {"operation": {"response": {"id": "a", "steps": [{"name": "s", "timestamp": "x"}]}}},
            "steps[0].timestamp",
        ),
    ],
)
def test_bad_responses_name_the_field(body: Any, why: str) -> None:
    with pytest.raises(BadRequest) as caught:
        codec.parse_response(body)
    assert why in caught.value.message


def test_epoch_seconds_and_milliseconds() -> None:
    assert codec.from_epoch(1704472800, "at") == codec.from_epoch(1704472800000, "at")
    with pytest.raises(BadRequest):
        codec.from_epoch(True, "at")
    with pytest.raises(BadRequest):
        codec.from_epoch(10**20, "at")


def test_inflate() -> None:
    raw = b'{"a": 1}'
    assert codec.inflate(gzip.compress(raw), None, 100) == raw
    assert codec.inflate(raw, None, 100) == raw
    with pytest.raises(PayloadTooLarge):
        codec.inflate(gzip.compress(b"x" * 1000), "gzip", 100)
    with pytest.raises(BadRequest):
        codec.inflate(b"\x1f\x8bnope", "gzip", 100)
    with pytest.raises(BadRequest):
        codec.inflate(raw, "br", 100)


def test_pending_example_b6_shape() -> None:
    body = codec.request_envelope(
        ref="14502149-99f9-4348-93f1-23aea495811b",
        name="EQUIPMENT_DIAGNOSTIC",
        parameters={"type": "HARDWARE"},
        timestamp=datetime.fromtimestamp(1614238879.802, UTC),
    )
    assert body == {
        "operation": {
            "request": {
                "id": "14502149-99f9-4348-93f1-23aea495811b",
                "timestamp": 1614238879802,
                "name": "EQUIPMENT_DIAGNOSTIC",
                "parameters": {"type": "HARDWARE"},
            }
        }
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.text(min_size=1, max_size=10), json_values, max_size=6))
def test_typed_array_round_trips(params: dict[str, Any]) -> None:
    encoded = codec.encode_parameters(params, "typed_array")
    assert codec.decode_parameters(encoded) == params
    assert codec.encode_parameters(params, "object") == params


@given(json_values)
def test_parse_response_never_crashes_on_arbitrary_json(body: Any) -> None:
    for candidate in (body, {"operation": {"response": body}}):
        with contextlib.suppress(BadRequest):
            codec.parse_response(candidate)


@given(json_values)
def test_parse_iot_never_crashes_on_arbitrary_json(body: Any) -> None:
    for candidate in (
        body,
        {"datastreams": body},
        {"datastreams": [{"id": "x", "datapoints": body}]},
    ):
        with contextlib.suppress(BadRequest):
            codec.parse_iot(candidate)


@given(st.text(max_size=20), json_values)
def test_catalogue_only_raises_bad_request(name: str, params: Any) -> None:
    try:
        shaped = catalog.shape(name, params)
    except BadRequest:
        return
    assert isinstance(shaped.parameters, dict)
    assert shaped.ref is not None


def test_catalogue_examples() -> None:
    assert catalog.validate("REBOOT_EQUIPMENT", None) == {}
    assert catalog.validate(
        "SET_CLOCK_EQUIPMENT",
        {"datetime": {"date": "2024-01-05", "time": "16:40:00", "timezone": 0, "dst": 0}},
    )
    with pytest.raises(BadRequest, match=r"datetime\.time"):
        catalog.validate("SET_CLOCK_EQUIPMENT", {"datetime": {"date": "2024-01-05"}})
    with pytest.raises(BadRequest, match=r"deploymentElements\[0\]\.downloadUrl"):
        catalog.validate(
            "UPDATE",
            {
                "bundleName": "b",
                "bundleVersion": "1",
                "deploymentElements": [{"name": "n", "version": "1"}],
            },
        )
    assert catalog.validate(
        "GET_DEVICE_PARAMETERS",
        {"variableList": [{"variableName": "device.cpu.usage"}, "device.temperature.value"]},
    )
    a, b = catalog.shape("X", {}), catalog.shape("X", {})
    assert a.ref != b.ref
