"""Outbound delivery: retries, expiry, refusals, encodings, TLS, isolation between devices.

The devices here are small aiohttp services on real loopback sockets, so each test controls
exactly what the "device" answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web
from tests.dialects.opengate.conftest import free_port, og_device, wait_state
from tests.support import Running, running

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def fake_device(
    handler: Handler,
    path: str = "/v80/devices/{device_id}/operation/request",
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    await site.start()
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def final_for(body: dict[str, Any], code: str = "SUCCESSFUL") -> dict[str, Any]:
    request = body["operation"]["request"]
    return {
        "version": "9.0",
        "operation": {
            "response": {
                "id": request["id"],
                "name": request["name"],
                "resultCode": code,
                "resultDescription": "done",
                "steps": [{"name": request["name"], "result": "SUCCESSFUL"}],
            }
        },
    }


async def create(
    tether: Running, device_id: str, name: str = "REBOOT_EQUIPMENT", **extra: Any
) -> dict[str, Any]:
    made: dict[str, Any] = await tether.call(
        "POST",
        f"/api/v1/devices/{device_id}/commands",
        json={"name": name, **extra},
        expect=201,
    )
    return made


FAST = {"retry_initial": 0.1, "retry_max": 0.3, "request_timeout": 2.0}


async def test_unreachable_device_is_retried_then_failed_at_expiry(tmp_path: Path) -> None:
    async with running(tmp_path, opengate=FAST) as tether:
        await og_device(tether, "og-dead", endpoint=f"http://127.0.0.1:{free_port()}")
        made = await create(tether, "og-dead", lifetime=3)
        done = await wait_state(tether, made["id"], {"failed", "expired"})
        assert done["state"] == "failed"
        assert done["status"] == "UNREACHABLE"
        assert done["error"].startswith("device unreachable until the operation expired, after ")
        assert "Connect" in done["error"]  # the connection error is named
        attempts = int(done["error"].split("after ")[1].split(" ")[0])
        assert attempts >= 2
        assert done["sentAt"] is not None
        assert done["deliveredAt"] is None


async def test_5xx_is_retried_then_sync_answer_completes(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    headers: list[str | None] = []

    async def device(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        headers.append(request.headers.get("X-ApiKey"))
        if len(seen) < 3:
            return web.Response(status=503, text="booting")
        return web.json_response(final_for(body), status=201)

    path = "/v70/devices/{device_id}/operation/requests"
    async with fake_device(device, path) as url, running(tmp_path, opengate=FAST) as tether:
        await og_device(
            tether,
            "og-v7",
            endpoint=url,
            request_path=path,
            parameter_encoding="typed_array",
            api_key="device-side-key",
        )
        made = await create(tether, "og-v7", parameters={"type": "HARDWARE"})
        done = await wait_state(tether, made["id"], {"succeeded", "failed"})
    assert done["state"] == "succeeded"
    assert len(seen) == 3
    assert {b["operation"]["request"]["id"] for b in seen} == {made["ref"]}
    request = seen[0]["operation"]["request"]
    assert request["parameters"] == [{"name": "type", "value": {"string": "HARDWARE"}}]
    assert request["deviceId"] == "og-v7"
    assert headers == ["device-side-key"] * 3


async def test_device_refusing_with_400_fails_the_command(tmp_path: Path) -> None:
    async def device(request: web.Request) -> web.Response:
        return web.Response(status=400, text="unsupported operation")

    async with fake_device(device) as url, running(tmp_path, opengate=FAST) as tether:
        await og_device(tether, "og-400", endpoint=url)
        made = await create(tether, "og-400", name="DISCOVER")
        done = await wait_state(tether, made["id"], {"failed"})
    assert done["status"] == "NOT_SUPPORTED"
    assert "HTTP 400 unsupported operation" in done["error"]


async def test_slow_device_does_not_stall_others_and_cancel_stops_retries(
    tmp_path: Path,
) -> None:
    release = asyncio.Event()
    calls = {"slow": 0, "fast": 0}

    async def slow(request: web.Request) -> web.Response:
        calls["slow"] += 1
        await release.wait()
        return web.Response(status=201)

    async def fast(request: web.Request) -> web.Response:
        calls["fast"] += 1
        return web.json_response(final_for(await request.json()), status=201)

    settings = {**FAST, "request_timeout": 30.0}
    async with (
        fake_device(slow) as slow_url,
        fake_device(fast) as fast_url,
        running(tmp_path, opengate=settings) as tether,
    ):
        await og_device(tether, "og-slow", endpoint=slow_url)
        await og_device(tether, "og-fast", endpoint=fast_url)
        stuck = await create(tether, "og-slow")
        for _ in range(3):
            made = await create(tether, "og-fast")
            done = await wait_state(tether, made["id"], {"succeeded"}, timeout=20)
            assert done["state"] == "succeeded"
        assert calls["fast"] == 3
        now = await tether.call("GET", f"/api/v1/commands/{stuck['id']}", expect=200)
        assert now["state"] == "sent"
        release.set()
        await wait_state(tether, stuck["id"], {"delivered"})

        # A command cancelled while its device is unreachable is not retried further.
        await og_device(tether, "og-gone", endpoint=f"http://127.0.0.1:{free_port()}")
        gone = await create(tether, "og-gone", lifetime=60)
        await wait_state(tether, gone["id"], {"sent"})
        await tether.call("POST", f"/api/v1/commands/{gone['id']}/cancel", expect=200)
        dispatcher = tether.server.app[_dispatcher_key()]["dispatcher"]
        async with asyncio.timeout(20):  # the retry loop notices and lets go
            while gone["id"] in dispatcher.attempts:
                await asyncio.sleep(0.05)
        tries = dispatcher.attempts.get(gone["id"], 0)
        await asyncio.sleep(0.8)  # longer than retry_max: no further attempt starts
        assert dispatcher.attempts.get(gone["id"], 0) == tries == 0
        final = await tether.call("GET", f"/api/v1/commands/{gone['id']}", expect=200)
        assert final["state"] == "cancelled"


def _dispatcher_key() -> Any:
    from tether.dialects.opengate import DISPATCHER

    return DISPATCHER


async def test_tls_to_devices_verify_on_with_ca_and_off(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def device(request: web.Request) -> web.Response:
        return web.json_response(final_for(await request.json()), status=201)

    async with fake_device(device, ssl_context=server_ctx) as url:
        # Verified against the configured CA.
        async with running(tmp_path / "a", opengate={**FAST, "tls_ca": str(ca_file)}) as tether:
            await og_device(tether, "og-tls", endpoint=url)
            done = await wait_state(
                tether, (await create(tether, "og-tls"))["id"], {"succeeded", "failed"}
            )
            assert done["state"] == "succeeded"
        # Without the CA the certificate is refused; with tls_verify off it is accepted.
        async with running(tmp_path / "b", opengate=FAST) as tether:
            await og_device(tether, "og-tls", endpoint=url)
            await og_device(tether, "og-tls-off", endpoint=url, tls_verify=False)
            refused = await create(tether, "og-tls", lifetime=3)
            accepted = await create(tether, "og-tls-off")
            done = await wait_state(tether, accepted["id"], {"succeeded", "failed"})
            assert done["state"] == "succeeded"
            done = await wait_state(tether, refused["id"], {"failed", "expired"})
            assert done["state"] == "failed"
            assert "certificate" in done["error"].lower()


async def test_endpoint_set_after_creation_is_found_by_the_rescan(tmp_path: Path) -> None:
    async def device(request: web.Request) -> web.Response:
        return web.json_response(final_for(await request.json()), status=201)

    async with (
        fake_device(device) as url,
        running(tmp_path, opengate={**FAST, "rescan_interval": 0.3}) as tether,
    ):
        await og_device(tether, "og-late")  # no endpoint yet
        made = await create(tether, "og-late")
        await tether.call(
            "PATCH", "/api/v1/devices/og-late", json={"attributes": {"endpoint": url}}, expect=200
        )
        done = await wait_state(tether, made["id"], {"succeeded", "failed"})
        assert done["state"] == "succeeded"


async def test_odd_device_answers(tmp_path: Path) -> None:
    answers: list[web.Response] = []

    async def device(request: web.Request) -> web.Response:
        await request.read()
        return answers.pop(0)

    async with fake_device(device) as url, running(tmp_path, opengate=FAST) as tether:
        await og_device(tether, "og-odd", endpoint=url)
        # 2xx with a body that is not a response: an acknowledgement (async device).
        answers.append(web.Response(status=200, text="OK"))
        made = await create(tether, "og-odd")
        assert (await wait_state(tether, made["id"], {"delivered"}))["steps"] == []
        # 2xx carrying another operation's response: acknowledged, the response ignored.
        wrong = final_for({"operation": {"request": {"id": "not-this-one", "name": "X"}}})
        answers.append(web.json_response(wrong, status=201))
        made = await create(tether, "og-odd")
        done = await wait_state(tether, made["id"], {"delivered"})
        assert done["result"] is None
        # 404: the device has no such service; failed at once with the reason.
        answers.append(web.Response(status=404, text="no route"))
        made = await create(tether, "og-odd")
        done = await wait_state(tether, made["id"], {"failed"})
        assert done["status"] == "ERROR_PROCESSING"
        assert done["error"] == "device refused the operation: HTTP 404 no route"


async def test_client_certificate_towards_devices(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # the device insists on a client certificate
    client = ca.issue_cert(common_name="tether-platform")
    files = {n: tmp_path / f"{n}.pem" for n in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    peers: list[Any] = []

    async def device(request: web.Request) -> web.Response:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peercert"))
        return web.json_response(final_for(await request.json()), status=201)

    tls = {
        "tls_ca": str(files["ca"]),
        "client_cert": str(files["cert"]),
        "client_key": str(files["key"]),
    }
    async with (
        fake_device(device, ssl_context=server_ctx) as url,
        running(tmp_path / "s", opengate={**FAST, **tls}) as tether,
    ):
        await og_device(tether, "og-cc", endpoint=url)
        await og_device(tether, "og-bad-url", endpoint="ftp://example")
        done = await wait_state(
            tether, (await create(tether, "og-cc"))["id"], {"succeeded", "failed"}
        )
        assert done["state"] == "succeeded"
        bad = await wait_state(tether, (await create(tether, "og-bad-url"))["id"], {"failed"})
        assert "is not an http:// or https:// URL" in bad["error"]
    subject = dict(item for rdn in peers[0]["subject"] for item in rdn)
    assert subject["commonName"] == "tether-platform"


async def test_abandoned_claims_are_taken_over_live_ones_are_not(tmp_path: Path) -> None:
    posted: list[str] = []

    async def device(request: web.Request) -> web.Response:
        body = await request.json()
        posted.append(body["operation"]["request"]["id"])
        return web.json_response(final_for(body), status=201)

    async with (
        fake_device(device) as url,
        running(tmp_path, opengate={**FAST, "rescan_interval": 0.3}) as tether,
    ):
        await og_device(tether, "og-claims")  # no endpoint yet: nothing is dispatched
        abandoned = await create(tether, "og-claims")
        held = await create(tether, "og-claims")
        state = tether.hub.dialect_state
        # A node that died mid-retry (lease over), and a live node still working on one.
        await state.put("opengate", f"dispatch:{abandoned['id']}", "dead-node|1.0")
        await state.put("opengate", f"dispatch:{held['id']}", "busy-node|99999999999.0")
        await tether.call(
            "PATCH",
            "/api/v1/devices/og-claims",
            json={"attributes": {"endpoint": url}},
            expect=200,
        )
        done = await wait_state(tether, abandoned["id"], {"succeeded", "failed"})
        assert done["state"] == "succeeded"
        await asyncio.sleep(1.0)  # several re-scans
        still = await tether.call("GET", f"/api/v1/commands/{held['id']}", expect=200)
        assert still["state"] == "pending"
        assert posted == [abandoned["ref"]]
        # the claim of a finished dispatch is released
        assert await state.get("opengate", f"dispatch:{abandoned['id']}") is None
