"""The Control iD Push wire format, sans I/O: ids, push envelopes, results, Monitor bodies.

Everything here is a pure function of bytes, strings and dicts, so the parsers can be
fuzzed (see the hypothesis tests) without a server. What the terminal sends is parsed
leniently (the firmware's field list is partly undocumented, see the reference's A.6) but
never trusted: every parser either returns a value or raises :class:`CodecError`, and a
caller can always tell a garbage body from a result.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from tether.core import jsonc
from tether.core.errors import InvalidJson

#: Terminal ids are int64 on the wire; unsigned readings are accepted, nothing longer.
MAX_DEVICE_ID = (1 << 64) - 1
_DIGITS = re.compile(r"[0-9]{1,20}")
#: A uuid as terminals send it: printable, no spaces, bounded.
_UUID = re.compile(r"[0-9A-Za-z_.:{}-]{1,128}")
ENDPOINT = re.compile(r"[a-z][a-z0-9_]{0,63}")
TOPIC = re.compile(r"[a-z][a-z0-9_]{0,63}")

JSON = "application/json"
BINARY = "application/octet-stream"
FORM = "application/x-www-form-urlencoded"

#: Keys of one push command (reference A.5); ``transactionid`` only inside a batch.
ENVELOPE_KEYS = frozenset({"verb", "endpoint", "body", "contentType", "queryString"})


class CodecError(ValueError):
    """The input is not something a terminal could meaningfully have sent."""


class RefusedBody(CodecError):
    """A readable body holding what no store can keep (see ``core/jsonc.py``): a NUL or a
    lone surrogate in a string, an integer past 64 bits.

    Unlike garbage, it is answered 400 and, for a result, fails the command with the
    reason, since the terminal did answer and a resend would carry the same content.
    """


def parse_device_id(raw: str | None) -> str:
    """The canonical decimal form of a ``deviceId`` query value."""
    if raw is None or raw == "":
        raise CodecError("deviceId is missing")
    if not _DIGITS.fullmatch(raw):
        raise CodecError(f"deviceId is not 1-20 digits: {raw[:40]!r}")
    value = int(raw)
    if value > MAX_DEVICE_ID:
        raise CodecError(f"deviceId is out of the 64-bit range: {raw!r}")
    return str(value)


def parse_uuid(raw: str | None) -> str | None:
    """The poll's ``uuid``, or None when absent (older firmware); garbage raises."""
    if raw is None or raw == "":
        return None
    if not _UUID.fullmatch(raw):
        raise CodecError(f"uuid is malformed: {raw[:40]!r}")
    return raw


def decode_base64(text: str, limit: int) -> bytes:
    """Strict base64 of at most ``limit`` decoded bytes (checked before decoding)."""
    if len(text) > (limit + 2) // 3 * 4 + 4:
        raise CodecError(f"binary body is larger than {limit} bytes")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise CodecError(f"binary body is not valid base64: {error}") from None
    if len(data) > limit:
        raise CodecError(f"binary body is larger than {limit} bytes")
    return data


# --- push commands (server -> terminal) -----------------------------------------------------


def push_body(parameters: dict[str, Any], *, body_as_string: bool) -> dict[str, Any]:
    """The ``GET /push`` answer for a stored (shaped) command.

    Stored parameters are already a normalised envelope (see ``shaper``); this only picks
    the wire keys, in wire order, and stringifies a JSON body for firmware that wants
    ``body`` typed as a string (reference A.5, open question A2).
    """
    if "transactions" in parameters:
        return {
            "transactions": [
                {"transactionid": str(item.get("transactionid", n))}
                | push_body(item, body_as_string=body_as_string)
                for n, item in enumerate(parameters["transactions"], 1)
            ]
        }
    out: dict[str, Any] = {
        "verb": parameters.get("verb", "POST"),
        "endpoint": parameters["endpoint"],
    }
    content_type = parameters.get("contentType", JSON)
    if "body" in parameters:
        body = parameters["body"]
        if body_as_string and content_type == JSON and not isinstance(body, str):
            body = jsonc.encode_text(body)
        out["body"] = body
    out["contentType"] = content_type
    if parameters.get("queryString"):
        out["queryString"] = parameters["queryString"]
    return out


def encode_push(envelope: dict[str, Any]) -> bytes:
    return jsonc.encode(envelope)


# --- results (terminal -> server) -------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """A parsed ``POST /result`` body."""

    success: bool
    #: ``response`` on success, ``transactions_results`` for a batch, else None.
    value: Any
    error: str | None
    #: The uuid when the body carries one (one firmware family does).
    uuid: str | None = None


def _json(text: str | bytes) -> Any:
    """JSON through the one codec; ``None`` for text that is not JSON at all."""
    try:
        return jsonc.decode(text)
    except InvalidJson as error:
        if error.kind in ("string", "integer"):
            raise RefusedBody(error.message) from None
        return None  # not JSON, or nesting no terminal sends: garbage


def _form_text(value: str) -> str:
    try:
        return jsonc.check_text("a form field", value)
    except InvalidJson as error:
        raise RefusedBody(error.message) from None


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        stripped = _form_text(value).strip()
        if stripped[:1] in ("{", "["):
            document = _json(stripped)
            return value if document is None else document
    return value


def _content_kind(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _decode_document(body: bytes, content_type: str) -> dict[str, Any]:
    """The body as a dict: JSON (whatever the declared type) or a form; else CodecError."""
    if not body.strip():
        raise CodecError("empty body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CodecError("body is not UTF-8 text") from None
    # A body that is a JSON object is JSON whatever the header says: ``curl -d`` and
    # some firmwares label JSON ``application/x-www-form-urlencoded`` (reference A.6).
    # A form (``response=...``) is never valid JSON, so trying JSON first is safe.
    document = _json(body)
    if isinstance(document, dict):
        return document
    if document is not None and _content_kind(content_type) != FORM:
        raise CodecError(f"JSON body is a {type(document).__name__}, not an object")
    if "=" in text:
        pairs = parse_qsl(text.strip(), keep_blank_values=True, max_num_fields=1000)
        if pairs:
            return {_form_text(key): _maybe_json(value) for key, value in pairs}
    raise CodecError("body is neither a JSON object nor a form")


def parse_result(body: bytes, content_type: str = "") -> Result:
    """Parse a ``/result`` body: ``{"response":…}``, ``{"error":"…"}`` or a batch."""
    document = _decode_document(body, content_type)
    uuid = document.get("uuid")
    uuid = parse_uuid(uuid) if isinstance(uuid, str) else None
    if "error" in document and document["error"] not in (None, ""):
        error = document["error"]
        message = error if isinstance(error, str) else jsonc.encode_text(error)
        return Result(False, None, message[:2000], uuid)
    if "transactions_results" in document:
        items = _maybe_json(document["transactions_results"])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise CodecError("transactions_results is not a list of objects")
        results = [{**item, "response": _maybe_json(item.get("response"))} for item in items[:1000]]
        failed = [i for i in results if i.get("success") is False or i.get("error")]
        error = None
        if failed:
            error = f"{len(failed)} of {len(results)} transactions failed"
        return Result(not failed, results, error, uuid)
    if "response" in document:
        return Result(True, _maybe_json(document["response"]), None, uuid)
    raise CodecError("body has none of response, error, transactions_results")


# --- Monitor events (terminal -> server) ------------------------------------------------------


@dataclass(frozen=True)
class MonitorEvent:
    payload: Any
    device_id: str | None
    #: Seconds since the epoch, from the body's ``time`` when present.
    time: int | None


def parse_monitor(body: bytes, content_type: str = "") -> MonitorEvent:
    """A Monitor body: JSON (usually), a form, or raw bytes (kept as base64)."""
    kind = _content_kind(content_type)
    payload: Any
    if kind == BINARY:
        payload = {"raw": base64.b64encode(body).decode()}
    else:
        try:
            payload = _decode_document(body, content_type)
        except CodecError:
            if body.strip():
                raise
            payload = {}
    device_id: str | None = None
    time: int | None = None
    if isinstance(payload, dict):
        raw_id = payload.get("device_id")
        if isinstance(raw_id, bool):
            raw_id = None
        if isinstance(raw_id, int | str):
            try:
                device_id = parse_device_id(str(raw_id))
            except CodecError:
                device_id = None
        raw_time = payload.get("time")
        if isinstance(raw_time, int) and not isinstance(raw_time, bool) and raw_time >= 0:
            time = raw_time if raw_time < 1 << 40 else None
    return MonitorEvent(payload, device_id, time)


def dao_keys(payload: Any, device_id: str) -> list[tuple[str, str, str]]:
    """``(device, object, values.id)`` of each ``inserted`` change of a ``dao`` event,
    the key by which repeated inserts are dropped (reference A.13 item 5)."""
    keys: list[tuple[str, str, str]] = []
    changes = payload.get("object_changes") if isinstance(payload, dict) else None
    if not isinstance(changes, list):
        return keys
    for change in changes:
        if not isinstance(change, dict) or change.get("type") != "inserted":
            continue
        values = change.get("values")
        if isinstance(values, dict) and "id" in values:
            keys.append((device_id, str(change.get("object")), str(values["id"])))
    return keys
