"""REST side of the KIS mock: tokens, approval, quotes and the auth codes of each profile."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from stockmon.mockserver import KisMock, MockConfig
from stockmon.schemas import errors as schema_errors
from stockmon.spec import load_spec

from ..support import KIS, get_approval, get_token, kr_quote, quote_headers

S11 = load_spec("1.1")
S10 = load_spec("1.0")


# --- TOKEN-KIS-BEARER / TOKEN-KIS-EXPIRY ------------------------------------------------------
async def test_token_response_has_spec_shape_and_lifetime(
    mock: KisMock, client: httpx.AsyncClient
) -> None:
    """tokenP answers a Bearer token valid for the spec's validity, expiry in KST."""
    r = await get_token(client, mock)
    assert r.status_code == 200
    body = r.json()
    assert schema_errors("kis-token-response", body) == []
    assert body["expires_in"] == S11.clause("TOKEN-KIS-BEARER").integer("validity_s")
    expiry = S11.clause("TOKEN-KIS-EXPIRY")
    fmt = expiry.string("expired_format")
    kst_now = datetime.now(UTC).replace(tzinfo=None) + timedelta(
        seconds=expiry.integer("utc_offset_s")
    )
    expires = datetime.strptime(body["access_token_token_expired"], fmt)
    assert abs((expires - kst_now).total_seconds() - body["expires_in"]) < 60


async def test_credential_lengths_match_real_ones(mock: KisMock) -> None:
    """Test credentials are shaped like real ones (appkey 36, appsecret 180)."""
    lengths = KIS["credential_lengths"]
    assert len(mock.app_key) == lengths["appkey"]
    assert len(mock.app_secret) == lengths["appsecret"]


async def test_same_token_within_reuse_window(client: httpx.AsyncClient, mock: KisMock) -> None:
    """A second request inside the reuse window gets the same token (throttle off)."""
    mock.faults.throttle_tokens(False)
    a = (await get_token(client, mock)).json()["access_token"]
    b = (await get_token(client, mock)).json()["access_token"]
    assert a == b
    issued = [r for r in mock.trace.records() if r["kind"] == "token_issued"]
    assert [r["reused"] for r in issued] == [False, True]


@pytest.mark.parametrize(
    "mock_config", [MockConfig(token_throttle=False, token_reuse_window_s=10, time_scale=100)]
)
async def test_new_token_after_reuse_window(client: httpx.AsyncClient, mock: KisMock) -> None:
    """After the reuse window a request gets a fresh token."""
    a = (await get_token(client, mock)).json()["access_token"]
    await asyncio.sleep(0.15)
    b = (await get_token(client, mock)).json()["access_token"]
    assert a != b


# --- TOKEN-KIS-THROTTLE ----------------------------------------------------------------------
async def test_throttle_second_request_within_a_minute_in_1_1(
    client: httpx.AsyncClient, mock: KisMock
) -> None:
    """1.1 profile: a second tokenP within the interval gets HTTP 403 EGW00133."""
    clause = S11.clause("TOKEN-KIS-THROTTLE")
    assert (await get_token(client, mock)).status_code == 200
    r = await get_token(client, mock)
    assert r.status_code == clause.integer("http_status")
    assert r.json()["error_code"] == clause.string("error_code")
    assert schema_errors("kis-token-throttle-error", r.json()) == []


@pytest.mark.parametrize("mock_config", [MockConfig(time_scale=600)])
async def test_throttle_window_runs_on_spec_time(client: httpx.AsyncClient, mock: KisMock) -> None:
    """The throttle window is spec time: at scale 600 a minute passes in 0.1 s."""
    assert (await get_token(client, mock)).status_code == 200
    await asyncio.sleep(0.15)
    assert (await get_token(client, mock)).status_code == 200


@pytest.mark.parametrize("mock_config", [MockConfig(spec_version="1.0")])
async def test_no_throttle_in_1_0(client: httpx.AsyncClient, mock: KisMock) -> None:
    """1.0 profile: the sheet knows no throttle; repeated requests succeed."""
    for _ in range(3):
        assert (await get_token(client, mock)).status_code == 200


# --- POL-AUTH-FAILED: auth codes per profile --------------------------------------------------
@pytest.mark.parametrize(
    ("mock_config", "kind"),
    [(MockConfig(spec_version="1.1"), "invalid"), (MockConfig(spec_version="1.0"), "invalid")],
)
async def test_bad_token_gets_profile_invalid_code(
    client: httpx.AsyncClient, mock: KisMock, kind: str
) -> None:
    """An unknown bearer token gets the profile's invalid-token code with the gateway status."""
    spec = load_spec(mock.config.spec_version)
    r = await kr_quote(client, mock, "not-a-token")
    assert r.status_code == KIS["gateway_error_status"]
    assert r.json()["msg_cd"] == spec.mock_profile["rest_auth_failure"][kind]
    assert schema_errors("kis-rest-error", r.json()) == []


@pytest.mark.parametrize(
    "mock_config",
    [
        MockConfig(spec_version="1.1", token_validity_s=60, time_scale=600),
        MockConfig(spec_version="1.0", token_validity_s=60, time_scale=600),
    ],
)
async def test_expired_token_gets_profile_expired_code(
    client: httpx.AsyncClient, mock: KisMock
) -> None:
    """A token past its lifetime gets EGW00123 in 1.1 and IGW00221 in 1.0."""
    spec = load_spec(mock.config.spec_version)
    body = (await get_token(client, mock)).json()
    assert body["expires_in"] == 60
    assert (await kr_quote(client, mock, body["access_token"])).status_code == 200
    await asyncio.sleep(0.15)
    r = await kr_quote(client, mock, body["access_token"])
    assert r.status_code == KIS["gateway_error_status"]
    assert r.json()["msg_cd"] == spec.mock_profile["rest_auth_failure"]["expired"]


async def test_revoked_token_is_invalid(client: httpx.AsyncClient, mock: KisMock) -> None:
    """revokeP revokes: the token then gets the invalid-token code."""
    token = (await get_token(client, mock)).json()["access_token"]
    r = await client.post(
        KIS["revoke"]["path"],
        json={"appkey": mock.app_key, "appsecret": mock.app_secret, "token": token},
    )
    assert r.status_code == 200
    assert schema_errors("kis-revoke-response", r.json()) == []
    r = await kr_quote(client, mock, token)
    assert r.json()["msg_cd"] == S11.mock_profile["rest_auth_failure"]["invalid"]


async def test_new_token_after_expire_fault(client: httpx.AsyncClient, mock: KisMock) -> None:
    """After expire_tokens the old token is expired and a new request issues a new token."""
    mock.faults.throttle_tokens(False)
    old = (await get_token(client, mock)).json()["access_token"]
    mock.faults.expire_tokens()
    assert (await kr_quote(client, mock, old)).json()["msg_cd"] == S11.mock_profile[
        "rest_auth_failure"
    ]["expired"]
    new = (await get_token(client, mock)).json()["access_token"]
    assert new != old
    assert (await kr_quote(client, mock, new)).status_code == 200


# --- WS-APPROVAL-KEY --------------------------------------------------------------------------
async def test_approval_key_from_secretkey_field(client: httpx.AsyncClient, mock: KisMock) -> None:
    """Approval takes the secret in 'secretkey' and answers an approval_key of the real length."""
    key = await get_approval(client, mock)
    assert len(key) == KIS["credential_lengths"]["approval_key"]
    r = await client.post(
        KIS["approval"]["path"],
        json={
            "grant_type": "client_credentials",
            "appkey": mock.app_key,
            "appsecret": mock.app_secret,
        },
    )
    assert r.status_code != 200


async def test_bad_credentials_on_token_endpoint(client: httpx.AsyncClient, mock: KisMock) -> None:
    """A wrong appsecret is refused in the token endpoint's own error shape."""
    r = await client.post(
        KIS["token"]["path"],
        json={"grant_type": "client_credentials", "appkey": mock.app_key, "appsecret": "x"},
    )
    assert r.status_code == S11.mock_profile["token_endpoint_error_status"]
    assert r.json()["error_code"] == S11.mock_profile["rest_credential_failure"]["appsecret"]


# --- quotes -----------------------------------------------------------------------------------
async def test_domestic_quote_from_simulator(client: httpx.AsyncClient, mock: KisMock) -> None:
    """inquire-price answers rt_cd 0 with the price field on the KRX grid."""
    token = (await get_token(client, mock)).json()["access_token"]
    r = await kr_quote(client, mock, token)
    assert r.status_code == 200
    body = r.json()
    assert body["rt_cd"] == S11.clause("ERR-REST-BODY").string("success_rt_cd")
    price = int(body["output"][KIS["quotes"]["KR"]["price_field"]])
    assert price == mock.world.sim.instrument("005930").last
    assert r.headers["tr_id"] == KIS["quotes"]["KR"]["tr_id"]


async def test_overseas_quote(client: httpx.AsyncClient, mock: KisMock) -> None:
    """The overseas price endpoint answers a decimal price for EXCD/SYMB."""
    token = (await get_token(client, mock)).json()["access_token"]
    q = KIS["quotes"]["US"]
    h = quote_headers(mock, token, q["tr_id"])
    r = await client.get(
        q["path"], params={q["exchange_param"]: "NAS", q["key_param"]: "AAPL"}, headers=h
    )
    assert r.status_code == 200
    assert re.fullmatch(r"\d+\.\d+", r.json()["output"][q["price_field"]])


async def test_wrong_tr_id_is_refused(client: httpx.AsyncClient, mock: KisMock) -> None:
    """A quote call with another TR's tr_id header is an error, not a price."""
    token = (await get_token(client, mock)).json()["access_token"]
    q = KIS["quotes"]["KR"]
    r = await client.get(
        q["path"],
        params={q["market_param"]: q["market_value"], q["key_param"]: "005930"},
        headers=quote_headers(mock, token, KIS["quotes"]["US"]["tr_id"]),
    )
    assert r.json()["rt_cd"] != "0"


async def test_bad_query_and_unknown_path(client: httpx.AsyncClient, mock: KisMock) -> None:
    """Bad parameters and unknown paths get clear errors and the server stays up."""
    token = (await get_token(client, mock)).json()["access_token"]
    assert (await kr_quote(client, mock, token, key="bad!")).json()["rt_cd"] != "0"
    assert (await client.get("/nope")).status_code == 404
    assert (await client.post(KIS["token"]["path"], content=b"\xff\x00garbage")).status_code >= 400
    assert (await kr_quote(client, mock, token)).status_code == 200


async def test_malformed_http_gets_400(mock: KisMock) -> None:
    """Bytes that are not HTTP get a 400, and the next connection still works."""
    reader, writer = await asyncio.open_connection("127.0.0.1", mock.rest_port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(4096), 5)
    assert data.startswith(b"HTTP/1.1 400")
    writer.close()
    async with httpx.AsyncClient(base_url=mock.rest_url) as c:
        assert (await get_token(c, mock)).status_code == 200


async def test_one_keep_alive_connection_serves_request_after_request(mock: KisMock) -> None:
    """Twenty requests in turn on one connection get twenty answers (the watch on the connection
    while a request is answered never overlaps the next request's read, nor loses its bytes)."""
    path = next(iter(load_spec().rest["kis"]["quotes"].values()))["path"]
    mock.faults.delay_rest(0.05 * mock.config.time_scale, n=10)  # answers held: the watch reads
    reader, writer = await asyncio.open_connection("127.0.0.1", mock.rest_port)
    try:
        for i in range(20):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: mock\r\n\r\n".encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 "), (i, head[:40])
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await asyncio.wait_for(reader.readexactly(length), 5)
        # two requests in one write (pipelined): both answered, in order
        writer.write(b"GET /a HTTP/1.1\r\nHost: m\r\n\r\nGET /b HTTP/1.1\r\nHost: m\r\n\r\n")
        await writer.drain()
        seen = b""
        while seen.count(b"HTTP/1.1 404") < 2:
            seen += await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


# --- the OAuth endpoints' refusals: one shape, codes from the spec ------------------------------
@pytest.mark.parametrize("endpoint", ["token", "approval"])
async def test_bad_grant_type_refused_in_the_oauth_error_shape(
    client: httpx.AsyncClient, mock: KisMock, endpoint: str
) -> None:
    """A wrong grant_type gets the OAuth endpoints' error shape with the spec's mock code."""
    spec = load_spec()
    path = spec.rest["kis"][endpoint]["path"]
    r = await client.post(path, json={"grant_type": "password", "appkey": mock.app_key})
    assert r.status_code == spec.mock_profile["token_endpoint_error_status"]
    assert schema_errors("kis-oauth-error", r.json()) == []
    assert r.json()["error_code"] == spec.mock_profile["mock_codes"]["bad_body"]


async def test_405_lists_the_allowed_methods(client: httpx.AsyncClient) -> None:
    """A known path asked with another method is 405 with an Allow header (RFC 9110)."""
    path = load_spec().rest["kis"]["token"]["path"]
    r = await client.get(path)
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
