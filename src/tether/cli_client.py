"""The client commands of ``tether``: everything but ``serve`` and ``db``.

One group per area, each in its own module of :mod:`tether.cli_commands`, imported only
when a command line reaches it (see :mod:`tether.cli_commands.lazy`). They all talk to a
running server over its native API, so they work the same against a laptop or a remote
cluster::

    tether user ...           users and their network grants
    tether apikey ...         API keys
    tether network ...        networks
    tether devicetype ...     device types
    tether device ...         devices, their credentials, desired state and config
    tether command ...        send commands and follow their results
    tether config ...         config revisions
    tether firmware ...       firmware targets
    tether notifications ...  stored and live notifications, or send one as a device
    tether presence ...       which devices are online, live
    tether agent ...          run a device agent in the foreground
    tether sim                simulate a fleet of devices against a server
    tether controlid ...      Control iD local-API commands
"""

from __future__ import annotations

import typer

from tether.cli_commands.lazy import Lazy, LazyGroup

_PACKAGE = "tether.cli_commands."

#: ``tether <group>``: where each client group lives.
GROUPS: dict[str, Lazy] = {
    "user": Lazy(_PACKAGE + "users", "user_app", "Manage users and their network grants."),
    "apikey": Lazy(_PACKAGE + "users", "apikey_app", "Manage API keys."),
    "network": Lazy(_PACKAGE + "catalog", "network_app", "Manage networks."),
    "devicetype": Lazy(_PACKAGE + "catalog", "devicetype_app", "Manage device types."),
    "device": Lazy(_PACKAGE + "devices", "device_app", "Manage devices."),
    "command": Lazy(_PACKAGE + "commands", "command_app", "Send commands to devices."),
    "notifications": Lazy(
        _PACKAGE + "notifications", "notifications_app", "Read what devices report."
    ),
    "config": Lazy(_PACKAGE + "twins", "config_app", "Publish config revisions."),
    "firmware": Lazy(_PACKAGE + "twins", "firmware_app", "Set firmware targets."),
    "presence": Lazy(_PACKAGE + "presence", "presence_app", "Watch devices come and go."),
    "agent": Lazy("tether.cli_client", "agent_app", "Run a device agent in the foreground."),
    "sim": Lazy(
        _PACKAGE + "sim", "sim_app", "Simulate a fleet of devices against a server.", single=True
    ),
    "controlid": Lazy(
        _PACKAGE + "agent_controlid", "controlid_app", "Queue Control iD local-API commands."
    ),
}

#: ``tether agent <dialect>``: each dialect's device agent (order: native, devicehive,
#: ewelink, controlid, opengate, infiniteclouds).
DIALECT_AGENTS: dict[str, Lazy] = {
    name: Lazy(_PACKAGE + module, attribute, text, single=True)
    for name, module, attribute, text in (
        ("native", "agent", "native_agent_app", "A native device."),
        ("devicehive", "agent_devicehive", "devicehive_agent_app", "A DeviceHive device."),
        ("ewelink", "agent_ewelink", "ewelink_agent_app", "An emulated Sonoff."),
        ("controlid", "agent_controlid", "controlid_agent_app", "A Control iD terminal."),
        ("opengate", "agent_opengate", "opengate_agent_app", "An OpenGate device."),
        ("keepalive", "agent_infiniteclouds", "keepalive_app", "The InfiniteClouds agent."),
    )
}


class ClientGroup(LazyGroup):
    """The ``tether`` root: ``serve`` and ``db`` are its own, the client groups lazy."""

    lazy = GROUPS


class AgentGroup(LazyGroup):
    """``tether agent``: one command per dialect, imported when run."""

    lazy = DIALECT_AGENTS


agent_app = typer.Typer(
    cls=AgentGroup,
    help="Run a device agent in the foreground: connect as a device and execute its "
    "commands, to try Tether without hardware or to drive a simulated fleet.\n\n"
    "Example: tether agent native --device-id lamp-1 --credential $SECRET",
    no_args_is_help=True,
)
