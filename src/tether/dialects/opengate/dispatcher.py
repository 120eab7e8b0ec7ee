"""Platform-driven delivery: POST each pending operation to the device's own HTTP service.

Fed by the hub's command events (every node sees every new command), it claims a command
with ``hub.dialect_state.put_if_absent`` so exactly one node of a cluster dispatches it,
then walks the core lifecycle: hand-over (``sent``), the device's 2xx (``delivered``), and
a synchronous response in the reply (steps, result). Connection errors, timeouts and 5xx
are retried with exponential backoff until the command's ``expires_at``; past it the
command fails with the last reason. Every step re-reads the command first, so a device that
fetched it through ``operation/pending`` meanwhile, a cancel, or another node's work makes
the retry loop stop instead of doing the work twice.

Per device, operations go out one at a time, oldest first (a device queue with one
worker); across devices at most ``max_concurrency`` requests run at once, on one shared
``aiohttp.ClientSession``, so an unreachable device never stalls the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import aiohttp

from tether.core import jsonc
from tether.core.access import ALL_ACTIONS, Principal, PrincipalKind
from tether.core.backoff import Backoff
from tether.core.errors import BadRequest, TetherError
from tether.core.filters import EventFilter
from tether.core.lifecycle import DELIVERABLE, CommandState
from tether.core.model import Command, Device, Role
from tether.dialects.opengate import DIALECT
from tether.dialects.opengate.codec import ENCODINGS, Encoding, parse_response, request_envelope
from tether.dialects.opengate.operations import apply_response
from tether.hub.service import Hub
from tether.hub.subscriptions import Subscription, Topic
from tether.settings.opengate import OpenGateSettings

log = logging.getLogger("tether.opengate")

#: The dispatcher acts for the platform itself, never for a user.
SYSTEM = Principal(kind=PrincipalKind.USER, actions=ALL_ACTIONS, role=Role.ADMIN)
#: Answers that mean "try again later" rather than "this operation is refused".
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Seconds before ``expires_at`` by which the last attempt ends and its failure is stored.
EXPIRY_MARGIN = 1.0


class Unreachable(Exception):
    """The device could not be reached or did not answer in time (retried)."""


def endpoint_of(device: Device) -> str | None:
    endpoint = device.attributes.get("endpoint")
    return endpoint if isinstance(endpoint, str) and endpoint else None


def encoding_of(device: Device, settings: OpenGateSettings) -> Encoding:
    value = device.attributes.get("parameter_encoding", settings.parameter_encoding)
    for encoding in ENCODINGS:
        if value == encoding:
            return encoding
    return settings.parameter_encoding


def request_url(device: Device, settings: OpenGateSettings) -> str:
    endpoint = endpoint_of(device) or ""
    template = device.attributes.get("request_path") or settings.request_path
    path = (
        str(template)
        .replace("{device_id}", quote(device.id, safe=""))
        .replace("{id}", quote(device.id, safe=""))
    )
    return endpoint.rstrip("/") + path


class Dispatcher:
    def __init__(self, hub: Hub, settings: OpenGateSettings) -> None:
        self._hub = hub
        self._settings = settings
        self._due: dict[str, set[int]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._claimed: set[int] = set()
        self._limit = asyncio.Semaphore(settings.max_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._subscription: Subscription | None = None
        self._contexts: dict[tuple[Any, ...], ssl.SSLContext] = {}
        #: Attempts per command, for logs and the failure reason.
        self.attempts: dict[int, int] = {}

    # --- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._settings.request_timeout),
            connector=aiohttp.TCPConnector(limit=self._settings.max_concurrency),
        )
        self._subscription = await self._hub.subscribe(
            SYSTEM, Topic.COMMAND, EventFilter(dialects=frozenset({DIALECT})), self
        )
        # Commands left deliverable by a restart (or created before this node came up).
        await self.rescan()
        if self._settings.rescan_interval > 0:
            task = asyncio.get_running_loop().create_task(self._rescan_forever())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def rescan(self) -> None:
        """Consider every deliverable command not already queued or being dispatched.

        Catches what no event announced: commands of a device whose ``endpoint`` was set
        after they were created, and events missed while the bus was down.
        """
        for command in await self._hub.commands.list_commands(
            SYSTEM, states=DELIVERABLE, take=10_000
        ):
            queued = self._due.get(command.device_id, ())
            if command.id not in self._claimed and command.id not in queued:
                self._consider(command)

    async def _rescan_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.rescan_interval)
            try:
                await self.rescan()
            except Exception:
                log.exception("re-scan for pending operations failed")

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._hub.unsubscribe(self._subscription.id)
        for task in [*self._workers.values(), *self._tasks]:
            task.cancel()
        for task in [*self._workers.values(), *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Give unfinished claims back, so another node (or this one restarted) takes over.
        for command_id in list(self._claimed):
            with contextlib.suppress(Exception):
                await self._hub.dialect_state.delete(DIALECT, f"dispatch:{command_id}")
        if self._session is not None:
            await self._session.close()

    # --- the hub's sink ----------------------------------------------------------------

    def offer(self, subscription: Subscription, item: Any) -> bool:
        if isinstance(item, Command) and item.state in DELIVERABLE:
            self._consider(item)
        return True

    def _consider(self, command: Command) -> None:
        task = asyncio.get_running_loop().create_task(self._enqueue(command))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _enqueue(self, command: Command) -> None:
        device = await self._hub.directory.device(command.device_id)
        if device is None or device.dialect != DIALECT or endpoint_of(device) is None:
            return
        self._due.setdefault(device.id, set()).add(command.id)
        if device.id not in self._workers:
            task = asyncio.get_running_loop().create_task(self._work(device.id))
            self._workers[device.id] = task

    async def _work(self, device_id: str) -> None:
        try:
            while True:
                due = self._due.get(device_id)
                if not due:
                    self._due.pop(device_id, None)
                    return
                command_id = min(due)
                due.discard(command_id)
                try:
                    await self._dispatch_claimed(device_id, command_id)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("dispatching command %s to %s failed", command_id, device_id)
        finally:
            if self._workers.get(device_id) is asyncio.current_task():
                del self._workers[device_id]

    # --- one operation -----------------------------------------------------------------

    @property
    def lease(self) -> float:
        """Seconds a claim holds without renewal; each attempt renews it."""
        settings = self._settings
        return max(60.0, 4 * settings.retry_max, 4 * settings.request_timeout)

    def _claim_value(self) -> str:
        return f"{self._hub.node_id}|{time.time() + self.lease:.3f}"

    async def _claim(self, command_id: int) -> bool:
        """Claim the command for this node: free, ours already, or abandoned (lease over).

        Taking over an abandoned claim is not atomic: two nodes may both take the same one
        over, and then both send it. That is harmless (the device deduplicates by
        operation id, and every state change is conditional), and rare: it needs a node to
        die mid-retry.
        """
        state = self._hub.dialect_state
        key = f"dispatch:{command_id}"
        mine = self._claim_value()
        held = await state.put_if_absent(DIALECT, key, mine)
        if held == mine:
            return True
        owner, _, until = held.rpartition("|")
        try:
            expired = float(until) < time.time()
        except ValueError:
            owner, expired = held, True  # a claim without a lease: an older format
        if owner != self._hub.node_id and not expired:
            return False
        await state.put(DIALECT, key, mine)
        log.info("command %s: claim of %s taken over", command_id, owner)
        return True

    async def renew(self, command_id: int) -> None:
        await self._hub.dialect_state.put(DIALECT, f"dispatch:{command_id}", self._claim_value())

    async def _dispatch_claimed(self, device_id: str, command_id: int) -> None:
        key = f"dispatch:{command_id}"
        hub = self._hub
        if not await self._claim(command_id):
            return  # another node dispatches it
        self._claimed.add(command_id)
        try:
            await self._dispatch(device_id, command_id)
        finally:
            self._claimed.discard(command_id)
            self.attempts.pop(command_id, None)
            await hub.dialect_state.delete(DIALECT, key)

    async def _current(self, command_id: int) -> Command | None:
        try:
            return await self._hub.commands.get(SYSTEM, command_id)
        except TetherError:
            return None

    async def _dispatch(self, device_id: str, command_id: int) -> None:
        hub = self._hub
        settings = self._settings
        backoff = Backoff(settings.retry_initial, settings.retry_max)
        while True:
            command = await self._current(command_id)
            device = await hub.directory.device(device_id)
            if command is None or command.state not in DELIVERABLE:
                return  # delivered another way (pending), finished, cancelled or expired
            if device is None or device.blocked or endpoint_of(device) is None:
                return
            if command.state is CommandState.PENDING:
                handed = await hub.commands.hand_over(device_id, [command_id], CommandState.SENT)
                if not handed:
                    continue  # someone else moved it: re-read
                command = handed[0]
            attempt = self.attempts[command_id] = self.attempts.get(command_id, 0) + 1
            if attempt > 1:
                await self.renew(command_id)
            endpoint = endpoint_of(device) or ""
            if not endpoint.startswith(("http://", "https://")):
                await self._fail(
                    device,
                    command,
                    "ERROR_PROCESSING",
                    f"device endpoint {endpoint!r} is not an http:// or https:// URL",
                )
                return
            try:
                await self._send(device, command)
                return
            except Unreachable as error:
                reason = str(error)
            now = hub.clock.now()
            delay = backoff.next()
            log.debug(
                "operation %s to %s: attempt %d failed (%s); retrying in %.1fs",
                command.ref,
                device_id,
                attempt,
                reason,
                delay,
            )
            # The failure (with its reason) must land before the sweeper's plain "expired":
            # give up when the next attempt could not finish a margin before expiry.
            if command.expires_at is not None and now + timedelta(
                seconds=delay + EXPIRY_MARGIN
            ) >= (command.expires_at):
                await self._fail(
                    device,
                    command,
                    "UNREACHABLE",
                    f"device unreachable until the operation expired, after {attempt} "
                    f"attempt{'s' if attempt > 1 else ''}: {reason}",
                )
                return
            await asyncio.sleep(delay)

    async def _fail(self, device: Device, command: Command, code: str, reason: str) -> None:
        log.warning("operation %s to %s failed: %s", command.ref, device.id, reason)
        await self._hub.commands.complete(
            device,
            command.id,
            success=False,
            error=reason,
            status=code,
            result={"resultCode": code, "resultDescription": reason},
        )

    def _ssl(self, device: Device, url: str) -> ssl.SSLContext | bool | None:
        if not url.startswith("https:"):
            return None
        settings = self._settings
        verify = device.attributes.get("tls_verify", settings.tls_verify)
        key = (bool(verify), settings.tls_ca, settings.client_cert, settings.client_key)
        context = self._contexts.get(key)
        if context is None:
            context = ssl.create_default_context(
                cafile=str(settings.tls_ca) if settings.tls_ca else None
            )
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if settings.client_cert is not None:
                context.load_cert_chain(
                    settings.client_cert, settings.client_key if settings.client_key else None
                )
            self._contexts[key] = context
        return context

    async def _send(self, device: Device, command: Command) -> None:
        """One POST of the operation request; raises :class:`Unreachable` to retry."""
        assert self._session is not None
        settings = self._settings
        url = request_url(device, settings)
        body = request_envelope(
            ref=command.ref or "",
            name=command.name,
            parameters=command.parameters,
            timestamp=self._hub.clock.now(),
            device_id=device.id,
            encoding=encoding_of(device, settings),
        )
        headers = {"Content-Type": "application/json"}
        api_key = device.attributes.get("api_key") or settings.outbound_api_key
        if api_key:
            headers["X-ApiKey"] = str(api_key)
        timeout = settings.request_timeout
        if command.expires_at is not None:
            left = (command.expires_at - self._hub.clock.now()).total_seconds() - EXPIRY_MARGIN
            timeout = max(0.1, min(timeout, left))
        async with self._limit:
            try:
                async with self._session.post(
                    url,
                    data=jsonc.encode(body),
                    headers=headers,
                    ssl=self._ssl(device, url),  # type: ignore[arg-type]
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as reply:
                    status = reply.status
                    raw = await reply.read()
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                raise Unreachable(describe(error)) from None
        if status in RETRY_STATUSES:
            raise Unreachable(f"HTTP {status}: {snippet(raw)}")
        await self._answered(device, command, status, raw)

    async def _answered(self, device: Device, command: Command, status: int, raw: bytes) -> None:
        hub = self._hub
        hub.presence.activity(device.id)  # it answered: online
        response = None
        if raw.strip():
            try:
                response = parse_response(jsonc.decode(raw))
            except BadRequest as error:
                if 200 <= status < 300:
                    log.warning(
                        "operation %s: %s answered %d with an unreadable body (%s); "
                        "taken as an acknowledgement",
                        command.ref,
                        device.id,
                        status,
                        error,
                    )
        if 200 <= status < 300:
            await hub.commands.acknowledge(device, command.id)
            if response is not None:
                if response.id != command.ref:
                    log.warning(
                        "operation %s: %s answered with operation id %s; ignored",
                        command.ref,
                        device.id,
                        response.id,
                    )
                    return
                await apply_response(hub, device, response)
            return
        if response is not None and response.id == command.ref and response.final:
            await hub.commands.acknowledge(device, command.id)
            await apply_response(hub, device, response)
            return
        code = "NOT_SUPPORTED" if status == 400 else "ERROR_PROCESSING"
        await self._fail(
            device, command, code, f"device refused the operation: HTTP {status} {snippet(raw)}"
        )


def snippet(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError | asyncio.TimeoutError):
        return "no answer within the request timeout"
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"
