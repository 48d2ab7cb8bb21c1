"""Check the architecture: import-linter's contracts of ``pyproject.toml`` on the static tree.

import-linter finds ``stockmon`` by import, so the static tree goes first on ``PYTHONPATH`` (the
editable install's hook sits behind the path finder and is never asked).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from static_tree import ROOT, build


def lint(tree: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``lint-imports`` (beside this interpreter) on ``tree`` with the project's contracts."""
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(exe), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml"), *args],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=capture,
        text=True,
        check=False,
    )


if __name__ == "__main__":
    sys.exit(lint(build(), *sys.argv[1:]).returncode)
