"""Liveness, readiness and Prometheus metrics.

``/healthz`` answers while the process runs (it touches nothing); ``/readyz`` answers 200
only when the hub is started and its store and bus respond, else 503 with the error body,
so a load balancer stops sending traffic to a node that cannot serve it; ``/metrics`` is
the Prometheus text exposition of this process.
"""

from __future__ import annotations

import asyncio

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tether.api.http import hub_of, json
from tether.api.spec import endpoint
from tether.api.views import Wire
from tether.core.errors import TetherError, Unavailable

routes = web.RouteTableDef()
TAG = "health"
#: Seconds the store and the bus get to answer a readiness probe.
READY_TIMEOUT = 5.0


class HealthView(Wire, kw_only=True):
    status: str


_OK = msgspec.json.encode(HealthView(status="ok"))


@endpoint(
    routes,
    "GET",
    "/healthz",
    summary="Liveness: 200 while the process runs.",
    tag=TAG,
    response=HealthView,
    auth="none",
)
async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=_OK, content_type="application/json")


@endpoint(
    routes,
    "GET",
    "/readyz",
    summary="Readiness: 200 when the store and the bus answer, else 503.",
    tag=TAG,
    response=HealthView,
    auth="none",
    extra_statuses={503: "Not ready."},
)
async def readyz(request: web.Request) -> web.Response:
    hub = hub_of(request)
    if not hub.started:
        raise Unavailable("the hub is not started")
    try:
        await asyncio.wait_for(hub.ready(), READY_TIMEOUT)
    except Unavailable:
        raise
    except TetherError as error:
        raise Unavailable(f"not ready: {error.message}", cause=error.code) from error
    except Exception as error:
        raise Unavailable(f"not ready: {type(error).__name__}: {error}") from error
    return json(HealthView(status="ready"))


@endpoint(
    routes, "GET", "/metrics", summary="Prometheus metrics of this process.", tag=TAG, auth="none"
)
async def metrics(request: web.Request) -> web.Response:
    # Set the header directly: aiohttp refuses a content_type argument with a charset.
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
