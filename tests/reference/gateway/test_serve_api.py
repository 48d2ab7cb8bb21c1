"""``stockmon serve`` over real loopback sockets against the KIS mock (API-AUTH ... API-METRICS)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from serve_support import Service, start_service

from stockmon import schemas
from stockmon.spec import load_spec

pytestmark = pytest.mark.slow
SPEC = load_spec("1.2")


def _path(service: Service, clause: str, value: str, key: str = "005930") -> str:
    return service.url + service.spec.clause(clause).string(value).replace("{key}", key)


def test_rest_needs_the_key(service: Service) -> None:
    """API-AUTH: no key and a wrong key are 401 with an api-error body; the right key gets the quote."""
    auth = service.spec.clause("API-AUTH")
    url = _path(service, "API-SNAPSHOT", "quote_path")
    header = auth.string("rest_header")
    for headers in ({}, {header: f"{auth.string('rest_scheme')} wrong-{service.key}"}):
        r = httpx.get(url, headers=headers)
        assert r.status_code == auth.integer("rest_status")
        assert schemas.is_valid("api-error", r.json())
    r = httpx.get(url, headers=service.auth())
    assert r.status_code == service.spec.clause("API-SNAPSHOT").integer("ok_status")
    assert schemas.errors("api-quote", r.json()) == []


def test_unknown_key_is_404_with_the_patterns(service: Service) -> None:
    """API-SNAPSHOT: a key without data is 404 and the body names every market's key pattern."""
    snap = service.spec.clause("API-SNAPSHOT")
    r = httpx.get(_path(service, "API-SNAPSHOT", "book_path", "AAPL"), headers=service.auth())
    assert r.status_code == snap.integer("unknown_key_status")
    body = r.json()
    assert body["error"] == snap.string("unknown_key_error")
    assert set(body["key_patterns"]) == set(service.spec.markets)


def test_status_and_health(service: Service) -> None:
    """API-STATUS and API-HEALTH: a schema-valid status with the socket open; health needs no key."""
    r = httpx.get(_path(service, "API-STATUS", "path"), headers=service.auth())
    assert schemas.errors("api-status", r.json()) == []
    assert r.json()["socket"] == "open"
    health = service.spec.clause("API-HEALTH")
    for path in ("liveness_path", "readiness_path"):
        r = httpx.get(service.url + health.string(path))
        assert r.status_code == health.integer("ok_status")
        assert schemas.is_valid("api-health", r.json())


def test_metrics_parse_and_hold_no_secret(service: Service) -> None:
    """API-METRICS: the key is required; the text parses and names every metric of the clause."""
    url = _path(service, "API-METRICS", "path")
    assert httpx.get(url).status_code == service.spec.clause("API-AUTH").integer("rest_status")
    text = httpx.get(url, headers=service.auth()).text
    names = {f.name for f in text_string_to_metric_families(text)}
    for m in service.spec.clause("API-METRICS").mapping("metrics").values():
        assert str(m["name"]).removesuffix("_total") in names
    assert service.key not in text


async def _stream(service: Service, keys: list[str], n: int) -> list[dict[str, Any]]:
    async with websockets.connect(
        service.ws_url,
        subprotocols=service.subprotocols(service.ticket()),  # type: ignore[arg-type]
    ) as ws:
        got = [json.loads(await ws.recv())]
        await ws.send(json.dumps({"type": "subscribe", "keys": keys}))
        while len(got) < n:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        return got


async def test_stream_welcome_then_events_in_sequence(service: Service) -> None:
    """API-STREAM: welcome first, then ack, snapshot and events, seq 1, 2, 3 ... every message valid."""
    got = await _stream(service, ["005930"], 12)
    stream = service.spec.clause("API-STREAM")
    assert [m["type"] for m in got[:3]] == ["welcome", "ack", "snapshot"]
    start, step = stream.integer("seq_start"), stream.integer("seq_step")
    assert [m["seq"] for m in got] == [start + i * step for i in range(len(got))]
    assert {m["type"] for m in got[3:]} == {"event"}
    for m in got:
        assert schemas.errors(f"api-stream-{m['type']}", m) == []


async def test_stream_without_a_valid_ticket_is_closed_4401(service: Service) -> None:
    """API-AUTH: no ticket, a made-up one and a used one are closed with 4401 before any message."""
    auth = service.spec.clause("API-AUTH")
    used = service.ticket()
    async with websockets.connect(service.ws_url, subprotocols=service.subprotocols(used)):  # type: ignore[arg-type]
        pass
    offers = [
        [auth.string("ws_subprotocol")],
        service.subprotocols("x" * 43),
        service.subprotocols(used),
    ]
    for offer in offers:
        async with websockets.connect(service.ws_url, subprotocols=offer) as ws:  # type: ignore[arg-type]
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == auth.integer("ws_close_code")


async def test_oversize_message_closes_1009_and_bad_one_gets_an_error(service: Service) -> None:
    """API-STREAM: a malformed message gets error bad_message; one over max_message_bytes closes 1009."""
    stream = service.spec.clause("API-STREAM")
    async with websockets.connect(
        service.ws_url,
        subprotocols=service.subprotocols(service.ticket()),  # type: ignore[arg-type]
    ) as ws:
        await ws.recv()
        await ws.send('{"type": "ping"}')
        answer = json.loads(await ws.recv())
        assert answer["type"] == "error"
        assert answer["code"] == stream.mapping("error_codes")["bad_message"]
        await ws.send(
            json.dumps({"type": "subscribe", "keys": ["0" * (stream.integer("max_message_bytes"))]})
        )
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == stream.integer("oversize_close_code")


async def test_a_reader_that_stalls_does_not_hold_up_the_others(service: Service) -> None:
    """API-BACKPRESSURE: one subscriber that never reads; another still gets fresh events in order."""
    stalled = await websockets.connect(
        service.ws_url,
        subprotocols=service.subprotocols(service.ticket()),  # type: ignore[arg-type]
        max_queue=1,
    )
    try:
        await stalled.send(json.dumps({"type": "subscribe", "keys": ["005930", "DNASAAPL"]}))
        got = await _stream(service, ["005930", "DNASAAPL"], 30)
        seqs = [m["seq"] for m in got]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        await stalled.close()


def test_the_42nd_subscription_is_409_naming_the_clause(service: Service) -> None:
    """API-SUBSCRIPTIONS: up to max_registrations are accepted; the next is 409 naming WS-SESSION-LIMITS."""
    subs = service.spec.clause("API-SUBSCRIPTIONS")
    limits = service.spec.clause(subs.string("limit_clause"))
    limit = limits.integer(subs.string("limit_value"))
    url = _path(service, "API-SUBSCRIPTIONS", "path")
    have = len(httpx.get(url, headers=service.auth()).json()["subscriptions"])
    added = [{"tr_id": "H0STCNT0", "key": f"{100 + i:06d}"} for i in range(limit - have)]
    try:
        for item in added:
            r = httpx.post(url, json=item, headers=service.auth())
            assert r.status_code == subs.integer("created_status"), r.text
        r = httpx.post(url, json={"tr_id": "H0STCNT0", "key": "999999"}, headers=service.auth())
        assert r.status_code == subs.integer("over_limit_status")
        assert r.json()["clause"] == limits.id
        assert r.json()["error"] == subs.string("over_limit_error")
        bad = httpx.post(url, json={"tr_id": "H0STCNT0", "key": "AAPL"}, headers=service.auth())
        assert bad.status_code == subs.integer("invalid_status")
    finally:
        for item in added:
            httpx.delete(url, params=item, headers=service.auth())
    assert len(httpx.get(url, headers=service.auth()).json()["subscriptions"]) == have


async def test_a_foreign_origin_is_closed_4403(service: Service) -> None:
    """API-CORS: a WebSocket handshake from an origin not configured is closed with 4403."""
    cors = service.spec.clause("API-CORS")
    async with websockets.connect(
        service.ws_url,
        subprotocols=service.subprotocols(service.ticket()),  # type: ignore[arg-type]
        origin="http://evil.example",  # type: ignore[arg-type]
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == cors.integer("ws_origin_close_code")


async def test_rapid_unauthenticated_connects_leave_a_subscriber_unaffected(
    service: Service,
) -> None:
    """Bad input: 200 quick connects without a ticket are each closed 4401; a live stream goes on."""
    auth = service.spec.clause("API-AUTH")
    codes: list[int | None] = []

    async def intruder() -> None:
        async with websockets.connect(
            service.ws_url,
            subprotocols=[auth.string("ws_subprotocol")],  # type: ignore[list-item]
        ) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        codes.append(closed.value.rcvd.code if closed.value.rcvd else None)

    async with websockets.connect(
        service.ws_url,
        subprotocols=service.subprotocols(service.ticket()),  # type: ignore[arg-type]
    ) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribe", "keys": ["005930"]}))
        await asyncio.gather(*(intruder() for _ in range(200)))
        seqs = [json.loads(await asyncio.wait_for(ws.recv(), 10))["seq"] for _ in range(10)]
    assert codes == [auth.integer("ws_close_code")] * 200
    assert seqs == list(range(seqs[0], seqs[0] + 10))


def test_the_canary_key_never_leaves_the_service(service: Service) -> None:
    """API-AUTH key_in_logs: after every test above, the key is in no log line and no answer."""
    answers = [
        httpx.get(_path(service, c, v), headers=service.auth()).text
        for c, v in (("API-STATUS", "path"), ("API-SUBSCRIPTIONS", "path"), ("API-METRICS", "path"))
    ]
    assert all(service.key not in a for a in answers)
    log = service.log.read_text()
    assert "GET /v1/status" in log  # the log is there and holds the access lines
    assert service.key not in log


def test_status_shows_the_token_expiry_and_metrics_count_its_refresh(tmp_path: Path) -> None:
    """API-STATUS token_expires_at follows the token in use; each refresh counts in the metric."""
    refresh = SPEC.clause("TOKEN-KIS-REFRESH").number("refresh_before_expiry_s")
    validity = refresh * 2  # the window opens 18 real s after issue: time to read the first expiry
    runs = start_service(
        tmp_path,
        time_scale=100.0,
        token_validity_s=validity,
        token_reuse_window_s=(validity - refresh) / 2,
        tick_rate_hz=0.5,
    )
    service = next(runs)
    try:
        status_url = _path(service, "API-STATUS", "path")
        first = httpx.get(status_url, headers=service.auth()).json()["token_expires_at"]
        assert isinstance(first, str)
        datetime.fromisoformat(first)  # RFC 3339
        metric = str(
            SPEC.clause("API-METRICS").mapping("metrics")["token_refreshes"]["name"]
        ).removesuffix("_total")
        deadline = time.monotonic() + 30
        refreshed = 0.0
        while time.monotonic() < deadline and not refreshed:
            text = httpx.get(_path(service, "API-METRICS", "path"), headers=service.auth()).text
            refreshed = sum(
                s.value
                for f in text_string_to_metric_families(text)
                if f.name == metric
                for s in f.samples
                if s.name.endswith("_total")
            )
            time.sleep(0.2)
        assert refreshed >= 1, "no token refresh counted within 30 s"
        assert refreshed < 3, "a refresh storm"
        later = httpx.get(status_url, headers=service.auth()).json()["token_expires_at"]
        assert datetime.fromisoformat(later) > datetime.fromisoformat(first)
    finally:
        runs.close()
