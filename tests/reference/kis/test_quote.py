"""``stockmon quote`` as a user runs it: a real process against the mock and a real redis-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from fleet_support import PYTHON, client_env, subprocess_env, token_requests
from redis.asyncio import Redis

from stockmon.mockserver import KisMock, MockConfig
from stockmon.reference.errors import RemoteProtocolError
from stockmon.reference.fleet.redis_conn import LOCAL_FALLBACK_WARNING
from stockmon.reference.kis.quote import price_from_body, quote_request
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
# Canary credentials: they must never show in output, logs or Redis.
CANARY_KEY = "PS" + "CANARYKEY" * 3 + "abcdefg"
CANARY_SECRET = "CANARYSECRET" * 15


@pytest.fixture
async def mock() -> AsyncIterator[KisMock]:
    """A mock whose test credentials are the canaries."""
    config = MockConfig(time_scale=1000.0, app_key=CANARY_KEY, app_secret=CANARY_SECRET)
    async with KisMock(config) as m:
        yield m


async def stockmon(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run ``stockmon ARGS`` in a child process; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "stockmon.cli",
        *args,
        env=subprocess_env(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_quote_prints_kr_and_us_prices(mock: KisMock, redis_url: str) -> None:
    """``stockmon quote 005930 DNASAAPL`` prints one line per key with its current price."""
    code, out, err = await stockmon(client_env(mock, redis_url), "quote", "005930", "DNASAAPL")
    assert code == 0, err
    lines = out.splitlines()
    assert [ln.split()[:2] for ln in lines] == [["005930", "KR"], ["DNASAAPL", "US"]]
    assert float(lines[0].split()[2]) > 0 and lines[0].endswith("KRW")
    assert float(lines[1].split()[2]) > 0 and lines[1].endswith("USD")


async def test_quote_json_output(mock: KisMock, redis_url: str) -> None:
    """``--json`` prints one JSON object per key with the price as a number."""
    code, out, err = await stockmon(client_env(mock, redis_url), "quote", "--json", "DNASAAPL")
    assert code == 0, err
    obj = json.loads(out)
    assert (
        obj["key"] == "DNASAAPL" and obj["market"] == "US" and isinstance(obj["price"], int | float)
    )


async def test_second_process_reuses_the_fleet_token(mock: KisMock, redis_url: str) -> None:
    """Two quote processes one after the other: one token request, the second reads Redis."""
    env = client_env(mock, redis_url)
    assert (await stockmon(env, "quote", "005930"))[0] == 0
    assert (await stockmon(env, "quote", "000660"))[0] == 0
    assert len(token_requests(mock)) == 1


async def test_without_redis_in_mock_env_is_quiet_unless_verbose(mock: KisMock) -> None:
    """REDIS_URL unset with STOCKMON_ENV=mock: works with a clean stderr; -v tells the fallback."""
    code, out, err = await stockmon(client_env(mock), "quote", "005930")
    assert code == 0, err
    assert out.startswith("005930 KR ")
    assert err.strip() == ""
    code, _, err = await stockmon(client_env(mock), "-v", "quote", "000660")
    assert code == 0 and err.count(LOCAL_FALLBACK_WARNING) == 1


async def test_without_redis_in_prod_is_refused(mock: KisMock) -> None:
    """REDIS_URL unset with STOCKMON_ENV=prod: one clear line naming TOKEN-KIS-LOCK, no request."""
    env = client_env(mock, STOCKMON_ENV="prod")
    code, out, err = await stockmon(env, "quote", "005930")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "REDIS_URL" in err and "TOKEN-KIS-LOCK" in err
    assert token_requests(mock) == []


async def test_bad_key_is_a_one_line_error_before_any_request(mock: KisMock) -> None:
    """An unknown key format fails with one line and never reaches the broker."""
    code, _out, err = await stockmon(client_env(mock), "quote", "not-a-key")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not-a-key" in err
    assert mock.trace.records() == [] or token_requests(mock) == []


async def test_canary_secrets_never_leak(mock: KisMock, redis_url: str) -> None:
    """With debug logs on, the app key/secret and the token never reach output, logs or Redis."""
    code, out, err = await stockmon(client_env(mock, redis_url), "-v", "quote", "005930")
    assert code == 0, err
    issued = [
        r["token"] for r in mock.trace.records() if r["kind"] == "response" and r.get("token")
    ]
    assert len(issued) == 1
    for text in (out, err):
        assert CANARY_KEY not in text and CANARY_SECRET not in text and issued[0] not in text
    redis = Redis.from_url(redis_url)
    try:
        for key in await redis.keys("*"):
            assert CANARY_KEY.encode() not in key and CANARY_SECRET.encode() not in key
            kind = await redis.type(key)
            if kind == b"hash":
                fields = await redis.hgetall(key)
                for field, value in fields.items():
                    assert CANARY_KEY.encode() not in value and CANARY_SECRET.encode() not in value
                    if field != b"value":  # the token cache's own field holds the token
                        assert issued[0].encode() not in value
            elif kind == b"string":
                value = await redis.get(key)
                assert CANARY_KEY.encode() not in value and CANARY_SECRET.encode() not in value
                assert issued[0].encode() not in value
    finally:
        await redis.aclose()


def test_quote_request_is_built_from_the_spec() -> None:
    """KR: market code + key; US: exchange group + symbol, parameter names from the spec."""
    kr = quote_request("005930", SPEC)
    ep = SPEC.rest["kis"]["quotes"]
    assert kr.params == {
        ep["KR"]["market_param"]: ep["KR"]["market_value"],
        ep["KR"]["key_param"]: "005930",
    }
    us = quote_request("DNYSIBM", SPEC)
    assert us.params == {ep["US"]["exchange_param"]: "NYS", ep["US"]["key_param"]: "IBM"}
    assert us.tr_id == ep["US"]["tr_id"]


async def test_quote_fails_within_the_command_timeout_when_rest_hangs() -> None:
    """REST-TIMEOUT: every REST answer delayed for ever -> exit 2 within command_timeout_s, one error line."""
    spec = load_spec("1.2")
    budget = spec.clause("REST-TIMEOUT").number("command_timeout_s")
    request = spec.clause("REST-TIMEOUT").number("request_timeout_s")
    async with KisMock(MockConfig(spec_version="1.2", time_scale=100.0)) as hung:
        hung.faults.delay_rest(86400.0, n=None)  # 864 real seconds: never, for this test
        start = asyncio.get_running_loop().time()
        code, out, err = await stockmon(client_env(hung), "quote", "005930")
        took = asyncio.get_running_loop().time() - start
    assert code == 2 and out == ""
    assert budget <= took < budget + 5.0, f"{took:.1f} s"
    lines = err.strip().splitlines()
    assert lines[-1].startswith("stockmon quote: NetworkError:") and "005930" in lines[-1]
    assert f"{budget:.1f} s" in lines[-1] and "Traceback" not in err
    # The warnings before it name the call that timed out, each within request_timeout_s.
    assert all(f"timed out after {request:.2f} s" in line for line in lines[:-1]), lines


@pytest.mark.parametrize(
    "raw",
    ["１２３", "٣٤٥", "1_000", " 2425 ", "2425\n", "1e5", "NaN", "Infinity", "+5", "", True, None],
)
def test_quote_price_takes_ascii_digits_only(raw: Any) -> None:
    """A REST price is read with the frame parser's digit rule: no full-width, Arabic-Indic, _ or padding."""
    with pytest.raises(RemoteProtocolError, match="not an ASCII decimal"):
        price_from_body({"output": {"stck_prpr": raw}}, "stck_prpr")


@pytest.mark.parametrize(
    ("raw", "price"), [("71000", "71000"), ("189.8400", "189.8400"), ("-3", "-3"), (71000, "71000")]
)
def test_quote_price_reads_plain_decimals(raw: Any, price: str) -> None:
    """Plain ASCII prices (a JSON number too) still parse, exactly."""
    assert price_from_body({"output": {"stck_prpr": raw}}, "stck_prpr") == Decimal(price)
