"""The fleet at a glance: what the console's overview shows, for any client of the API."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from tether.api.auth import principal_of
from tether.api.http import hub_of, json, query_int
from tether.api.spec import Param, endpoint
from tether.api.views import Wire
from tether.hub.fleet import FleetSummary

routes = web.RouteTableDef()


class DialectPresenceView(Wire, kw_only=True):
    dialect: str
    online: int
    offline: int


class FleetView(Wire, kw_only=True):
    node_id: str
    at: datetime
    devices: list[DialectPresenceView]
    #: Commands created since ``commandsSince``, by state (states with none are left out).
    commands_since: datetime
    commands: dict[str, int]
    #: Notifications per minute, oldest first, the first minute starting at ``minutesSince``.
    minutes_since: datetime
    notifications_per_minute: list[int]


def fleet_view(summary: FleetSummary) -> FleetView:
    return FleetView(
        node_id=summary.node_id,
        at=summary.at,
        devices=[
            DialectPresenceView(dialect=d.dialect, online=d.online, offline=d.offline)
            for d in summary.devices
        ],
        commands_since=summary.commands_since,
        commands={state.value: count for state, count in summary.commands.items()},
        minutes_since=summary.minutes_since,
        notifications_per_minute=summary.notifications_per_minute,
    )


@endpoint(
    routes,
    "GET",
    "/api/v1/fleet",
    tag="devices",
    summary="The devices you can see online/offline per dialect, the commands created in "
    "the last `minutes` by state, and notifications per minute over them.",
    response=FleetView,
    params=(
        Param("minutes", type="integer", description="Period, in minutes (default 60, 1-180)."),
    ),
)
async def fleet(request: web.Request) -> web.Response:
    principal = await principal_of(request)
    minutes = query_int(request, "minutes", 60, low=1, high=180)
    return json(fleet_view(await hub_of(request).fleet.summary(principal, minutes=minutes)))
