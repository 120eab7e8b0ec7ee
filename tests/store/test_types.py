"""UTCDateTime, the JSON codec and URL option parsing, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from tether.core.lifecycle import CommandState
from tether.core.model import CommandStep
from tether.store.engine import create_engine, parse_pg_options
from tether.store.types import UTCDateTime, from_micros, json_dumps, json_loads, to_micros

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8)), None]
)
AWARE = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=ZONES
).filter(lambda value: value.tzinfo is not None)

SQLITE = sqlite.dialect()
POSTGRES = postgresql.dialect()


@given(AWARE)
def test_sqlite_round_trip_is_exact_and_utc(value: datetime) -> None:
    column = UTCDateTime()
    stored = column.process_bind_param(value, SQLITE)
    assert isinstance(stored, int)
    loaded = column.process_result_value(stored, SQLITE)
    assert loaded == value
    assert loaded is not None
    assert loaded.tzinfo is UTC


@given(AWARE, AWARE)
def test_sqlite_storage_order_is_time_order(a: datetime, b: datetime) -> None:
    assert (to_micros(a) < to_micros(b)) == (a < b)
    assert (to_micros(a) == to_micros(b)) == (a == b)


def test_micros_are_exact_at_the_edges() -> None:
    assert to_micros(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    edge = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    assert from_micros(to_micros(edge)) == edge
    assert from_micros(-1) == datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


def test_postgres_results_are_normalised_to_utc() -> None:
    column = UTCDateTime()
    value = datetime(2026, 1, 1, 17, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert column.process_bind_param(value, POSTGRES) is value
    loaded = column.process_result_value(value, POSTGRES)
    assert loaded is not None
    assert loaded.tzinfo is UTC
    assert loaded == value


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES])
def test_naive_datetimes_are_refused(dialect: sqlite.dialect) -> None:
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(datetime(2026, 1, 1), dialect)
    assert UTCDateTime().process_bind_param(None, dialect) is None
    assert UTCDateTime().process_result_value(None, dialect) is None


def test_json_codec_is_msgspec_and_returns_str() -> None:
    step = CommandStep(name="a", state="done", time=datetime(2026, 1, 1, tzinfo=UTC))
    text = json_dumps({"state": CommandState.SENT, "steps": (step,), "n": 1.5})
    assert isinstance(text, str)
    decoded = json_loads(text)
    assert decoded["state"] == "sent"
    assert msgspec.convert(decoded["steps"], tuple[CommandStep, ...]) == (step,)
    assert json_loads(text.encode()) == decoded


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("-csearch_path=abc", {"search_path": "abc"}),
        (
            "-c search_path=a,b -cstatement_timeout=5s",
            {"search_path": "a,b", "statement_timeout": "5s"},
        ),
        ("--application-name=x", {"application_name": "x"}),
    ],
)
def test_pg_options_become_server_settings(options: str, expected: dict[str, str]) -> None:
    assert parse_pg_options(options) == expected


@pytest.mark.parametrize("options", ["-c", "search_path=abc", "-cnovalue"])
def test_bad_pg_options_are_refused(options: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_pg_options(options)


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        create_engine("mysql://localhost/x")
