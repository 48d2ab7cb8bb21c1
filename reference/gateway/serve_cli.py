"""``stockmon serve``: the reference ingest and the internal API in one process (DESIGN §8).

The broker client runs exactly as ``stockmon stream`` runs it (the same registry mode and
settings check) with the :class:`~stockmon.reference.gateway.hub.Hub` as its sink, next to a
uvicorn server on the same event loop. SIGTERM or SIGINT closes every stream connection with the
spec's shutdown code, stops the client and lets uvicorn finish within ``shutdown_grace_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn

from stockmon.clock import ScaledClock
from stockmon.errors import SettingsError
from stockmon.reference.failover.runner import Client
from stockmon.reference.fleet.lease import RedisLease
from stockmon.reference.fleet.lease_gate import RedisConnectGate
from stockmon.reference.fleet.redis_conn import connect_redis
from stockmon.reference.fleet.token_manager import default_holder
from stockmon.reference.fleet.token_store import key_prefix
from stockmon.reference.gateway.app import Gateway, build_app, close_all
from stockmon.reference.gateway.fleet import FleetBus
from stockmon.reference.gateway.hub import Hub
from stockmon.reference.registry import Mode, checked_settings
from stockmon.settings import STREAM_VARIABLES, Settings, describe_variables
from stockmon.spec import Spec, latest_version, load_spec

log = logging.getLogger(__name__)

# What serve reads: everything ``stockmon stream`` does, and the internal API's own variables.
SERVE_VARIABLES = (
    "VITE_API_KEY",
    "STOCKMON_API_HOST",
    "STOCKMON_API_PORT",
    "STOCKMON_API_CORS_ORIGINS",
    *STREAM_VARIABLES,
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``stockmon serve`` (defaults: STOCKMON_API_HOST/PORT, else API-SERVICE)."""
    describe_variables(parser, SERVE_VARIABLES)
    service = load_spec(latest_version()).clause("API-SERVICE")
    host_var, port_var = service.string("host_variable"), service.string("port_variable")
    parser.add_argument(
        "--host", help=f"listen address (default: {host_var} or {service.string('host')})"
    )
    parser.add_argument(
        "--port", type=int, help=f"TCP port (default: {port_var} or {service.integer('port')})"
    )
    parser.set_defaults(func=run)


def listen_address(spec: Spec, host: str | None, port: int | None) -> tuple[str, int]:
    """The address to bind: the flag, else the variable, else the clause's default."""
    service = spec.clause("API-SERVICE")
    host = host or os.environ.get(service.string("host_variable"), "").strip()
    host = host or service.string("host")
    if port is None:
        raw = os.environ.get(service.string("port_variable"), "").strip()
        try:
            port = int(raw) if raw else service.integer("port")
        except ValueError:
            raise SettingsError(
                f"{service.string('port_variable')}={raw!r} is not a port number"
            ) from None
    if not 0 <= port <= 65535:
        raise SettingsError(f"port {port} is out of range 0-65535")
    return host, port


def origins(spec: Spec) -> tuple[str, ...]:
    """The CORS origins: STOCKMON_API_CORS_ORIGINS (comma-separated), else the clause's default."""
    cors = spec.clause("API-CORS")
    raw = os.environ.get(cors.string("origins_variable"), "")
    given = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    return given or cors.strings("default_origins")


def check_key(settings: Settings) -> None:
    """STOCKMON_ENV=prod refuses to start without the key (API-AUTH key_required_in)."""
    auth = settings.spec.clause("API-AUTH")
    if settings.vite_api_key is None and settings.env in auth.strings("key_required_in"):
        raise SettingsError(
            f"{auth.string('key_variable')} is not set and STOCKMON_ENV={settings.env}: "
            "export the key the front end will send"
        )


def run(args: argparse.Namespace) -> int:
    """Entry point of the subcommand; returns the exit code."""
    mode, settings = checked_settings("serve")
    spec = settings.spec
    if not spec.has("API-SERVICE"):
        raise SettingsError(
            f"spec {spec.version} has no internal API (API-SERVICE): use STOCKMON_SPEC=1.2 or later"
        )
    check_key(settings)
    host, port = listen_address(spec, args.host, args.port)
    asyncio.run(_main(mode, settings, host, port))
    return 0


class _Server(uvicorn.Server):
    """uvicorn's server that lets the gateway close its streams before uvicorn shuts down.

    uvicorn's own shutdown closes every open WebSocket with 1012; the spec's code must reach the
    clients first, so the first signal runs ``drain`` on the loop and only then asks uvicorn to
    exit. A second signal goes straight to uvicorn (its force exit).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        loop: asyncio.AbstractEventLoop,
        drain: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(config)
        self._loop = loop
        self._drain = drain
        self._draining: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is not None or self.should_exit:
            super().handle_exit(sig, frame)
        else:
            self._loop.call_soon_threadsafe(self._begin_drain, sig, frame)
        # uvicorn re-raises a captured signal once it has stopped; a clean stop exits 0 instead,
        # like `stockmon stream` (the service already closed everything it holds)
        self._captured_signals.clear()

    def _begin_drain(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is None:
            self._draining = self._loop.create_task(self._drain_then_exit(sig, frame))

    async def _drain_then_exit(self, sig: int, frame: FrameType | None) -> None:
        try:
            await self._drain()
        finally:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()


def fleet_prefix(mode: Mode, settings: Settings) -> str | None:
    """The Redis key prefix of the fleet (its primary broker's app key), None without a fleet."""
    if settings.redis_url is None or not settings.spec.has("API-FLEET"):
        return None
    primary = mode.brokers[0].name
    app_key = settings.kis_app_key if primary == "kis" else settings.kiwoom_app_key
    if app_key is None:  # no app key, no socket lease to share (Kiwoom without a token)
        return None
    return key_prefix(settings.env, app_key, primary)


def start_fleet(mode: Mode, settings: Settings, hub: Hub, gw: Gateway) -> FleetBus | None:
    """With REDIS_URL: the bus between the hub and the fleet (API-FLEET), wired both ways."""
    prefix = fleet_prefix(mode, settings)
    if prefix is None or settings.redis_url is None:
        return None

    def holding() -> RedisLease | None:
        gate = getattr(gw.client(), "gate", None)
        if not isinstance(gate, RedisConnectGate) or not gate.held:
            return None
        return gate.lease

    fleet = FleetBus(
        settings.spec,
        hub,
        connect_redis(settings.redis_url),
        prefix,
        default_holder(),  # the socket lease's holder name in this process
        holding,
        mode.brokers[0].name,
    )
    fleet.current_subscriptions = lambda: tuple(gw.subscriptions)
    fleet.apply_subscriptions = gw.apply_subscriptions
    fleet.local_status = gw.status
    fleet.sync_client = gw.sync_client
    hub.bus = fleet
    gw.fleet = fleet
    return fleet


async def _main(mode: Mode, settings: Settings, host: str, port: int) -> None:
    spec = settings.spec
    clock = ScaledClock(settings.time_scale)
    loop = asyncio.get_running_loop()
    hub = Hub(spec, clock.monotonic)
    gw = Gateway(
        spec=spec,
        hub=hub,
        key=settings.vite_api_key,
        origins=origins(spec),
        subscriptions=list(settings.subscriptions),
        broker=mode.brokers[0].name,
        failover=len(mode.brokers) > 1,
        monotonic=time.monotonic,
        ingest_clock=clock.monotonic,
        time_scale=clock.scale,
    )
    runners: list[Client] = []
    stopping: list[bool] = []
    fleet = start_fleet(mode, settings, hub, gw)
    fleet_tasks = (
        [
            loop.create_task(fleet.read_forever(), name="fleet-reader"),
            loop.create_task(fleet.publish_forever(), name="fleet-publisher"),
        ]
        if fleet is not None
        else []
    )

    def started(client: Client) -> None:
        gw.runner = client
        runners.append(client)
        if stopping:
            loop.call_soon(client.stop)
        elif fleet is not None:
            loop.call_soon(gw.sync_client)  # after the client subscribed its initial set

    def stop() -> None:
        stopping.append(True)
        close_all(gw)
        for client in runners:
            client.stop()

    grace = spec.clause("API-SERVICE").number("shutdown_grace_s")
    config = uvicorn.Config(
        build_app(gw),
        host=host,
        port=port,
        log_level="info",
        lifespan="off",
        timeout_graceful_shutdown=int(grace),
        # h11 by choice: httptools is installed (the mocks use it) and would be uvicorn's "auto"
        http="h11",
        ws="websockets-sansio",
    )

    async def drain() -> None:
        # the streams get the spec's close code while uvicorn still serves them; bounded by the
        # grace so a client that never answers the close cannot hold the shutdown
        stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(hub.idle.wait(), grace / 2)

    server = _Server(config, loop, drain)
    ingest = asyncio.create_task(mode.run(settings, clock, hub, started))
    try:
        await server.serve()
    finally:
        stop()
        try:
            await asyncio.wait_for(ingest, timeout=grace)
        except TimeoutError:
            log.warning("the broker client did not stop within %s s", grace)
        for task in fleet_tasks:
            task.cancel()
        await asyncio.gather(*fleet_tasks, return_exceptions=True)
        if fleet is not None:
            await fleet.redis.aclose()
