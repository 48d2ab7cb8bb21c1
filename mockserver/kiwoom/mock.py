"""KiwoomMock: the Kiwoom dialect of the mock-server base, its fault set, and its thread.

Alone (``KiwoomMock(config)``) it has its own trace and simulator. Beside another mock
(``KiwoomMock(config, beside=kis_mock)``, started on the same event loop) it shares that mock's
trace, market simulator and wall clock: one trace then orders every socket of both brokers (the
evidence for "never two sockets", WS-SINGLE-SOCKET), and a KR code trades at the same prices on both.
Kiwoom records carry ``broker: "kiwoom"`` and conn ids ``kiwoom-ws-N`` / ``kiwoom-rest-N``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from stockmon.mockserver.config import KiwoomMockConfig
from stockmon.mockserver.errors import MockConfigError
from stockmon.mockserver.faults import Faults, MockProtocol
from stockmon.mockserver.kiwoom.market import KiwoomMarket
from stockmon.mockserver.kiwoom.profile import KiwoomProfile, load_kiwoom_profile
from stockmon.mockserver.kiwoom.rest import KiwoomRestApp
from stockmon.mockserver.kiwoom.session import MALFORMED_KINDS, KiwoomServerSession
from stockmon.mockserver.kiwoom.state import KiwoomWorld
from stockmon.mockserver.server import MockServer
from stockmon.mockserver.simulator import MarketSimulator
from stockmon.mockserver.threaded import BackgroundMock
from stockmon.mockserver.trace import Trace
from stockmon.spec import load_spec

# Status of a WebSocket handshake on a path other than the domestic socket's. Non-normative.
NOT_FOUND_STATUS = 404


class KiwoomFaults(Faults):
    """The fault set with Kiwoom's codes and frames, plus ``system_now``."""

    NAMES = (*Faults.NAMES, "system_now")
    MALFORMED_KINDS = MALFORMED_KINDS

    def __init__(self, mock: MockProtocol, kiwoom: KiwoomMock) -> None:
        super().__init__(mock)
        self._kiwoom = kiwoom

    def _subscribe_error(
        self, code: str | None, tr_key: str | None, count: int
    ) -> tuple[str, dict[str, Any]]:
        # Kiwoom has one REG failure answer, whatever code was asked for.
        return str(self._kiwoom.profile.reg_failure_code), {"tr_key": tr_key, "count": count}

    def _rest_failure_code(self, code: str | None) -> str | None:
        """A 4-digit Kiwoom code of the profile's REST errors (default: the invalid-token answer,
        HTTP 200 + ``[8005:...]``)."""
        profile = self._kiwoom.profile
        if code is not None and profile.rest_error_by_code(code) is None:
            known = ", ".join(e.code for e in profile.rest_errors.values())
            raise MockConfigError(f"unknown Kiwoom REST code {code!r}; known: {known}")
        return code

    def system_now(self, code: str = "replaced_by_new_login", close: bool = True) -> int:
        """Send a SYSTEM frame (a KIWOOM-PROTOCOL ``system_codes`` name or its code) on every
        session, and close them unless ``close`` is false; returns how many sessions."""
        codes = self._kiwoom.profile.system_codes
        name = code if code in codes else next((k for k, v in codes.items() if v == code), None)
        if name is None:
            raise MockConfigError(f"unknown SYSTEM code {code!r}; known: {', '.join(codes)}")
        return int(
            self._apply(
                "system_now",
                {"code": codes[name], "close": close},
                lambda: self._kiwoom.system_all(name, bool(close)),
            )
        )


class KiwoomMock(MockServer[KiwoomServerSession]):
    """A running Kiwoom mock: ``async with KiwoomMock(config) as mock: ...``."""

    broker = "kiwoom"

    def __init__(
        self,
        config: KiwoomMockConfig | None = None,
        *,
        beside: MockServer[Any] | None = None,
        **overrides: Any,
    ) -> None:
        config = config or KiwoomMockConfig()
        if overrides:
            config = replace(config, **overrides)
        if beside is not None:
            if beside.config.time_scale != config.time_scale:
                raise MockConfigError(
                    f"the Kiwoom mock's time_scale ({config.time_scale:g}) must equal the KIS "
                    f"mock's ({beside.config.time_scale:g}) when they share a trace"
                )
            trace, sim, wall0 = beside.trace, beside.world.sim, beside.world.wall0
        else:
            trace = Trace(config.time_scale, config.trace_limit, max_bytes=config.trace_max_bytes)
            sim = MarketSimulator(
                load_spec(config.spec_version),
                config.seed,
                config.symbols,
                market_hours=config.market == "hours",
            )
            wall0 = time.time()
        super().__init__(trace)
        self.config: KiwoomMockConfig = config
        self.profile: KiwoomProfile = load_kiwoom_profile(config.spec_version)
        self.world: KiwoomWorld = KiwoomWorld(config, self.profile, trace, sim, wall0)
        self.world.evict = self._evict
        self.market = KiwoomMarket(self.profile, sim)
        self.rest = KiwoomRestApp(self.world, self.market)
        self.faults: KiwoomFaults = KiwoomFaults(self, self)

    @property
    def ws_url(self) -> str:
        """Full URL of the domestic WebSocket (path included, as KIWOOM_WS_URL wants it)."""
        return f"{super().ws_url}{self.profile.ws_path}"

    @property
    def env_name(self) -> str:
        """The Kiwoom environment this run emulates: ``mock`` (token optional) or ``prod``."""
        return self.world.settings.env

    @property
    def token_required(self) -> bool:
        """Whether LOGIN must carry a valid token in this run (TOKEN-KIWOOM-SESSION)."""
        return self.world.settings.token_required

    def env(self) -> dict[str, str]:
        """The KIWOOM_* environment an implementation needs to use this mock (DESIGN §4)."""
        return {
            "KIWOOM_APP_KEY": self.app_key,
            "KIWOOM_APP_SECRET": self.app_secret,
            "KIWOOM_REST_URL": self.rest_url,
            "KIWOOM_WS_URL": self.ws_url,
        }

    def system_all(self, name: str, close: bool) -> int:
        """Queue a SYSTEM frame (and a close) on every session."""
        now = self.now()
        for live in self._live.values():
            live.session.system_now(name, now, close)
            live.wake.set()
        return len(self._live)

    def _evict(self, conn: str, now: float) -> None:
        live = self._live.get(conn)
        if live is not None:
            live.session.evict(now)
            live.wake.set()

    def _new_session(self, conn: str, now: float) -> KiwoomServerSession:
        return KiwoomServerSession(self.world, self.market, conn, now)

    def _refuse(self, ws: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] == self.profile.ws_path:
            return None
        self._record_refused(ws, request, NOT_FOUND_STATUS)
        return ws.respond(NOT_FOUND_STATUS, f"the domestic socket is {self.profile.ws_path}\n")

    def _started_fields(self) -> dict[str, Any]:
        return {"env": self.env_name}

    def _state(self) -> dict[str, Any]:
        return {"broker": "kiwoom", "env": self.env_name, **super()._state()}


class KiwoomMockThread(BackgroundMock[KiwoomMock]):
    """Runs a KiwoomMock on its own event loop in a background thread (for synchronous users)."""

    def __init__(self, config: KiwoomMockConfig | None = None, **overrides: Any) -> None:
        super().__init__(lambda: KiwoomMock(config, **overrides), "kiwoom")


def kiwoom_beside(
    kis: MockServer[Any], config: KiwoomMockConfig | None = None, **overrides: Any
) -> KiwoomMock:
    """A Kiwoom mock sharing ``kis``'s trace, simulator and clock (start it on ``kis``'s loop)."""
    return KiwoomMock(config or KiwoomMockConfig.beside(kis.config), beside=kis, **overrides)
