"""Run ``mypy --strict`` on the installed layout of the packages.

The source folders (spec/, schemas/, reference/, ...) are the packages ``stockmon.spec``, ...;
mypy cannot follow setuptools' editable-install import hook, so this builds a shadow tree of
symlinks shaped like the installed package under ``.typecheck/`` and checks that.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBPACKAGES = ("spec", "schemas", "reference", "mockserver", "conformance")


def main() -> int:
    """Build the shadow tree and run mypy on it; returns mypy's exit code."""
    shadow = ROOT / ".typecheck"
    if shadow.exists():
        shutil.rmtree(shadow)
    pkg = shadow / "stockmon"
    pkg.mkdir(parents=True)
    for item in (ROOT / "stockmon").iterdir():
        if item.suffix in (".py", ".typed"):
            (pkg / item.name).symlink_to(item)
    for sub in SUBPACKAGES:
        (pkg / sub).symlink_to(ROOT / sub, target_is_directory=True)
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
    return subprocess.call(cmd, cwd=shadow)


if __name__ == "__main__":
    sys.exit(main())
