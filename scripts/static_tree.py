"""Build the one tree every static tool reads: the packages laid out as they are installed.

The source folders (spec/, schemas/, reference/, ...) are the packages ``stockmon.spec``, ...
through setuptools' package-dir mapping; an editable install serves them with an import hook that
static tools (mypy, import-linter, an IDE) cannot follow. This writes ``build/static/stockmon/``:
real directories shaped like the installed package, one symlink per source file, so a tool that
walks directories without following links (import-linter's grimp) still sees every module and an
edit in the checkout is seen at once. Run it after adding or moving a file; ``typecheck.py`` and
``lint_imports.py`` run it themselves. An IDE: add ``build/static`` to its source path.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "build" / "static"
SUFFIXES = (".py", ".typed")


def package_dirs() -> dict[str, Path]:
    """Each top-level mapping of ``[tool.setuptools.package-dir]``: package name -> source folder."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping = config["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in mapping.items()}


def _link_tree(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for item in sorted(src.iterdir()):
        if item.is_dir():
            if (item / "__init__.py").exists():
                _link_tree(item, dst / item.name)
        elif item.suffix in SUFFIXES:
            (dst / item.name).symlink_to(item)


def build() -> Path:
    """Rebuild ``build/static`` from scratch and return it (the directory to put on the path)."""
    if STATIC.exists():
        shutil.rmtree(STATIC)
    for name, folder in package_dirs().items():
        target = STATIC.joinpath(*name.split("."))
        if name == "stockmon":  # the glue: its own files only, the roles are mapped separately
            target.mkdir(parents=True)
            for item in sorted(folder.iterdir()):
                if item.is_file() and item.suffix in SUFFIXES:
                    (target / item.name).symlink_to(item)
        else:
            _link_tree(folder, target)
    return STATIC


if __name__ == "__main__":
    print(build())
    sys.exit(0)
