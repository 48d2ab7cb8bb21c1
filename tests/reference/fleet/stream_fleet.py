"""A fleet of real ``stockmon stream`` processes against one mock, and readings of the mock's trace
(shared by the socket-lease tests: test_fleet_socket.py, test_redis_outage.py)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from fleet_support import (  # noqa: F401  (re-exported for the fleet tests)
    PYTHON,
    max_concurrent,
    open_intervals,
    stop_processes,
    subprocess_env,
)

LEASE_STATES = ("lease_acquired", "lease_lost", "lease_released", "standby")


@dataclass
class Replica:
    """One ``stockmon stream`` process and the events it printed."""

    proc: asyncio.subprocess.Process
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: bytearray = field(default_factory=bytearray)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name_suffix(self) -> str:
        """How this replica names itself in lease events (host:pid)."""
        return f":{self.proc.pid}"

    def states(self) -> list[str]:
        """The status states printed so far."""
        return [e["state"] for e in self.events if e.get("type") == "status"]

    def lease_state(self) -> str | None:
        """The newest socket-lease state this replica printed."""
        lease = [s for s in self.states() if s in LEASE_STATES]
        return lease[-1] if lease else None


async def start_replica(env: dict[str, str]) -> Replica:
    """Start one replica and collect its stdout events and stderr in the background."""
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "stockmon.cli",
        "stream",
        "--format",
        "json",
        env=subprocess_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    rep = Replica(proc)

    async def read_out() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            try:
                rep.events.append(json.loads(line))
            except json.JSONDecodeError:
                rep.events.append({"type": "garbage", "line": line.decode(errors="replace")})

    async def read_err() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            rep.stderr.extend(line)

    rep.readers = [asyncio.create_task(read_out()), asyncio.create_task(read_err())]
    return rep


async def until(predicate: Any, limit_s: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms; fail naming ``what`` after ``limit_s`` seconds."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit_s} s waiting for {what}")
        await asyncio.sleep(0.02)


def holder_of(replicas: list[Replica]) -> Replica:
    """The one live replica whose newest lease event says it holds the socket lease."""
    holders = [
        r for r in replicas if r.proc.returncode is None and r.lease_state() == "lease_acquired"
    ]
    assert len(holders) == 1, [r.states()[-3:] for r in replicas]
    return holders[0]


async def stop_all(replicas: list[Replica]) -> None:
    """SIGTERM every live replica, wait (SIGKILL after 15 s) and collect its output."""
    await stop_processes([r.proc for r in replicas])
    for r in replicas:
        for task in r.readers:
            await asyncio.gather(task, return_exceptions=True)
