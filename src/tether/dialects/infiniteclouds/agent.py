"""The device side: what the seed's ``gwc_keepalive.sh`` and ``cgw_config.sh`` do.

The agent registers until the device is assigned (keeping the answer in
``last_register_response.json``), then posts a keepalive every interval, keeping the last
request and response in ``last_keepAlive_request.json`` / ``last_keepAlive_response.json``
as the seed's device does. It acts on the reply's ``triggerEvent``:

* ``configUpdate``: fetch ``/v1/device/config``, hand the document to the config hook,
  and report the new ``config.revisionId`` once the hook succeeded;
* ``firmwareUpdate``: fetch ``/v1/device/firmware``, download the image, check its size
  and sha256, hand it to the firmware hook, then report the new version;
* ``sendStatus``: post a ``status`` snapshot;
* ``commands``: run each (once, by ``commandId``) through the command hook and carry the
  results in the next keepalive's ``commands`` array.

A 401 makes it register again for a fresh token. What it has applied (revision,
firmware version, finished commands and unsent results) lives in
``keepalive_state.json``, written atomically, so a restart neither repeats a command nor
loses a result. With no state directory (``state_dir=None``: a simulated device of
``tether sim``) it keeps all of that in memory and writes no file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import shlex
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tether.dialects.infiniteclouds import host

log = logging.getLogger("tether.agent.keepalive")

REGISTER_RESPONSE = "last_register_response.json"
KEEPALIVE_REQUEST = "last_keepAlive_request.json"
KEEPALIVE_RESPONSE = "last_keepAlive_response.json"
CONFIG_REQUEST = "last_config_request.json"
CONFIG_RESPONSE = "last_config_response.json"
STATUS_REQUEST = "last_status_request.json"
STATUS_RESPONSE = "last_status_response.json"
STATISTICS_REQUEST = "last_statistics_request.json"
STATISTICS_RESPONSE = "last_statistics_response.json"
FIRMWARE_RESPONSE = "last_firmware_response.json"
STATE = "keepalive_state.json"
#: Finished command ids remembered to drop re-sent copies.
DONE_KEPT = 500
OUTPUT_LIMIT = 16_384


@dataclass
class AgentConfig:
    url: str
    #: Where the last messages and the agent's state are kept; None: in memory only.
    state_dir: Path | None = Path("/tmp")
    interval: float = 60.0
    register_interval: float = 30.0
    device_type: str = "CE"
    device_model: str = "Tether"
    mac: str | None = None
    interface: str | None = None
    machine_id: str | None = None
    firmware_version: str = "v0.0.0"
    config_hook: str | None = None
    firmware_hook: str | None = None
    command_hook: str | None = None
    hook_timeout: float = 300.0
    insecure: bool = False
    request_timeout: float = 30.0
    #: Seconds between ``statistics`` messages (sent instead of a keepalive); 0: never.
    statistics_interval: float = 0.0


class Unauthorized(Exception):
    """The cloud refused the token (401): register again."""


class Refused(Exception):
    """The cloud answered with an envelope error other than 401."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass
class Outcome:
    status: str
    exit_code: int
    output: str


@dataclass
class State:
    config_revision: str | None = None
    firmware_version: str | None = None
    upgrading: str = ""
    done: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)


def write_json(path: Path, body: Any) -> None:
    """Atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=2, sort_keys=False))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class KeepaliveAgent:
    def __init__(self, config: AgentConfig, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self.base = config.url.rstrip("/")
        self.dir = config.state_dir
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
        #: Where hooks get their files and a firmware image is downloaded.
        self.work_dir = self.dir if self.dir is not None else Path(tempfile.gettempdir())
        mac = config.mac or host.primary_mac(config.interface)
        if mac is None:
            raise ValueError("no MAC address found on this host; give --mac")
        self.mac = mac.lower()
        self.machine_id = config.machine_id or host.machine_id(self.mac)
        self.device_id: str | None = None
        self.token: str | None = None
        self.state = self._load_state()
        self._stop = asyncio.Event()
        #: A session shared with other devices (a fleet); None: one of its own per run.
        self._shared = session
        self._session: aiohttp.ClientSession | None = None
        self._next_statistics = 0.0
        #: Set while keepalives are answered; cleared when one fails.
        self.connected = asyncio.Event()
        #: Messages the cloud accepted, by ``statusType``.
        self.sent: Counter[str] = Counter()

    # --- persistent state ------------------------------------------------------------------

    def _write(self, name: str, body: Any) -> None:
        """Keep ``body`` as the file ``name`` in the state directory (if there is one)."""
        if self.dir is not None:
            write_json(self.dir / name, body)

    def _load_state(self) -> State:
        state = State(firmware_version=self.config.firmware_version)
        if self.dir is None:
            return state
        raw = read_json(self.dir / STATE)
        if isinstance(raw, dict) and raw.get("macAddress") == self.mac:
            state.config_revision = raw.get("configRevision")
            state.firmware_version = raw.get("firmwareVersion") or state.firmware_version
            state.upgrading = raw.get("upgrading") or ""
            state.done = [str(i) for i in raw.get("done") or []]
            state.results = [r for r in raw.get("results") or [] if isinstance(r, dict)]
        registered = read_json(self.dir / REGISTER_RESPONSE)
        data = registered.get("data") if isinstance(registered, dict) else None
        if isinstance(data, dict) and data.get("authToken") and registered.get("mac") == self.mac:
            self.device_id = data.get("deviceId")
            self.token = data.get("authToken")
        return state

    def _save_state(self) -> None:
        s = self.state
        del s.done[:-DONE_KEPT]
        self._write(
            STATE,
            {
                "macAddress": self.mac,
                "configRevision": s.config_revision,
                "firmwareVersion": s.firmware_version,
                "upgrading": s.upgrading,
                "done": s.done[-DONE_KEPT:],
                "results": s.results,
            },
        )

    # --- the loop ----------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def run(self) -> None:
        try:
            if self._shared is not None:
                self._session = self._shared
                await self._loop()
                return
            timeout = aiohttp.ClientTimeout(total=self.config.request_timeout)
            connector = aiohttp.TCPConnector(ssl=not self.config.insecure)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
                self._session = session
                await self._loop()
        finally:
            self.connected.clear()
            self._session = None

    async def _loop(self) -> None:
        log.info(
            "keepalive agent for %s (machine id %s) -> %s", self.mac, self.machine_id, self.base
        )
        while not self._stop.is_set():
            try:
                if self.token is None:
                    if not await self.register():
                        await self._sleep(self.config.register_interval)
                    continue
                busy = await self.keepalive()
                self.connected.set()
                if not busy:
                    await self._sleep(self.config.interval)
            except Unauthorized as error:
                log.info("token refused (%s): registering again", error)
                self.connected.clear()
                self.token = None
            except Refused as error:
                log.warning("cloud refused the request: %s", error)
                await self._sleep(self.config.interval)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
                log.warning("cannot reach the cloud: %s", error)
                self.connected.clear()
                await self._sleep(min(self.config.interval, self.config.register_interval))
            except Exception:  # a service keeps running; say what went wrong
                log.exception("unexpected error; retrying after the interval")
                await self._sleep(self.config.interval)

    async def _call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """One request; returns the envelope, raising on an envelope error."""
        assert self._session is not None
        headers = {"Content-Type": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        async with self._session.request(
            method,
            self.base + path,
            data=None if body is None else json.dumps(body),
            params=params,
            headers=headers,
        ) as response:
            raw = await response.read()
        try:
            answer = json.loads(raw)
        except ValueError:
            raise Refused(response.status, f"not JSON: {raw[:200]!r}") from None
        if not isinstance(answer, dict):
            raise Refused(response.status, "not an envelope")
        status = int(answer.get("httpCode") or answer.get("status") or response.status)
        if response.status == 401 or status == 401:
            raise Unauthorized(str(answer.get("message")))
        if response.status >= 400 or answer.get("errors"):
            raise Refused(status, str(answer.get("message")))
        return answer

    def _identity(self) -> dict[str, Any]:
        return {
            "deviceId": self.device_id,
            "deviceType": self.config.device_type,
            "machineId": self.machine_id,
            "macAddress": self.mac,
            "timestamp": int(time.time()),
        }

    def _firmware(self) -> dict[str, str]:
        return {
            "currentVersion": self.state.firmware_version or "",
            "upgrading": self.state.upgrading,
        }

    async def register(self) -> bool:
        """One register; True once the device is assigned and holds a token."""
        body = {
            "deviceType": self.config.device_type,
            "machineId": self.machine_id,
            "macAddress": self.mac,
            "timestamp": int(time.time()),
            "deviceMetaInfo": {
                "deviceType": self.config.device_type,
                "deviceModel": self.config.device_model,
            },
            "firmware": self._firmware(),
            "interfaces": host.interfaces(),
        }
        # The previous token (often just expired) goes along as the proof that this is
        # the device that registered before; the cloud may refuse a re-registration
        # without one (``reregister_proof``).
        try:
            answer = await self._call("POST", "/v1/device/registration", body)
        finally:
            self.token = None
        # The MAC is kept alongside so a different --mac never reuses this token.
        self._write(REGISTER_RESPONSE, {**answer, "mac": self.mac})
        data = answer.get("data") or {}
        if data.get("assigned") and data.get("authToken") and data.get("deviceId"):
            self.device_id = str(data["deviceId"])
            self.token = str(data["authToken"])
            log.info("registered and assigned as %s", self.device_id)
            return True
        log.info("registered; waiting for assignment (%s)", answer.get("message"))
        return False

    async def keepalive(self) -> bool:
        """One keepalive and whatever it triggers; True if there is news to report now."""
        results = list(self.state.results)
        body = {
            "statusType": "keepAlive",
            **self._identity(),
            "config": {"revisionId": self.state.config_revision or ""},
            "firmware": self._firmware(),
            "commands": results,
        }
        files = (KEEPALIVE_REQUEST, KEEPALIVE_RESPONSE)
        every = self.config.statistics_interval
        if every > 0 and time.monotonic() >= self._next_statistics:
            # A statistics message does a keepalive's work and carries telemetry too.
            interfaces = host.interfaces()
            body.update(
                statusType="statistics",
                system=host.system(),
                nicCount=len(interfaces),
                interfaces=interfaces,
            )
            files = (STATISTICS_REQUEST, STATISTICS_RESPONSE)
        self._write(files[0], body)
        answer = await self._call("POST", "/v1/device/registration", body)
        self._write(files[1], answer)
        self.sent[body["statusType"]] += 1
        if body["statusType"] == "statistics":
            self._next_statistics = time.monotonic() + every
        if results:
            sent = {r["commandId"] for r in results}
            self.state.results = [r for r in self.state.results if r["commandId"] not in sent]
            self._save_state()
        data = answer.get("data") or {}
        raw_trigger = _lower(data).get("triggerevent") if isinstance(data, dict) else None
        trigger = _lower(raw_trigger) if isinstance(raw_trigger, dict) else {}
        busy = False
        # Each trigger on its own: a failing config fetch must not hold commands back.
        if trigger.get("configupdate"):
            busy |= await self._attempt("config update", self.update_config)
        if trigger.get("firmwareupdate"):
            busy |= await self._attempt("firmware update", self.update_firmware)
        if trigger.get("sendstatus"):
            await self._attempt("status", self.send_status)
        commands = trigger.get("commands") or []
        if isinstance(commands, list) and commands:
            busy |= await self.run_commands(commands)
        return busy

    async def _attempt(self, what: str, action: Callable[[], Awaitable[bool | None]]) -> bool:
        """Run one trigger's work; a refusal or network error is logged, not fatal (401
        still propagates so the loop registers again)."""
        try:
            return bool(await action())
        except Refused as error:
            log.warning("%s refused: %s", what, error)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as error:
            log.warning("%s failed: %s", what, error)
        return False

    # --- triggers -------------------------------------------------------------------------------

    async def update_config(self) -> bool:
        params = {"deviceType": self.config.device_type, "revisionID": "0"}
        self._write(CONFIG_REQUEST, {"deviceId": self.device_id, **params})
        answer = await self._call("GET", "/v1/device/config", params=params)
        self._write(CONFIG_RESPONSE, answer)
        data = answer.get("data")
        if not isinstance(data, dict) or not data.get("revisionId"):
            log.warning("config answer without a revisionId")
            return False
        revision = str(data["revisionId"])
        if revision == self.state.config_revision:
            return False
        if self.config.config_hook:
            path = self.work_dir / "config.json"
            write_json(path, data)
            code, output = await self._hook(
                self.config.config_hook, [str(path)], {"IC_REVISION_ID": revision}
            )
            if code != 0:
                log.warning(
                    "config hook failed for revision %s (exit %s): %s", revision, code, output
                )
                return False
        log.info("config revision %s applied", revision)
        self.state.config_revision = revision
        self._save_state()
        return True

    async def update_firmware(self) -> bool:
        answer = await self._call(
            "GET",
            "/v1/device/firmware",
            params={
                "deviceType": self.config.device_type,
                "deviceModel": self.config.device_model,
                "currentVersion": self.state.firmware_version or "",
            },
        )
        self._write(FIRMWARE_RESPONSE, answer)
        data = answer.get("data")
        if not isinstance(data, dict) or not data.get("version") or not data.get("url"):
            log.warning("firmware answer without a version and url")
            return False
        version = str(data["version"])
        if version == self.state.firmware_version:
            return False
        try:
            image = await self._download(data)
        except (ValueError, aiohttp.ClientError, OSError, TimeoutError) as error:
            log.warning("firmware %s not installed: %s", version, error)
            await self._firmware_status(version, "FAILED", str(error))
            return False
        self.state.upgrading = version
        self._save_state()
        try:
            code, output = (0, "")
            if self.config.firmware_hook:
                code, output = await self._hook(
                    self.config.firmware_hook, [str(image)], {"IC_FIRMWARE_VERSION": version}
                )
        finally:
            self.state.upgrading = ""
            with contextlib.suppress(OSError):
                image.unlink()
        if code != 0:
            log.warning("firmware hook failed for %s (exit %s): %s", version, code, output)
            self._save_state()
            await self._firmware_status(version, "FAILED", f"hook exit {code}: {output}")
            return False
        log.info("firmware %s installed", version)
        self.state.firmware_version = version
        self._save_state()
        return True

    async def _download(self, target: dict[str, Any]) -> Path:
        """Fetch the image, checking its size and sha256 as it streams in."""
        assert self._session is not None
        path = self.work_dir / "firmware.bin"
        digest = hashlib.sha256()
        size = 0
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self.config.request_timeout)
        async with self._session.get(str(target["url"]), timeout=timeout) as response:
            if response.status != 200:
                raise ValueError(f"download answered HTTP {response.status}")
            with path.open("wb") as sink:
                async for chunk in response.content.iter_chunked(65536):
                    digest.update(chunk)
                    size += len(chunk)
                    sink.write(chunk)
        expected_size = target.get("size")
        expected = target.get("sha256")
        try:
            if expected_size is not None and int(expected_size) != size:
                raise ValueError(f"size {size} is not the announced {expected_size}")
            if expected and digest.hexdigest() != str(expected).lower():
                raise ValueError(f"sha256 {digest.hexdigest()} is not the announced {expected}")
        except ValueError:
            path.unlink()
            raise
        return path

    async def _firmware_status(self, version: str, state: str, message: str) -> None:
        with contextlib.suppress(Refused, aiohttp.ClientError, OSError, TimeoutError):
            await self._call(
                "POST",
                "/v1/device/registration",
                {
                    "statusType": "firmwareStatus",
                    **self._identity(),
                    "version": version,
                    "state": state,
                    "message": message[:1000],
                },
            )

    async def send_status(self) -> bool:
        body = {
            "statusType": "status",
            **self._identity(),
            "system": host.system(),
            "firmware": self._firmware(),
            "config": {"revisionId": self.state.config_revision or ""},
            "interfaces": host.interfaces(),
        }
        self._write(STATUS_REQUEST, body)
        answer = await self._call("POST", "/v1/device/registration", body)
        self._write(STATUS_RESPONSE, answer)
        self.sent["status"] += 1
        return False

    async def run_commands(self, commands: list[Any]) -> bool:
        ran = False
        pending = {r["commandId"] for r in self.state.results}
        for entry in commands:
            entry = _lower(entry) if isinstance(entry, dict) else {}
            command_id = str(entry.get("commandid") or "")
            if not command_id or command_id in self.state.done or command_id in pending:
                continue  # a re-sent copy: its result is on its way
            name = str(entry.get("command") or "")
            params = entry.get("params")
            outcome = await self.execute(command_id, name, params)
            log.info(
                "command %s %s -> %s (exit %s)", command_id, name, outcome.status, outcome.exit_code
            )
            self.state.results.append(
                {
                    "commandId": command_id,
                    "status": outcome.status,
                    "exitCode": outcome.exit_code,
                    "output": outcome.output,
                    "finishedAt": int(time.time()),
                }
            )
            self.state.done.append(command_id)
            self._save_state()
            ran = True
        return ran

    async def execute(self, command_id: str, name: str, params: Any) -> Outcome:
        """Run one command: through the command hook, or the two built-ins without one."""
        if self.config.command_hook:
            code, output = await self._hook(
                self.config.command_hook,
                [name],
                {
                    "IC_COMMAND_ID": command_id,
                    "IC_COMMAND": name,
                    "IC_PARAMS": json.dumps(params if params is not None else {}),
                },
                stdin=json.dumps(params if params is not None else {}).encode(),
            )
            return Outcome("SUCCEEDED" if code == 0 else "FAILED", code, output)
        if name == "echo":
            return Outcome("SUCCEEDED", 0, json.dumps(params))
        return Outcome("FAILED", 127, f"no command hook configured to run {name!r}")

    async def _hook(
        self, command: str, args: list[str], env: dict[str, str], stdin: bytes | None = None
    ) -> tuple[int, str]:
        """Run a hook through the shell with ``args`` appended; ``(exit code, output)``."""
        line = command + "".join(" " + shlex.quote(a) for a in args)
        process = await asyncio.create_subprocess_shell(
            line,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "IC_DEVICE_ID": self.device_id or "", "IC_MAC": self.mac, **env},
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(stdin), self.config.hook_timeout)
        except TimeoutError:
            process.kill()
            await process.wait()
            return 124, f"hook timed out after {self.config.hook_timeout}s"
        text = out.decode(errors="replace")
        if len(text) > OUTPUT_LIMIT:
            text = text[:OUTPUT_LIMIT] + "…"
        return process.returncode or 0, text.rstrip("\n")


def _lower(body: dict[str, Any]) -> dict[str, Any]:
    """The keys in lower case (replies may be camelCase or lowercase)."""
    return {k.lower() if isinstance(k, str) else k: v for k, v in body.items()}
