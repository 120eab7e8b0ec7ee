"""The native device API over HTTP: long-poll for commands, post results and telemetry.

Every route is ``/api/v1/device/{device_id}/...`` and authenticates with that device's own
credential (``Authorization: Bearer <credential>``), so a device can only act as itself.
An empty poll is answered from the hub's in-memory index without touching the database.
"""

from __future__ import annotations

from aiohttp import web

from tether.api.auth import device_of
from tether.api.codec import (
    CommandProgress,
    CommandResult,
    NotificationCreate,
    StatePatch,
    StepInput,
)
from tether.api.http import hub_of, json, path_int, query_float, query_int, read_body
from tether.api.spec import Param, endpoint
from tether.api.views import (
    CommandView,
    ConfigView,
    NotificationView,
    StateView,
    command_view,
    config_view,
    encoder,
    notification_view,
    state_view,
)
from tether.core.errors import BadRequest, NotFound
from tether.core.model import CommandStep
from tether.hub.service import Hub
from tether.web import HandOut, still_connected

routes = web.RouteTableDef()

BASE = "/api/v1/device/{device_id}"


def make_step(hub: Hub, step: StepInput | None) -> CommandStep | None:
    if step is None:
        return None
    return CommandStep(
        name=step.name,
        state=step.state,
        description=step.description,
        time=hub.clock.now(),
        data=step.data,
    )


@endpoint(
    routes,
    "GET",
    BASE + "/commands",
    tag="device",
    auth="device",
    summary="Long-poll for commands; answers as soon as one is due, or [] after `wait`.",
    response=list[CommandView],
    params=(
        Param(
            "wait",
            type="number",
            description="Seconds to hold the request "
            "open when nothing is due (default 0, at most the server's "
            "poll_wait_max).",
        ),
        Param(
            "limit",
            type="integer",
            description="Most commands to return (default 10).",
            minimum=1,
            maximum=1000,
        ),
    ),
)
async def poll(request: web.Request) -> web.Response:
    hub = hub_of(request)
    device = await device_of(request)
    wait = query_float(request, "wait", 0.0, high=hub.settings.poll_wait_max)
    limit = query_int(request, "limit", 10, low=1, high=1000)
    hub.presence.activity(device.id, timeout=max(hub.settings.presence_timeout, wait * 2))
    commands = await hub.delivery.poll(
        device.id,
        limit=limit,
        max_in_flight=hub.settings.max_in_flight,
        wait=wait,
        present=still_connected(request),
    )
    return HandOut(
        hub,
        device.id,
        commands,
        body=encoder.encode([command_view(c) for c in commands]),
        content_type="application/json",
    )


@endpoint(
    routes,
    "POST",
    BASE + "/commands/{command_id}/ack",
    tag="device",
    auth="device",
    summary="Confirm receipt of a pushed command.",
    response=CommandView,
)
async def acknowledge(request: web.Request) -> web.Response:
    hub = hub_of(request)
    device = await device_of(request)
    command = await hub.commands.acknowledge(device, path_int(request, "command_id"))
    return json(command_view(command))


@endpoint(
    routes,
    "POST",
    BASE + "/commands/{command_id}/progress",
    tag="device",
    auth="device",
    summary="Report partial progress (status, a step, a partial result).",
    body=CommandProgress,
    response=CommandView,
)
async def progress(request: web.Request) -> web.Response:
    hub = hub_of(request)
    device = await device_of(request)
    body = await read_body(request, CommandProgress)
    command = await hub.commands.progress(
        device,
        path_int(request, "command_id"),
        status=body.status,
        step=make_step(hub, body.step),
        result=body.result,
    )
    return json(command_view(command))


@endpoint(
    routes,
    "POST",
    BASE + "/commands/{command_id}/result",
    tag="device",
    auth="device",
    summary="Post the final result. Repeating it for a finished command changes nothing.",
    body=CommandResult,
    response=CommandView,
)
async def result(request: web.Request) -> web.Response:
    hub = hub_of(request)
    device = await device_of(request)
    body = await read_body(request, CommandResult)
    command = await hub.commands.complete(
        device,
        path_int(request, "command_id"),
        success=body.success,
        result=body.result,
        error=body.error,
        status=body.status,
        step=make_step(hub, body.step),
    )
    return json(command_view(command))


@endpoint(
    routes,
    "POST",
    BASE + "/notifications",
    tag="device",
    auth="device",
    summary="Post a notification (event or telemetry).",
    body=NotificationCreate,
    response=NotificationView,
    status=201,
)
async def notify(request: web.Request) -> web.Response:
    hub = hub_of(request)
    device = await device_of(request)
    body = await read_body(request, NotificationCreate)
    notification = await hub.notifications.post_as_device(
        device, body.name, body.parameters, body.timestamp
    )
    return json(notification_view(notification), status=201)


@endpoint(
    routes,
    "GET",
    BASE + "/state",
    tag="device",
    auth="device",
    summary="The device's shadow (reported and desired).",
    response=StateView,
)
async def get_state(request: web.Request) -> web.Response:
    hub = hub_of(request)
    device = await device_of(request)
    hub.presence.seen(device.id)  # not a poll: it does not keep the device online
    return json(state_view(await hub.twins.own_state(device)))


@endpoint(
    routes,
    "PATCH",
    BASE + "/state",
    tag="device",
    auth="device",
    summary="Merge reported state into the shadow.",
    body=StatePatch,
    response=StateView,
)
async def patch_state(request: web.Request) -> web.Response:
    hub = hub_of(request)
    device = await device_of(request)
    body = await read_body(request, StatePatch)
    if body.desired is not None:
        raise BadRequest("a device reports state; desired state is set by users")
    hub.presence.seen(device.id)
    return json(state_view(await hub.twins.report(device, body.reported or {})))


@endpoint(
    routes,
    "GET",
    BASE + "/config",
    tag="device",
    auth="device",
    summary="The device's current config revision.",
    response=ConfigView,
)
async def get_config(request: web.Request) -> web.Response:
    hub = hub_of(request)
    device = await device_of(request)
    revision = await hub.twins.current_config(device)
    if revision is None:
        raise NotFound("no config revision applies to this device")
    return json(config_view(revision))
