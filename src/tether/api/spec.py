"""The endpoint registry behind the OpenAPI document.

Routes are declared with :func:`endpoint`, which registers the aiohttp route *and* records
its summary, body and response types. The OpenAPI 3.1 document is generated from these
records and the msgspec structs' JSON schemas, so it cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tether.api.http import Handler
from tether.core.limits import LIST_MAX


@dataclass(frozen=True)
class Param:
    name: str
    where: str = "query"  # "query" | "path" | "header"
    type: str = "string"  # JSON schema type
    description: str = ""
    required: bool = False
    #: Bounds of an integer parameter; ids default to the store's id range
    #: (``core/limits.py``), which is what the server checks.
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    tag: str
    body: Any = None
    response: Any = None
    status: int = 200
    params: Sequence[Param] = ()
    auth: str = "user"  # "user" | "device" | "none"
    extra_statuses: dict[int, str] = field(default_factory=dict)


ENDPOINTS: list[Endpoint] = []


def endpoint(
    routes: web.RouteTableDef,
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    body: Any = None,
    response: Any = None,
    status: int = 200,
    params: Sequence[Param] = (),
    auth: str = "user",
    extra_statuses: dict[int, str] | None = None,
) -> Callable[[Handler], Handler]:
    """Register ``handler`` on ``routes`` and describe it for the OpenAPI document."""

    def register(handler: Handler) -> Handler:
        ENDPOINTS.append(
            Endpoint(
                method.upper(),
                path,
                summary,
                tag,
                body,
                response,
                status,
                tuple(params),
                auth,
                dict(extra_statuses or {}),
            )
        )
        routes.route(method.upper(), path)(handler)
        return handler

    return register


PAGING = (
    Param("sort", description="Field to sort by."),
    Param("desc", type="boolean", description="Sort descending."),
    Param(
        "skip", type="integer", description="Rows to skip (default 0).", minimum=0, maximum=LIST_MAX
    ),
    Param(
        "take",
        type="integer",
        description="Rows to return (default 100, at most 1000).",
        minimum=1,
        maximum=1000,
    ),
)
