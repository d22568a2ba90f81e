"""What a new user meets first (issue 21, items 4 and 5): the seed's model from one command line,
the bundled architectures, "did you mean", shell completion, ``-f markdown``, plurals, tables
that fit 120 columns, help text at the width a terminal shows, self-describing report documents
and plots whose labels do not collide.

Expected numbers are written out by hand: LSTM(28, 256, 2) = 4(256·28 + 256·256 + 2·256)
+ 4(2·256·256 + 2·256) = 819,200, and a Linear(in, out) head has out·in + out parameters.
"""

from __future__ import annotations

import ast
import itertools
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import paramcalc as pc
from paramcalc import ParamcalcError, RecurrentSpec
from paramcalc.render.draw import MAX_TABLE_WIDTH, render
from paramcalc.results.table import Column, Table
from paramcalc.results.text import plural
from tests.helpers import ARCHS, ROOT, console_examples, invoke, one_line_error

LSTM_2 = 4 * (256 * 28 + 256 * 256 + 2 * 256) + 4 * (2 * 256 * 256 + 2 * 256)  # 819,200
SEED = ["lstm", "-d", "28", "-H", "256", "-L", "2"]


def linear(n_in: int, n_out: int) -> int:
    return n_out * n_in + n_out


# --- the seed's model from one command line ------------------------------------------------------


def test_count_head_prints_the_seed_total_with_the_head_formula():
    r = invoke("count", *SEED, "--head", "10")
    assert r.exit_code == 0, r.output
    assert LSTM_2 == 819_200 and LSTM_2 + linear(256, 10) == 821_770
    assert "head: Linear(256, 10): out·in + out = 10·256 + 10 = 2,570" in r.stdout
    assert "= 819,200" in r.stdout and r.stdout.rstrip().endswith("total: 821,770 parameters")
    assert "head.weight" in r.stdout and "(10, 256)" in r.stdout and "rnn.weight_ih_l0" in r.stdout


@pytest.mark.parametrize(
    "flags, stack, head_in",
    [
        ([], RecurrentSpec("lstm", 28, 256, num_layers=2), 256),
        (["--bidirectional"], RecurrentSpec("lstm", 28, 256, num_layers=2, bidirectional=True), 2 * 256),
        (["--proj-size", "64"], RecurrentSpec("lstm", 28, 256, num_layers=2, proj_size=64), 64),
        (
            ["--bidirectional", "--proj-size", "64"],
            RecurrentSpec("lstm", 28, 256, num_layers=2, bidirectional=True, proj_size=64),
            2 * 64,
        ),
        (
            ["--bidirectional", "--merge-mode", "sum", "--convention", "keras"],
            RecurrentSpec(
                "lstm", 28, 256, num_layers=2, bidirectional=True, merge_mode="sum", convention="keras"
            ),
            256,  # summed directions: one direction's width
        ),
    ],
)
def test_head_reads_the_stack_output(flags, stack, head_in):
    r = invoke("count", *SEED, *flags, "--head", "7", "--by", "total", "-f", "json")
    assert r.exit_code == 0, r.output
    total = pc.count(stack).total + linear(head_in, 7)
    assert f'"params": {total}' in r.stdout
    lib = pc.count(stack, head=7)
    assert lib.total == total and lib.components[-1].module == f"Linear({head_in}, 7)"


def test_head_of_a_single_step_cell_reads_its_hidden_state():
    lib = pc.count(RecurrentSpec("gru_cell", 12, 20), head=3)
    assert lib.total == 3 * (20 * 12 + 20 * 20 + 2 * 20) + linear(20, 3)


def test_head_reuses_the_architecture_components():
    from paramcalc.core.architecture import Linear, Recurrent, count_architecture, with_head

    arch = with_head(RecurrentSpec("lstm", 28, 256, num_layers=2), 10)
    assert [type(c) for c in arch.components] == [Recurrent, Linear]
    assert pc.count(arch.specs["rnn"], head=10) == count_architecture(arch)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--head", "0"], "head must be a positive integer, got 0"),
        (["--head", "10", "--by", "layer"], "--by layer lists the recurrent layers: with --head, use --by"),
        (["--by", "component"], "--by component applies with --head"),
    ],
)
def test_head_errors_are_one_line(args, needle):
    assert needle in one_line_error(invoke("count", *SEED, *args))


def test_count_takes_recurrent_spec_arguments():
    assert pc.count("lstm", 28, 256, 2) == pc.count(RecurrentSpec("lstm", 28, 256, num_layers=2))
    assert pc.count("gru", 28, 256, bidirectional=True).total == 2 * 3 * (256 * 28 + 256 * 256 + 2 * 256)
    assert pc.count("lstm", 28, 256, 2, head=10).total == 821_770


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: pc.count("lstm"), "missing 2 required positional arguments: 'input_size' and 'hidden_size'"),
        (lambda: pc.count("lstm", 28, 256, colour="red"), "unexpected keyword argument 'colour'"),
        (lambda: pc.count(RecurrentSpec("lstm", 2, 3), 4), "got RecurrentSpec and 1 more argument"),
        (lambda: pc.count("lstm", 28, "wide"), "hidden_size must be an integer, got 'wide'"),
        (lambda: pc.count("lstm", 28, 256, head="10"), "head must be an integer, got '10'"),
    ],
)
def test_count_arguments_errors_are_paramcalc_errors(call, needle):
    with pytest.raises(ParamcalcError) as info:
        call()
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_export_needs_a_path(tmp_path):
    result = pc.count("lstm", 4, 8)
    for bad in (None, 123, True, ["a.csv"]):
        with pytest.raises(ParamcalcError, match="export needs a file path"):
            result.export(bad)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# --- bundled architectures -------------------------------------------------------------------


def test_report_takes_a_bundled_name():
    for name in ("mnist_rows_lstm", "mnist-rows-lstm", "mnist_rows_lstm.toml"):
        r = invoke("report", name, "--by", "total")
        assert r.exit_code == 0, r.output
        assert "total: 821,770 parameters" in r.stdout and "(bundled mnist_rows_lstm)" in r.stdout


def test_report_list_names_every_bundled_file():
    r = invoke("report", "--list", "-f", "csv")
    assert r.exit_code == 0, r.output
    rows = [line.split(",")[0] for line in r.stdout.splitlines()[1:]]
    assert rows == sorted(p.stem for p in ARCHS.glob("*.toml")) and "mnist_rows_lstm" in rows
    assert "mnist_rows_lstm,mnist-rows-lstm,2,821770," in r.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["nope"], "nope: no such file, nor a bundled architecture (bundled: awd_lstm_lm,"),
        ([], "Missing argument 'NAME_OR_FILE'"),
        (["--list", "gnmt"], "--list takes no NAME_OR_FILE"),
        (["./nope.toml"], "cannot read nope.toml: no such file"),
    ],
)
def test_report_name_errors(args, needle):
    assert needle in one_line_error(invoke("report", *args))


def test_a_file_beats_a_bundled_name(tmp_path, monkeypatch):
    (tmp_path / "gnmt").write_text("[[component]]\nkind = 'linear'\nin_features = 3\nout_features = 2\n")
    monkeypatch.chdir(tmp_path)
    r = invoke("report", "gnmt", "--by", "total")
    assert r.exit_code == 0 and "total: 8 parameters" in r.stdout  # 2·3 + 2


def test_the_package_declares_the_bundled_files():
    import sys as _sys

    if _sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    from paramcalc.core.architecture import bundled_architectures

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "data/architectures/*.toml" in data["paramcalc"]
    found = bundled_architectures()
    assert set(found) == {p.stem for p in ARCHS.glob("*.toml")} and len(found) >= 7
    assert (ROOT / "data" / "architectures" / "gnmt.toml").resolve() == found["gnmt"].resolve()


# --- did you mean, completion, formats ------------------------------------------------------------


def test_a_mistyped_command_gets_did_you_mean():
    line = one_line_error(invoke("cuont"))
    assert "No such command 'cuont'" in line and "'count'" in line and "Did you mean" in line
    assert "Did you mean 'explain'?" in one_line_error(invoke("explian"))
    assert one_line_error(invoke("frobnicate")).endswith("try 'paramcalc -h'")  # nothing close


def complete(words: str, cword: int) -> list[str]:
    env = {"_PARAMCALC_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    r = invoke(env=env)
    assert r.exit_code == 0, r.output
    return r.stdout.splitlines()


def test_shell_completion():
    r = invoke(env={"_PARAMCALC_COMPLETE": "bash_source"})
    assert r.exit_code == 0 and "complete -o nosort -F _paramcalc_completion paramcalc" in r.stdout
    assert complete("paramcalc cou", 1) == ["plain,count"]
    assert "plain,--hidden-size" in complete("paramcalc count lstm --hid", 3)
    assert complete("paramcalc count mi", 2) == ["plain,mingru", "plain,minlstm"]
    assert complete("paramcalc count lstm -f mark", 4) == ["plain,markdown"]


def test_shell_completion_is_documented():
    line = 'eval "$(_PARAMCALC_COMPLETE=bash_source paramcalc)"'
    assert line in (ROOT / "README.md").read_text() and line in (ROOT / "docs" / "cli.md").read_text()
    assert "_PARAMCALC_COMPLETE=zsh_source" in (ROOT / "docs" / "cli.md").read_text()


def test_markdown_is_github():
    md = invoke("count", *SEED, "-f", "markdown")
    assert md.exit_code == 0 and md.stdout == invoke("count", *SEED, "-f", "github").stdout
    assert "| name " in md.stdout and "|---" in md.stdout
    assert "(did you mean 'markdown'?)" in one_line_error(invoke("count", *SEED, "-f", "markdwn"))


# --- plurals ------------------------------------------------------------------------------------


def test_plural():
    assert [plural(n, "thread") for n in (0, 1, 2, 1792)] == [
        "0 threads",
        "1 thread",
        "2 threads",
        "1,792 threads",
    ]
    assert plural(1, "entry", "entries") == "1 entry" and plural(3, "entry", "entries") == "3 entries"


def test_one_of_a_kind_reads_singular():
    r = invoke("cost", "lstm", "-d", "4", "-H", "8", "--lengths", "1", "--by", "total")
    assert "(1 real step)" in r.stdout and "critical path: 1 dependent step (T + L - 1)" in r.stdout
    assert "1 real steps" not in r.stdout and "1 dependent steps" not in r.stdout
    r = invoke("explain", "lstm", "-d", "4", "-H", "8", "--bidirectional")
    assert "1 layer x 2 directions in all" in r.stdout


def test_no_message_says_s_in_brackets():
    """Every count in a message agrees with its noun (plural()): none reads 'tensor(s)', and no
    count that may be 1 stands bare before a plural noun ("1 threads")."""
    found = []
    for path in (ROOT / "paramcalc").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.JoinedStr):
                continue
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if re.search(r"\w\(s\)", text):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: (s)")
            for a, b in itertools.pairwise(node.values):
                if not (isinstance(a, ast.FormattedValue) and isinstance(b, ast.Constant)):
                    continue
                count = ast.unparse(a.value)
                if re.match(PLURAL_NOUN, b.value) and not re.fullmatch(CONSTANT_OR_LABEL, count):
                    if "more than" not in b.value:  # "has 12 runs, more than 10": never 1
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {{{count}}}{b.value[:20]}")
    assert found == []


#: A noun whose count must go through plural(); the counts that are constants (MAX_RUNS) or labels.
PLURAL_NOUN = r" (threads|runs|calls|real steps|steps|tensors|shapes|files|parameters|layers|levels)\b"
CONSTANT_OR_LABEL = r"[A-Z_]+(:,)?|self\.actual_label|suffix|what"


# --- default tables fit 120 columns ---------------------------------------------------------------


def table_width(stdout: str) -> int:
    """Width of the table drawn in simple format: its header rule ``----  ----`` spans it."""
    rules = [line for line in stdout.splitlines() if re.fullmatch(r"-+( +-+)*", line)]
    assert rules, stdout
    return max(len(line) for line in rules)


CELLS = "rnn,lstm,gru,cifg,mgu,mingru,minlstm"
WIDEST = [
    ["count", *SEED, "--bidirectional", "--proj-size", "100", "--peephole"],
    ["count", *SEED, "--bidirectional", "--proj-size", "100", "--peephole", "--by", "layer"],
    ["count", *SEED, "--bidirectional", "--proj-size", "100", "--peephole", "--by", "total"],
    ["count", *SEED, "--bidirectional", "--head", "10"],
    ["count", *SEED, "--head", "10", "--by", "component"],
    *(["explain", cell, "-d", "28", "-H", "1024", "--peephole"] for cell in ("lstm", "cifg")),
    *(["explain", cell, "-d", "28", "-H", "1024"] for cell in ("gru", "mgu", "indrnn", "mingru", "minlstm")),
    ["explain", "gru", "-d", "28", "-H", "256", "--convention", "keras", "--no-reset-after"],
    ["explain", "lstm", "-d", "40", "-H", "512", "--proj-size", "128", "--peephole"],
    ["solve", "lstm", "-d", "28", "-L", "2", "--budget", "1.5M", "--cells", CELLS],
    ["solve", "lstm", "-d", "28", "-H", "256", "-L", "2", "--cells", CELLS],
    *(
        ["cost", "lstm", "-d", "512", "-H", "4096", "-L", "4", "--bidirectional", "--proj-size", "1024",
         "--batch", "512", "--seq-len", "1000", "--train", "--by", by]
        for by in ("layer", "part", "gemm", "memory", "total")
    ),
    *(["report", p.stem, "--by", by] for p in sorted(ARCHS.glob("*.toml"))
      for by in ("tensor", "component", "total")),
    ["report", "--list"],
    ["compare", "-d", "512", "-H", "4096", "-L", "4", "--cells", CELLS, "--equal", "params"],
    ["compare", "-d", "512", "-H", "4096", "-L", "4", "--cells", CELLS, "--batch", "512",
     "--seq-len", "1000"],
    ["sweep", "-d", "512", "-H", "1024:4096:1024", "-L", "1:4", "--cells", CELLS, "--batch", "64,512",
     "--seq-len", "100,1000"],
]  # fmt: skip


@pytest.mark.parametrize("args", WIDEST, ids=[" ".join(a) for a in WIDEST])
def test_default_tables_fit_120_columns(args):
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert table_width(r.stdout) <= MAX_TABLE_WIDTH


def test_the_widest_default_table_is_measured():
    widths = {" ".join(a): table_width(invoke(*a).stdout) for a in WIDEST}
    widest = max(widths.values())
    assert 100 <= widest <= MAX_TABLE_WIDTH, widths  # the tables above use the room, and no more


def test_wide_shows_every_column_whole():
    narrow = invoke("report", "deepspeech2", "--by", "component")
    wide = invoke("report", "deepspeech2", "--by", "component", "--wide")
    assert "note" not in narrow.stdout.splitlines()[1] and "note" in wide.stdout.splitlines()[1]
    assert "running_mean, running_var, num_batches_tracked are buffers, not parameters" in wide.stdout
    assert table_width(wide.stdout) > MAX_TABLE_WIDTH


def test_long_text_wraps_to_fit_and_keeps_every_word():
    words = " ".join(f"word{i}" for i in range(60))
    table = Table((Column("name", "str"), Column("n"), Column("text", "str")), (("a" * 30, 12345, words),))
    text = render(table, "simple")
    assert max(len(line) for line in text.splitlines()) <= MAX_TABLE_WIDTH
    assert " ".join(text.split()).count("word59") == 1
    assert all(f"word{i}" in text.split() for i in range(60))
    whole = render(table, "simple", wide=True)
    assert words in whole  # --wide: one line, whole
    assert words in render(table, "github")  # Markdown never wraps a cell (a row is one line)


def test_constant_columns_are_stated_once():
    r = invoke("compare", "--from", str(_runs_file()), "-f", "simple")
    assert "same in every row: cell lstm, hidden_size 8, num_layers 1, batch 2, seq_len 3" in r.stdout


def _runs_file() -> Path:
    import json
    import tempfile

    run = {
        "spec": {"cell": "lstm", "input_size": 4, "hidden_size": 8},
        "workload": {"batch": 2, "seq_len": 3},
        "device": "cpu",
        "device_name": "one",
        "torch": "2.13.0",
        "measured_s": 0.002,
    }
    folder = Path(tempfile.mkdtemp())
    path = folder / "runs.json"
    path.write_text(json.dumps({"runs_schema": 1, "runs": [run, {**run, "device_name": "two"}]}))
    return path


# --- help at the width a terminal shows -----------------------------------------------------------


def help_block(command: str) -> str:
    for e in console_examples():
        if e.doc == "docs/cli.md" and e.command == command:
            return e.expected
    raise AssertionError(f"no {command!r} block in docs/cli.md")


@pytest.mark.parametrize("command", ["paramcalc --help", "paramcalc count --help"])
def test_help_blocks_are_what_a_terminal_shows(command):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}  # a pipe, COLUMNS unset: click's 78
    out = subprocess.run(
        [sys.executable, "-m", "paramcalc", *command.split()[1:]],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    ).stdout
    assert out.rstrip("\n") == help_block(command)
    prose = [line for line in out.splitlines() if not line.startswith("    paramcalc ")]  # not examples
    assert max(len(line) for line in prose) <= 78


# --- report.md: every column defined, the date and the command line -------------------------------


def test_compare_report_defines_every_column_and_says_when_and_how(tmp_path):
    out = tmp_path / "report.md"
    r = invoke("compare", "-d", "28", "-H", "256", "-L", "2", "--equal", "params", "--output", out)
    assert r.exit_code == 0, r.output
    text = out.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| cell"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    defined = dict(re.findall(r"^- \*\*(\w+)\*\*: (.+)$", text.split("Columns:")[1], re.M))
    assert set(columns) <= set(defined) and all(defined[c] for c in columns)
    assert re.search(r"- \*\*created\*\*: \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4} by paramcalc", text)
    assert "- **command**: paramcalc compare -d 28 -H 256 -L 2 --equal params --output " in text


def test_every_compare_column_has_a_definition():
    from paramcalc.studies import views as c
    from paramcalc.studies.sweep import SWEEP_COLUMNS

    timed = [*c.COST_COLUMNS, *c.BENCH_COLUMNS, *c.PREDICT_COLUMNS, c.RATIO_COLUMN, c.TIME_VS_FIRST_COLUMN]
    for col in (c.CELL_COLUMN, c.HIDDEN_COLUMN, c.PARAMS_COLUMN, c.DIFF_COLUMN, *timed, *SWEEP_COLUMNS):
        assert col.doc, col.name
    names = {col.name for col in timed}
    assert {"gflop_per_s", "kernel", "measured_over_predicted", "iqr_ms", "tokens_per_s"} <= names


def test_a_library_export_has_a_date_and_no_command(tmp_path):
    out = tmp_path / "count.html"
    pc.count("lstm", 4, 8).export(out)
    text = out.read_text()
    assert re.search(r"<b>created</b>: \d{4}-\d{2}-\d{2} ", text) and "<b>command</b>" not in text


# --- plots ---------------------------------------------------------------------------------------


def test_seven_cells_have_labels_apart():
    """Seven labels turned at an angle stay apart: the distance between neighbouring ticks, across
    the text's direction, is at least a line of text (level labels: their boxes do not touch)."""
    pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from paramcalc.render.plot import compare_figure

    for cells in (CELLS.split(","), ["rnn", "lstm", "gru"]):
        result = pc.compare(RecurrentSpec("lstm", 28, 256), cells=cells, equal="params")
        fig = compare_figure(result)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        for ax in fig.axes:
            labels = [t for t in ax.get_xticklabels() if t.get_text()]
            assert len(labels) == len(cells)
            angle = math.radians(labels[0].get_rotation())
            if angle:
                x = sorted(ax.transData.transform((tick, 0))[0] for tick in ax.get_xticks())
                gap = min(b - a for a, b in itertools.pairwise(x))
                line = max(t.get_fontsize() for t in labels) * fig.dpi / 72 * 1.2
                assert gap * math.sin(angle) >= line, (gap, angle, line)
            else:
                boxes = [t.get_window_extent(renderer) for t in labels]
                assert not any(a.overlaps(b) for a, b in itertools.pairwise(boxes))
        assert bool(labels[0].get_rotation()) == (len(cells) > 4)


def test_error_bars_only_where_a_spread_was_measured():
    pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")
    from matplotlib.container import ErrorbarContainer
    from matplotlib.figure import Figure

    from paramcalc.render.plot import draw_bars

    ax = Figure().subplots()
    draw_bars(ax, ["rnn", "lstm", "gru"], [10.0, 20.0, 30.0], [None, (2.0, 3.0), None])
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1
    segments = bars[0].lines[2][0].get_segments()
    assert len(segments) == 1 and [tuple(p) for p in segments[0]] == [(1.0, 18.0), (1.0, 23.0)]
    ax = Figure().subplots()
    draw_bars(ax, ["rnn"], [10.0], [None])  # one slow call: no bar, no flat caps
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def test_throughput_errors_skip_rows_without_spread():
    from types import SimpleNamespace

    from paramcalc.render.plot import throughput_errors

    slow = SimpleNamespace(spread_known=False, times=(1.0,), tokens=100, tokens_per_s=100.0)
    steady = SimpleNamespace(
        spread_known=True, times=(1.0, 1.0, 2.0, 2.0, 2.0), tokens=100, tokens_per_s=50.0
    )
    errors = throughput_errors(
        SimpleNamespace(rows=[SimpleNamespace(bench=slow), SimpleNamespace(bench=steady)])
    )
    # quartiles (inclusive) of 1, 1, 2, 2, 2: q1 = 1, q3 = 2: tokens/s from 100/2 = 50 to 100/1 = 100
    assert errors == [None, (0.0, 50.0)]
