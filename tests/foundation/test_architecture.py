"""Architecture contracts (import-linter on the static tree): kept by the code, broken by a bad import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from lint_imports import lint  # noqa: E402
from static_tree import build  # noqa: E402


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return lint(tree, capture=True)


@pytest.fixture(scope="module")
def static_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the static tree (links kept), so a test can plant a bad import in it."""
    dst = tmp_path_factory.mktemp("static") / "tree"
    shutil.copytree(build(), dst, symlinks=True)
    return dst


def test_static_tree_holds_every_module() -> None:
    """Every source module of every role appears in the static tree, nested packages included."""
    tree = build()
    for role in ("spec", "schemas", "reference", "mockserver", "conformance"):
        src = {p.relative_to(ROOT / role) for p in (ROOT / role).rglob("*.py")}
        linked = {
            p.relative_to(tree / "stockmon" / role)
            for p in (tree / "stockmon" / role).rglob("*.py")
        }
        assert src <= linked, f"{role}: {sorted(src - linked)} missing from the static tree"


def test_contracts_are_kept() -> None:
    """The code as committed keeps every import-linter contract."""
    out = _lint(build())
    assert out.returncode == 0, out.stdout + out.stderr
    assert "broken" in out.stdout and " 0 broken" in out.stdout


@pytest.mark.parametrize(
    ("module", "source", "contract"),
    [
        ("spec/_bad.py", "import stockmon.reference\n", "CLI above roles"),
        ("conformance/_bad.py", "import stockmon.reference\n", "the judge never imports"),
        ("mockserver/_bad_a.py", "from stockmon.mockserver import _bad_b\n", "no import cycle"),
        ("reference/kis/_bad.py", "import stockmon.reference.kiwoom\n", "broker dialects never"),
        ("mockserver/kiwoom/_bad.py", "import stockmon.mockserver.kis\n", "mock dialects never"),
        ("conformance/_bad.py", "import stockmon.mockserver.world\n", "public API only"),
        (
            "reference/fleet/_bad.py",
            "import stockmon.reference.registry\n",
            "reference: CLI and the gateway above",
        ),
        ("mockserver/kis/_bad.py", "import stockmon.mockserver.cli\n", "mockserver: CLI"),
        ("conformance/checks/_bad.py", "import stockmon.conformance.runner\n", "conformance: CLI"),
    ],
)
def test_a_bad_import_breaks_its_contract(
    static_copy: Path, module: str, source: str, contract: str
) -> None:
    """A planted import that crosses a layer, judges with the judged, or closes a cycle is caught."""
    bad = static_copy / "stockmon" / module
    bad.write_text(source, encoding="utf-8")
    partner = None
    if "_bad_a" in module:  # the cycle needs its other half
        partner = bad.with_name("_bad_b.py")
        partner.write_text("from stockmon.mockserver import _bad_a\n", encoding="utf-8")
    try:
        out = _lint(static_copy)
    finally:
        bad.unlink()
        if partner is not None:
            partner.unlink()
    assert out.returncode != 0
    broken = out.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken
    assert "_bad" in broken, broken  # the planted module is named, not only an old offence
