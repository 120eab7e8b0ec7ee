"""Liveness, readiness and Prometheus metrics.

``/healthz`` answers while the process runs (it touches nothing); ``/readyz`` answers 200
only when the hub is started, its store and bus respond and every dialect has started,
else 503, naming each component's state either way, so a load balancer stops sending
traffic to a node that cannot serve it and an operator sees which part is down; ``/metrics`` is
the Prometheus text exposition of this process, closed to anyone but an admin or a
scraper holding ``metrics_token`` unless the ``metrics`` setting opens it (or turns it
off), and optionally served alone on a listener of its own (``metrics_listen``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from tether.api.auth import bearer, principal_of
from tether.api.http import hub_of, json
from tether.api.spec import endpoint
from tether.api.views import ErrorBody, Wire
from tether.core.errors import Forbidden, NotFound, TetherError, Unauthorized, Unavailable
from tether.settings import split_address
from tether.web import ATTACHED

log = logging.getLogger("tether.api")

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


class ReadyView(Wire, kw_only=True, omit_defaults=True):
    status: str
    #: Each component ("store", "bus", then each dialect): "ok", or what is wrong with it.
    components: dict[str, str]
    error: ErrorBody | None = None


@endpoint(
    routes,
    "GET",
    "/readyz",
    summary="Readiness: 200 when the store, the bus and every dialect are up, else 503; "
    "the body names each component's state.",
    tag=TAG,
    response=ReadyView,
    auth="none",
    extra_statuses={503: "Not ready; `components` and `error` name what is not."},
)
async def readyz(request: web.Request) -> web.Response:
    try:
        hub = hub_of(request)
    except Unavailable as error:  # still starting: the store or the bus is not there yet
        components = {"store": error.message, "bus": error.message}
    else:
        if hub.started:
            store, bus = await asyncio.gather(_probe(hub.store.ping), _probe(hub.bus.ping))
        else:
            store = bus = "the hub is not started"
        components = {"store": store, "bus": bus}
    attached = request.app.get(ATTACHED)
    if attached:
        components.update(attached)
    failing = [f"{name}: {state}" for name, state in components.items() if state != "ok"]
    if not failing:
        return json(ReadyView(status="ready", components=components))
    message = "not ready: " + "; ".join(failing)
    problem = ErrorBody(code="unavailable", message=message)
    return json(ReadyView(status="not ready", components=components, error=problem), status=503)


async def _probe(ping: Callable[[], Awaitable[None]]) -> str:
    """ "ok", or why ``ping`` failed or did not answer within READY_TIMEOUT."""
    try:
        await asyncio.wait_for(ping(), READY_TIMEOUT)
    except TetherError as error:
        return error.message
    except TimeoutError:
        return f"no answer within {READY_TIMEOUT:g} s"
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return "ok"


@endpoint(
    routes,
    "GET",
    "/metrics",
    summary="Prometheus metrics of this process (an admin credential or the metrics token, "
    "unless the metrics setting says public or off).",
    tag=TAG,
    extra_statuses={404: "The metrics setting is off."},
)
async def metrics(request: web.Request) -> web.Response:
    settings = hub_of(request).settings
    if settings.metrics == "off":
        raise NotFound("metrics are off on this listener (see the metrics setting)")
    if settings.metrics == "token":
        await _check_scraper(request, settings.metrics_token)
    return _exposition()


async def _check_scraper(request: web.Request, token: SecretStr | None) -> None:
    """Let through the metrics token or an admin's credential (JWT or API key)."""
    credential = bearer(request)
    if credential is None:
        raise Unauthorized("send 'Authorization: Bearer <metrics token or admin credential>'")
    if token is not None and hmac.compare_digest(
        credential.encode(), token.get_secret_value().encode()
    ):
        return
    if not (await principal_of(request)).is_admin:
        raise Forbidden("only an admin or the metrics token may read metrics")


def _exposition() -> web.Response:
    # Set the header directly: aiohttp refuses a content_type argument with a charset.
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


#: The base URL of the metrics-only listener, once it listens (``metrics_listen``).
METRICS_URL: web.AppKey[list[str]] = web.AppKey("metrics_url", list[str])


def serve_metrics_apart(app: web.Application, address: str, *, reuse_port: bool = False) -> None:
    """Serve ``/metrics`` alone, without credentials, on ``address`` (HOST:PORT).

    A listener of its own, so the API port can keep metrics closed while a scraper on a
    private network (or the host itself) reads them: nothing else is reachable there.
    Workers of one server share the port (``reuse_port``), as they share the API port.
    """
    host, port = split_address(address)
    app[METRICS_URL] = []

    async def scrape(request: web.Request) -> web.Response:
        return _exposition()

    async def listener(app: web.Application) -> AsyncIterator[None]:
        metrics_app = web.Application()
        metrics_app.router.add_get("/metrics", scrape)
        runner = web.AppRunner(metrics_app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port, reuse_port=reuse_port)
            await site.start()
            bound = runner.addresses[0]
            app[METRICS_URL].append(f"http://{host}:{bound[1]}")
            log.info("metrics listening on http://%s:%s/metrics", host, bound[1])
            yield
        finally:
            await runner.cleanup()

    app.cleanup_ctx.append(listener)
