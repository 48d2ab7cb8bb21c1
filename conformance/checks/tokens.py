"""The bearer token: its request and use (TOKEN-KIS-BEARER), its refresh inside the window
(TOKEN-KIS-REFRESH) from the announced expiry (TOKEN-KIS-EXPIRY, 1.1), one issuance per refresh
across a fleet (TOKEN-KIS-LOCK), the issuance throttle waited out (TOKEN-KIS-THROTTLE, 1.1), and
the Kiwoom token request with its secret (CRED-KIWOOM-SECRET)."""

from __future__ import annotations

from collections.abc import Mapping

from stockmon.conformance.errors import CheckFailure, HarnessError
from stockmon.conformance.evidence import Evidence, Record
from stockmon.conformance.protocol import (
    authorization_of,
    is_kiwoom,
    issued_token,
    quote_paths,
    rest_path,
    slack,
)
from stockmon.conformance.registry import Verdict, check, failed, no_evidence, passed
from stockmon.schemas import errors as schema_errors
from stockmon.spec import broker_clause, broker_data


def _token_requests(ev: Evidence) -> list[Record]:
    return ev.requests(rest_path(ev.spec, "token"))


def _first_issue(ev: Evidence) -> tuple[Record, float, Record | None]:
    """The response of the first successful issuance, the expiry it announced (spec s), and the
    token request that came next (the refresh, if any)."""
    reqs = _token_requests(ev)
    for req in reqs:
        resp = ev.response_to(req)
        if issued_token(resp) is None or resp is None:
            continue
        body = resp.get("body")
        expires_in = body.get("expires_in") if isinstance(body, Mapping) else None
        if not isinstance(expires_in, int | float):
            raise HarnessError("the mock's token response has no expires_in")
        nxt = next((r for r in reqs if int(r["seq"]) > int(resp["seq"])), None)
        return resp, float(resp["t_spec"]) + float(expires_in), nxt
    raise CheckFailure("the target never obtained a token", expected="a token, then its refresh")


def _bodies_valid(requests: list[Record], schema: str, summary: str) -> Verdict:
    """Every request body matches ``schema``; a failure names the first that does not."""
    for req in requests:
        errs = schema_errors(schema, req.get("body"))
        if errs:
            return failed(
                f"a request body breaks schema {schema}: {errs[0]}",
                expected=f"a body valid against schema {schema}",
                evidence=[req],
            )
    return passed(summary)


@check("TOKEN-KIS-BEARER")
def token_request_matches_schema(ev: Evidence) -> Verdict:
    """The client gets its bearer token from the token endpoint with the spec's request body."""
    reqs = _token_requests(ev)
    if not reqs:
        return failed(
            f"the target never requested an access token (POST {rest_path(ev.spec, 'token')})",
            expected="a bearer token obtained at start and kept valid (KIS REST/WS auth)",
            evidence=ev.requests()[:3],
        )
    summary = f"{len(reqs)} token request(s), all valid against kis-token-request"
    return _bodies_valid(reqs, "kis-token-request", summary)


@check("CRED-KIWOOM-SECRET")
def kiwoom_token_requests_carry_the_secret(ev: Evidence) -> Verdict:
    """Every Kiwoom token request sends appkey and secretkey (schema kiwoom-token-request)."""
    path = str(broker_data(ev.spec, "rest", "kiwoom")["token"]["path"])
    field = broker_clause(ev.spec, "CRED-KIWOOM-SECRET").string("request_field")
    reqs = [r for r in ev.requests(path) if is_kiwoom(r)]
    for r in reqs:
        body = r.get("body")
        if not isinstance(body, Mapping) or not body.get(field):
            return failed(
                f"a Kiwoom token request without {field}",
                expected=f"appkey and {field} (KIWOOM_APP_SECRET) in every token request",
                evidence=[r],
            )
    summary = f"{len(reqs)} Kiwoom token request(s), each with {field}"
    return _bodies_valid(reqs, "kiwoom-token-request", summary)


@check("TOKEN-KIS-BEARER")
def bearer_token_on_authenticated_requests(ev: Evidence) -> Verdict:
    """Authenticated REST requests carry 'authorization: Bearer <a token the server issued>'."""
    token_type = ev.spec.clause("TOKEN-KIS-BEARER").string("token_type")
    issued: dict[str, int] = {}
    checked = 0
    for rec in ev.records:
        if rec.get("kind") == "response":
            tok = issued_token(rec)
            if tok is not None and rec.get("token") is not None:
                issued.setdefault(tok, int(rec["seq"]))
        if rec.get("kind") != "request" or rec.get("path") not in quote_paths(ev.spec):
            continue
        checked += 1
        auth = authorization_of(rec, ev.spec) or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != token_type.lower() or value.strip() not in issued:
            return failed(
                f"an authenticated request carried authorization {auth[:16]!r}…",
                expected=f"authorization: {token_type} <the access token the server issued>",
                evidence=[rec],
            )
    if checked == 0:
        return no_evidence(
            "the target made no authenticated REST request",
            expected=f"authorization: {token_type} <the access token the server issued>",
        )
    return passed(f"{checked} authenticated request(s), each with an issued {token_type} token")


@check("TOKEN-KIS-REFRESH")
def token_refreshed_inside_window(ev: Evidence) -> Verdict:
    """The token is refreshed inside the window before its expiry, and not before the window."""
    window = ev.spec.clause("TOKEN-KIS-REFRESH").number("refresh_before_expiry_s")
    tol = slack(ev)
    resp, expiry, nxt = _first_issue(ev)
    opens = expiry - window
    stop = ev.marks.get("end", ev.end_t_spec)
    if nxt is None:
        if stop < expiry:
            raise HarnessError(
                f"the scenario ended at {stop:.0f} s, before the token expired at {expiry:.0f} s"
            )
        return failed(
            f"no refresh before the token expired at {expiry:.0f} s",
            expected=f"a new token requested between {opens:.0f} s and {expiry:.0f} s "
            f"({window:g} s before expiry)",
            evidence=[resp],
        )
    t = float(nxt["t_spec"])
    if t < opens - tol:
        return failed(
            f"the token was refreshed {expiry - t:.0f} s before it expired",
            expected=f"refresh inside the last {window:g} s (±{tol:g}) before expiry, not earlier",
            evidence=[resp, nxt],
        )
    if t > expiry:
        return failed(
            f"the token was refreshed {t - expiry:.0f} s after it had expired",
            expected=f"refresh during the {window:g} s before expiry",
            evidence=[resp, nxt],
        )
    return passed(f"refreshed {expiry - t:.0f} s before expiry (window {window:g} s)")


@check("TOKEN-KIS-EXPIRY")
def expiry_taken_from_token_response(ev: Evidence) -> Verdict:
    """The client believes the expiry the server announced (expires_in), not an assumed 24 h."""
    tol = slack(ev)
    resp, expiry, nxt = _first_issue(ev)
    stop = ev.marks.get("end", ev.end_t_spec)
    if nxt is None and stop < expiry + tol:
        raise HarnessError("the scenario ended before the announced expiry")
    if nxt is None or float(nxt["t_spec"]) > expiry + tol:
        raw = resp.get("body")
        body: Mapping[str, object] = raw if isinstance(raw, Mapping) else {}
        return failed(
            "the target still had not refreshed when the announced expiry passed",
            expected=f"expiry from expires_in={body.get('expires_in')} / "
            f"access_token_token_expired={body.get('access_token_token_expired')}, never assumed",
            evidence=[resp, *([nxt] if nxt is not None else [])],
        )
    return passed("refreshed before the expiry the token response announced")


@check("TOKEN-KIS-LOCK")
def one_token_request_per_refresh_across_processes(ev: Evidence) -> Verdict:
    """Processes sharing Redis issue one credential between them, at start and at each refresh.

    Requests are grouped by the moment a *new* token became available: every request made before
    that moment (and after the previous one) competed for the same issuance, and under the lock
    only one process makes it. Every request counts, throttled or not: a request the throttle
    refused was still a second process asking. The WS approval key, a credential of the same kind,
    is fetched once per fleet.
    """
    per = ev.spec.clause("TOKEN-KIS-LOCK").integer("issuances_per_fleet_refresh")
    n = len(ev.targets)
    approvals = ev.requests(rest_path(ev.spec, "approval"))
    if len(approvals) > per:
        return failed(
            f"{len(approvals)} approval-key requests from {n} processes",
            expected=f"{per} approval-key issuance for the whole fleet (under the Redis lock)",
            evidence=approvals[:4],
        )
    reqs = _token_requests(ev)
    if not reqs and not approvals:
        return failed(
            "the fleet never obtained a credential", expected="one credential for all processes"
        )
    seen: set[str] = set()
    boundaries: list[float] = []
    for r in reqs:
        tok = issued_token(ev.response_to(r))
        if tok is not None and tok not in seen:
            seen.add(tok)
            resp = ev.response_to(r)
            assert resp is not None
            boundaries.append(float(resp["t_spec"]))
    epochs: list[list[Record]] = [[] for _ in range(len(boundaries) + 1)]
    for r in reqs:
        t = float(r["t_spec"])
        epochs[sum(1 for b in boundaries if b < t)].append(r)
    for i, group in enumerate(epochs):
        if len(group) > per:
            when = "at start" if i == 0 else f"for refresh {i}"
            refused = sum(1 for r in group if _throttled(ev, ev.response_to(r)))
            return failed(
                f"{len(group)} token requests {when} from {n} processes, before a new token was out"
                + (f" ({refused} refused by the issuance throttle)" if refused else ""),
                expected=f"{per} token request per refresh for the whole fleet (under the Redis lock)",
                evidence=group[:4],
            )
    return passed(
        f"{len(reqs)} token request(s) for {len(boundaries)} issuance(s) and "
        f"{len(approvals)} approval-key request(s), for {n} processes"
    )


def _throttled(ev: Evidence, resp: Record | None) -> bool:
    clause = ev.spec.clause("TOKEN-KIS-THROTTLE") if ev.spec.has("TOKEN-KIS-THROTTLE") else None
    if clause is None or resp is None:
        return False
    body = resp.get("body")
    return (
        resp.get("status") == clause.integer("http_status")
        and isinstance(body, Mapping)
        and body.get("error_code") == clause.string("error_code")
    )


@check("TOKEN-KIS-THROTTLE")
def throttled_token_request_waited_out(ev: Evidence) -> Verdict:
    """After the issuance throttle answers, the client waits the minute out instead of hammering."""
    clause = ev.spec.clause("TOKEN-KIS-THROTTLE")
    interval = clause.number("min_interval_s")
    code = clause.string("error_code")
    tol = slack(ev)
    reqs = _token_requests(ev)
    last_ok: float | None = None
    throttled = 0
    for i, req in enumerate(reqs):
        resp = ev.response_to(req)
        if resp is None:
            continue
        if issued_token(resp) is not None:
            last_ok = float(req["t_spec"])
            continue
        if not _throttled(ev, resp):
            continue
        throttled += 1
        if last_ok is None or i + 1 >= len(reqs):
            continue
        nxt = reqs[i + 1]
        if float(nxt["t_spec"]) < last_ok + interval - tol:
            return failed(
                f"after {code} the target asked again {float(nxt['t_spec']) - float(req['t_spec']):.1f} s later",
                expected=f"wait until {interval:g} s after the last issuance before asking again",
                evidence=[req, resp, nxt],
            )
    if not reqs:
        return no_evidence(
            "the target requested no token",
            expected=f"wait until {interval:g} s after the last issuance before asking again",
        )
    if throttled == 0:
        return passed("not exercised: the target never hit the issuance throttle")
    return passed(f"{throttled} throttled answer(s), each waited out")
