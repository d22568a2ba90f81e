"""The package's doctests that build or time torch modules (the rest run in tests/core)."""

from __future__ import annotations

import pytest

from tests.helpers import TORCH_DOCTESTS, run_doctests


@pytest.mark.parametrize("name", sorted(TORCH_DOCTESTS))
def test_doctests(name):
    assert run_doctests(name) > 0
