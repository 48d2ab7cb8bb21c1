"""pytest plugin (entry point ``pytest11`` = ``stockmon_mock``): ``kis_mock`` and ``kiwoom_mock``.

``kis_mock`` is an in-process KIS mock on free loopback ports, running on its own event loop in a
background thread, so the same fixture serves sync and async tests. Configure it per test with
``@pytest.mark.kis_mock(spec_version="1.0", time_scale=50, ...)`` (any MockConfig field), or
override the ``kis_mock_config`` fixture. The yielded handle is a :class:`KisMock`: ``rest_url``,
``ws_url``, ``app_key``, ``app_secret``, ``env()``, ``faults``, ``trace``, ``open_sockets()``.
``kiwoom_mock`` is the same for the Kiwoom mock (:class:`KiwoomMock`, ``@pytest.mark.kiwoom_mock``
with KiwoomMockConfig fields, e.g. ``env="prod"``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from stockmon.mockserver import KisMock, KiwoomMock, KiwoomMockConfig, MockConfig


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker so --strict-markers accepts it."""
    config.addinivalue_line(
        "markers", "kis_mock(**fields): MockConfig fields for the kis_mock fixture"
    )
    config.addinivalue_line(
        "markers", "kiwoom_mock(**fields): KiwoomMockConfig fields for the kiwoom_mock fixture"
    )


def _marked(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    marker = request.node.get_closest_marker(name)
    return dict(marker.kwargs) if marker else {}


@pytest.fixture
def kis_mock_config(request: pytest.FixtureRequest) -> MockConfig:
    """MockConfig for ``kis_mock``: defaults plus the fields of a ``kis_mock`` marker."""
    from stockmon.mockserver import MockConfig

    return MockConfig(**_marked(request, "kis_mock"))


@pytest.fixture
def kis_mock(kis_mock_config: MockConfig) -> Iterator[KisMock]:
    """A running KIS mock (free loopback ports), stopped after the test."""
    from stockmon.mockserver import MockThread

    with MockThread(kis_mock_config) as mock:
        yield mock


@pytest.fixture
def kiwoom_mock_config(request: pytest.FixtureRequest) -> KiwoomMockConfig:
    """KiwoomMockConfig for ``kiwoom_mock``: defaults plus the fields of a ``kiwoom_mock`` marker."""
    from stockmon.mockserver import KiwoomMockConfig

    return KiwoomMockConfig(**_marked(request, "kiwoom_mock"))


@pytest.fixture
def kiwoom_mock(kiwoom_mock_config: KiwoomMockConfig) -> Iterator[KiwoomMock]:
    """A running Kiwoom mock (free loopback ports), stopped after the test."""
    from stockmon.mockserver import KiwoomMockThread

    with KiwoomMockThread(kiwoom_mock_config) as mock:
        yield mock
