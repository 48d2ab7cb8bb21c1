"""``stockmon stream``: the reference client on the command line (the IUT contract of DESIGN §5).

Reads every setting from the environment (DESIGN §4), streams the subscriptions of
STOCKMON_SUBSCRIPTIONS from KIS (STOCKMON_BROKER=kiwoom: from Kiwoom; auto: KIS with the Kiwoom
failover of kiwoom_stream.py) and prints one JSON event per line (schema ``event``) when stdout is
not a terminal, a compact live table when it is. SIGINT and SIGTERM stop it cleanly (exit 0). A
missing or malformed variable is a one-line error (exit 2) before anything is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import replace

import httpx
import websockets
from websockets.uri import parse_uri

from stockmon.clock import ScaledClock
from stockmon.errors import SettingsError
from stockmon.reference.approval import DirectApprovalKeyProvider
from stockmon.reference.output import EventSink, JsonLinesSink, LiveTable
from stockmon.reference.redis_seams import stream_seams
from stockmon.reference.seams import ApprovalKeyProvider, ConnectGate, OpenGate
from stockmon.reference.shell import StreamClient
from stockmon.settings import Settings, load_settings, parse_subscriptions

log = logging.getLogger(__name__)

# What to stream when STOCKMON_SUBSCRIPTIONS is unset: one KR and one US tick. Not normative.
DEFAULT_SUBSCRIPTIONS = "H0STCNT0:005930,HDFSCNT0:DNASAAPL"


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``stockmon stream``."""
    parser.add_argument(
        "--format",
        choices=("auto", "json", "table"),
        default="auto",
        help="json lines, a live table, or auto (table on a terminal, json otherwise)",
    )
    parser.set_defaults(func=run)


def build_seams(
    settings: Settings, http: httpx.AsyncClient
) -> tuple[ApprovalKeyProvider, ConnectGate]:
    """The approval-key source and the connect gate for this process.

    Single-process defaults: approval keys fetched directly, a gate that always grants. This is the
    one place where a fleet set-up (REDIS_URL) plugs in shared keys and a fleet-wide socket lease.
    """
    app_key, app_secret = settings.require_kis()
    provider = DirectApprovalKeyProvider(
        client=http,
        rest_url=settings.kis_rest_url,
        app_key=app_key,
        app_secret=app_secret,
        spec=settings.spec,
    )
    return provider, OpenGate()


def _check(settings: Settings) -> None:
    if settings.broker == "kis":
        settings.require_kis()
    else:
        from stockmon.reference.kiwoom_stream import check_backup

        check_backup(settings)
    if settings.broker != "kiwoom":
        # a URL websockets cannot parse is a configuration error: say so now, not on every retry
        try:
            parse_uri(settings.kis_ws_url)
        except (websockets.InvalidURI, ValueError) as exc:
            raise SettingsError(
                f"KIS_WS_URL={settings.kis_ws_url!r} is not a WebSocket URL: {exc}"
            ) from None


def run(args: argparse.Namespace) -> int:
    """Entry point of the subcommand; returns the exit code."""
    settings = load_settings()
    _check(settings)
    if not settings.subscriptions:
        # `stockmon mock` exports no subscriptions: stream something useful rather than nothing
        settings = replace(
            settings, subscriptions=parse_subscriptions(DEFAULT_SUBSCRIPTIONS, settings.spec)
        )
        print(
            f"stockmon stream: STOCKMON_SUBSCRIPTIONS is not set; streaming {DEFAULT_SUBSCRIPTIONS}",
            file=sys.stderr,
        )
    fmt = args.format
    if fmt == "auto":
        fmt = "table" if sys.stdout.isatty() else "json"
    try:
        if settings.broker == "kis":
            return asyncio.run(_main(settings, fmt))
        from stockmon.reference.kiwoom_stream import backup_main  # kiwoom, or auto (failover)

        return asyncio.run(backup_main(settings, fmt))
    except BrokenPipeError:
        # the reader went away: nothing left to say, and nothing to say it to
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0


async def _main(settings: Settings, fmt: str) -> int:
    clock = ScaledClock(settings.time_scale)
    sink: EventSink = LiveTable(sys.stdout) if fmt == "table" else JsonLinesSink(sys.stdout)
    async with (
        httpx.AsyncClient() as http,
        stream_seams(settings, http, sink, build_seams) as (approval, gate),
    ):
        client = StreamClient(
            spec=settings.spec,
            ws_url=settings.kis_ws_url,
            subscriptions=settings.subscriptions,
            approval=approval,
            clock=clock,
            sink=sink,
            gate=gate,
        )
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, client.stop)
        try:
            await client.run()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
    return 0
