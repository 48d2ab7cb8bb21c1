"""Check the architecture: import-linter's contracts of ``pyproject.toml`` on the static tree.

import-linter finds ``stockmon`` by import, so the static tree goes first on ``PYTHONPATH`` (the
editable install's hook sits behind the path finder and is never asked).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from static_tree import ROOT, build


def main() -> int:
    """Build the static tree and run ``lint-imports`` against it; returns its exit code."""
    tree = build()
    exe = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [exe, "--no-cache", "--no-logo", str(ROOT / "pyproject.toml"), *sys.argv[1:]]
    return subprocess.call(cmd, cwd=tree, env=env)


if __name__ == "__main__":
    sys.exit(main())
