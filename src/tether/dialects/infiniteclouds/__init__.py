"""InfiniteClouds (GWC / Elemprin) keepalive dialect: the cloud side and the device agent.

Devices register and keep alive on ``POST /v1/device/registration`` (``statusType``
selects the message) and fetch ``/v1/device/config`` and ``/v1/device/firmware``; see
``docs/dialects/infiniteclouds.md`` for what is documented and what is Tether's
completion. The device side is :mod:`.agent` (``tether agent keepalive``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from tether.settings import Settings

__all__ = ["mount"]


def mount(app: web.Application, settings: Settings, startup: Callable[[], Any]) -> None:
    """Add the routes (if enabled) and, once the hub is up, the command shaper.

    ``startup`` returns the application's start-up record (``hub``, ``ready``).
    """
    if not settings.infiniteclouds.enabled:
        return
    from tether.dialects.infiniteclouds.cloud import DIALECT, Cloud, shape
    from tether.dialects.infiniteclouds.routes import CLOUD, add_routes

    add_routes(app, startup)

    async def attach(app: web.Application) -> AsyncIterator[None]:
        record = startup()
        slot = app[CLOUD]

        async def when_ready() -> None:
            await record.ready.wait()
            hub = record.hub
            if hub is not None and slot.cloud is None:
                slot.cloud = Cloud(hub, settings.infiniteclouds)
            if hub is not None:
                hub.commands.shapers[DIALECT] = shape

        task = asyncio.create_task(when_ready(), name="infiniteclouds-attach")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(attach)
