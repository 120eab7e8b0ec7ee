"""``tether device``: register devices, issue their credentials, block them, look at them."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.text import Text

from tether.api.codec import DeviceCreate
from tether.cli_commands.common import (
    Api,
    Client,
    Col,
    SkipOption,
    confirm,
    done,
    emit_list,
    emit_record,
    out,
    parse_json,
    print_json,
    warn,
    with_client,
)

device_app = typer.Typer(
    help="Manage devices: register them, issue credentials, block, inspect.\n\n"
    "A device authenticates with its own credential (see 'tether device credential'); "
    "run one with 'tether agent native'.\n\n"
    "Example: tether device create --id lamp-1 --name 'Desk lamp' --with-credential",
    no_args_is_help=True,
)

DEVICE_COLUMNS = (
    Col("ID", "id", wrap=False),
    Col("NAME", "name"),
    Col("DIALECT", "dialect"),
    Col("NETWORK", "networkId"),
    Col("TYPE", "typeId"),
    Col("ONLINE", "online", "bool"),
    Col("BLOCKED", "blocked", "bool"),
    Col("LAST SEEN", "lastSeen", "time"),
)
DEVICE_FIELDS = (
    Col("id", "id"),
    Col("name", "name"),
    Col("dialect", "dialect"),
    Col("network", "networkId"),
    Col("type", "typeId"),
    Col("owner", "ownerId"),
    Col("online", "online", "bool"),
    Col("blocked", "blocked", "bool"),
    Col("credential", "hasCredential", "bool"),
    Col("data", "data", "json"),
    Col("attributes", "attributes", "json"),
    Col("created", "createdAt", "time"),
    Col("updated", "updatedAt", "time"),
    Col("last seen", "lastSeen", "time"),
)
STATE_FIELDS = (
    Col("device", "deviceId"),
    Col("reported", "reported", "json"),
    Col("desired", "desired", "json"),
    Col("version", "version"),
    Col("updated", "updatedAt", "time"),
)

CONFIG_FIELDS = (
    Col("id", "id"),
    Col("device", "deviceId"),
    Col("device type", "deviceTypeId"),
    Col("document", "document", "json"),
    Col("created", "createdAt", "time"),
)

DeviceId = Annotated[
    str, typer.Argument(help="Device id (see 'tether device list').", show_default=False)
]
NetworkOption = Annotated[int | None, typer.Option(help="Network id the device belongs to.")]
TypeOption = Annotated[int | None, typer.Option(help="Device type id.")]
DataOption = Annotated[
    str | None, typer.Option(help="Free-form JSON kept with the device, or @file.json.")
]


OwnerOption = Annotated[
    str | None,
    typer.Option(help="The user (id or login) the device belongs to.", show_default=False),
]


async def owner_id(api: Api, user: str) -> int:
    """The id of the user named by ``user``: an id as given, or a login looked up."""
    if user.isdigit():
        return int(user)
    found = await api.call("GET", "/api/v1/users", params={"login": user})
    if not found:
        raise typer.BadParameter(f"no user with login {user!r}", param_hint="--owner/--user")
    return int(found[0]["id"])


def _path(device_id: str) -> str:
    return f"/api/v1/devices/{quote(device_id, safe='')}"


def _print_credential(device_id: str, credential: str) -> None:
    out.print(Text.assemble("credential: ", (credential, "bold")))
    warn(
        f"Store this credential now: it is not shown again. The device authenticates with "
        f"it, e.g. tether agent native --device-id {device_id} --credential <credential>"
    )


@device_app.command("list")
@with_client()
def list_devices(
    client: Client,
    network_id: NetworkOption = None,
    type_id: TypeOption = None,
    name: Annotated[
        str | None, typer.Option(help="Exact name, or a pattern with % wildcards (lamp-%).")
    ] = None,
    dialect: Annotated[str | None, typer.Option(help="Only devices of this dialect.")] = None,
    take: Annotated[int, typer.Option(help="At most this many devices.", min=1, max=1000)] = 100,
    skip: SkipOption = 0,
) -> None:
    """List the devices you can see, by name.

    Example: tether device list --network-id 1 --name 'lamp-%' --skip 1000 --take 1000
    """
    params: dict[str, Any] = {
        "networkId": network_id,
        "typeId": type_id,
        "dialect": dialect,
        "take": take,
        "skip": skip or None,
    }
    if name is not None:
        params["namePattern" if "%" in name else "name"] = name
    rows = client.run(lambda api: api.call("GET", "/api/v1/devices", params=params))
    emit_list(client, rows, DEVICE_COLUMNS, empty="no devices")


@device_app.command("create")
@with_client()
def create_device(
    client: Client,
    device_id: Annotated[
        str | None,
        typer.Option("--id", help="Device id (letters, digits, _.:@-); generated when omitted."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name; defaults to the id.")] = None,
    network_id: NetworkOption = None,
    type_id: TypeOption = None,
    dialect: Annotated[
        str, typer.Option(help="Protocol the device speaks (native, devicehive, ...).")
    ] = "native",
    data: DataOption = None,
    attributes: Annotated[
        str | None,
        typer.Option(
            help="Dialect fields as a JSON object, or @file.json (e.g. an eWeLink "
            "device's apikey, a Control iD terminal's options, an OpenGate endpoint).",
            show_default=False,
        ),
    ] = None,
    owner: OwnerOption = None,
    with_credential: Annotated[
        bool,
        typer.Option("--with-credential", help="Also issue its credential and print it (once)."),
    ] = False,
) -> None:
    """Register a device; with --with-credential, also issue the secret it connects with.

    Example: tether device create --id lamp-1 --name 'Desk lamp' --network-id 1 --with-credential

    Example: tether device create --id 100008db11 --dialect ewelink --owner alice
    --attributes '{"apikey": "2f1c..."}'
    """
    if name is None and device_id is None:
        raise typer.BadParameter("give --name (or --id, which then is also the name)")
    extra = parse_json(attributes, "--attributes") if attributes is not None else {}
    if not isinstance(extra, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--attributes")

    async def create(api: Api) -> tuple[Any, Any]:
        body = DeviceCreate(
            id=device_id,
            name=name or device_id or "",
            network_id=network_id,
            type_id=type_id,
            owner_id=await owner_id(api, owner) if owner is not None else None,
            dialect=dialect,
            data=parse_json(data, "--data") if data is not None else None,
            attributes=extra,
        )
        device = await api.call("POST", "/api/v1/devices", body=body)
        credential = None
        if with_credential:
            credential = await api.call("POST", _path(device["id"]) + "/credential")
            device["hasCredential"] = True
        return device, credential

    device, credential = client.run(create)
    if client.json:
        print_json({**device, **({"credential": credential["credential"]} if credential else {})})
    else:
        emit_record(client, device, DEVICE_FIELDS, title="device created")
    if credential:
        if not client.json:
            _print_credential(device["id"], credential["credential"])
        else:
            warn("Store the credential now: it is not shown again.")


@device_app.command("show")
@with_client()
def show_device(client: Client, device_id: DeviceId) -> None:
    """Show one device, with whether it is online now.

    Example: tether device show lamp-1
    """
    emit_record(client, client.run(lambda api: api.call("GET", _path(device_id))), DEVICE_FIELDS)


@device_app.command("update")
@with_client()
def update_device(
    client: Client,
    device_id: DeviceId,
    name: Annotated[str | None, typer.Option(help="New display name.")] = None,
    network_id: NetworkOption = None,
    type_id: TypeOption = None,
    data: DataOption = None,
) -> None:
    """Change a device; only the options given are changed (--data 'null' clears data).

    Example: tether device update lamp-1 --name 'Hall lamp' --network-id 2
    """
    changes: dict[str, Any] = {
        k: v
        for k, v in {"name": name, "networkId": network_id, "typeId": type_id}.items()
        if v is not None
    }
    if data is not None:
        changes["data"] = parse_json(data, "--data")
    if not changes:
        raise typer.BadParameter("give at least one option to change")
    row = client.run(lambda api: api.call("PATCH", _path(device_id), body=changes))
    emit_record(client, row, DEVICE_FIELDS, title="device updated")


@device_app.command("assign")
@with_client()
def assign_device(
    client: Client,
    device_id: DeviceId,
    user: Annotated[
        str | None, typer.Option(help="The user (id or login) the device is assigned to.")
    ] = None,
    unassign: Annotated[
        bool, typer.Option("--unassign", help="Take the device away from its user.")
    ] = False,
) -> None:
    """Assign a device to a user (its owner), or --unassign it.

    An InfiniteClouds device gets its token only once assigned; re-assigning or
    unassigning makes it register again.

    Example: tether device assign ic-c44bd1a032c1 --user alice
    """
    if (user is None) == (not unassign):
        raise typer.BadParameter("give either --user or --unassign")

    async def assign(api: Api) -> Any:
        owner = await owner_id(api, user) if user is not None else None
        return await api.call("PATCH", _path(device_id), body={"ownerId": owner})

    row = client.run(assign)
    title = "device unassigned" if unassign else "device assigned"
    emit_record(client, row, DEVICE_FIELDS, title=title)


@device_app.command("delete")
@with_client()
def delete_device(
    client: Client,
    device_id: DeviceId,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a device with its commands, notifications and state.

    Example: tether device delete lamp-1 --yes
    """
    confirm(f"Delete device {device_id} and all its history?", yes)
    client.run(lambda api: api.call("DELETE", _path(device_id)))
    done(client, f"device {device_id} deleted", {"id": device_id, "deleted": True})


@device_app.command("block")
@with_client()
def block_device(client: Client, device_id: DeviceId) -> None:
    """Block a device: it can no longer connect, post or take commands (until unblocked).

    Example: tether device block lamp-1
    """
    row = client.run(lambda api: api.call("POST", _path(device_id) + "/block"))
    emit_record(client, row, DEVICE_FIELDS, title="device blocked")


@device_app.command("unblock")
@with_client()
def unblock_device(client: Client, device_id: DeviceId) -> None:
    """Unblock a device so it may connect again.

    Example: tether device unblock lamp-1
    """
    row = client.run(lambda api: api.call("POST", _path(device_id) + "/unblock"))
    emit_record(client, row, DEVICE_FIELDS, title="device unblocked")


@device_app.command("credential")
@with_client()
def issue_credential(client: Client, device_id: DeviceId) -> None:
    """Issue a new credential for a device and print it once; the previous one stops working.

    Use it to provision a device, or to rotate a leaked secret.

    Example: tether device credential lamp-1
    """
    body = client.run(lambda api: api.call("POST", _path(device_id) + "/credential"))
    if client.json:
        print_json(body)
        warn("Store the credential now: it is not shown again.")
    else:
        _print_credential(device_id, body["credential"])


@device_app.command("state")
@with_client()
def device_state(client: Client, device_id: DeviceId) -> None:
    """Show the device's state shadow: what it reported and what is desired.

    Example: tether device state lamp-1 --json
    """
    row = client.run(lambda api: api.call("GET", _path(device_id) + "/state"))
    emit_record(client, row, STATE_FIELDS)


@device_app.command("desire")
@with_client()
def desire_state(
    client: Client,
    device_id: DeviceId,
    desired: Annotated[
        str,
        typer.Argument(
            help="What to merge into the desired state, as a JSON object (or @file.json): "
            "each top-level key given replaces the one there.",
            show_default=False,
        ),
    ],
) -> None:
    """Merge into the device's desired state; the device sees it on its state endpoint.

    Example: tether device desire lamp-1 '{"brightness": 40}'
    """
    change = parse_json(desired, "DESIRED")
    if not isinstance(change, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="DESIRED")
    body = {"desired": change}
    row = client.run(lambda api: api.call("PATCH", _path(device_id) + "/state", body=body))
    emit_record(client, row, STATE_FIELDS, title="desired state updated")


@device_app.command("config")
@with_client()
def device_config(client: Client, device_id: DeviceId) -> None:
    """Show the config revision that applies to the device now (its own, its type's, or
    everyone's).

    Example: tether device config lamp-1 --json
    """
    row = client.run(lambda api: api.call("GET", _path(device_id) + "/config"))
    emit_record(client, row, CONFIG_FIELDS)
