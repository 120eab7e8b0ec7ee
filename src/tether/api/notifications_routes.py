"""Notifications from devices: all you can see, one, and one device's."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tether.api.auth import principal_of
from tether.api.http import hub_of, json, path_int
from tether.api.management import paging, query_list, query_time, sorts
from tether.api.spec import PAGING, Param, endpoint
from tether.api.views import NotificationView, notification_view
from tether.core.errors import BadRequest, NotFound

routes = web.RouteTableDef()
TAG = "notifications"

NOTIFICATION_SORTS = sorts("timestamp", "id", "name")
NAMES = Param("name", description="Notification names: repeat it or give a comma list.")
TIME_RANGE = (
    Param("start", description="Only after this time (exclusive), ISO-8601."),
    Param("end", description="Only up to this time (inclusive), ISO-8601."),
)


def _filters(request: web.Request) -> dict[str, Any]:
    start, end = query_time(request, "start"), query_time(request, "end")
    if start is not None and end is not None and end < start:
        raise BadRequest("end must not be before start")
    return {
        "names": query_list(request, "name"),
        "start": start,
        "end": end,
        **paging(request, NOTIFICATION_SORTS, "timestamp"),
    }


@endpoint(
    routes,
    "GET",
    "/api/v1/notifications",
    summary="List notifications of the devices you can see.",
    tag=TAG,
    response=list[NotificationView],
    params=(
        Param("deviceId", description="Device ids: repeat it or give a comma list."),
        NAMES,
        *TIME_RANGE,
        *PAGING,
    ),
)
async def list_notifications(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    device_ids = query_list(request, "deviceId")
    scope: dict[str, Any] = {}
    if device_ids is not None and len(device_ids) == 1:
        scope["device_id"] = device_ids[0]  # one device: checked, 403/404 if not visible
    elif device_ids is not None:
        scope["device_ids"] = device_ids  # several: the invisible ones are filtered out
    found = await hub_of(request).notifications.list_notifications(
        principal, **scope, **_filters(request)
    )
    return json([notification_view(n) for n in found])


@endpoint(
    routes,
    "GET",
    "/api/v1/notifications/{notification_id}",
    summary="Get a notification.",
    tag=TAG,
    response=NotificationView,
    params=(Param("notification_id", "path", "integer", "Notification id.", True),),
)
async def get_notification(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    notification_id = path_int(request, "notification_id")
    found = await hub_of(request).notifications.get(principal, notification_id)
    if found is None:
        raise NotFound(f"notification {notification_id} not found")
    return json(notification_view(found))


@endpoint(
    routes,
    "GET",
    "/api/v1/devices/{device_id}/notifications",
    summary="List a device's notifications.",
    tag=TAG,
    response=list[NotificationView],
    params=(Param("device_id", "path", "string", "Device id.", True), NAMES, *TIME_RANGE, *PAGING),
)
async def device_notifications(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    found = await hub_of(request).notifications.list_notifications(
        principal, device_id=request.match_info["device_id"], **_filters(request)
    )
    return json([notification_view(n) for n in found])
