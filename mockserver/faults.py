"""Fault injection, on demand: the Python face of a mock's misbehaviour (briefs/trace_contract.md).

One fault set for every broker, written against :class:`MockProtocol` (what a running mock
offers); a dialect only says which codes and frame corruptions it knows and adds its own faults
(``kis``: ``revoke_approvals``; ``kiwoom``: ``system_now``). Every method records a ``fault``
trace event with its parameters and is safe to call from any thread: off the mock's loop it is
handed to the loop and waits until applied. Durations are spec seconds.
"""

from __future__ import annotations

import asyncio
import math
import reprlib
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from jsonschema import Draft202012Validator
from websockets.frames import EXTERNAL_CLOSE_CODES

from stockmon.mockserver.config import CommonConfig
from stockmon.mockserver.errors import MockConfigError
from stockmon.mockserver.trace import Trace
from stockmon.mockserver.world import FaultState, SubscribeError, WorldBase

# Non-normative bounds of the control plane: far above any test's need, far below a memory problem.
MAX_FAULT_COUNT = 10_000  # n / count of one fault call
MAX_FAULT_SECONDS = 86_400.0  # spec seconds of one stall or delay
MAX_CLOSE_REASON_BYTES = (
    123  # RFC 6455 §5.5: a control frame's payload is 125 bytes, 2 for the code
)
_CLOSE_CODES = sorted(int(c) for c in EXTERNAL_CLOSE_CODES)

_COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_FAULT_COUNT}
_SECONDS = {"type": "number", "minimum": 0, "maximum": MAX_FAULT_SECONDS}
_CONN = {"type": ["string", "null"], "maxLength": 200}
_CODE = {"type": ["string", "null"], "maxLength": 40}
_SWITCH = {"type": "boolean"}
_NONE: dict[str, Any] = {}

# JSON Schema of each fault's parameters (control plane and scenario files); a dialect adds its own.
FAULT_PARAMS: Mapping[str, Mapping[str, Any]] = {
    "drop_socket": {"conn": _CONN},
    "close_socket": {
        "code": {
            "anyOf": [
                {"type": "integer", "enum": _CLOSE_CODES},
                {"type": "integer", "minimum": 3000, "maximum": 4999},
            ]
        },
        "reason": {"type": "string", "maxLength": MAX_CLOSE_REASON_BYTES},
        "conn": _CONN,
    },
    "stall": {"seconds": _SECONDS},
    "next_subscribe_error": {
        "code": _CODE,
        "tr_key": {"type": ["string", "null"], "maxLength": 40},
        "count": {**_COUNT, "minimum": 1},
    },
    "fail_rest": {"n": _COUNT, "code": _CODE},
    "expire_tokens": _NONE,
    "revoke_tokens": _NONE,
    "throttle_tokens": {"on": {"type": ["boolean", "null"]}},
    "delay_rest": {"seconds": _SECONDS, "n": {**_COUNT, "type": ["integer", "null"]}},
    "malformed_frames": {"n": _COUNT, "kind": {"type": "string"}},
    "refuse_connections": {"on": _SWITCH},
    "server_ping_now": _NONE,
    "clear": _NONE,
    "revoke_approvals": _NONE,
    "system_now": {"code": {"type": ["string", "integer"], "maxLength": 40}, "close": _SWITCH},
}


def _describe(schema: Mapping[str, Any]) -> str:
    """The allowed values of one parameter, for a 400's message."""
    if "anyOf" in schema:
        return " or ".join(_describe(s) for s in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    kinds = schema.get("type")
    text = "/".join(kinds) if isinstance(kinds, list) else str(kinds)
    if "minimum" in schema or "maximum" in schema:
        text += f" in {schema.get('minimum', '-inf')}..{schema.get('maximum', 'inf')}"
    if "maxLength" in schema:
        text += f" of at most {schema['maxLength']} characters"
    return text


def validate_params(name: str, params: Mapping[str, Any]) -> None:
    """MockConfigError naming the field and its allowed range unless ``params`` fit the fault."""
    props = FAULT_PARAMS.get(name)
    if props is None:
        return
    schema = {"type": "object", "properties": props, "additionalProperties": False}
    error = next(iter(Draft202012Validator(schema).iter_errors(dict(params))), None)
    if error is not None:
        field = next((str(p) for p in error.path), None)
        if field is None:  # an unknown parameter
            known = ", ".join(props) or "none"
            raise MockConfigError(f"fault {name}: {error.message}; parameters: {known}")
        raise MockConfigError(
            f"fault {name}: {field}={reprlib.repr(params[field])} is not allowed; "
            f"{field} must be {_describe(props[field])}"
        )
    for field, value in params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise MockConfigError(f"fault {name}: {field} must be a finite number, got {value!r}")
    reason = params.get("reason")
    if isinstance(reason, str) and len(reason.encode()) > MAX_CLOSE_REASON_BYTES:
        raise MockConfigError(
            f"fault {name}: reason must be at most {MAX_CLOSE_REASON_BYTES} bytes in UTF-8"
        )


class MockProtocol(Protocol):
    """What faults and scenarios need of a running mock (both brokers' mocks satisfy it)."""

    loop: asyncio.AbstractEventLoop | None
    loop_thread_id: int | None

    @property
    def config(self) -> CommonConfig:
        """The run's config."""
        ...

    @property
    def world(self) -> WorldBase:
        """The shared state the cores read."""
        ...

    @property
    def trace(self) -> Trace:
        """The recorder."""
        ...

    @property
    def faults(self) -> Faults:
        """This mock's fault switches."""
        ...

    def now(self) -> float:
        """Spec seconds since the mock started."""
        ...

    def wake_all(self) -> None:
        """Let every session recompute its timer."""
        ...

    def drop(self, conn: str | None) -> int:
        """Abort the TCP connection of one session or all."""
        ...

    def close_sessions(self, code: int, reason: str, conn: str | None) -> int:
        """Close one session or all with a close frame."""
        ...

    def ping_all(self) -> int:
        """Queue a server ping on every session."""
        ...


class Faults:
    """Fault switches of one running mock (``mock.faults``); a dialect subclass adds its own."""

    # Names accepted by the HTTP control plane and scenario files.
    NAMES: tuple[str, ...] = (
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
    )
    MALFORMED_KINDS: tuple[str, ...] = ("truncated", "garbage")

    def __init__(self, mock: MockProtocol) -> None:
        self._mock = mock

    @property
    def _state(self) -> FaultState:
        return self._mock.world.faults

    def _apply(self, name: str, params: dict[str, Any], fn: Callable[[], Any]) -> Any:
        validate_params(name, params)  # the Python API too, not only the control plane
        mock = self._mock
        loop = mock.loop

        def run() -> Any:
            world = mock.world
            world.record(
                mock.now(), "mock", world.mock_conn, "event", "fault", name=name, params=params
            )
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

    # --- dialect hooks ----------------------------------------------------------------------
    def _subscribe_error(
        self, code: str | None, tr_key: str | None, count: int
    ) -> tuple[str, dict[str, Any]]:
        """The code to answer with and the parameters to record; MockConfigError if unknown."""
        raise MockConfigError("this mock has no subscribe error codes")

    def _rest_failure_code(self, code: str | None) -> str | None:
        """``code`` checked against the dialect's REST codes (None = the default auth failure)."""
        return code

    # --- the faults -------------------------------------------------------------------------
    def drop_socket(self, conn: str | None = None) -> int:
        """Abrupt TCP close (no close frame) of one WS session or all; returns how many."""
        return int(self._apply("drop_socket", {"conn": conn}, lambda: self._mock.drop(conn)))

    def close_socket(
        self, code: int = 1011, reason: str = "mock fault", conn: str | None = None
    ) -> int:
        """Close one WS session or all with a close frame; returns how many."""
        validate_params("close_socket", {"code": code, "reason": reason, "conn": conn})
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
            self._state.stall_until = self._mock.now() + seconds

        self._apply("stall", {"seconds": seconds}, fn)

    def next_subscribe_error(
        self, code: str | None = None, tr_key: str | None = None, count: int = 1
    ) -> None:
        """Answer the next ``count`` subscribes (of ``tr_key``, or any) with an error code.

        The default is the dialect's (KIS: the already-subscribed code, OPSP0002 in the spec;
        Kiwoom: the REG failure, whatever ``code`` says).
        """
        answer, params = self._subscribe_error(code, tr_key, count)
        if count < 1:
            raise MockConfigError("count must be >= 1")

        def fn() -> None:
            self._state.subscribe_errors.append(SubscribeError(answer, tr_key, int(count)))

        self._apply("next_subscribe_error", params, fn)

    def fail_rest(self, n: int = 1, code: str | None = None) -> None:
        """The next ``n`` authenticated REST calls fail with ``code`` (default: profile auth code)."""
        checked = self._rest_failure_code(None if code is None else str(code))
        if n < 0:
            raise MockConfigError("n must be >= 0")

        def fn() -> None:
            self._state.rest_failures, self._state.rest_failure_code = int(n), checked

        self._apply("fail_rest", {"n": n, "code": code}, fn)

    def expire_tokens(self) -> int:
        """Every issued token is expired from now on; returns how many changed."""
        auth = self._mock.world.auth
        return int(self._apply("expire_tokens", {}, lambda: auth.expire_all(self._mock.now())))

    def revoke_tokens(self) -> int:
        """Every issued token is revoked; returns how many."""
        return int(self._apply("revoke_tokens", {}, self._mock.world.auth.revoke_all))

    def throttle_tokens(self, on: bool | None = True) -> None:
        """Force the token issuance throttle on or off (None = back to the profile)."""

        def fn() -> None:
            self._state.throttle_override = on

        self._apply("throttle_tokens", {"on": on}, fn)

    def delay_rest(self, seconds: float, n: int | None = None) -> None:
        """Hold REST responses ``seconds`` spec seconds (the next ``n``, or all until reset to 0)."""
        if seconds < 0:
            raise MockConfigError("delay seconds must be >= 0")

        def fn() -> None:
            self._state.rest_delay_s, self._state.rest_delay_remaining = float(seconds), n

        self._apply("delay_rest", {"seconds": seconds, "n": n}, fn)

    def malformed_frames(self, n: int = 1, kind: str = "truncated") -> None:
        """Corrupt the next ``n`` data frames (the kinds are the dialect's ``MALFORMED_KINDS``)."""
        if kind not in self.MALFORMED_KINDS:
            raise MockConfigError(
                f"kind must be one of {', '.join(self.MALFORMED_KINDS)}, got {kind!r}"
            )

        def fn() -> None:
            self._state.malformed.extend([kind] * int(n))

        self._apply("malformed_frames", {"n": n, "kind": kind}, fn)

    def refuse_connections(self, on: bool = True) -> None:
        """Refuse new WebSocket handshakes (HTTP 503) while on."""

        def fn() -> None:
            self._state.refuse_connections = bool(on)

        self._apply("refuse_connections", {"on": on}, fn)

    def server_ping_now(self) -> int:
        """Send a server ping on every session now; returns how many sessions."""
        return int(self._apply("server_ping_now", {}, self._mock.ping_all))

    def clear(self) -> None:
        """Switch every pending fault off (sockets already dropped stay dropped)."""

        def fn() -> None:
            self._mock.world.faults = FaultState()

        self._apply("clear", {}, fn)

    def apply(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """Apply a fault by name (control plane, scenarios); MockConfigError if unknown/bad."""
        if name not in self.NAMES and name != "clear":
            raise MockConfigError(f"unknown fault {name!r}; known: {', '.join(self.NAMES)}")
        validate_params(name, params or {})
        try:
            return getattr(self, name)(**(params or {}))
        except TypeError as exc:
            raise MockConfigError(f"bad parameters for fault {name}: {exc}") from None
