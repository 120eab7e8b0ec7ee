"""The client CLI without a server: parsing, rendering, help texts, failures before the wire."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tether.cli_client import GROUPS, ClientGroup
from tether.cli_commands.commands import exit_code, outcome_title, record_fields
from tether.cli_commands.common import (
    cell,
    error_of,
    parse_duration,
    parse_json,
    query,
    short_time,
    unwrap_doc,
)
from tether.cli_commands.notifications import notification_line, precise_time


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    root = typer.Typer(cls=ClientGroup, no_args_is_help=True)

    @root.callback()
    def main() -> None:
        """Root of the test app."""

    return root


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def no_server_port() -> int:
    """A local port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- option parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("1.5", 1.5),
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        (" 10M ", 600.0),
        ("0", 0.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--wait") == seconds


def test_never_is_no_limit_only_where_allowed() -> None:
    assert parse_duration("never", "--timeout", allow_never=True) is None
    with pytest.raises(typer.BadParameter, match="not a duration"):
        parse_duration("never", "--wait")


@pytest.mark.parametrize("text", ["soon", "5x", "-3", "nan", "inf", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_duration(text, "--wait")


def test_json_options(tmp_path: Any) -> None:
    assert parse_json('{"on": true}', "--params") == {"on": True}
    assert parse_json("[1, 2]", "--params") == [1, 2]
    assert parse_json("null", "--data") is None
    path = tmp_path / "p.json"
    path.write_text('{"from": "file"}')
    assert parse_json(f"@{path}", "--params") == {"from": "file"}
    with pytest.raises(typer.BadParameter, match="not valid JSON"):
        parse_json("{on: true}", "--params")
    with pytest.raises(typer.BadParameter, match="cannot read"):
        parse_json(f"@{tmp_path / 'missing.json'}", "--params")


def test_query_drops_none_repeats_lists_and_spells_booleans() -> None:
    assert query({"a": None, "b": 1, "c": ["x", "y"], "d": True, "e": False}) == [
        ("b", "1"),
        ("c", "x"),
        ("c", "y"),
        ("d", "true"),
        ("e", "false"),
    ]
    assert query(None) == []


def test_errors_from_bodies() -> None:
    error = error_of(404, "Not Found", b'{"error":{"code":"not_found","message":"no such"}}')
    assert (error.status, error.code, error.message) == (404, "not_found", "no such")
    proxy = error_of(502, "Bad Gateway", b"<html>upstream down</html>")
    assert (proxy.code, proxy.message) == ("http_502", "<html>upstream down</html>")
    empty = error_of(503, "Service Unavailable", b"")
    assert (empty.code, empty.message) == ("http_503", "Service Unavailable")


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ("succeeded", 0),
        ("failed", 1),
        ("expired", 1),
        ("timed_out", 1),
        ("cancelled", 1),
        ("pending", 2),
        ("sent", 2),
        ("delivered", 2),
        ("in_progress", 2),
    ],
)
def test_exit_codes(state: str, code: int) -> None:
    assert exit_code({"state": state}) == code


# --- rendering ---------------------------------------------------------------------------------


def test_cells() -> None:
    assert cell(None).plain == "-"
    assert cell(True).plain == "yes"
    assert cell(False, "bool").plain == "no"
    assert cell({"a": [1, 2]}).plain == '{"a":[1,2]}'
    assert cell([1, 2], "list").plain == "1, 2"
    assert cell([], "list").plain == "-"
    assert cell(300.0, "seconds").plain == "300s"
    assert cell("failed", "state").style == "red"
    assert cell("2025-01-02T03:04:05.678Z", "time").plain == "2025-01-02 03:04:05Z"


def test_times() -> None:
    assert short_time("2025-01-02T04:04:05+01:00") == "2025-01-02 03:04:05Z"
    assert short_time("not a time") == "not a time"
    assert short_time(None) == "-"
    assert precise_time("2025-01-02T03:04:05.678901Z") == "2025-01-02 03:04:05.678Z"


def test_notification_line_is_readable_and_markup_safe() -> None:
    line = notification_line(
        {
            "id": 1,
            "deviceId": "dev-1",
            "name": "temp",
            "parameters": {"c": 21, "tag": "[bold]x"},
            "timestamp": "2025-01-02T03:04:05.678Z",
        }
    )
    assert line.plain == '2025-01-02 03:04:05.678Z  dev-1  temp  {"c":21,"tag":"[bold]x"}'


def test_unwrap_doc_joins_paragraph_lines() -> None:
    doc = """First line.

        A paragraph
        on two lines.

        Example: tether x
        """
    assert unwrap_doc(doc) == "First line.\n\nA paragraph on two lines.\n\nExample: tether x"
    assert unwrap_doc(None) is None


# --- the command tree --------------------------------------------------------------------------


def _commands(app: typer.Typer) -> list[list[str]]:
    group = typer.main.get_group(app)
    ctx = typer.Context(group)
    found: list[list[str]] = []
    for name in group.list_commands(ctx):
        found.append([name])
        sub = group.get_command(ctx, name)
        if hasattr(sub, "list_commands"):
            found.extend([name, child] for child in sub.list_commands(typer.Context(sub)))
    return found


def test_every_group_and_command_has_help(app: typer.Typer, runner: CliRunner) -> None:
    paths = _commands(app)
    assert {p[0] for p in paths} == set(GROUPS)
    assert ["device", "credential"] in paths
    assert ["agent", "native"] in paths
    assert ["device", "assign"] in paths  # issue 8: assign a device to a user
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
        if len(path) == 2:
            assert "Example:" in result.output, path  # every command shows one


def test_client_commands_take_the_connection_options(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["device", "list", "--help"], env={"COLUMNS": "200"})
    for option in ("--url", "--token", "--login", "--password", "--json"):
        assert option in result.output
    for env in ("TETHER_URL", "TETHER_TOKEN", "TETHER_LOGIN", "TETHER_PASSWORD"):
        assert env in result.output
    # user create names the new user with --login/--password: the caller's are --auth-*
    result = runner.invoke(app, ["user", "create", "--help"], env={"COLUMNS": "200"})
    assert "--auth-login" in result.output
    assert "--auth-password" in result.output


def test_unreachable_server_is_one_clear_line(app: typer.Typer, runner: CliRunner) -> None:
    url = f"http://127.0.0.1:{no_server_port()}"
    result = runner.invoke(app, ["device", "list", "--url", url, "--token", "tk_x"])
    assert result.exit_code == 1
    assert f"cannot reach Tether at {url}" in result.stderr
    assert "connection refused" in result.stderr
    assert "Traceback" not in result.output


def test_login_without_password_refuses_to_hang(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["device", "list", "--login", "admin"], env={"TETHER_TOKEN": ""})
    assert result.exit_code == 1
    assert "--password (or TETHER_PASSWORD) is required" in result.stderr


def test_no_credentials(app: typer.Typer, runner: CliRunner) -> None:
    url = f"http://127.0.0.1:{no_server_port()}"
    env = {"TETHER_TOKEN": "", "TETHER_LOGIN": "", "TETHER_PASSWORD": ""}
    result = runner.invoke(app, ["network", "list", "--url", url], env=env)
    assert result.exit_code == 1
    assert "no credentials" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["device", "list", "--url", "localhost:8080"], "must start with http"),
        (["command", "send", "d", "x", "--params", "{bad"], "not valid JSON"),
        (["command", "send", "d", "x", "--wait", "soon"], "not a duration"),
        (["command", "list", "--state", "done"], "done"),
        (["user", "create", "--login", "u", "--password", "p", "--role", "root"], "root"),
        (["device", "create"], "--name"),
        (["device", "update", "d"], "at least one option"),
    ],
)
def test_usage_errors(app: typer.Typer, runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(app, [*args, "--token", "tk_x"], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_deleting_without_a_terminal_needs_yes(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(app, ["device", "delete", "d", "--token", "tk_x"])
    assert result.exit_code == 1
    assert "Refusing without --yes" in result.stderr


def test_agent_refuses_a_bad_url(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["agent", "native", "--device-id", "d", "--credential", "c", "--url", "ws://x"]
    )
    assert result.exit_code == 2
    assert "must start with http" in result.output


# --- help layout and command records -------------------------------------------------------------


def test_serve_help_shows_its_defaults(runner: CliRunner) -> None:
    from tether.cli import app as root

    result = runner.invoke(root, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # An option's help may run over several lines: gather each option's block of lines.
    lines: dict[str, str] = {}
    option = ""
    for line in result.output.splitlines():
        if "│ --" in line:
            option = line.split()[1]
        if option:
            lines[option] = lines.get(option, "") + line
    assert "127.0.0.1" in lines["--host"]
    assert "8080" in lines["--port"]
    assert "./tether-data" in lines["--data-dir"]
    assert "memory" in lines["--bus"]
    assert "text" in lines["--log-format"]
    assert "<bool>" not in result.output  # a flag takes no value


def test_flags_have_no_placeholder_and_agents_are_plain_commands(
    app: typer.Typer, runner: CliRunner
) -> None:
    device = runner.invoke(app, ["device", "create", "--help"], env={"COLUMNS": "200"})
    assert device.exit_code == 0, device.output
    assert "--with-credential" in device.output
    assert "<bool>" not in device.output
    for dialect in ("native", "devicehive", "ewelink", "controlid", "opengate", "keepalive"):
        agent = runner.invoke(app, ["agent", dialect, "--help"], env={"COLUMNS": "200"})
        assert agent.exit_code == 0, agent.output
        usage = next(line for line in agent.output.splitlines() if "Usage:" in line)
        assert f"agent {dialect} [OPTIONS]" in usage
        assert "COMMAND [ARGS]" not in usage
        assert "<bool>" not in agent.output
        assert "--log-format" in agent.output


def test_command_records_are_titled_by_outcome_without_empty_delivery() -> None:
    answered = {"id": 1, "state": "succeeded", "deliveredAt": None}
    assert outcome_title("execute_actions", answered) == "execute_actions succeeded"
    assert outcome_title("command", {"state": "pending"}) == "command queued"
    assert "deliveredAt" not in [col.key for col in record_fields(answered)]
    acknowledged = {**answered, "deliveredAt": "2026-01-01T00:00:00Z"}
    assert "deliveredAt" in [col.key for col in record_fields(acknowledged)]


def test_device_attributes_must_be_an_object(app: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["device", "create", "--id", "x", "--attributes", "[1]", "--token", "tk_x"]
    )
    assert result.exit_code == 2
    assert "must be a JSON object" in result.output
