"""Networks, device types, config revisions and firmware targets."""

from __future__ import annotations

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


# --- networks ------------------------------------------------------------------------------


@endpoint(
    routes,
    "GET",
    "/api/v1/networks",
    summary="List the networks you can see.",
    tag="networks",
    response=list[NetworkView],
    params=(*NAME_FILTERS, *PAGING),
)
async def list_networks(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    found = await hub_of(request).directory.list_networks(
        principal,
        name=query_str(request, "name"),
        name_pattern=query_str(request, "namePattern"),
        **paging(request, SCOPE_SORTS, "id"),
    )
    return json([network_view(n) for n in found])


@endpoint(
    routes,
    "POST",
    "/api/v1/networks",
    summary="Create a network (admin).",
    tag="networks",
    body=NamedCreate,
    response=NetworkView,
    status=201,
    extra_statuses=IN_USE,
)
async def create_network(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    body = await read_body(request, NamedCreate)
    network = await hub_of(request).directory.create_network(
        principal, name=body.name, description=body.description
    )
    return json(network_view(network), status=201)


@endpoint(
    routes,
    "GET",
    "/api/v1/networks/{network_id}",
    summary="Get a network.",
    tag="networks",
    response=NetworkView,
    params=(NETWORK_ID,),
)
async def get_network(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    network = await hub_of(request).directory.get_network(
        principal, path_int(request, "network_id")
    )
    return json(network_view(network))


@endpoint(
    routes,
    "PATCH",
    "/api/v1/networks/{network_id}",
    summary="Update a network (admin).",
    tag="networks",
    body=NamedUpdate,
    response=NetworkView,
    params=(NETWORK_ID,),
    extra_statuses=IN_USE,
)
async def update_network(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    network_id = path_int(request, "network_id")
    fields = await read_patch(request, NamedUpdate, nullable=NAMED_NULLABLE)
    network = await hub_of(request).directory.update_network(principal, network_id, **fields)
    return json(network_view(network))


@endpoint(
    routes,
    "DELETE",
    "/api/v1/networks/{network_id}",
    summary="Delete a network (admin); refused while it holds devices unless force.",
    tag="networks",
    status=204,
    params=(NETWORK_ID, FORCE),
)
async def delete_network(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    await hub_of(request).directory.delete_network(
        principal, path_int(request, "network_id"), force=query_bool(request, "force")
    )
    return no_content()


# --- device types ----------------------------------------------------------------------------


@endpoint(
    routes,
    "GET",
    "/api/v1/device-types",
    summary="List the device types you can see.",
    tag="device-types",
    response=list[NetworkView],
    params=(*NAME_FILTERS, *PAGING),
)
async def list_device_types(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    found = await hub_of(request).directory.list_device_types(
        principal,
        name=query_str(request, "name"),
        name_pattern=query_str(request, "namePattern"),
        **paging(request, SCOPE_SORTS, "id"),
    )
    return json([network_view(t) for t in found])


@endpoint(
    routes,
    "POST",
    "/api/v1/device-types",
    summary="Create a device type (admin).",
    tag="device-types",
    body=NamedCreate,
    response=NetworkView,
    status=201,
    extra_statuses=IN_USE,
)
async def create_device_type(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    body = await read_body(request, NamedCreate)
    found = await hub_of(request).directory.create_device_type(
        principal, name=body.name, description=body.description
    )
    return json(network_view(found), status=201)


@endpoint(
    routes,
    "GET",
    "/api/v1/device-types/{type_id}",
    summary="Get a device type.",
    tag="device-types",
    response=NetworkView,
    params=(TYPE_ID,),
)
async def get_device_type(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    found = await hub_of(request).directory.get_device_type(principal, path_int(request, "type_id"))
    return json(network_view(found))


@endpoint(
    routes,
    "PATCH",
    "/api/v1/device-types/{type_id}",
    summary="Update a device type (admin).",
    tag="device-types",
    body=NamedUpdate,
    response=NetworkView,
    params=(TYPE_ID,),
    extra_statuses=IN_USE,
)
async def update_device_type(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    type_id = path_int(request, "type_id")
    fields = await read_patch(request, NamedUpdate, nullable=NAMED_NULLABLE)
    found = await hub_of(request).directory.update_device_type(principal, type_id, **fields)
    return json(network_view(found))


@endpoint(
    routes,
    "DELETE",
    "/api/v1/device-types/{type_id}",
    summary="Delete a device type (admin); refused while devices use it unless force.",
    tag="device-types",
    status=204,
    params=(TYPE_ID, FORCE),
)
async def delete_device_type(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    await hub_of(request).directory.delete_device_type(
        principal, path_int(request, "type_id"), force=query_bool(request, "force")
    )
    return no_content()


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
