"""An emulated Control iD terminal: the device side of the Push protocol.

It behaves like the firmware as the reference describes it (A.4): ``GET <base>/push`` with
``deviceId`` and a fresh ``uuid``; an empty answer means "sleep ``push_request_period``";
a command is run against a small in-memory local API (users, cards, groups, configuration,
doors) and its outcome posted to ``<base>/result`` with the same uuid, after which it
polls again at once. Opening a door (``execute_actions``) also sends a Monitor ``door``
event, as a real terminal with Monitor configured does.

Used by ``tether agent controlid``, the end-to-end tests and the bench.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import logging
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger("tether.controlid.agent")

#: Endpoint names remembered in ``LocalApi.executed`` (the newest ones).
EXECUTED_KEPT = 1_000
TABLES = ("users", "cards", "groups", "user_groups", "access_rules", "templates", "qrcodes")


class LocalApiError(Exception):
    """What the terminal's local API answers with ``{"error": ...}``."""


@dataclass
class LocalApi:
    """The terminal's own API (``/<endpoint>.fcgi``), just enough to exercise Push."""

    device_id: int
    tables: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {name: [] for name in TABLES}
    )
    configuration: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "general": {"language": "en_US", "online": "0"},
            "push_server": {
                "push_request_timeout": "15000",
                "push_request_period": "5",
                "push_remote_address": "",
            },
            "monitor": {"request_timeout": "5000", "hostname": "", "port": "", "path": ""},
        }
    )
    doors: dict[int, bool] = field(default_factory=dict)
    screen: str | None = None
    images: dict[int, bytes] = field(default_factory=dict)
    #: Monitor events to send: (topic, body).
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    _access_events: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def call(self, endpoint: str, body: Any, content_type: str, query: str) -> Any:
        self.executed.append(endpoint)
        if len(self.executed) > EXECUTED_KEPT:
            del self.executed[0]
        handler = getattr(self, "_" + endpoint, None)
        if handler is None or endpoint.startswith("_"):
            raise LocalApiError(f"Invalid endpoint: {endpoint}")
        if content_type == "application/octet-stream":
            if not isinstance(body, str):
                raise LocalApiError("binary body must be base64")
            try:
                raw = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise LocalApiError("invalid base64 body") from None
            return handler(raw, dict(_pairs(query)))
        if isinstance(body, str):
            try:
                body = json.loads(body) if body.strip() else {}
            except ValueError:
                raise LocalApiError("Invalid JSON body") from None
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise LocalApiError("Invalid JSON body")
        return handler(body, dict(_pairs(query)))

    # --- objects ---------------------------------------------------------------------------

    def _table(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        name = body.get("object")
        if name not in self.tables:
            raise LocalApiError(f"Invalid object: {name}")
        return self.tables[name]

    @staticmethod
    def _matches(row: dict[str, Any], body: dict[str, Any]) -> bool:
        where = body.get("where") or {}
        conditions = where.get(body.get("object"), where) if isinstance(where, dict) else {}
        return all(row.get(k) == v for k, v in conditions.items() if not isinstance(v, dict))

    def _load_objects(self, body: dict[str, Any], _: dict[str, str]) -> Any:
        rows = [r for r in self._table(body) if self._matches(r, body)]
        offset, limit = int(body.get("offset", 0)), body.get("limit")
        rows = rows[offset : offset + int(limit)] if limit is not None else rows[offset:]
        return {body["object"]: rows}

    def _count_objects(self, body: dict[str, Any], _: dict[str, str]) -> Any:
        return {"count": sum(1 for r in self._table(body) if self._matches(r, body))}

    def _create_objects(self, body: dict[str, Any], _: dict[str, str], upsert: bool = False) -> Any:
        table = self._table(body)
        ids = []
        for values in body.get("values") or []:
            row = dict(values)
            row.setdefault("id", max((r["id"] for r in table), default=0) + 1)
            existing = next((r for r in table if r["id"] == row["id"]), None)
            if existing is not None:
                if not upsert:
                    raise LocalApiError(f"UNIQUE constraint failed: {body['object']}.id")
                existing.update(row)
            else:
                table.append(row)
            ids.append(row["id"])
        return {"ids": ids}

    def _create_or_modify_objects(self, body: dict[str, Any], query: dict[str, str]) -> Any:
        return self._create_objects(body, query, upsert=True)

    def _modify_objects(self, body: dict[str, Any], _: dict[str, str]) -> Any:
        rows = [r for r in self._table(body) if self._matches(r, body)]
        for row in rows:
            row.update(body.get("values") or {})
        return {"changes": len(rows)}

    def _destroy_objects(self, body: dict[str, Any], _: dict[str, str]) -> Any:
        table = self._table(body)
        keep = [r for r in table if not self._matches(r, body)]
        changes = len(table) - len(keep)
        table[:] = keep
        return {"changes": changes}

    # --- configuration ---------------------------------------------------------------------

    def _set_configuration(self, body: dict[str, Any], _: dict[str, str]) -> Any:
        for section, values in body.items():
            if not isinstance(values, dict):
                raise LocalApiError(f"Invalid section: {section}")
            self.configuration.setdefault(section, {}).update(
                {k: str(v) for k, v in values.items()}
            )
        return {}

    def _get_configuration(self, body: dict[str, Any], _: dict[str, str]) -> Any:
        out: dict[str, dict[str, str]] = {}
        for section, keys in body.items():
            values = self.configuration.get(section, {})
            for key in keys:
                if key not in values:
                    raise LocalApiError(
                        "Node or attribute not found. Node path: "
                        f"config->{section}->param[name={key}]"
                    )
                out.setdefault(section, {})[key] = values[key]
        return out

    # --- actions ---------------------------------------------------------------------------

    def _execute_actions(self, body: dict[str, Any], _: dict[str, str]) -> Any:
        now = int(time.time())
        for action in body.get("actions") or []:
            name, parameters = action.get("action"), dict(_pairs(action.get("parameters", ""), ","))
            if name == "door":
                door = int(parameters.get("door", 1))
                self.doors[door] = True
                self.events.append(
                    (
                        "door",
                        {
                            "door": {"id": door, "open": True},
                            "access_event_id": next(self._access_events),
                            "device_id": self.device_id,
                            "time": now,
                        },
                    )
                )
            elif name == "sec_box":
                box = int(parameters.get("id", 0))
                self.events.append(
                    (
                        "secbox",
                        {
                            "secbox": {"id": box, "open": True},
                            "device_id": self.device_id,
                            "time": now,
                        },
                    )
                )
            elif name == "catra":
                allow = parameters.get("allow", "both")
                self.events.append(
                    (
                        "catra_event",
                        {
                            "event": {"type": 7, "name": f"ALLOW {allow.upper()}", "time": now},
                            "access_event_id": next(self._access_events),
                            "device_id": self.device_id,
                            "time": now,
                        },
                    )
                )
            else:
                raise LocalApiError(f"Invalid action: {name}")
        return {}

    def _message_to_screen(self, body: dict[str, Any], _: dict[str, str]) -> Any:
        self.screen = str(body.get("message", ""))
        return {}

    def _user_set_image(self, raw: Any, query: dict[str, str]) -> Any:
        if not isinstance(raw, bytes):
            raise LocalApiError("user_set_image takes application/octet-stream")
        try:
            user_id = int(query["user_id"])
        except (KeyError, ValueError):
            raise LocalApiError("user_id is required") from None
        self.images[user_id] = raw
        return {}

    def _user_get_image(self, _: Any, query: dict[str, str]) -> Any:
        image = self.images.get(int(query.get("user_id", "-1")))
        if image is None:
            raise LocalApiError("User has no image")
        return {"image": base64.b64encode(image).decode()}

    def _system_information(self, _: Any, __: dict[str, str]) -> Any:
        return {"serial": f"EMU{self.device_id}", "version": "tether-emulator", "uptime": {}}

    def _reboot(self, _: Any, __: dict[str, str]) -> Any:
        return {}


def _pairs(text: str, separator: str = "&") -> list[tuple[str, str]]:
    pairs = []
    for part in (text or "").split(separator):
        key, eq, value = part.strip().partition("=")
        if eq:
            pairs.append((key.strip(), value.strip()))
    return pairs


class Terminal:
    """One emulated terminal polling ``base_url``."""

    def __init__(
        self,
        base_url: str,
        device_id: int,
        *,
        period: float = 5.0,
        timeout: float = 15.0,
        monitor_url: str | None = None,
        send_uuid: bool = True,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.device_id = device_id
        self.period = period
        self.timeout = timeout
        self.monitor_url = monitor_url.rstrip("/") if monitor_url else None
        self.send_uuid = send_uuid
        self.api = LocalApi(device_id)
        self._session = session
        self.polls = 0
        self.commands = 0
        self.errors = 0
        #: Set while the server answers its polls; cleared when one fails.
        self.connected = asyncio.Event()

    def _query(self, uuid: str | None) -> dict[str, str]:
        query = {"deviceId": str(self.device_id)}
        if uuid is not None:
            query["uuid"] = uuid
        return query

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll until ``stop`` is set (or forever)."""
        stop = stop or asyncio.Event()
        owns = self._session is None
        session = self._session or aiohttp.ClientSession()
        try:
            while not stop.is_set():
                try:
                    worked = await self.poll_once(session)
                except (aiohttp.ClientError, TimeoutError) as error:
                    self.errors += 1
                    self.connected.clear()
                    log.warning("terminal %s: push failed: %s", self.device_id, error)
                    worked = False
                if not worked:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.period):
                            await stop.wait()
        finally:
            self.connected.clear()
            if owns:
                await session.close()

    async def poll_once(self, session: aiohttp.ClientSession) -> bool:
        """One ``/push``; True if it carried a command (which was run and answered)."""
        uuid = str(uuidlib.uuid4()) if self.send_uuid else None
        self.polls += 1
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with session.get(
            self.base_url + "/push", params=self._query(uuid), timeout=timeout
        ) as response:
            body = await response.read()
        if response.status == 200:
            self.connected.set()
        if response.status != 200 or not body.strip():
            return False
        try:
            envelope = json.loads(body)
        except ValueError:
            log.warning("terminal %s: unreadable command %r", self.device_id, body[:200])
            return False
        self.commands += 1
        outcome = self.execute(envelope)
        async with session.post(
            self.base_url + "/result", params=self._query(uuid), json=outcome, timeout=timeout
        ) as response:
            await response.read()
        await self.flush_events(session)
        return True

    def execute(self, envelope: Any) -> dict[str, Any]:
        """Run a push command (or a batch) on the local API; the ``/result`` body."""
        if isinstance(envelope, dict) and isinstance(envelope.get("transactions"), list):
            results = []
            for item in envelope["transactions"]:
                single = self.execute(item)
                entry: dict[str, Any] = {
                    "transactionid": item.get("transactionid"),
                    "success": "error" not in single,
                }
                entry.update(
                    {"response": json.dumps(single["response"])}
                    if "response" in single
                    else {"error": single["error"]}
                )
                results.append(entry)
            return {"transactions_results": results}
        if not isinstance(envelope, dict) or not isinstance(envelope.get("endpoint"), str):
            return {"error": "Invalid command"}
        try:
            response = self.api.call(
                envelope["endpoint"],
                envelope.get("body"),
                envelope.get("contentType", "application/json"),
                envelope.get("queryString", ""),
            )
        except LocalApiError as error:
            log.info("terminal %s: %s -> error %s", self.device_id, envelope["endpoint"], error)
            return {"error": str(error)}
        log.info("terminal %s: %s -> ok", self.device_id, envelope["endpoint"])
        return {"response": response}

    async def flush_events(self, session: aiohttp.ClientSession) -> int:
        """Send queued Monitor events (dropped if no Monitor URL is configured); returns
        how many the server did not take (an error status or no answer)."""
        events, self.api.events = self.api.events, []
        if self.monitor_url is None:
            return 0
        failed = 0
        for topic, body in events:
            try:
                async with session.post(
                    f"{self.monitor_url}/{topic}",
                    json=body,
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as response:
                    await response.read()
                    if response.status >= 400:
                        failed += 1
                        log.warning(
                            "terminal %s: monitor %s answered %s",
                            self.device_id,
                            topic,
                            response.status,
                        )
            except (aiohttp.ClientError, TimeoutError) as error:
                failed += 1
                log.warning("terminal %s: monitor %s failed: %s", self.device_id, topic, error)
        return failed

    async def alive(self, session: aiohttp.ClientSession) -> None:
        """A Monitor ``device_is_alive`` keep-alive."""
        if self.monitor_url is None:
            return
        body = {"access_logs": 0, "device_id": self.device_id, "time": int(time.time())}
        async with session.post(f"{self.monitor_url}/device_is_alive", json=body) as response:
            await response.read()
