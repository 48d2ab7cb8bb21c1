"""Fault injection, on demand: the Python face of the mock's misbehaviour (briefs/trace_contract.md).

Every method records a ``fault`` trace event with its parameters and is safe to call from any
thread: off the mock's loop it is handed to the loop and waits until applied. Durations are spec
seconds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stockmon.errors import SpecError
from stockmon.mockserver.errors import MockConfigError
from stockmon.mockserver.state import SubscribeError

if TYPE_CHECKING:
    from stockmon.mockserver.server import KisMock

MALFORMED_KINDS = ("truncated", "garbage", "bad_count")


class Faults:
    """Fault switches of one running mock (``mock.faults``)."""

    # Names accepted by the HTTP control plane and scenario files.
    NAMES = (
        "drop_socket",
        "close_socket",
        "stall",
        "next_subscribe_error",
        "fail_rest",
        "expire_tokens",
        "revoke_tokens",
        "revoke_approvals",
        "throttle_tokens",
        "delay_rest",
        "malformed_frames",
        "refuse_connections",
        "server_ping_now",
    )

    def __init__(self, mock: KisMock) -> None:
        self._mock = mock

    def _apply(self, name: str, params: dict[str, Any], fn: Callable[[], Any]) -> Any:
        mock = self._mock
        loop = mock.loop

        def run() -> Any:
            mock.world.trace.record("mock", "mock", "event", "fault", name=name, params=params)
            result = fn()
            mock.wake_all()
            return result

        if loop is None or loop.is_closed():
            raise MockConfigError("the mock is not running")
        if threading.get_ident() == mock.loop_thread_id:
            return run()

        async def in_loop() -> Any:
            return run()

        return asyncio.run_coroutine_threadsafe(in_loop(), loop).result(timeout=10)

    def drop_socket(self, conn: str | None = None) -> int:
        """Abrupt TCP close (no close frame) of one WS session or all; returns how many."""
        return int(self._apply("drop_socket", {"conn": conn}, lambda: self._mock.drop(conn)))

    def close_socket(
        self, code: int = 1011, reason: str = "mock fault", conn: str | None = None
    ) -> int:
        """Close one WS session or all with a close frame; returns how many."""
        if not (1000 <= int(code) <= 4999):
            raise MockConfigError(f"close code must be 1000..4999, got {code!r}")
        return int(
            self._apply(
                "close_socket",
                {"code": code, "reason": reason, "conn": conn},
                lambda: self._mock.close_sessions(int(code), str(reason), conn),
            )
        )

    def stall(self, seconds: float) -> None:
        """Send nothing on any session (pings included) for ``seconds`` spec seconds."""
        seconds = float(seconds)
        if seconds < 0:
            raise MockConfigError("stall seconds must be >= 0")

        def fn() -> None:
            self._mock.world.faults.stall_until = self._mock.now() + seconds

        self._apply("stall", {"seconds": seconds}, fn)

    def next_subscribe_error(
        self, code: str | None = None, tr_key: str | None = None, count: int = 1
    ) -> None:
        """Answer the next ``count`` subscribes (of ``tr_key``, or any) with ``code``.

        The default is the profile's already-subscribed code (OPSP0002 in the spec).
        """
        if code is None:
            code = self._mock.profile.ws_code("already_subscribed").code
        try:
            self._mock.profile.spec.ws_code(code)
        except SpecError as exc:
            raise MockConfigError(str(exc)) from None
        if count < 1:
            raise MockConfigError("count must be >= 1")

        def fn() -> None:
            self._mock.world.faults.subscribe_errors.append(
                SubscribeError(code, tr_key, int(count))
            )

        self._apply("next_subscribe_error", {"code": code, "tr_key": tr_key, "count": count}, fn)

    def fail_rest(self, n: int = 1, code: str | None = None) -> None:
        """The next ``n`` authenticated REST calls fail with ``code`` (default: profile auth code)."""
        if code is not None:
            try:
                self._mock.profile.rest_msg(code)
            except SpecError as exc:
                raise MockConfigError(str(exc)) from None
        if n < 0:
            raise MockConfigError("n must be >= 0")

        def fn() -> None:
            f = self._mock.world.faults
            f.rest_failures, f.rest_failure_code = int(n), code

        self._apply("fail_rest", {"n": n, "code": code}, fn)

    def expire_tokens(self) -> int:
        """Every issued token is expired from now on; returns how many changed."""
        return int(
            self._apply(
                "expire_tokens", {}, lambda: self._mock.world.auth.expire_all(self._mock.now())
            )
        )

    def revoke_tokens(self) -> int:
        """Every issued token is revoked; returns how many."""
        return int(self._apply("revoke_tokens", {}, self._mock.world.auth.revoke_all))

    def revoke_approvals(self) -> int:
        """Forget every WS approval key (next subscribe gets the invalid-approval code)."""
        return int(self._apply("revoke_approvals", {}, self._mock.world.auth.revoke_approvals))

    def throttle_tokens(self, on: bool | None = True) -> None:
        """Force the token issuance throttle on or off (None = back to the profile)."""

        def fn() -> None:
            self._mock.world.faults.throttle_override = on

        self._apply("throttle_tokens", {"on": on}, fn)

    def delay_rest(self, seconds: float, n: int | None = None) -> None:
        """Hold REST responses ``seconds`` spec seconds (the next ``n``, or all until reset to 0)."""
        if seconds < 0:
            raise MockConfigError("delay seconds must be >= 0")

        def fn() -> None:
            f = self._mock.world.faults
            f.rest_delay_s, f.rest_delay_remaining = float(seconds), n

        self._apply("delay_rest", {"seconds": seconds, "n": n}, fn)

    def malformed_frames(self, n: int = 1, kind: str = "truncated") -> None:
        """Corrupt the next ``n`` data frames: truncated, garbage or bad_count."""
        if kind not in MALFORMED_KINDS:
            raise MockConfigError(f"kind must be one of {', '.join(MALFORMED_KINDS)}, got {kind!r}")

        def fn() -> None:
            self._mock.world.faults.malformed.extend([kind] * int(n))

        self._apply("malformed_frames", {"n": n, "kind": kind}, fn)

    def refuse_connections(self, on: bool = True) -> None:
        """Refuse new WebSocket handshakes (HTTP 503) while on."""

        def fn() -> None:
            self._mock.world.faults.refuse_connections = bool(on)

        self._apply("refuse_connections", {"on": on}, fn)

    def server_ping_now(self) -> int:
        """Send a server PINGPONG on every session now; returns how many sessions."""
        return int(self._apply("server_ping_now", {}, self._mock.ping_all))

    def clear(self) -> None:
        """Switch every pending fault off (sockets already dropped stay dropped)."""

        def fn() -> None:
            from stockmon.mockserver.state import FaultState

            self._mock.world.faults = FaultState()

        self._apply("clear", {}, fn)

    def apply(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """Apply a fault by name (control plane, scenarios); MockConfigError if unknown/bad."""
        if name not in self.NAMES and name != "clear":
            raise MockConfigError(f"unknown fault {name!r}; known: {', '.join(self.NAMES)}")
        try:
            return getattr(self, name)(**(params or {}))
        except TypeError as exc:
            raise MockConfigError(f"bad parameters for fault {name}: {exc}") from None
