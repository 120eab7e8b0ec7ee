"""What the aiohttp application shares with every API mounted in it.

The native API and the five dialects are siblings: none may import another
(import-linter's layers), yet all of them live in one ``web.Application`` and need the
same two things from it:

* the hub, which starts *after* the listener so that ``/readyz`` can answer while the
  database or the bus is still unreachable (:class:`Startup`, :func:`hub_now`,
  :func:`when_hub_ready`);
* extra sockets, for dialects whose devices need a listener of their own, such as a TLS
  port with the certificate a firmware expects (:class:`Listener`, :data:`LISTENERS`).

``tether.app`` creates both records; everything else reads them from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from tether import logs
from tether.core.backoff import Backoff
from tether.core.errors import Unavailable

if TYPE_CHECKING:  # the device agents import their dialect without the hub
    from aiohttp.abc import AbstractStreamWriter

    from tether.core.model import Command
    from tether.hub.service import Hub

log = logging.getLogger("tether")


class MalformedRequestFilter(logging.Filter):
    """Log a client's malformed HTTP as one warning line, not an error with a traceback.

    aiohttp answers a request it cannot parse (a NUL in a header, a bad method, a broken
    chunk) with 400 and then logs it at ERROR with the parser's traceback. Nothing failed
    on our side, and any client can send such bytes, so left alone the log would fill
    with tracebacks and hide real faults.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= (error.code or 500) < 500:
            said = record.getMessage()
            record.msg, record.args = "%s: %s %s", (said, error.code, error.message.split("\n")[0])
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


#: Installed on aiohttp's server logger by ``tether.app.build_app`` (once per process).
MALFORMED_REQUESTS = MalformedRequestFilter()


class Startup:
    """The hub as it comes up: the listener answers before the database and bus do.

    Until ``hub`` is set, every API call answers 503 ``unavailable`` with ``error`` (why
    start-up is still waiting), and ``/readyz`` says the same, so an orchestrator sees a
    live process that is not ready rather than a crash loop.
    """

    def __init__(self) -> None:
        self.hub: Hub | None = None
        self.error: str | None = None
        #: Where the first admin's generated password was written, if it was.
        self.password_file: Path | None = None
        self.ready = asyncio.Event()


STARTUP: web.AppKey[Startup] = web.AppKey("startup", Startup)


@dataclass(frozen=True)
class Listener:
    """An extra socket the application also serves, beside the main host and port.

    Every listener serves the same routes; ``tether serve`` and the test harness open
    them all (``tether.app.start_listeners``).
    """

    name: str
    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None


#: The extra listeners; dialects append to it while they are mounted.
LISTENERS: web.AppKey[list[Listener]] = web.AppKey("listeners", list[Listener])


def hub_now(app: web.Application) -> Hub:
    """The running hub, or :class:`Unavailable` (503) while start-up is still waiting."""
    startup = app[STARTUP]
    if startup.hub is not None:
        return startup.hub
    raise Unavailable(f"starting: {startup.error or 'connecting'}")


#: Each mounted API's state for ``/readyz``: "starting", "ok", or why its start failed.
ATTACHED: web.AppKey[dict[str, str]] = web.AppKey("attached", dict[str, str])

#: Work a mounted API starts once the hub is up; what it returns runs at shutdown.
Attach = Callable[["Hub"], Awaitable[Callable[[], Awaitable[None]] | None]]


def when_hub_ready(app: web.Application, name: str, attach: Attach) -> None:
    """Run ``attach(hub)`` as soon as the hub is up, and its returned closer at cleanup.

    Routes can be added at mount time, but background work (dispatchers, sweepers,
    command shapers) needs the hub, which may come up long after the listener does.
    """

    states = app.setdefault(ATTACHED, {})
    states[name] = "starting"

    async def context(app: web.Application) -> AsyncIterator[None]:
        detach: list[Callable[[], Awaitable[None]]] = []

        async def start() -> None:
            startup = app[STARTUP]
            await startup.ready.wait()
            assert startup.hub is not None
            backoff = Backoff(0.5, 10.0)
            while True:
                try:
                    closer = await attach(startup.hub)
                except Exception as error:
                    # Never a silent dead task: say what failed, and try again.
                    delay = backoff.next()
                    states[name] = f"failed to start: {type(error).__name__}: {error}"
                    log.exception("%s failed to start (retrying in %.1f s)", name, delay)
                    await asyncio.sleep(delay)
                    continue
                if closer is not None:
                    detach.append(closer)
                states[name] = "ok"
                return

        task = asyncio.create_task(start(), name=f"{name}-attach")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for closer in detach:
                try:
                    await closer()
                except Exception:  # shutting down regardless; say what failed
                    log.exception("%s did not stop cleanly", name)

    app.cleanup_ctx.append(context)


#: A caller's ``X-Request-Id`` (or device id) is logged when it is this short and printable.
MAX_REQUEST_ID = 128


@web.middleware
async def log_context_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Log lines written while a request is served carry its request id and device id.

    The request id is the caller's ``X-Request-Id`` (a proxy's, say) or a new one, and is
    sent back in the answer's ``X-Request-Id``. The device id is the path's
    ``{device_id}`` (native and DeviceHive routes) or the ``deviceId`` query parameter
    (the native device WebSocket, Control iD's push and result), as the caller claims it:
    a log line about a refused device names the id it was refused for.
    """
    request_id = _printable(request.headers.get("X-Request-Id")) or uuid.uuid4().hex
    device = _printable(request.match_info.get("device_id") or request.query.get("deviceId"))
    with logs.bind(request=request_id, device=device):
        response = await handler(request)
    if not response.prepared:  # a WebSocket has sent its headers already
        response.headers["X-Request-Id"] = request_id
    return response


def _printable(value: str | None) -> str | None:
    """``value`` when it is short and printable enough to put in a log line, else None."""
    if value and len(value) <= MAX_REQUEST_ID and value.isprintable():
        return value
    return None


# --- commands handed out over HTTP ---------------------------------------------------------


def still_connected(request: web.BaseRequest) -> Callable[[], bool]:
    """Whether the request's client is still there to be answered.

    aiohttp keeps running a handler whose client has gone (no handler cancellation), so
    a parked poll must ask before it claims a command for an answer nobody will read.
    """

    def present() -> bool:
        transport = request.transport
        return transport is not None and not transport.is_closing()

    return present


def client_left(request: web.BaseRequest, error: BaseException) -> bool:
    """Whether ``error`` is only the client having gone mid-request (nothing failed here).

    A device that disconnects while its request body is still arriving makes the body
    read raise ``ConnectionResetError``. Churning fleets do that all day (the P7 soak
    logged it every few minutes). The catch-all handlers must not log it as an unhandled
    error with a traceback, nor re-raise it (aiohttp would log it at ERROR too): they log
    one debug line and answer 400, which nobody reads. Only a reset *of this request's
    own connection* counts; one from elsewhere (a device's operation service, the bus)
    while the client is still there is a real fault and stays an error.
    """
    return isinstance(error, ConnectionResetError) and not still_connected(request)()


#: What the catch-alls answer a client that left mid-request (it never reads it).
CLIENT_LEFT = "the connection closed before the request body arrived"


class HandOut(web.Response):
    """An answer that carries commands to a device over HTTP.

    If it cannot be written because the connection is gone (before or while it is sent),
    the commands go back to the queue (:meth:`tether.hub.commands.Commands.hand_back`)
    instead of being lost; a device that gives up on a request gets them on its next one.
    Every HTTP transport that hands commands out answers with this.
    """

    def __init__(self, hub: Hub, device_id: str, commands: list[Command], **response: Any) -> None:
        super().__init__(**response)
        self._hub = hub
        self._device_id = device_id
        self._commands = commands

    async def _give_back(self) -> None:
        commands, self._commands = self._commands, []
        if commands:
            log.info(
                "the client of %s left before commands %s went out; they are re-offered",
                self._device_id,
                [command.id for command in commands],
            )
            await self._hub.commands.hand_back(self._device_id, commands)

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if not still_connected(request)():
            await self._give_back()
        try:
            return await super().prepare(request)
        except ConnectionError:
            await self._give_back()
            raise

    async def write_eof(self, data: bytes = b"") -> None:
        try:
            await super().write_eof(data)
        except ConnectionError:
            await self._give_back()
            raise
