"""One member of a test fleet: ``--tasks`` tasks calling quote until told to stop (run as a script).

Protocol on stdio: prints ``ready`` once its clients are built (no request made yet), waits for
a line ``go SECONDS`` on stdin, runs its tasks for that many real seconds, prints one JSON summary.
Settings come from the environment, as for any stockmon process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from stockmon.reference.errors import ClientError
from stockmon.reference.kis.quote import fetch_quote
from stockmon.reference.wiring import open_kis
from stockmon.settings import load_settings


async def main(tasks: int, keys: list[str], pause: float) -> None:
    """Run the worker protocol."""
    async with open_kis(load_settings()) as kis:
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        deadline = time.monotonic() + float(line.split()[1])
        calls = 0
        errors: list[str] = []
        tokens: set[int] = set()

        async def task(i: int) -> None:
            nonlocal calls
            while time.monotonic() < deadline:
                try:
                    await fetch_quote(kis.rest, keys[i % len(keys)])
                    calls += 1
                    if kis.tokens.current is not None:
                        tokens.add(kis.tokens.current.version)
                except ClientError as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(pause)

        await asyncio.gather(*(task(i) for i in range(tasks)))
        print(
            json.dumps(
                {
                    "calls": calls,
                    "errors": errors,
                    "issued": kis.tokens.issued,
                    "token_versions": sorted(tokens),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--pause", type=float, default=0.1)
    parser.add_argument("keys", nargs="+")
    ns = parser.parse_args()
    asyncio.run(main(ns.tasks, ns.keys, ns.pause))
