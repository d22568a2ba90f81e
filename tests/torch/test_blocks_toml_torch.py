"""`report --check` of an architecture with a registry block: one line naming the check that
does exist for such models (`inspect` of its config.json, checked), exit 2."""

from __future__ import annotations

from pathlib import Path

from tests.core.test_blocks_toml import write
from tests.helpers import invoke, one_line_error


def test_check_refuses_a_block_in_one_line(tmp_path: Path) -> None:
    line = one_line_error(invoke("report", str(write(tmp_path)), "--check"))
    assert "not built in torch" in line and "config.json" in line and "check" in line
