"""The spec-first gate (clause DEV-SPEC-FIRST): ``stockmon spec check``.

Fails, naming the file/clause/schema and the fix, on: a spec file that breaks the meta-schema; a
duplicate or malformed clause ID; an invalid JSON Schema or an unresolvable ``$ref``; a schema
example that does not behave as labelled; a clause citing an unknown schema; a spec example
packet that does not validate; generated docs or ``.env.example`` out of date; a released version
changed in place, removed, or released without a lock entry; and, when a conformance check index is
supplied, a breakable clause no check covers or a check citing an unknown clause.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from referencing.exceptions import Unresolvable

from stockmon import schemas as schema_pkg
from stockmon.errors import SpecError
from stockmon.spec import export, loader, render
from stockmon.spec.model import Spec

LOCK_NAME = "versions.lock"


@dataclass(frozen=True)
class Finding:
    """One reason the gate fails: where, what, and how to fix it."""

    where: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem} -> {self.fix}"


@dataclass(frozen=True)
class Roots:
    """The directories the gate inspects (a source tree, a temp copy, or an installed wheel)."""

    spec: Path
    schemas: Path
    project: Path | None = None

    @classmethod
    def installed(cls) -> Roots:
        """The installed package data; the project root too when it is a source checkout."""
        spec = loader.spec_dir()
        project = spec.parent if (spec.parent / "pyproject.toml").is_file() else None
        return cls(spec, schema_pkg.schemas_dir(), project)

    @classmethod
    def source_tree(cls, root: Path) -> Roots:
        """A checkout (or a copy of one) at ``root``."""
        return cls(root / "spec", root / "schemas", root)


@dataclass
class Report:
    """Findings plus what was checked, for the summary line."""

    findings: list[Finding]
    checked: list[str]
    notes: list[str]

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.findings


def read_lock(roots: Roots) -> dict[str, str]:
    """The released-version lock (version -> canonical digest)."""
    path = roots.spec / LOCK_NAME
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SpecError(f"{LOCK_NAME} must be a JSON object of version -> digest")
    return {str(k): str(v) for k, v in data.get("released", {}).items()}


def write_lock(roots: Roots, lock: Mapping[str, str]) -> None:
    """Write the lock file deterministically."""
    ordered = {k: lock[k] for k in sorted(lock, key=loader.version_key)}
    text = json.dumps({"released": ordered}, indent=2, sort_keys=False) + "\n"
    (roots.spec / LOCK_NAME).write_text(text, encoding="utf-8")


def load_specs(roots: Roots, findings: list[Finding]) -> dict[str, Spec]:
    """Load every version file, turning each problem into a finding."""
    specs: dict[str, Spec] = {}
    loader.meta_validator.cache_clear()
    for version in loader.available_versions(roots.spec):
        path = roots.spec / "versions" / f"{version}.yaml"
        try:
            specs[version] = loader.load_spec_file(path, roots.spec)
        except SpecError as exc:
            findings.append(
                Finding(
                    f"spec/versions/{version}.yaml",
                    str(exc),
                    "fix the file so it matches spec/meta-schema.json",
                )
            )
    return specs


def check_lock(roots: Roots, specs: Mapping[str, Spec], findings: list[Finding]) -> None:
    """Released versions are immutable."""
    lock = read_lock(roots)
    files = set(loader.available_versions(roots.spec))
    for version, digest in lock.items():
        if version not in files:
            findings.append(
                Finding(
                    f"spec/versions/{version}.yaml",
                    "released version was removed",
                    "restore the file from git",
                )
            )
            continue
        spec = specs.get(version)
        if spec is None:
            continue
        if spec.status != "released":
            findings.append(
                Finding(
                    f"spec/versions/{version}.yaml",
                    "released version was set back to draft",
                    "restore 'status: released'; put changes in a new version",
                )
            )
        if spec.digest != digest:
            findings.append(
                Finding(
                    f"spec/versions/{version}.yaml",
                    f"released version {version} was changed in place "
                    f"(content digest {spec.digest[:12]} != locked {digest[:12]})",
                    "revert the edit; released versions are immutable: add a new version "
                    "(copy it to a new versions/X.Y.yaml with 'status: draft') and change that",
                )
            )
    for version, spec in specs.items():
        if spec.status == "released" and version not in lock:
            findings.append(
                Finding(
                    f"spec/versions/{version}.yaml",
                    "marked released but not in versions.lock",
                    f"run 'stockmon spec release {version}'",
                )
            )
        if spec.based_on and spec.based_on not in specs:
            findings.append(
                Finding(
                    f"spec/versions/{version}.yaml",
                    f"based_on {spec.based_on!r} does not exist",
                    "name an existing version",
                )
            )


def _walk_refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _walk_refs(v)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_refs(item)


def check_schemas(roots: Roots, findings: list[Finding]) -> dict[str, dict[str, Any]]:
    """Every schema valid, resolvable offline, and its examples behave as labelled."""
    try:
        docs = schema_pkg.load_documents(roots.schemas)
    except SpecError as exc:
        findings.append(Finding("schemas/", str(exc), "fix the JSON syntax"))
        return {}
    registry = schema_pkg.build_registry(docs)
    for name, doc in docs.items():
        where = f"schemas/{name}.json"
        if doc.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
            findings.append(
                Finding(
                    where,
                    "$schema is not JSON Schema 2020-12",
                    'set "$schema": "https://json-schema.org/draft/2020-12/schema"',
                )
            )
            continue
        if doc.get("$id") != schema_pkg.schema_uri(name):
            findings.append(
                Finding(
                    where,
                    f"$id is {doc.get('$id')!r}",
                    f'set "$id": "{schema_pkg.schema_uri(name)}"',
                )
            )
        try:
            jsonschema.Draft202012Validator.check_schema(doc)
        except jsonschema.SchemaError as exc:
            findings.append(
                Finding(
                    where, f"invalid JSON Schema: {exc.message}", "fix the schema keyword named"
                )
            )
            continue
        resolver = registry.resolver(base_uri=schema_pkg.schema_uri(name))
        for ref in set(_walk_refs(doc)):
            try:
                resolver.lookup(ref)
            except Unresolvable:
                findings.append(
                    Finding(
                        where,
                        f"$ref {ref!r} does not resolve offline",
                        "point it at a schema in schemas/ (by its file name) or a local #/$defs",
                    )
                )
        validator = jsonschema.Draft202012Validator(doc, registry=registry)
        valid = doc.get("examples", [])
        invalid = doc.get("x-invalid-examples", [])
        if not valid or not invalid:
            findings.append(
                Finding(
                    where,
                    "needs at least one valid ('examples') and one invalid ('x-invalid-examples') example",
                    "add labelled examples",
                )
            )
        for i, example in enumerate(valid):
            errs = list(validator.iter_errors(example))
            if errs:
                findings.append(
                    Finding(
                        f"{where} examples[{i}]",
                        f"labelled valid but fails: {errs[0].message}",
                        "fix the example or the schema",
                    )
                )
        for i, item in enumerate(invalid):
            if not isinstance(item, dict) or "instance" not in item or "why" not in item:
                findings.append(
                    Finding(
                        f"{where} x-invalid-examples[{i}]",
                        'must be {"why": ..., "instance": ...}',
                        "label the invalid example",
                    )
                )
                continue
            if validator.is_valid(item["instance"]):
                findings.append(
                    Finding(
                        f"{where} x-invalid-examples[{i}]",
                        f"labelled invalid ({item['why']}) but validates",
                        "tighten the schema or fix the example",
                    )
                )
    return docs


def check_clause_refs(
    specs: Mapping[str, Spec],
    docs: Mapping[str, dict[str, Any]],
    roots: Roots,
    findings: list[Finding],
) -> None:
    """Clauses cite existing schemas; example packets in clause values validate."""
    if not docs:
        return
    registry = schema_pkg.build_registry(dict(docs))
    for version, spec in specs.items():
        for clause in spec.clauses:
            for name in clause.schemas:
                if name not in docs:
                    findings.append(
                        Finding(
                            f"spec {version} clause {clause.id}",
                            f"cites unknown schema {name!r}",
                            f"add schemas/{name}.json or fix the name",
                        )
                    )
            packet = clause.values.get("packet")
            if packet is not None and clause.schemas and clause.schemas[0] in docs:
                from stockmon.spec.model import thaw

                validator = jsonschema.Draft202012Validator(
                    docs[clause.schemas[0]], registry=registry
                )
                errs = list(validator.iter_errors(thaw(packet)))
                if errs:
                    findings.append(
                        Finding(
                            f"spec {version} clause {clause.id} values.packet",
                            f"does not validate against {clause.schemas[0]}: {errs[0].message}",
                            "fix the packet or the schema",
                        )
                    )


def generated_files(specs: Mapping[str, Spec], roots: Roots) -> dict[Path, str]:
    """Every generated file with the content it must have."""
    out = {
        roots.spec / "docs" / f"SPEC-{v}.md": render.render_markdown(s) for v, s in specs.items()
    }
    try:
        docs = schema_pkg.load_documents(roots.schemas)
    except SpecError:
        docs = {}
    if docs:
        for v, s in specs.items():
            try:
                out[roots.spec / "docs" / f"openapi-{v}.json"] = export.dump(
                    export.openapi(s, docs)
                )
                out[roots.spec / "docs" / f"asyncapi-{v}.json"] = export.dump(
                    export.asyncapi(s, docs)
                )
            except (SpecError, KeyError, Unresolvable):
                continue  # a broken schema is reported by check_schemas; do not double-report here
            if not export.has_internal_api(s):
                continue
            try:
                open_path, async_path = export.api_document_paths(s)
                out[roots.spec / open_path] = export.dump(export.openapi_api(s, docs))
                out[roots.spec / async_path] = export.dump(export.asyncapi_api(s, docs))
            except (SpecError, KeyError, Unresolvable):
                continue  # as above: the broken clause or schema is reported by its own step
    if roots.project is not None and specs:
        newest = specs[max(specs, key=loader.version_key)]
        out[roots.project / ".env.example"] = render.render_env_example(newest)
    return out


def check_generated(specs: Mapping[str, Spec], roots: Roots, findings: list[Finding]) -> None:
    """Generated docs are committed and current."""
    for path, content in generated_files(specs, roots).items():
        rel = path.relative_to(roots.project) if roots.project else path.name
        if not path.is_file():
            findings.append(
                Finding(str(rel), "generated file is missing", "run 'stockmon spec render'")
            )
        elif path.read_text(encoding="utf-8") != content:
            findings.append(
                Finding(str(rel), "generated file is out of date", "run 'stockmon spec render'")
            )


def check_coverage(
    specs: Mapping[str, Spec],
    check_index: Mapping[str, Sequence[str]],
    findings: list[Finding],
    notes: list[str],
    pending: Mapping[str, str] | None = None,
) -> None:
    """Every breakable clause has a check; every check cites clauses that exist somewhere.

    ``pending`` lists clauses whose checks are known to be missing, each with the reason (an issue
    reference); they are reported on every run instead of failing it, and a pending clause that
    gains a check must leave the list (a stale entry fails).
    """
    pending = pending or {}
    all_ids = {cid for s in specs.values() for cid in s.clause_ids}
    covered = {cid for ids in check_index.values() for cid in ids}
    for check, ids in check_index.items():
        for cid in ids:
            if cid not in all_ids:
                findings.append(
                    Finding(
                        f"conformance check {check}",
                        f"cites unknown clause {cid}",
                        "fix the clause ID or add the clause to the spec",
                    )
                )
    for cid in pending:
        if cid in covered:
            findings.append(
                Finding(
                    f"conformance pending list: {cid}",
                    "has a check now but is still listed as pending",
                    "remove it from PENDING in conformance/catalog.py",
                )
            )
        elif cid not in all_ids:
            findings.append(
                Finding(
                    f"conformance pending list: {cid}",
                    "names an unknown clause",
                    "remove or fix it",
                )
            )
    uncovered_pending: set[str] = set()
    for version, spec in specs.items():
        for clause in spec.clauses:
            if not clause.testability.breakable or clause.id in covered:
                continue
            if clause.id in pending:
                uncovered_pending.add(clause.id)
                continue
            findings.append(
                Finding(
                    f"spec {version} clause {clause.id}",
                    "no conformance check covers it",
                    "add a check tagged with this clause, or mark it not breakable with a reason",
                )
            )
    for cid in sorted(uncovered_pending):
        notes.append(f"NOT COVERED (pending): {cid} — {pending[cid]}")


# Documents the spec cites, and where each lives in this repository (issue 12): the protocol facts in
# docs/protocol/ (written in our words), the design notes in docs/design.md, the v1.0 sheet as its
# machine-readable copy 1.0.yaml.
CITED_DOCS: dict[str, str] = {
    "shared/protocol/kis.md": "docs/protocol/kis.md",
    "shared/protocol/kiwoom.md": "docs/protocol/kiwoom.md",
    "protocol/kis.md": "docs/protocol/kis.md",
    "protocol/kiwoom.md": "docs/protocol/kiwoom.md",
    "shared/spec/backend-spec-v1.0.md": "spec/versions/1.0.yaml",
    "sheet": "spec/versions/1.0.yaml",
    "shared/DESIGN.md": "docs/design.md",
}
# Cited, but kept outside the repository (none today; a name here is reported as a note).
EXTERNAL_DOCS: tuple[str, ...] = ()
_CITATION = re.compile(
    r"(?<![\w/])((?:shared/)?(?:protocol|spec)/[\w.-]+\.md)((?:[ ,]*§\s*[0-9][0-9.]*)*)"
)


def citations(text: str) -> Iterable[tuple[str, list[str]]]:
    """``(document, [sections])`` for every protocol/spec document cited in a spec file's text."""
    for m in _CITATION.finditer(text):
        yield m.group(1), [x.rstrip(".") for x in re.findall(r"§\s*([0-9][0-9.]*)", m.group(2))]


def _headings(path: Path) -> set[str]:
    """Section numbers of a Markdown file's headings (``## 2.6 ...`` -> ``2.6``)."""
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#+\s+([0-9]+(?:\.[0-9]+)*)[. ]", line)
        if m:
            out.add(m.group(1))
    return out


def check_citations(
    specs: Mapping[str, Spec], roots: Roots, findings: list[Finding], notes: list[str]
) -> None:
    """Every document the spec cites (clause sources and notes) resolves to a file in the repo,
    and every cited section number to a heading of it."""
    if roots.project is None:
        notes.append("citations: not checked (installed package, no source tree)")
        return
    external = 0
    for version in specs:
        text = (roots.spec / "versions" / f"{version}.yaml").read_text(encoding="utf-8")
        cited = list(citations(text))
        cited += [
            (c.source.doc, [x.rstrip(".") for x in re.findall(r"§\s*([0-9][0-9.]*)", c.source.ref)])
            for c in specs[version].clauses
        ]
        for doc, sections in cited:
            if doc in EXTERNAL_DOCS:
                external += 1
                continue
            target = CITED_DOCS.get(doc)
            where = f"spec {version} cites {doc}"
            if target is None or not (roots.project / target).is_file():
                findings.append(
                    Finding(where, "no such document in the repository", "add it under docs/")
                )
                continue
            if sections and target.endswith(".md"):
                missing = [x for x in sections if x not in _headings(roots.project / target)]
                if missing:
                    findings.append(
                        Finding(
                            where,
                            f"{target} has no section {', '.join('§' + x for x in missing)}",
                            f"add the section to {target} or fix the citation",
                        )
                    )
    if external:
        notes.append(
            f"citations: {external} of {', '.join(EXTERNAL_DOCS)} (outside the repository)"
        )


def run_check(
    roots: Roots,
    check_index: Mapping[str, Sequence[str]] | None = None,
    pending: Mapping[str, str] | None = None,
) -> Report:
    """Run every gate step and collect findings."""
    findings: list[Finding] = []
    notes: list[str] = []
    specs = load_specs(roots, findings)
    check_lock(roots, specs, findings)
    docs = check_schemas(roots, findings)
    check_clause_refs(specs, docs, roots, findings)
    check_generated(specs, roots, findings)
    check_citations(specs, roots, findings, notes)
    if check_index is None:
        notes.append("clause coverage: not checked (no conformance check index available)")
    else:
        check_coverage(specs, check_index, findings, notes, pending)
    if roots.project is None:
        notes.append(".env.example: not checked (installed package, no source tree)")
    checked = [f"{len(specs)} spec versions ({', '.join(specs)})", f"{len(docs)} schemas"]
    if check_index is not None:
        checked.append(f"{len(check_index)} conformance checks")
    return Report(findings, checked, notes)


def render_all(roots: Roots) -> list[Path]:
    """Write every generated file; returns the ones that changed."""
    findings: list[Finding] = []
    specs = load_specs(roots, findings)
    if findings:
        raise SpecError(str(findings[0]))
    changed = []
    for path, content in generated_files(specs, roots).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            changed.append(path)
    return changed


def release(roots: Roots, version: str) -> str:
    """Mark a draft version released and lock its digest."""
    path = roots.spec / "versions" / f"{version}.yaml"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if not text:
        raise SpecError(f"no spec version {version}")
    if "\nstatus: draft\n" in text:
        path.write_text(
            text.replace("\nstatus: draft\n", "\nstatus: released\n", 1), encoding="utf-8"
        )
    spec = loader.load_spec_file(path, roots.spec)
    lock = read_lock(roots)
    if version in lock and lock[version] != spec.digest:
        raise SpecError(
            f"version {version} is already released with another digest; add a new version instead"
        )
    lock[version] = spec.digest
    write_lock(roots, lock)
    return spec.digest
