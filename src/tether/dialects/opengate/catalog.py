"""The standard OpenGate operations catalogue, and the shaper every API's commands go through.

Known names have their parameters checked (reference B.7), so a command a device could not
run is refused with a clear 400 before it is queued, whichever API created it (native REST,
WebSocket, CLI). Free names are allowed: the catalogue is extensible, and only the
parameters' outer shape (an object, or the typed array) is checked for them. Every command
gets a fresh operation UUID as its ``ref``, the only correlation key OpenGate has.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from tether.core.errors import BadRequest
from tether.dialects.opengate.codec import decode_parameters
from tether.hub.commands import Shaped

Check = Callable[[dict[str, Any]], None]

REBOOT_TYPES = ("HARDWARE", "SOFTWARE")
DEPLOYMENT_TYPES = ("FIRMWARE", "SOFTWARE", "CONFIGURATION", "PARAMETERS", "RULE", "DEFAULT")
DEPLOYMENT_OPERATIONS = ("INSTALL", "UPGRADE", "UNINSTALL")
DEPLOYMENT_OPTIONS = ("MANDATORY", "OPTIONAL")


def _enum(params: dict[str, Any], key: str, allowed: tuple[str, ...], what: str) -> None:
    value = params.get(key)
    if value is not None and value not in allowed:
        raise BadRequest(f"{what}.{key} must be one of {', '.join(allowed)}")


def _str(params: dict[str, Any], key: str, what: str, *, required: bool) -> None:
    value = params.get(key)
    if value is None:
        if required:
            raise BadRequest(f"{what}.{key} is required")
        return
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{what}.{key} must be a non-empty string")


def _typed_type(params: dict[str, Any]) -> None:
    _enum(params, "type", REBOOT_TYPES, "parameters")


def _nothing(params: dict[str, Any]) -> None:
    return None


def _update(params: dict[str, Any]) -> None:
    _str(params, "bundleName", "parameters", required=True)
    _str(params, "bundleVersion", "parameters", required=True)
    elements = params.get("deploymentElements")
    if not isinstance(elements, list) or not elements:
        raise BadRequest("parameters.deploymentElements must be a non-empty array")
    for i, element in enumerate(elements):
        what = f"parameters.deploymentElements[{i}]"
        if not isinstance(element, dict):
            raise BadRequest(f"{what} must be an object")
        _str(element, "name", what, required=True)
        _str(element, "version", what, required=True)
        _str(element, "downloadUrl", what, required=element.get("operation") != "UNINSTALL")
        _enum(element, "type", DEPLOYMENT_TYPES, what)
        _enum(element, "operation", DEPLOYMENT_OPERATIONS, what)
        _enum(element, "option", DEPLOYMENT_OPTIONS, what)
        for key in ("order", "size"):
            value = element.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise BadRequest(f"{what}.{key} must be an integer")


def _set_clock(params: dict[str, Any]) -> None:
    moment = params.get("datetime")
    if moment is None:
        return  # "set it to the server's time" is left to the device
    if not isinstance(moment, dict):
        raise BadRequest("parameters.datetime must be an object {date, time, timezone, dst}")
    _str(moment, "date", "parameters.datetime", required=True)
    _str(moment, "time", "parameters.datetime", required=True)
    for key in ("timezone", "dst"):
        value = moment.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise BadRequest(f"parameters.datetime.{key} must be a number")


def _get_parameters(params: dict[str, Any]) -> None:
    names = params.get("variableList")
    if not isinstance(names, list) or not names:
        raise BadRequest("parameters.variableList must be a non-empty array")
    for i, item in enumerate(names):
        name = item.get("variableName") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name:
            raise BadRequest(
                f'parameters.variableList[{i}] must be a name or {{"variableName": name}}'
            )


def _set_parameters(params: dict[str, Any]) -> None:
    items = params.get("variableList")
    if not isinstance(items, list) or not items:
        raise BadRequest("parameters.variableList must be a non-empty array")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("variableName"), str):
            raise BadRequest(
                f'parameters.variableList[{i}] must be {{"variableName", "variableValue"}}'
            )
        if "variableValue" not in item:
            raise BadRequest(f"parameters.variableList[{i}].variableValue is required")


#: Standard operation names and their parameter checks.
CATALOGUE: dict[str, Check] = {
    "REBOOT_EQUIPMENT": _typed_type,
    "SET_CLOCK_EQUIPMENT": _set_clock,
    "SYNCHRONIZE_CLOCK": _nothing,
    "UPDATE": _update,
    "REFRESH_INFO": _nothing,
    "REFRESH_PRESENCE": _nothing,
    "GET_DEVICE_PARAMETERS": _get_parameters,
    "SET_DEVICE_PARAMETERS": _set_parameters,
    "EQUIPMENT_DIAGNOSTIC": _typed_type,
    "DIAGNOSTIC": _typed_type,
    "DISCOVER": _nothing,
}


def validate(name: str, parameters: Any) -> dict[str, Any]:
    """The parameters as a plain object, checked for a catalogue name; BadRequest if not."""
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("operation name must be a non-empty string")
    if any(c.isspace() for c in name):
        raise BadRequest("operation name must not contain whitespace")
    params = decode_parameters(parameters)
    check = CATALOGUE.get(name)
    if check is not None:
        check(params)
    return params


def shape(name: str, parameters: Any) -> Shaped:
    """The ``hub.commands.shapers["opengate"]`` entry: checked parameters, a new UUID."""
    return Shaped(validate(name, parameters), ref=str(uuid.uuid4()))
