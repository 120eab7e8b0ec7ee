"""The client commands of ``tether``: everything but ``serve`` and ``db``.

:func:`register` mounts one sub-app per area on the root app. Each lives in its own
module of :mod:`tether.cli_commands`; they all talk to a running server over its native
API, so they work the same against a laptop or a remote cluster::

    tether user ...           users and their network grants
    tether apikey ...         API keys
    tether network ...        networks
    tether devicetype ...     device types
    tether device ...         devices and their credentials
    tether command ...        send commands and follow their results
    tether notifications ...  stored and live notifications
    tether agent ...          run a device agent in the foreground
"""

from __future__ import annotations

import typer

from tether.cli_commands.agent import agent_app
from tether.cli_commands.agent_controlid import controlid_agent_app, controlid_app
from tether.cli_commands.agent_devicehive import devicehive_agent_app
from tether.cli_commands.agent_ewelink import ewelink_agent_app
from tether.cli_commands.agent_infiniteclouds import keepalive_app
from tether.cli_commands.agent_opengate import opengate_agent_app
from tether.cli_commands.catalog import devicetype_app, network_app
from tether.cli_commands.commands import command_app
from tether.cli_commands.devices import device_app
from tether.cli_commands.notifications import notifications_app
from tether.cli_commands.users import apikey_app, user_app

GROUPS: tuple[tuple[str, typer.Typer], ...] = (
    ("user", user_app),
    ("apikey", apikey_app),
    ("network", network_app),
    ("devicetype", devicetype_app),
    ("device", device_app),
    ("command", command_app),
    ("notifications", notifications_app),
    ("agent", agent_app),
    ("controlid", controlid_app),
)


#: ``tether agent <dialect>``: each dialect's device agent, one line per dialect, defined in
#: ``tether.cli_commands.agent_<dialect>`` (order: devicehive, ewelink, controlid, opengate,
#: infiniteclouds).
DIALECT_AGENTS: tuple[tuple[str, typer.Typer], ...] = (
    ("devicehive", devicehive_agent_app),
    ("ewelink", ewelink_agent_app),
    ("controlid", controlid_agent_app),
    ("opengate", opengate_agent_app),
    ("keepalive", keepalive_app),
)


def register(app: typer.Typer) -> None:
    """Add the client command groups to the ``tether`` app."""
    for name, agent in DIALECT_AGENTS:
        agent_app.add_typer(agent, name=name)
    for name, group in GROUPS:
        app.add_typer(group, name=name)
