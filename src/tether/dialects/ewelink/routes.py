"""eWeLink HTTP: v1 (``/api/user/...``), v2 (``/v2/...``) and dispatch, plus ``/api/ws``.

HTTP status is always 200 and the error is in the body (v1 ``{"error":N,"info":...}``,
v2 ``{"error":N,"msg":...,"data":{}}``), as the protocol does: some clients throw on any
non-2xx status instead of reading the body. Bodies are parsed as JSON whatever their
``Content-Type`` says, and signatures are checked over the raw bytes received.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tether.core import jsonc
from tether.core.access import can_see_device
from tether.core.errors import InvalidJson, TetherError, TooManyRequests, Unauthorized
from tether.dialects.ewelink import codec, things, ws
from tether.dialects.ewelink.accounts import Session
from tether.dialects.ewelink.cloud import Cloud

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Holder:
    """The dialect's :class:`Cloud`, set once the hub has started."""

    cloud: Cloud | None = None
    #: The TLS listener's port when it has one, given out by device dispatch.
    tls_port: int | None = None


def _json(body: Any) -> web.Response:
    return web.Response(body=jsonc.encode(body), content_type="application/json")


def v1_error(code: int, info: str) -> web.Response:
    return _json({"error": code, "info": info, "reason": codec.REASONS.get(code, info)})


def v2_error(code: int, msg: str) -> web.Response:
    return _json({"error": code, "msg": msg, "data": {}})


def throttled(error: TooManyRequests, answer: web.Response) -> web.Response:
    """A login that must wait: the eWeLink error body, but HTTP 429 with ``Retry-After``.

    eWeLink answers its own errors with HTTP 200; a throttled login is the exception, so
    that clients and proxies that know HTTP back off even if they do not know code 429.
    """
    answer.set_status(429)
    answer.headers.update(error.headers())
    return answer


def v2_ok(data: Any) -> web.Response:
    return _json({"error": 0, "msg": "", "data": data})


async def _body(request: web.Request) -> tuple[bytes, Any]:
    raw = await request.read()
    if not raw.strip():
        return raw, {}
    try:
        return raw, codec.decode(raw)
    except InvalidJson:
        return raw, None


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.startswith("Bearer ") else None


def build(holder: Holder) -> list[web.RouteDef]:
    """The route table; every handler answers 200 with the protocol's error in the body."""

    def cloud_of() -> Cloud:
        if holder.cloud is None:
            raise _NotReady
        return holder.cloud

    def guarded(handler: Handler, v2: bool) -> Handler:
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except _NotReady:
                return (v2_error if v2 else v1_error)(500, "server starting")
            except Unauthorized as error:
                return (v2_error if v2 else v1_error)(401, error.message)
            except TetherError as error:
                code = error.status if error.status in (400, 403, 404) else 500
                return (v2_error if v2 else v1_error)(code, error.message)

        return run

    async def session_of(request: web.Request) -> Session:
        return await cloud_of().accounts.session(_bearer(request))

    def app_secret(appid: Any) -> str | None:
        if not isinstance(appid, str):
            return None
        return cloud_of().settings.apps.get(appid)

    def signature_ok(appid: Any, raw: bytes, request: web.Request) -> bool:
        settings = cloud_of().settings
        if not settings.verify_signature:
            return True
        secret = app_secret(appid)
        return secret is not None and codec.verify_sign(
            secret, raw, request.headers.get("Authorization")
        )

    # --- v1 --------------------------------------------------------------------------------

    async def v1_login(request: web.Request) -> web.StreamResponse:
        cloud = cloud_of()
        raw, body = await _body(request)
        if not isinstance(body, dict):
            return v1_error(400, "body must be a JSON object")
        appid = body.get("appid") or request.headers.get("X-CK-Appid")
        if not signature_ok(appid, raw, request):
            return v1_error(406, "authentication failed: unknown appid or bad signature")
        login = body.get("email") or body.get("phoneNumber")
        password = body.get("password")
        if not isinstance(login, str) or not isinstance(password, str):
            return v1_error(400, "email (or phoneNumber) and password are required")
        try:
            done = await cloud.accounts.login(
                login, password, str(appid or ""), source=request.remote or ""
            )
        except Unauthorized:
            return v1_error(401, "wrong account or password")
        except TooManyRequests as slow:
            return throttled(slow, v1_error(429, slow.message))
        user = done.user
        return _json(
            {
                "at": done.at,
                "rt": done.rt,
                "user": {
                    "_id": str(user.id),
                    "email": user.login,
                    "apikey": done.apikey,
                    "appId": appid,
                    "lang": "en",
                    "online": False,
                    "createdAt": codec.iso_millis(user.created_at),
                },
                "region": cloud.settings.region,
            }
        )

    async def v1_devices(request: web.Request) -> web.StreamResponse:
        views = await cloud_of().device_views(await session_of(request))
        if "version" in request.query:
            return _json({"error": 0, "devicelist": views})
        return _json(views)

    async def v1_device(request: web.Request) -> web.StreamResponse:
        found = await cloud_of().device_views(
            await session_of(request), [request.match_info["deviceid"]]
        )
        if not found:
            return v1_error(404, "device not found")
        return _json({"error": 0, **found[0]})

    async def v1_status_get(request: web.Request) -> web.StreamResponse:
        session = await session_of(request)
        params = await _params(cloud_of(), session, request.query.get("deviceid"))
        if params is None:
            return v1_error(404, "device not found")
        return _json(
            {"error": 0, "params": codec.select_params(params, request.query.get("params"))}
        )

    async def v1_status_post(request: web.Request) -> web.StreamResponse:
        session = await session_of(request)
        _, body = await _body(request)
        if not isinstance(body, dict):
            return v1_error(400, "body must be a JSON object")
        code = await cloud_of().control(session, body.get("deviceid"), body.get("params"))
        reply: dict[str, Any] = {"error": code, "deviceid": body.get("deviceid")}
        if code:
            reply["reason"] = codec.REASONS.get(code, "Error")
        return _json(reply)

    # --- v2 --------------------------------------------------------------------------------

    async def v2_login(request: web.Request) -> web.StreamResponse:
        cloud = cloud_of()
        raw, body = await _body(request)
        if not isinstance(body, dict):
            return v2_error(400, "body must be a JSON object")
        appid = request.headers.get("X-CK-Appid") or body.get("appid")
        if cloud.settings.verify_signature and app_secret(appid) is None:
            return v2_error(407, "appid has no permission")
        if not signature_ok(appid, raw, request):
            return v2_error(406, "authentication failed: bad signature")
        login = body.get("email") or body.get("phoneNumber")
        password = body.get("password")
        if not isinstance(login, str) or not isinstance(password, str):
            return v2_error(400, "email (or phoneNumber) and password are required")
        try:
            done = await cloud.accounts.login(
                login, password, str(appid or ""), source=request.remote or ""
            )
        except Unauthorized:
            return v2_error(10001, "wrong account or password")
        except TooManyRequests as slow:
            return throttled(slow, v2_error(429, slow.message))
        return v2_ok(
            {
                "at": done.at,
                "rt": done.rt,
                "region": cloud.settings.region,
                "user": things.user_view(done.user.login, done.apikey, body.get("countryCode")),
            }
        )

    async def v2_refresh(request: web.Request) -> web.StreamResponse:
        _, body = await _body(request)
        rt = body.get("rt") if isinstance(body, dict) else None
        if not isinstance(rt, str):
            return v2_error(400, "rt is required")
        cloud = cloud_of()
        at, new_rt = await cloud.accounts.refresh(rt)
        # The reference shows only at and rt; the user, as the login answers it, is an
        # addition that clients reading ``data.user.apikey`` (ewelink-api-next) need.
        session = await cloud.accounts.session(at)
        user = await cloud.hub.directory.get_user(session.principal, session.user_id)
        apikey = await cloud.accounts.apikey_of(session.user_id)
        return v2_ok(
            {
                "at": at,
                "rt": new_rt,
                "region": cloud.settings.region,
                "user": things.user_view(user.login, apikey, None),
            }
        )

    async def v2_profile(request: web.Request) -> web.StreamResponse:
        cloud = cloud_of()
        session = await session_of(request)
        user = await cloud.hub.directory.get_user(session.principal, session.user_id)
        apikey = await cloud.accounts.apikey_of(session.user_id)
        return v2_ok(
            {"user": things.user_view(user.login, apikey, None), "region": cloud.settings.region}
        )

    async def v2_logout(request: web.Request) -> web.StreamResponse:
        await cloud_of().accounts.logout(await session_of(request))
        return v2_ok({})

    async def v2_family(request: web.Request) -> web.StreamResponse:
        await session_of(request)
        return v2_ok(things.family())

    def v2_many(work: Callable[[Cloud, Session, Any], Awaitable[Any]]) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            session = await session_of(request)
            _, body = await _body(request)
            if not isinstance(body, dict):
                return v2_error(400, "body must be a JSON object")
            return v2_ok(await work(cloud_of(), session, body))

        return handle

    async def v2_unknown(request: web.Request) -> web.StreamResponse:
        # The cloud answers a v2 path it does not serve with HTTP 200 and error 403
        # (reference 2, 3.11); a 404 makes clients throw instead of reading the body.
        return v2_error(403, "API not found")

    async def v2_things(request: web.Request) -> web.StreamResponse:
        session = await session_of(request)
        ids: list[str] | None = None
        if request.method == "POST":
            _, body = await _body(request)
            named = body.get("thingList") if isinstance(body, dict) else None
            if not isinstance(named, list):
                return v2_error(400, "thingList is required")
            ids = [t["id"] for t in named if isinstance(t, dict) and isinstance(t.get("id"), str)]
        return v2_ok(await things.things(cloud_of(), session, ids))

    async def v2_status_get(request: web.Request) -> web.StreamResponse:
        session = await session_of(request)
        params = await _params(cloud_of(), session, request.query.get("id"))
        if params is None:
            return v2_error(405, "resource not found")
        return v2_ok({"params": codec.select_params(params, request.query.get("params"))})

    async def v2_status_post(request: web.Request) -> web.StreamResponse:
        session = await session_of(request)
        _, body = await _body(request)
        if not isinstance(body, dict):
            return v2_error(400, "body must be a JSON object")
        code = await cloud_of().control(session, body.get("id"), body.get("params"))
        if code:
            return v2_error(code, codec.REASONS.get(code, "error"))
        return v2_ok({})

    # --- dispatch and the WebSocket --------------------------------------------------------

    def target(request: web.Request, for_device: bool) -> tuple[str, int]:
        settings = cloud_of().settings
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        ip = settings.dispatch_ip or (str(sock[0]) if sock else "127.0.0.1")
        port = settings.dispatch_port
        if port is None and for_device and holder.tls_port:
            port = holder.tls_port
        if port is None:
            port = int(sock[1]) if sock else 8080
        return ip, port

    async def dispatch_app(request: web.Request) -> web.StreamResponse:
        ip, port = target(request, False)
        domain = cloud_of().settings.domain or request.host.rsplit(":", 1)[0].strip("[]") or ip
        return _json({"error": 0, "reason": "ok", "IP": ip, "port": port, "domain": domain})

    async def dispatch_device(request: web.Request) -> web.StreamResponse:
        ip, port = target(request, True)
        return _json({"error": 0, "reason": "ok", "IP": ip, "port": port})

    async def websocket(request: web.Request) -> web.StreamResponse:
        return await ws.socket(request, cloud_of())

    v1 = [
        ("POST", "/api/user/login", v1_login),
        ("GET", "/api/user/device", v1_devices),
        ("GET", "/api/user/device/status", v1_status_get),
        ("POST", "/api/user/device/status", v1_status_post),
        ("GET", "/api/user/device/{deviceid}", v1_device),
        ("GET", "/dispatch/app", dispatch_app),
        ("POST", "/dispatch/app", dispatch_app),
        ("GET", "/dispatch/device", dispatch_device),
        ("POST", "/dispatch/device", dispatch_device),
    ]
    v2 = [
        ("POST", "/v2/user/login", v2_login),
        ("POST", "/v2/user/refresh", v2_refresh),
        ("GET", "/v2/user/profile", v2_profile),
        ("DELETE", "/v2/user/logout", v2_logout),
        ("GET", "/v2/family", v2_family),
        ("GET", "/v2/device/thing", v2_things),
        ("POST", "/v2/device/thing", v2_things),
        ("GET", "/v2/device/thing/status", v2_status_get),
        ("POST", "/v2/device/thing/status", v2_status_post),
        ("POST", "/v2/homepage", v2_many(things.home_page)),
        ("POST", "/v2/device/thing/batch-status", v2_many(things.batch_status)),
        ("POST", "/v2/device/ota/query", v2_many(things.ota_query)),
        # Last: every other /v2 path and method is the protocol's "API not found".
        ("*", "/v2/{tail:.*}", v2_unknown),
    ]
    table = [web.route(m, p, guarded(h, False)) for m, p, h in v1]
    table += [web.route(m, p, guarded(h, True)) for m, p, h in v2]
    table.append(web.get("/api/ws", guarded(websocket, False)))
    return table


class _NotReady(Exception):
    """The hub has not started yet."""


async def _params(cloud: Cloud, session: Session, device_id: Any) -> dict[str, Any] | None:
    device = await cloud.ewelink_device(device_id)
    if device is None or not can_see_device(session.principal, device):
        return None
    return await cloud.params_of(device)
