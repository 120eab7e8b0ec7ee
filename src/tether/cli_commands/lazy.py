"""Command groups that import their commands only when a command line reaches them.

``tether`` has a dozen command groups, and the modules behind them pull in aiohttp, the
dialects' agents and so on. Importing all of that for ``tether --version`` or for each
shell-completion TAB cost over a second, so the groups here hold *where* each sub-command
lives (:class:`Lazy`) and import it the first time it is asked for: ``tether device
list`` loads ``tether.cli_commands.devices`` and nothing of the agents.

Every command a group hands out also goes through :func:`polish`, which drops the
``<bool>`` type label typer prints beside flags (``--json``, ``--yes``, ``--help``): a
flag takes no value, so the label only misleads.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import typer
from typer._click import core as click  # typer vendors click: its commands are these types
from typer._click.shell_completion import CompletionItem
from typer.core import TyperGroup, TyperOption


@dataclass(frozen=True)
class Lazy:
    """A sub-command not imported yet: ``module.attribute`` and its one-line help.

    ``attribute`` names a :class:`typer.Typer`: a group of commands, or with ``single``
    an app holding exactly one command, which then is the sub-command itself.
    """

    module: str
    attribute: str
    help: str
    single: bool = False


def load(name: str, where: Lazy) -> click.Command:
    """Import ``where`` and turn it into the click command called ``name``."""
    target: typer.Typer = getattr(importlib.import_module(where.module), where.attribute)
    command = typer.main.get_command(target) if where.single else typer.main.get_group(target)
    command.name = name
    return command


def polish(command: click.Command) -> click.Command:
    """``command`` (and its sub-commands) without a type label on its flags."""
    if getattr(command, "_tether_polished", False):
        return command
    command._tether_polished = True  # type: ignore[attr-defined]
    for param in command.get_params(click.Context(command)):
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
    if isinstance(command, TyperGroup) and not isinstance(command, LazyGroup):
        for sub in command.commands.values():
            polish(sub)
    return command


class LazyGroup(TyperGroup):
    """A typer group whose :attr:`lazy` sub-commands are imported on first use.

    Subclasses set :attr:`lazy`; commands added the usual way (``@app.command()``) are
    listed first, then the lazy ones in the order given.
    """

    lazy: ClassVar[Mapping[str, Lazy]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        eager = super().list_commands(ctx)
        return eager + [name for name in self.lazy if name not in eager]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy:
            command = load(cmd_name, self.lazy[cmd_name])
            self.add_command(command, cmd_name)
        return None if command is None else polish(command)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
                param.metavar = ""
        return params

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Complete sub-command names without importing them (a TAB must be instant)."""
        items = [
            CompletionItem(name, help=self._short_help(ctx, name))
            for name in self.list_commands(ctx)
            if name.startswith(incomplete)
        ]
        items.extend(click.Command.shell_complete(self, ctx, incomplete))  # options
        return items

    def _short_help(self, ctx: click.Context, name: str) -> str | None:
        if name in self.commands:
            return self.commands[name].get_short_help_str()
        return self.lazy[name].help if name in self.lazy else None
