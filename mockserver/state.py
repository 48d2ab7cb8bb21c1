"""The mock's shared world, without I/O: auth, market, fault switches, appkey slots, events.

REST handlers and WebSocket session cores read and change this object synchronously on the mock's
event loop; the asyncio shells own the sockets. Times are spec seconds since mock start.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stockmon.errors import SpecError
from stockmon.mockserver.auth import AuthState
from stockmon.mockserver.config import MockConfig
from stockmon.mockserver.profile import Profile
from stockmon.mockserver.simulator import MarketSimulator, ReplaySource
from stockmon.mockserver.trace import Trace
from stockmon.schemas import errors as schema_errors

log = logging.getLogger(__name__)

EventListener = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Per-run WebSocket behaviour after config overrides (0 or None = off)."""

    server_pingpong_period_s: float | None
    unanswered_pingpong_grace_s: float | None
    reflect_client_ping: bool
    accept_pong_frame_answer: bool
    tick_rate_hz: float
    max_records_per_frame: int
    multi_record_probability: float
    appkey_slot_hold_s: float


@dataclass
class SubscribeError:
    """A pending injected subscribe answer."""

    code: str
    tr_key: str | None
    remaining: int


@dataclass
class FaultState:
    """Switches the fault API flips; read by the cores and the REST app."""

    subscribe_errors: list[SubscribeError] = field(default_factory=list)
    rest_failures: int = 0
    rest_failure_code: str | None = None
    throttle_override: bool | None = None
    rest_delay_s: float = 0.0
    rest_delay_remaining: int | None = None
    malformed: deque[str] = field(default_factory=deque)
    refuse_connections: bool = False
    stall_until: float = 0.0

    def take_subscribe_error(self, tr_key: str) -> str | None:
        """The injected code for this subscribe, if one is pending for it (consumes one)."""
        for entry in self.subscribe_errors:
            if entry.tr_key is None or entry.tr_key == tr_key:
                entry.remaining -= 1
                if entry.remaining <= 0:
                    self.subscribe_errors.remove(entry)
                return entry.code
        return None

    def take_rest_failure(self) -> tuple[bool, str | None]:
        """Whether this authenticated REST call must fail, and with which code (None = profile's)."""
        if self.rest_failures > 0:
            self.rest_failures -= 1
            return True, self.rest_failure_code
        return False, None

    def take_rest_delay(self) -> float:
        """Spec seconds to hold this REST response."""
        if self.rest_delay_s <= 0:
            return 0.0
        if self.rest_delay_remaining is not None:
            if self.rest_delay_remaining <= 0:
                return 0.0
            self.rest_delay_remaining -= 1
        return self.rest_delay_s

    def take_malformed(self) -> str | None:
        """The kind of corruption for the next data frame, if any is pending."""
        return self.malformed.popleft() if self.malformed else None


class World:
    """Everything the REST app and the WebSocket cores share."""

    def __init__(self, config: MockConfig, profile: Profile, trace: Trace) -> None:
        self.config = config
        self.profile = profile
        self.trace = trace
        self.faults = FaultState()
        validity = (
            config.token_validity_s
            if config.token_validity_s is not None
            else profile.token_validity_s
        )
        reuse = (
            config.token_reuse_window_s
            if config.token_reuse_window_s is not None
            else profile.token_reuse_window_s
        )
        throttle = (
            config.token_throttle if config.token_throttle is not None else profile.token_throttle
        )
        self.auth = AuthState(profile, config.seed, validity, reuse, throttle)
        self.app_key, self.app_secret = self.auth.new_credentials(config.app_key, config.app_secret)
        self.sim = MarketSimulator(profile, config.seed, config.symbols)
        self.replay = (
            ReplaySource.from_jsonl(config.replay_path, profile, config.replay_loop)
            if config.replay_path
            else None
        )
        period = (
            config.server_pingpong_period_s
            if config.server_pingpong_period_s is not None
            else profile.server_pingpong_period_s
        )
        grace = (
            config.unanswered_pingpong_grace_s
            if config.unanswered_pingpong_grace_s is not None
            else profile.unanswered_pingpong_grace_s
        )
        self.session_settings = SessionSettings(
            server_pingpong_period_s=period or None,
            unanswered_pingpong_grace_s=grace or None,
            reflect_client_ping=(
                config.reflect_client_ping
                if config.reflect_client_ping is not None
                else profile.reflect_client_ping
            ),
            accept_pong_frame_answer=config.accept_pong_frame_answer,
            tick_rate_hz=config.tick_rate_hz,
            max_records_per_frame=config.max_records_per_frame,
            multi_record_probability=config.multi_record_probability,
            appkey_slot_hold_s=config.appkey_slot_hold_s,
        )
        self._slots: dict[str, str] = {}
        self._slot_hold: dict[str, float] = {}
        self._listeners: list[EventListener] = []
        self._missing_schemas: set[str] = set()
        self._conn_counter = 0
        self.rng = random.Random(f"world:{config.seed}")
        # Wall time at mock start; the shell sets it (tests may pin it).
        self.wall0 = 0.0

    # --- ids and events ---------------------------------------------------------------------
    def next_conn_id(self, prefix: str) -> str:
        """A new connection id (``ws-1``, ``rest-2`` ...), unique across both channels."""
        self._conn_counter += 1
        return f"{prefix}-{self._conn_counter}"

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener(event, data)`` for every protocol event (scenario triggers)."""
        self._listeners.append(listener)

    def emit(self, event: str, **data: Any) -> None:
        """Tell listeners an event is about to be handled (so faults can still apply to it)."""
        for listener in list(self._listeners):
            try:
                listener(event, data)
            except Exception:  # a bad scenario action must not take the server down
                log.exception("event listener failed on %s", event)

    # --- validation -------------------------------------------------------------------------
    def validate(self, schema: str, instance: Any) -> list[str] | None:
        """Schema violations of an inbound packet ([] = valid; None = schema not installed)."""
        if schema in self._missing_schemas:
            return None
        try:
            return schema_errors(schema, instance)
        except SpecError:
            self._missing_schemas.add(schema)
            log.warning(
                "schema %s is not installed; inbound packets are not checked against it", schema
            )
            return None

    # --- one session per appkey -------------------------------------------------------------
    def claim_appkey(self, appkey: str, conn: str, now: float) -> bool:
        """Bind an appkey to a session; False if another session (or a held slot) has it."""
        holder = self._slots.get(appkey)
        if holder is not None and holder != conn:
            return False
        if holder is None and self._slot_hold.get(appkey, 0.0) > now:
            return False
        self._slots[appkey] = conn
        return True

    def release_appkey(self, appkey: str, conn: str, now: float, abrupt: bool) -> None:
        """Free an appkey's slot when its session ends (held a while after an abrupt end)."""
        if self._slots.get(appkey) == conn:
            del self._slots[appkey]
            hold = self.session_settings.appkey_slot_hold_s
            if abrupt and hold > 0:
                self._slot_hold[appkey] = now + hold

    def wall(self, now: float) -> float:
        """Spec wall time (POSIX seconds) at spec time ``now``."""
        return self.wall0 + now

    def stalled(self, now: float) -> bool:
        """Whether the stall fault is in force."""
        return now < self.faults.stall_until
