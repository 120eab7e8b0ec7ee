"""The v2 calls an app makes about many things at once: home page, batch control, OTA query.

``POST /v2/homepage`` gathers what the app's first screen shows (user, homes, things);
``POST /v2/device/thing/batch-status`` is several HTTP ``update``s in one request
(reference 3.4); ``POST /v2/device/ota/query`` tells an app which of its devices have a
firmware target other than what they run (reference 4.9), from the core's firmware
targets, as the device side's ``upgrade`` does. Each answers the ``data`` of the v2
envelope, or raises :class:`BadRequest` (400 in the envelope).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tether.core.access import can_see_device
from tether.core.errors import BadRequest
from tether.dialects.ewelink import codec
from tether.dialects.ewelink.accounts import Session
from tether.dialects.ewelink.cloud import Cloud

#: Most things one batch or OTA query may name (the cloud documents no bound; one app
#: screen holds far fewer, and each batch item is a command).
MAX_ITEMS = 100
#: The batch's ``timeout`` bound, milliseconds (reference 3.4).
MAX_BATCH_TIMEOUT_MS = 8000
#: The one home every account has (homes are not modelled in the core).
HOME = {"id": "home", "name": "Home", "index": 0, "roomList": []}


def family() -> dict[str, Any]:
    return {"familyList": [HOME], "currentFamilyId": "home"}


def user_view(login: str, apikey: str, country: Any) -> dict[str, Any]:
    """The ``user`` object of the v2 login, refresh, profile and home page answers."""
    return {
        "apikey": apikey,
        "email": login,
        "countryCode": country if isinstance(country, str) else "",
        "nickname": login.split("@", 1)[0],
        "accountLevel": 10,
    }


def _items(body: Any, key: str) -> list[Any]:
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise BadRequest(f"{key} is required (a list)")
    if len(items) > MAX_ITEMS:
        raise BadRequest(f"{key} holds at most {MAX_ITEMS} items")
    return items


async def things(cloud: Cloud, session: Session, ids: list[str] | None = None) -> dict[str, Any]:
    """``GET|POST /v2/device/thing``: every visible device, or those of ``ids``."""
    views = await cloud.device_views(session, ids)
    listed = [{"itemType": 1, "itemData": v, "index": i} for i, v in enumerate(views)]
    return {"thingList": listed, "total": len(listed)}


async def home_page(cloud: Cloud, session: Session, body: Any) -> dict[str, Any]:
    """``userInfo``, ``familyInfo``, ``thingInfo``, ``sceneInfo``, ``messageInfo``, each
    when its ``get*`` is present, even as ``{}`` (Tether has no scenes or messages: empty
    lists)."""
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    data: dict[str, Any] = {}
    if body.get("getUser") is not None:
        user = await cloud.hub.directory.get_user(session.principal, session.user_id)
        apikey = await cloud.accounts.apikey_of(session.user_id)
        data["userInfo"] = user_view(user.login, apikey, None)
    if body.get("getFamily") is not None:
        data["familyInfo"] = {**family(), "hasChangedCurrentFamily": False}
    if body.get("getThing") is not None:
        data["thingInfo"] = await things(cloud, session)
    if body.get("getScene") is not None:
        data["sceneInfo"] = {"sceneList": [], "total": 0}
    if body.get("getMessage") is not None:
        data["messageInfo"] = {"messageList": []}
    return data


async def batch_status(cloud: Cloud, session: Session, body: Any) -> dict[str, Any]:
    """Each item as an HTTP ``update``, all at once; the errors per item in ``respList``."""
    items = _items(body, "thingList")
    timeout = body.get("timeout", 0) if isinstance(body, dict) else 0
    if (
        not isinstance(timeout, int)
        or isinstance(timeout, bool)
        or not 0 <= timeout <= MAX_BATCH_TIMEOUT_MS
    ):
        raise BadRequest(f"timeout must be 0..{MAX_BATCH_TIMEOUT_MS} milliseconds")

    async def one(item: Any) -> dict[str, Any]:
        if not isinstance(item, dict):
            return {"error": 400}
        kind, thing = item.get("type"), item.get("id")
        if kind not in (1, 2):  # groups (3) are not modelled
            code = 400
        else:
            code = await cloud.control(session, thing, item.get("params"), timeout=timeout / 1000)
        return {"type": kind, "id": thing, "error": code}

    return {"respList": list(await asyncio.gather(*(one(item) for item in items)))}


async def ota_query(cloud: Cloud, session: Session, body: Any) -> dict[str, Any]:
    """The devices named whose firmware target differs from the version they report."""
    found: list[dict[str, Any]] = []
    for item in _items(body, "deviceInfoList"):
        if not isinstance(item, dict):
            continue
        device = await cloud.ewelink_device(item.get("deviceid"))
        if device is None or not can_see_device(session.principal, device):
            continue
        target = await cloud.hub.twins.current_firmware(device)
        if target is None or target.version == item.get("version"):
            continue
        found.append(
            {
                "deviceid": device.id,
                "model": item.get("model") or device.attributes.get("model", ""),
                "version": target.version,
                "binList": codec.bin_list(target.url, target.sha256),
            }
        )
    return {"otaInfoList": found}
