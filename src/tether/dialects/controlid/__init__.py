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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from tether.settings import Settings
from tether.web import when_hub_ready

if TYPE_CHECKING:
    from tether.hub.service import Hub

__all__ = ["mount"]


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

    async def attach(hub: Hub) -> Callable[[], Awaitable[None]]:
        hub.commands.shapers[DIALECT] = make_shaper(settings.controlid.max_binary_bytes)
        terminals = Terminals(hub, settings.controlid)
        state.terminals = terminals
        tasks = [
            asyncio.create_task(expire_lost(terminals), name="controlid-timeouts"),
            asyncio.create_task(Requeuer(hub, settings.controlid).run(), name="controlid-requeue"),
        ]

        async def detach() -> None:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        return detach

    when_hub_ready(app, "controlid", attach)
