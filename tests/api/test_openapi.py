"""The OpenAPI document: valid 3.1, complete, and readable at /api/v1/docs."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

import tether.api.routes  # noqa: F401 - registers every native endpoint, not just ours
from tether.api import openapi, spec
from tether.api.views import NetworkView

if TYPE_CHECKING:
    from conftest import Api


def doc_path(path: str) -> str:
    return re.sub(r"\{([^}:]+)(?::[^}]*)?\}", r"{\1}", path)


async def test_document_validates_and_lists_every_endpoint(api: Api) -> None:
    doc: dict[str, Any] = await api.call("GET", "/api/v1/openapi.json", anonymous=True)
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert doc["openapi"].startswith("3.1")

    listed = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    registered = {(ep.method, doc_path(ep.path)) for ep in spec.ENDPOINTS}
    assert listed == registered
    for method, path in [
        ("POST", "/api/v1/auth/token"),
        ("GET", "/api/v1/users/{user_id}"),
        ("PUT", "/api/v1/users/{user_id}/networks/{network_id}"),
        ("DELETE", "/api/v1/apikeys/{key_id}"),
        ("GET", "/api/v1/device-types"),
        ("PATCH", "/api/v1/devices/{device_id}/state"),
        ("GET", "/api/v1/notifications/{notification_id}"),
        ("POST", "/api/v1/config-revisions"),
        ("DELETE", "/api/v1/firmware-targets/{target_id}"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/api/v1/openapi.json"),
        ("POST", "/api/v1/devices/{device_id}/commands"),  # registered by commands_routes
    ]:
        assert (method, path) in listed, (method, path)
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


async def test_operations_are_described(api: Api) -> None:
    doc: dict[str, Any] = await api.call("GET", "/api/v1/openapi.json", anonymous=True)
    schemas = doc["components"]["schemas"]
    assert {"ErrorView", "UserView", "DeviceView", "LoginRequest", "TokenView"} <= set(schemas)
    assert "accessToken" in schemas["TokenView"]["properties"]
    assert "bearerAuth" in doc["components"]["securitySchemes"]

    get_user = doc["paths"]["/api/v1/users/{user_id}"]["get"]
    assert get_user["security"]
    assert get_user["tags"] == ["users"]
    (param,) = get_user["parameters"]
    assert param == {
        "name": "user_id",
        "in": "path",
        "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        "required": True,
        "description": "User id.",
    }
    ok = get_user["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/UserView"}
    for code in ("400", "401", "403", "404"):
        error = get_user["responses"][code]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorView"}

    listing = doc["paths"]["/api/v1/devices"]["get"]
    names = [p["name"] for p in listing["parameters"]]
    assert {"networkId", "namePattern", "sort", "desc", "skip", "take"} <= set(names)
    items = listing["responses"]["200"]["content"]["application/json"]["schema"]
    assert items == {"type": "array", "items": {"$ref": "#/components/schemas/DeviceView"}}

    login = doc["paths"]["/api/v1/auth/token"]["post"]
    assert login["security"] == []
    body = login["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/LoginRequest"}
    assert "201" in login["responses"]

    delete = doc["paths"]["/api/v1/networks/{network_id}"]["delete"]
    assert "content" not in delete["responses"]["204"]
    assert "409" not in delete["responses"]
    assert "409" in doc["paths"]["/api/v1/networks"]["post"]["responses"]
    assert "text/plain" in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert "503" in doc["paths"]["/readyz"]["get"]["responses"]


async def test_document_is_rebuilt_when_endpoints_are_added(api: Api) -> None:
    first = await api.call("GET", "/api/v1/openapi.json", anonymous=True)
    extra = web.RouteTableDef()

    async def handler(request: web.Request) -> web.Response:
        raise NotImplementedError

    spec.endpoint(
        extra,
        "GET",
        r"/api/v1/extra/{thing_id:\d+}",
        summary="Extra.",
        tag="extra",
        response=NetworkView,
    )(handler)
    try:
        second = await api.call("GET", "/api/v1/openapi.json", anonymous=True)
        assert "/api/v1/extra/{thing_id}" not in first["paths"]
        operation = second["paths"]["/api/v1/extra/{thing_id}"]["get"]
        assert operation["parameters"][0]["name"] == "thing_id"
        validate(second, cls=OpenAPIV31SpecValidator)
    finally:
        spec.ENDPOINTS[:] = [ep for ep in spec.ENDPOINTS if ep.tag != "extra"]
    assert openapi.build_document()["paths"].keys() == first["paths"].keys()


async def test_docs_page_is_self_contained(api: Api) -> None:
    response = await api.client.get("/api/v1/docs")
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    assert "/api/v1/openapi.json" in html
    assert "<script" in html
    # Nothing is loaded from elsewhere: no external scripts, styles or fonts.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert "cdn" not in html.lower()
    assert "connect-src 'self'" in response.headers["Content-Security-Policy"]
