"""The npm package ``ewelink-api-next`` 1.0.4 (CoolKit's v2 client), unmodified, against Tether.

The package is installed with npm into the test's own temporary folder (npm's cache makes
a repeated install take a few seconds) and a small Node script drives it against the
running server: its only redirection is the base URL of its axios instance, which it
otherwise derives from the region. Issue 18's acceptance: ``home.homePage``,
``device.setAllThingStatus`` and ``device.getOTAInfo`` answer ``{error: 0, ...}`` (they
threw "Request failed with status code 404" before), and ``user.refreshToken`` keeps the
client's ``userApiKey``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from tests.dialects.ewelink.helpers import (
    APPID,
    DEVICE,
    EMAIL,
    PASSWORD,
    SECRET,
    device_running,
    world,
)

PACKAGE = "ewelink-api-next@1.0.4"

SCRIPT = """
import eWeLink from "ewelink-api-next";

const [base, appId, appSecret, account, password, deviceId] = process.argv.slice(2);
const client = new eWeLink.WebAPI({ appId, appSecret, region: "us" });
client.endpoint = base;
client.request.defaults.baseURL = base;
const out = {};
out.login = await client.user.login({ account, password, areaCode: "+1" });
out.homePage = await client.home.homePage({
  getUser: {}, getFamily: {}, getThing: { num: 30, beginIndex: -999999 }, getScene: {},
});
out.setAllThingStatus = await client.device.setAllThingStatus({
  thingList: [{ type: 1, id: deviceId, params: { switch: "on" } }],
  timeout: 3000,
});
out.getOTAInfo = await client.device.getOTAInfo({
  deviceInfoList: [{ deviceId, model: "ITA-GZ1-GL", version: "1.5.5" }],
});
const before = client.userApiKey;
out.refreshToken = await client.user.refreshToken({});
out.apiKeyKept = before !== "" && client.userApiKey === before;
console.log(JSON.stringify(out));
"""


def tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are required in CI (the ewelink-api-next acceptance)")
        pytest.skip("node or npm is not installed (needed to run the npm ewelink-api-next)")
    return node, npm


async def run(*command: str, cwd: Path, timeout: float) -> str:
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"{command[:2]} took over {timeout} s") from None
    assert process.returncode == 0, (command, err.decode()[-3000:])
    return out.decode()


def prepare(folder: Path) -> None:
    """The client's folder: a private package and the script that drives the client."""
    folder.mkdir()
    (folder / "package.json").write_text('{"name": "tether-ewelink-acceptance", "private": true}')
    (folder / "drive.mjs").write_text(SCRIPT)


async def install(npm: str, folder: Path) -> None:
    prepare(folder)
    await run(
        npm, "install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error",
        PACKAGE, cwd=folder, timeout=180,
    )  # fmt: skip


async def test_ewelink_api_next_home_batch_ota_and_refresh(tmp_path: Path) -> None:
    node, npm = tools()
    client = tmp_path / "client"
    await install(npm, client)
    async with world(tmp_path) as w:
        await w.add_device()
        admin = await w.hub.auth.principal(w.r.token)
        url = "http://127.0.0.1:9/ota/user1.bin"
        await w.hub.twins.set_firmware(
            admin, version="1.6.0", url=url, sha256="ab" * 32, device_id=DEVICE
        )
        async with device_running(w) as device:
            args = (w.r.url, APPID, SECRET, EMAIL, PASSWORD, DEVICE)
            out: dict[str, Any] = json.loads(
                await run(node, "drive.mjs", *args, cwd=client, timeout=60)
            )
            assert device.params["switch"] == "on"
    assert out["login"]["error"] == 0, out["login"]
    page = out["homePage"]
    assert page["error"] == 0, page
    assert page["data"]["userInfo"]["email"] == EMAIL
    assert [t["itemData"]["deviceid"] for t in page["data"]["thingInfo"]["thingList"]] == [DEVICE]
    batch = out["setAllThingStatus"]
    assert batch["error"] == 0, batch
    assert batch["data"]["respList"] == [{"type": 1, "id": DEVICE, "error": 0}]
    ota = out["getOTAInfo"]
    assert ota["error"] == 0, ota
    assert [(i["deviceid"], i["version"]) for i in ota["data"]["otaInfoList"]] == [
        (DEVICE, "1.6.0")
    ]
    assert out["refreshToken"]["error"] == 0, out["refreshToken"]
    assert out["apiKeyKept"] is True
