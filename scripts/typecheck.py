"""Run ``mypy --strict`` on the installed layout of the packages (the tree of ``static_tree.py``)."""

from __future__ import annotations

import subprocess
import sys

from static_tree import ROOT, build


def main() -> int:
    """Build the static tree and run mypy on it; returns mypy's exit code."""
    tree = build()
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "-p",
        "stockmon",
        *sys.argv[1:],
    ]
    return subprocess.call(cmd, cwd=tree)


if __name__ == "__main__":
    sys.exit(main())
