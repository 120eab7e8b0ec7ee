"""What every client command shares: connection options, the HTTP client, errors, output.

Every client command is decorated with :func:`with_client`, which adds the connection
options (``--url``, ``--token``, ``--login``, ``--password``, ``--json``, each also an
environment variable) to its signature and hands the command a :class:`Client`. The
command then runs its async work through :meth:`Client.run`, which opens one
``aiohttp`` session, logs in when needed, and turns every failure into one readable line
on stderr and exit status 1:

* a server error body ``{"error": {"code", "message"}}`` -> ``error <code>: <message>``;
* a refused connection -> ``cannot reach Tether at <url>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, TypeVar, get_type_hints

import msgspec
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    # Imported where used: a command that never talks to the server (--help, a TAB,
    # an agent) must not pay for aiohttp.
    import aiohttp

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8080"
#: The server answers a ``wait`` of at most this many seconds per request.
MAX_SERVER_WAIT = 120.0
CONNECTION_PANEL = "Connection"

#: Width of output that goes to a file or a pipe: wide enough that no table cell or line
#: is ever split (Rich would otherwise assume 80 columns).
PIPE_WIDTH = 10_000


def console(*, stderr: bool = False, soft_wrap: bool = False) -> Console:
    """A console for stdout or stderr that wraps only on a terminal, at the terminal's width."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(stderr=stderr, highlight=False, soft_wrap=soft_wrap, width=width)


out = console()
err = console(stderr=True)

STATE_STYLES = {
    "succeeded": "green",
    "failed": "red",
    "expired": "red",
    "timed_out": "red",
    "cancelled": "red",
    "pending": "yellow",
    "sent": "yellow",
    "delivered": "cyan",
    "in_progress": "cyan",
}


# --- failures ----------------------------------------------------------------------------------


class ApiError(Exception):
    """The server answered with an error status (and, normally, a JSON error body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` in red on stderr and exit with ``code``."""
    err.print(Text(message, style="red"), soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err.print(Text(message, style="bold yellow"), soft_wrap=True)


def note(message: str) -> None:
    err.print(Text(message, style="dim"), soft_wrap=True)


# --- option parsing ------------------------------------------------------------------------

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]
#: Every agent's ``--log-level`` and ``--log-format``.
LogLevelOption = Annotated[LogLevel, typer.Option(help="Log verbosity (on stderr).")]
LogFormatOption = Annotated[
    LogFormat, typer.Option(help="text, or json: one object per line (for a log shipper).")
]


def setup_logging(level: LogLevel, log_format: LogFormat) -> None:
    """The one logging setup (:mod:`tether.logs`), as every agent starts it."""
    from tether.logs import configure

    configure(level, log_format)


#: ``--skip`` of every list command: page past the server's 1,000 rows per answer.
SkipOption = Annotated[int, typer.Option(help="Skip this many first (page with --take).", min=0)]


def stop_on_signals(on_stop: Callable[[], object] | None = None) -> asyncio.Event:
    """An event that SIGINT and SIGTERM set (calling ``on_stop`` too), on the running loop.

    Every foreground command (agents, ``notifications tail``) stops the same way: Ctrl-C
    or a service manager's SIGTERM ends it cleanly rather than with a traceback. Where a
    loop cannot take signal handlers (not the main thread, Windows), the default
    behaviour stays.
    """
    stop = asyncio.Event()

    def handle() -> None:
        stop.set()
        if on_stop is not None:
            on_stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, handle)
    return stop


def parse_json(value: str, option: str) -> Any:
    """A JSON option value; ``@path`` reads the JSON from a file (``@-`` from stdin)."""
    text = value
    if value.startswith("@"):
        source = value[1:]
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text()
        except OSError as error:
            raise typer.BadParameter(f"cannot read {source}: {error}", param_hint=option) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise typer.BadParameter(
            f"not valid JSON ({error}); quote it for the shell, e.g. '{{\"a\": 1}}'",
            param_hint=option,
        ) from None


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str, option: str, *, allow_never: bool = False) -> float | None:
    """Seconds from ``30``, ``1.5``, ``250ms``, ``30s``, ``5m``, ``2h`` or ``7d``.

    With ``allow_never``, ``never`` (or ``none``) gives ``None``: no limit.
    """
    raw = value.strip().lower()
    if allow_never and raw in ("never", "none"):
        return None
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if raw.endswith(suffix):
            number, scale = raw[: -len(suffix)], _UNITS[suffix]
            break
    else:
        number, scale = raw, 1.0
    try:
        seconds = float(number) * scale
    except ValueError:
        hint = " or 'never'" if allow_never else ""
        raise typer.BadParameter(
            f"{value!r} is not a duration; use seconds (30) or 250ms, 30s, 5m, 2h, 7d{hint}",
            param_hint=option,
        ) from None
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise typer.BadParameter(f"{value!r} must be a positive duration", param_hint=option)
    return seconds


def confirm(question: str, yes: bool) -> None:
    """Ask before something destructive, unless ``--yes``; never hang in a script."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{question} Refusing without --yes (stdin is not a terminal).")
    typer.confirm(question, abort=True)


# --- the client -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """Where and as whom to call the server, and how to print what it answers."""

    url: str
    token: str | None = None
    login: str | None = None
    password: str | None = None
    json: bool = False

    def run(self, work: Callable[[Api], Awaitable[T]]) -> T:
        """Run ``work`` with a ready :class:`Api`; every failure exits 1 with one line."""
        import aiohttp

        from tether.cli import _run

        async def main() -> T:
            timeout = aiohttp.ClientTimeout(total=None, connect=15, sock_read=60)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                return await work(Api(self, session))

        try:
            result: T = _run(main())
        except ApiError as error:
            fail(f"error {error.code}: {error.message}")
        except aiohttp.ClientConnectorError as error:
            fail(
                f"cannot reach Tether at {self.url} ({connect_reason(error)}); "
                "is 'tether serve' running there? Set --url or TETHER_URL."
            )
        except (TimeoutError, aiohttp.ServerTimeoutError):
            fail(f"Tether at {self.url} did not answer in time")
        except aiohttp.ClientError as error:
            fail(f"connection to Tether at {self.url} failed: {error or type(error).__name__}")
        return result


class Api:
    """The native management API over one session, authenticated on first use."""

    def __init__(self, client: Client, session: aiohttp.ClientSession) -> None:
        self.client = client
        self.session = session
        self.base = client.url.rstrip("/")
        self._token = client.token

    @property
    def ws_base(self) -> str:
        return "ws" + self.base[4:] if self.base.startswith("http") else self.base

    async def token(self) -> str:
        """The bearer credential: ``--token`` as given, or a fresh login."""
        if self._token is None:
            if self.client.login is None or self.client.password is None:
                fail(
                    "no credentials: pass --token (or TETHER_TOKEN), or --login and --password "
                    "(or TETHER_LOGIN and TETHER_PASSWORD)"
                )
            body = {"login": self.client.login, "password": self.client.password}
            tokens = await self._send("POST", "/api/v1/auth/token", body=body, auth=False)
            self._token = str(tokens["accessToken"])
        return self._token

    def relogin(self) -> bool:
        """Drop the token so the next call logs in again; False without a login to use."""
        if self.client.login is None or self.client.password is None:
            return False
        self._token = None
        return True

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        wait: float = 0.0,
    ) -> Any:
        """The decoded JSON answer (``None`` for 204); :class:`ApiError` on an error status."""
        return (await self.call_status(method, path, body=body, params=params, wait=wait))[1]

    async def call_status(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        wait: float = 0.0,
    ) -> tuple[int, Any]:
        """Like :meth:`call`, with the HTTP status (202 means "still running")."""
        return await self._send_status(method, path, body=body, params=params, wait=wait)

    async def _send(self, method: str, path: str, *, body: Any = None, auth: bool = True) -> Any:
        return (await self._send_status(method, path, body=body, auth=auth))[1]

    async def _send_status(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        wait: float = 0.0,
        auth: bool = True,
    ) -> tuple[int, Any]:
        import aiohttp

        headers = {"Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {await self.token()}"
        data = None
        if body is not None:
            data = msgspec.json.encode(body)
            headers["Content-Type"] = "application/json"
        timeout = aiohttp.ClientTimeout(total=None, connect=15, sock_read=wait + 60)
        async with self.session.request(
            method,
            self.base + path,
            data=data,
            params=query(params),
            headers=headers,
            timeout=timeout,
        ) as response:
            raw = await response.read()
            if response.status >= 400:
                raise error_of(response.status, response.reason, raw)
            if response.status == 204 or not raw.strip():
                return response.status, None
            try:
                return response.status, msgspec.json.decode(raw)
            except msgspec.DecodeError:
                raise ApiError(
                    response.status, "bad_response", f"not JSON: {raw[:200]!r}"
                ) from None


def connect_reason(error: aiohttp.ClientConnectorError) -> str:
    """Why a connection failed, in a few words: 'connection refused', a DNS error, ..."""
    cause = error.os_error
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    return cause.strerror or str(cause) or type(cause).__name__


def query(params: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """Query pairs without the ``None`` values; lists repeat the key, booleans are words."""
    pairs: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is None:
                continue
            pairs.append(
                (key, ("true" if item else "false") if isinstance(item, bool) else str(item))
            )
    return pairs


def error_of(status: int, reason: str | None, raw: bytes) -> ApiError:
    """The error named by an error body, or a generic one for a non-JSON answer."""
    try:
        body = msgspec.json.decode(raw)
        error = body["error"]
        return ApiError(status, str(error["code"]), str(error["message"]))
    except (msgspec.DecodeError, KeyError, TypeError):
        text = raw.decode(errors="replace").strip()[:200]
        return ApiError(status, f"http_{status}", text or reason or "error")


# --- connection options on every command ------------------------------------------------------


def unwrap_doc(doc: str | None) -> str | None:
    """``doc`` with each paragraph on one line.

    Typer's rich help keeps a docstring's line breaks, so a paragraph wrapped at the
    source's line length would wrap twice on a narrower terminal.
    """
    if doc is None:
        return None
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def tidy_help(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator: reflow ``fn``'s docstring for ``--help`` (see :func:`unwrap_doc`)."""
    fn.__doc__ = unwrap_doc(fn.__doc__)
    return fn


def with_client(
    login_flag: str = "--login", password_flag: str = "--password"
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Give a command the connection options; it receives them as ``client: Client``.

    ``user create`` names its own user with ``--login``/``--password``, so it takes the
    caller's credentials as ``--auth-login``/``--auth-password`` instead.
    """

    extra = {
        "tether_url": Annotated[
            str,
            typer.Option(
                "--url",
                envvar="TETHER_URL",
                help="Base URL of the Tether server.",
                rich_help_panel=CONNECTION_PANEL,
            ),
        ],
        "tether_token": Annotated[
            str | None,
            typer.Option(
                "--token",
                envvar="TETHER_TOKEN",
                help="Access token (JWT) or API key (tk_...). Takes precedence over a login.",
                rich_help_panel=CONNECTION_PANEL,
                show_default=False,
            ),
        ],
        "tether_login": Annotated[
            str | None,
            typer.Option(
                login_flag,
                envvar="TETHER_LOGIN",
                help="Log in as this user to get a token (with the password).",
                rich_help_panel=CONNECTION_PANEL,
                show_default=False,
            ),
        ],
        "tether_password": Annotated[
            str | None,
            typer.Option(
                password_flag,
                envvar="TETHER_PASSWORD",
                help="Password for the login (prompted when missing on a terminal).",
                rich_help_panel=CONNECTION_PANEL,
                show_default=False,
            ),
        ],
        "tether_json": Annotated[
            bool,
            typer.Option(
                "--json",
                help="Print the server's JSON instead of tables (for scripts and jq).",
                rich_help_panel="Output",
            ),
        ],
    }
    defaults: dict[str, Any] = {
        "tether_url": DEFAULT_URL,
        "tether_token": None,
        "tether_login": None,
        "tether_password": None,
        "tether_json": False,
    }

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        hints = get_type_hints(fn, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(fn).parameters.values()
            if p.name != "client"
        ]
        added = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name], annotation=kind
            )
            for name, kind in extra.items()
        ]

        def command(**kwargs: Any) -> T:
            options = {name: kwargs.pop(name) for name in extra}
            client = make_client(
                url=options["tether_url"],
                token=options["tether_token"],
                login=options["tether_login"],
                password=options["tether_password"],
                json_output=options["tether_json"],
                password_flag=password_flag,
            )
            return fn(client=client, **kwargs)

        command.__name__ = fn.__name__
        command.__qualname__ = fn.__qualname__
        command.__doc__ = unwrap_doc(fn.__doc__)
        command.__module__ = fn.__module__
        command.__signature__ = inspect.Signature(own + added)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in own + added}
        return command

    return decorate


def make_client(
    *,
    url: str,
    token: str | None,
    login: str | None,
    password: str | None,
    json_output: bool,
    password_flag: str = "--password",
) -> Client:
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{url!r} must start with http:// or https://", param_hint="--url")
    token, login, password = token or None, login or None, password or None
    if token is None and login and password is None:
        if not sys.stdin.isatty():
            fail(f"{password_flag} (or TETHER_PASSWORD) is required with a login")
        password = typer.prompt(f"Password for {login}", hide_input=True)
    return Client(url=url, token=token, login=login, password=password, json=json_output)


# --- output -------------------------------------------------------------------------------------

Kind = Literal["text", "time", "json", "bool", "state", "list", "seconds"]


@dataclass(frozen=True)
class Col:
    """One column of a table (or one row of a record): a header, a JSON key, a rendering."""

    header: str
    key: str
    kind: Kind = "text"
    #: False for short identifiers that read wrong when split across lines.
    wrap: bool = True


def print_json(data: Any, *, compact: bool = False) -> None:
    if compact:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def short_time(value: Any) -> str:
    """``2025-01-02 03:04:05Z`` from an ISO-8601 time (UTC), or the value as given."""
    if not isinstance(value, str):
        return "-" if value is None else str(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + ("Z" if moment.tzinfo else "")


def cell(value: Any, kind: Kind = "text") -> Text:
    if value is None or (value == [] and kind == "list"):
        return Text("-", style="dim")
    if kind == "time":
        return Text(short_time(value))
    if kind == "seconds" and isinstance(value, int | float):
        return Text(f"{value:g}s")
    if kind == "state":
        return Text(str(value), style=STATE_STYLES.get(str(value), ""))
    if kind == "bool" or isinstance(value, bool):
        return Text("yes" if value else "no", style="bold" if value else "dim")
    if kind == "list" and isinstance(value, list):
        return Text(", ".join(str(v) for v in value))
    if kind == "json" or isinstance(value, dict | list):
        return Text(compact_json(value))
    return Text(str(value))


def show_table(
    rows: Sequence[Mapping[str, Any]], columns: Iterable[Col], *, empty: str = "nothing found"
) -> None:
    if not rows:
        err.print(Text(empty, style="dim"))
        return
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    cols = list(columns)
    for col in cols:
        table.add_column(col.header, overflow="fold", no_wrap=not col.wrap)
    for row in rows:
        table.add_row(*(cell(row.get(col.key), col.kind) for col in cols))
    out.print(table)


def show_record(row: Mapping[str, Any], fields: Iterable[Col], *, title: str | None = None) -> None:
    table = Table(
        show_header=False,
        show_edge=False,
        pad_edge=False,
        box=None,
        title=title,
        title_justify="left",
        title_style="bold",
    )
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for col in fields:
        table.add_row(col.header, cell(row.get(col.key), col.kind))
    out.print(table)


def emit_list(
    client: Client, rows: Any, columns: Iterable[Col], *, empty: str = "nothing found"
) -> None:
    if client.json:
        print_json(rows)
    else:
        show_table(list(rows or []), columns, empty=empty)


def emit_record(
    client: Client, row: Any, fields: Iterable[Col], *, title: str | None = None
) -> None:
    if client.json:
        print_json(row)
    else:
        show_record(row, fields, title=title)


def done(client: Client, message: str, payload: Mapping[str, Any]) -> None:
    """Confirm an action that returns nothing (204): a line, or ``payload`` with ``--json``."""
    if client.json:
        print_json(dict(payload))
    else:
        out.print(Text(message, style="green"))
