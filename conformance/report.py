"""Reports of a suite run: terminal table, Markdown, JUnit XML.

Every clause of the spec version gets a row: its verdict over the checks that judge it (with the
wall time of the scenarios that fed them), or why it has none (not breakable on the wire, pending
another issue, not selected by ``-k``). Every failure shows what happened, what the clause expected,
and the slice of the trace that shows it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stockmon.conformance.evidence import Evidence, brief, trace_slice
from stockmon.conformance.registry import Outcome
from stockmon.conformance.runner import CheckResult, SuiteResult
from stockmon.spec import load_spec

_LABEL = {Outcome.PASS: "PASS", Outcome.FAIL: "FAIL", Outcome.ERROR: "ERROR"}


@dataclass(frozen=True)
class ClauseRow:
    """One line of the clause table."""

    clause: str
    title: str
    verdict: str
    checks: str
    wall_s: float | None
    why: str = ""


def clause_rows(result: SuiteResult, pending: Mapping[str, str]) -> list[ClauseRow]:
    """A row for every clause of the spec version, in spec order."""
    spec = load_spec(result.spec_version)
    table = result.clause_verdicts()
    rows = []
    for clause in spec.clauses:
        verdict, checks, wall, why = "SKIPPED", "-", None, "not selected"
        if clause.id in table:
            outcome, items = table[clause.id]
            n_ok = sum(1 for r in items if r.verdict.ok)
            verdict, checks, why = _LABEL[outcome], f"{n_ok}/{len(items)}", ""
            wall = max(r.wall_s for r in items)
        elif not clause.testability.breakable:
            verdict, why = "N/A", "not breakable on the wire: " + (clause.testability.reason or "")
        elif clause.id in pending:
            verdict, why = "PENDING", pending[clause.id]
        rows.append(ClauseRow(clause.id, clause.title.en, verdict, checks, wall, why))
    return rows


def _verdict_word(code: int) -> str:
    return {0: "CONFORMANT", 1: "NON-CONFORMANT"}.get(code, "NOT JUDGED (harness error)")


def _evidence_of(result: SuiteResult, r: CheckResult) -> Evidence | None:
    for sc in result.scenarios:
        if sc.scenario.name == r.scenario:
            return sc.evidence
    return None


def slice_lines(result: SuiteResult, r: CheckResult, width: int = 200) -> list[str]:
    """The failure's trace slice, one line per record; cited records are marked with '>'."""
    cited = r.verdict.evidence
    if not cited:
        return []
    ev = _evidence_of(result, r)
    rows = trace_slice(ev.records, cited) if ev is not None else [(True, c) for c in cited]
    return [("> " if mark else "  ") + brief(rec, width) for mark, rec in rows]


def failures(result: SuiteResult) -> list[CheckResult]:
    """Results that failed or errored, in run order."""
    return [r for r in result.results if not r.verdict.ok]


def render_terminal(result: SuiteResult, pending: Mapping[str, str], verbose: bool = False) -> str:
    """The plain-text report printed by the CLI."""
    out: list[str] = []
    out.append(
        f"stockmon conformance — spec {result.spec_version} — profile {result.profile} — "
        f"target: {' '.join(result.target)}"
    )
    out.append(f"{'clause':<24} {'verdict':<8} {'checks':>6} {'time':>7}  title / note")
    for row in clause_rows(result, pending):
        wall = f"{row.wall_s:6.1f}s" if row.wall_s is not None else "      -"
        note = row.title + (f" — {row.why}" if row.why else "")
        out.append(f"{row.clause:<24} {row.verdict:<8} {row.checks:>6} {wall}  {note}")
    if verbose:
        out.append("")
        out.append("checks:")
        for r in result.results:
            out.append(
                f"  {_LABEL[r.verdict.outcome]:<5} {r.check.name} [{r.scenario}] "
                f"({', '.join(r.check.clauses)}): {r.verdict.summary.splitlines()[0] if r.verdict.summary else ''}"
            )
    bad = failures(result)
    if bad:
        out.append("")
        for r in bad:
            out.extend(_failure_text(result, r))
    notes = [(s.scenario.name, n) for s in result.scenarios for n in s.notes]
    if notes and (verbose or bad):
        out.append("")
        out.append("scenario notes:")
        out.extend(f"  [{name}] {n}" for name, n in notes)
    if result.not_in_profile or result.notes:
        out.append("")
        out.extend(f"  [{name}] {why}" for name, why in result.not_in_profile)
        out.extend(f"  {n}" for n in result.notes)
    n_checks = len(result.results)
    counts = {o: sum(1 for r in result.results if r.verdict.outcome is o) for o in Outcome}
    out.append("")
    out.append(
        f"{counts[Outcome.PASS]} passed, {counts[Outcome.FAIL]} failed, {counts[Outcome.ERROR]} errors "
        f"— {n_checks} checks in {len(result.scenarios)} scenarios, {result.wall_s:.1f} s wall "
        f"— {_verdict_word(result.exit_code)} (exit {result.exit_code})"
    )
    return "\n".join(out) + "\n"


def _failure_text(result: SuiteResult, r: CheckResult) -> list[str]:
    v = r.verdict
    head = "FAIL" if v.outcome is Outcome.FAIL else "ERROR"
    lines = [f"{head} {', '.join(r.check.clauses)} — {r.check.name} [scenario {r.scenario}]"]
    lines.append(f"  check:    {r.check.doc}")
    for i, text in enumerate(v.summary.splitlines() or [""]):
        lines.append(("  got:      " if i == 0 else "            ") + text)
    if v.expected:
        lines.append(f"  expected: {v.expected}")
    if v.evidence:
        lines.append("  trace (t in spec seconds; > = the records this verdict rests on):")
        lines.extend(f"    {line}" for line in slice_lines(result, r))
    return lines


def render_markdown(result: SuiteResult, pending: Mapping[str, str]) -> str:
    """A Markdown report: the clause table, then every failure with its trace slice."""
    out = [
        f"# Conformance report — spec {result.spec_version}",
        "",
        f"Target: `{' '.join(result.target)}`, profile {result.profile}  ",
        f"Verdict: **{_verdict_word(result.exit_code)}** (exit {result.exit_code}), "
        f"{len(result.results)} checks in {len(result.scenarios)} scenarios, {result.wall_s:.1f} s wall.",
        "",
        "| Clause | Title | Verdict | Checks | Time | Note |",
        "|---|---|---|---|---|---|",
    ]
    for row in clause_rows(result, pending):
        wall = f"{row.wall_s:.1f} s" if row.wall_s is not None else "-"
        out.append(
            f"| {row.clause} | {row.title} | {row.verdict} | {row.checks} | {wall} | {_md(row.why)} |"
        )
    out += [
        "",
        "## Checks",
        "",
        "| Check | Clauses | Scenario | Verdict | Observed |",
        "|---|---|---|---|---|",
    ]
    for r in result.results:
        summary = r.verdict.summary.splitlines()[0] if r.verdict.summary else ""
        out.append(
            f"| `{r.check.name}` | {', '.join(r.check.clauses)} | {r.scenario} | "
            f"{_LABEL[r.verdict.outcome]} | {_md(summary)} |"
        )
    bad = failures(result)
    if bad:
        out += ["", "## Failures"]
        for r in bad:
            v = r.verdict
            out += [
                "",
                f"### {_LABEL[v.outcome]} {', '.join(r.check.clauses)} — `{r.check.name}` (scenario `{r.scenario}`)",
                "",
                f"*{r.check.doc}*",
                "",
                f"- **Got:** {_md(v.summary)}",
            ]
            if v.expected:
                out.append(f"- **Expected:** {_md(v.expected)}")
            if v.evidence:
                out += ["", "```text", *slice_lines(result, r, width=400), "```"]
    notes = [(s.scenario.name, n) for s in result.scenarios for n in s.notes]
    notes += result.not_in_profile + [("suite", n) for n in result.notes]
    if notes:
        out += ["", "## Scenario notes", ""]
        out += [f"- `{name}`: {_md(n)}" for name, n in notes]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def write_junit(result: SuiteResult, path: Path, pending: Mapping[str, str]) -> None:
    """JUnit XML: one testcase per check and scenario, clause IDs in the name and properties."""
    results = result.results
    n_fail = sum(1 for r in results if r.verdict.outcome is Outcome.FAIL)
    n_err = sum(1 for r in results if r.verdict.outcome is Outcome.ERROR)
    spec = load_spec(result.spec_version)
    skipped_clauses = [c for c in spec.clauses if not c.testability.breakable or c.id in pending]
    root = ET.Element("testsuites")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"stockmon-conformance-{result.spec_version}",
        tests=str(len(results) + len(skipped_clauses)),
        failures=str(n_fail),
        errors=str(n_err),
        skipped=str(len(skipped_clauses)),
        time=f"{result.wall_s:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="spec_version", value=result.spec_version)
    ET.SubElement(props, "property", name="target", value=" ".join(result.target))
    ET.SubElement(props, "property", name="exit_code", value=str(result.exit_code))

    def testcase(group: str, name: str, time: str, props: list[tuple[str, str]]) -> ET.Element:
        """One <testcase> of ``group`` with its <properties> (clause IDs, scenario)."""
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"conformance.{result.spec_version}.{group}",
            name=name,
            time=time,
        )
        cprops = ET.SubElement(case, "properties")
        for key, value in props:
            ET.SubElement(cprops, "property", name=key, value=value)
        return case

    for r in results:
        case = testcase(
            r.scenario,
            f"[{','.join(r.check.clauses)}] {r.check.name}",
            f"{r.wall_s:.3f}",
            [*(("clause", c) for c in r.check.clauses), ("scenario", r.scenario)],
        )
        v = r.verdict
        if v.outcome is Outcome.PASS:
            continue
        tag = "failure" if v.outcome is Outcome.FAIL else "error"
        el = ET.SubElement(
            case,
            tag,
            message=(v.summary.splitlines() or [""])[0][:500],
            type="CheckFailure" if v.outcome is Outcome.FAIL else "HarnessError",
        )
        text = [f"got: {v.summary}"]
        if v.expected:
            text.append(f"expected: {v.expected}")
        if v.evidence:
            text.append("trace (> = the records this verdict rests on):")
            text.extend("  " + line for line in slice_lines(result, r, width=400))
        el.text = "\n".join(text)
    for skipped in skipped_clauses:
        case = testcase("clauses", f"[{skipped.id}] not judged", "0", [("clause", skipped.id)])
        reason = pending.get(skipped.id, f"not breakable on the wire: {skipped.testability.reason}")
        ET.SubElement(case, "skipped", message=reason)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.write(path, encoding="utf-8", xml_declaration=True)
