"""Control iD Push dialect: access terminals that poll ``GET /push`` and post ``/result``.

Terminals (iDAccess, iDFace, iDFlex, iDBlock) are core devices of dialect ``controlid``
whose id is the terminal's ``deviceId`` in decimal. Commands queued for them go out one at
a time on their polls (:mod:`.routes`), shaped and validated on creation
(:mod:`.shaper`); results complete them; lost ones are timed out and, if idempotent,
re-queued (:mod:`.requeue`); Monitor events become notifications. The emulated terminal
is :mod:`.agent` (``tether agent controlid``). See ``docs/dialects/controlid.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from tether.settings import Settings

__all__ = ["mount"]


def _startup(app: web.Application) -> Any:
    """The application's start-up record (``tether.api.http.Startup``), found by shape.

    Dialects may not import ``tether.api`` (import-linter's layers), so the key is not
    importable here; the record is the one value with a ``ready`` event and a ``hub``.
    """
    for value in app.values():
        if isinstance(getattr(value, "ready", None), asyncio.Event) and hasattr(value, "hub"):
            return value
    raise RuntimeError("the application has no start-up record")


def mount(app: web.Application, settings: Settings) -> None:
    """Add the routes (if enabled); once the hub is up, the shaper and background work."""
    if not settings.controlid.enabled:
        return
    from tether.dialects.controlid.requeue import Requeuer
    from tether.dialects.controlid.routes import STATE, State, add_routes, expire_lost
    from tether.dialects.controlid.shaper import make_shaper
    from tether.dialects.controlid.terminals import DIALECT, Terminals

    state = State(settings.controlid)
    app[STATE] = state
    add_routes(app, state)

    async def attach(app: web.Application) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []

        async def when_ready() -> None:
            startup = _startup(app)
            await startup.ready.wait()
            hub = startup.hub
            hub.commands.shapers[DIALECT] = make_shaper(settings.controlid.max_binary_bytes)
            terminals = Terminals(hub, settings.controlid)
            state.terminals = terminals
            tasks.append(asyncio.create_task(expire_lost(terminals), name="controlid-timeouts"))
            tasks.append(
                asyncio.create_task(
                    Requeuer(hub, settings.controlid).run(), name="controlid-requeue"
                )
            )

        tasks.append(asyncio.create_task(when_ready(), name="controlid-attach"))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(attach)
