"""The ``service`` fixture: one ``stockmon serve`` plus KIS mock per test module (serve_support)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serve_support import Service, start_service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service per test module (the mock at a brisk tick rate)."""
    yield from start_service(tmp_path_factory.mktemp("serve"), tick_rate_hz=20.0)
