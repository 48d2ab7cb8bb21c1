"""The judge shares no code with the judged: no stockmon.reference, and the mock only through the
names the package ``stockmon.mockserver`` exports (its internals are free to move)."""

from __future__ import annotations

import ast
from pathlib import Path

import stockmon.conformance
import stockmon.mockserver

CONFORMANCE = Path(stockmon.conformance.__file__).resolve().parent


def _imports() -> list[tuple[str, str, tuple[str, ...]]]:
    out = []
    for path in sorted(CONFORMANCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                out.append((path.name, node.module, tuple(a.name for a in node.names)))
            elif isinstance(node, ast.Import):
                out.extend((path.name, a.name, ()) for a in node.names)
    return out


def test_mock_used_only_through_its_public_api() -> None:
    """Every import of the mock is ``from stockmon.mockserver import <an exported name>``."""
    public = set(stockmon.mockserver.__all__)
    for name, module, names in _imports():
        if module.startswith("stockmon.mockserver"):
            assert module == "stockmon.mockserver", (name, module)
            assert set(names) <= public, (name, names)
        assert not module.startswith("stockmon.reference"), (name, module)


def test_the_judge_never_imports_the_judged() -> None:
    """Importing every conformance module (and running its CLI setup) never loads stockmon.reference."""
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib, stockmon.conformance as c\n"
        "for m in pkgutil.walk_packages(c.__path__, 'stockmon.conformance.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert not [n for n in sys.modules if n.startswith('stockmon.reference')], sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
