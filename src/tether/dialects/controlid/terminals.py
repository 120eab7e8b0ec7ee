"""Per-node state of the terminals this process serves: who they are, what is outstanding.

Kept apart from the routes so the poll path stays a handful of dict lookups:

* :class:`Terminals` resolves a ``deviceId`` to a core device through the hub's directory
  cache, and remembers unknown ids for a while, so a flood of polls from unregistered (or
  forged) ids costs no SQL after the first one per id and logs once per interval.
* :class:`Outstanding` is the command handed to each terminal and not yet answered, with
  the uuid it went out under and its result deadline. The core enforces "at most one in
  flight" (the poll asks for ``max_in_flight=1``); this map only speeds up correlation
  and drives the lost-result timer. After a restart it is empty, and correlation falls
  back to the command's stored ``ref``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from cachetools import LRUCache, TTLCache

from tether.core.access import ALL_ACTIONS, Principal, PrincipalKind
from tether.core.errors import TetherError
from tether.core.model import Device, Role
from tether.hub.service import Hub
from tether.settings.controlid import ControlIdSettings

log = logging.getLogger("tether.controlid")

DIALECT = "controlid"

#: The dialect acts for the server itself when it registers terminals or re-queues.
SYSTEM = Principal(kind=PrincipalKind.USER, actions=ALL_ACTIONS, role=Role.ADMIN)

#: An unknown deviceId is looked up (and logged) at most once per UNKNOWN_TTL seconds;
#: at most UNKNOWN_CAP of them are remembered.
UNKNOWN_TTL = 30.0
UNKNOWN_CAP = 100_000
#: Parsed options of this many devices are kept (least recently used forgotten first).
OPTIONS_CAP = 200_000


@dataclass
class Handed:
    command_id: int
    uuid: str
    #: True when the terminal sent the uuid (False: generated here, older firmware).
    from_device: bool
    deadline: float


@dataclass(frozen=True)
class Options:
    """A terminal's effective per-device options (attributes over settings defaults)."""

    push_request_timeout: float  # seconds
    long_poll: float
    body_as_string: bool
    transactions: bool
    result_timeout: float
    #: Seconds an empty poll may be held (see :func:`hold_for`).
    hold: float = 0.0


def options_of(device: Device, settings: ControlIdSettings) -> Options:
    attributes = device.attributes or {}

    def number(key: str, default: float) -> float:
        value = attributes.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return default
        try:
            parsed = float(value)
        except ValueError:
            return default
        return parsed if parsed >= 0 else default

    def flag(key: str, default: bool) -> bool:
        value = attributes.get(key, default)
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)

    options = Options(
        push_request_timeout=number("push_request_timeout", settings.default_push_request_timeout)
        / 1000,
        long_poll=number("long_poll", settings.default_long_poll),
        body_as_string=flag("body_as_string", settings.default_body_as_string),
        transactions=flag("transactions", settings.default_transactions),
        result_timeout=number("result_timeout", settings.result_timeout) or settings.result_timeout,
    )
    return replace(options, hold=hold_for(options, settings.long_poll_margin))


def hold_for(options: Options, margin: float) -> float:
    """How long an empty poll may be held: never past the terminal's own timeout."""
    return max(0.0, min(options.long_poll, options.push_request_timeout - margin))


class Terminals:
    def __init__(self, hub: Hub, settings: ControlIdSettings) -> None:
        self.hub = hub
        self.settings = settings
        self.outstanding: dict[str, Handed] = {}
        self._unknown: TTLCache[str, bool] = TTLCache(
            maxsize=UNKNOWN_CAP, ttl=UNKNOWN_TTL, timer=time.monotonic
        )
        self._options: LRUCache[str, tuple[Device, Options]] = LRUCache(maxsize=OPTIONS_CAP)

    def options(self, device: Device) -> Options:
        cached = self._options.get(device.id)
        if cached is not None and cached[0] is device:
            return cached[1]
        options = options_of(device, self.settings)
        self._options[device.id] = (device, options)
        return options

    def presence_timeout(self, options: Options) -> float:
        """Silence after which a polling terminal is offline: at least three of its
        request timeouts, never less than the server's presence timeout."""
        return max(self.hub.settings.presence_timeout, 3 * options.push_request_timeout)

    async def lookup(self, device_id: str, what: str, source: str) -> Device | None:
        """The registered Control iD device, or None (logged, rate-limited per id)."""
        if device_id in self._unknown:
            return None
        device = await self.hub.directory.device(device_id)
        if device is not None and device.dialect == DIALECT:
            self._unknown.pop(device_id, None)
            return device
        if device is None and self.settings.auto_register and what == "push":
            registered = await self._register(device_id)
            if registered is not None:
                return registered
        reason = "unknown deviceId" if device is None else f"device of dialect {device.dialect}"
        log.warning("controlid %s from %s: %s %s ignored", what, source, reason, device_id)
        self._unknown[device_id] = True
        return None

    async def _register(self, device_id: str) -> Device | None:
        try:
            device = await self.hub.directory.create_device(
                SYSTEM,
                id=device_id,
                name=f"Control iD {device_id}",
                dialect=DIALECT,
                network_id=self.settings.auto_register_network_id,
                attributes={},
            )
        except TetherError as error:
            log.warning("controlid auto-registration of %s failed: %s", device_id, error)
            return await self.hub.directory.device(device_id)
        log.info("controlid terminal %s auto-registered", device_id)
        return device
