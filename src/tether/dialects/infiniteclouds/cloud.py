"""The cloud side of InfiniteClouds: registration, device tokens, keepalive triggers.

Every device is a core device of dialect ``infiniteclouds`` with id ``ic-<mac digits>``;
what it reports (MAC, machine id, model, firmware, config revision, interfaces) lives in
``Device.attributes`` and is written only when it changes. "Unassigned" is a device with
no ``owner_id``: it registers, but gets no token, and keepalives are refused.

An idle keepalive (nothing pending, nothing changed) runs no SQL: the token is verified
on the CPU, the device comes from the directory cache, presence is a dict write, pending
commands are looked up in the hub's in-memory index, and the current config revision and
firmware target are cached for ``revision_cache_ttl`` seconds.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from tether.core.access import ALL_ACTIONS, Principal, PrincipalKind
from tether.core.errors import (
    BadRequest,
    DeviceBlocked,
    Forbidden,
    NotFound,
    Unauthorized,
)
from tether.core.lifecycle import CommandState
from tether.core.model import ConfigRevision, Device, FirmwareTarget, Role
from tether.dialects.infiniteclouds import codec
from tether.dialects.infiniteclouds.registration import Registrar
from tether.hub.commands import Shaped, validate_name
from tether.hub.revisions import Loader

if TYPE_CHECKING:
    from tether.hub.service import Hub
    from tether.settings.infiniteclouds import InfiniteCloudsSettings

log = logging.getLogger("tether.infiniteclouds")

DIALECT = codec.DIALECT

#: The dialect acting on its own devices (creating them at registration, recording what
#: they report). Never handed to a caller: the device itself only ever acts as itself.
SERVICE = Principal(kind=PrincipalKind.USER, actions=ALL_ACTIONS, role=Role.ADMIN)

Data = dict[str, Any] | None
#: Most verified device tokens remembered: one per device (see :meth:`Cloud._verify`).
VERIFIED_CACHE = 200_000


def shape(name: str, parameters: Any) -> Shaped:
    """Commands for these devices travel as ``{"command": name, "params": {...}}``."""
    validate_name(name)
    if parameters is not None and not isinstance(parameters, dict):
        raise BadRequest("an InfiniteClouds command's parameters must be a JSON object")
    return Shaped(parameters=parameters if parameters is not None else {})


class Cloud:
    def __init__(self, hub: Hub, settings: InfiniteCloudsSettings) -> None:
        self.hub = hub
        self.settings = settings
        self.token_key = hub.auth.tokens.derive_key(codec.TOKEN_PURPOSE)
        #: The principal this dialect acts as on its own devices.
        self.service = SERVICE
        self._verified: LRUCache[str, codec.DeviceToken] = LRUCache(maxsize=VERIFIED_CACHE)
        #: Each device's last verified token string, so a new one replaces it in the cache.
        self._latest: LRUCache[str, str] = LRUCache(maxsize=VERIFIED_CACHE)
        # What a device gets depends only on its id and type (see hub.revisions).
        ttl = settings.revision_cache_ttl
        self._configs: Loader[ConfigRevision | None] = Loader(hub.twins.current_config, ttl)
        self._firmware: Loader[FirmwareTarget | None] = Loader(hub.twins.current_firmware, ttl)
        self._registrar = Registrar(self)

    @property
    def presence_timeout(self) -> float:
        return self.settings.keepalive_interval * self.settings.missed_keepalives

    # --- registration -------------------------------------------------------------------------

    async def register(
        self, body: dict[str, Any], *, source: str, authorization: str | None
    ) -> tuple[Data, str]:
        """Answer a registration (continuity proof and caps: :mod:`.registration`)."""
        return await self._registrar.register(body, source=source, authorization=authorization)

    @staticmethod
    def facts(body: dict[str, Any]) -> dict[str, Any]:
        """What a message says about the device, by attribute name (absent ones left out)."""
        current, upgrading = codec.reported_firmware(body)
        found = {
            "machineId": codec.text(body, "machineId"),
            "deviceType": codec.text(body, "deviceType", limit=64),
            "deviceModel": codec.text(codec.field(body, "deviceMetaInfo"), "deviceModel"),
            "firmwareVersion": current,
            "configRevision": codec.reported_revision(body),
        }
        facts = {k: v for k, v in found.items() if v is not None}
        if codec.field(body, "firmware") is not None:
            facts["firmwareUpgrading"] = upgrading or ""
        return facts

    async def record(self, device: Device, facts: dict[str, Any]) -> Device:
        """Store what changed in the device's attributes; nothing to write, no SQL."""
        merged = {**device.attributes, **facts}
        if merged == device.attributes:
            return device
        return await self.hub.directory.update_device(SERVICE, device.id, attributes=merged)

    # --- authentication -----------------------------------------------------------------------

    async def authenticate(self, authorization: str | None, body: dict[str, Any]) -> Device:
        """The device a Bearer token stands for; it may act only as itself."""
        token = self._verify(codec.bearer(authorization))
        device = await self.hub.directory.device(token.device_id)
        if device is None or device.dialect != DIALECT:
            raise Unauthorized("Unknown device")
        if device.owner_id is None:
            raise Unauthorized("Device is not assigned")
        if device.owner_id != token.owner_id:
            raise Unauthorized("Device was re-assigned; register again")
        if device.blocked:
            raise DeviceBlocked("Device is blocked")
        claimed = codec.text(body, "deviceId", limit=128)
        if claimed is not None and claimed != device.id:
            raise Forbidden("The token belongs to another device")
        mac = codec.text(body, "macAddress", limit=32)
        if mac is not None and codec.normal_mac(mac) != token.mac:
            raise Forbidden("The token belongs to another device")
        return device

    def _verify(self, raw: str) -> codec.DeviceToken:
        """Verify a token's signature once; later keepalives with the very same token
        string only have their expiry checked (the HMAC is most of an idle keepalive's
        cost, and identical bytes cannot verify differently under the same key).

        A device that registers again gets a new token and stops sending the old one, so
        a device's newer token evicts its older one: the cache holds one token per
        device, not one per registration. (Found in the P7 churn soak: every reconnect
        left a dead entry behind, up to the cap of 200,000, some 100 MiB.) An old token
        sent again is still valid until it expires; it is only verified again."""
        now = int(self.hub.clock.now().timestamp())
        token = self._verified.get(raw)
        if token is None:
            token = codec.verify_token(
                self.token_key,
                raw,
                now=now,
                audience=self.settings.token_audience,
                issuer=self.settings.token_issuer,
            )
            self._verified[raw] = token
            replaced = self._latest.get(token.device_id)
            if replaced is not None and replaced != raw:
                self._verified.pop(replaced, None)
            self._latest[token.device_id] = raw
        elif token.expires_at <= now:
            del self._verified[raw]
            raise Unauthorized("Token expired")
        return token

    # --- keepalive, statistics, status, results -------------------------------------------------

    async def report(self, device: Device, kind: str, body: dict[str, Any]) -> Data:
        """Handle one authenticated message and answer with a fresh ``triggerEvent``."""
        outcomes = codec.command_results(body)
        facts = self.facts(body)
        if kind == codec.STATUS:
            facts["statusWanted"] = False
            facts["lastStatusAt"] = self.hub.clock.now().isoformat()
        if kind == codec.FIRMWARE_STATUS:
            state = codec.text(body, "state", limit=32)
            if state is None:
                raise BadRequest("firmwareStatus needs a state")
            facts["firmwareStatus"] = {
                "version": codec.text(body, "version", limit=128),
                "state": state.upper(),
                "message": codec.text(body, "message", limit=1000),
            }
        self.hub.presence.activity(device.id, timeout=self.presence_timeout)
        await self._complete(device, outcomes)
        device = await self.record(device, facts)
        if kind == codec.STATISTICS:
            await self.hub.notifications.post_as_device(device, "statistics", _payload(body))
        elif kind == codec.STATUS:
            await self.hub.twins.report(device, {"status": _payload(body)})
        elif kind == codec.FIRMWARE_STATUS:
            await self.hub.notifications.post_as_device(
                device, "firmwareStatus", facts["firmwareStatus"]
            )
        return await self.triggers(device)

    async def _complete(self, device: Device, outcomes: list[codec.CommandOutcome]) -> None:
        for outcome in outcomes:
            try:
                if outcome.state == "in_progress":
                    await self.hub.commands.progress(
                        device, outcome.command_id, result=outcome.result
                    )
                else:
                    await self.hub.commands.complete(
                        device,
                        outcome.command_id,
                        success=outcome.state == "succeeded",
                        result=outcome.result,
                        error=outcome.error,
                    )
            except NotFound:
                # Not this device's command (or deleted): nothing to complete, and the
                # device must not be made to resend it forever.
                log.warning("device %s reported unknown command %s", device.id, outcome.command_id)

    async def triggers(self, device: Device) -> Data:
        attributes = device.attributes
        config = await self.current_config(device)
        config_update = config is not None and attributes.get("configRevision") != str(config.id)
        firmware_update = False
        if self.settings.firmware:
            target = await self.current_firmware(device)
            firmware_update = (
                target is not None and attributes.get("firmwareVersion") != target.version
            )
        send_status = bool(
            attributes.get(
                "statusWanted",
                self.settings.status_on_assign and "lastStatusAt" not in attributes,
            )
        )
        return codec.trigger_event(
            config_update=config_update,
            firmware_update=firmware_update,
            send_status=send_status,
            commands=await self._deliver(device),
        )

    async def _deliver(self, device: Device) -> list[dict[str, Any]]:
        """Pending commands, re-sent (``sent`` again) on every keepalive until a result
        arrives or they expire; no SQL when the index says nothing is due."""
        hub = self.hub
        limit = self.settings.max_commands
        if not self.settings.commands or limit == 0 or not hub.index.has_deliverable(device.id):
            return []
        ids = hub.index.deliverable(device.id, hub.clock.now(), limit)
        if not ids:
            return []
        handed = await hub.commands.hand_over(device.id, ids, CommandState.SENT)
        return [codec.command_out(command) for command in handed]

    # --- config and firmware ------------------------------------------------------------------

    async def current_config(self, device: Device, fresh: bool = False) -> ConfigRevision | None:
        return await self._configs.get(device, fresh=fresh)

    async def current_firmware(self, device: Device, fresh: bool = False) -> FirmwareTarget | None:
        return await self._firmware.get(device, fresh=fresh)

    async def config(self, device: Device, known: str | None) -> tuple[Data, str]:
        revision = await self.current_config(device, fresh=True)
        if revision is None:
            raise NotFound("No config for this device")
        if known not in (None, "", "0") and known == str(revision.id):
            return None, "config up to date"
        document = revision.document
        data: dict[str, Any] = dict(document) if isinstance(document, dict) else {}
        if not isinstance(document, dict):
            data["document"] = document
        data.update(
            {
                "_id": device.id,
                "macAddress": device.attributes.get("macAddress"),
                "machineId": device.attributes.get("machineId"),
                "revisionId": str(revision.id),
                "updatedAt": revision.created_at.isoformat(),
            }
        )
        return data, "success"

    async def firmware(self, device: Device) -> tuple[Data, str]:
        if not self.settings.firmware:
            raise NotFound("Firmware updates are disabled")
        target = await self.current_firmware(device, fresh=True)
        if target is None:
            raise NotFound("No firmware target for this device")
        data = {
            "firmwareId": str(target.id),
            "version": target.version,
            "url": target.url,
            "size": target.size,
            "sha256": target.sha256,
        }
        return data, "success"


_IDENTITY = {"statustype", "deviceid", "machineid", "macaddress", "devicetype", "commands"}


def _payload(body: dict[str, Any]) -> dict[str, Any]:
    """A report without the identity fields every message repeats."""
    return {k: v for k, v in body.items() if k.lower() not in _IDENTITY}
