"""Two nodes on one PostgreSQL and one Redis bus: every operation is POSTed exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web
from tests.dialects.opengate.conftest import og_device, wait_state
from tests.dialects.opengate.test_dispatcher import fake_device, final_for
from tests.support import running

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_two_nodes_dispatch_each_operation_once(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    posted: Counter[str] = Counter()

    async def device(request: web.Request) -> web.Response:
        body = await request.json()
        posted[body["operation"]["request"]["id"]] += 1
        await asyncio.sleep(0.05)  # leave the other node time to race for it
        return web.json_response(final_for(body), status=201)

    shared = {"database_url": postgres_url, "bus": "redis", "redis_url": redis_url}
    async with (
        fake_device(device) as url,
        running(tmp_path / "a", node_id="og-node-a", **shared) as a,
        running(tmp_path / "b", node_id="og-node-b", **shared) as b,
    ):
        await og_device(a, "og-c1", endpoint=url)
        await og_device(a, "og-c2", endpoint=url)
        made = []
        for i in range(10):
            node = a if i % 2 else b
            device_id = "og-c1" if i % 3 else "og-c2"
            made.append(
                await node.call(
                    "POST",
                    f"/api/v1/devices/{device_id}/commands",
                    json={"name": "REBOOT_EQUIPMENT"},
                    expect=201,
                )
            )
        for command in made:
            done = await wait_state(a, command["id"], {"succeeded", "failed"})
            assert done["state"] == "succeeded"
        await asyncio.sleep(0.5)  # a duplicate POST would land by now
    assert sorted(posted) == sorted(c["ref"] for c in made)
    assert set(posted.values()) == {1}
