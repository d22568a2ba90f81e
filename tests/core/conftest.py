"""tests/core must not import torch: importing it while a core test module is collected or a core
test runs fails loudly, whatever else the session imported before.

While core code runs, ``torch`` and ``torchinfo`` (and their submodules) are hidden from
``sys.modules`` and a finder at the head of ``sys.meta_path`` refuses to import them; both are put
back afterwards, so tests/torch in the same session are unaffected. An import that someone
catches and swallows still fails the test, at teardown.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BLOCKED = ("torch", "torchinfo")
HERE = Path(__file__).resolve().parent


class TorchBlocker(importlib.abc.MetaPathFinder):
    """Refuses to import torch; remembers every attempt."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.partition(".")[0] in BLOCKED:
            self.attempts.append(name)
            raise ImportError(
                f"tests/core must not import {name!r}: the analytic core is tested without torch "
                "(move a test that needs torch to tests/torch)"
            )
        return None


BLOCKER = TorchBlocker()


@contextlib.contextmanager
def torch_blocked() -> Iterator[None]:
    hidden = {k: sys.modules.pop(k) for k in list(sys.modules) if k.partition(".")[0] in BLOCKED}
    sys.meta_path.insert(0, BLOCKER)
    try:
        yield
    finally:
        sys.meta_path.remove(BLOCKER)
        sys.modules.update(hidden)


def in_core(node: pytest.Item | pytest.Collector) -> bool:
    """Whether ``node`` lives under tests/core (some hooks reach every node once this file is loaded)."""
    path = getattr(node, "path", None)
    return path is not None and (path == HERE or HERE in path.parents)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    with torch_blocked() if in_core(collector) else contextlib.nullcontext():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    with torch_blocked() if in_core(item) else contextlib.nullcontext():
        return (yield)


@pytest.fixture(autouse=True)
def _no_torch_import_attempted() -> Iterator[None]:
    before = len(BLOCKER.attempts)
    yield
    tried = BLOCKER.attempts[before:]
    if tried:
        pytest.fail(f"a core test tried to import {', '.join(sorted(set(tried)))}", pytrace=False)
