"""Fixtures of the mock-server tests: a running KisMock in the test's own loop, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from stockmon.mockserver import KisMock, MockConfig


@pytest.fixture
def mock_config() -> MockConfig:
    """Default config of the ``mock`` fixture (tests override it)."""
    return MockConfig()


@pytest.fixture
async def mock(mock_config: MockConfig) -> AsyncIterator[KisMock]:
    """A KisMock on free loopback ports, in the test's event loop."""
    async with KisMock(mock_config) as m:
        yield m


@pytest.fixture
async def client(mock: KisMock) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client pointed at the mock's REST side."""
    async with httpx.AsyncClient(base_url=mock.rest_url, timeout=10) as c:
        yield c
