"""Packet shapes the client sends: subscribe (PKT-SUBSCRIBE), release (PKT-UNSUBSCRIBE, 1.1) and
the approval-key request whose key every subscribe must carry (WS-APPROVAL-KEY, 1.1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stockmon.conformance.evidence import Evidence
from stockmon.conformance.protocol import Packet, client_packets
from stockmon.conformance.registry import Verdict, check, failed, no_evidence, passed
from stockmon.schemas import errors as schema_errors


def _header_mismatch(p: Packet, values: Mapping[str, Any]) -> str | None:
    header = (p.obj or {}).get("header")
    if not isinstance(header, Mapping):
        return "no header object"
    for k, v in values.items():
        if header.get(k) != v:
            return f"header {k} is {header.get(k)!r}, not {v!r}"
    return None


def _judge_shape(ev: Evidence, kind: str, schema: str, clause_id: str, what: str) -> Verdict:
    clause = ev.spec.clause(clause_id)
    header = clause.mapping("header")
    packets = [p for p in client_packets(ev) if p.kind == kind]
    if not packets:
        return failed(
            f"the target sent no {what} packet",
            expected=f"{what} packets shaped like schema {schema}",
        )
    for p in packets:
        errs = schema_errors(schema, p.obj) if p.obj is not None else ["not a JSON object"]
        problem = errs[0] if errs else _header_mismatch(p, header)
        if problem:
            return failed(
                f"a {what} packet is malformed ({problem}): {p.record.get('text')}",
                expected=f"schema {schema}; header "
                + ", ".join(f"{k}={v!r}" for k, v in header.items()),
                evidence=[p.record],
            )
    return passed(f"{len(packets)} {what} packets, all valid against {schema}")


@check("PKT-SUBSCRIBE")
def subscribe_packets_match_schema(ev: Evidence) -> Verdict:
    """Every subscription request has the spec's header and body (schema kis-ws-subscribe)."""
    return _judge_shape(ev, "subscribe", "kis-ws-subscribe", "PKT-SUBSCRIBE", "subscribe")


@check("PKT-UNSUBSCRIBE")
def unsubscribe_packets_match_schema(ev: Evidence) -> Verdict:
    """Every release has the subscribe shape with the release tr_type (schema kis-ws-unsubscribe)."""
    if not any(p.kind == "release" for p in client_packets(ev)):
        return no_evidence(
            "the target sent no release packet",
            expected="release packets shaped like schema kis-ws-unsubscribe",
        )
    return _judge_shape(ev, "release", "kis-ws-unsubscribe", "PKT-UNSUBSCRIBE", "release")


@check("WS-APPROVAL-KEY")
def approval_key_requested_and_used(ev: Evidence) -> Verdict:
    """The WS approval key comes from the approval endpoint (body field secretkey) and every
    subscribe carries a key that endpoint issued."""
    clause = ev.spec.clause("WS-APPROVAL-KEY")
    path = clause.string("path")
    field = clause.string("response_field")
    requests = ev.requests(path)
    if not requests:
        return failed(
            f"the target never called {path}",
            expected=f"POST {path} with {clause.string('secret_field')} to get the approval key",
            evidence=ev.requests()[:4],
        )
    issued: dict[str, float] = {}
    for req in requests:
        errs = schema_errors("kis-approval-request", req.get("body"))
        if errs:
            return failed(
                f"the approval request is malformed: {errs[0]}",
                expected=f"schema kis-approval-request (grant_type, appkey, {clause.string('secret_field')})",
                evidence=[req],
            )
        resp = ev.response_to(req)
        body = resp.get("body") if resp is not None else None
        if isinstance(body, Mapping) and isinstance(body.get(field), str):
            issued.setdefault(str(body[field]), float(resp["t_spec"]) if resp else 0.0)
    for p in client_packets(ev):
        if p.kind not in ("subscribe", "release"):
            continue
        if p.approval_key not in issued or issued[p.approval_key] > p.t:
            return failed(
                f"a {p.kind} carried approval_key {p.approval_key!r}, which {path} had not issued",
                expected=f"the approval_key returned by POST {path}",
                evidence=[requests[-1], p.record],
            )
    return passed(f"{len(requests)} approval request(s); every packet carried an issued key")
