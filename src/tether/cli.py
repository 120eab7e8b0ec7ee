"""The ``tether`` command line.

``tether serve`` runs the server. Every other command is a client of a running server's
native API (``--url``, default http://127.0.0.1:8080, and ``--token``/``TETHER_TOKEN`` or
``--login``/``--password``), so it works the same against a laptop or a remote cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import uuid
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tether import __version__
from tether.cli_client import ClientGroup

if TYPE_CHECKING:
    from rich.console import Console


@cache
def console() -> Console:
    """The server's stderr console (created on first use: --version must not load rich)."""
    from tether.cli_commands.common import console as make_console

    return make_console(stderr=True, soft_wrap=True)


def say(settings: Any, message: str, level: int = logging.INFO) -> None:
    """Tell the operator ``message`` (Rich markup): on the console, or with
    ``log_format = json`` as a log line, so that a log shipper reads only JSON."""
    if settings.log_format == "json":
        from rich.text import Text

        logging.getLogger("tether.serve").log(level, Text.from_markup(message).plain)
    else:
        console().print(message)


app = typer.Typer(
    cls=ClientGroup,
    name="tether",
    help="Tether: one self-hosted server between IoT devices and the apps that drive them.\n\n"
    "Start with 'tether serve'. Every setting is also a TETHER_* environment variable "
    "(TETHER_PORT=9000) or a key in the TOML file named by --config / TETHER_CONFIG.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _run(coro: Any) -> Any:
    """Run a coroutine on uvloop (the fastest event loop for aiohttp) when available."""
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _settings(config: Path | None, **overrides: Any) -> Any:
    from pydantic import ValidationError

    from tether.settings import Settings

    if config is not None:
        os.environ["TETHER_CONFIG"] = str(config)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        console().print(f"[red]invalid settings:[/red]\n{error}")
        raise typer.Exit(2) from None


@app.callback(invoke_without_command=True)
def main_callback(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(f"tether {__version__}")
        raise typer.Exit()


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML settings file (keys as in 'tether serve --help').",
        exists=True,
        dir_okay=False,
    ),
]


@app.command()
def serve(
    # The defaults shown are the settings' (None here lets TETHER_* and --config apply).
    host: Annotated[
        str | None, typer.Option(help="Address to listen on.", show_default="127.0.0.1")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on.", show_default="8080")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="Directory for the embedded SQLite database.", show_default="./tether-data"
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Database URL, e.g. postgresql+asyncpg://user@host/db.",
            show_default="SQLite in data-dir",
        ),
    ] = None,
    bus: Annotated[
        str | None, typer.Option(help="Event bus: memory or redis.", show_default="memory")
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(help="Redis URL when --bus redis.", show_default="redis://127.0.0.1:6379/0"),
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate; enables TLS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key for --tls-cert.")] = None,
    log_level: Annotated[
        str | None, typer.Option(help="debug, info, warning or error.", show_default="info")
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            help="text (for a terminal) or json (one object per line, for a log shipper).",
            show_default="text",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes serving this port, joined by the Redis bus (needs --bus redis "
            "and PostgreSQL).",
            show_default="1",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the server: every dialect, the native API, /metrics and health checks.

    With no options it listens on 127.0.0.1:8080, keeps its data in ./tether-data
    (SQLite), uses an in-process bus, and on first start creates the admin user
    (TETHER_ADMIN_LOGIN, default 'admin') with TETHER_ADMIN_PASSWORD or a generated
    password written to DATA_DIR/admin-password (0600). More settings (timeouts, limits,
    retention) are TETHER_* environment variables; see docs/operations.md.
    """
    settings = _settings(
        config,
        host=host,
        port=port,
        data_dir=data_dir,
        database_url=database_url,
        bus=bus,
        redis_url=redis_url,
        tls_cert=tls_cert,
        tls_key=tls_key,
        log_level=log_level,
        log_format=log_format,
        workers=workers,
    )
    problem = settings.cluster_problem()
    if problem is not None:
        console().print(f"[red]cannot start:[/red] {problem}")
        raise typer.Exit(2)
    from tether.logs import configure

    configure(settings.log_level, settings.log_format)
    from tether.workers import supervise, worker_index

    if settings.workers > 1 and worker_index() is None:
        # The parent: migrate and bootstrap once, then supervise the workers.
        password_file = _run(_prepare(settings))
        if password_file:
            _announce_password_file(settings, password_file)
        node = settings.node_id or uuid.uuid4().hex[:8]
        say(
            settings,
            f"starting {settings.workers} workers as nodes {node}-0..{settings.workers - 1}",
        )
        args = sys.argv[sys.argv.index("serve") + 1 :]
        raise typer.Exit(supervise(args, settings.workers, node))
    _run(_serve(settings))


async def _prepare(settings: Any) -> Path | None:
    """Migrate the database and create the first admin, once, before workers start."""
    from tether.app import bootstrap_admin
    from tether.bus import MemoryBus
    from tether.hub.service import Hub
    from tether.store import Store

    store = await Store.open(settings.resolved_database_url, migrate=True)
    try:
        return await bootstrap_admin(Hub(store, MemoryBus(), settings), settings)
    finally:
        await store.close()


def _announce_password_file(settings: Any, path: Path) -> None:
    """Say where the generated password is; the password itself never reaches a log."""
    say(
        settings,
        f"Created admin user [bold]{settings.admin_login}[/bold]; its password is in "
        f"[bold]{path}[/bold] (readable by you only): log in, change it, delete the file.",
    )


async def _serve(settings: Any) -> None:
    from aiohttp import web

    from tether.app import build_app, make_runner, ssl_context, start_listeners, tune_gc
    from tether.web import STARTUP

    app = build_app(settings)
    runner = make_runner(app, settings, handle_signals=False)
    try:
        await runner.setup()
    except Exception as error:
        say(settings, f"[red]start-up failed:[/red] {error}", logging.ERROR)
        raise typer.Exit(1) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    from tether.workers import worker_index

    # Only workers share a port; a lone server must fail on a port that is taken.
    site = web.TCPSite(
        runner,
        settings.host,
        settings.port,
        ssl_context=ssl_context(settings),
        reuse_port=worker_index() is not None,
        backlog=settings.listen_backlog,
    )
    try:
        await site.start()
        extra = await start_listeners(
            runner,
            app,
            reuse_port=worker_index() is not None,
            backlog=settings.listen_backlog,
        )
    except OSError as error:
        say(settings, f"[red]cannot listen:[/red] {error}", logging.ERROR)
        await runner.cleanup()
        raise typer.Exit(1) from None
    scheme = "https" if settings.tls_cert else "http"
    bound = runner.addresses[0] if runner.addresses else (settings.host, settings.port)
    say(
        settings,
        f"[bold green]Tether {__version__}[/bold green] listening on "
        f"{scheme}://{bound[0]}:{bound[1]}  (data: {_where_data_lives(settings)}, "
        f"bus: {settings.bus})",
    )
    for name, url in extra.items():
        say(settings, f"  {name} listening on {url}")
    startup = app[STARTUP]

    async def announce() -> None:
        await startup.ready.wait()
        tune_gc(settings.gc_threshold)
        if startup.password_file:
            _announce_password_file(settings, startup.password_file)
        sys.stderr.flush()

    announcing = asyncio.create_task(announce())
    await stop.wait()
    announcing.cancel()
    say(settings, f"stopping (up to {settings.shutdown_timeout:g} s for open connections)")
    began = loop.time()
    await runner.cleanup()
    say(settings, f"stopped in {loop.time() - began:.2f} s")


def _where_data_lives(settings: Any) -> str:
    """The absolute place of the data (a relative data dir is the start directory's),
    without a database password."""
    where = str(settings.data_dir.resolve())
    if settings.database_url is None:
        return where
    from sqlalchemy.engine import make_url

    database = make_url(settings.database_url).render_as_string(hide_password=True)
    return f"{where}, database: {database}"


@db_app.command("upgrade")
def db_upgrade(
    database_url: Annotated[
        str | None, typer.Option(help="Database URL [default: from settings].")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory for SQLite.")] = None,
    config: ConfigOption = None,
) -> None:
    """Apply pending schema migrations (tether serve does this itself on start)."""
    settings = _settings(config, database_url=database_url, data_dir=data_dir)

    async def upgrade() -> None:
        from tether.store import Store

        store = await Store.open(settings.resolved_database_url, migrate=True)
        await store.close()

    _run(upgrade())
    console().print(f"database at {settings.resolved_database_url} is up to date")


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        # Answered before typer builds the command line: typer turns every option into a
        # pydantic validator, which alone costs more than printing a version should.
        sys.stdout.write(f"tether {__version__}\n")
        return
    app()


if __name__ == "__main__":
    main()
