"""Networks, device types, config revisions and firmware targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from tether.api.auth import principal_of
from tether.api.codec import ConfigCreate, FirmwareCreate, NamedCreate, NamedUpdate
from tether.api.http import hub_of, json, path_int, query_bool, read_body
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
    FirmwareView,
    NetworkView,
    config_view,
    firmware_view,
    network_view,
)
from tether.hub.scopes import Scopes
from tether.hub.service import Hub

routes = web.RouteTableDef()

SCOPE_SORTS = sorts("id", "name")
NAMED_NULLABLE = frozenset({"description"})
NAME_FILTERS = (
    Param("name", description="Exact name."),
    Param("namePattern", description="Name LIKE pattern (% and _ wildcards)."),
)
FORCE = Param("force", type="boolean", description="Also delete the devices it holds.")
NETWORK_ID = Param("network_id", "path", "integer", "Network id.", required=True)
TYPE_ID = Param("type_id", "path", "integer", "Device type id.", required=True)
TARGET_ID = Param("target_id", "path", "integer", "Firmware target id.", required=True)
IN_USE = {409: "The name is taken."}


# --- networks and device types ----------------------------------------------------------------


def scope_routes(
    *, path: str, tag: str, what: str, id_param: Param, scopes: Callable[[Hub], Scopes[Any]]
) -> None:
    """The five routes of one kind of scope (networks or device types)."""
    item = f"{path}/{{{id_param.name}}}"

    def scope_id(request: web.Request) -> int:
        return path_int(request, id_param.name)

    @endpoint(
        routes,
        "GET",
        path,
        summary=f"List the {what}s you can see.",
        tag=tag,
        response=list[NetworkView],
        params=(*NAME_FILTERS, *PAGING),
    )
    async def list_all(request: web.Request) -> web.Response:
        principal = await principal_of(request)
        found = await scopes(hub_of(request)).list(
            principal,
            name=query_str(request, "name"),
            name_pattern=query_str(request, "namePattern"),
            **paging(request, SCOPE_SORTS, "id"),
        )
        return json([network_view(n) for n in found])

    @endpoint(
        routes,
        "POST",
        path,
        summary=f"Create a {what} (admin).",
        tag=tag,
        body=NamedCreate,
        response=NetworkView,
        status=201,
        extra_statuses=IN_USE,
    )
    async def create(request: web.Request) -> web.Response:
        principal = await principal_of(request)
        body = await read_body(request, NamedCreate)
        made = await scopes(hub_of(request)).create(
            principal, name=body.name, description=body.description
        )
        return json(network_view(made), status=201)

    @endpoint(
        routes,
        "GET",
        item,
        summary=f"Get a {what}.",
        tag=tag,
        response=NetworkView,
        params=(id_param,),
    )
    async def get(request: web.Request) -> web.Response:
        principal = await principal_of(request)
        return json(network_view(await scopes(hub_of(request)).get(principal, scope_id(request))))

    @endpoint(
        routes,
        "PATCH",
        item,
        summary=f"Update a {what} (admin).",
        tag=tag,
        body=NamedUpdate,
        response=NetworkView,
        params=(id_param,),
        extra_statuses=IN_USE,
    )
    async def update(request: web.Request) -> web.Response:
        principal = await principal_of(request)
        fields = await read_patch(request, NamedUpdate, nullable=NAMED_NULLABLE)
        found = await scopes(hub_of(request)).update(principal, scope_id(request), **fields)
        return json(network_view(found))

    @endpoint(
        routes,
        "DELETE",
        item,
        summary=f"Delete a {what} (admin); refused while it has devices unless force.",
        tag=tag,
        status=204,
        params=(id_param, FORCE),
    )
    async def delete(request: web.Request) -> web.Response:
        principal = await principal_of(request)
        await scopes(hub_of(request)).delete(
            principal, scope_id(request), force=query_bool(request, "force")
        )
        return no_content()


scope_routes(
    path="/api/v1/networks",
    tag="networks",
    what="network",
    id_param=NETWORK_ID,
    scopes=lambda hub: hub.directory.networks,
)
scope_routes(
    path="/api/v1/device-types",
    tag="device-types",
    what="device type",
    id_param=TYPE_ID,
    scopes=lambda hub: hub.directory.device_types,
)


# --- config revisions and firmware ------------------------------------------------------------


@endpoint(
    routes,
    "GET",
    "/api/v1/config-revisions",
    summary="List config revisions (admin).",
    tag="config",
    response=list[ConfigView],
    params=(
        Param("deviceId", description="Only revisions for this device."),
        Param("deviceTypeId", type="integer", description="Only revisions for this device type."),
    ),
)
async def list_configs(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    found = await hub_of(request).twins.list_configs(
        principal,
        device_id=query_str(request, "deviceId"),
        device_type_id=query_opt_int(request, "deviceTypeId"),
    )
    return json([config_view(c) for c in found])


@endpoint(
    routes,
    "POST",
    "/api/v1/config-revisions",
    summary="Publish a config revision for a device, a device type, or everyone (admin).",
    tag="config",
    body=ConfigCreate,
    response=ConfigView,
    status=201,
)
async def create_config(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    body = await read_body(request, ConfigCreate)
    found = await hub_of(request).twins.create_config(
        principal, body.document, device_id=body.device_id, device_type_id=body.device_type_id
    )
    return json(config_view(found), status=201)


@endpoint(
    routes,
    "GET",
    "/api/v1/firmware-targets",
    summary="List firmware targets (admin).",
    tag="firmware",
    response=list[FirmwareView],
)
async def list_firmware(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    found = await hub_of(request).twins.list_firmware(principal)
    return json([firmware_view(f) for f in found])


@endpoint(
    routes,
    "POST",
    "/api/v1/firmware-targets",
    summary="Set the firmware a device, a device type, or everyone should run (admin).",
    tag="firmware",
    body=FirmwareCreate,
    response=FirmwareView,
    status=201,
)
async def set_firmware(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    body = await read_body(request, FirmwareCreate)
    found = await hub_of(request).twins.set_firmware(
        principal,
        version=body.version,
        url=body.url,
        size=body.size,
        sha256=body.sha256,
        device_id=body.device_id,
        device_type_id=body.device_type_id,
    )
    return json(firmware_view(found), status=201)


@endpoint(
    routes,
    "DELETE",
    "/api/v1/firmware-targets/{target_id}",
    summary="Delete a firmware target (admin).",
    tag="firmware",
    status=204,
    params=(TARGET_ID,),
)
async def delete_firmware(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    await hub_of(request).twins.delete_firmware(principal, path_int(request, "target_id"))
    return no_content()
