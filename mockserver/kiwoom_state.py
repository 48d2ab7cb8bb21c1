"""The Kiwoom mock's shared world, without I/O: credentials, tokens, fault switches, app-key sessions.

The REST app and the WebSocket session cores read and change it synchronously on the mock's loop.
Times are spec seconds since mock start; ``wall(now)`` is the spec wall time used for ``expires_dt``
and the HHMMSS fields. When the Kiwoom mock runs beside a KIS mock it shares that mock's trace,
market simulator and wall clock, so one JSONL trace orders both brokers' records and a KR symbol
trades at the same simulated prices on both.
"""

from __future__ import annotations

import logging
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stockmon.errors import SpecError
from stockmon.mockserver.auth import short_hash
from stockmon.mockserver.kiwoom_config import KiwoomMockConfig
from stockmon.mockserver.kiwoom_profile import KiwoomProfile
from stockmon.mockserver.simulator import MarketSimulator
from stockmon.mockserver.state import FaultState
from stockmon.mockserver.trace import Trace
from stockmon.schemas import errors as schema_errors

log = logging.getLogger(__name__)

BROKER = "kiwoom"
# Conn ids of this mock start with this, so a trace shared with the KIS mock keeps them apart.
CONN_PREFIX = "kiwoom-"
_ALNUM = string.ascii_letters + string.digits

EventListener = Callable[[str, dict[str, Any]], None]


@dataclass
class KiwoomToken:
    """One issued access token."""

    value: str
    token_id: str
    appkey: str
    issued_at: float
    expires_at: float
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class KiwoomSettings:
    """Per-run behaviour after config overrides (0 or None = off)."""

    env: str
    token_required: bool
    ping_period_s: float | None
    max_missed_pings: int
    login_timeout_s: float | None
    tick_rate_hz: float
    repeat_entry_probability: float


class KiwoomAuth:
    """Which app keys exist and which tokens are live."""

    def __init__(self, profile: KiwoomProfile, seed: int, validity_s: float) -> None:
        self.profile = profile
        self.validity_s = validity_s
        self._rng = random.Random(f"kiwoom-auth:{seed}")
        self.credentials: dict[str, str] = {}
        self.tokens: dict[str, KiwoomToken] = {}
        self.issued_count = 0

    def new_credentials(
        self, app_key: str | None = None, app_secret: str | None = None
    ) -> tuple[str, str]:
        """Register an app key / secret key pair (generated with the profile's shape unless given)."""
        lengths = self.profile.credential_lengths
        key = app_key or "".join(self._rng.choice(_ALNUM) for _ in range(lengths["appkey"]))
        secret = app_secret or "".join(
            self._rng.choice(_ALNUM) for _ in range(lengths["secretkey"])
        )
        self.credentials[key] = secret
        return key, secret

    def credentials_ok(self, appkey: object, secret: object) -> bool:
        """Whether the pair is known."""
        return isinstance(appkey, str) and self.credentials.get(appkey) == secret

    def issue(self, appkey: str, now: float) -> KiwoomToken:
        """A new token (the reuse behaviour of the real server is unknown: always a new one)."""
        value = "".join(
            self._rng.choice(_ALNUM) for _ in range(self.profile.credential_lengths["token"])
        )
        token = KiwoomToken(value, short_hash(value), appkey, now, now + self.validity_s)
        self.tokens[value] = token
        self.issued_count += 1
        return token

    def check(self, value: object, now: float) -> KiwoomToken | None:
        """The live token with this value, or None (unknown, revoked or expired)."""
        token = self.tokens.get(value) if isinstance(value, str) else None
        if token is None or token.revoked or now >= token.expires_at:
            return None
        return token

    def revoke(self, value: str) -> bool:
        """Revoke one token; False if unknown."""
        token = self.tokens.get(value)
        if token is None:
            return False
        token.revoked = True
        return True

    def expire_all(self, now: float) -> int:
        """Every live token expires now (fault)."""
        n = 0
        for token in self.tokens.values():
            if not token.revoked and token.expires_at > now:
                token.expires_at = now
                n += 1
        return n

    def revoke_all(self) -> int:
        """Revoke every token (fault)."""
        n = 0
        for token in self.tokens.values():
            if not token.revoked:
                token.revoked = True
                n += 1
        return n


class KiwoomWorld:
    """Everything the Kiwoom REST app and WebSocket cores share."""

    def __init__(
        self,
        config: KiwoomMockConfig,
        profile: KiwoomProfile,
        trace: Trace,
        sim: MarketSimulator,
        wall0: float,
    ) -> None:
        self.config = config
        self.profile = profile
        self.trace = trace
        self.sim = sim
        self.wall0 = wall0
        self.faults = FaultState()
        validity = (
            config.token_validity_s
            if config.token_validity_s is not None
            else profile.token_validity_s
        )
        self.auth = KiwoomAuth(profile, config.seed, validity)
        self.app_key, self.app_secret = self.auth.new_credentials(config.app_key, config.app_secret)
        env = config.env or ("prod" if profile.login_required else "mock")
        period = config.ping_period_s if config.ping_period_s is not None else profile.ping_period_s
        login_to = (
            config.login_timeout_s
            if config.login_timeout_s is not None
            else profile.login_timeout_s
        )
        self.settings = KiwoomSettings(
            env=env,
            token_required=profile.token_required(env),
            ping_period_s=period or None,
            max_missed_pings=config.max_missed_pings or profile.max_missed_pings,
            login_timeout_s=login_to or None,
            tick_rate_hz=config.tick_rate_hz,
            repeat_entry_probability=config.repeat_entry_probability,
        )
        self._sessions: dict[str, str] = {}  # appkey -> conn of its logged-in session
        self._listeners: list[EventListener] = []
        self._missing_schemas: set[str] = set()
        self._conn_counter = 0
        self.evict: Callable[[str, float], None] = lambda conn, now: None
        self.rng = random.Random(f"kiwoom-world:{config.seed}")

    def record(self, channel: str, conn: str, dir_: str, kind: str, **extra: Any) -> dict[str, Any]:
        """A trace record tagged with this broker."""
        return self.trace.record(channel, conn, dir_, kind, broker=BROKER, **extra)

    def next_conn_id(self, prefix: str) -> str:
        """A new connection id: ``kiwoom-ws-1``, ``kiwoom-rest-2`` ..."""
        self._conn_counter += 1
        return f"{CONN_PREFIX}{prefix}-{self._conn_counter}"

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener(event, data)`` for every protocol event (scenario triggers)."""
        self._listeners.append(listener)

    def emit(self, event: str, **data: Any) -> None:
        """Tell listeners an event is about to be handled."""
        for listener in list(self._listeners):
            try:
                listener(event, data)
            except Exception:  # a bad scenario action must not take the server down
                log.exception("event listener failed on %s", event)

    def validate(self, schema: str, instance: Any) -> list[str] | None:
        """Schema violations of an inbound packet ([] = valid; None = schema not installed)."""
        if schema in self._missing_schemas:
            return None
        try:
            return schema_errors(schema, instance)
        except SpecError:
            self._missing_schemas.add(schema)
            log.warning("schema %s is not installed; inbound packets are not checked", schema)
            return None

    def login(self, appkey: str, conn: str, now: float) -> None:
        """Bind an app key to a logged-in session; an older session of that key is evicted."""
        old = self._sessions.get(appkey)
        self._sessions[appkey] = conn
        if old is not None and old != conn:
            self.evict(old, now)

    def logout(self, appkey: str, conn: str) -> None:
        """Free an app key when its session ends."""
        if self._sessions.get(appkey) == conn:
            del self._sessions[appkey]

    def wall(self, now: float) -> float:
        """Spec wall time (POSIX seconds) at spec time ``now``."""
        return self.wall0 + now

    def stalled(self, now: float) -> bool:
        """Whether the stall fault is in force."""
        return now < self.faults.stall_until
