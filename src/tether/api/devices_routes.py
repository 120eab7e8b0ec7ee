"""Devices: registry, credentials, blocking, the state shadow and the current config."""

from __future__ import annotations

import msgspec
from aiohttp import web

from tether.api.auth import principal_of
from tether.api.codec import DeviceCreate, DeviceUpdate, StatePatch
from tether.api.http import hub_of, json, query_bool, read_body
from tether.api.management import (
    no_content,
    paging,
    query_opt_int,
    query_str,
    read_patch,
    sorts,
)
from tether.api.spec import PAGING, Param, endpoint
from tether.api.views import (
    ConfigView,
    CredentialView,
    DeviceView,
    StateView,
    config_view,
    device_view,
    state_view,
)
from tether.core.errors import BadRequest, NotFound
from tether.core.model import Device
from tether.hub.service import Hub

routes = web.RouteTableDef()
TAG = "devices"

DEVICE_SORTS = sorts(
    "id", "name", "dialect", "network_id", "type_id", "created_at", "updated_at", "last_seen"
)
DEVICE_ID = Param("device_id", "path", "string", "Device id.", required=True)
DEVICE_NULLABLE = frozenset({"network_id", "type_id", "owner_id", "data"})


async def _view(hub: Hub, device: Device) -> DeviceView:
    return (await _views(hub, [device]))[0]


async def _views(hub: Hub, devices: list[Device]) -> list[DeviceView]:
    """Views with ``online`` as the whole cluster sees it."""
    online = await hub.online([d.id for d in devices])
    return [device_view(d, online=d.id in online) for d in devices]


@endpoint(
    routes,
    "GET",
    "/api/v1/devices",
    summary="List the devices you can see.",
    tag=TAG,
    response=list[DeviceView],
    params=(
        Param("name", description="Exact name."),
        Param("namePattern", description="Name LIKE pattern (% and _ wildcards)."),
        Param("networkId", type="integer", description="Only devices of this network."),
        Param("typeId", type="integer", description="Only devices of this type."),
        Param("ownerId", type="integer", description="Only devices of this owner."),
        Param("dialect", description="Only devices of this dialect."),
        Param(
            "online",
            type="boolean",
            description="Only online (true) or offline (false) devices, as the cluster sees "
            "them now.",
        ),
        *PAGING,
    ),
)
async def list_devices(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    hub = hub_of(request)
    filters = {
        "name": query_str(request, "name"),
        "name_pattern": query_str(request, "namePattern"),
        "network_id": query_opt_int(request, "networkId"),
        "type_id": query_opt_int(request, "typeId"),
        "owner_id": query_opt_int(request, "ownerId"),
        "dialect": query_str(request, "dialect"),
        **paging(request, DEVICE_SORTS, "name"),
    }
    if request.query.get("online"):
        online = query_bool(request, "online")
        found = await hub.fleet.list_devices(principal, online=online, **filters)
    else:
        found = await hub.directory.list_devices(principal, **filters)
    return json(await _views(hub, found))


@endpoint(
    routes,
    "POST",
    "/api/v1/devices",
    summary="Register a device (a client's device is owned by the client).",
    tag=TAG,
    body=DeviceCreate,
    response=DeviceView,
    status=201,
    extra_statuses={409: "The device id is taken."},
)
async def create_device(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    body = await read_body(request, DeviceCreate)
    hub = hub_of(request)
    device = await hub.directory.create_device(principal, **msgspec.structs.asdict(body))
    return json(await _view(hub, device), status=201)


@endpoint(
    routes,
    "GET",
    "/api/v1/devices/{device_id}",
    summary="Get a device.",
    tag=TAG,
    response=DeviceView,
    params=(DEVICE_ID,),
)
async def get_device(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    hub = hub_of(request)
    device = await hub.directory.get_device(principal, request.match_info["device_id"])
    return json(await _view(hub, device))


@endpoint(
    routes,
    "PATCH",
    "/api/v1/devices/{device_id}",
    summary="Update a device.",
    tag=TAG,
    body=DeviceUpdate,
    response=DeviceView,
    params=(DEVICE_ID,),
)
async def update_device(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    hub = hub_of(request)
    fields = await read_patch(request, DeviceUpdate, nullable=DEVICE_NULLABLE)
    device = await hub.directory.update_device(principal, request.match_info["device_id"], **fields)
    return json(await _view(hub, device))


@endpoint(
    routes,
    "DELETE",
    "/api/v1/devices/{device_id}",
    summary="Delete a device with its commands, notifications and state.",
    tag=TAG,
    status=204,
    params=(DEVICE_ID,),
)
async def delete_device(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    await hub_of(request).directory.delete_device(principal, request.match_info["device_id"])
    return no_content()


async def _set_blocked(request: web.Request, blocked: bool) -> web.Response:
    principal = await principal_of(request)
    hub = hub_of(request)
    device = await hub.directory.update_device(
        principal, request.match_info["device_id"], blocked=blocked
    )
    return json(await _view(hub, device))


@endpoint(
    routes,
    "POST",
    "/api/v1/devices/{device_id}/block",
    summary="Block a device: it can no longer connect, post or take commands.",
    tag=TAG,
    response=DeviceView,
    params=(DEVICE_ID,),
)
async def block_device(request: web.Request) -> web.Response:
    return await _set_blocked(request, True)


@endpoint(
    routes,
    "POST",
    "/api/v1/devices/{device_id}/unblock",
    summary="Unblock a device.",
    tag=TAG,
    response=DeviceView,
    params=(DEVICE_ID,),
)
async def unblock_device(request: web.Request) -> web.Response:
    return await _set_blocked(request, False)


@endpoint(
    routes,
    "POST",
    "/api/v1/devices/{device_id}/credential",
    summary="Issue a new device credential (shown once; the previous one stops working).",
    tag=TAG,
    response=CredentialView,
    status=201,
    params=(DEVICE_ID,),
)
async def issue_credential(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    device_id = request.match_info["device_id"]
    secret = await hub_of(request).directory.issue_credential(principal, device_id)
    return json(CredentialView(device_id=device_id, credential=secret), status=201)


@endpoint(
    routes,
    "GET",
    "/api/v1/devices/{device_id}/state",
    summary="The device's state: reported, desired and version.",
    tag=TAG,
    response=StateView,
    params=(DEVICE_ID,),
)
async def get_state(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    state = await hub_of(request).twins.state(principal, request.match_info["device_id"])
    return json(state_view(state))


@endpoint(
    routes,
    "PATCH",
    "/api/v1/devices/{device_id}/state",
    summary="Merge into the desired state (reported state is the device's own).",
    tag=TAG,
    body=StatePatch,
    response=StateView,
    params=(DEVICE_ID,),
)
async def patch_state(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    device_id = request.match_info["device_id"]
    body = await read_body(request, StatePatch)
    if body.reported is not None:
        raise BadRequest("reported state is set by the device only; patch desired")
    twins = hub_of(request).twins
    if body.desired is None:
        return json(state_view(await twins.state(principal, device_id)))
    return json(state_view(await twins.desire(principal, device_id, body.desired)))


@endpoint(
    routes,
    "GET",
    "/api/v1/devices/{device_id}/config",
    summary="The config revision that applies to the device now.",
    tag=TAG,
    response=ConfigView,
    params=(DEVICE_ID,),
)
async def current_config(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    hub = hub_of(request)
    device_id = request.match_info["device_id"]
    device = await hub.directory.get_device(principal, device_id)
    found = await hub.twins.current_config(device)
    if found is None:
        raise NotFound(f"no config revision applies to device {device_id!r}")
    return json(config_view(found))
