"""The broker registry: every dialect the reference speaks, and the STOCKMON_BROKER modes built on them.

A :class:`Broker` entry says what the CLI needs to know about a dialect: its settings (credentials
and URL variables, checked before anything is contacted), the seams a stream needs (credential source
and connect gate, :mod:`stockmon.reference.wiring`) and how its sans-I/O core is built. The one shell
(:class:`~stockmon.reference.shell.StreamClient`) runs any of them. A :class:`Mode` is what
STOCKMON_BROKER selects: one broker alone, or KIS with the Kiwoom failover (``auto``). A third broker
is a new dialect subfolder plus one entry here.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace

import websockets
from websockets.uri import parse_uri

from stockmon.clock import ScaledClock
from stockmon.errors import SettingsError
from stockmon.reference.failover.runner import Client, FailoverStream
from stockmon.reference.httpclient import HttpClient, InvalidUrl, parse_url
from stockmon.reference.kis.session import SessionCore
from stockmon.reference.kiwoom.session import KiwoomSessionCore
from stockmon.reference.lifecycle import SessionLifecycle
from stockmon.reference.output import EventSink
from stockmon.reference.rest import new_http
from stockmon.reference.seams import ConnectGate, CredentialSource
from stockmon.reference.shell import Outcome, StreamClient
from stockmon.reference.wiring import check_kiwoom, kis_seams, kiwoom_seams
from stockmon.settings import Settings, Subscription, load_settings, parse_subscriptions

# What to stream when STOCKMON_SUBSCRIPTIONS is unset: one KR and one US tick. Not normative.
DEFAULT_SUBSCRIPTIONS = "H0STCNT0:005930,HDFSCNT0:DNASAAPL"

# Real seconds a Kiwoom LOGIN may wait for its reply (the server sometimes closes during the
# handshake without one, protocol/kiwoom.md §5). Not normative.
LOGIN_TIMEOUT_REAL_S = 10.0

SeamsFactory = Callable[
    [Settings, HttpClient, ScaledClock, EventSink, bool],
    AbstractAsyncContextManager[tuple[CredentialSource, ConnectGate]],
]


@dataclass(frozen=True)
class Broker:
    """One dialect as the CLI sees it."""

    name: str
    ws_url_variable: str
    rest_url_variable: str
    require: Callable[[Settings], None]
    seams: SeamsFactory  # (settings, http, clock, sink, own_gate)
    core: Callable[[Settings, ScaledClock], SessionLifecycle]

    def check_urls(self, settings: Settings) -> None:
        """A malformed URL is a one-line SettingsError (exit 2) now, not a retry loop later."""
        ws = _setting(settings, self.ws_url_variable)
        try:
            parse_uri(ws)
        except (websockets.InvalidURI, ValueError) as exc:
            raise SettingsError(
                f"{self.ws_url_variable}={ws!r} is not a WebSocket URL: {exc}"
            ) from None
        rest = _setting(settings, self.rest_url_variable)
        try:
            parse_url(rest)  # the REST client's own URL parser
        except InvalidUrl as exc:
            raise SettingsError(f"{self.rest_url_variable}={rest!r} is not a URL: {exc}") from None

    def client(
        self,
        settings: Settings,
        clock: ScaledClock,
        credentials: CredentialSource,
        gate: ConnectGate,
        sink: EventSink,
        on_outcome: Callable[[Outcome], None] | None = None,
        subscriptions: Sequence[Subscription] | None = None,
    ) -> StreamClient:
        """This broker's core in the one shell (for ``subscriptions``, else the settings' ones)."""
        return StreamClient(
            core=self.core(settings, clock),
            ws_url=_setting(settings, self.ws_url_variable),
            url_variable=self.ws_url_variable,
            subscriptions=settings.subscriptions if subscriptions is None else subscriptions,
            credentials=credentials,
            clock=clock,
            sink=sink,
            gate=gate,
            on_outcome=on_outcome,
        )


def _setting(settings: Settings, variable: str) -> str:
    value = getattr(settings, variable.lower())
    assert isinstance(value, str)
    return value


def _require_kis(settings: Settings) -> None:
    settings.require_kis()


def _kiwoom_core(settings: Settings, clock: ScaledClock) -> SessionLifecycle:
    login_timeout = LOGIN_TIMEOUT_REAL_S / clock.to_real(1.0)
    return KiwoomSessionCore(settings.spec, env=settings.env, login_timeout_s=login_timeout)


KIS = Broker(
    name="kis",
    ws_url_variable="KIS_WS_URL",
    rest_url_variable="KIS_REST_URL",
    require=_require_kis,
    seams=kis_seams,
    core=lambda settings, clock: SessionCore(settings.spec),
)
KIWOOM = Broker(
    name="kiwoom",
    ws_url_variable="KIWOOM_WS_URL",
    rest_url_variable="KIWOOM_REST_URL",
    require=check_kiwoom,
    seams=kiwoom_seams,
    core=_kiwoom_core,
)
BROKERS: dict[str, Broker] = {b.name: b for b in (KIS, KIWOOM)}


@dataclass(frozen=True)
class Mode:
    """What STOCKMON_BROKER selects: ``brokers[0]`` streams; a second one is its failover backup."""

    name: str
    brokers: tuple[Broker, ...]

    def check(self, settings: Settings) -> None:
        """Every broker's settings, before anything is contacted."""
        for broker in self.brokers:
            broker.require(settings)
        for broker in self.brokers:
            broker.check_urls(settings)

    async def run(
        self,
        settings: Settings,
        clock: ScaledClock,
        sink: EventSink,
        started: Callable[[Client], None],
    ) -> None:
        """Stream until the client ``started`` is handed is stopped."""
        async with new_http() as http, contextlib.AsyncExitStack() as stack:
            primary, *backup = self.brokers
            seams = primary.seams(settings, http, clock, sink, True)
            credentials, gate = await stack.enter_async_context(seams)
            runner: Client
            if not backup:
                runner = primary.client(settings, clock, credentials, gate, sink)
            else:
                (second,) = backup
                # one gate for both brokers: the primary's socket lease (or the single-process gate)
                shared = second.seams(settings, http, clock, sink, False)
                backup_credentials, _ = await stack.enter_async_context(shared)
                runner = FailoverStream(
                    spec=settings.spec,
                    clock=clock,
                    sink=sink,
                    make_kis=lambda s, o, subs: primary.client(
                        settings, clock, credentials, gate, s, o, subs
                    ),
                    make_kiwoom=lambda s, o, subs: second.client(
                        settings, clock, backup_credentials, gate, s, o, subs
                    ),
                    subscriptions=settings.subscriptions,
                )
            started(runner)
            await runner.run()


MODES: dict[str, Mode] = {
    "kis": Mode("kis", (KIS,)),
    "kiwoom": Mode("kiwoom", (KIWOOM,)),
    "auto": Mode("auto", (KIS, KIWOOM)),  # KIS with the Kiwoom failover (FAILOVER-KIWOOM)
}


def mode_of(settings: Settings) -> Mode:
    """The mode STOCKMON_BROKER names (settings validated the name)."""
    try:
        return MODES[settings.broker]
    except KeyError:
        raise SettingsError(
            f"STOCKMON_BROKER={settings.broker!r} is not one of {sorted(MODES)}"
        ) from None


def checked_settings(command: str) -> tuple[Mode, Settings]:
    """The mode and settings every ingest command runs with (``stockmon stream``, ``stockmon serve``).

    Every variable is checked before anything is contacted (a SettingsError is the one-line exit 2);
    without STOCKMON_SUBSCRIPTIONS (``stockmon mock`` exports none) it streams the default pair.
    """
    settings = load_settings()
    mode = mode_of(settings)
    mode.check(settings)
    if not settings.subscriptions:
        settings = replace(
            settings, subscriptions=parse_subscriptions(DEFAULT_SUBSCRIPTIONS, settings.spec)
        )
        if sys.stderr.isatty():  # a notice for a person; pipelines and logs get the data only
            print(
                f"stockmon {command}: STOCKMON_SUBSCRIPTIONS is not set; "
                f"streaming {DEFAULT_SUBSCRIPTIONS}",
                file=sys.stderr,
            )
    return mode, settings


__all__ = [
    "BROKERS",
    "DEFAULT_SUBSCRIPTIONS",
    "KIS",
    "KIWOOM",
    "LOGIN_TIMEOUT_REAL_S",
    "MODES",
    "Broker",
    "Mode",
    "checked_settings",
    "mode_of",
]
