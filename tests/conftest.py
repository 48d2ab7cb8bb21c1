"""Shared fixtures: a clean environment for every test, and a real redis-server on a free port."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from stockmon.conformance.redis_server import PrivateRedis, free_port
from stockmon.spec import available_versions, load_spec

ROOT = Path(__file__).resolve().parent.parent
# Every variable an implementation reads, from the spec itself (never a hand-kept list).
ENV_VARIABLES = sorted({e.name for v in available_versions() for e in load_spec(v).environment})


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A developer's own credentials or settings never leak into a test (nor its token cache)."""
    for name in ENV_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STOCKMON_CACHE_DIR", str(tmp_path / "stockmon-cache"))


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary the browser tests drive (Debian's, through Playwright).

    Without one the browser tests are skipped on a developer's machine, but fail where the suite
    is told a browser is there (``.ci/run`` sets STOCKMON_TEST_REQUIRE_BROWSER=1): in CI a missing
    browser is a broken setup, never a silent pass.
    """
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        skip_or_fail(
            "no chromium binary (apt-get install -y chromium; .ci/run installs it)",
            "STOCKMON_TEST_REQUIRE_BROWSER",
        )
    return path


@pytest.fixture(scope="session")
def redis_cli() -> str:
    """The ``redis-cli`` binary (Cluster setup), skipped without it except where CI requires it.

    ``.ci/run`` installs redis-server, which brings redis-cli, and sets
    STOCKMON_TEST_REQUIRE_REDIS_CLI=1: a missing one there fails instead of skipping the Cluster test.
    """
    path = shutil.which("redis-cli")
    if path is None:
        skip_or_fail(
            "redis-cli is not installed (apt-get install -y redis-server; .ci/run installs it)",
            "STOCKMON_TEST_REQUIRE_REDIS_CLI",
        )
    assert path is not None
    return path


def skip_or_fail(why: str, flag: str) -> None:
    """Skip for a missing tool, or fail when the environment variable ``flag`` is 1 (CI has it)."""
    if os.environ.get(flag) == "1":
        pytest.fail(why)
    pytest.skip(why)


RedisServer = PrivateRedis  # tests use the harness's private server: one way to start Redis


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh, private redis-server for one test."""
    with PrivateRedis(password=False, prefix="stockmon-redis-") as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of a fresh private redis-server."""
    return redis_server.url


__all__ = ["ENV_VARIABLES", "ROOT", "RedisServer", "free_port"]
