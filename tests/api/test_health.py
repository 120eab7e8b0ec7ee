"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from tether.core.errors import Unavailable

if TYPE_CHECKING:
    from conftest import Api


async def test_healthz(api: Api) -> None:
    assert await api.call("GET", "/healthz", anonymous=True) == {"status": "ok"}


async def test_readyz(api: Api) -> None:
    assert await api.call("GET", "/readyz", anonymous=True) == {
        "status": "ready",
        "components": {"store": "ok", "bus": "ok"},
    }


@pytest.mark.parametrize(
    "failure", [Unavailable("redis is down"), ConnectionRefusedError("refused"), TimeoutError()]
)
async def test_readyz_is_503_when_a_backend_fails(
    api: Api, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    async def broken() -> None:
        raise failure

    monkeypatch.setattr(api.hub.bus, "ping", broken)
    body = await api.call("GET", "/readyz", anonymous=True, expect=503)
    assert body["error"]["code"] == "unavailable"
    # The failing component is named, and the others still say they are fine.
    assert body["error"]["message"].startswith("not ready: bus: ")
    assert body["components"]["store"] == "ok"
    assert body["components"]["bus"] != "ok"
    # Liveness is unaffected.
    assert await api.call("GET", "/healthz", anonymous=True) == {"status": "ok"}


async def test_readyz_is_503_before_start(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.hub, "started", False)
    body = await api.call("GET", "/readyz", anonymous=True, expect=503)
    assert body["error"]["code"] == "unavailable"


async def test_metrics(api: Api) -> None:
    await api.device("m-1")
    device = await api.hub.directory.device("m-1")
    assert device is not None
    await api.hub.notifications.post_as_device(device, "temp", {"c": 20})
    response = await api.client.get("/metrics", headers=api.admin)
    assert response.status == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    text = await response.text()
    assert "tether_notifications_stored_total" in text
    assert "python_info" in text or "process_" in text
