"""The official ``devicehive`` 2.1.6 library, unmodified, against a real Tether server,
over both ``ws://…/api/websocket`` and ``http://…/api/rest``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.dialects.devicehive.helpers import TRANSPORTS, Server, api, run_handler, start
from tests.support import ADMIN_PASSWORD

from devicehive import ApiResponseError, DeviceHiveApi

pytestmark = [
    pytest.mark.parametrize("transport", TRANSPORTS),
    pytest.mark.asyncio(loop_scope="module"),
]


def expect(code: int, call: Any, why: str) -> None:
    """``call()`` must fail with DeviceHive error ``code``."""
    try:
        call()
    except ApiResponseError as error:
        failed = int(error.code)
    else:
        raise AssertionError(why)
    assert failed == code, (why, failed)


async def within(server: Server, transport: str, flow: Any, **creds: Any) -> Any:
    """Run ``flow(api)`` inside the official event-driven client (one connection)."""
    out: dict[str, Any] = {}

    def scenario(r: Any) -> None:
        out["result"] = flow(r.api)

    await run_handler(
        server.url(transport),
        **(creds or {"refresh_token": server.refresh}),
        scenario=scenario,
        done=lambda r: True,
    )
    return out.get("result")


async def test_info_and_login_password(server: Server, transport: str) -> None:
    hive = api(server, transport, login="admin", password=ADMIN_PASSWORD)
    info = await asyncio.to_thread(hive.get_info)
    hive = api(server, transport)
    assert info["api_version"]
    assert len(info["server_timestamp"]) == 23  # yyyy-MM-ddTHH:mm:ss.SSS
    if transport == "ws":
        assert info["rest_server_url"].endswith("/api/rest")
    else:
        assert info["websocket_server_url"].endswith("/api/websocket")
    cluster = await asyncio.to_thread(hive.get_cluster_info)
    assert set(cluster) == {"bootstrap.servers", "zookeeper.connect"}
    me = await asyncio.to_thread(hive.get_current_user)
    assert me.login == "admin"
    assert me.role == 0


async def test_tokens_and_configuration(server: Server, transport: str) -> None:
    name = f"{transport}-prop"

    def flow(hive: Any) -> dict[str, Any]:
        assert hive.set_property(name, "one")["entity_version"] == 0
        assert hive.set_property(name, "two")["entity_version"] == 1
        got = hive.get_property(name)
        assert (got["name"], got["value"], got["entity_version"]) == (name, "two", 1)
        hive.delete_property(name)
        expect(404, lambda: hive.get_property(name), "deleted property still there")
        minted = hive.create_token(1, actions=["GetDevice", "GetNetwork"], network_ids=["*"])
        assert set(minted) == {"refresh_token", "access_token"}
        return minted

    minted = await within(server, transport, flow)

    def limited(hive: Any) -> None:
        assert isinstance(hive.list_devices(), list)  # GetDevice was granted
        expect(403, lambda: hive.send_command("x", "y"), "command without CreateDeviceCommand")

    await within(server, transport, limited, access_token=minted["access_token"])


async def test_wrong_password_is_refused(server: Server, transport: str) -> None:
    hive = api(server, transport, login="admin", password="wrong-password")
    with pytest.raises(ApiResponseError) as caught:
        await asyncio.to_thread(hive.get_info)
    assert int(caught.value.code) == 401


async def test_device_crud_and_lists(server: Server, transport: str) -> None:
    p = f"{transport}-crud"

    def flow(hive: Any) -> None:
        net = hive.create_network(f"{p}-net", "second")
        dtype = hive.create_device_type(f"{p}-type", "kind")
        a = hive.put_device(f"{p}-a")  # defaults: lowest network and type
        assert (a.network_id, a.device_type_id) == (1, 1)
        assert a.name == f"{p}-a"
        assert a.data is None
        assert a.is_blocked is False
        hive.put_device(
            f"{p}-b", name=f"{p}-bee", data={"k": 1}, network_id=net.id, device_type_id=dtype.id
        )
        hive.put_device(f"{p}-c", network_id=net.id)
        got = hive.get_device(f"{p}-b")
        assert (got.name, got.data, got.network_id, got.device_type_id) == (
            f"{p}-bee",
            {"k": 1},
            net.id,
            dtype.id,
        )
        got.name = f"{p}-renamed"
        got.data = {"k": 2}
        got.save()
        again = hive.get_device(f"{p}-b")
        assert (again.name, again.data) == (f"{p}-renamed", {"k": 2})
        names = [d.id for d in hive.list_devices(network_id=net.id)]
        assert sorted(names) == [f"{p}-b", f"{p}-c"]
        assert [
            d.id
            for d in hive.list_devices(
                network_name=f"{p}-net", sort_field="name", sort_order="DESC"
            )
        ] == [f"{p}-b", f"{p}-c"]
        pattern = [d.id for d in hive.list_devices(name_pattern=f"{p}-%")]
        assert set(pattern) >= {f"{p}-a", f"{p}-c"}
        paged = hive.list_devices(name_pattern=f"{p}-%", sort_field="name", take=1, skip=1)
        assert len(paged) == 1
        assert [d.id for d in net.list_devices()]
        assert len(net.list_devices()) == 2
        # networks and device types
        net.description = "changed"
        net.save()
        assert hive.get_network(net.id).description == "changed"
        assert [n.name for n in hive.list_networks(name=f"{p}-net")] == [f"{p}-net"]
        assert hive.list_networks(name_pattern=f"{p}-%", take=1)
        assert hive.get_device_type(dtype.id).name == f"{p}-type"
        newest = hive.list_device_types(sort_field="id", sort_order="DESC")[0]
        assert newest.id == max(t.id for t in hive.list_device_types())
        # a network with devices is not deleted without force
        expect(400, lambda: net.remove(), "network with devices deleted without force")
        net.remove(force=True)
        expect(
            404, lambda: hive.get_device(f"{p}-c"), "device of a force-deleted network survived"
        )  # admin: 404 for a missing device
        expect(
            403,
            lambda: hive.create_device_type(f"{p}-type", None),
            "duplicate device type accepted",
        )  # duplicates are 403
        hive.get_device(f"{p}-a").remove()
        dtype.remove()

    await within(server, transport, flow)


async def test_users_and_client_scoping(server: Server, transport: str) -> None:
    p = f"{transport}-users"

    def flow(hive: Any) -> tuple[Any, Any]:
        net = hive.create_network(f"{p}-cnet", None)
        hive.put_device(f"{p}-mine", network_id=net.id)
        hive.put_device(f"{p}-theirs")
        user = hive.create_user(f"{p}-carol", "carolpass", 1, {"x": 1})
        assert user.all_device_types_available is True
        user.assign_network(net.id)
        assert [n.id for n in user.list_networks()] == [net.id]
        assert [u.login for u in hive.list_users(login_pattern=f"{p}-c%")] == [f"{p}-carol"]
        assert [u.login for u in hive.list_users(role=1, login=f"{p}-carol")] == [f"{p}-carol"]
        hive.create_user(f"{p}-zed", "zedpass1", 1, None)
        ordered = hive.list_users(login_pattern=f"{p}-%", sort_field="login", sort_order="DESC")
        assert [u.login for u in ordered] == [f"{p}-zed", f"{p}-carol"]
        page = hive.list_users(login_pattern=f"{p}-%", sort_field="login", take=1, skip=1)
        assert [u.login for u in page] == [f"{p}-zed"]
        assert hive.list_users(status=0, login=f"{p}-zed")[0].status == 0
        fetched = hive.get_user(user.id)
        fetched.data = {"y": 2}
        fetched.save()
        assert hive.get_user(user.id).data == {"y": 2}
        expect(
            403,
            lambda: hive.create_user(f"{p}-carol", "carolpass", 1, None),
            "duplicate login accepted",
        )
        user.disallow_all_device_types()
        user.assign_device_type(1)
        assert [t.id for t in user.list_device_types()] == [1]
        user.allow_all_device_types()
        return user, net

    user, net = await within(server, transport, flow)
    _, carol_refresh = await server.tokens(f"{p}-carol", "carolpass")

    def as_client(carol: Any) -> None:
        assert [d.id for d in carol.list_devices()] == [f"{p}-mine"]
        assert carol.get_device(f"{p}-mine").network_id == net.id
        for missing in (f"{p}-theirs", "no-such-device"):
            expect(
                403, lambda missing=missing: carol.get_device(missing), f"client saw {missing}"
            )  # client: 403, invisible or missing
        assert [n.id for n in carol.list_networks()] == [net.id]
        command = carol.send_command(f"{p}-mine", "ping")
        assert command.user_id == user.id
        expect(403, lambda: carol.list_users(), "client listed users")
        me = carol.get_current_user()
        assert me.login == f"{p}-carol"
        assert me.role == 1

    await within(server, transport, as_client, refresh_token=carol_refresh)

    def cleanup(hive: Any) -> None:
        hive.get_user(user.id).remove()
        expect(404, lambda: hive.get_user(user.id), "deleted user still there")

    await within(server, transport, cleanup)


async def test_commands_and_notifications(server: Server, transport: str) -> None:
    p = f"{transport}-cmd"

    def flow(hive: Any) -> None:
        hive.put_device(f"{p}-dev")
        first = hive.send_command(f"{p}-dev", "a", parameters={"x": 1}, lifetime=60)
        assert first.id
        assert first.timestamp
        assert first.last_updated
        assert first.user_id == 1
        second = hive.send_command(f"{p}-dev", "b")
        second.status = "in progress"
        second.save()
        first.status = "done"
        first.result = {"ok": True}
        first.save()
        listed = hive.list_commands(f"{p}-dev")
        assert {(c.command, c.status) for c in listed} == {("a", "done"), ("b", "in progress")}
        assert hive.list_commands(f"{p}-dev", status="done")[0].result == {"ok": True}
        assert [c.command for c in hive.list_commands(f"{p}-dev", command="b")] == ["b"]
        assert [
            c.id for c in hive.list_commands(f"{p}-dev", sort_field="timestamp", sort_order="ASC")
        ] == [first.id, second.id]
        assert [c.id for c in hive.list_commands(f"{p}-dev", start=first.timestamp)] == [second.id]
        assert [c.id for c in hive.list_commands(f"{p}-dev", end=second.timestamp)] == [first.id]
        assert [
            c.id
            for c in hive.list_commands(
                f"{p}-dev", take=1, skip=1, sort_field="timestamp", sort_order="ASC"
            )
        ] == [second.id]
        n1 = hive.send_notification(f"{p}-dev", "temp", parameters={"v": 21.5})
        n2 = hive.send_notification(f"{p}-dev", "hum", parameters={"v": 40})
        assert n1.timestamp < n2.timestamp
        notes = hive.list_notifications(f"{p}-dev", sort_field="timestamp", sort_order="ASC")
        assert [(n.notification, n.parameters) for n in notes] == [
            ("temp", {"v": 21.5}),
            ("hum", {"v": 40}),
        ]
        assert [n.id for n in hive.list_notifications(f"{p}-dev", notification="hum")] == [n2.id]
        assert [n.id for n in hive.list_notifications(f"{p}-dev", start=n1.timestamp)] == [n2.id]
        expect(
            403,
            lambda: hive.send_notification(f"{p}-dev", "$device-add"),
            "reserved notification accepted",
        )

    await within(server, transport, flow)
    # The device's result completed the core command; the native API sees it.
    commands = await server.run.call("GET", f"/api/v1/commands?deviceId={p}-dev")
    states = (
        {c["name"]: c["state"] for c in commands["items"]}
        if isinstance(commands, dict)
        else {c["name"]: c["state"] for c in commands}
    )
    assert states == {"a": "succeeded", "b": "in_progress"}


async def test_subscriptions_filters_and_replay(server: Server, transport: str) -> None:
    p = f"{transport}-sub"

    def setup(hive: Any) -> tuple[int, int, str, int]:
        net = hive.create_network(f"{p}-snet", None)
        dtype = hive.create_device_type(f"{p}-stype", None)
        hive.put_device(f"{p}-d1")
        hive.put_device(f"{p}-d2", network_id=net.id, device_type_id=dtype.id)
        info = hive.get_info()
        early = hive.send_command(f"{p}-d1", "a", parameters={"replayed": True})
        return net.id, dtype.id, info["server_timestamp"], early.id

    net_id, type_id, before, early_id = await within(server, transport, setup)

    def scenario(r: Any) -> None:
        a = r.api
        r.subs["a"] = a.subscribe_insert_commands(
            device_id=f"{p}-d1", names=["a"], timestamp=before
        )
        r.subs["upd"] = a.subscribe_update_commands(device_id=f"{p}-d1")
        r.subs["net"] = a.subscribe_notifications(network_ids=[net_id])
        r.subs["type"] = a.subscribe_insert_commands(device_type_ids=[type_id])
        a.send_command(f"{p}-d1", "b")  # filtered out by names
        a.send_command(f"{p}-d1", "a", parameters={"live": True})
        a.send_notification(f"{p}-d1", "skip-me")  # other network
        a.send_notification(f"{p}-d2", "temp", parameters={"v": 1})
        a.send_command(f"{p}-d2", "zz")

    def on_command(r: Any, command: Any) -> None:
        if command.device_id == f"{p}-d1" and command.command == "a":
            command.status = "done"
            command.result = {"echo": command.parameters}
            command.save()

    def done(r: Any) -> bool:
        return len(r.inserted) >= 3 and len(r.updated) >= 2 and len(r.notifications) >= 1

    r = await run_handler(
        server.url(transport),
        refresh_token=server.refresh,
        scenario=scenario,
        done=done,
        on_command=on_command,
    )
    inserted = [(c.device_id, c.command, c.parameters) for c in r.inserted]
    assert (f"{p}-d1", "a", {"replayed": True}) == inserted[0]  # replay first
    assert (f"{p}-d1", "a", {"live": True}) in inserted
    assert (f"{p}-d2", "zz", None) in inserted
    assert all(c.command != "b" for c in r.inserted)
    assert {c.id for c in r.updated} >= {early_id}
    assert all(c.status == "done" for c in r.updated)
    assert [(n.device_id, n.notification) for n in r.notifications] == [(f"{p}-d2", "temp")]
    # Pushed to the DeviceHive subscriber = delivered; the device's result completed it.
    command = await server.run.call("GET", f"/api/v1/commands/{early_id}")
    assert command["state"] == "succeeded"


async def test_access_token_expiry_refresh_and_retry(tmp_path: Path, transport: str) -> None:
    async for server in start(tmp_path, access_token_ttl=2):
        hive = DeviceHiveApi(server.url(transport), refresh_token=server.refresh)
        await asyncio.to_thread(hive.put_device, f"{transport}-r")

        def scenario(r: Any) -> None:
            import time

            r.api.get_device(f"{transport}-r")
            first = r.api.token.access_token
            time.sleep(2.5)  # the access token from connect has now expired
            r.subs["ok"] = r.api.get_device(f"{transport}-r").id  # 401 -> refresh -> retry
            r.subs["refreshed"] = r.api.token.access_token != first

        r = await run_handler(
            server.url(transport),
            refresh_token=server.refresh,
            scenario=scenario,
            done=lambda r: "ok" in r.subs,
        )
        assert r.subs["ok"] == f"{transport}-r"
        assert r.subs["refreshed"] is True  # the call failed with 401 and was retried
