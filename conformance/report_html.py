"""Reports to look at and to parse: one self-contained HTML page (no CDN, no script) with an SVG
timeline per scenario, and a JSON document for machines. Every failure carries the command that
reruns just that check. Times are spec seconds (the mock's clock), as every clause states them.
"""

from __future__ import annotations

import html
import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from stockmon.conformance.catalog import SCENARIOS
from stockmon.conformance.evidence import Evidence, Record, brief, not_data
from stockmon.conformance.protocol import ack_code, client_packets, server_pings
from stockmon.conformance.registry import Outcome
from stockmon.conformance.report import clause_rows, failures, slice_lines
from stockmon.conformance.runner import CheckResult, ScenarioResult, SuiteResult, selected
from stockmon.spec import load_spec, ws_answer_code

_WORD = {0: "CONFORMANT", 1: "NON-CONFORMANT"}


def rerun_command(result: SuiteResult, r: CheckResult) -> str:
    """The one-line command that reruns just this check in just this scenario."""
    keyword = f"{r.check.name} and {r.scenario}"
    spec = load_spec(result.spec_version)
    chosen = selected(SCENARIOS, spec, keyword, result.profile)
    if sum(len(c) for _, c in chosen) != 1:
        keyword = r.check.name
    return shlex.join(
        [
            "stockmon",
            "conformance",
            "--target",
            shlex.join(result.target),
            "--spec",
            result.spec_version,
            "--profile",
            result.profile,
            "-k",
            keyword,
        ]
    )


def _record_json(rec: Record) -> dict[str, Any]:
    return json.loads(json.dumps(dict(rec), default=str))  # type: ignore[no-any-return]


def render_json(result: SuiteResult, pending: Mapping[str, str]) -> str:
    """The JSON report: the verdict, every clause row, every check with its evidence and rerun."""
    doc = {
        "spec_version": result.spec_version,
        "profile": result.profile,
        "target": list(result.target),
        "exit_code": result.exit_code,
        "verdict": _WORD.get(result.exit_code, "NOT JUDGED"),
        "wall_s": round(result.wall_s, 3),
        "time_unit": "spec seconds (t_spec)",
        "notes": list(result.notes),
        "not_in_profile": [{"scenario": n, "why": w} for n, w in result.not_in_profile],
        "clauses": [
            {"clause": row.clause, "title": row.title, "verdict": row.verdict, "note": row.why}
            for row in clause_rows(result, pending)
        ],
        "scenarios": [
            {
                "name": s.scenario.name,
                "wall_s": round(s.wall_s, 3),
                "time_scale": s.time_scale,
                "notes": list(s.notes),
            }
            for s in result.scenarios
        ],
        "checks": [
            {
                "check": r.check.name,
                "clauses": list(r.check.clauses),
                "scenario": r.scenario,
                "outcome": r.verdict.outcome.value,
                "summary": r.verdict.summary,
                "expected": r.verdict.expected,
                "evidence": [_record_json(e) for e in r.verdict.evidence],
                **({"rerun": rerun_command(result, r)} if not r.verdict.ok else {}),
            }
            for r in result.results
        ],
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


# ------------------------------------------------------------------------------------ timeline
_W, _LEFT, _LANE, _TOP = 960, 110, 34, 26


def _x(t: float, end: float) -> float:
    return _LEFT + (_W - _LEFT - 10) * (max(0.0, t) / end if end > 0 else 0.0)


def _mark(x: float, y: float, cls: str, rec: Record, cited: set[Any], shape: str = "c") -> str:
    hot = rec.get("seq") in cited
    title = html.escape(brief(rec, 240))
    klass = f"{cls} failure" if hot else cls
    if shape == "c":
        el = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{6 if hot else 3.5}" class="{klass}">'
    else:
        el = f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" class="{klass}">'
    tag = "circle" if shape == "c" else "rect"
    return f"{el}<title>{title}</title></{tag}>"


def timeline_svg(ev: Evidence, cited: set[Any]) -> str:
    """One lane per socket (open to close, who closed), its pings, server pings, errors and data
    rate; a REST lane; faults as vertical lines; the failures' records drawn large and red."""
    end = max(ev.end_t_spec, max((float(r.get("t_spec") or 0) for r in ev.records), default=0.0))
    socks = ev.sockets()
    lanes = len(socks) + 1
    height = _TOP + lanes * _LANE + 24
    ok_codes = {ws_answer_code(ev.spec, "subscribed")}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}">'
    ]
    # axis in spec seconds
    for i in range(6):
        t = end * i / 5
        x = _x(t, end)
        out.append(
            f'<line x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{height - 20}" class="grid"/>'
        )
        out.append(f'<text x="{x:.1f}" y="{height - 6}" class="axis">{t:.0f} spec s</text>')
    lane_y: dict[str, float] = {}
    for i, s in enumerate(socks):
        y = _TOP + i * _LANE + _LANE / 2
        lane_y[s.conn] = y
        x0, x1 = _x(s.open_t, end), _x(s.close_t if s.close_t is not None else end, end)
        closed = f"closed by {s.closed_by}" if s.close_t is not None else "open at the end"
        out.append(
            f'<g class="lane socket" data-conn="{html.escape(s.conn)}">'
            f'<text x="4" y="{y + 4:.1f}" class="label">{html.escape(s.conn)}</text>'
            f'<line x1="{x0:.1f}" y1="{y:.1f}" x2="{x1:.1f}" y2="{y:.1f}" class="sock">'
            f"<title>{html.escape(s.conn)}: opened {s.open_t:.1f} spec s, {closed}</title></line>"
        )
        for rec in (s.open_record, s.close_record):
            if rec is not None and rec.get("seq") in cited:
                out.append(_mark(_x(float(rec["t_spec"]), end), y, "sockend", rec, cited, "r"))
        if s.close_t is not None:
            out.append(
                f'<text x="{x1 + 3:.1f}" y="{y - 6:.1f}" class="who">{html.escape(str(s.closed_by))}</text>'
            )
        # data rate: data frames per bin, as bars under the lane
        bins = [0] * 60
        for r in ev.server_texts(s.conn):
            if not not_data(r):
                b = min(59, int(float(r["t_spec"]) / end * 60)) if end > 0 else 0
                bins[b] += 1
        peak = max(bins) or 1
        for b, n in enumerate(bins):
            if n:
                bx = _x(end * b / 60, end)
                h = 10 * n / peak
                out.append(
                    f'<rect x="{bx:.1f}" y="{y + 4:.1f}" width="{(_W - _LEFT) / 60 - 1:.1f}" '
                    f'height="{h:.1f}" class="data"><title>{n} data frames</title></rect>'
                )
        for p in client_packets(ev, s.conn):
            if p.kind == "ping":
                out.append(_mark(_x(p.t, end), y - 6, "ping", p.record, cited))
            elif p.record.get("seq") in cited:
                out.append(_mark(_x(p.t, end), y - 6, "packet", p.record, cited, "r"))
        for r in server_pings(ev, s.conn):
            out.append(_mark(_x(float(r["t_spec"]), end), y + 6, "server-ping", r, cited))
        for r in ev.server_texts(s.conn):
            code = ack_code(r)
            if code is not None and code not in ok_codes and not code.startswith("OPSP000"):
                out.append(_mark(_x(float(r["t_spec"]), end), y, "error", r, cited, "r"))
        out.append("</g>")
    # REST lane
    y = _TOP + len(socks) * _LANE + _LANE / 2
    out.append(
        f'<g class="lane rest"><text x="4" y="{y + 4:.1f}" class="label">REST</text>'
        f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - 10}" y2="{y:.1f}" class="restline"/>'
    )
    for r in ev.records:
        if r.get("kind") == "response":
            bad = int(r.get("status") or 0) >= 400
            out.append(
                _mark(_x(float(r["t_spec"]), end), y, "error" if bad else "rest", r, cited, "r")
            )
    out.append("</g>")
    for f in ev.faults():
        x = _x(float(f["t_spec"]), end)
        out.append(
            f'<line x1="{x:.1f}" y1="{_TOP - 8}" x2="{x:.1f}" y2="{height - 20}" class="fault">'
            f"<title>{html.escape(brief(f, 240))}</title></line>"
        )
    for r in ev.records:
        if r.get("seq") in cited and r.get("conn") not in lane_y and r.get("kind") == "fault":
            out.append(_mark(_x(float(r["t_spec"]), end), _TOP - 8, "fault", r, cited))
    out.append("</svg>")
    return "".join(out)


_CSS = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px} h2{font-size:17px;margin-top:28px} table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
.PASS{color:#176d1a}.FAIL{color:#b00020;font-weight:bold}.ERROR{color:#a35a00;font-weight:bold}
pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}
.fail{border-left:4px solid #b00020;padding-left:10px;margin:12px 0}
svg.timeline{border:1px solid #ddd;background:#fff}
.grid{stroke:#eee}.axis{font-size:10px;fill:#666;text-anchor:middle}.label{font-size:11px}
.sock{stroke:#3b6fb6;stroke-width:3}.restline{stroke:#bbb;stroke-dasharray:3 3}
.who{font-size:9px;fill:#555}.ping{fill:#3b6fb6}.server-ping{fill:#8e44ad}
.data{fill:#9ccc9c}.rest{fill:#999}.error{fill:#e67e22}.packet{fill:#555}
.fault{stroke:#d35400;stroke-width:2;stroke-dasharray:4 2}
.failure{fill:#e00000;stroke:#000;stroke-width:1.5}
.legend span{margin-right:14px}
"""


def _failure_html(result: SuiteResult, r: CheckResult) -> str:
    v = r.verdict
    parts = [
        f'<div class="fail"><p class="{v.outcome.name}">{v.outcome.name} '
        f"{html.escape(', '.join(r.check.clauses))} — <code>{html.escape(r.check.name)}</code></p>",
        f"<p><em>{html.escape(r.check.doc)}</em></p>",
        f"<p><b>Got:</b> {html.escape(v.summary)}</p>",
    ]
    if v.expected:
        parts.append(f"<p><b>Expected:</b> {html.escape(v.expected)}</p>")
    lines = slice_lines(result, r, width=400)
    if lines:
        parts.append(
            "<p>Trace (t in spec seconds; &gt; = the records this verdict rests on):</p>"
            f"<pre>{html.escape(chr(10).join(lines))}</pre>"
        )
    parts.append(
        f'<p>Rerun just this check:</p><pre class="rerun">{html.escape(rerun_command(result, r))}</pre></div>'
    )
    return "".join(parts)


def _scenario_html(result: SuiteResult, s: ScenarioResult) -> str:
    bad = [r for r in s.results if not r.verdict.ok]
    cited = {e.get("seq") for r in bad for e in r.verdict.evidence}
    state = "ok" if not bad else f"{len(bad)} failed"
    parts = [
        f'<section class="scenario" id="sc-{html.escape(s.scenario.name)}">'
        f"<h2>{html.escape(s.scenario.name)} — {state}</h2>"
        f"<p>{html.escape(s.scenario.doc)} ({s.wall_s:.1f} real s at time scale {s.time_scale:g})</p>"
    ]
    if s.evidence is not None:
        parts.append(timeline_svg(s.evidence, cited))
    parts.append("<table><tr><th>Check</th><th>Clauses</th><th>Verdict</th><th>Observed</th></tr>")
    for r in s.results:
        name = r.verdict.outcome.name
        parts.append(
            f"<tr><td><code>{html.escape(r.check.name)}</code></td>"
            f'<td>{html.escape(", ".join(r.check.clauses))}</td><td class="{name}">{name}</td>'
            f"<td>{html.escape((r.verdict.summary.splitlines() or [''])[0])}</td></tr>"
        )
    parts.append("</table>")
    parts.extend(_failure_html(result, r) for r in bad)
    if s.notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in s.notes) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


def render_html(result: SuiteResult, pending: Mapping[str, str]) -> str:
    """One self-contained page: the verdict, the clause table, then each scenario's timeline."""
    code = result.exit_code
    word = _WORD.get(code, "NOT JUDGED (harness error)")
    rows: Sequence[str] = [
        f"<tr><td>{html.escape(row.clause)}</td><td>{html.escape(row.title)}</td>"
        f'<td class="{html.escape(row.verdict)}">{html.escape(row.verdict)}</td>'
        f"<td>{html.escape(row.why)}</td></tr>"
        for row in clause_rows(result, pending)
    ]
    notes = [f"{n}: {w}" for n, w in result.not_in_profile] + list(result.notes)
    n_fail = sum(1 for r in result.results if r.verdict.outcome is Outcome.FAIL)
    return "".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            f"<title>stockmon conformance — spec {html.escape(result.spec_version)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>Conformance report — spec {html.escape(result.spec_version)}, profile "
            f"{html.escape(result.profile)}</h1>",
            f"<p>Target: <code>{html.escape(shlex.join(result.target))}</code><br>",
            f'Verdict: <b class="{"PASS" if code == 0 else "FAIL"}">{word}</b> (exit {code}), '
            f"{len(result.results)} checks, {n_fail} failed, in {len(result.scenarios)} scenarios, "
            f"{result.wall_s:.1f} real s. Times on the timelines are spec seconds.</p>",
            '<p class="legend"><span style="color:#3b6fb6">● ping</span>'
            '<span style="color:#8e44ad">● server ping</span>'
            '<span style="color:#e67e22">■ error</span><span style="color:#d35400">┆ fault</span>'
            '<span style="color:#9ccc9c">▮ data rate</span><span style="color:#e00000">● failure record</span></p>',
            "".join(f"<p>{html.escape(n)}</p>" for n in notes),
            "<table><tr><th>Clause</th><th>Title</th><th>Verdict</th><th>Note</th></tr>",
            *rows,
            "</table>",
            *(_scenario_html(result, s) for s in result.scenarios),
            "</body></html>\n",
        ]
    )


def rerun_lines(result: SuiteResult) -> list[str]:
    """``rerun: <command>`` for every failure, for the terminal."""
    return [
        f"rerun {r.check.name} [{r.scenario}]: {rerun_command(result, r)}" for r in failures(result)
    ]
