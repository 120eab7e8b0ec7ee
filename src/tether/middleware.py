"""The middlewares every request passes for operators: metrics, the access log, CORS.

* :func:`observe_middleware`: ``tether_http_requests_total`` and
  ``tether_http_request_duration_seconds`` per route template, ``tether_connections``
  per dialect, and with the ``access_log`` setting one log line per request;
* :func:`cors_middleware`: the ``cors_origins`` allow-list (mounted only when set).

``tether.app`` installs them around every API, the native one and the dialects' alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import Counter, Gauge, Histogram

from tether import logs

if TYPE_CHECKING:
    from tether.settings import Settings

access_log = logging.getLogger(logs.ACCESS_LOGGER)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- per-request metrics and the access log -------------------------------------------------

HTTP_REQUESTS = Counter(
    "tether_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "tether_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template (WebSockets, whose "
    "duration is their lifetime, are counted in tether_http_requests_total only).",
    ["method", "route"],
)
CONNECTIONS = Gauge(
    "tether_connections",
    "Requests in progress per dialect (native, devicehive, ewelink, controlid, opengate, "
    "infiniteclouds, console): every open WebSocket and every parked long poll.",
    ["dialect"],
)
#: The route label of a request no route matched (404, 405): one label, not the raw path.
UNMATCHED = "unmatched"


#: Methods counted under their own name; any other (clients may send any token) is "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_of(request: web.Request) -> str:
    return request.method if request.method in KNOWN_METHODS else "other"


def route_of(request: web.Request) -> str:
    """The route's path template (``/api/v1/devices/{device_id}``), never the raw path, so
    the number of label values is bounded by the routes, not by what clients send."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def dialect_of(request: web.Request) -> str:
    """Which API serves the request, from the module its handler lives in."""
    handler: Any = request.match_info.handler
    module = getattr(getattr(handler, "func", handler), "__module__", "") or ""
    parts = module.split(".")
    if parts[:2] == ["tether", "dialects"] and len(parts) > 2:
        return parts[2]
    if parts[:2] == ["tether", "api"]:
        return "native"
    if parts[:2] == ["tether", "console"]:
        return "console"
    return "other"


def observe_middleware(settings: Settings) -> Middleware:
    """Count and time every request per route, keep ``tether_connections`` per dialect,
    and, with the ``access_log`` setting, log one line per request.

    It runs inside :func:`log_context_middleware`, so an access line carries the request
    and device ids like any other line (and is JSON with ``log_format = json``). The line
    names the path without its query string (some clients put a token there) and with
    Control iD's path secret masked.
    """

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_of(request)
        method = method_of(request)
        open_requests = CONNECTIONS.labels(dialect_of(request))
        began = time.perf_counter()
        status = 500
        websocket = False
        open_requests.inc()
        try:
            response = await handler(request)
            status = response.status
            websocket = isinstance(response, web.WebSocketResponse)
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        except asyncio.CancelledError:
            status = 499  # the connection was dropped (a stop's budget ran out)
            raise
        finally:
            open_requests.dec()
            took = time.perf_counter() - began
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            if not websocket:
                HTTP_DURATION.labels(method, route).observe(took)
            if settings.access_log:
                _log_access(request, _redact(request.path, secrets), route, status, took)

    secrets = [s.get_secret_value() for s in (settings.controlid.path_secret,) if s is not None]
    return observe


def _redact(path: str, secrets: Sequence[str]) -> str:
    """The path with any secret segment (Control iD's ``path_secret``) masked: a log is
    read by more people than may know it."""
    for secret in secrets:
        path = path.replace(secret, "***")
    return path


def _log_access(request: web.Request, path: str, route: str, status: int, took: float) -> None:
    access_log.info(
        "%s %s %d %.1fms %s",
        request.method,
        path,
        status,
        took * 1000,
        request.remote or "-",
        extra={
            "method": request.method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": round(took * 1000, 3),
            "remote": request.remote,
        },
    )


# --- CORS -----------------------------------------------------------------------------------

#: How long a browser may cache a preflight answer, seconds.
CORS_MAX_AGE = "600"
#: Answer headers a page from another origin may read.
CORS_EXPOSED = "X-Request-Id, X-Tether-Node, Retry-After"


def cors_middleware(origins: Sequence[str]) -> Middleware:
    """Let pages from ``origins`` (``*``: any) call the API from a browser.

    A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed
    origin is answered 204 with the method and headers it asks for, on any path: the
    routes themselves do not declare ``OPTIONS``. Other answers to an allowed origin carry
    ``Access-Control-Allow-Origin``. Credentials are bearer tokens, never cookies, so
    ``Access-Control-Allow-Credentials`` is not sent. An origin not on the list gets no
    CORS headers, so the browser keeps the answer from the page.

    Seven lines of policy; aiohttp-cors would need every route registered with it, and the
    dialects add routes of their own.
    """
    allowed = frozenset(origin.rstrip("/") for origin in origins)
    anyone = "*" in allowed

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or not (anyone or origin in allowed):
            return await handler(request)
        wanted = request.headers.get("Access-Control-Request-Method")
        if request.method == "OPTIONS" and wanted:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = wanted.upper()
            asked = request.headers.get("Access-Control-Request-Headers")
            if asked:
                response.headers["Access-Control-Allow-Headers"] = asked
            response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
        else:
            try:
                response = await handler(request)
            except web.HTTPException as error:
                response = error
            if response.prepared:  # a WebSocket: browsers do not apply CORS to it
                return response
            response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
        if isinstance(response, web.HTTPException):
            raise response
        return response

    return cors
