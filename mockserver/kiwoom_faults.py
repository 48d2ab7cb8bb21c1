"""Fault injection on the Kiwoom mock: the KIS mock's fault API, with Kiwoom's codes and frames.

Same contract as :class:`~stockmon.mockserver.faults.Faults` (thread-safe, each call traced as a
``fault`` record, durations in spec seconds); the records carry ``broker: kiwoom`` and the conn
``kiwoom-mock`` so a trace shared with the KIS mock tells the two brokers' faults apart.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stockmon.mockserver.errors import MockConfigError
from stockmon.mockserver.faults import Faults
from stockmon.mockserver.kiwoom_session import MALFORMED_KINDS
from stockmon.mockserver.kiwoom_state import CONN_PREFIX
from stockmon.mockserver.state import SubscribeError

if TYPE_CHECKING:
    from stockmon.mockserver.kiwoom_server import KiwoomMock

MOCK_CONN = f"{CONN_PREFIX}mock"


class KiwoomFaults(Faults):
    """Fault switches of one running Kiwoom mock (``kiwoom_mock.faults``)."""

    NAMES = (
        "drop_socket",
        "close_socket",
        "stall",
        "next_subscribe_error",
        "fail_rest",
        "expire_tokens",
        "revoke_tokens",
        "throttle_tokens",
        "delay_rest",
        "malformed_frames",
        "refuse_connections",
        "server_ping_now",
        "system_now",
    )

    def __init__(self, mock: KiwoomMock) -> None:
        super().__init__(mock)  # type: ignore[arg-type]  # the same surface, duck-typed
        self._kmock = mock

    def _apply(self, name: str, params: dict[str, Any], fn: Callable[[], Any]) -> Any:
        mock = self._kmock
        loop = mock.loop

        def run() -> Any:
            mock.world.record("mock", MOCK_CONN, "event", "fault", name=name, params=params)
            result = fn()
            mock.wake_all()
            return result

        if loop is None or loop.is_closed():
            raise MockConfigError("the Kiwoom mock is not running")
        if threading.get_ident() == mock.loop_thread_id:
            return run()

        async def in_loop() -> Any:
            return run()

        return asyncio.run_coroutine_threadsafe(in_loop(), loop).result(timeout=10)

    def next_subscribe_error(
        self, code: str | None = None, tr_key: str | None = None, count: int = 1
    ) -> None:
        """Answer the next ``count`` REG/REMOVE (of item ``tr_key``, or any) with the REG failure."""
        if count < 1:
            raise MockConfigError("count must be >= 1")
        failure = str(self._kmock.profile.reg_failure_code)

        def fn() -> None:
            self._kmock.world.faults.subscribe_errors.append(
                SubscribeError(failure, tr_key, int(count))
            )

        self._apply("next_subscribe_error", {"tr_key": tr_key, "count": count}, fn)

    def fail_rest(self, n: int = 1, code: str | None = None) -> None:
        """The next ``n`` authenticated REST calls fail with ``code`` (a 4-digit Kiwoom code of
        the profile's REST errors; default the invalid-token answer, HTTP 200 + ``[8005:...]``)."""
        if code is not None and self._kmock.profile.rest_error_by_code(str(code)) is None:
            known = ", ".join(e.code for e in self._kmock.profile.rest_errors.values())
            raise MockConfigError(f"unknown Kiwoom REST code {code!r}; known: {known}")
        if n < 0:
            raise MockConfigError("n must be >= 0")

        def fn() -> None:
            f = self._kmock.world.faults
            f.rest_failures, f.rest_failure_code = int(n), None if code is None else str(code)

        self._apply("fail_rest", {"n": n, "code": code}, fn)

    def malformed_frames(self, n: int = 1, kind: str = "truncated") -> None:
        """Corrupt the next ``n`` REAL frames: truncated, garbage, or bad_value (a FID value)."""
        if kind not in MALFORMED_KINDS:
            raise MockConfigError(f"kind must be one of {', '.join(MALFORMED_KINDS)}, got {kind!r}")

        def fn() -> None:
            self._kmock.world.faults.malformed.extend([kind] * int(n))

        self._apply("malformed_frames", {"n": n, "kind": kind}, fn)

    def system_now(self, code: str = "replaced_by_new_login", close: bool = True) -> int:
        """Send a SYSTEM frame (a KIWOOM-PROTOCOL ``system_codes`` name or its code) on every
        session, and close them unless ``close`` is false; returns how many sessions."""
        codes = self._kmock.profile.system_codes
        name = code if code in codes else next((k for k, v in codes.items() if v == code), None)
        if name is None:
            raise MockConfigError(f"unknown SYSTEM code {code!r}; known: {', '.join(codes)}")
        return int(
            self._apply(
                "system_now",
                {"code": codes[name], "close": close},
                lambda: self._kmock.system_all(name, bool(close)),
            )
        )
