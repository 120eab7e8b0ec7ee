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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from tether.core.errors import Unavailable

if TYPE_CHECKING:  # the device agents import their dialect without the hub
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


#: Work a mounted API starts once the hub is up; what it returns runs at shutdown.
Attach = Callable[["Hub"], Awaitable[Callable[[], Awaitable[None]] | None]]


def when_hub_ready(app: web.Application, name: str, attach: Attach) -> None:
    """Run ``attach(hub)`` as soon as the hub is up, and its returned closer at cleanup.

    Routes can be added at mount time, but background work (dispatchers, sweepers,
    command shapers) needs the hub, which may come up long after the listener does.
    """

    async def context(app: web.Application) -> AsyncIterator[None]:
        detach: list[Callable[[], Awaitable[None]]] = []

        async def start() -> None:
            startup = app[STARTUP]
            await startup.ready.wait()
            assert startup.hub is not None
            delay = 0.5
            while True:
                try:
                    closer = await attach(startup.hub)
                except Exception:
                    # Never a silent dead task: say what failed, and try again.
                    log.exception("%s failed to start (retrying in %.1f s)", name, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                if closer is not None:
                    detach.append(closer)
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
