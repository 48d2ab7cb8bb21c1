"""Token lifetime, pure: when a KIS credential is FRESH, STALE or INVALID, and when it expires.

Nothing here reads a clock, a socket or Redis: every function takes ``now`` and the values it needs,
so the boundaries are unit-tested with :class:`~stockmon.clock.FakeClock` and no event loop.

Time frames. A credential is shared by a fleet of processes through Redis, so its expiry must be a
point every process can compare with: it is stored as a *real* wall-clock timestamp
(``time.time()`` frame). Spec durations (the 24 h validity, the 30 min refresh window of
TOKEN-KIS-REFRESH, the 1 min issuance throttle of TOKEN-KIS-THROTTLE) are converted with the time
scale (STOCKMON_TIME_SCALE, spec seconds per real second): ``real = spec / scale``. A per-process
:class:`~stockmon.clock.ScaledClock` cannot serve here, because two processes started at different
moments disagree on its wall time.

Expiry (TOKEN-KIS-EXPIRY): the earliest of ``now + expires_in`` and ``access_token_token_expired``
(KST wall time). A freshly issued credential that the absolute time says is already stale is a
clock disagreement between us and the broker, not a real expiry: then ``expires_in`` is used and
the caller is told (``skewed``), so one wrong clock cannot start a refresh storm. Versions without
the clause (1.0) read ``expires_in`` and fall back to TOKEN-KIS-BEARER's validity.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stockmon.redaction import Secret
from stockmon.reference.errors import RemoteProtocolError
from stockmon.reference.seams import expiry_at, parse_kst, prime_format
from stockmon.spec import Spec, broker_clause, broker_data

# The relative validity (spec seconds) the Kiwoom issuer adds to its response; not a Kiwoom field.
KIWOOM_REMAINING_FIELD = "stockmon_remaining_s"


class TokenState(enum.Enum):
    """Where a credential stands in its life."""

    FRESH = "fresh"  # use it, nothing to do
    STALE = (
        "stale"  # still valid, inside the refresh window: one process refreshes, all keep using it
    )
    INVALID = "invalid"  # expired or missing: callers must wait for a new one


def token_state(expires_at: float | None, now: float, refresh_window: float) -> TokenState:
    """Classify a credential expiring at ``expires_at`` (same frame and unit as ``now``).

    The refresh is due *at* the start of the window, and a credential is unusable *at* its expiry.
    """
    if expires_at is None or not math.isfinite(expires_at):
        return TokenState.INVALID
    remaining = expires_at - now
    if remaining <= 0:
        return TokenState.INVALID
    if remaining <= refresh_window:
        return TokenState.STALE
    return TokenState.FRESH


@dataclass(frozen=True, slots=True)
class CachedCredential:
    """A credential as the fleet shares it: value, real-wall expiry, issue time and version.

    ``version`` grows by one with every write to the shared cache (0 = never written there), so a
    process can tell a newer credential from the one it holds without comparing secrets.
    """

    value: Secret
    expires_at: float
    issued_at: float
    version: int = 0
    # Before this time a STALE credential is not worth a background refresh: the broker just
    # handed out this same, already stale credential again (its reuse window, kis.md §1.1).
    refresh_after: float = 0.0

    @classmethod
    def from_stored(cls, fields: Mapping[str, Any]) -> CachedCredential | None:
        """The credential a shared store kept as text or JSON fields; None when malformed.

        A store reads back what any process (of any version) wrote: a missing field, a non-number
        or an infinite expiry reads as absent, never as a credential.
        """
        try:
            cred = cls(
                Secret(str(fields["value"])),
                float(fields["expires_at"]),
                float(fields["issued_at"]),
                int(fields["version"]),
                float(fields.get("refresh_after", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return cred if math.isfinite(cred.expires_at) else None

    def state(self, now: float, refresh_window: float) -> TokenState:
        """This credential's state at ``now`` (real wall seconds)."""
        return token_state(self.expires_at, now, refresh_window)

    def with_version(self, version: int, refresh_after: float | None = None) -> CachedCredential:
        """The same credential as stored under ``version``."""
        after = self.refresh_after if refresh_after is None else refresh_after
        return CachedCredential(self.value, self.expires_at, self.issued_at, version, after)


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """The spec's numbers for one kind of credential, already in *real* seconds for a time scale."""

    refresh_window: float
    validity_fallback: float
    throttle_interval: float | None
    throttle_status: int | None
    throttle_code: str | None
    expiry_fields: tuple[str, ...]
    expired_format: str | None
    utc_offset_s: int | None
    prefer_earliest: bool
    scale: float
    reuse_window: float | None = None

    def __post_init__(self) -> None:
        if self.expired_format:
            prime_format(self.expired_format)  # not inside the first refresh

    @classmethod
    def for_token(cls, spec: Spec, scale: float = 1.0) -> TokenPolicy:
        """Policy of the REST access token (TOKEN-KIS-REFRESH, -EXPIRY, -THROTTLE, -BEARER)."""
        if not scale > 0:
            raise ValueError(f"time scale must be > 0, got {scale!r}")
        window = spec.clause("TOKEN-KIS-REFRESH").number("refresh_before_expiry_s")
        validity = spec.clause("TOKEN-KIS-BEARER").number("validity_s")
        if spec.has("TOKEN-KIS-EXPIRY"):
            exp = spec.clause("TOKEN-KIS-EXPIRY")
            fields = exp.strings("fields")
            fmt: str | None = exp.string("expired_format")
            offset: int | None = exp.integer("utc_offset_s")
            earliest = exp.string("prefer") == "earliest"
        else:
            # 1.0 says nothing about the response; the first field of 1.1's list is the relative one
            fields = broker_clause(spec, "TOKEN-KIS-EXPIRY").strings("fields")[:1]
            fmt, offset, earliest = None, None, True
        interval: float | None = None
        status: int | None = None
        code: str | None = None
        if spec.has("TOKEN-KIS-THROTTLE"):
            thr = spec.clause("TOKEN-KIS-THROTTLE")
            interval = thr.number("min_interval_s") / scale
            status = thr.integer("http_status")
            code = thr.string("error_code")
        reuse = spec.rest["kis"].get("token_same_within_s")
        return cls(
            refresh_window=window / scale,
            validity_fallback=validity / scale,
            throttle_interval=interval,
            throttle_status=status,
            throttle_code=code,
            expiry_fields=fields,
            expired_format=fmt,
            utc_offset_s=offset,
            prefer_earliest=earliest,
            scale=scale,
            reuse_window=None if reuse is None else float(reuse) / scale,
        )

    @classmethod
    def for_approval_key(cls, spec: Spec, scale: float = 1.0) -> TokenPolicy:
        """Policy of the WebSocket approval key (WS-APPROVAL-KEY): no expiry in the response.

        The key lives as long as a token (TOKEN-KIS-BEARER's validity, protocol/kis.md §1.3) and is
        renewed in the same window; issuance is not documented as throttled.
        """
        token = cls.for_token(spec, scale)
        return cls(
            refresh_window=token.refresh_window,
            validity_fallback=token.validity_fallback,
            throttle_interval=None,
            throttle_status=None,
            throttle_code=None,
            expiry_fields=(),
            expired_format=None,
            utc_offset_s=None,
            prefer_earliest=True,
            scale=scale,
        )

    @classmethod
    def for_kiwoom_token(cls, spec: Spec, scale: float = 1.0) -> TokenPolicy:
        """Policy of the Kiwoom session token: the issuer states the remaining validity in
        ``remaining_field`` (kiwoom.auth.REMAINING_FIELD); the window is the official client's."""
        if not scale > 0:
            raise ValueError(f"time scale must be > 0, got {scale!r}")
        window = float(broker_data(spec, "rest", "kiwoom")["refresh_before_expiry_s"]) / scale
        return cls(
            refresh_window=window,
            validity_fallback=window,  # never used: the issuer always states the remaining validity
            throttle_interval=None,
            throttle_status=None,
            throttle_code=None,
            expiry_fields=(KIWOOM_REMAINING_FIELD,),
            expired_format=None,
            utc_offset_s=None,
            prefer_earliest=True,
            scale=scale,
        )


@dataclass(frozen=True, slots=True)
class Expiry:
    """Result of reading a token response: real-wall expiry, and which field decided it."""

    expires_at: float
    decided_by: str
    skewed: bool


def _number(body: Mapping[str, Any], name: str) -> float | None:
    raw = body.get(name)
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise RemoteProtocolError(f"token response field {name!r} is not a number") from None
    if not math.isfinite(value):
        raise RemoteProtocolError(f"token response field {name!r} is not a finite number")
    return value


def expiry_from_response(body: Mapping[str, Any], now: float, policy: TokenPolicy) -> Expiry:
    """When a just-issued token expires, in real wall seconds (TOKEN-KIS-EXPIRY).

    ``now`` is the real wall time at which the response arrived. Relative candidates are spec
    seconds (scaled); the absolute one is compared with ``now`` directly. At scale 1 both are exact;
    under a time scale a peer's scaled wall clock runs ahead of ours, so the absolute candidate only
    ever loses the "earliest" contest, which keeps the relative, scaled value.
    """
    candidates: list[tuple[float, str]] = []  # (remaining real seconds, field)
    for name in policy.expiry_fields:
        raw = body.get(name)
        if raw is None:
            continue
        if isinstance(raw, str) and policy.expired_format and not _looks_numeric(raw):
            assert policy.utc_offset_s is not None
            at = expiry_at(raw, policy.expired_format, policy.utc_offset_s, name)
            candidates.append((at - now, name))
        else:
            seconds = _number(body, name)
            if seconds is not None:
                candidates.append((seconds / policy.scale, name))
    if not candidates:
        # Only versions without TOKEN-KIS-EXPIRY get here legitimately; 1.1 forbids assuming.
        return Expiry(now + policy.validity_fallback, "TOKEN-KIS-BEARER validity", skewed=False)
    relative = [c for c in candidates if c[1] == policy.expiry_fields[0]]
    pick = min(candidates) if policy.prefer_earliest else max(candidates)
    skewed = False
    if relative and pick[1] != relative[0][1] and pick[0] <= policy.refresh_window < relative[0][0]:
        # A fresh token cannot already be stale: our clock and the broker's disagree.
        pick, skewed = relative[0], True
    return Expiry(now + pick[0], pick[1], skewed)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def credential_from_response(
    value: str, body: Mapping[str, Any], now: float, policy: TokenPolicy
) -> tuple[CachedCredential, Expiry]:
    """A not-yet-shared credential (version 0) built from an issuance response."""
    exp = expiry_from_response(body, now, policy)
    return CachedCredential(Secret(value), exp.expires_at, now, 0), exp


__all__ = [
    "CachedCredential",
    "Expiry",
    "TokenPolicy",
    "TokenState",
    "credential_from_response",
    "expiry_from_response",
    "parse_kst",
    "token_state",
]
