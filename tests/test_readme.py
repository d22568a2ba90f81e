"""The README shows real output: every deterministic `$ paramcalc ...` example is re-run here.

Golden text is used only for formatting: the numbers inside are checked by the other tests.
"""

from __future__ import annotations

import re
import shlex

import pytest
from click.testing import CliRunner

from paramcalc.cli import cli
from tests.conftest import ROOT

#: Sub-commands whose output does not depend on timing or on the machine.
DETERMINISTIC = {"count", "solve", "cost", "report", "check", "compare", "sweep"}

BLOCK = re.compile(r"```console\n(.*?)```", re.S)


def examples() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = []
    for block in BLOCK.findall(text):
        # split a block into ($ command, output) pairs
        for chunk in re.split(r"^(?=\$ )", block, flags=re.M):
            if not chunk.startswith("$ paramcalc "):
                continue
            cmd, _, out = chunk.partition("\n")
            args = shlex.split(cmd[2:])[1:]
            if (
                args
                and args[0] in DETERMINISTIC
                and "--device" not in args
                and "--output" not in args
                and "--bench" not in args
            ):
                found.append((cmd[2:], out.rstrip("\n")))
    return found


def test_readme_has_examples():
    assert len(examples()) >= 5


@pytest.mark.parametrize("cmd,expected", examples(), ids=[c for c, _ in examples()])
def test_readme_example_output_is_real(cmd, expected, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, shlex.split(cmd)[1:])
    assert result.output.rstrip("\n") == expected
