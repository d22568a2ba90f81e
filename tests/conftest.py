"""Fixtures shared by both layers. Imports no torch: tests/core must collect without it.

No test touches the user's files: from the start of the session (before collection, so imports
that write a configuration file, such as Keras' or matplotlib's, are covered too) ``HOME``,
``XDG_CACHE_HOME``, ``XDG_CONFIG_HOME`` and ``PARAMCALC_CACHE_DIR`` point into one temporary folder,
removed at the end; subprocesses inherit them. The autouse fixture puts them back before every
test, whatever the previous one did. Hypothesis runs without deadlines or speed health checks:
nothing depends on how busy the machine is.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import DATA

try:  # the [test] extra: no deadline and no "too slow" health check, which a busy machine trips
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover
    pass
else:
    settings.register_profile("paramcalc", deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("paramcalc")

#: The environment variables that name the user's folders, and the sub-folder each gets.
USER_DIRS = {
    "HOME": "home",
    "XDG_CACHE_HOME": "home/.cache",
    "XDG_CONFIG_HOME": "home/.config",
    "PARAMCALC_CACHE_DIR": "paramcalc-cache",
}
_saved: dict[str, str | None] = {}
_root: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    root = Path(tempfile.mkdtemp(prefix="paramcalc-tests-"))
    _root.append(root)
    for name, sub in USER_DIRS.items():
        _saved[name] = os.environ.get(name)
        (root / sub).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(root / sub)


def pytest_unconfigure(config: pytest.Config) -> None:
    for name, value in _saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    for root in _root:
        shutil.rmtree(root, ignore_errors=True)
    _root.clear()


@pytest.fixture(autouse=True)
def _no_user_files(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test runs with the session's temporary HOME, XDG folders and timing cache."""
    for name, sub in USER_DIRS.items():
        monkeypatch.setenv(name, str(_root[0] / sub))
    yield


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

    from paramcalc.core import cells, memo

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
    memo.clear()
