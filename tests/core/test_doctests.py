"""The package's doctests: every example in a docstring runs, and prints what it says.

The examples that build or time torch modules run in tests/torch (``TORCH_DOCTESTS``).
"""

from __future__ import annotations

import pytest

from tests.helpers import TORCH_DOCTESTS, doctest_modules, run_doctests

MODULES = doctest_modules()


def test_the_scan_finds_the_examples():
    assert {"paramcalc", "paramcalc.core.costmodel", "paramcalc.results.text"} <= set(MODULES)
    assert set(MODULES) >= TORCH_DOCTESTS  # each torch module named there has examples


@pytest.mark.parametrize("name", [m for m in MODULES if m not in TORCH_DOCTESTS])
def test_doctests(name):
    assert run_doctests(name) > 0
