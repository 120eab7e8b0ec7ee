"""The management REST API under ``/api/v1``: shared conventions and the route modules.

The routes live in one module per area, each exposing ``routes`` (a ``RouteTableDef``)::

    auth_routes           POST /auth/token, /auth/refresh
    users_routes          users, the current user, network grants, API keys
    catalog_routes        networks, device types, config revisions, firmware targets
    devices_routes        devices, credentials, block/unblock, state, current config
    notifications_routes  notifications (all, one, and per device)
    fleet_routes          the fleet summary (presence per dialect, recent activity)

:func:`route_tables` returns them all. Every route is declared with
:func:`tether.api.spec.endpoint`, so the OpenAPI document lists it.

Conventions shared by every route module:

* **Bodies** are codec request structs; unknown fields, wrong types and malformed JSON are
  400, bodies over ``max_message_bytes`` are 413.
* **PATCH** changes only the fields present in the body. A field that is absent is left
  alone. ``null`` clears a field that may be empty (``data``, ``description``,
  ``networkId``, ``typeId``, ``ownerId``); ``null`` for any other field is a 400.
* **Lists** take ``sort`` (one of a per-resource allow-list, camelCase or snake_case),
  ``desc``, ``skip`` (default 0) and ``take`` (1..1000, default 100).
* **Times** in query strings are ISO-8601; a time without a zone is UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from tether.api.http import query_bool, query_int, read_body
from tether.core import jsonc, limits
from tether.core.access import Principal
from tether.core.errors import BadRequest, Forbidden

T = TypeVar("T")

MAX_TAKE = 1000
DEFAULT_TAKE = 100


def no_content() -> web.Response:
    return web.Response(status=204)


def current_user_id(principal: Principal) -> int:
    if principal.user_id is None:
        raise Forbidden("only users have a current user")
    return principal.user_id


# --- query parameters ------------------------------------------------------------------------


def sorts(*fields: str) -> dict[str, str]:
    """An allow-list of sort keys: each snake_case field, also accepted in camelCase."""
    allowed: dict[str, str] = {}
    for field in fields:
        head, *rest = field.split("_")
        allowed[head + "".join(part.capitalize() for part in rest)] = field
        allowed[field] = field
    return allowed


def paging(request: web.Request, allowed: Mapping[str, str], default: str) -> dict[str, Any]:
    """``sort``/``desc``/``skip``/``take`` as store keywords, validated."""
    raw = request.query.get("sort") or None
    if raw is None:
        sort = default
    elif raw in allowed:
        sort = allowed[raw]
    else:
        names = sorted({k for k, v in allowed.items() if k != v or "_" not in k})
        raise BadRequest(
            f"cannot sort by {raw!r}; use one of {', '.join(names)}", sort=raw, allowed=names
        )
    return {
        "sort": sort,
        "desc": query_bool(request, "desc"),
        "skip": query_int(request, "skip", 0, low=0, high=limits.LIST_MAX),
        "take": query_int(request, "take", DEFAULT_TAKE, low=1, high=MAX_TAKE),
    }


def query_str(request: web.Request, name: str) -> str | None:
    return request.query.get(name) or None


def query_opt_int(request: web.Request, name: str) -> int | None:
    """An optional id filter, within the store's id range."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    return limits.parse_id(f"query parameter {name!r}", raw)


def query_list(request: web.Request, name: str) -> list[str] | None:
    """A parameter given several times (``?name=a&name=b``) or as a list (``?name=a,b``)."""
    values = [
        part.strip()
        for raw in request.query.getall(name, [])
        for part in raw.split(",")
        if part.strip()
    ]
    return values or None


def query_time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        try:  # an unescaped '+' of the zone offset arrives as a space
            value = datetime.fromisoformat(raw.replace(" ", "+"))
        except ValueError:
            raise BadRequest(f"query parameter {name!r} must be an ISO-8601 time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def query_choice(request: web.Request, name: str, choices: Iterable[str]) -> str | None:
    raw = query_str(request, name)
    allowed = list(choices)
    if raw is not None and raw not in allowed:
        raise BadRequest(f"query parameter {name!r} must be one of {', '.join(allowed)}")
    return raw


# --- bodies ----------------------------------------------------------------------------------


async def read_patch(
    request: web.Request, kind: type[T], *, nullable: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The fields present in a PATCH body, by attribute name, decoded as ``kind``.

    ``null`` is kept for the fields in ``nullable`` (it clears them) and refused for
    every other field.
    """
    raw = await read_body(request, msgspec.Raw)
    body = jsonc.decode(raw, kind)
    present = jsonc.decode(raw, dict[str, msgspec.Raw])
    fields: dict[str, Any] = {}
    for info in msgspec.structs.fields(kind):  # type: ignore[arg-type]
        if info.encode_name not in present:
            continue
        value = getattr(body, info.name)
        if value is None and info.name not in nullable:
            raise BadRequest(
                f"invalid body: {info.encode_name} cannot be null", field=info.encode_name
            )
        fields[info.name] = value
    return fields


def route_tables() -> list[web.RouteTableDef]:
    """Every management route table, for ``app.add_routes`` one by one."""
    from tether.api import (
        auth_routes,
        catalog_routes,
        devices_routes,
        fleet_routes,
        notifications_routes,
        users_routes,
    )

    return [
        auth_routes.routes,
        users_routes.routes,
        catalog_routes.routes,
        devices_routes.routes,
        notifications_routes.routes,
        fleet_routes.routes,
    ]
