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
    assert PYPROJECT["project"]["scripts"] == {"paramcalc": "paramcalc.__main__:main"}


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


def _fake_checkout(tmp_path, codes: dict[str, int]):
    """A copy of scripts/test.sh beside a stub setup.sh and stub tools exiting with ``codes``
    (pytest, ruff, mypy), each recording its call in ``calls``."""
    import shutil
    import stat

    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    (tmp_path / "scripts" / "setup.sh").write_text("exit 0\n")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    calls = tmp_path / "calls"
    tools = {
        "python": f'echo "pytest $*" >> {calls}; exit {codes["pytest"]}',
        "ruff": f'echo "ruff $1" >> {calls}; [ "$1" = check ] && exit {codes["ruff"]}; exit 0',
        "mypy": f"echo mypy >> {calls}; exit {codes['mypy']}",
    }
    for name, body in tools.items():
        tool = bin_dir / name
        tool.write_text(f"#!/usr/bin/env bash\n{body}\n")
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return calls


def test_test_sh_runs_every_check_and_reports_each_failure(tmp_path):
    """scripts/test.sh: a failing pytest does not skip ruff and mypy; all are reported; exit 1."""
    import subprocess

    calls = _fake_checkout(tmp_path, {"pytest": 1, "ruff": 1, "mypy": 0})
    res = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "test.sh"), "-m", "not slow"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 1
    assert calls.read_text().splitlines() == [
        "pytest -m pytest -m not slow",
        "ruff check",
        "ruff format",
        "mypy",
    ]
    assert "FAILED  pytest (exit 1)" in res.stdout and "FAILED  ruff check (exit 1)" in res.stdout
    assert "ok      ruff format" in res.stdout and "ok      mypy" in res.stdout
    assert "2 of 4 checks failed: pytest ruff check" in res.stderr
    calls.unlink()
    clean = tmp_path / "clean"
    clean.mkdir()
    _fake_checkout(clean, {"pytest": 0, "ruff": 0, "mypy": 0})
    script = str(clean / "scripts" / "test.sh")
    res = subprocess.run(["bash", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "all 4 checks passed" in res.stdout
