"""``stockmon stream``: the reference client on the command line (the IUT contract of DESIGN §5).

Reads every setting from the environment (DESIGN §4), streams the subscriptions of
STOCKMON_SUBSCRIPTIONS through the mode STOCKMON_BROKER names in the broker registry (``kis``,
``kiwoom``, or ``auto``: KIS with the Kiwoom failover) and prints one JSON event per line (schema
``event``) when stdout is not a terminal, a compact live table when it is. SIGINT and SIGTERM stop it
cleanly (exit 0), and so does a reader that goes away (``| head``: exit 0, nothing on stderr). A
missing or malformed variable is a one-line error (exit 2) before anything is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import stat
import sys
from collections.abc import Callable

from stockmon.clock import ScaledClock
from stockmon.errors import UsageError
from stockmon.reference.failover.runner import Client
from stockmon.reference.output import EventSink, JsonLinesSink, LiveTable, silence_stdout
from stockmon.reference.registry import Mode, checked_settings
from stockmon.settings import STREAM_VARIABLES, Settings, describe_variables


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``stockmon stream``."""
    describe_variables(parser, STREAM_VARIABLES)
    parser.add_argument(
        "--format",
        choices=("auto", "json", "table"),
        default="auto",
        help="json lines, a live table, or auto (table on a terminal, json otherwise)",
    )
    parser.add_argument(
        "--for",
        dest="duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop by itself after SECONDS (real), exit 0; default: until Ctrl-C or SIGTERM",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of the subcommand; returns the exit code."""
    mode, settings = checked_settings("stream")
    if args.duration is not None and not args.duration > 0:
        raise UsageError(f"--for {args.duration:g}: give a positive number of seconds")
    fmt = args.format
    if fmt == "auto":
        fmt = "table" if sys.stdout.isatty() else "json"
    try:
        broken = asyncio.run(_main(mode, settings, fmt, args.duration))
    except BrokenPipeError:
        broken = True
    if broken:
        silence_stdout()
    return 0


async def _main(mode: Mode, settings: Settings, fmt: str, duration: float | None = None) -> bool:
    """Stream until a signal or a closed stdout; True when stdout was closed."""
    loop = asyncio.get_running_loop()
    runner: list[Client] = []
    stopping: list[bool] = []

    def stop() -> None:
        stopping.append(True)
        for client in runner:
            client.stop()

    def started(client: Client) -> None:
        runner.append(client)
        if stopping:  # asked before the client existed: stop it once it runs
            loop.call_soon(client.stop)

    def stop_soon() -> None:  # not from inside the sink's caller: no re-entrant stop()
        loop.call_soon(stop)

    sink: EventSink
    json_sink: JsonLinesSink | None = None
    table: LiveTable | None = None
    if fmt == "table":
        sink = table = LiveTable(sys.stdout, spec=settings.spec)
    else:
        sink = json_sink = JsonLinesSink(sys.stdout, on_broken=stop_soon)
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop)
    if duration is not None:
        loop.call_later(duration, stop)
    unwatch = None
    if json_sink is not None:

        def reader_gone() -> None:
            assert json_sink is not None
            json_sink.broken = True
            stop_soon()

        unwatch = watch_reader_gone(loop, reader_gone)
    try:
        await mode.run(settings, ScaledClock(settings.time_scale), sink, started)
    finally:
        if unwatch is not None:
            unwatch()
        for sig in signals:
            loop.remove_signal_handler(sig)
        if table is not None:
            table.close()
    return json_sink is not None and json_sink.broken


def watch_reader_gone(
    loop: asyncio.AbstractEventLoop, on_gone: Callable[[], None]
) -> Callable[[], None] | None:
    """Call ``on_gone`` as soon as the pipe stdout writes to loses its reader (``| head`` exits),
    not at the next write: a stream waiting for its socket lease may write nothing for seconds.
    The write end of a pipe turns readable-with-error (EPOLLERR) then; returns the unwatch, or
    None when stdout is no pipe."""
    try:
        fd = sys.stdout.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return None
    except (OSError, ValueError):
        return None

    def fired() -> None:
        loop.remove_reader(fd)
        on_gone()

    try:
        loop.add_reader(fd, fired)
    except (OSError, ValueError):
        return None

    def unwatch() -> None:
        loop.remove_reader(fd)

    return unwatch
