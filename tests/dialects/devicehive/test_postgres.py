"""The official client's command, notification and replay flow on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.dialects.devicehive.helpers import run_handler, start


async def test_official_client_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    seen: dict[str, Any] = {}
    async for server in start(tmp_path, database_url=postgres_url):

        def scenario(r: Any) -> None:
            api = r.api
            api.put_device("pg-1")
            before = api.get_info()["server_timestamp"]
            first = api.send_command("pg-1", "a", parameters={"n": 1})
            r.subs["cmd"] = api.subscribe_insert_commands(device_id="pg-1", timestamp=before)
            r.subs["upd"] = api.subscribe_update_commands(device_id="pg-1")
            api.send_notification("pg-1", "temp", parameters={"v": 2})
            seen["first"] = first.id

        def on_command(r: Any, command: Any) -> None:
            command.status = "done"
            command.result = {"n": command.parameters["n"]}
            command.save()

        r = await run_handler(
            server.url("ws"),
            refresh_token=server.refresh,
            scenario=scenario,
            done=lambda r: bool(r.inserted) and bool(r.updated),
            on_command=on_command,
        )
        assert [c.id for c in r.inserted] == [seen["first"]]  # replayed from storage
        assert [(c.status, c.result) for c in r.updated] == [("done", {"n": 1})]
        status, notes = await server.rest("GET", "/device/pg-1/notification")
        assert status == 200
        assert [n["notification"] for n in notes] == ["temp"]
        native = await server.run.call("GET", f"/api/v1/commands/{seen['first']}")
        assert native["state"] == "succeeded"
