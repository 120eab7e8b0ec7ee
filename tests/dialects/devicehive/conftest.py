"""Fixtures for the DeviceHive dialect tests (helpers live in ``helpers.py``).

The directory has no ``__init__.py`` on purpose: with it, pytest's importlib mode would
register this test package as ``devicehive`` and shadow the official client library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from tests.dialects.devicehive.helpers import Server, start


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """One server per test module (start-up and logins are slow on a busy machine);
    tests keep apart by prefixing every name they create."""
    async for s in start(tmp_path_factory.mktemp("devicehive")):
        yield s
