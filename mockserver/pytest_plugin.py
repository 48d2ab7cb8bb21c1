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
from typing import Any

import pytest


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


def _fixtures(name: str, config: str, thread: str, broker: str) -> tuple[Any, Any]:
    """The ``<name>_config`` and ``<name>`` fixtures of one broker's mock, so both brokers'
    fixtures are one piece of code (classes named, imported when a test asks for them)."""

    def make_config(request: pytest.FixtureRequest) -> Any:
        import stockmon.mockserver as m

        return getattr(m, config)(**_marked(request, name))

    def run(request: pytest.FixtureRequest) -> Iterator[Any]:
        import stockmon.mockserver as m

        with getattr(m, thread)(request.getfixturevalue(f"{name}_config")) as mock:
            yield mock

    make_config.__doc__ = (
        f"{config} for ``{name}``: defaults plus the fields of a ``{name}`` marker."
    )
    run.__doc__ = f"A running {broker} mock (free loopback ports), stopped after the test."
    return pytest.fixture(name=f"{name}_config")(make_config), pytest.fixture(name=name)(run)


kis_mock_config, kis_mock = _fixtures("kis_mock", "MockConfig", "MockThread", "KIS")
kiwoom_mock_config, kiwoom_mock = _fixtures(
    "kiwoom_mock", "KiwoomMockConfig", "KiwoomMockThread", "Kiwoom"
)
