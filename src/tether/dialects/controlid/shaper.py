"""Command builders: turn ``(name, parameters)`` into a checked push envelope.

Registered as ``hub.commands.shapers["controlid"]``, so every API that creates commands
(native REST, the CLI, DeviceHive) gets the same validation before anything is queued.

The stored parameters are the normalised envelope the terminal will receive (reference
A.5): ``{"verb", "endpoint", "body", "contentType", "queryString"}``, or
``{"transactions": [envelope, ...]}``. A caller may give either the envelope itself or
just the ``body``, with the command name as the endpoint::

    load_objects        {"object": "users", "where": {"users": {"id": 1000}}}
    execute_actions     {"actions": [{"action": "door", "parameters": "door=1"}]}
    user_set_image      {"user_id": 1000, "image": "<base64 JPEG>", "match": 0}
    reboot              (no parameters)
    anything_else       {"endpoint": "...", "body": {...}, "queryString": "a=1"}
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from tether.core.errors import BadRequest
from tether.dialects.controlid.codec import (
    BINARY,
    ENDPOINT,
    ENVELOPE_KEYS,
    JSON,
    CodecError,
    decode_base64,
)
from tether.hub.commands import Shaped

#: Extra keys the dialect itself keeps on a re-queued copy (never sent to the terminal).
LINK_KEYS = frozenset({"requeued_from", "attempt"})
MAX_TRANSACTIONS = 100
_OBJECT = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DOOR = re.compile(r"door=\d{1,9}")
_SEC_BOX = re.compile(r"id=\d{1,20}(\s*,\s*reason=\d{1,4})?")
_CATRA = re.compile(r"allow=(clockwise|anticlockwise|both|none)")
_QUERY = re.compile(r"[^\s?#]{0,2048}")


def _bad(message: str) -> BadRequest:
    return BadRequest(message)


def _object(body: dict[str, Any], endpoint: str) -> str:
    name = body.get("object")
    if not isinstance(name, str) or not _OBJECT.fullmatch(name):
        raise _bad(f"{endpoint}: 'object' must name a table, e.g. 'users'")
    return name


def _where(body: dict[str, Any], endpoint: str, *, required: bool) -> None:
    where = body.get("where")
    if where is None and not required:
        return
    if not isinstance(where, dict) or not where:
        raise _bad(f"{endpoint}: 'where' must be a non-empty object, e.g. {{'users': {{'id': 1}}}}")


def _check_objects(endpoint: str, body: dict[str, Any]) -> None:
    _object(body, endpoint)
    if endpoint in ("load_objects", "count_objects"):
        _where(body, endpoint, required=False)
        for key in ("limit", "offset"):
            value = body.get(key)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise _bad(f"{endpoint}: '{key}' must be a non-negative integer")
    elif endpoint in ("create_objects", "create_or_modify_objects"):
        values = body.get("values")
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, dict) for v in values)
        ):
            raise _bad(f"{endpoint}: 'values' must be a non-empty list of objects")
    elif endpoint == "modify_objects":
        if not isinstance(body.get("values"), dict) or not body["values"]:
            raise _bad("modify_objects: 'values' must be a non-empty object")
        _where(body, endpoint, required=True)
    elif endpoint == "destroy_objects":
        _where(body, endpoint, required=True)


def _check_configuration(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    if not body:
        raise _bad(f"{endpoint}: give at least one section")
    out: dict[str, Any] = {}
    for section, values in body.items():
        if endpoint == "get_configuration":
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise _bad(f"get_configuration: section {section!r} must list key names")
            out[section] = values
            continue
        if not isinstance(values, dict) or not values:
            raise _bad(f"set_configuration: section {section!r} must be a non-empty object")
        section_out: dict[str, str] = {}
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise _bad(
                    f"set_configuration: {section}.{key} must be a string "
                    "(the terminal stores every setting as a string)"
                )
            section_out[key] = str(value)
        out[section] = section_out
    return out


def _check_actions(body: dict[str, Any]) -> None:
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions:
        raise _bad("execute_actions: 'actions' must be a non-empty list")
    for action in actions:
        if not isinstance(action, dict) or not isinstance(action.get("action"), str):
            raise _bad("execute_actions: each action needs an 'action' name")
        name, parameters = action["action"], action.get("parameters", "")
        if not isinstance(parameters, str):
            raise _bad(f"execute_actions: parameters of {name!r} must be a string")
        pattern = {"door": _DOOR, "sec_box": _SEC_BOX, "catra": _CATRA}.get(name)
        if pattern is not None and not pattern.fullmatch(parameters.strip()):
            example = {
                "door": "door=1",
                "sec_box": "id=65793, reason=3",
                "catra": "allow=clockwise",
            }[name]
            raise _bad(f"execute_actions: {name} parameters must look like {example!r}")


def _check_message(body: dict[str, Any]) -> None:
    message = body.get("message")
    if not isinstance(message, str) or len(message) > 1024:
        raise _bad("message_to_screen: 'message' must be a string of at most 1024 characters")
    timeout = body.get("timeout", 0)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise _bad("message_to_screen: 'timeout' must be a non-negative integer (ms)")


def _user_set_image(parameters: dict[str, Any], limit: int) -> dict[str, Any]:
    user_id = parameters.get("user_id")
    image = parameters.get("image")
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id < 0:
        raise _bad("user_set_image: 'user_id' must be a non-negative integer")
    if not isinstance(image, str):
        raise _bad("user_set_image: 'image' must be the base64 text of a JPEG")
    try:
        decode_base64(image, limit)
    except CodecError as error:
        raise _bad(f"user_set_image: {error}") from None
    query: dict[str, Any] = {"user_id": user_id}
    for key in ("timestamp", "match"):
        value = parameters.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise _bad(f"user_set_image: '{key}' must be a non-negative integer")
            query[key] = value
    return {
        "verb": "POST",
        "endpoint": "user_set_image",
        "body": image,
        "contentType": BINARY,
        "queryString": urlencode(query),
    }


def _is_envelope(parameters: Any) -> bool:
    return (
        isinstance(parameters, dict)
        and bool(parameters)
        and set(parameters) <= ENVELOPE_KEYS | LINK_KEYS
        and bool(set(parameters) & {"endpoint", "body", "contentType", "queryString", "verb"})
    )


def shape_envelope(name: str, parameters: Any, *, binary_limit: int) -> dict[str, Any]:
    """One checked push envelope for command ``name`` (see the module docstring)."""
    if name == "user_set_image" and isinstance(parameters, dict) and "image" in parameters:
        return _user_set_image(parameters, binary_limit)
    if _is_envelope(parameters):
        envelope = dict(parameters)
    else:
        envelope = {"endpoint": name}
        if parameters is not None:
            envelope["body"] = parameters
    endpoint = envelope.setdefault("endpoint", name)
    if not isinstance(endpoint, str) or not ENDPOINT.fullmatch(endpoint):
        raise _bad(
            f"{endpoint!r} is not a Control iD endpoint name (lower-case letters, digits and "
            "'_', without '/' or '.fcgi')"
        )
    verb = envelope.setdefault("verb", "POST")
    if verb not in ("GET", "POST"):
        raise _bad("verb must be GET or POST")
    content_type = envelope.setdefault("contentType", JSON)
    if not isinstance(content_type, str) or not 0 < len(content_type) <= 128:
        raise _bad("contentType must be a media type")
    query = envelope.get("queryString")
    if query is not None and (not isinstance(query, str) or not _QUERY.fullmatch(query)):
        raise _bad("queryString must be a query string without '?' (at most 2048 characters)")
    body = envelope.get("body")
    if content_type == BINARY:
        if not isinstance(body, str):
            raise _bad("an application/octet-stream body must be base64 text")
        try:
            decode_base64(body, binary_limit)
        except CodecError as error:
            raise _bad(str(error)) from None
        return envelope
    if content_type == JSON and body is not None and not isinstance(body, dict | str):
        raise _bad(f"{endpoint}: body must be a JSON object")
    if isinstance(body, dict):
        if endpoint in (
            "load_objects",
            "count_objects",
            "create_objects",
            "create_or_modify_objects",
            "modify_objects",
            "destroy_objects",
        ):
            _check_objects(endpoint, body)
        elif endpoint in ("set_configuration", "get_configuration"):
            envelope["body"] = _check_configuration(endpoint, body)
        elif endpoint == "execute_actions":
            _check_actions(body)
        elif endpoint == "message_to_screen":
            _check_message(body)
    elif body is None and endpoint in (
        "load_objects",
        "create_objects",
        "modify_objects",
        "destroy_objects",
        "set_configuration",
        "execute_actions",
        "message_to_screen",
    ):
        raise _bad(f"{endpoint} needs parameters (its body)")
    return envelope


def make_shaper(binary_limit: int) -> Callable[[str, Any], Shaped]:
    """The ``hub.commands.shapers["controlid"]`` function."""

    def shape(name: str, parameters: Any) -> Shaped:
        if name == "transactions":
            items = parameters.get("transactions") if isinstance(parameters, dict) else None
            if not isinstance(items, list) or not 0 < len(items) <= MAX_TRANSACTIONS:
                raise _bad(
                    f"transactions: give 'transactions', a list of 1-{MAX_TRANSACTIONS} commands"
                )
            shaped = []
            for n, item in enumerate(items, 1):
                if not isinstance(item, dict) or not isinstance(item.get("endpoint"), str):
                    raise _bad(f"transactions: item {n} needs an 'endpoint'")
                extra = {k: item[k] for k in ("transactionid",) if k in item}
                inner = {k: v for k, v in item.items() if k != "transactionid"}
                envelope = shape_envelope(inner["endpoint"], inner, binary_limit=binary_limit)
                shaped.append({"transactionid": str(extra.get("transactionid", n))} | envelope)
            out: dict[str, Any] = {"transactions": shaped}
            for key in LINK_KEYS:
                if key in parameters:
                    out[key] = parameters[key]
            return Shaped(out)
        return Shaped(shape_envelope(name, parameters, binary_limit=binary_limit))

    return shape
