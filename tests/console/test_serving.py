"""How ``tether serve`` serves the console: its files, their headers, nothing else."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tether import console

Client = TestClient[web.Request, web.Application]
EXTERNAL = r"""(from\s+|src=|href=|url\(|@import\s+)["']?(https?:)?//"""


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = web.Application()
    console.mount(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_the_page_is_served_at_the_root_with_a_strict_policy(client: Client) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert response.content_type == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "style-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    assert "'unsafe-eval'" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_no_inline_script_style_or_outside_resource_anywhere() -> None:
    forbidden = {
        ".html": (" style=", "<style"),
        ".js": (".innerHTML", "eval(", '"style"', "style="),
        ".css": (),
    }
    for path in console.STATIC.rglob("*"):
        if path.suffix not in forbidden:
            continue
        text = path.read_text()
        # Nothing loaded from elsewhere: no module, script, link, image or font by URL.
        assert not re.search(EXTERNAL, text), path
        for word in forbidden[path.suffix]:
            assert word not in text, (path, word)
        if path.suffix == ".html":
            assert not re.search(r"<script(?![^>]*\bsrc=)", text), path


async def test_every_module_import_resolves(client: Client) -> None:
    """A missing or misspelled module would only show up as a blank page in a browser."""
    for path in console.STATIC.rglob("*.js"):
        for target in re.findall(r'^import .* from "(\.[^"]+)";$', path.read_text(), re.M):
            resolved = (path.parent / target).resolve().relative_to(console.STATIC)
            response = await client.get(f"/console/{resolved}")
            assert response.status == 200, (path, target)
            assert response.content_type == "text/javascript"


@pytest.mark.parametrize(
    "path", ["/console/../__init__.py", "/console/%2e%2e/__init__.py", "/console/js", "/console/x"]
)
async def test_nothing_outside_the_static_files_is_served(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
