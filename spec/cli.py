"""``stockmon spec``: check, diff, show, render, release."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from stockmon.errors import UsageError
from stockmon.spec import loader
from stockmon.spec.check import Roots, release, render_all, run_check
from stockmon.spec.diff import diff_specs, format_diff
from stockmon.spec.model import Spec, thaw


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``spec`` sub-subcommands."""
    sub = parser.add_subparsers(dest="spec_command", metavar="ACTION", required=True)
    p = sub.add_parser(
        "check", help="validate specs, schemas, generated docs, lock and clause coverage"
    )
    p.add_argument(
        "--root", type=Path, help="check this source tree instead of the installed package"
    )
    p.add_argument(
        "--no-coverage", action="store_true", help="skip the conformance clause-coverage step"
    )
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("diff", help="clause-level changes between two versions")
    p.add_argument("old", metavar="OLD", help="the earlier version, e.g. 1.0")
    p.add_argument("new", metavar="NEW", help="the later version, e.g. 1.1")
    p.set_defaults(func=cmd_diff)
    from stockmon.spec.sections import SECTIONS

    # An implementer starts from --help: it names every section, not only clauses.
    sections = "; ".join(f"{name}: {what}" for name, what in SECTIONS.items())
    p = sub.add_parser(
        "show",
        help="print one clause with its values, or a section (rest, layouts, mock, ...)",
        description=f"Print one clause, one section of the spec or one TR's layout. Sections: "
        f"{sections}.",
    )
    p.add_argument(
        "clause_id",
        metavar="CLAUSE",
        help="a clause ID, any case (KA-PING; 'stockmon spec list' shows them), a section name "
        f"({', '.join(SECTIONS)}) or a TR ID for its layout (HDFSCNT0)",
    )
    p.add_argument("--spec", dest="version", help="spec version (default: newest)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("list", help="list versions and their clauses")
    p.add_argument("--spec", dest="version", help="spec version (default: every version)")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("render", help="write the generated docs (ko + en) and .env.example")
    p.add_argument("--root", type=Path, help="source tree to write into")
    p.set_defaults(func=cmd_render)
    p = sub.add_parser("release", help="mark a draft version released and lock its digest")
    p.add_argument("version", metavar="VERSION", help="the draft version to release, e.g. 1.2")
    p.add_argument("--root", type=Path, help="source tree to write into")
    p.set_defaults(func=cmd_release)


def _roots(root: Path | None) -> Roots:
    if root is None:
        return Roots.installed()
    if not (root / "spec" / "versions").is_dir():
        raise UsageError(f"--root {root}: no spec/versions folder there (give the project root)")
    return Roots.source_tree(root)


def conformance_index() -> tuple[Mapping[str, Sequence[str]] | None, Mapping[str, str]]:
    """Clause IDs per conformance check and the pending list, if the conformance catalogue exists."""
    try:
        catalog = importlib.import_module("stockmon.conformance.catalog")
    except ModuleNotFoundError as exc:
        if exc.name != "stockmon.conformance.catalog":
            raise
        return None, {}
    index = catalog.clause_index()
    pending: Mapping[str, str] = (
        catalog.pending_clauses() if hasattr(catalog, "pending_clauses") else {}
    )
    assert isinstance(index, Mapping) and isinstance(pending, Mapping)
    return index, pending


def cmd_check(args: argparse.Namespace) -> int:
    """Run the gate; exit 1 on any finding."""
    roots = _roots(args.root)
    index: Mapping[str, Sequence[str]] | None = None
    pending: Mapping[str, str] = {}
    if not args.no_coverage:
        index, pending = conformance_index()
    report = run_check(roots, index, pending)
    for f in report.findings:
        print(f"FAIL {f}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}")
    verdict = "ok" if report.ok else f"{len(report.findings)} problem(s)"
    print(f"spec check: {verdict} — checked {'; '.join(report.checked)}")
    return 0 if report.ok else 1


def _version(v: str) -> str:
    loader.version_key(v)
    if v not in loader.available_versions():
        raise UsageError(
            f"unknown spec version {v!r}; available: {', '.join(loader.available_versions())}"
        )
    return v


def cmd_diff(args: argparse.Namespace) -> int:
    """Print clause-level changes."""
    old, new = loader.load_spec(_version(args.old)), loader.load_spec(_version(args.new))
    sys.stdout.write(format_diff(diff_specs(old, new), new))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print one clause."""
    spec = loader.load_spec(_version(args.version) if args.version else None)
    # IDs are upper case by convention; a user typing ka-ping means KA-PING.
    found = [i for i in spec.clause_ids if i.casefold() == args.clause_id.casefold()]
    if not found and _show_section(spec, args.clause_id, args.json):
        return 0
    if not found:
        raise UsageError(
            f"spec {spec.version} has no clause or section {args.clause_id!r}; 'stockmon spec list' "
            "shows the clauses, 'stockmon spec show --help' the sections"
        )
    c = spec.clause(found[0])
    if args.json:
        print(
            json.dumps(
                {
                    "spec": spec.version,
                    "id": c.id,
                    "section": c.section,
                    "title": {"en": c.title.en, "ko": c.title.ko},
                    "text": {"en": c.text.en, "ko": c.text.ko},
                    "values": thaw(c.values),
                    "schemas": list(c.schemas),
                    "source": {"doc": c.source.doc, "ref": c.source.ref, "grade": c.source.grade},
                    "breakable": c.testability.breakable,
                    "reason": c.testability.reason,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0
    print(f"{c.id} (spec {spec.version}, §{c.section}): {c.title.en} / {c.title.ko}")
    print(f"  en: {c.text.en}")
    print(f"  ko: {c.text.ko}")
    if c.values:
        print("  values:")
        for k, v in c.values.items():
            print(f"    {k}: {json.dumps(thaw(v), ensure_ascii=False)}")
    if c.schemas:
        print(f"  schemas: {', '.join(c.schemas)}")
    print(f"  source: {c.source.doc} {c.source.ref} [{c.source.grade}]")
    if not c.testability.breakable:
        print(f"  not checkable on the wire: {c.testability.reason}")
    return 0


def _show_section(spec: Spec, name: str, as_json: bool) -> bool:
    """Print a section (rest, layouts, a TR ID, mock, ...) if ``name`` is one; False if not."""
    from stockmon.spec.sections import format_section, resolve, section_data

    found = resolve(spec, name)
    if found is None:
        return False
    section, item = found
    if as_json:
        doc = {"spec": spec.version, "section": section, "item": item}
        print(
            json.dumps(
                {**doc, "data": section_data(spec, section, item)}, ensure_ascii=False, indent=2
            )
        )
    else:
        sys.stdout.write(format_section(spec, section, item))
    return True


def cmd_list(args: argparse.Namespace) -> int:
    """List versions and clause IDs."""
    versions = [_version(args.version)] if args.version else loader.available_versions()
    for v in versions:
        spec = loader.load_spec(v)
        print(f"{v} ({spec.status}, {len(spec.clauses)} clauses)")
        for c in spec.clauses:
            print(f"  {c.id:<24} {c.title.en}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Write the generated files."""
    roots = _roots(args.root)
    changed = render_all(roots)
    for path in changed:
        print(f"wrote {path}")
    if not changed:
        print("generated files are up to date")
    return 0


def cmd_release(args: argparse.Namespace) -> int:
    """Release a version."""
    roots = _roots(args.root)
    digest = release(roots, _version(args.version))
    print(f"released {args.version} (digest {digest[:12]}); commit spec/versions.lock")
    render_all(roots)
    return 0
