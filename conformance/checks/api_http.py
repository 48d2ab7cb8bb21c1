"""The internal API's HTTP surface beyond the key (spec 1.2): CORS as a browser meets it, the
Prometheus metrics an operator scrapes, JSON and api-error answers, and the orderly shutdown.

The ``api-http`` story tells the target one allowed origin (the clause's origins variable) and
then knocks from it and from an origin it never heard of: preflights without a key, plain calls
with the key, and stream handshakes. The verdicts rest on the answers' headers and close codes
the browsers observed (:mod:`stockmon.conformance.browser`), never on the target's own word.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from stockmon.conformance.checks.api import answered_badly, by_client, calls, messages, unanswered
from stockmon.conformance.evidence import Evidence, Record
from stockmon.conformance.protocol import slack
from stockmon.conformance.registry import Verdict, check, failed, no_evidence, passed
from stockmon.schemas import errors as schema_errors

# The ``purpose`` of the story's REST calls, and the names of its streams (``client``).
PREFLIGHT, SIMPLE, METRICS = "cors-preflight", "cors-call", "metrics"
ALLOWED, DENIED = "allowed", "denied"
ORIGIN_STREAM = "origin"  # origin-allowed / origin-denied
TAB = "tab"  # reads the stream while the metrics are scraped


def _header(o: Record, name: str) -> str | None:
    """One answer header (case-insensitive), or None."""
    headers = o.get("headers")
    if not isinstance(headers, Mapping):
        return None
    for k, v in headers.items():
        if str(k).lower() == name.lower():
            return str(v)
    return None


def _tokens(value: str | None) -> set[str]:
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


def _probes(ev: Evidence, purpose: str) -> dict[str, list[Record]]:
    """The story's calls of one purpose, by ``allowed``/``denied`` (the purpose's suffix)."""
    out: dict[str, list[Record]] = {ALLOWED: [], DENIED: []}
    for o in calls(ev):
        p = str(o.get("purpose", ""))
        for side in out:
            if p == f"{purpose}-{side}":
                out[side].append(o)
    return out


def _origin(o: Record) -> str:
    req = o.get("request_headers")
    return str(req.get("Origin", "")) if isinstance(req, Mapping) else ""


def _cors_headers_fail(o: Record, ev: Evidence, preflight: bool) -> str | None:
    """What an allowed origin's answer lacks, or None (API-CORS values)."""
    cors = ev.spec.clause("API-CORS")
    origin = _origin(o)
    acao = _header(o, "access-control-allow-origin")
    if acao != origin:
        return f"Access-Control-Allow-Origin {acao!r} for the allowed origin {origin!r}"
    creds = _header(o, "access-control-allow-credentials")
    if not cors.flag("allow_credentials") and creds is not None and creds.lower() == "true":
        return "Access-Control-Allow-Credentials: true, though the API uses no credentials"
    if not preflight:
        return None
    status = int(o.get("status") or 0)
    if not cors.flag("preflight_needs_key") and not 200 <= status < 300:
        return f"the preflight without a key answered {status}"
    methods = _tokens(_header(o, "access-control-allow-methods"))
    want_m = {m.lower() for m in cors.strings("allow_methods")}
    if not want_m <= methods:
        return f"Access-Control-Allow-Methods lacks {sorted(want_m - methods)}"
    allowed_h = _tokens(_header(o, "access-control-allow-headers"))
    want_h = {h.lower() for h in cors.strings("allow_headers")}
    if not want_h <= allowed_h:
        return f"Access-Control-Allow-Headers lacks {sorted(want_h - allowed_h)}"
    age = _header(o, "access-control-max-age")
    if age != str(cors.integer("max_age_s")):
        return f"Access-Control-Max-Age {age!r}"
    return None


@check("API-CORS")
def cors_answers_the_allowed_origin_only(ev: Evidence) -> Verdict:
    """A preflight from the configured origin is answered without a key with that origin, the
    clause's methods, headers and max age and no credentials; an unknown origin is never allowed
    (no Access-Control-Allow-Origin, never '*')."""
    preflights, plain = _probes(ev, PREFLIGHT), _probes(ev, SIMPLE)
    answered = [o for side in (preflights, plain) for os_ in side.values() for o in os_]
    if not preflights[ALLOWED] or not preflights[DENIED] or not plain[ALLOWED] or not plain[DENIED]:
        return no_evidence(
            "the story made no CORS calls from both an allowed and an unknown origin",
            expected="OPTIONS and GET with an Origin header",
        )
    silent = unanswered(answered)
    if silent is not None:
        return silent
    for o in preflights[ALLOWED] + plain[ALLOWED]:
        why = _cors_headers_fail(o, ev, preflight=o in preflights[ALLOWED])
        if why is not None:
            return failed(
                f"{o['method']} {o['path']} from {_origin(o)}: {why}",
                expected="the CORS answer of API-CORS to an allowed origin",
                evidence=[o],
            )
    for o in preflights[DENIED] + plain[DENIED]:
        acao = _header(o, "access-control-allow-origin")
        if acao is not None:
            return failed(
                f"{o['method']} {o['path']} from the unknown origin {_origin(o)} answered "
                f"Access-Control-Allow-Origin {acao!r}",
                expected="no Access-Control-Allow-Origin to an origin not configured (never '*')",
                evidence=[o],
            )
    return passed(
        f"{len(preflights[ALLOWED]) + len(plain[ALLOWED])} answers allowed the configured origin, "
        f"{len(preflights[DENIED]) + len(plain[DENIED])} gave the unknown one nothing"
    )


@check("API-CORS")
def stream_from_an_unknown_origin_is_closed(ev: Evidence) -> Verdict:
    """A stream handshake with a valid ticket from an unknown origin gets no message and the
    clause's close code; from the configured origin it is welcomed."""
    cors = ev.spec.clause("API-CORS")
    code = cors.integer("ws_origin_close_code")
    streams = by_client(ev, ORIGIN_STREAM)
    allowed = [obs for c, obs in streams.items() if c.endswith(ALLOWED)]
    denied = [obs for c, obs in streams.items() if c.endswith(DENIED)]
    if not allowed or not denied:
        return no_evidence(
            "no stream was opened from both an allowed and an unknown origin",
            expected=f"a welcome from the allowed origin, close {code} from the other",
        )
    if not cors.flag("ws_origin_checked"):
        return passed("the clause does not check a stream's origin")
    for obs in allowed:
        if not messages(obs):
            return failed(
                "the stream from the configured origin, with a valid ticket, got no welcome",
                expected="the allowed origin's stream served as any other",
                evidence=obs[:3],
            )
    for obs in denied:
        got = messages(obs)
        closes = [o for o in obs if o.get("kind") in ("ws_closed", "ws_refused")]
        if got or not closes or closes[0].get("code") != code:
            return failed(
                f"the stream from an unknown origin got {len(got)} messages and ended with "
                + (f"close code {closes[0].get('code')}" if closes else "no close"),
                expected=f"nothing streamed, close code {code} ({cors.string('ws_origin_close_reason')})",
                evidence=(got[:2] + closes[:1]) or obs[:2],
            )
    return passed(f"the unknown origin's stream closed with {code}; the allowed one was welcomed")


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _secret_in(text: str, secrets: Sequence[str]) -> bool:
    return any(s and s in text for s in secrets)


@check("API-METRICS")
def metrics_expose_the_declared_series(ev: Evidence) -> Verdict:
    """GET /metrics with the key answers the Prometheus text format holding every declared series
    with its type and labels; frames in and events out count the stream a tab was reading, the
    subscriber gauge sees the tab, drops name a declared reason, and no secret is in it."""
    clause = ev.spec.clause("API-METRICS")
    scrapes = [o for o in calls(ev, "GET", "right") if o.get("purpose") == METRICS]
    if not scrapes:
        return no_evidence(
            "the metrics were never scraped", expected=f"GET {clause.string('path')}"
        )
    o = scrapes[-1]
    body = o.get("body")
    if "error" in o or o.get("status") != 200 or not isinstance(body, str):
        return failed(
            f"GET {o.get('path')} answered {o.get('status', o.get('error'))}",
            expected="200 and the Prometheus text format",
            evidence=[o],
        )
    ctype = _header(o, "content-type") or ""
    want_type = clause.string("content_type")
    if ctype.replace(" ", "").lower() != want_type.replace(" ", "").lower():
        return failed(
            f"Content-Type {ctype!r}", expected=f"Content-Type {want_type!r}", evidence=[o]
        )
    try:
        families = _families(body)
    except ValueError as exc:
        return failed(f"not the Prometheus text format: {exc}", expected=want_type, evidence=[o])
    totals: dict[str, float] = {}
    for role, m in clause.mapping("metrics").items():
        name, kind, labels = str(m["name"]), str(m["type"]), set(m["labels"])
        family = families.get(name.removesuffix("_total") if kind == "counter" else name)
        if family is None or family.type != kind:
            return failed(
                f"series {name} ({kind}) is {'missing' if family is None else family.type}",
                expected=f"every series of API-METRICS: {role} as {name}",
                evidence=[o],
            )
        values = [s for s in family.samples if s.name == name]
        wrong = [s for s in values if set(s.labels) != labels]
        if wrong:
            return failed(
                f"{name} has labels {sorted(wrong[0].labels)}",
                expected=f"labels {sorted(labels)}",
                evidence=[o],
            )
        totals[role] = sum(s.value for s in values)
        if role == "drops":
            reasons = {s.labels.get("reason") for s in values} - set(clause.strings("drop_reasons"))
            if reasons:
                return failed(
                    f"{name} counts undeclared reasons {sorted(map(str, reasons))}",
                    expected=f"reasons among {list(clause.strings('drop_reasons'))}",
                    evidence=[o],
                )
    tab_events = sum(
        1
        for obs in by_client(ev, TAB).values()
        for m in messages(obs)
        if isinstance(m.get("message"), Mapping)
        and m["message"].get("type") == "event"
        and float(m["t_spec"]) <= float(o["sent_t"])  # counted before the scrape was asked
    )
    if tab_events == 0:
        return no_evidence("the tab received no event", expected="a tab reading the live stream")
    for role, least in (
        ("frames_in", 1.0),
        ("events_out", float(tab_events)),
        ("subscribers", 1.0),
    ):
        if totals.get(role, 0.0) < least:
            return failed(
                f"{role} is {totals.get(role, 0.0):g} while a tab had received {tab_events} events",
                expected=f"{role} at least {least:g}",
                evidence=[o],
            )
    if _secret_in(body, list(ev.secrets.values())):
        return failed(
            "the metrics hold a secret", expected="no label or value holds a secret", evidence=[]
        )
    return passed(
        f"{len(totals)} declared series; {totals['frames_in']:g} frames in, "
        f"{totals['events_out']:g} events out for a tab that got {tab_events}"
    )


# ------------------------------------------------------------------------------ API-SERVICE
SERVICE_OK, SERVICE_ERROR = "service-ok", "service-error"  # purposes (errors: a suffix each)
DRAINED = "drained"  # the stream that is open when the target gets SIGTERM
TERM_MARK = "term0"  # Driver.terminate(0)


@check("API-SERVICE")
def answers_are_json_and_errors_carry_an_api_error(ev: Evidence) -> Verdict:
    """Routes under the base path answer JSON; an unknown route and a malformed body get a 4xx
    whose body is an api-error (error, message) as JSON."""
    service = ev.spec.clause("API-SERVICE")
    base, ctype = service.string("base_path"), service.string("content_type")
    probes = [o for o in calls(ev) if str(o.get("purpose", "")).startswith("service-")]
    oks = [o for o in probes if o.get("purpose") == SERVICE_OK]
    errs = [o for o in probes if str(o.get("purpose", "")).startswith(SERVICE_ERROR)]
    if not oks or not errs:
        return no_evidence("no route was asked for", expected=f"calls under {base}")
    silent = unanswered(probes)
    if silent is not None:
        return silent
    for o in probes:
        status, body = int(o.get("status") or 0), o.get("body")
        is_json = (_header(o, "content-type") or "").startswith(ctype)
        if o in oks and not (
            str(o["path"]).startswith(base)
            and 200 <= status < 300
            and is_json
            and isinstance(body, Mapping)
        ):
            return failed(
                f"{o['method']} {o['path']} answered {status} ({_header(o, 'content-type')})",
                expected=f"2xx and a JSON body ({ctype})",
                evidence=[o],
            )
        if o in errs and not (
            400 <= status < 500
            and is_json
            and isinstance(body, Mapping)
            and not schema_errors("api-error", body)
            and all(f in body for f in service.strings("error_fields"))
        ):
            return answered_badly(
                o,
                f"({o['purpose']})",
                f"a 4xx with an api-error body {list(service.strings('error_fields'))}",
            )
    return passed(f"{len(oks)} answers in JSON; {len(errs)} refusals with api-error bodies")


@check("API-SERVICE")
def sigterm_closes_streams_and_exits_within_the_grace(ev: Evidence) -> Verdict:
    """On SIGTERM the open stream is closed with the shutdown code and the process exits, cleanly,
    within shutdown_grace_s (plus the suite's timing tolerance)."""
    service = ev.spec.clause("API-SERVICE")
    code, grace = service.integer("shutdown_close_code"), service.number("shutdown_grace_s")
    t_term = ev.marks.get(TERM_MARK)
    streams = [obs for obs in by_client(ev, DRAINED).values() if messages(obs)]
    if t_term is None or not streams or not ev.targets:
        return no_evidence(
            "the target was not sent SIGTERM while a stream was open",
            expected=f"close code {code} and an exit within {grace:g} spec s",
        )
    limit = grace + slack(ev)
    for obs in streams:
        closes = [o for o in obs if o.get("kind") == "ws_closed"]
        if not closes or closes[0].get("code") != code:
            return failed(
                "the open stream ended with "
                + (f"close code {closes[0].get('code')}" if closes else "no close")
                + " after SIGTERM",
                expected=f"close code {code} (API-SERVICE shutdown_close_code)",
                evidence=closes[:1] or obs[-2:],
            )
        late = float(closes[0]["t_spec"]) - float(t_term)
        if late > limit:
            return failed(
                f"the stream was closed {late:.2f} spec s after SIGTERM",
                expected=f"within {grace:g} spec s (+{slack(ev):g} tolerance)",
                evidence=closes[:1],
            )
    target = ev.targets[0]
    gone = target.end_t * ev.time_scale - float(t_term)
    if gone > limit or not target.clean_exit_on_sigterm:
        return failed(
            f"the process exited {gone:.2f} spec s after SIGTERM with code {target.returncode}",
            expected=f"a clean exit within {grace:g} spec s (+{slack(ev):g} tolerance)",
        )
    return passed(f"stream closed with {code}, process gone {gone:.2f} spec s after SIGTERM")
