"""What every request passes for operators: per-route metrics, connection gauges, the
access log and CORS; and ``/readyz`` naming each component. Full application, real
sockets (tests/support.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import Running, running
from tests.test_logs import json_lines, restore_logging  # noqa: F401 (a fixture)
from tether import logs
from tether.web import ATTACHED

DIALECTS = {"devicehive", "ewelink", "controlid", "opengate", "infiniteclouds"}


async def samples(server: Running) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with server.session.get(server.url + "/metrics", headers=server.auth) as r:
        assert r.status == 200
        text = await r.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_readyz_names_the_store_the_bus_and_every_dialect(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        for _ in range(200):
            async with server.session.get(server.url + "/readyz") as r:
                body = await r.json()
            if r.status == 200:
                break
            await asyncio.sleep(0.05)
        assert r.status == 200, body
        assert body["status"] == "ready"
        assert set(body["components"]) == {"store", "bus", *DIALECTS}
        assert set(body["components"].values()) == {"ok"}

        server.server.app[ATTACHED]["opengate"] = "failed to start: OSError: no route"
        async with server.session.get(server.url + "/readyz") as r:
            assert r.status == 503
            body = await r.json()
        assert body["error"]["message"] == "not ready: opengate: failed to start: OSError: no route"
        assert body["components"]["store"] == "ok"


async def test_metrics_count_and_time_requests_by_route_template(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        for device_id in ("lamp-1", "lamp-2"):
            await server.device(device_id)
            await server.call("GET", f"/api/v1/devices/{device_id}", expect=200)
        await server.call("GET", "/api/v1/devices/nobody", expect=404)
        await server.call("GET", "/no/such/path", expect=404)
        async with server.session.request("PROPFIND", server.url + "/dav") as r:
            assert r.status == 404
        seen = await samples(server)
    route = "/api/v1/devices/{device_id}"
    ok = (
        "tether_http_requests_total",
        frozenset({("method", "GET"), ("route", route), ("status", "200")}),
    )
    missing = (
        "tether_http_requests_total",
        frozenset({("method", "GET"), ("route", route), ("status", "404")}),
    )
    assert seen[ok] >= 2
    assert seen[missing] >= 1
    timed = (
        "tether_http_request_duration_seconds_count",
        frozenset({("method", "GET"), ("route", route)}),
    )
    assert seen[timed] >= 3
    # Raw paths never become labels: a path no route knows is one label value.
    routes = {dict(labels).get("route") for _, labels in seen}
    assert "/api/v1/devices/lamp-1" not in routes
    assert "/no/such/path" not in routes
    assert "unmatched" in routes
    methods = {dict(labels).get("method") for _, labels in seen}
    assert "PROPFIND" not in methods
    assert "other" in methods


async def test_connections_gauge_per_dialect(tmp_path: Path) -> None:
    async with running(tmp_path) as server:
        credential = await server.device("ws-1")
        gauge = ("tether_connections", frozenset({("dialect", "native")}))
        before = (await samples(server)).get(gauge, 0.0)
        ws = await server.session.ws_connect(
            server.ws_url + "/api/v1/device/ws?deviceId=ws-1",
            headers={"Authorization": f"Bearer {credential}"},
        )
        # Each scrape counts itself, so `before` already holds one request in progress.
        assert (await samples(server))[gauge] == before + 1
        await ws.close()
        for _ in range(100):
            if (await samples(server))[gauge] == before:
                break
            await asyncio.sleep(0.02)
        assert (await samples(server))[gauge] == before


@pytest.mark.usefixtures("restore_logging")
async def test_access_log_is_one_json_line_per_request_when_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("info", "json")
    async with running(tmp_path) as server:
        await server.call("GET", "/api/v1/devices", expect=200)
    assert not access_lines(capsys.readouterr().err)  # off by default

    secret = "s3cret-segment-42"
    async with running(tmp_path, access_log=True, controlid={"path_secret": secret}) as server:
        async with server.session.get(server.url + f"/d/{secret}/push?deviceId=7") as r:
            assert r.status == 200
        await server.device("lamp-1")
        async with server.session.get(
            server.url + "/api/v1/devices/lamp-1?token=secret",
            headers={**server.auth, "X-Request-Id": "req-42"},
        ) as r:
            assert r.status == 200
    lines = access_lines(capsys.readouterr().err)
    line = next(line for line in lines if line.get("request_id") == "req-42")
    assert str(line["message"]).startswith("GET /api/v1/devices/lamp-1 200 ")
    assert "secret" not in str(line)  # no query string in the log
    assert line["route"] == "/api/v1/devices/{device_id}"
    assert (line["status"], line["device_id"], line["method"]) == (200, "lamp-1", "GET")
    assert line["remote"] == "127.0.0.1"
    # Control iD's path secret never reaches the log.
    assert secret not in str(lines)
    assert any(line["path"] == "/d/***/push" for line in lines), lines


def access_lines(err: str) -> list[dict[str, object]]:
    return [line for line in json_lines(err) if line["logger"] == logs.ACCESS_LOGGER]


async def test_cors_preflight_and_answers_for_allowed_origins_only(tmp_path: Path) -> None:
    allowed = "https://dash.example.com"
    preflight = {
        "Origin": allowed,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with running(tmp_path) as server:  # off by default: no CORS at all
        url = server.url + "/api/v1/devices"
        async with server.session.options(url, headers=preflight) as r:
            assert r.status == 405
            assert "Access-Control-Allow-Origin" not in r.headers

    async with running(tmp_path, cors_origins=[allowed]) as server:
        url = server.url + "/api/v1/devices"
        async with server.session.options(url, headers=preflight) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == allowed
            assert r.headers["Access-Control-Allow-Methods"] == "POST"
            assert r.headers["Access-Control-Allow-Headers"] == "authorization, content-type"
            assert "Origin" in r.headers["Vary"]
        async with server.session.get(url, headers={**server.auth, "Origin": allowed}) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == allowed
            assert "X-Request-Id" in r.headers["Access-Control-Expose-Headers"]
        # An error answer carries the header too, so the page can read the error.
        async with server.session.get(url, headers={"Origin": allowed}) as r:
            assert r.status == 401
            assert r.headers["Access-Control-Allow-Origin"] == allowed
        other = {**preflight, "Origin": "https://evil.example"}
        async with server.session.options(url, headers=other) as r:
            assert r.status == 405
            assert "Access-Control-Allow-Origin" not in r.headers
        async with server.session.get(
            url, headers={**server.auth, "Origin": "https://evil.example"}
        ) as r:
            assert r.status == 200
            assert "Access-Control-Allow-Origin" not in r.headers
