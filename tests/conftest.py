from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"


@pytest.fixture(scope="session")
def reference_cases() -> list[dict]:
    return json.loads((DATA / "reference_cases.json").read_text())["cases"]


def one_line_error(result) -> str:
    """Assert a CliRunner result is a one-line user error with exit code 2; return the line."""
    out = (result.stderr if hasattr(result, "stderr") else "") or result.output
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    return lines[0]
