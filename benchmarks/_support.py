"""What several benchmarks share: a flooding KIS mock's config and a ``stockmon stream`` child.

Imported by the scripts in this folder (run as ``python benchmarks/NAME.py``, so this folder is on
``sys.path``); one place for the pieces, so the benchmarks measure the same thing the same way.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from stockmon.mockserver import KisMock, MockConfig

# The console script next to this interpreter: the package as a user installs it.
STOCKMON = str(Path(sys.executable).with_name("stockmon"))


def flood_config(**fields: Any) -> MockConfig:
    """A KIS mock that sends data as fast as it can and never pings: the load the throughput
    and memory benchmarks put on a client (``fields`` override, e.g. ``trace_limit``)."""
    fields = {
        "tick_rate_hz": 1e9,
        "server_pingpong_period_s": 0,
        "unanswered_pingpong_grace_s": 0,
        **fields,
    }
    return MockConfig(**fields)


def stream_env(mock: KisMock, **variables: str) -> dict[str, str]:
    """A clean environment for a client of ``mock``: PATH, HOME, LANG, the mock's exports and
    ``variables`` (nothing else of the caller's, so a developer's own settings never leak in)."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {**keep, **mock.env(), **variables}


async def spawn_stream(
    env: dict[str, str], stdout: int = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    """``stockmon stream --format json`` as a child, its stderr piped (tracebacks are looked for)."""
    return await asyncio.create_subprocess_exec(
        STOCKMON,
        "stream",
        "--format",
        "json",
        env=env,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )
