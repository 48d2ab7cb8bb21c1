"""Token lifetime, pure (TOKEN-KIS-REFRESH, TOKEN-KIS-EXPIRY): boundaries with a FakeClock, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from stockmon.clock import FakeClock
from stockmon.redaction import Secret
from stockmon.reference.errors import RemoteProtocolError
from stockmon.reference.fleet.token_state import (
    CachedCredential,
    TokenPolicy,
    TokenState,
    credential_from_response,
    expiry_from_response,
    parse_kst,
    token_state,
)
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
WINDOW = SPEC.clause("TOKEN-KIS-REFRESH").number("refresh_before_expiry_s")
VALIDITY = SPEC.clause("TOKEN-KIS-BEARER").number("validity_s")
EXPIRY = SPEC.clause("TOKEN-KIS-EXPIRY")
KST = timezone(timedelta(seconds=EXPIRY.integer("utc_offset_s")))
REL, ABS = EXPIRY.strings("fields")


def kst_text(ts: float) -> str:
    """A POSIX time written the way KIS writes access_token_token_expired."""
    return datetime.fromtimestamp(ts, KST).strftime(EXPIRY.string("expired_format"))


# --- TOKEN-KIS-REFRESH: the three states and their boundaries -------------------------------


def test_fresh_until_the_refresh_window_starts() -> None:
    """A token is FRESH while more than the refresh window remains."""
    clock = FakeClock()
    expires = clock.wall() + VALIDITY
    assert token_state(expires, clock.wall(), WINDOW) is TokenState.FRESH
    clock.advance(VALIDITY - WINDOW - 0.001)
    assert token_state(expires, clock.wall(), WINDOW) is TokenState.FRESH


def test_stale_exactly_at_the_start_of_the_window() -> None:
    """The refresh is due at expiry minus the window (30 min), not a moment later."""
    clock = FakeClock()
    expires = clock.wall() + VALIDITY
    clock.advance(VALIDITY - WINDOW)
    assert token_state(expires, clock.wall(), WINDOW) is TokenState.STALE


def test_stale_until_the_last_instant_before_expiry() -> None:
    """Inside the window the token is still usable (STALE), up to its expiry."""
    clock = FakeClock()
    expires = clock.wall() + VALIDITY
    clock.advance(VALIDITY - 0.001)
    assert token_state(expires, clock.wall(), WINDOW) is TokenState.STALE


def test_invalid_at_expiry_and_after() -> None:
    """At its expiry instant the token is INVALID, and stays so."""
    clock = FakeClock()
    expires = clock.wall() + VALIDITY
    clock.advance(VALIDITY)
    assert token_state(expires, clock.wall(), WINDOW) is TokenState.INVALID
    clock.advance(1e6)
    assert token_state(expires, clock.wall(), WINDOW) is TokenState.INVALID


def test_missing_or_nonfinite_expiry_is_invalid() -> None:
    """No expiry (nothing cached) or a NaN one is INVALID, never FRESH."""
    assert token_state(None, 0.0, WINDOW) is TokenState.INVALID
    assert token_state(float("nan"), 0.0, WINDOW) is TokenState.INVALID


def test_window_comes_from_the_spec_and_is_scaled() -> None:
    """The policy reads 1800 s from TOKEN-KIS-REFRESH and converts it with the time scale."""
    assert TokenPolicy.for_token(SPEC).refresh_window == WINDOW
    assert TokenPolicy.for_token(SPEC, 100.0).refresh_window == pytest.approx(WINDOW / 100)


def test_cached_credential_state_uses_its_expiry() -> None:
    """CachedCredential.state is token_state of its own expiry."""
    cred = CachedCredential(Secret("tok-abcdef"), expires_at=1000.0, issued_at=0.0)
    assert cred.state(1000.0 - WINDOW - 1, WINDOW) is TokenState.FRESH
    assert cred.state(1000.0 - 1, WINDOW) is TokenState.STALE
    assert cred.state(1000.0, WINDOW) is TokenState.INVALID


# --- TOKEN-KIS-EXPIRY: expires_in and access_token_token_expired, earliest wins ------------


def test_expiry_from_expires_in_when_it_is_earliest() -> None:
    """expires_in decides when the absolute time is later."""
    now = FakeClock().wall()
    body = {REL: 86400, ABS: kst_text(now + 90000)}
    exp = expiry_from_response(body, now, TokenPolicy.for_token(SPEC))
    assert exp.expires_at == pytest.approx(now + 86400)
    assert exp.decided_by == REL
    assert not exp.skewed


def test_expiry_from_the_kst_wall_time_when_it_is_earliest() -> None:
    """access_token_token_expired (KST) decides when it is earlier (mojito's drift case)."""
    now = float(int(FakeClock().wall()))
    body = {REL: 86400, ABS: kst_text(now + 82000)}
    exp = expiry_from_response(body, now, TokenPolicy.for_token(SPEC))
    assert exp.expires_at == pytest.approx(now + 82000)
    assert exp.decided_by == ABS


def test_kst_is_nine_hours_ahead_of_utc() -> None:
    """The wall time carries no zone; it is read as KST (UTC+9), from the spec."""
    assert parse_kst("2024-01-01 09:00:00", EXPIRY.string("expired_format"), 32400) == (
        datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    )


def test_absolute_time_already_stale_is_clock_skew() -> None:
    """A fresh token whose absolute expiry is inside the window means our clocks disagree."""
    now = float(int(FakeClock().wall()))
    body = {REL: 86400, ABS: kst_text(now + 60)}
    exp = expiry_from_response(body, now, TokenPolicy.for_token(SPEC))
    assert exp.skewed
    assert exp.expires_at == pytest.approx(now + 86400)


def test_expires_in_is_scaled_by_the_time_scale() -> None:
    """Under STOCKMON_TIME_SCALE the spec's 86400 s becomes 86400/scale real seconds."""
    now = FakeClock().wall()
    body = {REL: 86400, ABS: kst_text(now + 86400)}
    exp = expiry_from_response(body, now, TokenPolicy.for_token(SPEC, 1000.0))
    assert exp.expires_at == pytest.approx(now + 86.4)


def test_expires_in_as_a_string_is_accepted() -> None:
    """Some gateways send numbers as strings; "86400" is read as a number."""
    now = FakeClock().wall()
    exp = expiry_from_response({REL: "86400"}, now, TokenPolicy.for_token(SPEC))
    assert exp.expires_at == pytest.approx(now + 86400)


def test_malformed_expiry_fields_are_a_protocol_error() -> None:
    """A wall time in another format, or a non-numeric expires_in, is the peer's fault."""
    now = FakeClock().wall()
    policy = TokenPolicy.for_token(SPEC)
    with pytest.raises(RemoteProtocolError, match=ABS):
        expiry_from_response({REL: 86400, ABS: "tomorrow"}, now, policy)
    with pytest.raises(RemoteProtocolError, match=REL):
        expiry_from_response({REL: [1]}, now, policy)


def test_spec_1_0_reads_expires_in_only() -> None:
    """1.0 has no TOKEN-KIS-EXPIRY: expires_in decides, the absolute field is ignored."""
    now = FakeClock().wall()
    policy = TokenPolicy.for_token(load_spec("1.0"))
    body = {REL: 7200, ABS: kst_text(now + 60)}
    assert expiry_from_response(body, now, policy).expires_at == pytest.approx(now + 7200)


def test_spec_1_0_without_any_field_falls_back_to_the_bearer_validity() -> None:
    """With nothing to read, 1.0 falls back to TOKEN-KIS-BEARER's 24 h."""
    now = FakeClock().wall()
    exp = expiry_from_response({}, now, TokenPolicy.for_token(load_spec("1.0")))
    assert exp.expires_at == pytest.approx(now + VALIDITY)


def test_credential_from_response_wraps_the_value_as_a_secret() -> None:
    """The new credential hides its value from repr and starts at version 0."""
    now = FakeClock().wall()
    cred, _ = credential_from_response(
        "tok-secret-value", {REL: 100}, now, TokenPolicy.for_token(SPEC)
    )
    assert "tok-secret-value" not in repr(cred)
    assert cred.value.reveal() == "tok-secret-value"
    assert cred.version == 0
    assert cred.issued_at == now


# --- TOKEN-KIS-THROTTLE and WS-APPROVAL-KEY policies -----------------------------------------


def test_throttle_interval_from_the_spec_scaled() -> None:
    """1.1's issuance throttle (60 s) is scaled; 1.0 has none."""
    thr = SPEC.clause("TOKEN-KIS-THROTTLE")
    policy = TokenPolicy.for_token(SPEC, 10.0)
    assert policy.throttle_interval == pytest.approx(thr.number("min_interval_s") / 10)
    assert policy.throttle_code == thr.string("error_code")
    assert TokenPolicy.for_token(load_spec("1.0")).throttle_interval is None


def test_approval_key_policy_has_no_throttle_and_the_token_window() -> None:
    """The approval key is renewed in the same window and is not throttled."""
    policy = TokenPolicy.for_approval_key(SPEC)
    assert policy.throttle_interval is None
    assert policy.refresh_window == WINDOW
    assert policy.expiry_fields == ()


def test_policy_compiles_the_expiry_format_before_the_first_refresh() -> None:
    """Building the policy compiles the expiry format, so the first refresh pays no 3 ms strptime."""
    import subprocess
    import sys

    probe = (
        "import sys, _strptime\n"
        "from stockmon.reference.fleet.token_state import TokenPolicy\n"
        "from stockmon.spec import load_spec\n"
        "fmt = load_spec('1.1').clause('TOKEN-KIS-EXPIRY').string('expired_format')\n"
        "before = fmt in _strptime._regex_cache\n"
        "TokenPolicy.for_token(load_spec('1.1'))\n"
        "print(before, fmt in _strptime._regex_cache)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "True"]


def test_a_format_that_cannot_read_its_own_output_is_left_to_the_first_response() -> None:
    """Priming a format strptime cannot parse back raises nothing; the response names it then."""
    policy = TokenPolicy.for_token(SPEC)
    bad = TokenPolicy(
        **{**{f: getattr(policy, f) for f in policy.__slots__}, "expired_format": "%Y-%Q"}
    )
    body = {REL: 100, ABS: "2026-x"}
    with pytest.raises(RemoteProtocolError, match=ABS):
        expiry_from_response(body, 0.0, bad)
