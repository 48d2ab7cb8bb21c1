"""``stockmon serve`` as a process: the prod key rule, and a clean stop on SIGTERM (API-SERVICE)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
import websockets
from serve_support import start_service
from stream_support import STOCKMON, cli_env

pytestmark = pytest.mark.slow


def test_prod_refuses_to_start_without_the_key() -> None:
    """API-AUTH key_required_in: STOCKMON_ENV=prod without VITE_API_KEY is a one-line error, exit 2."""
    env = cli_env(
        {
            "STOCKMON_ENV": "prod",
            "KIS_APP_KEY": "k" * 36,
            "KIS_APP_SECRET": "s" * 180,
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "STOCKMON_SUBSCRIPTIONS": "H0STCNT0:005930",
        }
    )
    done = subprocess.run([STOCKMON, "serve"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "VITE_API_KEY" in lines[0]
    assert "Traceback" not in done.stderr


async def test_sigterm_closes_streams_with_the_shutdown_code(tmp_path: Path) -> None:
    """SIGTERM: every stream is closed with shutdown_close_code and the process exits 0 in the grace."""
    runs = start_service(tmp_path, tick_rate_hz=5.0)
    service = next(runs)
    service_clause = service.spec.clause("API-SERVICE")
    try:
        async with websockets.connect(
            service.ws_url,
            subprotocols=service.subprotocols(service.ticket()),  # type: ignore[arg-type]
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "welcome"
            service.proc.terminate()
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), service_clause.number("shutdown_grace_s"))
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == service_clause.integer("shutdown_close_code")
        code = await asyncio.to_thread(
            service.proc.wait, timeout=service_clause.number("shutdown_grace_s") + 2
        )
        assert code == 0, service.log.read_text()
    finally:
        runs.close()
