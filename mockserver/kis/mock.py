"""KisMock: the KIS dialect of the mock-server base, its fault set, and MockThread.

The base (:mod:`~stockmon.mockserver.server`) owns sockets and time; this module says what is KIS
about a run: the profile, world, REST app and session core, the ``KIS_*`` exports, the KIS faults.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from stockmon.errors import SpecError
from stockmon.mockserver.config import MockConfig
from stockmon.mockserver.errors import MockConfigError
from stockmon.mockserver.faults import Faults, MockProtocol
from stockmon.mockserver.kis.profile import Profile, load_profile
from stockmon.mockserver.kis.rest import RestApp
from stockmon.mockserver.kis.session import ServerSession
from stockmon.mockserver.kis.state import World
from stockmon.mockserver.server import MockServer
from stockmon.mockserver.threaded import BackgroundMock
from stockmon.mockserver.trace import Trace


class KisFaults(Faults):
    """The fault set with KIS's codes and frames, plus ``revoke_approvals``."""

    NAMES = (*Faults.NAMES, "revoke_approvals")
    MALFORMED_KINDS = ("truncated", "garbage", "bad_count")

    def __init__(self, mock: MockProtocol, world: World) -> None:
        super().__init__(mock)
        self._kis = world

    def _subscribe_error(
        self, code: str | None, tr_key: str | None, count: int
    ) -> tuple[str, dict[str, Any]]:
        profile = self._kis.profile
        code = code or profile.ws_code("already_subscribed").code
        _known(profile.spec.ws_code, code)
        return code, {"code": code, "tr_key": tr_key, "count": count}

    def _rest_failure_code(self, code: str | None) -> str | None:
        if code is not None:
            _known(self._kis.profile.rest_msg, code)
        return code

    def revoke_approvals(self) -> int:
        """Forget every WS approval key (next subscribe gets the invalid-approval code)."""
        return int(self._apply("revoke_approvals", {}, self._kis.auth.revoke_approvals))


def _known(lookup: Callable[[str], object], code: str) -> None:
    """MockConfigError (one line) unless the spec knows ``code``."""
    try:
        lookup(code)
    except SpecError as exc:
        raise MockConfigError(str(exc)) from None


class KisMock(MockServer[ServerSession]):
    """A running KIS mock: ``async with KisMock(config) as mock: ...``."""

    def __init__(self, config: MockConfig | None = None, **overrides: Any) -> None:
        config = config or MockConfig()
        if overrides:
            config = replace(config, **overrides)
        super().__init__(
            Trace(config.time_scale, config.trace_limit, max_bytes=config.trace_max_bytes)
        )
        self.config: MockConfig = config
        self.profile: Profile = load_profile(config.spec_version)
        self.world: World = World(config, self.profile, self.trace, wall0=time.time())
        self.rest = RestApp(self.world)
        self.faults: KisFaults = KisFaults(self, self.world)

    @property
    def unanswered_pingpong_grace_s(self) -> float | None:
        """How long this run lets a server PINGPONG go unanswered before it drops the socket."""
        return self.world.session_settings.unanswered_pingpong_grace_s

    @property
    def server_pingpong_period_s(self) -> float | None:
        """How often the server sends its own PINGPONG (spec s; None or 0: never), as configured."""
        return self.world.session_settings.server_pingpong_period_s

    def env(self) -> dict[str, str]:
        """The environment an implementation needs to use this mock (DESIGN §4)."""
        return {
            "KIS_APP_KEY": self.app_key,
            "KIS_APP_SECRET": self.app_secret,
            "KIS_REST_URL": self.rest_url,
            "KIS_WS_URL": self.ws_url,
            "STOCKMON_ENV": "mock",
            "STOCKMON_SPEC_VERSION": self.config.spec_version,
            "STOCKMON_TIME_SCALE": f"{self.config.time_scale:g}",
        }

    def _new_session(self, conn: str, now: float) -> ServerSession:
        return ServerSession(self.world, conn, now)

    def _state(self) -> dict[str, Any]:
        state, f = super()._state(), self.world.faults
        state["trace_records"] = self.trace.last_seq
        state["faults"].update(
            subscribe_errors=[
                {"code": e.code, "tr_key": e.tr_key, "remaining": e.remaining}
                for e in f.subscribe_errors
            ],
            rest_delay_s=f.rest_delay_s,
            malformed_pending=len(f.malformed),
        )
        return state


class MockThread(BackgroundMock[KisMock]):
    """Runs a KisMock on its own event loop in a background thread (for synchronous users)."""

    def __init__(self, config: MockConfig | None = None, **overrides: Any) -> None:
        super().__init__(lambda: KisMock(config, **overrides), "kis")
