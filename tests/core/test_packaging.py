"""The package metadata against the source tree: what a wheel would hold, and the version."""

from __future__ import annotations

import sys

import paramcalc
from tests.helpers import ROOT

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
