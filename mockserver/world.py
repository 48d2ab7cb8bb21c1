"""What every broker's mock world shares, without I/O: fault switches, tokens, events, ids, time.

A dialect's world (``kis.state.World``, ``kiwoom.state.KiwoomWorld``) adds its auth rules and
session settings. REST handlers and session cores read and change a world synchronously on the
mock's loop; times are spec seconds since mock start, and every trace record is stamped with the
``now`` of the step that writes it.
"""

from __future__ import annotations

import hashlib
import logging
import random
import string
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stockmon.errors import SpecError
from stockmon.mockserver.config import CommonConfig
from stockmon.mockserver.simulator import MarketSimulator
from stockmon.mockserver.trace import Record, Trace
from stockmon.redaction import register_secret
from stockmon.schemas import errors as schema_errors

log = logging.getLogger(__name__)

EventListener = Callable[[str, dict[str, Any]], None]
ALNUM = string.ascii_letters + string.digits


def short_hash(value: str) -> str:
    """A short stable fingerprint for traces (never the value itself)."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


@dataclass
class SubscribeError:
    """A pending injected subscribe answer."""

    code: str
    tr_key: str | None
    remaining: int


@dataclass
class FaultState:
    """Switches the fault API flips; read by the cores and the REST apps."""

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


@dataclass
class Token:
    """One issued access token."""

    value: str
    token_id: str
    appkey: str
    issued_at: float
    expires_at: float
    revoked: bool = False


class TokenBook:
    """Which credentials exist and which tokens were issued; the dialect adds its issuing rules."""

    def __init__(self, seed_label: str, validity_s: float) -> None:
        self.validity_s = validity_s
        self._rng = random.Random(seed_label)
        self.credentials: dict[str, str] = {}
        self.tokens: dict[str, Token] = {}
        self.issued_count = 0

    def new_credentials(
        self, app_key: str | None = None, app_secret: str | None = None
    ) -> tuple[str, str]:
        """Register a credential pair (generated in the broker's shape unless given)."""
        key, secret = app_key or self._new_app_key(), app_secret or self._new_app_secret()
        self.credentials[key] = secret
        register_secret(
            key
        )  # app keys are secrets too (.env.example): scrubbed from any trace text
        register_secret(secret)
        return key, secret

    def _new_app_key(self) -> str:
        raise NotImplementedError

    def _new_app_secret(self) -> str:
        raise NotImplementedError

    def _chars(self, alphabet: str, n: int) -> str:
        return "".join(self._rng.choice(alphabet) for _ in range(n))

    def _add(self, token: Token) -> Token:
        self.tokens[token.value] = token
        self.issued_count += 1
        return token

    def revoke(self, value: str) -> bool:
        """Revoke one token; False if unknown."""
        token = self.tokens.get(value)
        if token is None:
            return False
        token.revoked = True
        return True

    def expire_all(self, now: float) -> int:
        """Every live token expires now (fault); returns how many changed."""
        n = 0
        for token in self.tokens.values():
            if not token.revoked and token.expires_at > now:
                token.expires_at = now
                n += 1
        return n

    def revoke_all(self) -> int:
        """Revoke every token (fault); returns how many."""
        n = 0
        for token in self.tokens.values():
            if not token.revoked:
                token.revoked = True
                n += 1
        return n


class WorldBase:
    """Everything a mock's REST app and WebSocket cores share, whichever the broker."""

    auth: TokenBook
    app_key: str
    app_secret: str

    def __init__(
        self,
        config: CommonConfig,
        trace: Trace,
        sim: MarketSimulator,
        wall0: float,
        broker: str | None = None,
    ) -> None:
        self.config = config
        self.trace = trace
        self.sim = sim
        # Wall time at mock start (tests may pin it); a mock beside another shares its wall0.
        self.wall0 = wall0
        self.faults = FaultState()
        # A tagged broker's records carry ``broker`` and conn ids ``<broker>-ws-N``, so a trace
        # shared with the (untagged) KIS mock keeps the two apart.
        self.broker = broker
        self.conn_prefix = f"{broker}-" if broker else ""
        self.mock_conn = f"{self.conn_prefix}mock"
        self._tag: dict[str, str] = {"broker": broker} if broker else {}
        self._listeners: list[EventListener] = []
        self._missing_schemas: set[str] = set()
        self._conn_counter = 0
        self.rng = random.Random(f"{self.conn_prefix}world:{config.seed}")

    def record(
        self, now: float, channel: str, conn: str, dir_: str, kind: str, **extra: Any
    ) -> Record:
        """A trace record at spec time ``now``, tagged with this broker."""
        return self.trace.record(now, channel, conn, dir_, kind, **self._tag, **extra)

    def next_conn_id(self, prefix: str) -> str:
        """A new connection id (``ws-1``, ``kiwoom-rest-2`` ...), unique across both channels."""
        self._conn_counter += 1
        return f"{self.conn_prefix}{prefix}-{self._conn_counter}"

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

    def wall(self, now: float) -> float:
        """Spec wall time (POSIX seconds) at spec time ``now``."""
        return self.wall0 + now

    def stalled(self, now: float) -> bool:
        """Whether the stall fault is in force."""
        return now < self.faults.stall_until
