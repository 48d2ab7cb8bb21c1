"""REST client against the KIS mock over loopback (ERR-REST-BODY, POL-AUTH-FAILED, TOKEN-KIS-THROTTLE)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fleet_support import quote_paths, records, responses_to, settings_for, token_requests

from stockmon.mockserver import KisMock, MockConfig
from stockmon.reference.errors import AuthError, BrokerError, TokenThrottledError
from stockmon.reference.events import StatusChanged
from stockmon.reference.kis.quote import fetch_quote, snapshot_quotes
from stockmon.reference.kis.rest import RestErrorRules, error_from_body
from stockmon.reference.wiring import open_kis
from stockmon.settings import Subscription
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
HEADERS = SPEC.rest["kis"]["headers"]
# Spec seconds per real second: the 60 s issuance throttle lasts 60 ms.
SCALE = 1000.0


@pytest.fixture
async def mock() -> AsyncIterator[KisMock]:
    """A 1.1 mock with compressed time."""
    async with KisMock(MockConfig(time_scale=SCALE)) as m:
        yield m


def quote_requests(mock: KisMock, since: int = 0) -> list[dict[str, object]]:
    """Quote requests after ``since``."""
    return [r for r in records(mock, "request", since) if r["path"] in quote_paths()]


# --- headers and quotes ---------------------------------------------------------------------


async def test_kr_and_us_quotes_carry_the_kis_headers(mock: KisMock, redis_url: str) -> None:
    """A quote sends authorization Bearer, appkey, appsecret, tr_id and custtype from the spec."""
    async with open_kis(settings_for(mock, redis_url)) as kis:
        kr = await fetch_quote(kis.rest, "005930")
        us = await fetch_quote(kis.rest, "DNASAAPL")
        token = kis.tokens.current
    assert kr.market == "KR" and kr.price > 0 and kr.currency == "KRW"
    assert us.market == "US" and us.price > 0 and us.currency == "USD"
    reqs = quote_requests(mock)
    assert len(reqs) == 2
    assert token is not None
    for req in reqs:
        headers = req["headers"]
        assert isinstance(headers, dict)
        assert headers[HEADERS["authorization"]] == f"Bearer {token.value.reveal()}"
        # present and masked by the mock's trace; their values are the mock's to check (the
        # quotes above were answered, so the mock accepted them)
        assert headers[HEADERS["appkey"]] == headers[HEADERS["appsecret"]] == "***"
        assert headers[HEADERS["custtype"]] == SPEC.rest["kis"]["custtype"]
    assert {r["headers"][HEADERS["tr_id"]] for r in reqs} == {  # type: ignore[index]
        q["tr_id"] for q in SPEC.rest["kis"]["quotes"].values()
    }
    assert len(token_requests(mock)) == 1


# --- POL-AUTH-FAILED: refresh once, retry once, then a clear error ----------------------------


async def test_auth_failure_once_refreshes_once_and_retries_once(
    mock: KisMock, redis_url: str
) -> None:
    """One injected auth failure: exactly one token request and one retried quote, which succeeds."""
    async with open_kis(settings_for(mock, redis_url)) as kis:
        await fetch_quote(kis.rest, "005930")
        mark = mock.trace.last_seq
        mock.faults.fail_rest(1)
        quote = await fetch_quote(kis.rest, "005930")
        assert kis.rest.auth_retries == 1
    assert quote.price > 0
    assert len(token_requests(mock, mark)) == 1
    quotes = quote_requests(mock, mark)
    assert len(quotes) == 2
    seqs = sorted(
        [(r["seq"], "quote") for r in quotes]
        + [(r["seq"], "token") for r in token_requests(mock, mark)]
    )
    assert [kind for _, kind in seqs] == ["quote", "token", "quote"]
    statuses = [r["status"] for r in responses_to(mock, quotes)]
    assert statuses[0] >= 400 and statuses[1] == 200


async def test_auth_failure_twice_is_a_clear_error_not_a_loop(
    mock: KisMock, redis_url: str
) -> None:
    """Two injected failures: one refresh, one retry, then a non-retryable AuthError."""
    async with open_kis(settings_for(mock, redis_url)) as kis:
        await fetch_quote(kis.rest, "005930")
        mark = mock.trace.last_seq
        mock.faults.fail_rest(2)
        with pytest.raises(AuthError, match="still rejected after a forced token refresh") as info:
            await fetch_quote(kis.rest, "005930")
    assert not info.value.retryable
    assert info.value.code in SPEC.clause("POL-AUTH-FAILED").strings("rest_codes")
    assert len(token_requests(mock, mark)) == 1
    assert len(quote_requests(mock, mark)) == 2


async def test_expired_token_is_replaced_once(mock: KisMock, redis_url: str) -> None:
    """The broker expires every token (EGW00123): one new token, the call goes through."""
    async with open_kis(settings_for(mock, redis_url)) as kis:
        await fetch_quote(kis.rest, "005930")
        old = kis.tokens.current
        mark = mock.trace.last_seq
        mock.faults.expire_tokens()
        await fetch_quote(kis.rest, "DNASAAPL")
        new = kis.tokens.current
    assert old is not None and new is not None and new.value != old.value
    assert len(token_requests(mock, mark)) == 1


async def test_spec_1_0_auth_code_also_triggers_the_policy(redis_url: str) -> None:
    """Under 1.0 the auth-failure code is IGW00221; the same refresh-and-retry applies."""
    async with KisMock(MockConfig(spec_version="1.0", time_scale=SCALE)) as mock:
        async with open_kis(settings_for(mock, redis_url)) as kis:
            await fetch_quote(kis.rest, "005930")
            mark = mock.trace.last_seq
            mock.faults.fail_rest(1)
            await fetch_quote(kis.rest, "005930")
            assert kis.rest.auth_retries == 1
        codes = [r["body"].get("msg_cd") for r in responses_to(mock, quote_requests(mock, mark))]
    assert codes[0] in load_spec("1.0").clause("POL-AUTH-FAILED").strings("rest_codes")
    assert len(token_requests(mock, mark)) == 1


async def test_other_broker_errors_are_not_retried(mock: KisMock, redis_url: str) -> None:
    """A non-auth error code surfaces as BrokerError without a refresh."""
    async with open_kis(settings_for(mock, redis_url)) as kis:
        await fetch_quote(kis.rest, "005930")
        mark = mock.trace.last_seq
        mock.faults.fail_rest(1, code="EGW00201")
        with pytest.raises(BrokerError) as info:
            await fetch_quote(kis.rest, "005930")
    assert not isinstance(info.value, AuthError)
    assert info.value.code == "EGW00201"
    assert token_requests(mock, mark) == []


async def test_bad_app_secret_fails_fast(mock: KisMock, redis_url: str) -> None:
    """Wrong credentials: a non-retryable AuthError after a single token request."""
    settings = settings_for(mock, redis_url, KIS_APP_SECRET="x" * 180)
    async with open_kis(settings) as kis:
        with pytest.raises(AuthError) as info:
            await fetch_quote(kis.rest, "005930")
    assert not info.value.retryable
    assert len(token_requests(mock)) == 1


# --- TOKEN-KIS-THROTTLE ---------------------------------------------------------------------


async def test_throttle_answer_is_waited_out(tmp_path: Path) -> None:
    """A client that does not share the fleet's cache gets EGW00133 once, then waits it out."""
    interval = SPEC.clause("TOKEN-KIS-THROTTLE").number("min_interval_s")
    # A slower clock than the module's: the second client must ask inside the throttle window
    # even on a loaded machine (60 spec seconds = 1.5 s here, not 60 ms).
    scale = interval / 1.5
    async with KisMock(MockConfig(time_scale=scale)) as mock:
        env = {"STOCKMON_TIME_SCALE": str(scale)}
        # two token caches (STOCKMON_CACHE_DIR): the outsider cannot see the first token
        first_env = {**env, "STOCKMON_CACHE_DIR": str(tmp_path / "first")}
        async with open_kis(settings_for(mock, **first_env)) as first:
            await fetch_quote(first.rest, "005930")
        outsider_env = {**env, "STOCKMON_CACHE_DIR": str(tmp_path / "outsider")}
        async with open_kis(settings_for(mock, **outsider_env)) as outsider:
            await fetch_quote(outsider.rest, "005930")
        reqs = token_requests(mock)
        statuses = [r["status"] for r in responses_to(mock, reqs)]
    assert statuses == [200, SPEC.clause("TOKEN-KIS-THROTTLE").integer("http_status"), 200]
    assert reqs[2]["t_spec"] - reqs[1]["t_spec"] >= interval * 0.95


def test_error_bodies_are_typed() -> None:
    """ERR-REST-BODY and the token endpoint's own shape map to the typed errors."""
    rules = RestErrorRules.from_spec(SPEC)
    auth = error_from_body(500, {"rt_cd": "1", "msg_cd": "EGW00123", "msg1": "expired"}, rules)
    assert isinstance(auth, AuthError) and auth.retryable
    thr = error_from_body(403, {"error_code": "EGW00133", "error_description": "1/min"}, rules)
    assert isinstance(thr, TokenThrottledError) and thr.retry_after == 60
    assert error_from_body(200, {"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "ok"}, rules) is None
    other = error_from_body(200, {"rt_cd": "1", "msg_cd": "EGW00201", "msg1": "rate\nlimit"}, rules)
    assert isinstance(other, BrokerError) and "\n" not in str(other)
    assert isinstance(error_from_body(502, None, rules), BrokerError)
    old = RestErrorRules.from_spec(load_spec("1.0"))
    assert not isinstance(
        error_from_body(500, {"rt_cd": "1", "msg_cd": "EGW00123", "msg1": "expired"}, old),
        AuthError,
    )


# --- WS-APPROVAL-KEY: shared like the token ---------------------------------------------------


async def test_approval_key_is_shared_and_replaced_once(mock: KisMock, redis_url: str) -> None:
    """Two processes: one approval request; after a rejection, one more, seen by both."""
    path = SPEC.clause("WS-APPROVAL-KEY").string("path")
    async with (
        open_kis(settings_for(mock, redis_url), holder="a") as a,
        open_kis(settings_for(mock, redis_url), holder="b") as b,
    ):
        pa, pb = a.approval_provider(), b.approval_provider()
        ka, kb = await pa.credential(), await pb.credential()
        assert ka == kb
        assert len(records(mock, "request", path=path)) == 1
        new_a = await pa.credential(force_new=True)  # OPSP0011 seen by a
        new_b = await pb.credential(force_new=True)  # and by b, for the same old key
    assert new_a == new_b != ka
    assert len(records(mock, "request", path=path)) == 2


# --- the stream's REST snapshot -------------------------------------------------------------


async def test_snapshot_quotes_every_key_once_and_reports_errors(
    mock: KisMock, redis_url: str
) -> None:
    """Each distinct key is quoted once; a broker error becomes a status event with its code."""
    subs = [
        Subscription("H0STCNT0", "005930"),
        Subscription("H0STASP0", "005930"),
        Subscription("HDFSCNT0", "DNASAAPL"),
    ]
    events: list[StatusChanged] = []
    async with open_kis(settings_for(mock, redis_url)) as kis:
        assert await snapshot_quotes(kis.rest, subs, events.append) == 2
        assert events == []
        assert len(quote_requests(mock)) == 2
        mock.faults.fail_rest(1, code="EGW00201")
        assert await snapshot_quotes(kis.rest, subs, events.append) == 1
    assert [(e.state, e.code, e.key) for e in events] == [("error", "EGW00201", "005930")]
