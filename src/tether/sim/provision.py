"""Creating (and removing) what a run needs, through the native API only.

Everything a run makes is namespaced by its name ``<name>``:

* the network ``sim-<name>``, which holds every simulated device;
* the client user ``sim-<name>``, granted that network only: it owns the eWeLink and
  InfiniteClouds devices (both protocols need an owner) and is the DeviceHive devices'
  login;
* the devices, named ``sim-<name>-<dialect>-<n>``. Their ids follow each dialect's form:
  ``sim-<name>-ws-<n>`` for free-form ids, 10 hex digits for eWeLink, an int64 for
  Control iD, ``ic-<mac>`` for InfiniteClouds, all derived from the name.

Provisioning is idempotent: a device that already exists in the run's network is reused
(its credential is issued again, since a credential is shown only once), one that exists
elsewhere is an error, never taken over. :func:`cleanup` deletes the devices of the
network, the user and the network.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from tether.sim.client import ApiClient, ApiError
from tether.sim.plan import DIALECTS, Plan, PlanError

#: Native API calls provisioning keeps in flight at once.
CONCURRENCY = 32
#: Control iD: the terminal's push_request_timeout. Its polls are held by the server for
#: the plan's poll interval (``long_poll``), so a command reaches it at once.
CONTROLID_REQUEST_TIMEOUT_MS = 15_000
#: Devices listed per page while cleaning up (the server's maximum).
PAGE = 1_000

_SHORT = {
    "native-ws": "ws",
    "native-http": "http",
    "devicehive": "dh",
    "ewelink": "ew",
    "controlid": "cid",
    "opengate": "og",
    "infiniteclouds": "ic",
}
_CORE_DIALECT = {"native-ws": "native", "native-http": "native"}


class DeviceSpec(msgspec.Struct, kw_only=True, frozen=True):
    """One simulated device: what its driver needs to act as it."""

    dialect: str
    id: str
    #: Native and OpenGate: the device credential (OpenGate's X-ApiKey).
    credential: str | None = None
    #: eWeLink: the factory apikey.
    apikey: str | None = None
    #: InfiniteClouds: the MAC address it registers with.
    mac: str | None = None


class Fleet(msgspec.Struct, kw_only=True, frozen=True):
    """What provisioning made: the devices, and the secrets their drivers share."""

    network_id: int
    devices: list[DeviceSpec]
    #: DeviceHive: a refresh token of the run's user (every DeviceHive device uses it).
    refresh_token: str | None = None
    seconds: float = 0.0


def tag(name: str) -> int:
    """A 16-bit number derived from the run name, for the dialects with numeric ids."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:4], 16)


def device_id(name: str, dialect: str, n: int) -> str:
    """The id of the ``n``-th device of ``dialect`` in run ``name`` (see the module doc)."""
    t = tag(name)
    if dialect == "ewelink":
        return f"5{t & 0xFF:02x}{n:07x}"
    if dialect == "controlid":
        return str(7_300_000_000_000_000 + t * 10_000_000_000 + n)
    if dialect == "infiniteclouds":
        return "ic-" + mac_of(name, n).replace(":", "")
    return f"sim-{name}-{_SHORT[dialect]}-{n}"


def mac_of(name: str, n: int) -> str:
    """A locally administered MAC (02:...) for InfiniteClouds device ``n``."""
    raw = f"025e{tag(name) & 0xFF:02x}{n:06x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def opengate_endpoint(host: str, port: int) -> str:
    return f"http://{host}:{port}"


async def bounded(calls: list[Callable[[], Awaitable[Any]]], limit: int = CONCURRENCY) -> list[Any]:
    """Run ``calls`` with at most ``limit`` at once; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def _find(api: ApiClient, path: str, key: str, value: str) -> dict[str, Any] | None:
    rows = await api.call("GET", path, params={key: value})
    return rows[0] if rows else None


async def ensure_network(api: ApiClient, name: str) -> int:
    found = await _find(api, "/api/v1/networks", "name", f"sim-{name}")
    if found is None:
        body = {"name": f"sim-{name}", "description": "devices of 'tether sim' (sim --cleanup)"}
        found = await api.call("POST", "/api/v1/networks", body=body)
    return int(found["id"])


async def ensure_user(api: ApiClient, name: str, network_id: int) -> tuple[int, str]:
    """The run's client user (created or given a fresh password), granted the network."""
    login, password = f"sim-{name}", secrets.token_urlsafe(18)
    found = await _find(api, "/api/v1/users", "login", login)
    if found is None:
        body = {"login": login, "password": password, "role": "client"}
        found = await api.call("POST", "/api/v1/users", body=body)
    else:
        await api.call("PATCH", f"/api/v1/users/{found['id']}", body={"password": password})
    user_id = int(found["id"])
    await api.call("PUT", f"/api/v1/users/{user_id}/networks/{network_id}")
    return user_id, password


async def devicehive_refresh_token(api: ApiClient, name: str, password: str) -> str:
    body = {"login": f"sim-{name}", "password": password}
    tokens = await api.call("POST", "/api/rest/token", body=body, auth=False)
    return str(tokens["refreshToken"])


async def provision(
    plan: Plan, api: ApiClient, opengate_endpoints: list[str], clock: Callable[[], float]
) -> Fleet:
    """Create (or reuse) the network, the user and every device of ``plan.mix``.

    ``opengate_endpoints``: where the OpenGate devices' operation service listens, one per
    worker process; device ``n`` gets ``opengate_endpoints[n % len]`` (the worker that
    will run it, see :func:`tether.sim.runner.shards`).
    """
    started = clock()
    network_id = await ensure_network(api, plan.name)
    owner_id: int | None = None
    refresh: str | None = None
    if {"devicehive", "ewelink", "infiniteclouds"} & set(plan.mix):
        owner_id, password = await ensure_user(api, plan.name, network_id)
        if "devicehive" in plan.mix:
            refresh = await devicehive_refresh_token(api, plan.name, password)
    wanted = [(dialect, n) for dialect in DIALECTS for n in range(plan.mix.get(dialect, 0))]

    def make(dialect: str, n: int) -> Callable[[], Awaitable[DeviceSpec]]:
        endpoint = opengate_endpoints[n % len(opengate_endpoints)] if opengate_endpoints else ""
        return lambda: _device(api, plan, network_id, owner_id, dialect, n, endpoint)

    devices = await bounded([make(dialect, n) for dialect, n in wanted])
    return Fleet(
        network_id=network_id,
        devices=devices,
        refresh_token=refresh,
        seconds=round(clock() - started, 3),
    )


async def _device(
    api: ApiClient,
    plan: Plan,
    network_id: int,
    owner_id: int | None,
    dialect: str,
    n: int,
    endpoint: str,
) -> DeviceSpec:
    name = plan.name
    the_id = device_id(name, dialect, n)
    attributes: dict[str, Any] = {}
    if dialect == "ewelink":
        attributes = {"apikey": str(uuid.uuid4()), "model": "ITA-GZ1-GL"}
    elif dialect == "controlid":
        attributes = {
            "long_poll": max(1, math.ceil(plan.poll_interval)),
            "push_request_timeout": CONTROLID_REQUEST_TIMEOUT_MS,
        }
    elif dialect == "opengate":
        attributes = {"endpoint": endpoint}
    elif dialect == "infiniteclouds":
        attributes = {"macAddress": mac_of(name, n)}
    body: dict[str, Any] = {
        "id": the_id,
        "name": f"sim-{name}-{dialect}-{n}",
        "dialect": _CORE_DIALECT.get(dialect, dialect),
        "networkId": network_id,
        "attributes": attributes,
    }
    if dialect in ("ewelink", "infiniteclouds"):
        body["ownerId"] = owner_id
    try:
        made = await api.call("POST", "/api/v1/devices", body=body)
    except ApiError as error:
        if error.http_status != 409:
            raise
        made = await api.call("GET", f"/api/v1/devices/{the_id}")
        if made.get("networkId") != network_id or made.get("dialect") != body["dialect"]:
            raise PlanError(
                "--name",
                f"device {the_id} already exists outside network sim-{name}; choose another --name",
            ) from None
        if dialect in ("opengate", "controlid") and any(
            made.get("attributes", {}).get(k) != v for k, v in attributes.items()
        ):
            path = f"/api/v1/devices/{the_id}"
            made = await api.call("PATCH", path, body={"attributes": attributes})
    credential = None
    if dialect in ("native-ws", "native-http", "opengate"):
        issued = await api.call("POST", f"/api/v1/devices/{the_id}/credential")
        credential = str(issued["credential"])
    return DeviceSpec(
        dialect=dialect,
        id=the_id,
        credential=credential,
        apikey=made.get("attributes", {}).get("apikey") if dialect == "ewelink" else None,
        mac=mac_of(name, n) if dialect == "infiniteclouds" else None,
    )


class Cleaned(msgspec.Struct, kw_only=True):
    """What :func:`cleanup` removed."""

    name: str
    devices: int = 0
    user: bool = False
    network: bool = False


async def cleanup(api: ApiClient, name: str) -> Cleaned:
    """Delete every device of network ``sim-<name>``, the user and the network."""
    done = Cleaned(name=name)
    network = await _find(api, "/api/v1/networks", "name", f"sim-{name}")
    if network is not None:
        params = {"networkId": str(network["id"]), "take": str(PAGE)}
        while rows := await api.call("GET", "/api/v1/devices", params=params):
            await bounded([_deleter(api, row["id"]) for row in rows])
            done.devices += len(rows)
    user = await _find(api, "/api/v1/users", "login", f"sim-{name}")
    if user is not None:
        await api.call("DELETE", f"/api/v1/users/{user['id']}")
        done.user = True
    if network is not None:
        await api.call("DELETE", f"/api/v1/networks/{network['id']}", params={"force": "true"})
        done.network = True
    return done


def _deleter(api: ApiClient, the_id: str) -> Callable[[], Awaitable[None]]:
    async def delete() -> None:
        try:
            await api.call("DELETE", f"/api/v1/devices/{the_id}")
        except ApiError as error:
            if error.http_status != 404:  # gone meanwhile is what we wanted
                raise

    return delete
