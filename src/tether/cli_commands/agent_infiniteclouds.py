"""``tether agent keepalive``: the InfiniteClouds device agent, and its init-style service.

``tether agent keepalive run`` (the default) runs it in the foreground; ``start``,
``stop`` and ``status`` manage it in the background like the seed's
``/etc/init.d/keepalive``: a PID file and a log file (in the state directory unless
given), a second ``start`` says it is already running, and ``status`` exits 0 while it
runs and 3 when it is stopped (the LSB init-script codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from tether.cli_commands.common import (
    LogFormatOption,
    LogLevelOption,
    setup_logging,
    stop_on_signals,
)
from tether.dialects.infiniteclouds.agent import AgentConfig, KeepaliveAgent

log = logging.getLogger("tether.cli.keepalive")

#: LSB: "program is not running".
EXIT_STOPPED = 3
START_WAIT = 15.0
STOP_WAIT = 15.0


class Action(StrEnum):
    run = "run"
    start = "start"
    stop = "stop"
    status = "status"


#: ``tether agent keepalive`` (one command; see :mod:`tether.cli_client`).
keepalive_app = typer.Typer(add_completion=False)


def _pid_of(pid_file: Path) -> int | None:
    """The PID in ``pid_file`` if that process is alive and is a keepalive agent."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return pid  # no /proc: trust the signal check
    if b"keepalive" not in cmdline or "\nState:\tZ" in status:
        return None
    return pid


@keepalive_app.command("keepalive", context_settings={"allow_interspersed_args": True})
def keepalive(
    action: Annotated[
        Action, typer.Argument(help="run (foreground), start, stop or status.")
    ] = Action.run,
    url: Annotated[
        str,
        typer.Option(envvar="TETHER_URL", help="Base URL of the cloud (Tether's address)."),
    ] = "http://127.0.0.1:8080",
    state_dir: Annotated[
        Path,
        typer.Option(
            envvar="TETHER_KEEPALIVE_STATE_DIR",
            help="Where last_*_request/response.json and the agent's state are kept.",
        ),
    ] = Path("/tmp"),
    interval: Annotated[float, typer.Option(help="Seconds between keepalives.", min=0.05)] = 60.0,
    register_interval: Annotated[
        float, typer.Option(help="Seconds between registers while unassigned.", min=0.05)
    ] = 30.0,
    statistics_interval: Annotated[
        float,
        typer.Option(help="Seconds between statistics messages (0: never).", min=0),
    ] = 0.0,
    mac: Annotated[
        str | None, typer.Option(help="MAC address to register with (default: the host's).")
    ] = None,
    interface: Annotated[
        str | None, typer.Option(help="Interface whose MAC identifies the device.")
    ] = None,
    machine_id: Annotated[
        str | None,
        typer.Option(help="Machine id (default: from /etc/machine-id, else from the MAC)."),
    ] = None,
    device_type: Annotated[str, typer.Option(help="deviceType sent to the cloud.")] = "CE",
    device_model: Annotated[str, typer.Option(help="deviceMetaInfo.deviceModel.")] = "Tether",
    firmware_version: Annotated[
        str, typer.Option(help="Firmware version reported until an update installs another.")
    ] = "v0.0.0",
    config_hook: Annotated[
        str | None,
        typer.Option(help="Shell command given the config file's path; exit 0 = applied."),
    ] = None,
    firmware_hook: Annotated[
        str | None,
        typer.Option(help="Shell command given the verified image's path; exit 0 = installed."),
    ] = None,
    command_hook: Annotated[
        str | None,
        typer.Option(
            help="Shell command given the command name (params as JSON on stdin and in "
            "IC_PARAMS); its exit code and output are the result."
        ),
    ] = None,
    hook_timeout: Annotated[float, typer.Option(help="Seconds a hook may run.", min=1)] = 300.0,
    insecure: Annotated[
        bool, typer.Option("--insecure", "-k", help="Do not verify the TLS certificate.")
    ] = False,
    pid_file: Annotated[
        Path | None, typer.Option(help="PID file (default: <state-dir>/keepalive.pid).")
    ] = None,
    log_file: Annotated[
        Path | None, typer.Option(help="Log file of start (default: <state-dir>/keepalive.log).")
    ] = None,
    log_level: LogLevelOption = "info",
    log_format: LogFormatOption = "text",
) -> None:
    """Register, keep alive, and act on config, firmware and command triggers.

    Example: tether agent keepalive start --url https://cloud.example --state-dir /var/run/ic
    """
    pid_path = pid_file or state_dir / "keepalive.pid"
    if action is Action.status:
        pid = _pid_of(pid_path)
        if pid is None:
            typer.echo("keepalive is stopped")
            raise typer.Exit(EXIT_STOPPED)
        typer.echo(f"keepalive is running (pid {pid})")
        return
    if action is Action.stop:
        _stop(pid_path)
        return
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{url!r} must start with http:// or https://", param_hint="--url")
    if action is Action.start:
        pid = _pid_of(pid_path)
        if pid is not None:
            typer.echo(f"keepalive is already running (pid {pid})")
            return
        # The options given after "keepalive" are forwarded; the action becomes "run".
        argv = sys.argv[1:]
        options = argv[argv.index("keepalive") + 1 :] if "keepalive" in argv else []
        options.remove("start")
        _start(pid_path, log_file or state_dir / "keepalive.log", options)
        return
    setup_logging(log_level, log_format)
    config = AgentConfig(
        url=url,
        state_dir=state_dir,
        interval=interval,
        register_interval=register_interval,
        device_type=device_type,
        device_model=device_model,
        mac=mac,
        interface=interface,
        machine_id=machine_id,
        firmware_version=firmware_version,
        config_hook=config_hook,
        firmware_hook=firmware_hook,
        command_hook=command_hook,
        hook_timeout=hook_timeout,
        insecure=insecure,
        statistics_interval=statistics_interval,
    )
    try:
        agent = KeepaliveAgent(config)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    _run(agent, pid_path if pid_file is not None or _started_by_service() else None)


def _started_by_service() -> bool:
    return os.environ.get("TETHER_KEEPALIVE_SERVICE") == "1"


def _run(agent: KeepaliveAgent, pid_path: Path | None) -> None:
    if pid_path is not None:
        pid_path.parent.mkdir(parents=True, exist_ok=True)
        pid_path.write_text(f"{os.getpid()}\n")

    async def main() -> None:
        stop_on_signals(agent.stop)
        await agent.run()
        log.info("stopping")

    try:
        asyncio.run(main())
    finally:
        if pid_path is not None:
            with contextlib.suppress(OSError, ValueError):
                if int(pid_path.read_text().strip()) == os.getpid():
                    pid_path.unlink()


def _start(pid_path: Path, log_path: Path, options: list[str]) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        pid_path.unlink()
    with log_path.open("ab") as sink:
        child = subprocess.Popen(
            [sys.executable, "-m", "tether.cli", "agent", "keepalive", "run", *options],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "TETHER_KEEPALIVE_SERVICE": "1"},
        )
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            typer.echo(
                f"keepalive failed to start (exit {child.returncode}); see {log_path}", err=True
            )
            raise typer.Exit(1)
        if _pid_of(pid_path) == child.pid:
            typer.echo(f"keepalive started (pid {child.pid}), logging to {log_path}")
            return
        time.sleep(0.05)
    typer.echo(f"keepalive did not write {pid_path} in {START_WAIT:.0f}s; see {log_path}", err=True)
    raise typer.Exit(1)


def _stop(pid_path: Path) -> None:
    pid = _pid_of(pid_path)
    if pid is None:
        with contextlib.suppress(OSError):
            pid_path.unlink()
        typer.echo("keepalive is not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT
    while time.monotonic() < deadline:
        if _pid_of(pid_path) != pid:
            typer.echo(f"keepalive stopped (pid {pid})")
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        pid_path.unlink()
    typer.echo(f"keepalive killed (pid {pid}) after {STOP_WAIT:.0f}s")
