"""InfiniteClouds registration: who gets a device token, and how many strangers may ask.

The protocol authenticates nothing at registration: a device names its MAC (and a
``machineId``) and, once an admin has assigned that MAC, the cloud answers with a token.
Taken literally, anyone who knows an assigned MAC gets that device's token, its commands
and the right to post its results. Two guards close that, and two bound what anonymous
callers can make the server store:

* **Continuity.** Re-registering an *assigned* device must prove it is the device that
  registered before (``reregister_proof``): a token this server issued to that device
  (expired up to ``reregister_token_grace`` ago, since devices register again *because*
  the token expired), or the ``machineId`` stored for it. A registration that proves
  neither is answered exactly like an unassigned one (no token), is logged, records
  nothing, and counts against its source's rate.
* **Trust on first use.** A device with no stored ``machineId`` (pre-created by an admin,
  or one that never sent it) has nothing to compare against: the first registration
  that brings one pins it. Before assignment, the latest registration's ``machineId``
  is recorded, so an admin should assign a device when its record shows the real one.
* **Caps.** A registration that would create a device is refused with 429 when
  ``max_unassigned`` devices already wait for assignment, or when its source address has
  spent ``registration_rate`` creations or failed proofs in the current
  ``registration_window``. Known devices re-registering are never capped, so a flood
  leaves every existing device working.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache

from tether.core.errors import Conflict, DeviceBlocked, TooManyRequests, Unauthorized
from tether.core.model import Device
from tether.dialects.infiniteclouds import codec

if TYPE_CHECKING:
    from tether.core.clock import Clock
    from tether.dialects.infiniteclouds.cloud import Cloud

log = logging.getLogger("tether.infiniteclouds")

#: Most source addresses whose registration rate is tracked; the oldest are forgotten.
MAX_SOURCES = 100_000
#: At most one "cap reached" warning per this many seconds (a flood must not flood the log).
CAP_WARNING_EVERY = 60.0

Data = dict[str, Any]


@dataclass
class _Window:
    started: float
    spent: int = 0


class SourceRate:
    """At most ``limit`` events per source address in a fixed window of ``window`` s."""

    def __init__(self, clock: Clock, *, limit: int, window: float) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        # An entry expires ``window`` seconds after it was created (mutating it in place
        # does not renew it), which is exactly the end of its window.
        self._sources: TTLCache[str, _Window] = TTLCache(
            maxsize=MAX_SOURCES, ttl=window, timer=clock.monotonic
        )

    def spend(self, source: str) -> None:
        """Count one event for ``source``; :class:`TooManyRequests` past the limit."""
        entry = self._sources.get(source)
        if entry is None:
            entry = self._sources[source] = _Window(started=self._clock.monotonic())
        if entry.spent >= self._limit:
            left = entry.started + self._window - self._clock.monotonic()
            raise TooManyRequests("Too many registrations from this address", retry_after=left)
        entry.spent += 1


class Registrar:
    """Answers registrations for one :class:`Cloud` (see the module docstring)."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.hub = cloud.hub
        self.settings = cloud.settings
        self._rate = SourceRate(
            self.hub.clock,
            limit=self.settings.registration_rate,
            window=self.settings.registration_window,
        )
        # Count-then-create is one step per process, so concurrent registrations cannot
        # overshoot ``max_unassigned``. Only creations take it: known devices never wait.
        self._creating = asyncio.Lock()
        self._cap_warned_at = -CAP_WARNING_EVERY

    async def register(
        self, body: dict[str, Any], *, source: str, authorization: str | None
    ) -> tuple[Data, str]:
        mac = codec.normal_mac(codec.text(body, "macAddress", limit=32))
        device_id = codec.device_id_for(mac)
        facts = self.cloud.facts(body)
        facts["macAddress"] = mac
        interfaces = codec.field(body, "interfaces")
        if isinstance(interfaces, list):
            facts["interfaces"] = interfaces
        device = await self.hub.directory.device(device_id)
        created = False
        if device is None:
            device, created = await self._create(device_id, mac, facts, source)
        if device.dialect != codec.DIALECT:
            raise Conflict(f"device {device_id} exists and is not an InfiniteClouds device")
        unassigned = {"assigned": False, "deviceId": device_id}
        if device.owner_id is None:
            if not created:
                device = await self.cloud.record(device, facts)
            if device.blocked:
                raise DeviceBlocked("Device is blocked")
            if created:
                return unassigned, "Device registered, waiting for assignment"
            return unassigned, "Device is not assigned yet"
        if not self._proven(device, body, authorization):
            # The same answer as for an unassigned device: a stranger learns nothing, and
            # a real device that lost its proof keeps registering until an admin acts.
            self._rate.spend(source)
            log.warning(
                "registration of assigned device %s from %s proved no continuity "
                "(reregister_proof=%s): answered as unassigned, nothing recorded",
                device_id,
                source,
                self.settings.reregister_proof,
            )
            return unassigned, "Device is not assigned yet"
        # Marks the device as one that has held a token: from then on, in the ``token``
        # mode, only a token proves continuity (one write, the first time).
        device = await self.cloud.record(device, {**facts, "tokenIssued": True})
        if device.blocked:
            raise DeviceBlocked("Device is blocked")
        return self._token_answer(device, mac), "Device is already exists with same mac address"

    async def _create(
        self, device_id: str, mac: str, facts: dict[str, Any], source: str
    ) -> tuple[Device, bool]:
        self._rate.spend(source)
        async with self._creating:
            # Another registration of the same MAC may have created it while this waited.
            device = await self.hub.directory.device(device_id)
            if device is not None:
                return device, False
            waiting = await self.hub.store.devices.count_unowned(codec.DIALECT)
            if waiting >= self.settings.max_unassigned:
                self._warn_cap(waiting)
                raise TooManyRequests(
                    "Too many devices waiting for assignment",
                    retry_after=self.settings.registration_window,
                )
            kind = facts.get("deviceType") or "CE"
            try:
                device = await self.hub.directory.create_device(
                    self.cloud.service,
                    id=device_id,
                    name=f"{kind} {mac}",
                    dialect=codec.DIALECT,
                    attributes=facts,
                )
                return device, True
            except Conflict:  # created concurrently by another node
                device = await self.hub.directory.device(device_id)
                if device is None:
                    raise
                return device, False

    def _warn_cap(self, waiting: int) -> None:
        now = self.hub.clock.monotonic()
        if now - self._cap_warned_at >= CAP_WARNING_EVERY:
            self._cap_warned_at = now
            log.warning(
                "%d InfiniteClouds devices wait for assignment (max_unassigned=%d): "
                "refusing new registrations until some are assigned or deleted",
                waiting,
                self.settings.max_unassigned,
            )

    def _proven(self, device: Device, body: dict[str, Any], authorization: str | None) -> bool:
        """Whether this registration shows it comes from the device registered before."""
        mode = self.settings.reregister_proof
        if mode == "none":
            return True
        if authorization is not None and self._token_proves(device, authorization):
            return True
        if mode == "token" and device.attributes.get("tokenIssued"):
            return False
        stored = device.attributes.get("machineId")
        claimed = codec.text(body, "machineId")
        if claimed is None:
            return False
        if not isinstance(stored, str):
            return True  # trust on first use: this registration pins it
        return hmac.compare_digest(stored.encode(), claimed.encode())

    def _token_proves(self, device: Device, authorization: str) -> bool:
        try:
            token = codec.verify_token(
                self.cloud.token_key,
                codec.bearer(authorization),
                now=int(self.hub.clock.now().timestamp()),
                audience=self.settings.token_audience,
                issuer=self.settings.token_issuer,
                grace=self.settings.reregister_token_grace,
            )
        except Unauthorized:
            return False
        # Any owner: a device re-assigned since still is the device that held the token.
        return token.device_id == device.id and token.mac == device.attributes.get("macAddress")

    def _token_answer(self, device: Device, mac: str) -> Data:
        assert device.owner_id is not None
        ttl = self.settings.token_ttl
        token = codec.issue_token(
            self.cloud.token_key,
            codec.DeviceToken(device.id, mac, device.owner_id),
            now=int(self.hub.clock.now().timestamp()),
            ttl=ttl,
            audience=self.settings.token_audience,
            issuer=self.settings.token_issuer,
        )
        return {
            "assigned": True,
            "authToken": token,
            "deviceId": device.id,
            "tokenExpiry": str(ttl),
            "type": "Bearer",
        }
