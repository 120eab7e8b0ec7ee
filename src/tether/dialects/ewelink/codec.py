"""The eWeLink wire format, sans I/O: encoding, signatures, params merging, TH reactions.

Everything here is a pure function so the protocol's rules can be tested (and fuzzed)
without sockets. The reference is ``ewelink.md`` (CoolKit docs, IoTgo, device captures).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Any

from tether.core import jsonc

#: The ``reason`` strings the cloud sends with each error code on the WebSocket.
REASONS: dict[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    406: "Authentication Failed",
    415: "Unsupported",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Device Offline",
    504: "Request Timeout",
}

#: Multi-channel arrays that are merged by ``outlet`` instead of replaced.
OUTLET_ARRAYS = ("switches", "configure", "pulses")


def bin_list(url: str, sha256: str | None) -> list[dict[str, str]]:
    """The ``binList`` of an ``upgrade`` and of ``/v2/device/ota/query`` (reference 4.9)."""
    return [{"downloadUrl": url, "digest": sha256 or "", "name": "user1.bin"}]


def encode(message: Any) -> str:
    """Compact JSON (no spaces, keys in insertion order), as constrained firmware expects."""
    return jsonc.encode_text(message)


def decode(text: str | bytes) -> Any:
    """Parse JSON within the codec's bounds; raises ``InvalidJson`` on anything else."""
    return jsonc.decode(text)


def to_device(value: Any) -> Any:
    """IoTgo's device-bound transform: empty containers and null/false become 0, true 1.

    Device firmware parses with tiny fixed buffers and treats ``{}``/``[]`` as "nothing";
    the production cloud sends ``"params":0`` for an empty answer.
    """
    if value is True:
        return 1
    if value is False or value is None:
        return 0
    if isinstance(value, dict):
        return {k: to_device(v) for k, v in value.items()} if value else 0
    if isinstance(value, list):
        return [to_device(v) for v in value] if value else 0
    return value


def sign(secret: str, data: bytes) -> str:
    """``base64(HMAC-SHA256(appSecret, data))``: the value after ``Sign `` in Authorization."""
    digest = hmac.new(secret.encode(), data, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_sign(secret: str, data: bytes, authorization: str | None) -> bool:
    """Check an ``Authorization: Sign <b64>`` header over the raw bytes received."""
    if not authorization or not authorization.startswith("Sign "):
        return False
    return hmac.compare_digest(authorization[5:].strip(), sign(secret, data))


def query_string_to_sign(query: dict[str, str]) -> bytes:
    """Signed GETs sign their query parameters as ``k=v&...``, sorted by key (v1 docs)."""
    return "&".join(f"{k}={query[k]}" for k in sorted(query)).encode()


def new_token() -> str:
    """An access or refresh token: 40 lowercase hex characters, as the cloud issues."""
    return secrets.token_hex(20)


def token_hash(token: str) -> str:
    """Tokens are kept at rest only as this hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def sequence_key(sequence: Any) -> str:
    """A sequence as a stable key that keeps its JSON type (``"1"`` and ``1`` differ)."""
    return encode(sequence)


def iso_millis(when: datetime) -> str:
    """``2017-09-17T00:24:54.955Z``: the ``date`` format devices parse."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def merge_params(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """The patch to store: ``patch`` with multi-channel arrays merged into ``current`` by
    ``outlet`` (an app may send only the channels it changes)."""
    merged = dict(patch)
    for key in OUTLET_ARRAYS:
        new = patch.get(key)
        old = current.get(key)
        if not isinstance(new, list) or not isinstance(old, list):
            continue
        if not all(isinstance(i, dict) and "outlet" in i for i in (*new, *old)):
            continue
        by_outlet: dict[Any, dict[str, Any]] = {i["outlet"]: dict(i) for i in old}
        for item in new:
            by_outlet.setdefault(item["outlet"], {}).update(item)
        merged[key] = [by_outlet[k] for k in sorted(by_outlet, key=_outlet_order)]
    return merged


def _outlet_order(outlet: Any) -> tuple[int, str]:
    return (int(outlet), "") if isinstance(outlet, int) else (1 << 30, str(outlet))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def th_reaction(params: dict[str, Any]) -> dict[str, Any] | None:
    """What a TH10/TH16 (UIID 15) applies itself in auto mode, or None.

    Auto mode is ``deviceType`` "temperature"/"humidity" with ``mainSwitch`` "on". The
    measured value above ``targets[0].targetHigh`` applies ``targets[0].reaction``, below
    ``targets[1].targetLow`` applies ``targets[1].reaction``; in between (the hysteresis
    band) nothing changes. Returns only the params that would actually change.
    """
    mode = params.get("deviceType")
    if mode not in ("temperature", "humidity") or params.get("mainSwitch") != "on":
        return None
    measured = _number(
        params.get("currentTemperature" if mode == "temperature" else "currentHumidity")
    )
    targets = params.get("targets")
    if measured is None or not isinstance(targets, list) or len(targets) < 2:
        return None
    high, low = targets[0], targets[1]
    if not isinstance(high, dict) or not isinstance(low, dict):
        return None
    reaction: Any = None
    high_value, low_value = _number(high.get("targetHigh")), _number(low.get("targetLow"))
    if high_value is not None and measured > high_value:
        reaction = high.get("reaction")
    elif low_value is not None and measured < low_value:
        reaction = low.get("reaction")
    if not isinstance(reaction, dict):
        return None
    changes = {k: v for k, v in reaction.items() if params.get(k) != v}
    return changes or None


def select_params(stored: dict[str, Any], wanted: Any) -> dict[str, Any]:
    """A ``query`` answer: the listed params that are stored; ``[]`` (or none) = all."""
    if isinstance(wanted, str):
        wanted = [p for p in wanted.split("|") if p]
    if not isinstance(wanted, list) or not wanted:
        return dict(stored)
    return {k: stored[k] for k in wanted if isinstance(k, str) and k in stored}


def device_view(
    *,
    device_id: str,
    name: str,
    owner_apikey: str,
    factory_apikey: str,
    attributes: dict[str, Any],
    params: dict[str, Any],
    online: bool,
) -> dict[str, Any]:
    """The DEVICE object of device lists (v1 and v2: the fields clients read)."""
    uiid = attributes.get("uiid", 1)
    model = attributes.get("model", "")
    return {
        "name": name,
        "deviceid": device_id,
        "apikey": owner_apikey,
        "online": online,
        "type": attributes.get("type", "10"),
        "brandName": attributes.get("brandName", "SONOFF"),
        "brandLogo": "",
        "showBrand": True,
        "productModel": attributes.get("productModel", model or "BASIC"),
        "devicekey": factory_apikey,
        "devConfig": {},
        "settings": {},
        "tags": {},
        "devGroups": [],
        "family": {"familyid": "", "index": 0},
        "shareTo": [],
        "extra": {
            "uiid": uiid,
            "model": model,
            "ui": attributes.get("ui", ""),
            "description": "",
            "manufacturer": "",
            "mac": "",
            "apmac": "",
            "modelInfo": "",
            "brandId": "",
            "chipid": "",
            "extra": {"uiid": uiid, "model": model},
        },
        "params": params,
    }
