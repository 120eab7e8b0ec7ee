"""The terminal-facing HTTP endpoints: ``GET */push``, ``POST */result``, Monitor events.

Every answer to a terminal is an empty 200 unless it carries a command: the firmware
treats any body on ``/result`` or Monitor as noise and any non-empty ``/push`` body as a
command, so problems are logged here, not told to the terminal (reference A.5, A.6, A.10).
The exceptions come before any device is looked up: a source outside
``allowed_networks`` gets 403, a path without the configured secret gets 404 (so a scanner
learns nothing), and a malformed ``deviceId`` or ``uuid`` gets 400 on ``/push`` and
``/result`` alike. A well-formed id that is not a Control iD device gets the empty 200 of
"nothing to do" (logged once per id), so it cannot tell unknown ids from idle ones.

The poll path costs no SQL when nothing is due: the device comes from the directory
cache, presence is in memory, and :meth:`Delivery.poll` answers from the command index.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from cachetools import FIFOCache

from tether.core.errors import TetherError
from tether.core.lifecycle import TERMINAL, CommandState
from tether.core.model import Command, Device
from tether.dialects.controlid import codec
from tether.dialects.controlid.shaper import LINK_KEYS
from tether.dialects.controlid.terminals import Handed, Terminals
from tether.settings.controlid import ControlIdSettings
from tether.web import still_connected

log = logging.getLogger("tether.controlid")

#: Most ``dao`` insert keys remembered for de-duplication.
DAO_SEEN_CAP = 100_000


def empty(status: int = 200) -> web.Response:
    return web.Response(status=status, body=b"")


@dataclass
class State:
    """What the handlers need; set once the hub is up (None answers 503 meanwhile)."""

    settings: ControlIdSettings
    terminals: Terminals | None = None


STATE = web.AppKey("controlid", State)


class Gate:
    """The two checks made before anything else: source network and path secret."""

    def __init__(self, settings: ControlIdSettings) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in settings.allowed_networks]
        secret = settings.path_secret
        self.secret = secret.get_secret_value().encode() if secret is not None else None

    def source_allowed(self, request: web.Request) -> bool:
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(request.remote or "")
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def secret_ok(self, base: str) -> bool:
        if self.secret is None:
            return True
        found = False
        for segment in base.split("/"):
            # Compared in constant time, every segment, so timing does not reveal it.
            found |= hmac.compare_digest(segment.encode(), self.secret)
        return found


def _source(request: web.Request) -> str:
    return request.remote or "?"


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The body, or None (logged) when it exceeds ``limit``; never buffers more."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


class Handlers:
    def __init__(self, state: State) -> None:
        self.state = state
        self.gate = Gate(state.settings)
        self._dao_seen: FIFOCache[tuple[str, str, str], None] = FIFOCache(maxsize=DAO_SEEN_CAP)

    def _ready(self) -> Terminals | None:
        return self.state.terminals

    async def _identify(
        self, request: web.Request, what: str
    ) -> tuple[Terminals, Device, str | None] | web.Response:
        """Gate, parse ``deviceId``/``uuid`` and find the device; or the answer to give."""
        if not self.gate.source_allowed(request):
            log.warning("controlid %s refused: source %s not allowed", what, _source(request))
            return empty(403)
        base = request.match_info.get("base", "")
        if not self.gate.secret_ok(base):
            log.warning("controlid %s refused: wrong path secret from %s", what, _source(request))
            return empty(404)
        terminals = self._ready()
        if terminals is None:
            return empty(503)
        try:
            device_id = codec.parse_device_id(request.query.get("deviceId"))
            uuid = codec.parse_uuid(request.query.get("uuid"))
        except codec.CodecError as error:
            log.warning("controlid %s from %s ignored: %s", what, _source(request), error)
            return empty(400)
        device = await terminals.lookup(device_id, what, _source(request))
        if device is None:
            return empty()
        return terminals, device, uuid

    # --- GET /push --------------------------------------------------------------------

    async def push(self, request: web.Request) -> web.StreamResponse:
        found = await self._identify(request, "push")
        if isinstance(found, web.Response):
            return found
        terminals, device, uuid = found
        hub = terminals.hub
        if device.blocked:
            return empty()
        options = terminals.options(device)
        hold = options.hold
        hub.presence.activity(device.id, timeout=terminals.presence_timeout(options))
        if not hold and not hub.index.has_deliverable(device.id):
            return empty()  # the common case, answered from the in-memory index
        try:
            commands = await hub.delivery.poll(
                device.id, limit=1, max_in_flight=1, wait=hold, present=still_connected(request)
            )
        except TetherError as error:
            log.warning("controlid push for %s not served: %s", device.id, error)
            return empty(503)
        if not commands:
            return empty()
        return await self._hand_out(request, terminals, device, commands[0], uuid)

    async def _hand_out(
        self,
        request: web.Request,
        terminals: Terminals,
        device: Device,
        command: Command,
        uuid: str | None,
    ) -> web.StreamResponse:
        hub = terminals.hub
        options = terminals.options(device)
        parameters = command.parameters if isinstance(command.parameters, dict) else None
        problem = None
        if parameters is None or not (
            "endpoint" in parameters or isinstance(parameters.get("transactions"), list)
        ):
            problem = "not a Control iD command (no endpoint); create it through the shaper"
        elif "transactions" in parameters and not options.transactions:
            problem = "transactions batches are disabled for this terminal"
        if problem is not None or parameters is None:
            log.warning("controlid command %s for %s failed: %s", command.id, device.id, problem)
            await hub.commands.complete(device, command.id, success=False, error=problem)
            return empty()
        if not still_connected(request)():
            # Left while the command was being claimed: it goes back to the queue.
            await hub.commands.hand_back(device.id, [command])
            return empty()
        ref = uuid or f"tether-{command.id}"
        current = await hub.commands.progress(
            device, command.id, status="handed to the terminal", ref=ref
        )
        if current.state in TERMINAL:
            log.debug("controlid command %s was %s before hand-out", command.id, current.state)
            return empty()
        deadline = time.monotonic() + options.result_timeout
        terminals.outstanding[device.id] = Handed(command.id, ref, uuid is not None, deadline)
        envelope = codec.push_body(
            {k: v for k, v in parameters.items() if k not in LINK_KEYS},
            body_as_string=options.body_as_string,
        )
        log.debug(
            "controlid command %s %s handed to %s (uuid %s)",
            command.id,
            envelope.get("endpoint", "transactions"),
            device.id,
            ref,
        )
        if request.transport is None or request.transport.is_closing():
            log.warning(
                "controlid terminal %s left before command %s went out; it times out "
                "and is re-queued only if idempotent",
                device.id,
                command.id,
            )
        return web.Response(body=codec.encode_push(envelope), content_type=codec.JSON)

    # --- POST /result -----------------------------------------------------------------

    async def result(self, request: web.Request) -> web.StreamResponse:
        found = await self._identify(request, "result")
        if isinstance(found, web.Response):
            return found  # a malformed deviceId is 400, as on /push
        terminals, device, uuid = found
        hub = terminals.hub
        hub.presence.activity(device.id)
        body = await _read_capped(request, terminals.settings.max_body_bytes)
        if body is None:
            log.warning("controlid result from %s dropped: body over the size limit", device.id)
            return empty()
        refused: codec.RefusedBody | None = None
        try:
            parsed: codec.Result | None = codec.parse_result(body, request.content_type)
        except codec.RefusedBody as error:
            log.warning("controlid result from %s refused: %s", device.id, error)
            parsed, refused = None, error
        except codec.CodecError as error:
            log.warning(
                "controlid result from %s unreadable (%s): %r", device.id, error, body[:200]
            )
            parsed = None
        uuid = uuid or (parsed.uuid if parsed else None)
        command_id = await self._correlate(terminals, device, uuid)
        if refused is not None:
            # The terminal answered, with content no store can keep: the command fails
            # with that reason rather than waiting for a timeout, and the terminal is told.
            parsed = codec.Result(False, None, f"the terminal's result was refused: {refused}")
            if command_id is None:
                return empty(400)
        if command_id is None:
            return empty()
        if parsed is None:
            return empty()  # garbage never completes a command; it times out instead
        handed = terminals.outstanding.get(device.id)
        try:
            command = await hub.commands.complete(
                device,
                command_id,
                success=parsed.success,
                result=parsed.value,
                error=parsed.error,
            )
        except TetherError as error:
            log.warning("controlid result for command %s not stored: %s", command_id, error)
            return empty(503)
        if handed is not None and handed.command_id == command_id:
            del terminals.outstanding[device.id]
        log.debug("controlid command %s of %s -> %s", command_id, device.id, command.state)
        return empty(400 if refused is not None else 200)

    async def _correlate(
        self, terminals: Terminals, device: Device, uuid: str | None
    ) -> int | None:
        handed = terminals.outstanding.get(device.id)
        if uuid is not None:
            if handed is not None and handed.uuid == uuid:
                return handed.command_id
            command = await terminals.hub.commands.by_ref(device.id, uuid)
            if command is not None:
                if command.state in TERMINAL:
                    log.debug(
                        "controlid duplicate result for command %s (%s) from %s ignored",
                        command.id,
                        command.state,
                        device.id,
                    )
                    return None
                return command.id
            strict = terminals.settings.strict_uuid and (handed is None or handed.from_device)
            if strict:
                log.warning(
                    "controlid result from %s with unknown uuid %s ignored", device.id, uuid
                )
                return None
        if handed is not None:
            return handed.command_id
        log.warning("controlid result from %s matches no outstanding command", device.id)
        return None

    # --- Monitor ----------------------------------------------------------------------

    async def monitor(self, request: web.Request) -> web.StreamResponse:
        topic = request.match_info.get("topic", "")
        if not self.gate.source_allowed(request):
            log.warning("controlid monitor refused: source %s not allowed", _source(request))
            return empty(403)
        terminals = self._ready()
        if terminals is None:
            return empty(503)
        if not codec.TOPIC.fullmatch(topic):
            log.warning("controlid monitor topic %r from %s ignored", topic[:64], _source(request))
            return empty()
        body = await _read_capped(request, terminals.settings.max_body_bytes)
        if body is None:
            log.warning("controlid monitor %s from %s dropped: too large", topic, _source(request))
            return empty()
        try:
            event = codec.parse_monitor(body, request.content_type)
        except codec.CodecError as error:
            log.warning(
                "controlid monitor %s from %s unreadable: %s", topic, _source(request), error
            )
            return empty(400 if isinstance(error, codec.RefusedBody) else 200)
        device_id = event.device_id
        if device_id is None:
            try:
                device_id = codec.parse_device_id(request.query.get("deviceId"))
            except codec.CodecError:
                log.warning("controlid monitor %s from %s names no device", topic, _source(request))
                return empty()
        device = await terminals.lookup(device_id, "monitor", _source(request))
        if device is None or device.blocked:
            return empty()
        hub = terminals.hub
        hub.presence.activity(device.id)
        if topic == "device_is_alive" and not terminals.settings.alive_notifications:
            return empty()
        if topic == "dao" and self._repeated_dao(event.payload, device.id):
            log.debug("controlid repeated dao insert from %s dropped", device.id)
            return empty()
        timestamp = None
        if event.time is not None:
            timestamp = datetime.fromtimestamp(event.time, UTC)
        try:
            await hub.notifications.post_as_device(device, topic, event.payload, timestamp)
        except TetherError as error:
            log.warning("controlid monitor %s of %s not stored: %s", topic, device.id, error)
            return empty(503)
        return empty()

    def _repeated_dao(self, payload: Any, device_id: str) -> bool:
        keys = codec.dao_keys(payload, device_id)
        if not keys:
            return False
        seen = self._dao_seen
        if all(key in seen for key in keys):
            return True
        for key in keys:
            seen[key] = None
        return False


def add_routes(app: web.Application, state: State) -> Handlers:
    """``<prefix>[/<base>]/push``, ``.../result`` and ``<monitor_path>/{topic}``."""
    settings = state.settings
    handlers = Handlers(state)
    prefix = "/" + settings.path_prefix.strip("/") if settings.path_prefix.strip("/") else ""
    # The base a terminal was given may add up to four segments (a tenant secret, say),
    # but never reaches into the native API's /api/v1 space.
    base = r"{base:(?!api/v\d)[^/]+(?:/[^/]+){0,3}}"
    for path in (prefix, prefix + "/" + base):
        app.router.add_route("GET", path + "/push", handlers.push)
        app.router.add_route("POST", path + "/result", handlers.result)
    monitor = "/" + settings.monitor_path.strip("/")
    app.router.add_route("POST", monitor.rstrip("/") + "/{topic}", handlers.monitor)
    return handlers


async def expire_lost(terminals: Terminals, interval: float = 1.0) -> None:
    """Time out commands handed out whose result never came (reference A.7).

    The terminal cannot tell us it lost a command, and we cannot tell a lost answer from
    a slow one; after the result deadline the command is ``timed_out`` (the requeuer then
    decides whether it may run again).
    """
    while True:
        await asyncio.sleep(interval)
        now = time.monotonic()
        for device_id, handed in list(terminals.outstanding.items()):
            if handed.deadline > now:
                continue
            if terminals.outstanding.get(device_id) is handed:
                del terminals.outstanding[device_id]
            state = terminals.hub.index.state(handed.command_id)
            if state is None or state is CommandState.PENDING:
                continue  # finished meanwhile (or the index does not know it)
            log.warning(
                "controlid command %s of %s: no result within the timeout",
                handed.command_id,
                device_id,
            )
            try:
                await terminals.hub.commands.fire_deadline(handed.command_id, expired=False)
            except Exception:
                log.exception("controlid timeout of command %s failed", handed.command_id)
