"""Fixtures shared by both layers. Imports no torch: tests/core must collect without it."""

from __future__ import annotations

import json

import pytest

from tests.helpers import DATA


@pytest.fixture(scope="session")
def reference_cases() -> list[dict]:
    """Published or hand-derived parameter counts; each case names its source."""
    return json.loads((DATA / "reference_cases.json").read_text())["cases"]


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Install ``paramcalc.cells`` plugins for one test: ``plugins(modules, entries)``.

    ``modules`` maps module names to their source, ``entries`` entry-point names to
    ``module:attr``; they form one distribution (a ``.dist-info`` beside the modules) in a
    temporary folder put first on ``sys.path``, found the way installed packages are
    (``importlib.metadata.entry_points``). paramcalc loads plugins afresh; the registry, the
    modules and the plugin state are restored afterwards.
    """
    import importlib
    import sys

    from paramcalc.core import cells

    root = tmp_path / "site"
    saved = dict(cells.CELLS), dict(cells.ALIASES)
    monkeypatch.setattr(cells, "_PLUGINS_LOADED", False)
    monkeypatch.setattr(cells, "PLUGIN_FAILURES", {})
    monkeypatch.setattr(cells, "_REPORTED", set())
    installed: list[str] = []

    def install(modules: dict[str, str], entries: dict[str, str]) -> None:
        root.mkdir(exist_ok=True)
        for name, source in modules.items():
            (root / f"{name}.py").write_text(source)
            installed.append(name)
        info = root / "hostile_plugins-0.1.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hostile-plugins\nVersion: 0.1\n")
        lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
        (info / "entry_points.txt").write_text(f"[paramcalc.cells]\n{lines}")
        monkeypatch.syspath_prepend(str(root))
        importlib.invalidate_caches()

    yield install
    for name in installed:
        sys.modules.pop(name, None)
    cells.CELLS.clear()
    cells.CELLS.update(saved[0])
    cells.ALIASES.clear()
    cells.ALIASES.update(saved[1])
    cells._forget_counts()
