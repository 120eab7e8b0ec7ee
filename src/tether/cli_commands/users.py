"""``tether user`` and ``tether apikey``: accounts, their network grants, and API keys."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.text import Text

from tether.api.codec import ApiKeyCreate, UserCreate
from tether.cli_commands.common import (
    Api,
    Client,
    Col,
    confirm,
    done,
    emit_list,
    emit_record,
    fail,
    out,
    parse_duration,
    parse_json,
    print_json,
    warn,
    with_client,
)

if TYPE_CHECKING:
    from tether.core.model import User

user_app = typer.Typer(
    help="Manage users: who may log in, as admin or client, and which networks they see.\n\n"
    "Example: tether user create --login alice --role client",
    no_args_is_help=True,
)
apikey_app = typer.Typer(
    help="Manage API keys: long-lived tokens (tk_...) for scripts and services.\n\n"
    "Use one as --token / TETHER_TOKEN. Example: tether apikey create --name ci",
    no_args_is_help=True,
)

USER_COLUMNS = (
    Col("ID", "id"),
    Col("LOGIN", "login"),
    Col("ROLE", "role"),
    Col("STATUS", "status"),
    Col("NETWORKS", "networkIds", "list"),
    Col("LAST LOGIN", "lastLogin", "time"),
)
USER_FIELDS = (
    Col("id", "id"),
    Col("login", "login"),
    Col("role", "role"),
    Col("status", "status"),
    Col("networks", "networkIds", "list"),
    Col("all device types", "allDeviceTypes", "bool"),
    Col("device types", "deviceTypeIds", "list"),
    Col("data", "data", "json"),
    Col("created", "createdAt", "time"),
    Col("last login", "lastLogin", "time"),
)
KEY_COLUMNS = (
    Col("ID", "id"),
    Col("USER", "userId"),
    Col("NAME", "name"),
    Col("PREFIX", "prefix", wrap=False),
    Col("CREATED", "createdAt", "time"),
    Col("EXPIRES", "expiresAt", "time"),
    Col("LAST USED", "lastUsedAt", "time"),
    Col("REVOKED", "revoked", "bool"),
)

KEY_FIELDS = (
    Col("id", "id"),
    Col("user", "userId"),
    Col("name", "name"),
    Col("prefix", "prefix"),
    Col("created", "createdAt", "time"),
    Col("expires", "expiresAt", "time"),
)

Role = Literal["client", "admin"]
Status = Literal["active", "locked", "disabled"]
UserId = Annotated[
    int, typer.Argument(help="User id (see 'tether user list').", show_default=False)
]


def _new_password(login: str) -> str:
    if not sys.stdin.isatty():
        fail("--password is required when stdin is not a terminal")
    password: str = typer.prompt(f"Password for {login}", hide_input=True, confirmation_prompt=True)
    return password


@user_app.command("list")
@with_client()
def list_users(
    client: Client,
    role: Annotated[Role | None, typer.Option(help="Only users with this role.")] = None,
    status: Annotated[Status | None, typer.Option(help="Only users in this status.")] = None,
    take: Annotated[int, typer.Option(help="At most this many users.", min=1, max=1000)] = 100,
) -> None:
    """List users (admin only).

    Example: tether user list --role admin
    """
    params = {"role": role, "status": status, "take": take}
    emit_list(
        client,
        client.run(lambda api: api.call("GET", "/api/v1/users", params=params)),
        USER_COLUMNS,
        empty="no users",
    )


@user_app.command("create")
@with_client(login_flag="--auth-login", password_flag="--auth-password")
def create_user(
    client: Client,
    login: Annotated[str, typer.Option(help="Login name of the new user.", show_default=False)],
    password: Annotated[
        str | None,
        typer.Option(help="Password of the new user; prompted (hidden) when omitted."),
    ] = None,
    role: Annotated[
        Role, typer.Option(help="client sees only granted networks; admin sees everything.")
    ] = "client",
    data: Annotated[str | None, typer.Option(help="Free-form JSON kept with the user.")] = None,
) -> None:
    """Create a user (admin only).

    The caller's own credentials come from --token, TETHER_LOGIN/TETHER_PASSWORD, or
    --auth-login/--auth-password, since --login and --password name the new user.

    Example: tether user create --login alice --role client
    """
    body = UserCreate(
        login=login,
        password=password if password is not None else _new_password(login),
        role=role,
        data=parse_json(data, "--data") if data is not None else None,
    )
    user = client.run(lambda api: api.call("POST", "/api/v1/users", body=body))
    emit_record(client, user, USER_FIELDS, title="user created")


@user_app.command("show")
@with_client()
def show_user(
    client: Client,
    user_id: Annotated[str, typer.Argument(help="User id, or 'me' for yourself.")] = "me",
) -> None:
    """Show a user, or yourself with 'me' (useful to check which account a token is for).

    Example: tether user show me
    """
    if user_id != "me" and not user_id.isdigit():
        raise typer.BadParameter("must be a user id or 'me'", param_hint="USER_ID")
    user = client.run(lambda api: api.call("GET", f"/api/v1/users/{user_id}"))
    emit_record(client, user, USER_FIELDS)


@user_app.command("update")
@with_client(login_flag="--auth-login", password_flag="--auth-password")
def update_user(
    client: Client,
    user_id: UserId,
    login: Annotated[str | None, typer.Option(help="New login name.")] = None,
    password: Annotated[str | None, typer.Option(help="New password.")] = None,
    prompt_password: Annotated[
        bool, typer.Option("--prompt-password", help="Ask for the new password (hidden).")
    ] = False,
    role: Annotated[Role | None, typer.Option(help="New role.")] = None,
    status: Annotated[
        Status | None, typer.Option(help="locked or disabled users cannot log in.")
    ] = None,
    data: Annotated[str | None, typer.Option(help="Replace the user's JSON data.")] = None,
) -> None:
    """Change a user; only the options given are changed.

    Example: tether user update 3 --status locked
    """
    changes: dict[str, Any] = {"login": login, "role": role, "status": status}
    changes["password"] = _new_password(f"user {user_id}") if prompt_password else password
    changes = {k: v for k, v in changes.items() if v is not None}
    if data is not None:
        changes["data"] = parse_json(data, "--data")
    if not changes:
        raise typer.BadParameter("give at least one option to change")
    user = client.run(lambda api: api.call("PATCH", f"/api/v1/users/{user_id}", body=changes))
    emit_record(client, user, USER_FIELDS, title="user updated")


@user_app.command("delete")
@with_client()
def delete_user(
    client: Client,
    user_id: UserId,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a user and their API keys.

    Example: tether user delete 3 --yes
    """
    confirm(f"Delete user {user_id}?", yes)
    client.run(lambda api: api.call("DELETE", f"/api/v1/users/{user_id}"))
    done(client, f"user {user_id} deleted", {"id": user_id, "deleted": True})


NetworkId = Annotated[int, typer.Argument(help="Network id (see 'tether network list').")]


@user_app.command("grant-network")
@with_client()
def grant_network(client: Client, user_id: UserId, network_id: NetworkId) -> None:
    """Let a client user see and drive the devices of a network (admin only).

    Example: tether user grant-network 3 1
    """
    path = f"/api/v1/users/{user_id}/networks/{network_id}"
    client.run(lambda api: api.call("PUT", path))
    done(
        client,
        f"user {user_id} granted network {network_id}",
        {"userId": user_id, "networkId": network_id, "granted": True},
    )


@user_app.command("revoke-network")
@with_client()
def revoke_network(client: Client, user_id: UserId, network_id: NetworkId) -> None:
    """Take a network away from a user (admin only).

    Example: tether user revoke-network 3 1
    """
    path = f"/api/v1/users/{user_id}/networks/{network_id}"
    client.run(lambda api: api.call("DELETE", path))
    done(
        client,
        f"user {user_id} no longer has network {network_id}",
        {"userId": user_id, "networkId": network_id, "granted": False},
    )


# --- API keys ---------------------------------------------------------------------------------


@apikey_app.command("list")
@with_client()
def list_keys(
    client: Client,
    user_id: Annotated[
        int | None,
        typer.Option(help="Keys of this user (admin); default: yours, or all for an admin."),
    ] = None,
) -> None:
    """List API keys (never the keys themselves: only their prefixes).

    Example: tether apikey list
    """
    keys = client.run(lambda api: api.call("GET", "/api/v1/apikeys", params={"userId": user_id}))
    emit_list(client, keys, KEY_COLUMNS, empty="no API keys")


@apikey_app.command("create")
@with_client()
def create_key(
    client: Client,
    name: Annotated[str, typer.Option(help="What the key is for, e.g. 'ci' or 'grafana'.")],
    user_id: Annotated[
        int | None, typer.Option(help="Create it for this user (admin); default: yourself.")
    ] = None,
    expires_in: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 3600, 12h or 90d; default: never.")
    ] = None,
) -> None:
    """Create an API key and print it once: it cannot be shown again, so store it now.

    Example: tether apikey create --name ci --expires-in 90d
    """
    lifetime = parse_duration(expires_in, "--expires-in") if expires_in is not None else None
    body = ApiKeyCreate(name=name, user_id=user_id, expires_in=lifetime)

    async def create(api: Api) -> Any:
        return await api.call("POST", "/api/v1/apikeys", body=body)

    key = client.run(create)
    if client.json:
        print_json(key)
    else:
        emit_record(client, key, KEY_FIELDS, title="API key created")
        out.print(Text.assemble("\nkey: ", (str(key.get("key")), "bold")))
    warn("Store this key now: it is not shown again (only its prefix is kept).")


@apikey_app.command("revoke")
@with_client()
def revoke_key(
    client: Client,
    key_id: Annotated[int, typer.Argument(help="API key id (see 'tether apikey list').")],
) -> None:
    """Revoke an API key: requests made with it fail from now on.

    Example: tether apikey revoke 4
    """
    client.run(lambda api: api.call("DELETE", f"/api/v1/apikeys/{key_id}"))
    done(client, f"API key {key_id} revoked", {"id": key_id, "revoked": True})


# --- offline recovery: straight to the database, no server needed -------------------------------

OfflineConfig = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="The server's TOML settings file.", exists=True, dir_okay=False
    ),
]
OfflineDataDir = Annotated[
    Path | None, typer.Option(help="The server's data directory [default: from settings].")
]
OfflineDatabase = Annotated[
    str | None, typer.Option(help="The server's database URL [default: from settings].")
]
Login = Annotated[str, typer.Argument(help="Login name of the user.", show_default=False)]


def _recover(
    login: str,
    config: Path | None,
    data_dir: Path | None,
    database_url: str | None,
    change: Callable[[User], Awaitable[dict[str, Any]]],
) -> None:
    """Apply ``change(user)`` (columns to set) to a user, in the server's own database.

    The database is the one ``tether serve`` would use with the same settings (TETHER_*
    variables, ``--config``, or the options here); nothing talks to a running server.
    """
    from pydantic import ValidationError
    from sqlalchemy.engine import make_url

    from tether.core.errors import TetherError
    from tether.settings import Settings
    from tether.store import Store

    if config is not None:
        os.environ["TETHER_CONFIG"] = str(config)
    overrides: dict[str, Any] = {"data_dir": data_dir, "database_url": database_url}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        fail(f"invalid settings:\n{error}", 2)
    url = settings.resolved_database_url
    if settings.is_sqlite:
        path = Path(make_url(url).database or "")
        if not path.is_file():
            fail(f"no database at {path.resolve()}: give the server's --data-dir or --config")

    async def apply() -> None:
        store = await Store.open(url, migrate=True)
        try:
            user = await store.users.get_by_login(login)
            if user is None:
                fail(f"no user {login!r} in {make_url(url).render_as_string()}")
            await store.users.update(user.id, **await change(user))
        finally:
            await store.close()

    try:
        asyncio.run(apply())
    except TetherError as error:
        fail(error.message)


@user_app.command("set-password")
def set_password(
    login: Login,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from stdin.")
    ] = False,
    config: OfflineConfig = None,
    data_dir: OfflineDataDir = None,
    database_url: OfflineDatabase = None,
) -> None:
    """Set a user's password in the database itself: works with the server stopped.

    The way back in when no admin can log in. Run it with the server's settings (the same
    TETHER_* variables, --config or --data-dir). It also clears the user's failed-login
    count; a running server's login delays end by themselves.

    Example: tether user set-password admin --data-dir /var/lib/tether
    """
    from tether.hub import secrets
    from tether.hub.directory import MIN_PASSWORD_LENGTH

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = typer.prompt(
            f"New password for {login}", hide_input=True, confirmation_prompt=True
        )
    else:
        fail("stdin is not a terminal: pass the password with --password-stdin")
    if len(password) < MIN_PASSWORD_LENGTH:
        fail(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")

    async def change(user: User) -> dict[str, Any]:
        return {"password_hash": await secrets.hash_password(password), "login_attempts": 0}

    _recover(login, config, data_dir, database_url, change)
    out.print(Text(f"password of {login} changed", style="green"))


@user_app.command("unlock")
def unlock(
    login: Login,
    config: OfflineConfig = None,
    data_dir: OfflineDataDir = None,
    database_url: OfflineDatabase = None,
) -> None:
    """Make a locked or disabled user active again, in the database itself (server may
    be stopped).

    Example: tether user unlock admin --data-dir /var/lib/tether
    """

    async def change(user: User) -> dict[str, Any]:
        return {"status": "active", "login_attempts": 0}

    _recover(login, config, data_dir, database_url, change)
    out.print(Text(f"{login} is active", style="green"))
