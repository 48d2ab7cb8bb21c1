"""The spec-first gate: every failure mode provoked on a temporary copy of the tree, with its message."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stockmon.spec.check import Roots, run_check

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the parts of the source tree that the gate reads."""
    shutil.copytree(ROOT / "spec", tmp_path / "spec", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        ROOT / "schemas", tmp_path / "schemas", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / ".env.example", tmp_path / ".env.example")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    return tmp_path


def problems(tree: Path, **kwargs: object) -> list[str]:
    """Findings of the gate on the tree, as strings."""
    report = run_check(Roots.source_tree(tree), **kwargs)  # type: ignore[arg-type]
    return [str(f) for f in report.findings]


def edit(path: Path, old: str, new: str) -> None:
    """Replace one occurrence of ``old`` (which must exist) in a file."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_clean_copy_passes(tree: Path) -> None:
    """The committed tree passes its own gate."""
    assert problems(tree) == []


@pytest.mark.parametrize(
    ("version", "old", "new"),
    [
        ("1.0", "interval_s: 30", "interval_s: 31"),
        ("1.1", "idle_timeout_s: 600", "idle_timeout_s: 601"),
    ],
)
def test_released_version_edited_in_place_fails_with_advice(
    tree: Path, version: str, old: str, new: str
) -> None:
    """Changing a value of a released, locked version fails and says to add a new version."""
    edit(tree / f"spec/versions/{version}.yaml", old, new)
    found = problems(tree)
    assert any(
        f"released version {version} was changed in place" in p and "new version" in p
        for p in found
    )


def test_comment_only_edit_of_released_version_is_not_a_change(tree: Path) -> None:
    """The lock hashes content, not layout: a comment added to 1.0 is not a change."""
    path = tree / "spec/versions/1.0.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\n# a comment\n", encoding="utf-8")
    assert problems(tree) == []


def test_released_version_without_lock_entry_fails(tree: Path) -> None:
    """A file marked released that the lock does not know must be released through the tool."""
    (tree / "spec/versions.lock").write_text(json.dumps({"released": {}}), encoding="utf-8")
    assert any(
        "not in versions.lock" in p and "stockmon spec release 1.0" in p for p in problems(tree)
    )


def test_removed_released_version_fails(tree: Path) -> None:
    """Deleting a released version is caught."""
    (tree / "spec/versions/1.0.yaml").unlink()
    (tree / "spec/docs/SPEC-1.0.md").unlink()
    assert any("released version was removed" in p for p in problems(tree))


def test_meta_schema_violation_names_file_and_path(tree: Path) -> None:
    """A clause missing a required key fails, naming the file and the clause path."""
    edit(
        tree / "spec/versions/1.1.yaml",
        '    section: "3.2"\n    title: {ko: "애플리케이션 핑"',
        '    title: {ko: "애플리케이션 핑"',
    )
    found = problems(tree)
    assert any(
        "1.1.yaml" in p and "clauses/" in p and "'section' is a required property" in p
        for p in found
    )


def test_invalid_yaml_names_line(tree: Path) -> None:
    """Broken YAML is reported with its line number."""
    path = tree / "spec/versions/1.1.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "\n  bad: [unclosed\n", encoding="utf-8")
    assert any("1.1.yaml:" in p and "invalid YAML" in p for p in problems(tree))


def test_duplicate_clause_id_fails(tree: Path) -> None:
    """Two clauses with one ID fail."""
    edit(tree / "spec/versions/1.1.yaml", "- id: KA-HEARTBEAT", "- id: KA-PING")
    assert any("duplicate clause ID KA-PING" in p for p in problems(tree))


def test_clause_without_id_fails(tree: Path) -> None:
    """A clause with no ID fails the meta-schema."""
    edit(tree / "spec/versions/1.1.yaml", "  - id: KA-HEARTBEAT\n", "  - \n")
    assert any("'id' is a required property" in p for p in problems(tree))


def test_layout_role_must_name_a_field(tree: Path) -> None:
    """A layout role naming no field is caught (cross-reference the meta-schema cannot express)."""
    edit(tree / "spec/versions/1.1.yaml", "price: STCK_PRPR", "price: STCK_PRICE")
    assert any("roles/price" in p and "STCK_PRICE" in p for p in problems(tree))


def _newest_draft() -> str:
    """The newest version still a draft (the one an author edits), whichever it is today."""
    from stockmon.spec import available_versions, load_spec

    drafts = [v for v in available_versions() if load_spec(v).status == "draft"]
    if not drafts:
        pytest.fail("no draft spec version to edit")
    return drafts[-1]


def test_generated_docs_out_of_date_fails(tree: Path) -> None:
    """A draft edit without 'stockmon spec render' leaves the docs stale and fails."""
    draft = _newest_draft()
    edit(tree / f"spec/versions/{draft}.yaml", "idle_timeout_s: 600", "idle_timeout_s: 601")
    found = problems(tree)
    assert any(
        f"SPEC-{draft}.md" in p and "out of date" in p and "stockmon spec render" in p
        for p in found
    )
    assert not any(draft in p and "changed in place" in p for p in found)  # a draft may change


def test_released_1_1_set_back_to_draft_fails(tree: Path) -> None:
    """Turning released 1.1 back into a draft is caught (its lock entry stays)."""
    edit(tree / "spec/versions/1.1.yaml", "\nstatus: released\n", "\nstatus: draft\n")
    assert any("1.1.yaml" in p and "set back to draft" in p for p in problems(tree))


def test_internal_api_documents_are_generated(tree: Path) -> None:
    """The internal API's OpenAPI/AsyncAPI files are generated: edited or missing, the gate fails."""
    docs = tree / "spec/docs"
    (docs / "asyncapi-api-1.2.json").unlink()
    path = docs / "openapi-api-1.2.json"
    path.write_text(path.read_text(encoding="utf-8").replace("4", "5", 1), encoding="utf-8")
    found = problems(tree)
    assert any("asyncapi-api-1.2.json" in p and "missing" in p for p in found)
    assert any("openapi-api-1.2.json" in p and "out of date" in p for p in found)


def test_env_example_out_of_date_fails(tree: Path) -> None:
    """.env.example is generated from the spec's environment list."""
    (tree / ".env.example").write_text("KIS_APP_KEY=\n", encoding="utf-8")
    assert any(".env.example" in p and "out of date" in p for p in problems(tree))


def _first_schema(tree: Path) -> Path:
    paths = sorted((tree / "schemas").glob("*.json"))
    if not paths:
        pytest.fail("no schema files in schemas/ (the gate has nothing to judge)")
    return paths[0]


def test_invalid_json_schema_fails(tree: Path) -> None:
    """A schema that breaks the 2020-12 meta-schema is reported with the file."""
    path = _first_schema(tree)
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["type"] = "no-such-type"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert any(path.name in p and "invalid JSON Schema" in p for p in problems(tree))


def test_example_that_misbehaves_fails(tree: Path) -> None:
    """A labelled-invalid example that validates, and a valid one that fails, are both caught."""
    path = _first_schema(tree)
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["x-invalid-examples"].append({"why": "planted", "instance": doc["examples"][0]})
    doc["examples"].append({"planted": "not valid"} if doc.get("type") == "object" else None)
    path.write_text(json.dumps(doc), encoding="utf-8")
    found = problems(tree)
    assert any("labelled invalid (planted) but validates" in p for p in found)
    assert any("labelled valid but fails" in p for p in found)


def test_unresolvable_ref_fails(tree: Path) -> None:
    """A $ref that points outside the registry fails; nothing is fetched."""
    path = _first_schema(tree)
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc.setdefault("$defs", {})["x"] = {"$ref": "https://example.com/remote.json"}
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert any("does not resolve offline" in p for p in problems(tree))


def test_clause_citing_unknown_schema_fails(tree: Path) -> None:
    """A clause that cites a schema with no file fails."""
    edit(
        tree / "spec/versions/1.1.yaml",
        "schemas: [kis-ws-client-pingpong]",
        "schemas: [no-such-schema]",
    )
    assert any("cites unknown schema 'no-such-schema'" in p for p in problems(tree))


def test_coverage_requires_a_check_per_breakable_clause(tree: Path) -> None:
    """With a check index, an uncovered breakable clause and an unknown cited clause both fail."""
    found = problems(tree, check_index={"ping_period": ["KA-PING", "KA-NOPE"]})
    assert any("cites unknown clause KA-NOPE" in p for p in found)
    assert any("clause POL-IDLE-RECONNECT" in p and "no conformance check" in p for p in found)
    assert not any("clause TEST-MOCKED" in p for p in found)  # not breakable, has a reason


def test_pending_clauses_are_reported_not_hidden(tree: Path) -> None:
    """A pending clause is listed on every run; a pending clause that has a check is a stale entry."""
    from stockmon.spec import available_versions, load_spec

    every = {
        c.id for v in available_versions() for c in load_spec(v).clauses if c.testability.breakable
    }
    index = {"all": sorted(every - {"KIWOOM-PROTOCOL"})}
    report = run_check(Roots.source_tree(tree), index, {"KIWOOM-PROTOCOL": "issue 7"})
    assert report.ok
    assert any("NOT COVERED (pending): KIWOOM-PROTOCOL" in n for n in report.notes)
    stale = run_check(Roots.source_tree(tree), {"all": sorted(every)}, {"KA-PING": "old"})
    assert any("still listed as pending" in str(f) for f in stale.findings)


def test_cli_check_exit_codes_and_message(tree: Path) -> None:
    """'stockmon spec check --root' exits 0 when clean and 1 with a FAIL line naming the fix."""
    cmd = [
        sys.executable,
        "-m",
        "stockmon.cli",
        "spec",
        "check",
        "--root",
        str(tree),
        "--no-coverage",
    ]
    ok = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    edit(tree / "spec/versions/1.0.yaml", "idle_timeout_s: 600", "idle_timeout_s: 60")
    bad = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert "FAIL spec/versions/1.0.yaml" in bad.stderr and "add a new version" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_release_locks_a_draft(tree: Path) -> None:
    """'spec release' marks a draft released and locks it; editing it afterwards fails."""
    from stockmon.spec.check import release, render_all

    draft = _newest_draft()
    roots = Roots.source_tree(tree)
    release(roots, draft)
    render_all(roots)
    assert problems(tree) == []
    edit(tree / f"spec/versions/{draft}.yaml", "idle_timeout_s: 600", "idle_timeout_s: 601")
    assert any(f"released version {draft} was changed in place" in p for p in problems(tree))


def test_a_cited_document_must_be_in_the_repository(tree: Path) -> None:
    """Deleting docs/protocol/kiwoom.md fails the gate on every version that cites it."""
    (tree / "docs" / "protocol" / "kiwoom.md").unlink()
    found = problems(tree)
    assert found and all("kiwoom.md" in f and "no such document" in f for f in found)
    assert any(f.startswith("spec 1.1 cites") for f in found)


def test_a_cited_section_must_exist(tree: Path) -> None:
    """A citation of a section the document lacks names the document and the section."""
    edit(tree / "docs" / "protocol" / "kis.md", "### 2.8 Session limits", "### Session limits")
    found = problems(tree)
    assert found and any("docs/protocol/kis.md has no section §2.8" in f for f in found)
