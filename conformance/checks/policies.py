"""Error policies: OPSP0002 (POL-ALREADY-SUBSCRIBED), auth failures on REST and, from 1.1, on the
WebSocket (POL-AUTH-FAILED), and error bodies surfaced with their code (ERR-WS-BODY, ERR-REST-BODY).

The IUT contract asks a target to surface every error the broker reports as a ``status`` event
carrying the broker's code in any field (e.g. ``{"type":"status","state":"error","reason":"OPSP0007 ..."}``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from stockmon.conformance.errors import CheckFailure, HarnessError
from stockmon.conformance.evidence import Evidence, Record
from stockmon.conformance.protocol import (
    Packet,
    ack_code,
    ack_target,
    acks,
    authorization_of,
    client_packets,
    issued_token,
    mentions_code,
    quote_paths,
    release_tr_type,
    response_code,
    rest_path,
    slack,
    status_events,
    subscribe_tr_type,
)
from stockmon.conformance.registry import Verdict, check, failed, passed
from stockmon.spec import mock_profile_value, ws_answer_code


def _tr_type(p: Packet) -> object:
    header = (p.obj or {}).get("header")
    return header.get("tr_type") if isinstance(header, Mapping) else None


@check("POL-ALREADY-SUBSCRIBED")
def already_subscribed_key_released_then_resubscribed(ev: Evidence) -> Verdict:
    """On 'already subscribed' the client releases that one key, then subscribes it again.

    Only a packet with the broker's release ``tr_type`` (PKT-UNSUBSCRIBE, a broker fact for 1.0)
    releases: a registration packet with any other ``tr_type`` is refused by the broker, so the
    retry behind it meets 'already subscribed' again, and the policy fails on it.
    """
    code = ev.spec.clause("POL-ALREADY-SUBSCRIBED").string("code")
    sub_type = subscribe_tr_type(ev.spec)
    rel_type = release_tr_type(ev.spec)
    hits = acks(ev, code=code)
    if not hits:
        raise HarnessError(f"the mock never answered {code} (the injected fault did not fire)")
    hit = hits[0]
    conn = str(hit["conn"])
    target = ack_target(hit)
    after = [
        p
        for p in client_packets(ev, conn)
        if int(p.record["seq"]) > int(hit["seq"]) and p.kind in ("subscribe", "release")
    ]
    invalid = next(
        (
            p
            for p in after
            if _tr_type(p) not in (sub_type, rel_type) and (p.tr_id, p.tr_key) == target
        ),
        None,
    )
    if invalid is not None:
        answer = next(
            (a for a in acks(ev, conn) if int(a["seq"]) > int(invalid.record["seq"])), None
        )
        return failed(
            f"after {code} for {target[0]}:{target[1]} the target 'released' it with tr_type "
            f"{_tr_type(invalid)!r}, which is no release (tr_type {rel_type!r})",
            expected=f"force-unsubscribe that key with tr_type {rel_type!r}, then retry the subscribe",
            evidence=[hit, invalid.record, *([answer] if answer is not None else [])],
        )
    releases = [p for p in after if _tr_type(p) == rel_type]
    subscribes = [p for p in after if _tr_type(p) == sub_type]
    release = next((p for p in releases if (p.tr_id, p.tr_key) == target), None)
    early = next(
        (
            p
            for p in subscribes
            if (p.tr_id, p.tr_key) == target
            and (release is None or int(p.record["seq"]) < int(release.record["seq"]))
        ),
        None,
    )
    if early is not None:
        return failed(
            f"after {code} for {target[0]}:{target[1]} the target subscribed again without releasing it first",
            expected="force-unsubscribe that key, then retry the subscribe",
            evidence=[hit, early.record],
        )
    if release is None:
        return failed(
            f"after {code} for {target[0]}:{target[1]} the target never released that key",
            expected="force-unsubscribe that key, then retry the subscribe",
            evidence=[hit, *(p.record for p in after[:3])],
        )
    others = [p for p in releases if (p.tr_id, p.tr_key) != target]
    if others:
        return failed(
            f"the target also released {others[0].tr_id}:{others[0].tr_key}",
            expected=f"release only the key {code} was about",
            evidence=[hit, others[0].record],
        )
    retry = next(
        (
            p
            for p in subscribes
            if (p.tr_id, p.tr_key) == target and int(p.record["seq"]) > int(release.record["seq"])
        ),
        None,
    )
    if retry is None:
        return failed(
            f"the target released {target[0]}:{target[1]} but never subscribed it again",
            expected="release, then subscribe again",
            evidence=[hit, release.record],
        )
    return passed(
        f"{code} -> release {release.t - float(hit['t_spec']):.1f} s later -> subscribe "
        f"{retry.t - release.t:.1f} s after that"
    )


def _surfaced(ev: Evidence, code: str, after: Record, what: str, expected: str) -> Verdict:
    t = float(after["t_spec"]) - slack(ev)
    for e in status_events(ev):
        if e.t_spec >= t and mentions_code(e, code):
            return passed(f"{what} {code} surfaced as a status event: {dict(e.data)}")
    return failed(
        f"{what} {code} was never surfaced on stdout",
        expected=expected,
        evidence=[after],
    )


@check("ERR-WS-BODY")
def ws_error_body_code_surfaced(ev: Evidence) -> Verdict:
    """A WebSocket error body ({"body":{"msg1","msg_cd"}}) is read: its code reaches a status event."""
    code = ws_answer_code(ev.spec, "internal_error")
    hits = acks(ev, code=code)
    if not hits:
        raise HarnessError(f"the mock never answered {code} (the injected fault did not fire)")
    return _surfaced(
        ev,
        code,
        hits[0],
        "the WebSocket error",
        "the error body's msg_cd in a status event (the error is read, not swallowed)",
    )


def _rest_error_code(ev: Evidence) -> str:
    code = mock_profile_value(ev.spec, "rest_rate_limit")
    if not isinstance(code, str):
        raise HarnessError("spec mock_profile has no rest_rate_limit code")
    return code


@check("ERR-REST-BODY")
def rest_error_body_code_surfaced(ev: Evidence) -> Verdict:
    """A REST error body ({"rt_cd":"1","msg_cd","msg1"}) is read: its code reaches a status event."""
    code = _rest_error_code(ev)
    for req in ev.requests():
        resp = ev.response_to(req)
        if resp is not None and response_code(resp) == code:
            return _surfaced(
                ev,
                code,
                resp,
                "the REST error",
                "the error body's msg_cd in a status event (the error is read, not swallowed)",
            )
    if not _quote_requests(ev):
        return failed(
            "the target made no authenticated REST request, so no REST error could reach it",
            expected="a REST quote snapshot of each subscribed key at start (IUT contract)",
        )
    raise HarnessError(f"no REST response carried the injected {code}")


def _request_key(req: Record) -> tuple[Any, ...]:
    query = req.get("query")
    q = tuple(sorted(query.items())) if isinstance(query, Mapping) else ()
    return (req.get("method"), req.get("path"), q)


def _quote_requests(ev: Evidence) -> list[Record]:
    return [r for r in ev.requests() if r.get("path") in quote_paths(ev.spec)]


def _auth_failures(ev: Evidence) -> list[tuple[Record, Record]]:
    """Authenticated requests answered with an auth-failure code, with their responses."""
    codes = set(ev.spec.clause("POL-AUTH-FAILED").strings("rest_codes"))
    out = []
    for req in _quote_requests(ev):
        resp = ev.response_to(req)
        if resp is not None and response_code(resp) in codes:
            out.append((req, resp))
    if out:
        return out
    if not _quote_requests(ev):
        raise CheckFailure(
            "the target made no authenticated REST request, so the auth policy was never exercised",
            expected="a REST quote snapshot of each subscribed key at start (IUT contract)",
        )
    raise HarnessError("no authenticated request was answered with an auth-failure code")


@check("POL-AUTH-FAILED")
def auth_failure_refreshes_token_then_retries(ev: Evidence) -> Verdict:
    """An auth-failure code makes the client request a new token, then retry the request with it."""
    token_type = ev.spec.clause("TOKEN-KIS-BEARER").string("token_type")
    failures = _auth_failures(ev)
    req, resp = failures[0]
    code = response_code(resp)
    token_path = rest_path(ev.spec, "token")
    later = [r for r in ev.requests() if int(r["seq"]) > int(resp["seq"])]
    same = [r for r in later if _request_key(r) == _request_key(req)]
    fresh: tuple[Record, str] | None = None
    for r in later:
        if r.get("path") != token_path:
            continue
        tok = issued_token(ev.response_to(r))
        if tok is not None:
            fresh = (r, tok)
            break
    if fresh is None:
        early = same[:1]
        return failed(
            f"after {code} the target never obtained a new token"
            + (" (it retried with the old one)" if early else ""),
            expected=f"{code} -> POST {token_path} -> the request retried with the new token",
            evidence=[req, resp, *(early[0:1])],
        )
    treq, tok = fresh
    tresp = ev.response_to(treq)
    assert tresp is not None
    before = [r for r in same if int(r["seq"]) < int(treq["seq"])]
    if before:
        return failed(
            f"after {code} the target retried the request before refreshing its token",
            expected="force a token refresh first, then retry",
            evidence=[req, resp, before[0]],
        )
    retry = next((r for r in same if int(r["seq"]) > int(tresp["seq"])), None)
    if retry is None:
        return failed(
            f"after {code} the target refreshed its token but never retried the request",
            expected=f"the failed request ({req.get('method')} {req.get('path')}) retried once",
            evidence=[req, resp, treq],
        )
    auth = authorization_of(retry, ev.spec) or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != token_type.lower() or value.strip() != tok:
        return failed(
            "the retried request did not carry the token just issued",
            expected=f"authorization: {token_type} <the new token>",
            evidence=[treq, retry],
        )
    return passed(
        f"{code} -> token refresh {float(treq['t_spec']) - float(resp['t_spec']):.1f} s later -> retry with the new token"
    )


@check("POL-AUTH-FAILED")
def auth_failure_retried_at_most_once(ev: Evidence) -> Verdict:
    """A request that keeps failing with an auth code is retried once, then given up (no loop)."""
    retries = ev.spec.clause("POL-AUTH-FAILED").integer("max_retries")
    failures = _auth_failures(ev)
    per: dict[tuple[Any, ...], list[Record]] = defaultdict(list)
    for req, _ in failures:
        per[_request_key(req)].append(req)
    for key, reqs in per.items():
        if len(reqs) > 1 + retries:
            return failed(
                f"{key[0]} {key[1]} was attempted {len(reqs)} times, each failing with an auth code",
                expected=f"one retry after a token refresh ({1 + retries} attempts), then a clear error",
                evidence=reqs[: 2 + retries],
            )
    worst = max(len(v) for v in per.values())
    return passed(f"at most {worst} attempt(s) per request under persistent auth failure")


@check("POL-AUTH-FAILED")
def invalid_approval_key_renewed_then_reconnected(ev: Evidence) -> Verdict:
    """On the WebSocket's invalid-approval code: new approval key, reconnect, resubscribe with it."""
    clause = ev.spec.clause("POL-AUTH-FAILED")
    codes = set(clause.strings("ws_codes"))
    hits = [a for a in acks(ev) if ack_code(a) in codes]
    if not hits:
        raise HarnessError("the mock never answered an invalid-approval code")
    hit = hits[0]
    conn = str(hit["conn"])
    sock = next((s for s in ev.sockets() if s.conn == conn), None)
    approval = rest_path(ev.spec, "approval")
    new_keys: set[str] = set()
    for r in ev.requests(approval):
        if int(r["seq"]) < int(hit["seq"]):
            continue
        resp = ev.response_to(r)
        body = resp.get("body") if resp is not None else None
        if isinstance(body, Mapping):
            new_keys.update(str(v) for v in body.values() if isinstance(v, str))
    if not new_keys:
        return failed(
            f"after {ack_code(hit)} the target requested no new approval key",
            expected=" -> ".join(clause.strings("ws_actions")),
            evidence=[hit],
        )
    if sock is None or sock.close_record is None:
        return failed(
            f"after {ack_code(hit)} the target kept using {conn}",
            expected="reconnect: close the socket, then open a new one",
            evidence=[hit],
        )
    nxt = [s for s in ev.sockets() if int(s.open_record["seq"]) > int(sock.close_record["seq"])]
    if not nxt:
        return failed(
            f"after {ack_code(hit)} the target closed {conn} but never reconnected",
            expected="reconnect and resubscribe",
            evidence=[hit, sock.close_record],
        )
    subs = [p for p in client_packets(ev, nxt[0].conn) if p.kind == "subscribe"]
    wanted = set(ev.subscriptions)
    got = {(p.tr_id, p.tr_key) for p in subs if p.approval_key in new_keys}
    if not wanted <= got:
        missing = wanted - got
        return failed(
            f"on the new socket {len(missing)} subscription(s) were not sent with the new approval key",
            expected="every subscription resent with the new approval key",
            evidence=[hit, nxt[0].open_record, *(p.record for p in subs[:3])],
        )
    return passed(
        f"{ack_code(hit)} -> new approval key -> reconnect -> {len(wanted)} subscriptions resent"
    )
