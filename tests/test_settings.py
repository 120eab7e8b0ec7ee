"""The one settings object: sources, precedence, validation, and documentation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from tether.settings import Settings

DOCS = Path(__file__).parent.parent / "docs" / "operations.md"
DIALECT_DOCS = DOCS.parent / "dialects"
DIALECT_SECTIONS = {"devicehive", "ewelink", "controlid", "opengate", "infiniteclouds"}


def test_defaults_run_embedded() -> None:
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.bus == "memory"
    # Relative to where the server starts, but always said (and used) absolute.
    expected = Path.cwd() / "tether-data" / "tether.db"
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{expected}"


def test_cors_origins_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_CORS_ORIGINS", "https://a.example, https://b.example:8443")
    assert Settings().cors_origins == ["https://a.example", "https://b.example:8443"]
    monkeypatch.setenv("TETHER_CORS_ORIGINS", '["*"]')
    assert Settings().cors_origins == ["*"]


def test_environment_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "tether.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("TETHER_CONFIG", str(config))
    monkeypatch.setenv("TETHER_PORT", "9100")
    settings = Settings()
    assert settings.host == "0.0.0.0"
    assert settings.port == 9100


def test_explicit_values_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_PORT", "9100")
    assert Settings(port=9200).port == 9200


def test_bad_values_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError):
        Settings(port=70000)
    config = tmp_path / "tether.toml"
    config.write_text("prot = 9000\n")  # a typo must not pass silently
    monkeypatch.setenv("TETHER_CONFIG", str(config))
    with pytest.raises(ValidationError):
        Settings()


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text()
    missing = [name for name in Settings.model_fields if f"TETHER_{name.upper()}" not in text]
    assert not missing, f"docs/operations.md does not list: {missing}"


@pytest.mark.parametrize("section", sorted(DIALECT_SECTIONS))
def test_every_dialect_setting_is_documented_on_its_page(section: str) -> None:
    model = Settings.model_fields[section].annotation
    assert isinstance(model, type)
    assert issubclass(model, BaseModel)
    page = DIALECT_DOCS / f"{section}.md"
    text = page.read_text()
    missing = [
        f"TETHER_{section.upper()}__{name.upper()}"
        for name in model.model_fields
        if f"TETHER_{section.upper()}__{name.upper()}" not in text
    ]
    assert not missing, f"{page.name} does not list: {missing}"


def test_dialect_settings_nest_in_environment_and_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tether.toml"
    config.write_text("[controlid]\nenabled = false\n")
    monkeypatch.setenv("TETHER_CONFIG", str(config))
    monkeypatch.setenv("TETHER_EWELINK__ENABLED", "false")
    settings = Settings()
    assert settings.controlid.enabled is False
    assert settings.ewelink.enabled is False
    assert settings.devicehive.enabled is True
    config.write_text("[controlid]\nenabeld = false\n")  # typos fail here too
    with pytest.raises(ValidationError):
        Settings()
