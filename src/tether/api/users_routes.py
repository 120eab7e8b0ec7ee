"""Users, the current user, network grants and API keys."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tether.api.auth import principal_of
from tether.api.codec import ApiKeyCreate, UserCreate, UserUpdate
from tether.api.http import hub_of, json, path_int, read_body
from tether.api.management import (
    current_user_id,
    no_content,
    paging,
    query_choice,
    query_opt_int,
    query_str,
    read_patch,
    sorts,
)
from tether.api.spec import PAGING, Param, endpoint
from tether.api.views import ApiKeyView, UserView, api_key_view, user_view
from tether.core.errors import BadRequest
from tether.core.model import Role, UserStatus

routes = web.RouteTableDef()
TAG = "users"
KEYS_TAG = "api-keys"

USER_SORTS = sorts("id", "login", "role", "status", "created_at", "last_login")
USER_ID = Param("user_id", "path", "integer", "User id.", required=True)
NETWORK_ID = Param("network_id", "path", "integer", "Network id.", required=True)
KEY_ID = Param("key_id", "path", "integer", "API key id.", required=True)
USER_NULLABLE = frozenset({"data"})
#: Longest API key lifetime one may ask for (100 years), seconds.
MAX_KEY_LIFETIME = 100 * 365 * 86_400


def _user_fields(fields: dict[str, Any]) -> dict[str, Any]:
    if "role" in fields:
        fields["role"] = Role(fields["role"])
    if "status" in fields:
        fields["status"] = UserStatus(fields["status"])
    return fields


@endpoint(
    routes,
    "GET",
    "/api/v1/users",
    summary="List users (admin).",
    tag=TAG,
    response=list[UserView],
    params=(
        Param("login", description="Exact login."),
        Param("loginPattern", description="Login LIKE pattern (% and _ wildcards)."),
        Param("role", description="admin or client."),
        Param("status", description="active, locked or disabled."),
        *PAGING,
    ),
)
async def list_users(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    role = query_choice(request, "role", (r.value for r in Role))
    status = query_choice(request, "status", (s.value for s in UserStatus))
    users = await hub_of(request).directory.list_users(
        principal,
        login=query_str(request, "login"),
        login_pattern=query_str(request, "loginPattern"),
        role=None if role is None else Role(role),
        status=None if status is None else UserStatus(status),
        **paging(request, USER_SORTS, "id"),
    )
    return json([user_view(u) for u in users])


@endpoint(
    routes,
    "POST",
    "/api/v1/users",
    summary="Create a user (admin).",
    tag=TAG,
    body=UserCreate,
    response=UserView,
    status=201,
    extra_statuses={409: "Login taken."},
)
async def create_user(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    body = await read_body(request, UserCreate)
    user = await hub_of(request).directory.create_user(
        principal,
        login=body.login,
        password=body.password,
        role=Role(body.role),
        data=body.data,
        all_device_types=body.all_device_types,
    )
    return json(user_view(user), status=201)


@endpoint(
    routes, "GET", "/api/v1/users/me", summary="The current user.", tag=TAG, response=UserView
)
async def get_me(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    user = await hub_of(request).directory.get_user(principal, current_user_id(principal))
    return json(user_view(user))


@endpoint(
    routes,
    "PATCH",
    "/api/v1/users/me",
    summary="Update the current user (a client may change password and data only).",
    tag=TAG,
    body=UserUpdate,
    response=UserView,
)
async def update_me(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    fields = await read_patch(request, UserUpdate, nullable=USER_NULLABLE)
    user = await hub_of(request).directory.update_user(
        principal, current_user_id(principal), **_user_fields(fields)
    )
    return json(user_view(user))


@routes.route("*", "/api/v1/users/me")
async def me_other_methods(request: web.Request) -> web.Response:
    """``/users/me`` has GET and PATCH only: any other method is a 405 here, as the
    document says, instead of falling through to ``/users/{user_id}`` with ``me`` as an
    id (a 400 the document does not allow)."""
    raise web.HTTPMethodNotAllowed(request.method, ["GET", "PATCH"])


@endpoint(
    routes,
    "GET",
    "/api/v1/users/{user_id}",
    summary="Get a user.",
    tag=TAG,
    response=UserView,
    params=(USER_ID,),
)
async def get_user(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    user = await hub_of(request).directory.get_user(principal, path_int(request, "user_id"))
    return json(user_view(user))


@endpoint(
    routes,
    "PATCH",
    "/api/v1/users/{user_id}",
    summary="Update a user.",
    tag=TAG,
    body=UserUpdate,
    response=UserView,
    params=(USER_ID,),
    extra_statuses={409: "Login taken."},
)
async def update_user(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    user_id = path_int(request, "user_id")
    fields = await read_patch(request, UserUpdate, nullable=USER_NULLABLE)
    user = await hub_of(request).directory.update_user(principal, user_id, **_user_fields(fields))
    return json(user_view(user))


@endpoint(
    routes,
    "DELETE",
    "/api/v1/users/{user_id}",
    summary="Delete a user (admin).",
    tag=TAG,
    status=204,
    params=(USER_ID,),
)
async def delete_user(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    await hub_of(request).directory.delete_user(principal, path_int(request, "user_id"))
    return no_content()


@endpoint(
    routes,
    "PUT",
    "/api/v1/users/{user_id}/networks/{network_id}",
    summary="Grant a user access to a network (admin).",
    tag=TAG,
    status=204,
    params=(USER_ID, NETWORK_ID),
)
async def grant_network(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    await hub_of(request).directory.grant_network(
        principal, path_int(request, "user_id"), path_int(request, "network_id"), True
    )
    return no_content()


@endpoint(
    routes,
    "DELETE",
    "/api/v1/users/{user_id}/networks/{network_id}",
    summary="Revoke a user's access to a network (admin).",
    tag=TAG,
    status=204,
    params=(USER_ID, NETWORK_ID),
)
async def revoke_network(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    await hub_of(request).directory.grant_network(
        principal, path_int(request, "user_id"), path_int(request, "network_id"), False
    )
    return no_content()


# --- API keys --------------------------------------------------------------------------------


@endpoint(
    routes,
    "GET",
    "/api/v1/apikeys",
    summary="List API keys (yours; an admin may name any user or omit it for all).",
    tag=KEYS_TAG,
    response=list[ApiKeyView],
    params=(Param("userId", type="integer", description="Owner of the keys."),),
)
async def list_api_keys(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    keys = await hub_of(request).directory.list_api_keys(
        principal, query_opt_int(request, "userId")
    )
    return json([api_key_view(k) for k in keys])


@endpoint(
    routes,
    "POST",
    "/api/v1/apikeys",
    summary="Create an API key; the full key is in this response only.",
    tag=KEYS_TAG,
    body=ApiKeyCreate,
    response=ApiKeyView,
    status=201,
)
async def create_api_key(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    body = await read_body(request, ApiKeyCreate)
    if body.expires_in is not None and not 0 < body.expires_in <= MAX_KEY_LIFETIME:
        raise BadRequest(f"expiresIn must be 0 < seconds <= {MAX_KEY_LIFETIME}")
    record, key = await hub_of(request).directory.create_api_key(
        principal, name=body.name, user_id=body.user_id, expires_in=body.expires_in
    )
    return json(api_key_view(record, key), status=201)


@endpoint(
    routes,
    "DELETE",
    "/api/v1/apikeys/{key_id}",
    summary="Revoke an API key.",
    tag=KEYS_TAG,
    status=204,
    params=(KEY_ID,),
)
async def revoke_api_key(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    await hub_of(request).directory.revoke_api_key(principal, path_int(request, "key_id"))
    return no_content()
