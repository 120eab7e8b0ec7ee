"""Request and response plumbing shared by the native routes.

One place decodes bodies (size-limited, typed, with a clear 400 on any mistake) and one
place renders errors, so every endpoint answers bad input the same way:
``{"error": {"code": ..., "message": ...}}`` with the matching HTTP status.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from tether.api.views import ErrorBody, ErrorView, encoder
from tether.core import jsonc, limits
from tether.core.errors import BadRequest, PayloadTooLarge, TetherError, Unavailable
from tether.hub.service import Hub
from tether.web import CLIENT_LEFT, STARTUP, client_left

log = logging.getLogger("tether.api")

T = TypeVar("T")

HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def hub_of(request: web.Request) -> Hub:
    hub = request.app.get(HUB)
    if hub is not None:
        return hub
    startup = request.app.get(STARTUP)
    if startup is not None and startup.hub is not None:
        return startup.hub
    reason = startup.error if startup is not None and startup.error else "connecting"
    raise Unavailable(f"starting: {reason}")


def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=encoder.encode(body), status=status, content_type="application/json", headers=headers
    )


def error_response(error: TetherError) -> web.Response:
    body = ErrorView(
        error=ErrorBody(code=error.code, message=error.message, details=error.details or None)
    )
    return json(body, status=error.status, headers=error.headers() or None)


#: One decoder per body type, built on first use: building a typed msgspec decoder costs
#: about as much as decoding a small body with it, on every request (P6b profile). The
#: keys are the API's own body classes, a fixed and small set.
_body_decoders: dict[type[Any], jsonc.Decoder[Any]] = {}


async def read_body(request: web.Request, kind: type[T]) -> T:
    """Decode the request body as ``kind``, or raise a clear :class:`BadRequest`."""
    limit = hub_of(request).settings.max_message_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise PayloadTooLarge(f"body is larger than {limit} bytes")
    if not raw.strip():
        raw = b"{}"
    decoder = _body_decoders.get(kind)
    if decoder is None:
        decoder = _body_decoders[kind] = jsonc.Decoder(kind)
    result: T = decoder.decode(raw)
    return result


def query_int(
    request: web.Request, name: str, default: int, *, low: int = 0, high: int = 1_000_000
) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    return limits.parse_int(f"query parameter {name!r}", raw, low, high)


def query_float(
    request: web.Request, name: str, default: float, *, low: float = 0.0, high: float = 1e9
) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be a number") from None
    if not low <= value <= high:  # also refuses nan
        raise BadRequest(f"query parameter {name!r} must be between {low} and {high}")
    return value


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise BadRequest(f"query parameter {name!r} must be true or false")


def path_int(request: web.Request, name: str) -> int:
    """An id in the path, within the store's id range (a 400 naming it otherwise)."""
    return limits.parse_id(name, request.match_info[name])


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure as the JSON error body; never leak a traceback."""
    try:
        return await handler(request)
    except TetherError as error:
        return error_response(error)
    except web.HTTPException as error:
        if error.status < 400 or error.content_type == "application/json":
            raise
        code = error.reason.lower().replace(" ", "_")
        body = ErrorView(error=ErrorBody(code=code, message=error.reason))
        return json(
            body,
            status=error.status,
            headers={k: v for k, v in error.headers.items() if k.lower() in ("allow",)},
        )
    except Exception as error:
        if client_left(request, error):
            log.debug("%s %s: %s", request.method, request.path, CLIENT_LEFT)
            return error_response(BadRequest(CLIENT_LEFT))
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json(
            ErrorView(error=ErrorBody(code="internal_error", message="internal server error")),
            status=500,
        )


@web.middleware
async def node_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every HTTP answer names the process that gave it (``X-Tether-Node``).

    Behind a load balancer or with ``--workers``, that tells an operator (and the cluster
    tests) which process served a request.
    """
    response = await handler(request)
    if not response.prepared:  # a WebSocket has sent its headers already
        try:
            node = hub_of(request).node_id
        except Unavailable:
            node = "starting"
        response.headers["X-Tether-Node"] = node
    return response
