"""Helpers for the REST, quote and fleet tests against the KIS mock (real loopback sockets)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stockmon.mockserver import KisMock
from stockmon.settings import Settings, load_settings
from stockmon.spec import load_spec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PYTHON = sys.executable


def token_path(version: str = "1.1") -> str:
    """Path of the token endpoint in the spec."""
    return str(load_spec(version).rest["kis"]["token"]["path"])


def quote_paths(version: str = "1.1") -> set[str]:
    """Paths of the quote endpoints in the spec."""
    return {str(q["path"]) for q in load_spec(version).rest["kis"]["quotes"].values()}


def client_env(mock: KisMock, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment a client process needs to use ``mock`` (and Redis)."""
    env = dict(mock.env())
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def settings_for(mock: KisMock, redis_url: str | None = None, **extra: str) -> Settings:
    """Settings of an in-process client of ``mock``."""
    return load_settings(client_env(mock, redis_url, **extra))


def subprocess_env(env: Mapping[str, str]) -> dict[str, str]:
    """A child environment: the test's PATH and friends (and its private token cache dir) plus
    exactly the given variables."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KIS_", "KIWOOM_", "STOCKMON_", "REDIS_")) or k == "STOCKMON_CACHE_DIR"
    }
    keep.update(env)
    keep["PYTHONUNBUFFERED"] = "1"
    return keep


def records(mock: KisMock, kind: str, since: int = 0, **match: Any) -> list[dict[str, Any]]:
    """Trace records of ``kind`` after seq ``since`` whose fields equal ``match``."""
    return [
        r
        for r in mock.trace.records(since)
        if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())
    ]


def token_requests(mock: KisMock, since: int = 0) -> list[dict[str, Any]]:
    """Requests to the token endpoint after seq ``since``."""
    return records(mock, "request", since, path=token_path(mock.config.spec_version))


def responses_to(mock: KisMock, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The responses answering ``requests``."""
    seqs = {r["seq"] for r in requests}
    return [
        r for r in mock.trace.records() if r["kind"] == "response" and r.get("request_seq") in seqs
    ]


def last_seq(mock: KisMock) -> int:
    """Seq of the newest trace record (0 when empty)."""
    return int(mock.trace.last_seq)


def open_intervals(mock: KisMock) -> list[tuple[float, float | None, str]]:
    """(opened t, closed t or None, conn) of every WebSocket session in the trace."""
    opened: dict[str, float] = {}
    out: list[tuple[float, float | None, str]] = []
    for rec in mock.trace.records():
        if rec["channel"] != "ws":
            continue
        if rec["kind"] == "ws_open":
            opened[rec["conn"]] = rec["t"]
        elif rec["kind"] == "ws_close" and rec["conn"] in opened:
            out.append((opened.pop(rec["conn"]), rec["t"], rec["conn"]))
    out.extend((t, None, conn) for conn, t in opened.items())
    return sorted(out)


def max_concurrent(mock: KisMock) -> int:
    """Most sessions open at the same moment, from the trace's open/close order."""
    depth = best = 0
    for rec in mock.trace.records():
        if rec["channel"] == "ws" and rec["kind"] == "ws_open":
            depth += 1
            best = max(best, depth)
        elif rec["channel"] == "ws" and rec["kind"] == "ws_close":
            depth -= 1
    return best


async def stop_processes(procs: list[asyncio.subprocess.Process], grace_s: float = 15) -> None:
    """SIGTERM every live process; SIGKILL what has not exited after ``grace_s``."""
    for proc in procs:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
