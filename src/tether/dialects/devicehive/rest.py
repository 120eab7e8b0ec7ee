"""The DeviceHive REST API under ``/api/rest``, on the same operations as the WebSocket.

Bodies are JSON whatever the ``Content-Type`` (the official client sends none); errors
are ``{"error": <code>, "message": <text>}`` with the HTTP status; success codes follow
DeviceHive (201 for inserts and tokens, 204 for updates and deletes). Requests carry
``Authorization: Bearer <access token>``; a missing, expired or refresh-type token is 401,
which is what drives the official client's refresh-and-retry.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tether.core.access import Principal
from tether.core.errors import TetherError
from tether.dialects.devicehive import codec
from tether.dialects.devicehive.codec import DhError
from tether.dialects.devicehive.ops import DirectoryOps
from tether.dialects.devicehive.streams import MessageOps
from tether.hub.service import Hub
from tether.web import CLIENT_LEFT, client_left, still_connected

log = logging.getLogger("tether.devicehive.rest")

PREFIX = "/api/rest"


class Call:
    """One REST request: its hub, caller, parameters and body."""

    def __init__(self, request: web.Request, hub: Hub, ops: DirectoryOps, msgs: MessageOps):
        self.request = request
        self.hub = hub
        self.ops = ops
        self.msgs = msgs
        self.principal: Principal | None = None
        self.query: dict[str, Any] = dict(request.query)

    def path(self, name: str) -> str:
        return self.request.match_info[name]

    def path_int(self, name: str) -> int:
        value = codec.opt_int(self.request.match_info[name], name)
        assert value is not None
        return value

    async def body(self) -> dict[str, Any]:
        limit = self.hub.settings.max_message_bytes
        raw = await self.request.content.read(limit + 1)
        if len(raw) > limit:
            raise DhError(413, "Request body is too large")
        if not raw.strip():
            return {}
        value = codec.decode_json(raw)
        if not isinstance(value, dict):
            raise DhError(400, "Invalid request parameters: the body must be a JSON object")
        return value


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


def reply(body: Any, status: int = 200) -> web.Response:
    if body is None:
        return web.Response(status=status)
    return web.Response(text=codec.encode(body), status=status, content_type="application/json")


def no_content() -> web.Response:
    return web.Response(status=204)


Parts = Callable[[Hub], Awaitable[tuple[DirectoryOps, MessageOps]]]


def _wrap(
    handler: Handler, hub_now: Callable[[], Hub | None], parts: Parts
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def run(request: web.Request) -> web.StreamResponse:
        why = ""  # why a presented token was refused ("token has expired", ...)
        try:
            hub = hub_now()
            if hub is None:
                raise DhError(503, "The server is starting")
            call = Call(request, hub, *await parts(hub))
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                # A bad or expired token leaves the caller anonymous: open resources
                # (info, tokens) still answer, everything else is 401.
                try:
                    call.principal = await hub.auth.principal(token.strip())
                except TetherError as refused:
                    why = refused.message
            return await handler(call)
        except Exception as exc:
            if client_left(request, exc):
                log.debug("devicehive %s %s: %s", request.method, request.path, CLIENT_LEFT)
                exc = DhError(400, CLIENT_LEFT)
            if not isinstance(exc, (DhError, TetherError)):
                log.exception("devicehive %s %s failed", request.method, request.path)
            error = codec.error_of(exc)
            message = why if error.code == 401 and why else error.message
            answer = reply(codec.rest_error(error.code, message), error.code)
            answer.headers.update(error.headers)
            return answer

    return run


def add_routes(app: web.Application, hub_now: Callable[[], Hub | None], get_parts: Parts) -> None:
    table: list[tuple[str, str, Handler]] = []

    def route(method: str, path: str) -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            table.append((method, PREFIX + path, handler))
            return handler

        return add

    # --- info and tokens ------------------------------------------------------------

    @route("GET", "/info")
    async def info(c: Call) -> web.StreamResponse:
        proto = c.request.headers.get("X-Forwarded-Proto", c.request.scheme)
        ws = "wss" if proto == "https" else "ws"
        url = f"{ws}://{c.request.host}/api/websocket"
        return reply(codec.rest_info(c.hub.clock.now(), url))

    @route("GET", "/info/cache")
    async def cache(c: Call) -> web.StreamResponse:
        return reply({"serverTimestamp": codec.fmt_ts(c.hub.clock.now()), "cacheStats": ""})

    @route("GET", "/info/config/cluster")
    async def cluster(c: Call) -> web.StreamResponse:
        return reply(dict(codec.CLUSTER_INFO))

    @route("POST", "/token")
    async def token(c: Call) -> web.StreamResponse:
        return reply(await c.ops.token(await c.body(), source=c.request.remote or ""), 201)

    @route("POST", "/token/refresh")
    async def refresh(c: Call) -> web.StreamResponse:
        return reply(await c.ops.refresh(await c.body()), 201)

    @route("POST", "/token/create")
    async def create_token(c: Call) -> web.StreamResponse:
        return reply(await c.ops.create_token(c.principal, await c.body()), 201)

    # --- configuration --------------------------------------------------------------

    @route("GET", "/configuration/{name}")
    async def config_get(c: Call) -> web.StreamResponse:
        try:
            return reply(await c.ops.get_config(c.principal, c.path("name")))
        except DhError as error:
            if error.code == 404:
                return web.Response(status=404)
            raise

    @route("PUT", "/configuration/{name}")
    async def config_put(c: Call) -> web.StreamResponse:
        body = await c.body()
        return reply(await c.ops.put_config(c.principal, c.path("name"), body.get("value")))

    @route("DELETE", "/configuration/{name}")
    async def config_delete(c: Call) -> web.StreamResponse:
        await c.ops.delete_config(c.principal, c.path("name"))
        return no_content()

    # --- devices, commands, notifications (fixed paths before {id}) -----------------

    @route("GET", "/device")
    async def device_list(c: Call) -> web.StreamResponse:
        return reply(await c.ops.device_list(c.principal, c.query, None))

    @route("GET", "/device/count")
    async def device_count(c: Call) -> web.StreamResponse:
        return reply({"count": await c.ops.device_count(c.principal, c.query)})

    @route("GET", "/device/command/poll")
    async def command_poll_many(c: Call) -> web.StreamResponse:
        sel = await c.msgs.select(c.principal, "command", c.query)
        return reply(
            await c.msgs.poll(
                c.principal, sel, c.query, limit_default=100, present=still_connected(c.request)
            )
        )

    @route("GET", "/device/notification/poll")
    async def notification_poll_many(c: Call) -> web.StreamResponse:
        sel = await c.msgs.select(c.principal, "notification", c.query)
        return reply(await c.msgs.poll(c.principal, sel, c.query, limit_default=100))

    @route("GET", "/device/{id}")
    async def device_get(c: Call) -> web.StreamResponse:
        return reply(await c.ops.device_get(c.principal, c.path("id")))

    @route("PUT", "/device/{id}")
    async def device_put(c: Call) -> web.StreamResponse:
        await c.ops.device_save(c.principal, c.path("id"), await c.body(), strict_id=False)
        return no_content()

    @route("DELETE", "/device/{id}")
    async def device_delete(c: Call) -> web.StreamResponse:
        await c.ops.device_delete(c.principal, c.path("id"))
        return no_content()

    @route("GET", "/device/{id}/command/poll")
    async def command_poll(c: Call) -> web.StreamResponse:
        sel = await c.msgs.select(c.principal, "command", {**c.query, "deviceId": c.path("id")})
        return reply(
            await c.msgs.poll(
                c.principal, sel, c.query, limit_default=100, present=still_connected(c.request)
            )
        )

    @route("GET", "/device/{id}/command")
    async def command_list(c: Call) -> web.StreamResponse:
        found = await c.msgs.command_list(
            c.principal, c.path("id"), c.query, default_take=100, default_sort="timestamp"
        )
        return reply(found)

    @route("POST", "/device/{id}/command")
    async def command_insert(c: Call) -> web.StreamResponse:
        command = await c.msgs.command_insert(c.principal, c.path("id"), await c.body())
        return reply(codec.command_inserted(command), 201)

    @route("GET", "/device/{id}/command/{cid}/poll")
    async def command_id_poll(c: Call) -> web.StreamResponse:
        found = await c.msgs.poll_command(c.principal, c.path("id"), c.path_int("cid"), c.query)
        return no_content() if found is None else reply(found)

    @route("GET", "/device/{id}/command/{cid}")
    async def command_get(c: Call) -> web.StreamResponse:
        return reply(await c.msgs.command_get(c.principal, c.path("id"), c.path_int("cid")))

    @route("PUT", "/device/{id}/command/{cid}")
    async def command_update(c: Call) -> web.StreamResponse:
        await c.msgs.command_update(c.principal, c.path("id"), c.path_int("cid"), await c.body())
        return no_content()

    @route("GET", "/device/{id}/notification/poll")
    async def notification_poll(c: Call) -> web.StreamResponse:
        query = {**c.query, "deviceId": c.path("id")}
        sel = await c.msgs.select(c.principal, "notification", query)
        return reply(await c.msgs.poll(c.principal, sel, c.query, limit_default=100))

    @route("GET", "/device/{id}/notification")
    async def notification_list(c: Call) -> web.StreamResponse:
        found = await c.msgs.notification_list(
            c.principal, c.path("id"), c.query, default_take=100, default_sort="timestamp"
        )
        return reply(found)

    @route("POST", "/device/{id}/notification")
    async def notification_insert(c: Call) -> web.StreamResponse:
        made = await c.msgs.notification_insert(c.principal, c.path("id"), await c.body())
        return reply(codec.notification_inserted(made), 201)

    @route("GET", "/device/{id}/notification/{nid}")
    async def notification_get(c: Call) -> web.StreamResponse:
        return reply(await c.msgs.notification_get(c.principal, c.path("id"), c.path_int("nid")))

    # --- networks and device types --------------------------------------------------

    for kind in ("network", "devicetype"):
        _scope_routes(route, kind)

    # --- users ----------------------------------------------------------------------

    @route("GET", "/user")
    async def user_list(c: Call) -> web.StreamResponse:
        return reply(await c.ops.user_list(c.principal, c.query, None))

    @route("GET", "/user/count")
    async def user_count(c: Call) -> web.StreamResponse:
        return reply({"count": await c.ops.user_count(c.principal, c.query)})

    @route("POST", "/user")
    async def user_insert(c: Call) -> web.StreamResponse:
        return reply(await c.ops.user_insert(c.principal, await c.body()), 201)

    @route("GET", "/user/current")
    async def user_current(c: Call) -> web.StreamResponse:
        return reply(await c.ops.user_current(c.principal))

    @route("PUT", "/user/current")
    async def user_update_current(c: Call) -> web.StreamResponse:
        await c.ops.user_update(c.principal, None, await c.body())
        return no_content()

    @route("GET", "/user/{id}")
    async def user_get(c: Call) -> web.StreamResponse:
        return reply(await c.ops.user_get(c.principal, c.path_int("id")))

    @route("PUT", "/user/{id}")
    async def user_update(c: Call) -> web.StreamResponse:
        await c.ops.user_update(c.principal, c.path_int("id"), await c.body())
        return no_content()

    @route("DELETE", "/user/{id}")
    async def user_delete(c: Call) -> web.StreamResponse:
        await c.ops.user_delete(c.principal, c.path_int("id"))
        return no_content()

    @route("GET", "/user/{id}/network/{nid}")
    async def user_network(c: Call) -> web.StreamResponse:
        view = await c.ops.user_scope(c.principal, "network", c.path_int("id"), c.path_int("nid"))
        return reply({"network": view})

    @route("PUT", "/user/{id}/network/{nid}")
    async def user_assign_network(c: Call) -> web.StreamResponse:
        await c.ops.user_assign(c.principal, "network", c.path_int("id"), c.path_int("nid"), True)
        return no_content()

    @route("DELETE", "/user/{id}/network/{nid}")
    async def user_unassign_network(c: Call) -> web.StreamResponse:
        await c.ops.user_assign(c.principal, "network", c.path_int("id"), c.path_int("nid"), False)
        return no_content()

    @route("GET", "/user/{id}/devicetype")
    async def user_types(c: Call) -> web.StreamResponse:
        return reply(await c.ops.user_device_types(c.principal, c.path_int("id")))

    @route("PUT", "/user/{id}/devicetype/all")
    async def user_allow_all(c: Call) -> web.StreamResponse:
        await c.ops.user_all_types(c.principal, c.path_int("id"), True)
        return no_content()

    @route("DELETE", "/user/{id}/devicetype/all")
    async def user_disallow_all(c: Call) -> web.StreamResponse:
        await c.ops.user_all_types(c.principal, c.path_int("id"), False)
        return no_content()

    @route("GET", "/user/{id}/devicetype/{tid}")
    async def user_type(c: Call) -> web.StreamResponse:
        view = await c.ops.user_scope(
            c.principal, "devicetype", c.path_int("id"), c.path_int("tid")
        )
        return reply({"deviceType": view})

    @route("PUT", "/user/{id}/devicetype/{tid}")
    async def user_assign_type(c: Call) -> web.StreamResponse:
        await c.ops.user_assign(
            c.principal, "devicetype", c.path_int("id"), c.path_int("tid"), True
        )
        return no_content()

    @route("DELETE", "/user/{id}/devicetype/{tid}")
    async def user_unassign_type(c: Call) -> web.StreamResponse:
        await c.ops.user_assign(
            c.principal, "devicetype", c.path_int("id"), c.path_int("tid"), False
        )
        return no_content()

    by_path: dict[str, dict[str, Handler]] = {}
    for method, path, handler in table:
        by_path.setdefault(path, {})[method] = handler
    for path, methods in by_path.items():
        for method, handler in methods.items():
            if method != "POST":
                app.router.add_route(method, path, _wrap(handler, hub_now, get_parts))
        if "POST" in methods or "PUT" in methods or "DELETE" in methods:
            post = _overridable(methods)
            app.router.add_route("POST", path, _wrap(post, hub_now, get_parts))


def _overridable(methods: dict[str, Handler]) -> Handler:
    """POST, honouring ``X-HTTP-Method-Override: PUT|DELETE`` as DeviceHive does."""

    async def post(c: Call) -> web.StreamResponse:
        wanted = c.request.headers.get("X-HTTP-Method-Override", "POST").strip().upper()
        handler = methods.get(wanted)
        if handler is None:
            raise DhError(405, f"Method {wanted} is not allowed here")
        return await handler(c)

    return post


def _scope_routes(route: Callable[[str, str], Callable[[Handler], Handler]], kind: str) -> None:
    base = f"/{kind}"

    @route("GET", base)
    async def scope_list(c: Call) -> web.StreamResponse:
        return reply(await c.ops.scope_list(c.principal, kind, c.query, None))

    @route("GET", base + "/count")
    async def scope_count(c: Call) -> web.StreamResponse:
        found = await c.ops.scope_list(c.principal, kind, {**c.query, "take": None}, None)
        return reply({"count": len(found)})

    @route("POST", base)
    async def scope_insert(c: Call) -> web.StreamResponse:
        return reply({"id": await c.ops.scope_insert(c.principal, kind, await c.body())}, 201)

    @route("GET", base + "/{id}")
    async def scope_get(c: Call) -> web.StreamResponse:
        return reply(await c.ops.scope_get(c.principal, kind, c.path_int("id")))

    @route("PUT", base + "/{id}")
    async def scope_update(c: Call) -> web.StreamResponse:
        body = dict(await c.body())
        body.pop("id", None)
        await c.ops.scope_update(c.principal, kind, c.path_int("id"), body)
        return no_content()

    @route("DELETE", base + "/{id}")
    async def scope_delete(c: Call) -> web.StreamResponse:
        await c.ops.scope_delete(c.principal, kind, c.path_int("id"), c.query.get("force"))
        return no_content()
