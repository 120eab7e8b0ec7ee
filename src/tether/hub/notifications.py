"""Notifications from devices: a batched writer, queries, and retention.

Posting enqueues into one bounded queue; a single writer task drains everything waiting
into one multi-row insert, then publishes. Under load, batches grow by themselves (the
next batch accumulates while the current one is written); when idle, a lone notification
is written at once, so there is no artificial delay. A caller is answered only after its
row committed. When the queue is full, posting is refused with ``Overloaded`` rather than
buffering without bound. A batch that fails is split and written again, so a row the
store refuses fails only its own poster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tether.core.access import Action, Principal, require, require_device
from tether.core.errors import DeviceBlocked, Overloaded, TetherError, Unavailable
from tether.core.model import Device, Notification
from tether.hub import metrics
from tether.hub.commands import validate_name
from tether.hub.events import DeviceRef
from tether.store import NewNotification

if TYPE_CHECKING:
    from tether.hub.service import Hub

log = logging.getLogger("tether.notifications")

_Pending = tuple[NewNotification, DeviceRef, "asyncio.Future[Notification]"]


class Notifications:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(hub.settings.notification_queue_size)
        self._writer: asyncio.Task[None] | None = None

    async def post(
        self,
        principal: Principal,
        device_id: str,
        name: str,
        parameters: Any = None,
        timestamp: datetime | None = None,
    ) -> Notification:
        """Store a notification for the device and fan it out; returns it with its id."""
        hub = self._hub
        require(principal, Action.CREATE_DEVICE_NOTIFICATION)
        device = require_device(
            principal,
            Action.CREATE_DEVICE_NOTIFICATION,
            await hub.directory.device(device_id),
            device_id,
        )
        return await self.post_as_device(device, name, parameters, timestamp)

    async def post_as_device(
        self, device: Device, name: str, parameters: Any = None, timestamp: datetime | None = None
    ) -> Notification:
        """:meth:`post` for a caller already authenticated as (or for) ``device``."""
        if device.blocked:
            raise DeviceBlocked(f"device {device.id!r} is blocked", device_id=device.id)
        validate_name(name, "notification")
        hub = self._hub
        row = NewNotification(
            device_id=device.id,
            name=name,
            parameters=parameters,
            timestamp=timestamp or hub.clock.now(),
        )
        done: asyncio.Future[Notification] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((row, DeviceRef.of(device), done))
        except asyncio.QueueFull:
            raise Overloaded("too many notifications waiting to be stored; retry") from None
        return await done

    async def list_notifications(
        self, principal: Principal, *, device_id: str | None = None, **filters: Any
    ) -> list[Notification]:
        hub = self._hub
        require(principal, Action.GET_DEVICE_NOTIFICATION)
        if device_id is not None:
            require_device(
                principal,
                Action.GET_DEVICE_NOTIFICATION,
                await hub.directory.device(device_id),
                device_id,
            )
        return await hub.store.notifications.list(
            device_id=device_id, principal=principal, **filters
        )

    async def get(self, principal: Principal, notification_id: int) -> Notification | None:
        hub = self._hub
        require(principal, Action.GET_DEVICE_NOTIFICATION)
        found = await hub.store.notifications.get(notification_id)
        if found is None:
            return None
        require_device(
            principal,
            Action.GET_DEVICE_NOTIFICATION,
            await hub.directory.device(found.device_id),
            found.device_id,
        )
        return found

    # --- the writer ----------------------------------------------------------------------

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_forever(), name="tether-notify")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._writer is None:
            return
        await self._queue.join()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = None

    async def _write_forever(self) -> None:
        limit = self._hub.settings.notification_batch_size
        while True:
            batch = [await self._queue.get()]
            while len(batch) < limit:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[_Pending]) -> None:
        """One multi-row insert; if it fails, each half again, down to single rows, so a
        row the store refuses fails only its own poster (as with the command writer) and
        finding it costs a few inserts, not one per row of the batch."""
        hub = self._hub
        try:
            stored = await hub.store.notifications.insert_many([row for row, _, _ in batch])
        except Exception as error:
            if len(batch) > 1:
                half = len(batch) // 2
                await self._write(batch[:half])
                await self._write(batch[half:])
                return
            done = batch[0][2]
            if isinstance(error, TetherError) and error.status < 500:
                log.warning("a notification of %s was refused: %s", batch[0][1].id, error)
            else:
                log.exception("storing a notification failed")
            if not isinstance(error, TetherError):
                error = Unavailable("the notification could not be stored; retry")
            if not done.done():
                done.set_exception(error)
            return
        metrics.NOTIFICATIONS_STORED.inc(len(stored))
        metrics.NOTIFICATION_BATCH.observe(len(stored))
        for notification, (_, device, done) in zip(stored, batch, strict=True):
            await hub.notification_posted(notification, device)
            if not done.done():
                done.set_result(notification)

    async def prune(self) -> int:
        hub = self._hub
        settings = hub.settings
        cutoff = hub.clock.now() - timedelta(days=settings.notification_retention_days)
        return await hub.store.notifications.prune(
            older_than=cutoff, keep_per_device=settings.notification_retention_count
        )
