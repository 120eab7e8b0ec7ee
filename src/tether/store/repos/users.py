"""Users and their DeviceHive scoping (network and device-type links).

The links live in their own tables so that "which users may see network N" and
"which networks may user U see" are both plain indexed lookups; the ``User`` entity
carries them as sorted tuples, filled here, so callers never see the join tables.
"""

from __future__ import annotations

import builtins
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from tether.core.errors import Conflict
from tether.core.model import Role, User, UserStatus
from tether.store.repos._base import Repo, check_fields, chunks, page, write_error
from tether.store.schema import user_device_types, user_networks, users

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy import ColumnElement, RowMapping, Table
    from sqlalchemy.ext.asyncio import AsyncConnection

_UPDATABLE = frozenset(
    {
        "login",
        "role",
        "status",
        "password_hash",
        "data",
        "all_device_types",
        "intro_reviewed",
        "login_attempts",
        "last_login",
    }
)
_SORTS = {
    "id": users.c.id,
    "login": users.c.login,
    "role": users.c.role,
    "status": users.c.status,
    "created_at": users.c.created_at,
    "last_login": users.c.last_login,
}
_INSERT = insert(users).returning(*users.c)
_BY_ID = select(users).where(users.c.id == bindparam("b_id"))
_BY_LOGIN = select(users).where(users.c.login == bindparam("b_login"))


def _to_user(row: RowMapping, network_ids: Sequence[int], type_ids: Sequence[int]) -> User:
    return User(
        id=row["id"],
        login=row["login"],
        role=Role(row["role"]),
        status=UserStatus(row["status"]),
        password_hash=row["password_hash"],
        data=row["data"],
        network_ids=tuple(sorted(network_ids)),
        device_type_ids=tuple(sorted(type_ids)),
        all_device_types=row["all_device_types"],
        intro_reviewed=row["intro_reviewed"],
        login_attempts=row["login_attempts"],
        created_at=row["created_at"],
        last_login=row["last_login"],
    )


_ACTIVE_ADMINS = (
    select(users.c.id)
    .where(users.c.role == Role.ADMIN.value, users.c.status == UserStatus.ACTIVE.value)
    # Lock them (PostgreSQL): two admins demoting each other at once take turns, and
    # the second sees the first's change. SQLite has one writer, so it takes turns anyway.
    .with_for_update()
)


async def _keep_an_admin(conn: AsyncConnection, id: int, fields: dict[str, Any] | None) -> None:
    """Refuse deleting (``fields`` None) or changing user ``id`` if that leaves no
    active admin: nobody could then manage users, and only the offline CLI could help."""
    admins = set((await conn.execute(_ACTIVE_ADMINS)).scalars())
    if id not in admins or len(admins) > 1:
        return
    if fields is not None:
        role = Role(fields.get("role", Role.ADMIN))
        status = UserStatus(fields.get("status", UserStatus.ACTIVE))
        if role is Role.ADMIN and status is UserStatus.ACTIVE:
            return
    raise Conflict(
        f"user {id} is the last active admin; make another user an active admin first",
        user_id=id,
    )


class UserRepo(Repo):
    async def create(
        self,
        *,
        login: str,
        role: Role,
        password_hash: str | None,
        now: datetime,
        data: Any = None,
        all_device_types: bool = True,
        status: UserStatus = UserStatus.ACTIVE,
    ) -> User:
        values = {
            "login": login,
            "role": role,
            "status": status,
            "password_hash": password_hash,
            "data": data,
            "all_device_types": all_device_types,
            "intro_reviewed": False,
            "login_attempts": 0,
            "created_at": now,
            "last_login": None,
        }
        try:
            async with self._write() as conn:
                row = (await conn.execute(_INSERT, values)).mappings().one()
        except IntegrityError as error:
            raise write_error(error, f"user {login!r}", login=login) from None
        return _to_user(row, (), ())

    async def get(self, id: int) -> User | None:
        async with self._read() as conn:
            row = (await conn.execute(_BY_ID, {"b_id": id})).mappings().first()
            return None if row is None else (await self._with_links(conn, [row]))[0]

    async def get_by_login(self, login: str) -> User | None:
        async with self._read() as conn:
            row = (await conn.execute(_BY_LOGIN, {"b_login": login})).mappings().first()
            return None if row is None else (await self._with_links(conn, [row]))[0]

    def _filters(
        self,
        login: str | None,
        login_pattern: str | None,
        role: Role | None,
        status: UserStatus | None,
    ) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if login is not None:
            where.append(users.c.login == login)
        if login_pattern is not None:
            where.append(users.c.login.ilike(login_pattern))
        if role is not None:
            where.append(users.c.role == role)
        if status is not None:
            where.append(users.c.status == status)
        return where

    async def list(
        self,
        *,
        login: str | None = None,
        login_pattern: str | None = None,
        role: Role | None = None,
        status: UserStatus | None = None,
        sort: str = "id",
        desc: bool = False,
        skip: int = 0,
        take: int = 100,
    ) -> list[User]:
        """Users matching every given filter; ``login_pattern`` is a case-insensitive LIKE."""
        stmt = select(users).where(*self._filters(login, login_pattern, role, status))
        stmt = page(stmt, _SORTS, sort=sort, desc=desc, skip=skip, take=take, tiebreak=users.c.id)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
            return await self._with_links(conn, rows)

    async def count(
        self,
        *,
        login: str | None = None,
        login_pattern: str | None = None,
        role: Role | None = None,
        status: UserStatus | None = None,
    ) -> int:
        stmt = select(func.count()).select_from(users)
        stmt = stmt.where(*self._filters(login, login_pattern, role, status))
        async with self._read() as conn:
            return int((await conn.execute(stmt)).scalar_one())

    async def update(
        self, id: int, /, *, keep_an_admin: bool = False, **fields: Any
    ) -> User | None:
        """Set the given columns; ``None`` if there is no such user.

        With ``keep_an_admin``, a change that would leave no active admin (demoting,
        locking or disabling the last one) is refused with :class:`Conflict`.
        """
        check_fields(fields, _UPDATABLE, "user")
        try:
            async with self._write() as conn:
                if keep_an_admin and {"role", "status"} & fields.keys():
                    await _keep_an_admin(conn, id, fields)
                if fields:
                    stmt = update(users).where(users.c.id == id).values(**fields)
                    row = (await conn.execute(stmt.returning(*users.c))).mappings().first()
                else:
                    row = (await conn.execute(_BY_ID, {"b_id": id})).mappings().first()
                if row is None:
                    return None
                return (await self._with_links(conn, [row]))[0]
        except IntegrityError as error:
            raise write_error(error, "user", id=id, **fields) from None

    async def delete(self, id: int, *, keep_an_admin: bool = False) -> bool:
        """Delete the user; with ``keep_an_admin``, never the last active admin."""
        async with self._write() as conn:
            if keep_an_admin:
                await _keep_an_admin(conn, id, None)
            result = await conn.execute(delete(users).where(users.c.id == id))
            return result.rowcount > 0

    async def add_network(self, user_id: int, network_id: int) -> None:
        """Let the user see the network; adding an existing link is a no-op."""
        await self._link(user_networks, user_networks.c.network_id, user_id, network_id)

    async def remove_network(self, user_id: int, network_id: int) -> bool:
        return await self._unlink(user_networks, user_networks.c.network_id, user_id, network_id)

    async def add_device_type(self, user_id: int, device_type_id: int) -> None:
        await self._link(
            user_device_types, user_device_types.c.device_type_id, user_id, device_type_id
        )

    async def remove_device_type(self, user_id: int, device_type_id: int) -> bool:
        return await self._unlink(
            user_device_types, user_device_types.c.device_type_id, user_id, device_type_id
        )

    async def _link(
        self, table: Table, column: ColumnElement[int], user_id: int, target_id: int
    ) -> None:
        stmt = self._insert(table).values({"user_id": user_id, column.key: target_id})
        try:
            async with self._write() as conn:
                await conn.execute(stmt.on_conflict_do_nothing())
        except IntegrityError as error:
            raise write_error(
                error, f"link of user {user_id} to {table.name}", user_id=user_id
            ) from None

    async def _unlink(
        self, table: Table, column: ColumnElement[int], user_id: int, target_id: int
    ) -> bool:
        stmt = delete(table).where(table.c.user_id == user_id, column == target_id)
        async with self._write() as conn:
            return (await conn.execute(stmt)).rowcount > 0

    async def _with_links(
        self, conn: AsyncConnection, rows: Sequence[RowMapping]
    ) -> builtins.list[User]:
        """Entities for ``rows`` with their network and device-type ids attached."""
        ids = [row["id"] for row in rows]
        networks: defaultdict[int, list[int]] = defaultdict(list)
        types: defaultdict[int, list[int]] = defaultdict(list)
        for part in chunks(ids):
            for user_id, network_id in await conn.execute(
                select(user_networks.c.user_id, user_networks.c.network_id).where(
                    user_networks.c.user_id.in_(part)
                )
            ):
                networks[user_id].append(network_id)
            for user_id, type_id in await conn.execute(
                select(user_device_types.c.user_id, user_device_types.c.device_type_id).where(
                    user_device_types.c.user_id.in_(part)
                )
            ):
                types[user_id].append(type_id)
        return [_to_user(row, networks[row["id"]], types[row["id"]]) for row in rows]
