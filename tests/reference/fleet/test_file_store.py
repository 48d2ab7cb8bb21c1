"""The single-user token cache without Redis: real ``stockmon quote`` processes, a real mock."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fleet_support import PYTHON, client_env, subprocess_env, token_requests

from stockmon.mockserver import KisMock, MockConfig
from stockmon.redaction import Secret
from stockmon.reference.fleet.file_store import FileCredentialStore, cache_file
from stockmon.reference.fleet.token_state import CachedCredential
from stockmon.reference.fleet.token_store import StoreWrite

CANARY_KEY = "PS" + "FILECACHE" * 3 + "abcdefg"
CANARY_SECRET = "FILESECRET" * 18


@pytest.fixture
async def mock() -> AsyncIterator[KisMock]:
    """A real-time mock (scale 1): its issuance throttle is the broker's full minute."""
    config = MockConfig(time_scale=1.0, app_key=CANARY_KEY, app_secret=CANARY_SECRET)
    async with KisMock(config) as m:
        yield m


async def quote(env: dict[str, str], key: str) -> tuple[int, str, float]:
    """Run ``stockmon quote KEY``; (exit code, stderr, wall seconds)."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "stockmon.cli",
        "quote",
        key,
        env=subprocess_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 50)
    return int(proc.returncode or 0), err.decode(), time.monotonic() - started


async def test_second_quote_reuses_the_cached_token(mock: KisMock, tmp_path: Path) -> None:
    """Two quotes in a row without Redis: one issuance, the second never waits for the throttle."""
    env = client_env(mock, STOCKMON_CACHE_DIR=str(tmp_path / "cache"))
    code, err, _ = await quote(env, "005930")
    assert code == 0, err
    code, err, wall = await quote(env, "000660")
    assert code == 0, err
    assert len(token_requests(mock)) == 1
    assert wall < 20, f"second quote took {wall:.1f} s"  # the throttle alone is 60 s
    files = [p for p in (tmp_path / "cache").iterdir() if p.suffix == ".json"]
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o700
    assert CANARY_KEY not in files[0].name
    text = files[0].read_text()
    assert CANARY_KEY not in text and CANARY_SECRET not in text


async def test_two_concurrent_quotes_issue_once(mock: KisMock, tmp_path: Path) -> None:
    """Two quote processes started together share the file lock: one token issuance."""
    env = client_env(mock, STOCKMON_CACHE_DIR=str(tmp_path / "cache"))
    results = await asyncio.gather(quote(env, "005930"), quote(env, "000660"))
    assert [r[0] for r in results] == [0, 0], [r[1] for r in results]
    assert len(token_requests(mock)) == 1


async def test_throttle_message_names_the_cache_and_redis(tmp_path: Path) -> None:
    """An EGW00133 wait says where the token is kept and that REDIS_URL shares it."""
    config = MockConfig(time_scale=12.0, app_key=CANARY_KEY, app_secret=CANARY_SECRET)
    async with KisMock(config) as mock:  # a 5 s throttle window
        env = client_env(mock, STOCKMON_CACHE_DIR=str(tmp_path / "cache"))
        assert (await quote(env, "005930"))[0] == 0
        for p in (tmp_path / "cache").glob("*.json"):
            p.unlink()  # the cache is gone, the broker's throttle window is not
        code, err, _ = await quote(env, "000660")
    assert code == 0, err
    line = next(ln for ln in err.splitlines() if "throttled" in ln)
    assert "REDIS_URL" in line and str(tmp_path / "cache") in line


async def test_fenced_write_and_freshness(tmp_path: Path) -> None:
    """A lapsed lease cannot write; an entry past its keep time reads as absent."""
    now = [1000.0]
    path = cache_file(tmp_path, "mock", Secret(CANARY_KEY))
    store = FileCredentialStore(path, wall=lambda: now[0])
    lease = await store.try_acquire("token", 5.0, "a")
    assert lease is not None and await store.try_acquire("token", 5.0, "b") is None
    cred = CachedCredential(Secret("tok"), 1100.0, 1000.0)
    assert await store.write(lease, "token", StoreWrite(cred, 100.0, 60.0)) == 1
    assert (await store.read("token")) is not None
    assert await store.throttle_remaining("token") == pytest.approx(60.0)
    now[0] = 1006.0  # the lease lapsed
    assert await store.write(lease, "token", StoreWrite(cred, 100.0, None)) is None
    now[0] = 1101.0
    assert await store.read("token") is None
    assert os.stat(path).st_mode & 0o077 == 0
