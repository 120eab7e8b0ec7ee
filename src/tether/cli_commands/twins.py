"""``tether config`` and ``tether firmware``: what devices should run, published by an admin.

A config revision or a firmware target applies to one device, to every device of a type,
or (with neither) to every device; the most specific one wins. Devices fetch them through
their dialect (InfiniteClouds keepalives, the native device API's config endpoint);
``tether device config <id>`` shows the revision that applies to one device.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tether.api.codec import ConfigCreate, FirmwareCreate
from tether.cli_commands.common import (
    Client,
    Col,
    confirm,
    done,
    emit_list,
    emit_record,
    parse_json,
    with_client,
)

config_app = typer.Typer(
    help="Publish config revisions for a device, a device type, or every device (admin).\n\n"
    "Example: tether config publish '{\"interval\": 30}' --device-type 2",
    no_args_is_help=True,
)
firmware_app = typer.Typer(
    help="Set the firmware a device, a device type, or every device should run (admin).\n\n"
    "Example: tether firmware set --version 1.2.0 --image-url https://fw.example/1.2.0.bin",
    no_args_is_help=True,
)

CONFIG_COLUMNS = (
    Col("ID", "id"),
    Col("DEVICE", "deviceId", wrap=False),
    Col("TYPE", "deviceTypeId"),
    Col("CREATED", "createdAt", "time"),
    Col("DOCUMENT", "document", "json"),
)
FIRMWARE_COLUMNS = (
    Col("ID", "id"),
    Col("VERSION", "version"),
    Col("DEVICE", "deviceId", wrap=False),
    Col("TYPE", "deviceTypeId"),
    Col("SIZE", "size"),
    Col("SHA-256", "sha256"),
    Col("URL", "url"),
    Col("CREATED", "createdAt", "time"),
)

DeviceTarget = Annotated[
    str | None,
    typer.Option("--device", help="For this device only.", show_default=False),
]
TypeTarget = Annotated[
    int | None,
    typer.Option("--device-type", help="For every device of this type.", show_default=False),
]


@config_app.command("list")
@with_client()
def list_configs(
    client: Client, device: DeviceTarget = None, device_type: TypeTarget = None
) -> None:
    """List config revisions, for one device or device type if given.

    Example: tether config list --device-type 2
    """
    params = {"deviceId": device, "deviceTypeId": device_type}
    rows = client.run(lambda api: api.call("GET", "/api/v1/config-revisions", params=params))
    emit_list(client, rows, CONFIG_COLUMNS, empty="no config revisions")


@config_app.command("publish")
@with_client()
def publish_config(
    client: Client,
    document: Annotated[
        str, typer.Argument(help="The config as JSON, or @file.json.", show_default=False)
    ],
    device: DeviceTarget = None,
    device_type: TypeTarget = None,
) -> None:
    """Publish a new config revision (for everyone unless --device or --device-type).

    Example: tether config publish @site.json --device ic-c44bd1a032c1
    """
    body = ConfigCreate(
        document=parse_json(document, "DOCUMENT"), device_id=device, device_type_id=device_type
    )
    row = client.run(lambda api: api.call("POST", "/api/v1/config-revisions", body=body))
    emit_record(client, row, CONFIG_COLUMNS, title="config revision published")


@firmware_app.command("list")
@with_client()
def list_firmware(client: Client) -> None:
    """List firmware targets.

    Example: tether firmware list --json
    """
    rows = client.run(lambda api: api.call("GET", "/api/v1/firmware-targets"))
    emit_list(client, rows, FIRMWARE_COLUMNS, empty="no firmware targets")


@firmware_app.command("set")
@with_client()
def set_firmware(
    client: Client,
    version: Annotated[str, typer.Option(help="Firmware version.", show_default=False)],
    image_url: Annotated[
        str, typer.Option(help="Where devices download the image.", show_default=False)
    ],
    size: Annotated[
        int | None, typer.Option(help="Image size in bytes.", min=0, show_default=False)
    ] = None,
    sha256: Annotated[
        str | None, typer.Option(help="SHA-256 of the image, hex.", show_default=False)
    ] = None,
    device: DeviceTarget = None,
    device_type: TypeTarget = None,
) -> None:
    """Set the firmware to run (for everyone unless --device or --device-type).

    Example: tether firmware set --version 1.2.0 --image-url https://fw.example/1.2.0.bin
    --device-type 2
    """
    body = FirmwareCreate(
        version=version,
        url=image_url,
        size=size,
        sha256=sha256,
        device_id=device,
        device_type_id=device_type,
    )
    row = client.run(lambda api: api.call("POST", "/api/v1/firmware-targets", body=body))
    emit_record(client, row, FIRMWARE_COLUMNS, title="firmware target set")


@firmware_app.command("delete")
@with_client()
def delete_firmware(
    client: Client,
    target_id: Annotated[int, typer.Argument(metavar="ID", help="The firmware target id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a firmware target.

    Example: tether firmware delete 3 --yes
    """
    confirm(f"Delete firmware target {target_id}?", yes)
    client.run(lambda api: api.call("DELETE", f"/api/v1/firmware-targets/{target_id}"))
    done(client, f"firmware target {target_id} deleted", {"id": target_id, "deleted": True})
