"""Tokens: log in with a password, refresh an access token."""

from __future__ import annotations

from aiohttp import web

from tether.api.codec import LoginRequest, RefreshRequest
from tether.api.http import hub_of, json, read_body
from tether.api.spec import endpoint
from tether.api.views import TokenView

routes = web.RouteTableDef()
TAG = "auth"


@endpoint(
    routes,
    "POST",
    "/api/v1/auth/token",
    summary="Log in: an access and a refresh token.",
    tag=TAG,
    body=LoginRequest,
    response=TokenView,
    status=201,
    auth="none",
    extra_statuses={429: "Too many failed logins from this address: wait Retry-After seconds."},
)
async def login(request: web.Request) -> web.Response:
    body = await read_body(request, LoginRequest)
    _, pair = await hub_of(request).auth.login(
        body.login, body.password, source=request.remote or ""
    )
    return json(
        TokenView(access_token=pair.access_token, refresh_token=pair.refresh_token), status=201
    )


@endpoint(
    routes,
    "POST",
    "/api/v1/auth/refresh",
    summary="A new access token for a refresh token.",
    tag=TAG,
    body=RefreshRequest,
    response=TokenView,
    status=201,
    auth="none",
)
async def refresh(request: web.Request) -> web.Response:
    body = await read_body(request, RefreshRequest)
    access = await hub_of(request).auth.refresh(body.refresh_token)
    return json(TokenView(access_token=access), status=201)
