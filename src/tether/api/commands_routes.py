"""Commands on the native API: create (optionally waiting for the result), list, get, cancel."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from tether.api.auth import principal_of
from tether.api.codec import CommandCreate
from tether.api.http import hub_of, json, path_int, query_float, read_body
from tether.api.management import paging, query_list, query_time, sorts
from tether.api.spec import PAGING, Param, endpoint
from tether.api.views import CommandView, command_view
from tether.core.errors import BadRequest
from tether.core.lifecycle import TERMINAL, CommandState

routes = web.RouteTableDef()

MAX_WAIT = 120.0
SORTS = sorts("id", "created_at", "updated_at", "name")

WAIT = Param(
    "wait",
    type="number",
    description="Seconds to wait for a terminal state (0-120). 200 when terminal, "
    "202 while still running.",
)
LIST_PARAMS = (
    Param("state", description="Filter by state; repeat or comma-separate for several."),
    Param("name", description="Filter by command name; repeat or comma-separate."),
    Param("createdAfter", description="ISO-8601 timestamp (exclusive)."),
    Param("createdBefore", description="ISO-8601 timestamp (exclusive)."),
    Param("updatedAfter", description="ISO-8601 timestamp (exclusive)."),
    *PAGING,
)


def list_filters(request: web.Request) -> dict[str, Any]:
    """Parse the command-list query parameters shared by both list endpoints."""
    states = query_list(request, "state")
    try:
        parsed_states = [CommandState(s) for s in states] if states else None
    except ValueError:
        raise BadRequest(
            f"state must be one of {', '.join(s.value for s in CommandState)}"
        ) from None
    return {
        "states": parsed_states,
        "names": query_list(request, "name"),
        "created_after": query_time(request, "createdAfter"),
        "created_before": query_time(request, "createdBefore"),
        "updated_after": query_time(request, "updatedAfter"),
        **paging(request, SORTS, "id"),
    }


@endpoint(
    routes,
    "POST",
    "/api/v1/devices/{device_id}/commands",
    tag="commands",
    summary="Send a command to a device (any dialect); optionally wait for its result.",
    body=CommandCreate,
    response=CommandView,
    status=201,
    params=(WAIT,),
    extra_statuses={200: "Finished within `wait`.", 202: "Still running after `wait`."},
)
async def create_command(request: web.Request) -> web.Response:
    hub = hub_of(request)
    principal = await principal_of(request)
    body = await read_body(request, CommandCreate)
    wait = query_float(request, "wait", 0.0, high=MAX_WAIT)
    options: dict[str, Any] = {}
    if body.timeout is not msgspec.UNSET:
        options["timeout"] = body.timeout
    if body.lifetime is not msgspec.UNSET:
        options["lifetime"] = body.lifetime
    command = await hub.commands.create(
        principal,
        request.match_info["device_id"],
        body.name,
        body.parameters,
        idempotency_key=body.idempotency_key,
        **options,
    )
    if not wait:
        return json(command_view(command), status=201)
    final = await hub.commands.wait(command.id, wait) or command
    return json(command_view(final), status=200 if final.state in TERMINAL else 202)


@endpoint(
    routes,
    "GET",
    "/api/v1/devices/{device_id}/commands",
    tag="commands",
    summary="List a device's commands.",
    response=list[CommandView],
    params=LIST_PARAMS,
)
async def list_device_commands(request: web.Request) -> web.Response:
    hub = hub_of(request)
    principal = await principal_of(request)
    commands = await hub.commands.list_commands(
        principal, device_id=request.match_info["device_id"], **list_filters(request)
    )
    return json([command_view(c) for c in commands])


@endpoint(
    routes,
    "GET",
    "/api/v1/commands",
    tag="commands",
    summary="List commands across the devices the caller can see.",
    response=list[CommandView],
    params=(
        Param("deviceId", description="Filter by device; repeat or comma-separate."),
        Param("dialect", description="Only commands of devices of this dialect."),
        *LIST_PARAMS,
    ),
)
async def list_commands(request: web.Request) -> web.Response:
    hub = hub_of(request)
    principal = await principal_of(request)
    commands = await hub.commands.list_commands(
        principal,
        device_ids=query_list(request, "deviceId"),
        dialect=request.query.get("dialect") or None,
        **list_filters(request),
    )
    return json([command_view(c) for c in commands])


@endpoint(
    routes,
    "GET",
    "/api/v1/commands/{command_id}",
    tag="commands",
    summary="Get a command; with `wait`, wait for it to finish.",
    response=CommandView,
    params=(WAIT,),
    extra_statuses={202: "Still running after `wait`."},
)
async def get_command(request: web.Request) -> web.Response:
    hub = hub_of(request)
    principal = await principal_of(request)
    command = await hub.commands.get(principal, path_int(request, "command_id"))
    wait = query_float(request, "wait", 0.0, high=MAX_WAIT)
    if wait and command.state not in TERMINAL:
        command = await hub.commands.wait(command.id, wait) or command
        return json(command_view(command), status=200 if command.state in TERMINAL else 202)
    return json(command_view(command))


@endpoint(
    routes,
    "POST",
    "/api/v1/commands/{command_id}/cancel",
    tag="commands",
    summary="Cancel a command that has not finished (409 if it has).",
    response=CommandView,
)
async def cancel_command(request: web.Request) -> web.Response:
    hub = hub_of(request)
    principal = await principal_of(request)
    command = await hub.commands.cancel(principal, path_int(request, "command_id"))
    return json(command_view(command))
