"""The two kinds of ``/api/ws`` connection: an app session and a device link.

:class:`Peer` is the socket with its outbox (a bounded send queue and writer); once the first
frame succeeds it becomes an :class:`AppSession` (``userOnline``) or a :class:`DeviceLink`
(``register``), the latter being what the hub's delivery pushes commands to.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from tether.core.model import Command, Device
from tether.dialects.ewelink import codec
from tether.dialects.ewelink.accounts import Session
from tether.outbox import Outbox
from tether.settings import Settings

log = logging.getLogger("tether.ewelink")


class Peer(Outbox):
    """One ``/api/ws`` socket: an :class:`~tether.outbox.Outbox` that speaks eWeLink."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, settings: Settings):
        super().__init__(ws, request, settings.send_queue_size, settings.ws_close_timeout)

    def send_text(self, text: str) -> bool:
        return super().send(text)

    def send(self, message: Any) -> bool:
        return self.send_text(codec.encode(message))


class AppSession:
    """An app after a successful ``userOnline``."""

    def __init__(self, peer: Peer, session: Session, apikey: str) -> None:
        self.peer = peer
        self.session = session
        self.apikey = apikey
        #: Set when the ``at`` was replaced: every later request is refused (406).
        self.is_revoked = False

    def send(self, message: Any) -> bool:
        return self.peer.send(message)

    def send_text(self, text: str) -> bool:
        return self.peer.send_text(text)

    def revoked(self) -> None:
        """The ``at`` this session was opened with was replaced: 406, then close."""
        if self.is_revoked:
            return
        self.is_revoked = True
        self.peer.send({"error": 406, "reason": codec.REASONS[406], "apikey": self.apikey})
        self.peer.close(1000, "access token replaced")


class DeviceLink:
    """A registered device's WebSocket, as the hub's delivery sees it (DeviceSession)."""

    def __init__(
        self, peer: Peer, device: Device, owner_apikey: str, max_in_flight: int, model: str
    ) -> None:
        self.peer = peer
        self.device = device
        self.device_id = device.id
        self.owner_apikey = owner_apikey
        self.max_in_flight = max_in_flight
        self.model = model
        self.pushed: set[int] = set()
        #: sequence (JSON text) -> (command id, params), for the device's action-less acks.
        self.awaiting: dict[str, tuple[int, Any]] = {}
        self.upgrade_offered: str | None = None
        #: The reported params as stored, while this link is the device's live session
        #: (reports only arrive through it); None until loaded.
        self.shadow: dict[str, Any] | None = None

    def send(self, message: Any) -> bool:
        return self.peer.send(message)

    def close(self, code: int, reason: str) -> None:
        self.peer.close(code, reason)

    def push(self, command: Command) -> bool:
        sequence: Any = codec.decode(command.ref) if command.ref else str(command.id)
        key = codec.sequence_key(sequence)
        if self.awaiting.get(key, (command.id,))[0] != command.id:
            sequence = str(command.id)  # two commands in flight with one app sequence
            key = codec.sequence_key(sequence)
        self.awaiting[key] = (command.id, command.parameters)
        return self.send(
            {
                "action": command.name,
                "deviceid": self.device_id,
                "apikey": self.owner_apikey,
                "userAgent": "app",
                "sequence": sequence,
                "ts": 0,
                "params": codec.to_device(command.parameters),
                "from": "app",
            }
        )


def error_reply(code: int, **echo: Any) -> dict[str, Any]:
    reply: dict[str, Any] = {"error": code}
    if code:
        reply["reason"] = codec.REASONS.get(code, "Error")
    reply.update({k: v for k, v in echo.items() if v is not None})
    return reply
