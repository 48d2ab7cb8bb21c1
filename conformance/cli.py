"""``stockmon conformance``: run the conformance suite against a target and gate on the verdict.

Exit status: 0 conformant, 1 non-conformant (the report names each broken clause and shows the
trace), 2 the harness could not judge (bad flag, unknown spec version, a target command that does
not run, a target that never starts, a port or redis-server problem) with a one-line reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from stockmon.conformance.errors import ConfigError
from stockmon.conformance.runner import DEFAULT_JOBS, ScenarioResult, SuiteOptions, run_suite
from stockmon.conformance.scenario import DEFAULT_PROFILE, PROFILE_VARIABLE, PROFILES
from stockmon.spec import latest_version

# Where the last run's failures are kept for --last-failed (beside the project, like pytest's).
LAST_FAILED = Path(".stockmon-cache") / "conformance-lastfailed.json"


def default_target(profile: str = DEFAULT_PROFILE) -> list[str]:
    """The reference, run with this interpreter: the client's stream command, or for profile api
    the backend with its internal API (``stockmon serve``)."""
    return [sys.executable, "-m", "stockmon.cli", "serve" if profile == "api" else "stream"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``conformance`` flags."""
    parser.add_argument(
        "--target",
        metavar="COMMAND",
        help="the implementation under test, one shell-quoted command "
        "(default: the reference client, 'stockmon stream'; for --profile api 'stockmon serve')",
    )
    parser.add_argument(
        "--spec",
        dest="spec_version",
        metavar="VERSION",
        help="spec version to judge against (default: newest)",
    )
    parser.add_argument(
        "--profile",
        choices=tuple(PROFILES),
        type=str.lower,
        help="what the target is judged as: "
        + "; ".join(f"{k} = {v}" for k, v in PROFILES.items())
        + f" (default: the target's declaration in ${PROFILE_VARIABLE}, else {DEFAULT_PROFILE})",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="N",
        help="multiply every scenario's time scale by N (< 1 gives a slow target more real time)",
    )
    parser.add_argument(
        "-k",
        dest="keyword",
        metavar="PATTERN",
        help="select checks by name, clause ID or scenario (pytest-like: 'KA-PING or stall and not fleet')",
    )
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report")
    parser.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="write a report: FILE.html (self-contained, SVG timelines), FILE.json, else Markdown",
    )
    parser.add_argument(
        "-x",
        "--exitfirst",
        action="store_true",
        help="start no further scenario after the first failure",
    )
    parser.add_argument(
        "--last-failed",
        action="store_true",
        help=f"rerun only the checks that failed in the last run (recorded in {LAST_FAILED})",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=DEFAULT_JOBS,
        metavar="N",
        help=f"scenarios run at once (default {DEFAULT_JOBS})",
    )
    parser.add_argument(
        "--trace-dir", type=Path, metavar="DIR", help="keep every scenario's mock trace (JSONL)"
    )
    parser.add_argument(
        "--details", action="store_true", help="list every check's verdict, not only failures"
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="list scenarios and checks for the spec version, run nothing",
    )
    parser.set_defaults(func=run)


def _progress(res: ScenarioResult) -> None:
    bad = [r for r in res.results if not r.verdict.ok]
    state = "ok" if not bad else ("ERROR" if res.error is not None else f"{len(bad)} failed")
    print(
        f"  scenario {res.scenario.name:<20} {state:<10} {res.wall_s:5.1f} s (time scale {res.time_scale:g})",
        file=sys.stderr,
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    """Run the suite; print the table; write the reports; return the gate's exit status."""
    from stockmon.conformance import catalog
    from stockmon.conformance.report import render_markdown, render_terminal, write_junit
    from stockmon.conformance.report_html import render_html, render_json, rerun_lines

    version = args.spec_version or latest_version()
    profile = _profile(args.profile)
    if args.target is not None:
        try:
            target = shlex.split(args.target)
        except ValueError as exc:
            raise ConfigError(f"--target: {exc}") from None
    else:
        target = default_target(profile)
    if args.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    if args.last_failed:
        args.keyword = _last_failed(version, args.keyword)
    if args.list:
        return _list(version, args.keyword, profile)
    options = SuiteOptions(
        target=tuple(target),
        spec_version=version,
        time_scale_factor=args.time_scale,
        keyword=args.keyword,
        jobs=args.jobs,
        trace_dir=args.trace_dir,
        profile=profile,
        exitfirst=args.exitfirst,
    )
    print(
        f"stockmon conformance: spec {version}, target {shlex.join(target)}",
        file=sys.stderr,
        flush=True,
    )
    result = run_suite(options, catalog.SCENARIOS, progress=_progress)
    pending = catalog.pending_clauses()
    sys.stdout.write(render_terminal(result, pending, verbose=args.details))
    reruns = rerun_lines(result)
    if reruns:
        sys.stdout.write("\n" + "\n".join(reruns) + "\n")
    _record_failures(version, result)
    if args.junit:
        write_junit(result, args.junit, pending)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        suffix = args.report.suffix.lower()
        render = {".html": render_html, ".htm": render_html, ".json": render_json}.get(
            suffix, render_markdown
        )
        args.report.write_text(render(result, pending), encoding="utf-8")
    code = result.exit_code
    if code == 2:
        first = result.errors[0] if result.errors else None
        reason = (
            str(first)
            if first
            else next(
                (r.verdict.summary for r in result.results if not r.verdict.ok), "harness error"
            )
        )
        print(f"stockmon conformance: not judged: {reason.splitlines()[0]}", file=sys.stderr)
    elif code == 1:
        broken = sorted({c for r in result.results if not r.verdict.ok for c in r.check.clauses})
        print(f"stockmon conformance: non-conformant: {', '.join(broken)}", file=sys.stderr)
    return code


def _record_failures(version: str, result: Any) -> None:
    """Keep this run's failed checks for --last-failed (a write problem only loses the record)."""
    failed = sorted({(r.check.name, r.scenario) for r in result.results if not r.verdict.ok})
    try:
        data = json.loads(LAST_FAILED.read_text(encoding="utf-8")) if LAST_FAILED.exists() else {}
        data = data if isinstance(data, dict) else {}
        data[version] = [list(f) for f in failed]
        LAST_FAILED.parent.mkdir(parents=True, exist_ok=True)
        LAST_FAILED.write_text(json.dumps(data, indent=1), encoding="utf-8")
    except (OSError, ValueError):
        pass


def _last_failed(version: str, keyword: str | None) -> str | None:
    """The -k expression of the last run's failures (and the given -k), or the selection as is."""
    try:
        data = json.loads(LAST_FAILED.read_text(encoding="utf-8"))
        pairs = [tuple(p) for p in data.get(version, [])]
    except (OSError, ValueError, AttributeError):
        pairs = []
    if not pairs:
        print(
            f"stockmon conformance: --last-failed: no failure recorded for spec {version}; "
            "running the selection",
            file=sys.stderr,
        )
        return keyword
    expr = " or ".join(f"({check} and {scenario})" for check, scenario in pairs)
    return f"({keyword}) and ({expr})" if keyword else expr


def _profile(flag: str | None) -> str:
    """The profile to judge: the flag, else the target's declaration, else the default (said)."""
    if flag is not None:
        return flag
    declared = os.environ.get(PROFILE_VARIABLE, "").strip().lower()
    if declared:
        if declared not in PROFILES:
            raise ConfigError(
                f"${PROFILE_VARIABLE}={declared!r} is not a profile; use one of {', '.join(PROFILES)}"
            )
        print(
            f"stockmon conformance: profile {declared} (declared by ${PROFILE_VARIABLE})",
            file=sys.stderr,
        )
        return declared
    print(
        f"stockmon conformance: profile {DEFAULT_PROFILE} assumed (the target declared none: "
        f"pass --profile {'|'.join(PROFILES)} or set ${PROFILE_VARIABLE})",
        file=sys.stderr,
    )
    return DEFAULT_PROFILE


def _list(version: str, keyword: str | None, profile: str) -> int:
    from stockmon.conformance import catalog
    from stockmon.conformance.runner import selected
    from stockmon.spec import load_spec

    spec = load_spec(version)
    for sc, checks in selected(catalog.SCENARIOS, spec, keyword, profile):
        print(f"{sc.name} (time scale {sc.time_scale:g}): {sc.doc}")
        for c in checks:
            print(f"    {c.name:<52} {', '.join(c.clauses)}")
    return 0
