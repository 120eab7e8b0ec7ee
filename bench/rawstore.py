"""Raw aiohttp + plain-driver baseline for scenarios ``ingest`` (P6a) and ``inserts`` (P6b).

Run as its own process (``python -m bench.rawstore --port P --store URL --devices N``,
every device's bearer in ``BENCH_CREDENTIAL``, the admin bearer in ``BENCH_TOKEN``) on
uvloop, as ``tether serve`` runs. It *does* store: a telemetry server that does not write
would measure aiohttp's frame rate, not ingest, and the goal counts rows persisted. So it
does what Tether does at the database, written by hand with the driver alone:

* one table per kind with Tether's columns, foreign keys and indexes (``devices``,
  ``notifications``, ``commands``);
* one writer task per table draining a bounded queue into one multi-row
  ``INSERT ... RETURNING id`` per batch (up to 1,000 rows, one transaction), answering
  each poster after the commit (group commit, as Tether's writers do);
* SQLite through aiosqlite (WAL, ``synchronous=NORMAL``, as Tether), PostgreSQL through
  asyncpg (``unnest`` arrays: one round trip per batch).

Endpoints, the shapes Tether has: the device WebSocket ``/api/v1/device/ws`` (``notification``
frames answered with a ``response``), ``POST /api/v1/device/{id}/notifications``,
``POST /api/v1/devices/{id}/commands``, and ``/api/v1/ws`` where a ``subscribe`` makes the
socket receive every stored notification as an ``event`` (the fan-out half of P6a).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import aiosqlite
import asyncpg
import msgspec
import uvloop
from aiohttp import WSMsgType, web

from bench.common import serve_app

_NULL = msgspec.Raw(b"null")
_BATCH = 1000
_encode = msgspec.json.Encoder().encode


class Inbound(msgspec.Struct):
    type: str
    requestId: str | int | None = None
    name: str | None = None
    parameters: msgspec.Raw = _NULL


class Body(msgspec.Struct):
    name: str
    parameters: msgspec.Raw = _NULL


Row = tuple[Any, ...]

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (id VARCHAR(255) PRIMARY KEY);
CREATE TABLE IF NOT EXISTS notifications (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id VARCHAR(255) NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  name VARCHAR(128) NOT NULL, parameters JSON, timestamp DATETIME NOT NULL);
CREATE INDEX IF NOT EXISTS ix_n_device_ts ON notifications (device_id, timestamp);
CREATE INDEX IF NOT EXISTS ix_n_ts ON notifications (timestamp);
CREATE TABLE IF NOT EXISTS commands (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id VARCHAR(255) NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  name VARCHAR(128) NOT NULL, parameters JSON, state VARCHAR(16) NOT NULL,
  created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, expires_at DATETIME,
  timeout FLOAT);
CREATE INDEX IF NOT EXISTS ix_c_device_state_id ON commands (device_id, state, id);
CREATE INDEX IF NOT EXISTS ix_c_state ON commands (state);
"""

_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (id VARCHAR(255) PRIMARY KEY);
CREATE TABLE IF NOT EXISTS notifications (
  id BIGSERIAL PRIMARY KEY,
  device_id VARCHAR(255) NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  name VARCHAR(128) NOT NULL, parameters JSON, timestamp TIMESTAMPTZ NOT NULL);
CREATE INDEX IF NOT EXISTS ix_n_device_ts ON notifications (device_id, timestamp);
CREATE INDEX IF NOT EXISTS ix_n_ts ON notifications (timestamp);
CREATE TABLE IF NOT EXISTS commands (
  id BIGSERIAL PRIMARY KEY,
  device_id VARCHAR(255) NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
  name VARCHAR(128) NOT NULL, parameters JSON, state VARCHAR(16) NOT NULL,
  created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ,
  timeout DOUBLE PRECISION);
CREATE INDEX IF NOT EXISTS ix_c_device_state_id ON commands (device_id, state, id);
CREATE INDEX IF NOT EXISTS ix_c_state ON commands (state);
"""

_NOTIFICATION_COLUMNS = ("device_id", "name", "parameters", "timestamp")
_COMMAND_COLUMNS = (
    "device_id",
    "name",
    "parameters",
    "state",
    "created_at",
    "updated_at",
    "expires_at",
    "timeout",
)
_PG_TYPES = {
    "device_id": "text",
    "name": "text",
    "parameters": "json",
    "timestamp": "timestamptz",
    "state": "text",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
    "expires_at": "timestamptz",
    "timeout": "float8",
}


class Store(Protocol):
    async def insert(self, table: str, columns: Sequence[str], rows: list[Row]) -> list[int]: ...


class SqliteStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: str, devices: list[str]) -> SqliteStore:
        db = await aiosqlite.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            await db.execute(f"PRAGMA {pragma}")
        await db.executescript(_SQLITE_SCHEMA)
        await db.execute("BEGIN")
        await db.executemany(
            "INSERT OR IGNORE INTO devices (id) VALUES (?)", [(d,) for d in devices]
        )
        await db.execute("COMMIT")
        return cls(db)

    async def insert(self, table: str, columns: Sequence[str], rows: list[Row]) -> list[int]:
        one = "(" + ",".join("?" * len(columns)) + ")"
        sql = (
            f"INSERT INTO {table} ({','.join(columns)}) VALUES "
            + ",".join([one] * len(rows))
            + " RETURNING id"
        )
        params = [value for row in rows for value in row]
        await self.db.execute("BEGIN")
        try:
            async with self.db.execute(sql, params) as cursor:
                ids = [row[0] for row in await cursor.fetchall()]
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        return sorted(ids)  # one connection, multi-row VALUES: ids ascend with the input

    async def count(self, table: str) -> int:
        async with self.db.execute(f"SELECT count(*) FROM {table}") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0


class PostgresStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, url: str, devices: list[str]) -> PostgresStore:
        conn = await asyncpg.connect(url)
        await conn.execute(_PG_SCHEMA)
        await conn.execute(
            "INSERT INTO devices (id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", devices
        )
        return cls(conn)

    async def insert(self, table: str, columns: Sequence[str], rows: list[Row]) -> list[int]:
        arrays = ", ".join(f"${n + 1}::{_PG_TYPES[c]}[]" for n, c in enumerate(columns))
        sql = (
            f"INSERT INTO {table} ({','.join(columns)}) SELECT * FROM unnest({arrays}) RETURNING id"
        )
        values = [list(column) for column in zip(*rows, strict=True)]
        found = await self.conn.fetch(sql, *values)
        return sorted(r[0] for r in found)

    async def count(self, table: str) -> int:
        return int(await self.conn.fetchval(f"SELECT count(*) FROM {table}"))


class Writer:
    """Group commit: everything waiting goes into the next multi-row insert."""

    def __init__(self, store: Store, table: str, columns: Sequence[str]) -> None:
        self.store, self.table, self.columns = store, table, columns
        self.queue: asyncio.Queue[tuple[Row, asyncio.Future[int]]] = asyncio.Queue(100_000)
        self.stored: list[tuple[int, Row]] = []
        self.after: Any = None

    async def add(self, row: Row) -> int:
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((row, done))
        return await done

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < _BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                ids = await self.store.insert(self.table, self.columns, [r for r, _ in batch])
            except Exception as error:
                for _, done in batch:
                    done.set_exception(error)
                continue
            for (row, done), row_id in zip(batch, ids, strict=True):
                if self.after is not None:
                    await self.after(row_id, row)
                done.set_result(row_id)


class Server:
    def __init__(self, store: Store) -> None:
        self.notifications = Writer(store, "notifications", _NOTIFICATION_COLUMNS)
        self.notifications.after = self.fan_out
        self.commands = Writer(store, "commands", _COMMAND_COLUMNS)
        self.subscribers: list[web.WebSocketResponse] = []
        self.decode = msgspec.json.Decoder(Inbound).decode
        self.body = msgspec.json.Decoder(Body).decode
        self.device_bearer = "Bearer " + os.environ.get("BENCH_CREDENTIAL", "")
        self.admin_bearer = "Bearer " + os.environ.get("BENCH_TOKEN", "")

    async def fan_out(self, row_id: int, row: Row) -> None:
        if not self.subscribers:
            return
        device_id, name, parameters, timestamp = row
        data = {
            "id": row_id,
            "deviceId": device_id,
            "name": name,
            "parameters": msgspec.Raw(parameters.encode()),
            "timestamp": timestamp,
        }
        frame = _encode(
            {"type": "event", "subscriptionId": 1, "topic": "notification", "data": data}
        )
        for ws in self.subscribers:
            if not ws.closed:
                await ws.send_frame(frame, WSMsgType.TEXT)

    async def notification(self, device_id: str, name: str, parameters: msgspec.Raw) -> int:
        row = (device_id, name, bytes(parameters).decode(), datetime.now(UTC))
        return await self.notifications.add(row)

    async def device_ws(self, request: web.Request) -> web.WebSocketResponse:
        if request.headers.get("Authorization") != self.device_bearer:
            raise web.HTTPUnauthorized()
        device_id = request.query.get("deviceId", "")
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        pending: set[asyncio.Task[None]] = set()

        async def handle(frame: Inbound) -> None:
            row_id = await self.notification(device_id, frame.name or "", frame.parameters)
            if frame.requestId is not None:
                reply = {"type": "response", "requestId": frame.requestId, "data": {"id": row_id}}
                await ws.send_frame(_encode(reply), WSMsgType.TEXT)

        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            frame = self.decode(message.data)
            if frame.type == "notification":
                task = asyncio.create_task(handle(frame))
                pending.add(task)
                task.add_done_callback(pending.discard)
        return ws

    async def post_notification(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self.device_bearer:
            raise web.HTTPUnauthorized()
        body = self.body(await request.read())
        row_id = await self.notification(
            request.match_info["device_id"], body.name, body.parameters
        )
        return web.Response(
            body=_encode({"id": row_id}), status=201, content_type="application/json"
        )

    async def post_command(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self.admin_bearer:
            raise web.HTTPUnauthorized()
        body = self.body(await request.read())
        now = datetime.now(UTC)
        row = (
            request.match_info["device_id"],
            body.name,
            bytes(body.parameters).decode(),
            "pending",
            now,
            now,
            now + timedelta(days=1),
            300.0,
        )
        row_id = await self.commands.add(row)
        return web.Response(
            body=_encode({"id": row_id, "state": "pending"}),
            status=201,
            content_type="application/json",
        )

    async def client_ws(self, request: web.Request) -> web.WebSocketResponse:
        if request.headers.get("Authorization") != self.admin_bearer:
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        try:
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                frame = self.decode(message.data)
                if frame.type == "subscribe":
                    self.subscribers.append(ws)
                    reply = {
                        "type": "response",
                        "requestId": frame.requestId,
                        "data": {"subscriptionId": 1},
                    }
                    await ws.send_str(_encode(reply).decode())
        finally:
            if ws in self.subscribers:
                self.subscribers.remove(ws)
        return ws


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(port: int, store_url: str, devices: list[str]) -> None:
    store: SqliteStore | PostgresStore
    if store_url.startswith("postgresql"):
        store = await PostgresStore.open(store_url, devices)
    else:
        store = await SqliteStore.open(store_url.removeprefix("sqlite:///"), devices)
    server = Server(store)
    writers = [
        asyncio.create_task(server.notifications.run()),
        asyncio.create_task(server.commands.run()),
    ]

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"rows": await store.count(request.match_info["table"])})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/bench/count/{table:notifications|commands}", count)
    app.router.add_get("/api/v1/ws", server.client_ws)
    app.router.add_get("/api/v1/device/ws", server.device_ws)
    app.router.add_post("/api/v1/device/{device_id}/notifications", server.post_notification)
    app.router.add_post("/api/v1/devices/{device_id}/commands", server.post_command)
    await serve_app(app, port, backlog=4096)
    for task in writers:
        task.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", required=True, help="sqlite:///path or postgresql://...")
    parser.add_argument("--devices", required=True, help="comma-separated device ids")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.store, args.devices.split(",")))


if __name__ == "__main__":
    main()
