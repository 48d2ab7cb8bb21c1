"""A fleet of real processes sharing one token through a real redis-server (TOKEN-KIS-LOCK, -REFRESH).

8 processes x 8 tasks call ``quote`` against the mock across the token's refresh point. Time is
compressed (mock ``time_scale`` = STOCKMON_TIME_SCALE) and the mock issues short-lived tokens,
so the refresh point comes 1.5 s of real time after the fleet's token was issued.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fleet_support import (
    HERE,
    PYTHON,
    client_env,
    quote_paths,
    records,
    responses_to,
    settings_for,
    subprocess_env,
    token_requests,
)

from stockmon.mockserver import KisMock, MockConfig
from stockmon.reference.wiring import open_kis
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
WINDOW = SPEC.clause("TOKEN-KIS-REFRESH").number("refresh_before_expiry_s")
THROTTLE_CODE = SPEC.clause("TOKEN-KIS-THROTTLE").string("error_code")
SCALE = 200.0
FRESH_REAL_S = 1.5  # how long a new token stays FRESH, in real seconds
PROCESSES = 8
TASKS = 8

pytestmark = pytest.mark.slow


async def start_fleet(env: dict[str, str], n: int) -> list[asyncio.subprocess.Process]:
    """Start ``n`` workers and wait until each has built its clients (no request made yet)."""
    procs = [
        await asyncio.create_subprocess_exec(
            PYTHON,
            str(HERE / "fleet_worker.py"),
            "--tasks",
            str(TASKS),
            "--pause",
            "0.1",
            "005930",
            "DNASAAPL",
            env=subprocess_env(env),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(n)
    ]
    for p in procs:
        assert p.stdout is not None
        line = await asyncio.wait_for(p.stdout.readline(), 60)
        if line.strip() != b"ready":
            err = await p.stderr.read() if p.stderr else b""
            pytest.fail(f"worker did not start: {line!r} {err.decode()[-2000:]}")
    return procs


async def run_fleet(
    procs: list[asyncio.subprocess.Process], seconds: float
) -> list[dict[str, Any]]:
    """Tell every worker to go for ``seconds``; their JSON summaries."""
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(f"go {seconds}\n".encode())
        await p.stdin.drain()
    outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 120)
    summaries = []
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
        summaries.append(json.loads(out.decode().splitlines()[-1]))
    return summaries


async def test_fleet_across_the_refresh_point_issues_exactly_once(redis_url: str) -> None:
    """8 processes x 8 tasks cross the refresh point: 1 token request, no EGW00133, no failed call."""
    config = MockConfig(
        time_scale=SCALE,
        token_validity_s=WINDOW + FRESH_REAL_S * SCALE,
        token_reuse_window_s=0,
        symbols=("005930", "DNASAAPL"),
    )
    async with KisMock(config) as mock:
        env = client_env(mock, redis_url)
        procs = await start_fleet(env, PROCESSES)
        try:
            async with open_kis(settings_for(mock, redis_url)) as seed:
                first = await seed.tokens.get()  # the fleet's current token, issued just now
            mark = mock.trace.last_seq
            summaries = await run_fleet(procs, FRESH_REAL_S + 1.0)
        finally:
            for p in procs:
                if p.returncode is None:
                    p.kill()
                    await p.wait()
        reqs = token_requests(mock, mark)
        quotes = [r for r in records(mock, "request", mark) if r["path"] in quote_paths()]
        answers = responses_to(mock, quotes)
        everything = mock.trace.records()

    assert [s["errors"] for s in summaries] == [[]] * PROCESSES
    assert len(reqs) == 1, "exactly one token request for the whole fleet"
    assert sum(s["issued"] for s in summaries) == 1
    assert all(r["status"] == 200 for r in responses_to(mock, reqs))
    assert not [
        r
        for r in everything
        if r["kind"] == "response" and THROTTLE_CODE in json.dumps(r.get("body"))
    ]
    assert len(quotes) == sum(s["calls"] for s in summaries) > PROCESSES * TASKS
    assert all(a["status"] == 200 for a in answers)
    # The fleet really crossed the refresh point: quotes went out with the old and the new token.
    bearer = SPEC.rest["kis"]["headers"]["authorization"]
    used = {q["headers"][bearer] for q in quotes}
    assert len(used) == 2 and f"Bearer {first.value.reveal()}" in used
    assert all(s["token_versions"][-1] == first.version + 1 for s in summaries)
