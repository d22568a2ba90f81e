"""Helpers shared by both test layers. No torch here: tests/core imports this module."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
#: The example architectures, shipped with the package (data/architectures links here).
ARCHS = ROOT / "paramcalc" / "data" / "architectures"


@dataclass(frozen=True)
class CliResult:
    """What one ``paramcalc`` run printed, and its exit code."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


#: The terminal width help text is drawn for: what click gives an 80-column terminal, or a pipe
#: with COLUMNS unset (shutil's fallback), the same 78-column text a user sees.
TERMINAL_COLUMNS = "80"


def invoke(*args: str, env: Mapping[str, str | None] | None = None) -> CliResult:
    """Run the CLI through its error boundary (``paramcalc.cli.run``, what the console script
    calls), with stdout and stderr captured separately; stdin is empty. Help text is wrapped as
    in a user's terminal (CliRunner's own forced width of 80 is lifted: click draws 78)."""
    import click.formatting

    from paramcalc.cli import run

    runner = CliRunner()
    with runner.isolation(env={"COLUMNS": TERMINAL_COLUMNS, **(env or {})}) as (out, err, _):
        click.formatting.FORCED_WIDTH = None  # restored by isolation
        code = run([str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return CliResult(code, stdout, stderr)


def one_line_error(result: CliResult, code: int = 2) -> str:
    """Assert ``result`` is a one-line error on stderr (nothing on stdout) with ``code``; return it."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.stdout == "", result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


# --- console examples in the documentation ------------------------------------------------------

DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
_BLOCK = re.compile(r"```console\n(.*?)```", re.S)
#: Commands, or flags, that build or run torch modules.
TORCH_COMMANDS = frozenset({"check", "inspect", "bench"})
TORCH_FLAGS = frozenset({"--check", "--flop-check", "--bench"})


@dataclass(frozen=True)
class Example:
    """One ``$ paramcalc ...`` line of a ```console block and the output shown under it."""

    doc: str
    command: str
    expected: str

    @property
    def args(self) -> list[str]:
        return shlex.split(self.command)[1:]

    @property
    def timed(self) -> bool:
        """Timing output differs from run to run: only its formatting is golden."""
        return "bench" in self.args[:1] or "--bench" in self.args

    @property
    def needs_torch(self) -> bool:
        return bool(self.args[:1] and self.args[0] in TORCH_COMMANDS) or bool(TORCH_FLAGS & set(self.args))

    @property
    def id(self) -> str:
        return f"{self.doc}: {self.command}"


def console_examples(docs: tuple[Path, ...] = DOCS) -> list[Example]:
    """Every ``$ paramcalc ...`` example of the documentation, with the output shown for it."""
    found = []
    for path in docs:
        text = path.read_text(encoding="utf-8")
        for block in _BLOCK.findall(text):
            for chunk in re.split(r"^(?=\$ )", block, flags=re.M):
                if chunk.startswith("$ paramcalc "):
                    cmd, _, out = chunk.partition("\n")
                    found.append(Example(path.relative_to(ROOT).as_posix(), cmd[2:], out.rstrip("\n")))
    return found


# --- work counted, not timed ---------------------------------------------------------------------


def python_calls(fn: Callable[[], object]) -> int:
    """How many Python function calls (generator resumptions included) ``fn()`` makes.

    A deterministic measure of work: tests compare it between two sizes to show that work grows
    linearly, never by timing anything.
    """
    calls = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(previous)
    return calls


# --- the package's doctests ----------------------------------------------------------------------

#: Modules whose examples build or time torch modules: run by tests/torch.
TORCH_DOCTESTS = frozenset(
    {
        "paramcalc.checks.tensorcheck",
        "paramcalc.studies.timed",
        "paramcalc.timing.benchmark",
        "paramcalc.timing.predict",
    }
)


def doctest_modules() -> list[str]:
    """Every module of the package with an example (``>>>``) in a docstring, found by reading the
    files (nothing is imported)."""
    package = ROOT / "paramcalc"
    found = []
    for path in sorted(package.rglob("*.py")):
        if ">>> " in path.read_text(encoding="utf-8"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def run_doctests(name: str) -> int:
    """Run every example in module ``name``'s docstrings; fail with doctest's report of each
    example that fails. Returns how many examples ran."""
    import doctest
    import importlib

    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    for test in doctest.DocTestFinder().find(module):
        runner.run(test, out=report.append)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "".join(report)
    return results.attempted
