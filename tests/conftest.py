"""Fixtures shared by both layers. Imports no torch: tests/core must collect without it."""

from __future__ import annotations

import json

import pytest

from tests.helpers import DATA


@pytest.fixture(scope="session")
def reference_cases() -> list[dict]:
    """Published or hand-derived parameter counts; each case names its source."""
    return json.loads((DATA / "reference_cases.json").read_text())["cases"]
