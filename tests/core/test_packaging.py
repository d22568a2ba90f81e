"""The package metadata against the source tree: what a wheel would hold, and the version."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

import paramcalc
from tests.helpers import ARCHS, ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SUBPACKAGES = sorted(
    ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "paramcalc").rglob("__init__.py")
)


def test_the_source_tree_has_subpackages():
    assert {"paramcalc", "paramcalc.core", "paramcalc.bridge", "paramcalc.cli"} <= set(SUBPACKAGES)


def test_every_subpackage_is_packaged():
    setuptools = PYPROJECT["tool"]["setuptools"]
    if "packages" in setuptools and isinstance(setuptools["packages"], list):
        assert set(SUBPACKAGES) <= set(setuptools["packages"])
    else:  # packages.find: every subpackage is found under its include patterns
        find = setuptools["packages"]["find"]
        include = find.get("include", ["*"])
        assert any(pattern.rstrip("*") == "paramcalc" or pattern.endswith("*") for pattern in include)


def test_cli_entry_point():
    assert PYPROJECT["project"]["scripts"] == {"paramcalc": "paramcalc.cli:main"}


def test_version_is_the_same_everywhere():
    assert PYPROJECT["project"]["version"] == paramcalc.__version__


def test_markers_are_registered_strictly():
    ini = PYPROJECT["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in ini["addopts"]
    assert {m.split(":")[0] for m in ini["markers"]} == {"slow", "gpu"}


@pytest.mark.slow
def test_a_built_wheel_ships_the_architectures_and_report_finds_them(tmp_path):
    """Build the wheel from a copy of the source (setuptools, no network), install it into an
    empty folder and run ``paramcalc report mnist_rows_lstm`` from outside the checkout."""
    import shutil
    import subprocess
    import zipfile

    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("building a wheel needs setuptools in this environment")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "paramcalc", src / "paramcalc", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        wheels,
        src,
    ]
    env = {**os.environ, "HOME": str(tmp_path), "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(build, check=True, capture_output=True, cwd=tmp_path, env=env)
    (wheel,) = wheels.glob("paramcalc-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".toml")}
    expected = {f"paramcalc/data/architectures/{p.name}" for p in ARCHS.glob("*.toml")}
    assert shipped == expected and len(expected) >= 7

    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", site, wheel]
    subprocess.run(install, check=True, capture_output=True, cwd=tmp_path, env=env)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import paramcalc; from paramcalc.cli import run; "
        "print(paramcalc.__file__); sys.exit(run(['report', 'mnist_rows_lstm', '--by', 'total']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, site], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout
    assert out.splitlines()[0].startswith(str(site))  # the installed copy, not the checkout
    assert "total: 821,770 parameters" in out  # 819,200 + 10·256 + 10
