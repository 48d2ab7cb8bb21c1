"""Kiwoom session tokens against the Kiwoom mock: expiry, error envelope, one issuance per fleet."""

from __future__ import annotations

import asyncio

import pytest
from backup_support import SCALE, SPEC, auth_for

from stockmon.clock import ScaledClock
from stockmon.mockserver import KiwoomMock, KiwoomMockConfig
from stockmon.redaction import Secret
from stockmon.reference.errors import AuthError, BrokerError, TokenThrottledError
from stockmon.reference.fleet.token_manager import token_manager
from stockmon.reference.fleet.token_state import TokenPolicy
from stockmon.reference.kiwoom.auth import REMAINING_FIELD
from stockmon.reference.rest import new_http
from stockmon.reference.seams import SharedCredentialSource

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------------- tokens
async def test_token_expiry_read_from_expires_dt_in_kst() -> None:
    """TOKEN-KIWOOM-SESSION: the remaining validity comes from expires_dt (KST), not assumed."""
    async with (
        KiwoomMock(KiwoomMockConfig(time_scale=SCALE, token_validity_s=5000)) as m,
        new_http() as http,
    ):
        # the client's spec wall clock, here the mock's own (at scale 1 both are the real clock)
        auth = auth_for(m, http, wall=lambda: m.world.wall(m.now()))
        token, body = await auth.issue_token(5.0)
        assert token and abs(body[REMAINING_FIELD] - 5000) < 60  # second resolution + scheduling
        assert auth.token_requests == 1


async def test_kiwoom_error_envelope_becomes_typed_errors() -> None:
    """[8001:...] -> AuthError (no retry helps); 429 -> TokenThrottledError; [8005:...] -> retryable."""
    async with KiwoomMock(KiwoomMockConfig(time_scale=SCALE)) as m, new_http() as http:
        bad = auth_for(m, http, wall=lambda: 0.0, scale=1.0, app_secret="x" * 43)
        with pytest.raises(AuthError) as e1:
            await bad.issue_token(5.0)
        assert e1.value.code == "8001" and not e1.value.retryable
        m.faults.throttle_tokens(True)
        good = auth_for(m, http, wall=lambda: 0.0, scale=1.0)
        with pytest.raises(TokenThrottledError):
            await good.issue_token(5.0)
        err = good.error_of(
            200,
            {"return_code": 3, "return_msg": "인증에 실패했습니다[8005:Token이 유효하지 않습니다]"},
        )
        assert isinstance(err, AuthError) and err.retryable and err.code == "8005"
        assert isinstance(
            good.error_of(200, {"return_code": 2, "return_msg": "[1501:x]"}), BrokerError
        )
        assert m.app_secret not in repr(good) + str(e1.value)


# ---------------------------------------------------------------------- fleet
async def test_a_fleet_issues_one_kiwoom_token_under_the_lock(redis_url: str) -> None:
    """Token manager reuse (TOKEN-KIS-LOCK's machinery): four processes, one Kiwoom issuance."""
    from stockmon.reference.fleet.redis_conn import connect_redis
    from stockmon.reference.fleet.token_store import RedisCredentialStore, key_prefix

    async with KiwoomMock(KiwoomMockConfig(time_scale=SCALE)) as m, new_http() as http:
        clock = ScaledClock(SCALE)
        auth = auth_for(m, http, wall=clock.wall)
        prefix = key_prefix("mock", Secret(m.app_key), "kiwoom")
        redises = [connect_redis(Secret(redis_url)) for _ in range(4)]
        stores = [RedisCredentialStore(r, prefix) for r in redises]
        try:
            sources = [
                SharedCredentialSource(
                    token_manager(
                        store,
                        auth.issue_token,
                        TokenPolicy.for_kiwoom_token(SPEC, SCALE),
                        holder=f"replica-{i}",
                    )
                )
                for i, store in enumerate(stores)
            ]
            tokens = await asyncio.gather(*(s.credential() for s in sources))
            assert len(set(tokens)) == 1 and m.world.auth.issued_count == 1
            assert m.app_key not in prefix
        finally:
            for store in stores:
                await store.aclose()
            for r in redises:
                await r.aclose()
