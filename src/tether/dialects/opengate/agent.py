"""The device side of OpenGate: an agent that serves ``operation/request`` and calls back.

It plays a real OpenGate device (the role of the vendor's ODA or device emulators) for
trying Tether without hardware and for the end-to-end tests:

* **platform-driven**: an HTTP service on its own port receives operation requests and
  answers synchronously (the final response in the 201 reply) or asynchronously (an empty
  201, then partial responses with steps and a final one POSTed to
  ``/south/v80/devices/{id}/operation/response``);
* **device-driven**: it wakes, asks ``operation/pending`` until 204, executes and answers
  each operation, then sleeps.

Operations: ``REBOOT_EQUIPMENT``, ``UPDATE`` (DOWNLOADFILE, BEGININSTALL and ENDINSTALL as
partial responses, then ENDUPDATE with the result), ``REFRESH_INFO`` (posts its info to
``collect/iot`` first), ``GET_DEVICE_PARAMETERS``/``SET_DEVICE_PARAMETERS`` (a small
variable table), ``SET_CLOCK_EQUIPMENT``, ``EQUIPMENT_DIAGNOSTIC``; anything else answers
``NOT_SUPPORTED``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import msgspec
from aiohttp import web

from tether.core.errors import BadRequest
from tether.dialects.opengate import codec

log = logging.getLogger("tether.agent.opengate")

#: Operation names remembered in ``OpenGateAgent.handled`` (the newest ones).
HANDLED_KEPT = 1_000

Mode = Literal["sync", "async"]
#: A step as the device reports it: ``(name, result, description, response)``.
StepTuple = tuple[str, str, str, Any]
UPDATE_PARTIAL = ("DOWNLOADFILE", "BEGININSTALL", "ENDINSTALL")
UPDATE_FINAL = "ENDUPDATE"


def _ms() -> int:
    return int(time.time() * 1000)


def step(
    name: str, result: str = "SUCCESSFUL", description: str = "", response: Any = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "timestamp": _ms(),
        "result": result,
        "description": description,
    }
    if response is not None:
        body["response"] = response
    return body


@dataclass
class AgentConfig:
    device_id: str
    api_key: str
    #: Tether's base URL (the OpenGate platform), e.g. ``http://127.0.0.1:8080``.
    platform_url: str
    host: str = "127.0.0.1"
    port: int = 1123
    mode: Mode = "sync"
    request_path: str = "/v80/devices/{device_id}/operation/request"
    #: X-ApiKey the platform must send on operation requests (None: not checked).
    expect_key: str | None = None
    #: Operations answered synchronously even in async mode (a mixed device).
    sync_ops: frozenset[str] = frozenset()
    #: Pause between partial responses (seconds), so progress is observable.
    step_delay: float = 0.1
    variables: dict[str, Any] = field(
        default_factory=lambda: {"device.cpu.usage": 12.5, "device.temperature.value": 21.4}
    )


class OpenGateAgent:
    def __init__(self, config: AgentConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self._session = session
        self._tasks: set[asyncio.Task[None]] = set()
        self.handled: list[str] = []

    # --- the platform side of the agent -------------------------------------------------

    def _url(self, tail: str) -> str:
        base = self.config.platform_url.rstrip("/")
        return f"{base}/south/v80/devices/{quote(self.config.device_id, safe='')}/{tail}"

    @property
    def _headers(self) -> dict[str, str]:
        return {"X-ApiKey": self.config.api_key, "Content-Type": "application/json"}

    async def post_response(self, body: dict[str, Any]) -> None:
        async with self._session.post(
            self._url("operation/response"), data=msgspec.json.encode(body), headers=self._headers
        ) as reply:
            if reply.status != 201:
                raise RuntimeError(
                    f"operation/response answered {reply.status}: {await reply.text()}"
                )

    async def collect(self, datastreams: list[dict[str, Any]]) -> None:
        body = {"version": "8.0", "datastreams": datastreams}
        async with self._session.post(
            self._url("collect/iot"), data=msgspec.json.encode(body), headers=self._headers
        ) as reply:
            if reply.status != 201:
                raise RuntimeError(f"collect/iot answered {reply.status}: {await reply.text()}")

    async def fetch_pending(self) -> codec.OperationRequest | None:
        async with self._session.get(self._url("operation/pending"), headers=self._headers) as r:
            if r.status == 204:
                return None
            if r.status != 200:
                raise RuntimeError(f"operation/pending answered {r.status}: {await r.text()}")
            return codec.parse_request(await r.json())

    # --- executing operations -----------------------------------------------------------

    def _respond(
        self,
        request: codec.OperationRequest,
        steps: list[dict[str, Any]],
        code: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        return codec.response_envelope(
            id=request.id,
            name=request.name,
            device_id=self.config.device_id,
            steps=steps,
            result_code=code,
            description=description,
            timestamp=_ms(),
        )

    async def execute(
        self,
        request: codec.OperationRequest,
        partial: Callable[[dict[str, Any]], Awaitable[None]] | None,
    ) -> dict[str, Any]:
        """Run the operation; report partial steps through ``partial`` (async mode) or
        gather them into the final response (sync mode). Returns the final response."""
        name, params = request.name, request.parameters
        self.handled.append(name)
        if len(self.handled) > HANDLED_KEPT:
            del self.handled[0]
        log.info("operation %s %s %s", request.id, name, params)
        if name == "REBOOT_EQUIPMENT":
            kind = params.get("type", "HARDWARE")
            return self._respond(
                request,
                [step(name, description=f"{kind} reboot done")],
                "SUCCESSFUL",
                "Success",
            )
        if name == "UPDATE":
            done: list[dict[str, Any]] = []
            for stage in UPDATE_PARTIAL:
                item = step(stage, description=f"{stage} of {params.get('bundleVersion', '?')}")
                if partial is not None:
                    await partial(self._respond(request, [item]))
                    await asyncio.sleep(self.config.step_delay)
                else:
                    done.append(item)
            done.append(step(UPDATE_FINAL, description="update finished"))
            return self._respond(request, done, "SUCCESSFUL", "Operation finished with no errors.")
        if name == "REFRESH_INFO":
            await self.collect(
                [
                    {"id": key, "datapoints": [{"at": _ms(), "value": value}]}
                    for key, value in self.config.variables.items()
                ]
            )
            return self._respond(request, [step(name)], "SUCCESSFUL", "Info sent")
        if name == "GET_DEVICE_PARAMETERS":
            rows = []
            for item in params.get("variableList", []):
                key = str(item.get("variableName") if isinstance(item, dict) else item)
                known = key in self.config.variables
                rows.append(
                    {
                        "variableName": key,
                        "variableValue": self.config.variables.get(key),
                        "resultCode": "SUCCESS" if known else "NON_EXISTENT",
                        "resultDescription": "SUCCESS" if known else "No datastream found",
                    }
                )
            return self._respond(request, [step(name, response=rows)], "SUCCESSFUL", "No Error.")
        if name == "SET_DEVICE_PARAMETERS":
            for item in params.get("variableList", []):
                self.config.variables[item["variableName"]] = item.get("variableValue")
            return self._respond(request, [step(name)], "SUCCESSFUL", "Parameters set")
        if name in ("SET_CLOCK_EQUIPMENT", "EQUIPMENT_DIAGNOSTIC", "DIAGNOSTIC"):
            return self._respond(request, [step(name)], "SUCCESSFUL", "Success")
        return self._respond(request, [], "NOT_SUPPORTED", "Operation not supported by the device")

    # --- platform-driven: the HTTP service ----------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        path = self.config.request_path.replace("{device_id}", self.config.device_id)
        app.router.add_post(path, self.on_request)
        return app

    async def on_request(self, http: web.Request) -> web.Response:
        if self.config.expect_key is not None and (
            http.headers.get("X-ApiKey") != self.config.expect_key
        ):
            return web.json_response({"error": "wrong X-ApiKey"}, status=401)
        try:
            request = codec.parse_request(await http.json())
        except (ValueError, BadRequest) as error:
            return web.json_response({"error": str(error)}, status=400)
        if self.config.mode == "sync" or request.name in self.config.sync_ops:
            final = await self.execute(request, None)
            return web.json_response(final, status=201)
        task = asyncio.create_task(self._run_async(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.Response(status=201)

    async def _run_async(self, request: codec.OperationRequest) -> None:
        try:
            await asyncio.sleep(self.config.step_delay)
            final = await self.execute(request, self.post_response)
            await self.post_response(final)
        except Exception:
            log.exception("operation %s failed to report", request.id)

    # --- device-driven ------------------------------------------------------------------

    async def drain_pending(self) -> int:
        """Fetch and answer pending operations until there are none; returns how many."""
        count = 0
        while True:
            request = await self.fetch_pending()
            if request is None:
                return count
            final = await self.execute(request, self.post_response)
            await self.post_response(final)
            count += 1

    async def wake_loop(self, sleep: float, cycles: int | None = None) -> None:
        """Wake, drain pending operations, sleep; ``cycles`` bounds it (None: forever)."""
        done = 0
        while cycles is None or done < cycles:
            try:
                handled = await self.drain_pending()
                log.info("woke up: %d pending operation(s) handled", handled)
            except (aiohttp.ClientError, RuntimeError, OSError) as error:
                log.warning("wake-up failed: %s", error)
            done += 1
            if cycles is None or done < cycles:
                await asyncio.sleep(sleep)
