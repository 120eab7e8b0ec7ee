"""Who may read ``/metrics``: the ``metrics``, ``metrics_token`` and ``metrics_listen``
settings, over a full server on a loopback port."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from tests.support import Running, running

from tether.api.health import METRICS_URL
from tether.settings import Settings

SCRAPER = "scrape-me-0123456789"


async def status(r: Running, url: str, credential: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    async with r.session.get(url, headers=headers) as response:
        if response.status == 200:
            assert "tether_commands_created_total" in await response.text()
        return response.status


async def test_metrics_are_closed_to_strangers_by_default(tmp_path: Path) -> None:
    async with running(tmp_path, metrics_token=SCRAPER) as r:
        url = r.url + "/metrics"
        assert await status(r, url) == 401
        assert await status(r, url, "not-the-token") == 401
        assert await status(r, url, SCRAPER) == 200
        assert await status(r, url, r.token) == 200  # an admin's access token
        key = await r.call("POST", "/api/v1/apikeys", json={"name": "grafana"}, expect=201)
        assert await status(r, url, key["key"]) == 200
        await r.call(
            "POST", "/api/v1/users", json={"login": "carol", "password": "secret-1"}, expect=201
        )
        tokens = await r.call(
            "POST", "/api/v1/auth/token", json={"login": "carol", "password": "secret-1"}
        )
        assert await status(r, url, tokens["accessToken"]) == 403


@pytest.mark.parametrize(("mode", "anonymous", "admin"), [("public", 200, 200), ("off", 404, 404)])
async def test_metrics_public_or_off(tmp_path: Path, mode: str, anonymous: int, admin: int) -> None:
    async with running(tmp_path, metrics=mode) as r:
        assert await status(r, r.url + "/metrics") == anonymous
        assert await status(r, r.url + "/metrics", r.token) == admin


async def test_a_separate_metrics_listener_serves_only_metrics(tmp_path: Path) -> None:
    async with running(tmp_path, metrics="off", metrics_listen="127.0.0.1:0") as r:
        (apart,) = r.server.app[METRICS_URL]
        assert apart != r.url
        assert await status(r, apart + "/metrics") == 200
        async with r.session.get(apart + "/api/v1/users") as other:
            assert other.status == 404
        assert await status(r, r.url + "/metrics", r.token) == 404


def test_metrics_listen_must_be_host_and_port() -> None:
    for bad in ("9100", "localhost:", ":9100", "host:99999"):
        with pytest.raises(ValidationError, match="HOST:PORT"):
            Settings(metrics_listen=bad)
    assert Settings(metrics_listen="[::1]:9100").metrics_listen == "[::1]:9100"
