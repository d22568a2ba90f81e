"""The library speaks Python; the CLI, and only the CLI, speaks flags.

A message raised, warned or noted outside ``paramcalc/cli/`` names a Python parameter in
backticks (```min_run_time```, ```threads=1```); the CLI shows the running command's flag in its
place, read from click's own option list (``paramcalc.cli.flags``).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import click
import pytest

import paramcalc as pc
from paramcalc.cli import COMMANDS, cli
from paramcalc.cli.flags import options, reword
from paramcalc.timing.merge import merge_files
from paramcalc.timing.runs import RUNS_SCHEMA
from tests.helpers import invoke, one_line_error

PACKAGE = Path(pc.__file__).parent
#: Calls messages name that are Python functions, not commands (the CLI leaves them as they are).
PYTHON_ONLY_CALLS = {"merge_files"}


def library_strings() -> list[tuple[str, int, str]]:
    """``(file, line, text)`` of every string constant outside ``paramcalc/cli/`` that is not a
    docstring: every piece a message can be built from (f-strings included)."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                first = node.body[0] if node.body else None
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                    docstrings.add(id(first.value))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                out.append((str(path.relative_to(PACKAGE.parent)), node.lineno, node.value))
    return out


def command(name: str) -> click.Command:
    found = cli.get_command(click.Context(cli), name)
    assert found is not None
    return found


def test_no_library_message_names_a_flag():
    flags = [f"{f}:{line}: {text!r}" for f, line, text in library_strings() if "--" in text]
    assert flags == []


def test_every_parameter_a_message_names_is_some_commands_option():
    """A backticked name in a library message is an option of some command (so the CLI can show
    its flag), or a command called as a function (``predict(refresh=True)``)."""
    known = {name for c in COMMANDS for name in options(command(c))}
    named = {
        (m.group(1), f"{f}:{line}")
        for f, line, text in library_strings()
        for m in re.finditer(r"`([A-Za-z_]\w*)(?=[=`(])", text)
    }
    assert named, "the scan finds the marked parameters"
    unknown = sorted(
        (name, where)
        for name, where in named
        if name not in known and name not in COMMANDS and name not in PYTHON_ONLY_CALLS
    )
    assert unknown == []


def test_options_carry_the_library_parameter_names():
    assert options(command("bench"))["min_run_time"].opts == ["--min-time"]
    assert options(command("predict"))["view"].opts == ["--by"]
    assert options(command("cost"))["device"].opts == ["--flop-device"]
    assert options(command("compare"))["bench"].opts == ["--bench"]
    assert options(command("check"))["use_torchinfo"].secondary_opts == ["--no-torchinfo"]


@pytest.mark.parametrize(
    ("cmd", "text", "said"),
    [
        ("bench", "try `min_run_time=1` or `threads=1`", "try --min-time 1 or --threads 1"),
        ("bench", "raise `min_run_time` for a spread", "raise --min-time for a spread"),
        ("check", "use `device='meta'`, which allocates", "use --device meta, which allocates"),
        ("check", "turned off (`use_torchinfo=False`)", "turned off (--no-torchinfo)"),
        ("count", "add `bidirectional=True`", "add --bidirectional"),
        ("predict", "(`view='gemm'` lists every shape)", "(--by gemm lists every shape)"),
        ("cost", "run on `device='meta'`", "run on --flop-device meta"),
        (
            "bench",
            "(`predict(refresh=True)` times them again)",
            "(paramcalc predict --refresh times them again)",
        ),
        # not this command's parameter, not a command, not a parameter: left as the library wrote it
        ("count", "try `threads=1`", "try `threads=1`"),
        ("compare", "e.g. `merge_files(['a.json'])`", "e.g. `merge_files(['a.json'])`"),
        ("count", "a `bidirectional=False` stack", "a `bidirectional=False` stack"),
        ("count", "a `1 + 2` and ``", "a `1 + 2` and ``"),
    ],
)
def test_reword_names_the_commands_flags(cmd, text, said):
    assert reword(text, command(cmd), command) == said


def test_an_error_names_parameters_in_python_and_flags_in_the_cli():
    with pytest.raises(pc.ParamcalcError) as info:
        pc.RecurrentSpec("lstm", 4, 4, merge_mode="sum")
    assert str(info.value) == (
        "`merge_mode='sum'` applies only to bidirectional stacks: add `bidirectional=True`"
    )
    line = one_line_error(invoke("count", "lstm", "-d", "4", "-H", "4", "--merge-mode", "sum"))
    assert line == "Error: --merge-mode sum applies only to bidirectional stacks: add --bidirectional"


def test_a_merge_error_names_parameters_in_python_and_flags_in_the_cli(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"runs_schema": RUNS_SCHEMA, "runs": []}))
    with pytest.raises(pc.ParamcalcError, match=r"timed \(`bench=True`\) or predicted \(`predict=True`\)"):
        merge_files([empty])
    line = one_line_error(invoke("compare", "--from", str(empty)))
    assert line.endswith("has no runs: export results that were timed (--bench) or predicted (--predict)")
    with pytest.raises(pc.ParamcalcError, match=r"export results with `output='FILE.json'`"):
        merge_files([tmp_path / "runs.csv"])
    line = one_line_error(invoke("compare", "--from", str(tmp_path / "runs.csv")))
    assert line.endswith("not a .json file: export results with --output FILE.json")
