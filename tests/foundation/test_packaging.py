"""Packaging: only stockmon.* is importable, and a built wheel carries the spec and schemas."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["reference", "mockserver", "conformance", "spec", "schemas"])
def test_generic_top_level_names_are_not_installed(name: str, tmp_path: Path) -> None:
    """'import reference' (etc.) fails outside the source tree; only stockmon.* exists."""
    out = subprocess.run(
        [sys.executable, "-c", f"import {name}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert "ModuleNotFoundError" in out.stderr


def test_package_data_loads_through_importlib_resources(tmp_path: Path) -> None:
    """The spec and schema files are found through importlib.resources from any working directory."""
    code = "from stockmon.spec import load_spec; print(len(load_spec('1.0').clauses))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert int(out.stdout) > 0


@pytest.mark.slow
def test_wheel_in_clean_venv_runs_spec_check(tmp_path: Path) -> None:
    """A wheel built from the tree, installed in a fresh venv, passes 'stockmon spec check'."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    wheel = next(dist.glob("stockmon-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    out = subprocess.run(
        [str(env_dir / "bin" / "stockmon"), "spec", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert "spec check: ok" in out.stdout
    imp = subprocess.run(
        [str(py), "-c", "import reference"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert imp.returncode != 0


def test_every_subpackage_is_declared() -> None:
    """Each folder with an __init__.py is listed in pyproject's packages, or a wheel would lack it."""
    import tomllib

    declared = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = set()
    for top, pkg in [("stockmon", "stockmon"), ("spec", "stockmon.spec"), ("schemas", "stockmon.schemas"),
                     ("reference", "stockmon.reference"), ("mockserver", "stockmon.mockserver"),
                     ("conformance", "stockmon.conformance")]:  # fmt: skip
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([pkg, *rel.parts]))
    assert found - declared == set()
