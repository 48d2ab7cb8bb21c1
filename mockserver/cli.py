"""``stockmon mock``: run the KIS and Kiwoom mocks on loopback and print how to point a client at them.

Both mocks run on one event loop and share one trace (``--trace`` writes both brokers' records, in
one order), one market simulator and one clock."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from stockmon.errors import UsageError
from stockmon.spec import available_versions, latest_version

if TYPE_CHECKING:
    from stockmon.mockserver.config import KiwoomMockConfig, MockConfig
    from stockmon.mockserver.kis.mock import KisMock
    from stockmon.mockserver.kiwoom.mock import KiwoomMock

# Trace records kept by a long-running CLI mock (the newest win); non-normative memory bound.
CLI_TRACE_LIMIT = 200_000
# The real Kiwoom REST side is https on 443, which needs root; the mock's default is its own choice.
DEFAULT_KIWOOM_REST_PORT = 10443


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``stockmon mock``."""
    from stockmon.mockserver.config import ENVS, MARKET_MODES
    from stockmon.mockserver.kis.profile import load_profile
    from stockmon.mockserver.kiwoom.profile import load_kiwoom_profile

    profile = load_profile()
    parser.add_argument(
        "--spec",
        default=latest_version(),
        choices=available_versions(),
        help="behaviour profile (spec version); default %(default)s",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind; anything but loopback must be asked for (default %(default)s)",
    )
    parser.add_argument(
        "--rest-port",
        type=int,
        default=profile.default_rest_port,
        help="KIS REST port, 0 = free port (default %(default)s)",
    )
    parser.add_argument(
        "--ws-port",
        type=int,
        default=profile.default_ws_port,
        help="KIS WebSocket port, 0 = free port (default %(default)s)",
    )

    parser.add_argument(
        "--kiwoom-rest-port",
        type=int,
        default=DEFAULT_KIWOOM_REST_PORT,
        help="Kiwoom REST port, 0 = free port (default %(default)s)",
    )
    parser.add_argument(
        "--kiwoom-ws-port",
        type=int,
        default=load_kiwoom_profile().default_ws_port,
        help="Kiwoom WebSocket port, 0 = free port (default %(default)s)",
    )
    parser.add_argument(
        "--ports",
        type=int,
        choices=(0,),
        default=None,
        metavar="0",
        help="0 = a free port for each of the four (the exports show the real ones); "
        "for a second mock beside a first",
    )
    parser.add_argument(
        "--kiwoom-env",
        choices=ENVS,
        default=None,
        help="Kiwoom LOGIN rule (TOKEN-KIWOOM-SESSION): prod requires a token, mock does not "
        "(default: the spec's mock profile)",
    )
    parser.add_argument(
        "--market",
        choices=MARKET_MODES,
        default="always",
        help="always: every market trades at any hour (default, for development); hours: KRX and "
        "US regular sessions (mock profile), closed otherwise, as /_mock/state shows",
    )
    parser.add_argument("--no-kiwoom", action="store_true", help="run the KIS mock only")
    parser.add_argument("--seed", type=int, default=1, help="simulator and credential seed")
    parser.add_argument("--scenario", metavar="FILE", help="scenario YAML (schemas/scenario.json)")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="N",
        help="spec seconds per real second for every mock period (default 1)",
    )
    parser.add_argument(
        "--symbols",
        default=None,
        help="comma-separated universe, e.g. 005930,DNASAAPL (any valid key works anyway)",
    )
    parser.add_argument(
        "--tick-rate",
        type=float,
        default=None,
        metavar="HZ",
        help="data frames per spec second per registration",
    )
    parser.add_argument(
        "--replay", metavar="JSONL", help="replay data frames from a recorded JSONL file"
    )
    parser.add_argument("--trace", metavar="FILE", help="write the trace as JSONL here on exit")
    parser.set_defaults(func=run)


def _free_ports(args: argparse.Namespace) -> None:
    """``--ports 0``: every port of both mocks is a free one."""
    if args.ports == 0:
        args.rest_port = args.ws_port = args.kiwoom_rest_port = args.kiwoom_ws_port = 0


def _config(args: argparse.Namespace) -> MockConfig:
    from dataclasses import replace

    from stockmon.mockserver.config import MockConfig, is_loopback
    from stockmon.mockserver.kis.profile import load_profile

    # Off loopback the control plane (faults, /_mock/env with the secrets) needs a token: one for
    # both brokers' mocks, printed once in the banner.
    token = None if is_loopback(args.host) else secrets.token_urlsafe(24)
    config = MockConfig(
        spec_version=args.spec,
        host=args.host,
        rest_port=args.rest_port,
        ws_port=args.ws_port,
        seed=args.seed,
        time_scale=args.time_scale,
        market=args.market,
        scenario=args.scenario,
        replay_path=args.replay,
        trace_limit=CLI_TRACE_LIMIT,
        control_token=token,
    )
    if args.symbols:
        profile = load_profile(args.spec)
        symbols = tuple(s.strip() for s in args.symbols.split(",") if s.strip())
        bad = [s for s in symbols if profile.spec.market_of(s) is None]
        if bad:
            raise UsageError(
                f"--symbols: {', '.join(bad)} match no market key pattern (e.g. 005930, DNASAAPL)"
            )
        config = replace(config, symbols=symbols)
    if args.tick_rate is not None:
        config = replace(config, tick_rate_hz=args.tick_rate)
    return config


def _kiwoom_config(args: argparse.Namespace, config: MockConfig) -> KiwoomMockConfig | None:
    from stockmon.mockserver.config import KiwoomMockConfig

    if args.no_kiwoom:
        return None
    return KiwoomMockConfig.beside(
        config,
        rest_port=args.kiwoom_rest_port,
        ws_port=args.kiwoom_ws_port,
        env=args.kiwoom_env,
        tick_rate_hz=config.tick_rate_hz,
        scenario=config.scenario,
    )


def run(args: argparse.Namespace) -> int:
    """Run until Ctrl-C or SIGTERM; returns the exit code."""
    _free_ports(args)
    config = _config(args)
    if config.scenario is not None:
        from stockmon.mockserver.scenario import load_scenario

        load_scenario(str(config.scenario))  # fail before binding anything
    kiwoom = _kiwoom_config(args, config)
    trace_file: TextIO | None = None
    if args.trace:
        try:  # opened now: a missing directory or a read-only disk fails at start, not at exit
            trace_file = Path(args.trace).open("w", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        except OSError as exc:
            raise UsageError(
                f"cannot write the trace to {args.trace}: {exc.strerror}; pick a writable --trace FILE"
            ) from None
    try:
        return asyncio.run(_serve(config, args.trace, kiwoom, trace_file))
    except KeyboardInterrupt:
        return 0
    finally:
        if trace_file is not None:
            trace_file.close()


async def _serve(
    config: MockConfig,
    trace_path: str | None,
    kiwoom_config: KiwoomMockConfig | None = None,
    trace_file: TextIO | None = None,
) -> int:
    from stockmon.mockserver.kis.mock import KisMock
    from stockmon.mockserver.kiwoom.mock import KiwoomMock

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    mock = KisMock(config)
    await _start(mock.start)
    kiwoom: KiwoomMock | None = None
    try:
        if kiwoom_config is not None:
            kiwoom = KiwoomMock(kiwoom_config, beside=mock)
            await _start(kiwoom.start)
        _banner(mock, kiwoom)
        await stop.wait()
    finally:
        if kiwoom is not None:
            await kiwoom.stop()
        await mock.stop()
        if trace_path:
            try:
                n = mock.trace.to_jsonl(trace_file if trace_file is not None else trace_path)
            except OSError as exc:  # a full disk: say so, the mock still stops cleanly
                print(f"could not write the trace to {trace_path}: {exc.strerror}", file=sys.stderr)
            else:
                print(f"wrote {n} trace records to {trace_path}", file=sys.stderr)
        print("stockmon mock: stopped", file=sys.stderr)
    return 0


async def _start(start: Callable[[], Awaitable[None]]) -> None:
    """Start one mock; a port clash says which flag moves it."""
    from stockmon.mockserver.errors import MockConfigError

    try:
        await start()
    except MockConfigError as exc:
        if "in use" not in str(exc):
            raise
        raise MockConfigError(
            f"{exc} (another stockmon mock running? '--ports 0' takes free ports for all four)"
        ) from None


def _banner(mock: KisMock, kiwoom: KiwoomMock | None = None) -> None:
    c = mock.config
    who = "KIS and Kiwoom stand-ins" if kiwoom is not None else "KIS stand-in"
    lines = [
        f"stockmon mock — {who}, spec {c.spec_version}, seed {c.seed}, time scale {c.time_scale:g}",
        "  market      "
        + ", ".join(
            f"{m} {st}"
            for m, st in mock.world.sim.market_states(mock.world.wall(mock.now())).items()
        )
        + f" (--market {c.market})",
        f"  KIS REST    {mock.rest_url}",
        f"  KIS WS      {mock.ws_url}",
        f"  control     {mock.rest_url}/_mock/state  (POST /_mock/faults/<name>, GET /_mock/trace)",
        f"  app key     {mock.app_key}  ({len(mock.app_key)} chars, test credential)",
        f"  app secret  {len(mock.app_secret)} chars, in the exports below",
    ]
    env = dict(mock.env())
    if kiwoom is not None:
        lines += [
            f"  Kiwoom REST {kiwoom.rest_url}  (env {kiwoom.env_name}: LOGIN token "
            f"{'required' if kiwoom.world.settings.token_required else 'optional'})",
            f"  Kiwoom WS   {kiwoom.ws_url}",
            f"  control     {kiwoom.rest_url}/_mock/state  (Kiwoom faults under /_mock/faults/)",
        ]
        env.update(kiwoom.env())
    hint = (
        " (with KIWOOM_APP_KEY set, stockmon stream runs KIS with the Kiwoom failover;"
        " STOCKMON_BROKER=kis|kiwoom|auto chooses)"
        if kiwoom is not None
        else ""
    )
    if c.control_token is not None:
        print(
            f"warning: listening on {c.host}, not loopback: anyone who can reach these ports can "
            "stream and call the REST side. The control plane (/_mock/*) needs the header\n"
            f"  authorization: Bearer {c.control_token}",
            file=sys.stderr,
            flush=True,
        )
    lines += ["", f"# paste into your shell{hint}:"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    lines += ["", "Ctrl-C to stop."]
    print("\n".join(lines), flush=True)
