"""Helpers shared by the mock-server tests: REST calls and WS packets the way a client sends them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from stockmon.mockserver import KisMock
from stockmon.spec import load_spec

SPEC = load_spec("1.1")
KIS = SPEC.rest["kis"]
PING = SPEC.clause("KA-PING").string("tr_id")


def kiwoom_token(env: dict[str, str]) -> httpx.Response:
    """POST the Kiwoom token endpoint with the credentials of a Kiwoom mock's exports."""
    rest = SPEC.rest["kiwoom"]
    return httpx.post(
        env["KIWOOM_REST_URL"] + rest["token"]["path"],
        json={
            "grant_type": rest["grant_type"],
            "appkey": env["KIWOOM_APP_KEY"],
            "secretkey": env["KIWOOM_APP_SECRET"],
        },
    )


def code(name: str, version: str = "1.1") -> str:
    """The mock's code for a situation, from the spec (never a literal in a test either)."""
    return str(load_spec("1.1").mock_profile["ws_codes"][name])


async def get_token(client: httpx.AsyncClient, mock: KisMock) -> httpx.Response:
    """POST /oauth2/tokenP with the mock's credentials."""
    return await client.post(
        KIS["token"]["path"],
        json={
            "grant_type": "client_credentials",
            "appkey": mock.app_key,
            "appsecret": mock.app_secret,
        },
    )


async def get_approval(
    client: httpx.AsyncClient, mock: KisMock, appkey: str | None = None, secret: str | None = None
) -> str:
    """POST /oauth2/Approval and return the approval key."""
    r = await client.post(
        KIS["approval"]["path"],
        json={
            "grant_type": "client_credentials",
            "appkey": appkey or mock.app_key,
            "secretkey": secret or mock.app_secret,
        },
    )
    assert r.status_code == 200, r.text
    return str(r.json()["approval_key"])


def quote_headers(mock: KisMock, token: str, tr_id: str | None = None) -> dict[str, str]:
    """Headers of a domestic inquire-price call."""
    return {
        "authorization": f"Bearer {token}",
        "appkey": mock.app_key,
        "appsecret": mock.app_secret,
        "tr_id": tr_id or KIS["quotes"]["KR"]["tr_id"],
        "custtype": "P",
    }


async def kr_quote(
    client: httpx.AsyncClient, mock: KisMock, token: str, key: str = "005930"
) -> httpx.Response:
    """GET the domestic inquire-price endpoint."""
    q = KIS["quotes"]["KR"]
    return await client.get(
        q["path"],
        params={q["market_param"]: q["market_value"], q["key_param"]: key},
        headers=quote_headers(mock, token),
    )


def sub(approval: str, tr_id: str, key: str, tr_type: str = "1", custtype: str = "P") -> str:
    """A subscribe (tr_type 1) or unsubscribe (2) packet."""
    return json.dumps(
        {
            "header": {
                "approval_key": approval,
                "custtype": custtype,
                "tr_type": tr_type,
                "content-type": "utf-8",
            },
            "body": {"input": {"tr_id": tr_id, "tr_key": key}},
        }
    )


async def recv_control(ws: ClientConnection, timeout_s: float = 5.0) -> dict[str, Any]:
    """The next JSON control frame (skipping data frames and PINGPONGs)."""
    async with asyncio.timeout(timeout_s):
        while True:
            msg = await ws.recv()
            assert isinstance(msg, str)
            if msg[:1] in "01":
                continue
            obj = json.loads(msg)
            if obj.get("header", {}).get("tr_id") == PING:
                continue
            return dict(obj)


async def recv_matching(ws: ClientConnection, pred: Any, timeout_s: float = 5.0) -> str:
    """The next raw text frame for which ``pred(text)`` holds."""
    async with asyncio.timeout(timeout_s):
        while True:
            msg = await ws.recv()
            assert isinstance(msg, str)
            if pred(msg):
                return msg
