"""The OpenGate south wire format, sans I/O: bytes and dicts in, core values out.

Everything here is pure so it can be tested exhaustively (hypothesis) without sockets:
operation request envelopes in both parameter encodings, operation responses (partial with
``steps`` only, final with ``resultCode``), the mapping of result codes onto the core
lifecycle, and IoT datastream collection. See ``docs/dialects/opengate.md`` and the
reference's B.3, B.4, B.6 and B.9.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from tether.core import jsonc
from tether.core.errors import BadRequest, PayloadTooLarge

Encoding = Literal["object", "typed_array"]
ENCODINGS: tuple[Encoding, ...] = ("object", "typed_array")

#: Final result codes that end an operation successfully.
SUCCESS_CODES = frozenset({"SUCCESSFUL"})
#: A "final" response that in fact says the device is still working on it.
PENDING_CODES = frozenset({"OPERATION_PENDING"})
#: Every code seen in vendor material (B.4); others are accepted and treated as failures.
KNOWN_CODES = frozenset(
    {
        "SUCCESSFUL",
        "OPERATION_PENDING",
        "ERROR_IN_PARAM",
        "NOT_SUPPORTED",
        "ALREADY_IN_PROGRESS",
        "ERROR_PROCESSING",
        "ERROR_TIMEOUT",
        "TIMEOUT_CANCELLED",
        "TIMEOUT_CANCELLED_INTERNAL",
        "CANCELLED",
        "CANCELLED_INTERNAL",
        "ERROR_CREATING",
        "ALREADY_EXISTS",
    }
)
#: Epoch values below this are seconds, not milliseconds (the vendor's Python example
#: sends seconds; B.9).
SECONDS_LIMIT = 10**11


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_epoch(value: Any, what: str) -> datetime:
    """An OpenGate epoch (milliseconds, or seconds when small) as an aware datetime."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"{what} must be an epoch number in milliseconds")
    seconds = value if abs(value) < SECONDS_LIMIT else value / 1000
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise BadRequest(f"{what} is out of range") from None


# --- bodies ---------------------------------------------------------------------------------


def inflate(raw: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding: gzip``/``deflate`` (ODA gzips large bodies), size-capped."""
    encoding = (content_encoding or "").strip().lower()
    if encoding in ("", "identity") and not raw.startswith(b"\x1f\x8b"):
        return raw
    if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {content_encoding!r}")
    wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
    try:
        inflater = zlib.decompressobj(wbits)
        out = inflater.decompress(raw, limit + 1)
    except zlib.error as error:
        raise BadRequest(f"body is not valid {encoding or 'gzip'}: {error}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"decompressed body is larger than {limit} bytes")
    return out


def decode_json(raw: bytes) -> Any:
    if not raw.strip():
        raise BadRequest("body is empty; a JSON object is required")
    return jsonc.decode(raw)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value


def _string(value: Any, what: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{what} must be a non-empty string")
    return value


# --- parameters ----------------------------------------------------------------------------


def _typed(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolean": value}
    if isinstance(value, int | float):
        return {"number": value}
    if isinstance(value, str):
        return {"string": value}
    if isinstance(value, list):
        return {"array": value}
    return {"object": value}


def encode_parameters(parameters: Any, encoding: Encoding) -> Any:
    """Parameters as the device expects them: the object itself, or the typed array."""
    params = parameters if isinstance(parameters, dict) else {}
    if encoding == "object":
        return params
    return [{"name": name, "value": _typed(value)} for name, value in params.items()]


def decode_parameters(parameters: Any) -> dict[str, Any]:
    """Either encoding back to a plain object (what an agent, or a lenient input, reads)."""
    if parameters is None:
        return {}
    if isinstance(parameters, dict):
        return parameters
    if not isinstance(parameters, list):
        raise BadRequest("parameters must be an object or a [{name, value}] array")
    out: dict[str, Any] = {}
    for item in parameters:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest("each typed parameter must be an object with a string name")
        value = item.get("value")
        if isinstance(value, dict) and len(value) == 1:
            (kind, inner), *_ = value.items()
            if kind in ("string", "number", "boolean", "object", "array"):
                value = inner
        out[item["name"]] = value
    return out


def request_envelope(
    *,
    ref: str,
    name: str,
    parameters: Any,
    timestamp: datetime,
    device_id: str | None = None,
    encoding: Encoding = "object",
) -> dict[str, Any]:
    """``{"operation":{"request":{...}}}`` as POSTed to a device or returned by pending."""
    request: dict[str, Any] = {
        "id": ref,
        "name": name,
        "parameters": encode_parameters(parameters, encoding),
        "timestamp": to_ms(timestamp),
    }
    if device_id is not None:
        request["deviceId"] = device_id
    if encoding == "typed_array":
        request["path"] = []
    return {"operation": {"request": request}}


@dataclass(frozen=True)
class OperationRequest:
    id: str
    name: str
    parameters: dict[str, Any]
    timestamp: int | None = None
    device_id: str | None = None


def parse_request(body: Any) -> OperationRequest:
    """The device side: an operation request, in either parameter encoding."""
    request = _object(
        _object(_object(body, "body").get("operation"), "operation").get("request"),
        "operation.request",
    )
    return OperationRequest(
        id=str(_string(request.get("id"), "operation.request.id")),
        name=str(_string(request.get("name"), "operation.request.name")),
        parameters=decode_parameters(request.get("parameters")),
        timestamp=request.get("timestamp") if isinstance(request.get("timestamp"), int) else None,
        device_id=request.get("deviceId") if isinstance(request.get("deviceId"), str) else None,
    )


# --- responses -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    result: str
    description: str | None = None
    at: datetime | None = None
    response: Any = None


@dataclass(frozen=True)
class OperationResponse:
    id: str
    name: str | None
    #: None for a partial response (steps only).
    result_code: str | None
    description: str | None
    steps: tuple[Step, ...] = ()
    device_id: str | None = None
    version: str | None = None
    #: The response's own ``timestamp``: the time of steps that carry none.
    at: datetime | None = None

    @property
    def final(self) -> bool:
        return self.result_code is not None and self.result_code not in PENDING_CODES


def _step(raw: Any, at: int) -> Step:
    step = _object(raw, f"steps[{at}]")
    name = _string(step.get("name"), f"steps[{at}].name")
    result = step.get("result", "SUCCESSFUL")
    if not isinstance(result, str) or not result:
        raise BadRequest(f"steps[{at}].result must be a non-empty string")
    description = step.get("description")
    if description is not None and not isinstance(description, str):
        raise BadRequest(f"steps[{at}].description must be a string")
    when = step.get("timestamp")
    return Step(
        name=str(name),
        result=result,
        description=description or None,
        at=None if when is None else from_epoch(when, f"steps[{at}].timestamp"),
        response=step.get("response"),
    )


def parse_response(body: Any) -> OperationResponse:
    """``{"version"?, "operation":{"response":{...}}}``; raises BadRequest with the field."""
    root = _object(body, "body")
    operation = _object(root.get("operation"), "operation")
    response = _object(operation.get("response"), "operation.response")
    op_id = str(_string(response.get("id"), "operation.response.id"))
    steps_raw = response.get("steps", [])
    if steps_raw is None:
        steps_raw = []
    if not isinstance(steps_raw, list):
        raise BadRequest("operation.response.steps must be an array")
    code = response.get("resultCode")
    if code is not None and (not isinstance(code, str) or not code):
        raise BadRequest("operation.response.resultCode must be a non-empty string")
    description = response.get("resultDescription")
    if description is not None and not isinstance(description, str):
        raise BadRequest("operation.response.resultDescription must be a string")
    if code is None and not steps_raw:
        raise BadRequest("a partial response needs steps; a final one needs resultCode")
    name = response.get("name")
    version = root.get("version")
    when = response.get("timestamp")
    device_id = response.get("deviceId")
    return OperationResponse(
        id=op_id,
        name=name if isinstance(name, str) else None,
        result_code=code,
        description=description,
        steps=tuple(_step(raw, i) for i, raw in enumerate(steps_raw)),
        device_id=device_id if isinstance(device_id, str) else None,
        version=version if isinstance(version, str) else None,
        at=None if when is None else from_epoch(when, "operation.response.timestamp"),
    )


def response_envelope(
    *,
    id: str,
    name: str,
    device_id: str | None,
    steps: list[dict[str, Any]],
    result_code: str | None = None,
    description: str | None = None,
    timestamp: int | None = None,
    version: str = "8.0",
) -> dict[str, Any]:
    """The device side: a partial (no ``result_code``) or final operation response."""
    response: dict[str, Any] = {"id": id, "name": name, "steps": steps}
    if device_id is not None:
        response["deviceId"] = device_id
    if timestamp is not None:
        response["timestamp"] = timestamp
    if result_code is not None:
        response["resultCode"] = result_code
        response["resultDescription"] = description or ""
    return {"version": version, "operation": {"response": response}}


Outcome = Literal["succeeded", "in_progress", "failed"]


def outcome(result_code: str) -> Outcome:
    """Where a final ``resultCode`` takes the command in the core lifecycle."""
    if result_code in SUCCESS_CODES:
        return "succeeded"
    if result_code in PENDING_CODES:
        return "in_progress"
    return "failed"


# --- collection ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Datapoint:
    datastream: str
    feed: str | None
    value: Any
    at: datetime | None
    start: datetime | None = None
    tags: Any = None
    source: Any = None
    source_info: Any = None


@dataclass(frozen=True)
class Collection:
    version: str | None
    device: str | None
    path: list[str] | None
    datapoints: tuple[Datapoint, ...]


def parse_iot(body: Any) -> Collection:
    """``collect/iot``: datastreams of datapoints. Epoch seconds are taken as seconds."""
    root = _object(body, "body")
    streams = root.get("datastreams")
    if not isinstance(streams, list) or not streams:
        raise BadRequest("datastreams must be a non-empty array")
    device = root.get("device")
    if device is not None and not isinstance(device, str):
        raise BadRequest("device must be a string")
    path = root.get("path")
    if path is not None and (
        not isinstance(path, list) or not all(isinstance(p, str) for p in path)
    ):
        raise BadRequest("path must be an array of strings")
    points: list[Datapoint] = []
    for i, raw in enumerate(streams):
        stream = _object(raw, f"datastreams[{i}]")
        stream_id = str(_string(stream.get("id"), f"datastreams[{i}].id"))
        if stream_id in ("device.identifier", "device.topology.path"):
            continue  # only ever taken from the URI / device / path (B.9)
        feed = stream.get("feed")
        if feed is not None and not isinstance(feed, str):
            raise BadRequest(f"datastreams[{i}].feed must be a string")
        datapoints = stream.get("datapoints")
        if not isinstance(datapoints, list) or not datapoints:
            raise BadRequest(f"datastreams[{i}].datapoints must be a non-empty array")
        for j, rawpoint in enumerate(datapoints):
            where = f"datastreams[{i}].datapoints[{j}]"
            point = _object(rawpoint, where)
            if "value" not in point:
                raise BadRequest(f"{where}.value is required")
            at = point.get("at")
            start = point.get("from")
            points.append(
                Datapoint(
                    datastream=stream_id,
                    feed=feed,
                    value=point["value"],
                    at=None if at is None else from_epoch(at, f"{where}.at"),
                    start=None if start is None else from_epoch(start, f"{where}.from"),
                    tags=point.get("tags"),
                    source=point.get("source"),
                    source_info=point.get("sourceInfo"),
                )
            )
    version = root.get("version")
    return Collection(
        version=version if isinstance(version, str) else None,
        device=device,
        path=path,
        datapoints=tuple(points),
    )


def datapoint_parameters(point: Datapoint, collection: Collection) -> dict[str, Any]:
    """The notification parameters of one datapoint (absent fields are left out)."""
    params: dict[str, Any] = {"value": point.value}
    if point.feed is not None:
        params["feed"] = point.feed
    if point.at is not None:
        params["at"] = to_ms(point.at)
    if point.start is not None:
        params["from"] = to_ms(point.start)
    for key, value in (
        ("tags", point.tags),
        ("source", point.source),
        ("sourceInfo", point.source_info),
        ("device", collection.device),
        ("path", collection.path),
    ):
        if value is not None:
            params[key] = value
    return params


def latest_values(collection: Collection, now: datetime) -> dict[str, Any]:
    """The shadow patch: per datastream, its newest datapoint ``{"value", "at"}``."""
    latest: dict[str, tuple[datetime, Any]] = {}
    for point in collection.datapoints:
        at = point.at or now
        held = latest.get(point.datastream)
        if held is None or at >= held[0]:
            latest[point.datastream] = (at, point.value)
    return {name: {"value": value, "at": to_ms(at)} for name, (at, value) in latest.items()}


def parse_dmm(body: Any) -> dict[str, Any]:
    """``collect/dmm`` (legacy inventory/status): ``{"version", "event": {...}}``."""
    root = _object(body, "body")
    event = _object(root.get("event"), "event")
    return event
