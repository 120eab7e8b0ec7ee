"""``tether network`` and ``tether devicetype``: the two ways to group devices.

Both are a name and a description with the same commands, so one factory builds both.
"""

# No "from __future__ import annotations": the option help texts below close over the
# factory's arguments, so the annotations must be evaluated where they are written.
from typing import Annotated

import typer

from tether.api.codec import NamedCreate
from tether.cli_commands.common import (
    Client,
    Col,
    SkipOption,
    confirm,
    done,
    emit_list,
    emit_record,
    with_client,
)

COLUMNS = (Col("ID", "id"), Col("NAME", "name"), Col("DESCRIPTION", "description"))


def named_group(noun: str, path: str, why: str, example_name: str) -> typer.Typer:
    """A ``list``/``show``/``create``/``update``/``delete`` group for a named resource."""
    command = "tether " + noun.replace(" ", "")
    group = typer.Typer(
        help=f"Manage {noun}s: {why}\n\nExample: {command} create --name {example_name}",
        no_args_is_help=True,
    )

    @group.command("list", help=f"List the {noun}s you can see.\n\nExample: {command} list --json")
    @with_client()
    def list_named(
        client: Client,
        take: Annotated[int, typer.Option(help="At most this many.", min=1, max=1000)] = 100,
        skip: SkipOption = 0,
    ) -> None:
        params = {"take": take, "skip": skip or None}
        rows = client.run(lambda api: api.call("GET", path, params=params))
        emit_list(client, rows, COLUMNS, empty=f"no {noun}s")

    ItemId = Annotated[int, typer.Argument(metavar="ID", help=f"The {noun} id.")]

    @group.command("show", help=f"Show one {noun}.\n\nExample: {command} show 2")
    @with_client()
    def show_named(client: Client, item_id: ItemId) -> None:
        emit_record(client, client.run(lambda api: api.call("GET", f"{path}/{item_id}")), COLUMNS)

    @group.command(
        "update",
        help=f"Rename a {noun} or change its description (admin only); only the options "
        f"given change.\n\nExample: {command} update 2 --description 'Ground floor'",
    )
    @with_client()
    def update_named(
        client: Client,
        item_id: ItemId,
        name: Annotated[str | None, typer.Option(help="New name.", show_default=False)] = None,
        description: Annotated[
            str | None, typer.Option(help="New description.", show_default=False)
        ] = None,
    ) -> None:
        if name is None and description is None:
            raise typer.BadParameter("give --name or --description")
        # Only what was given: a null description in the body would clear it.
        body = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
        row = client.run(lambda api: api.call("PATCH", f"{path}/{item_id}", body=body))
        emit_record(client, row, COLUMNS, title=f"{noun} updated")

    @group.command(
        "create",
        help=f"Create a {noun} (admin only) and print it with its id.\n\n"
        f"Example: {command} create --name {example_name} --description 'Second floor'",
    )
    @with_client()
    def create_named(
        client: Client,
        name: Annotated[str, typer.Option(help=f"Name of the {noun}.", show_default=False)],
        description: Annotated[
            str | None, typer.Option(help="A sentence about what it holds.")
        ] = None,
    ) -> None:
        body = NamedCreate(name=name, description=description)
        row = client.run(lambda api: api.call("POST", path, body=body))
        emit_record(client, row, COLUMNS, title=f"{noun} created")

    @group.command(
        "delete",
        help=f"Delete a {noun} (admin only). Refused while devices still use it, "
        f"unless --force.\n\nExample: {command} delete 2 --yes",
    )
    @with_client()
    def delete_named(
        client: Client,
        item_id: ItemId,
        force: Annotated[
            bool, typer.Option("--force", help="Delete even while devices still use it.")
        ] = False,
        yes: Annotated[
            bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")
        ] = False,
    ) -> None:
        confirm(f"Delete {noun} {item_id}?", yes)
        params = {"force": True} if force else None
        client.run(lambda api: api.call("DELETE", f"{path}/{item_id}", params=params))
        done(client, f"{noun} {item_id} deleted", {"id": item_id, "deleted": True})

    return group


network_app = named_group(
    "network",
    "/api/v1/networks",
    "groups of devices; a client user sees only the networks granted to them.",
    "greenhouse",
)
devicetype_app = named_group(
    "device type",
    "/api/v1/device-types",
    "kinds of device (a model or product line), for filtering and config targeting.",
    "thermostat-v2",
)
