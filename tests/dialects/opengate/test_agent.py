"""The device agent in-process, on a real socket: its HTTP service and its answers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from tests.dialects.opengate.conftest import free_port

from tether.dialects.opengate.agent import AgentConfig, OpenGateAgent


@contextlib.asynccontextmanager
async def served(**config: Any) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    port = free_port()
    async with aiohttp.ClientSession() as session:
        agent = OpenGateAgent(
            AgentConfig(
                device_id="dev-1",
                api_key="k",
                platform_url="http://127.0.0.1:1",
                port=port,
                **config,
            ),
            session,
        )
        runner = web.AppRunner(agent.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield f"http://127.0.0.1:{port}/v80/devices/dev-1/operation/request", session
        finally:
            await runner.cleanup()


def request(name: str, parameters: Any) -> dict[str, Any]:
    return {
        "operation": {
            "request": {"id": "op-1", "name": name, "parameters": parameters, "timestamp": 1}
        }
    }


async def test_sync_answers_in_the_reply() -> None:
    async with served(expect_key="secret") as (url, session):
        body = request("UPDATE", [{"name": "bundleVersion", "value": {"string": "2"}}])
        async with session.post(url, json=body, headers={"X-ApiKey": "secret"}) as r:
            assert r.status == 201
            answer = (await r.json())["operation"]["response"]
        assert answer["id"] == "op-1"
        assert answer["resultCode"] == "SUCCESSFUL"
        assert [s["name"] for s in answer["steps"]] == [
            "DOWNLOADFILE",
            "BEGININSTALL",
            "ENDINSTALL",
            "ENDUPDATE",
        ]
        assert answer["steps"][0]["description"] == "DOWNLOADFILE of 2"
        async with session.post(
            url,
            json=request(
                "GET_DEVICE_PARAMETERS", {"variableList": [{"variableName": "device.cpu.usage"}]}
            ),
            headers={"X-ApiKey": "secret"},
        ) as r:
            rows = (await r.json())["operation"]["response"]["steps"][0]["response"]
        assert rows[0]["variableValue"] == 12.5
        async with session.post(
            url, json=request("WHATEVER", {}), headers={"X-ApiKey": "secret"}
        ) as r:
            assert (await r.json())["operation"]["response"]["resultCode"] == "NOT_SUPPORTED"


async def test_refuses_wrong_key_and_malformed_requests() -> None:
    async with served(expect_key="secret") as (url, session):
        async with session.post(url, json=request("REBOOT_EQUIPMENT", {})) as r:
            assert r.status == 401
        async with session.post(url, json={"operation": {}}, headers={"X-ApiKey": "secret"}) as r:
            assert r.status == 400
        async with session.post(url, data=b"{nope", headers={"X-ApiKey": "secret"}) as r:
            assert r.status == 400
