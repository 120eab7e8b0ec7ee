"""Dialect state: namespaced, durable values on the store's key/value table."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.hub.conftest import started_hub

from tether.bus import MemoryBus
from tether.core.errors import BadRequest
from tether.hub.service import Hub


@pytest.fixture
async def hub(tmp_path: Path, sqlite_url: str) -> AsyncIterator[Hub]:
    async with started_hub(sqlite_url, MemoryBus(), tmp_path) as started:
        yield started


async def test_values_are_namespaced_by_dialect(hub: Hub) -> None:
    state = hub.dialect_state
    await state.put("ewelink", "at:1:app", "one")
    assert await state.get("ewelink", "at:1:app") == "one"
    assert await state.get("opengate", "at:1:app") is None
    assert await state.put_if_absent("ewelink", "at:1:app", "two") == "one"
    await state.put("ewelink", "at:1:app", "three")
    assert await state.get("ewelink", "at:1:app") == "three"
    assert await state.delete("ewelink", "at:1:app") is True
    assert await state.get("ewelink", "at:1:app") is None


@pytest.mark.parametrize(("dialect", "key"), [("", "k"), ("bad name", "k"), ("ewelink", "")])
async def test_bad_names_are_refused(hub: Hub, dialect: str, key: str) -> None:
    with pytest.raises(BadRequest):
        await hub.dialect_state.get(dialect, key)
