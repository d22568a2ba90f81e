"""The CLI through click's CliRunner: outputs, formats, and one-line errors with exit code 2."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from tabulate import tabulate_formats

from paramcalc import __version__
from paramcalc.cli import cli
from tests.conftest import one_line_error

SEED = ["count", "lstm", "-d", "28", "-H", "256", "-L", "2"]


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(args))


def test_count_seed_table(run):
    r = run(*SEED)
    assert r.exit_code == 0, r.output
    assert "weight_ih_l0" in r.output and "(1024, 28)" in r.output
    assert "4(Dh·d + Dh·Dh + 2Dh) = 4(256·28 + 256·256 + 2·256) = 292,864" in r.output
    assert "total: 819,200 parameters" in r.output


def test_count_json(run):
    r = run(*SEED, "--format", "json")
    data = json.loads(r.output)
    assert data["total"] == 4 * (256 * 28 + 256 * 256 + 512) + 4 * (2 * 256 * 256 + 512)
    assert [row["name"] for row in data["rows"]][:4] == [
        "weight_ih_l0",
        "weight_hh_l0",
        "bias_ih_l0",
        "bias_hh_l0",
    ]


def test_count_csv(run):
    r = run(*SEED, "--by", "layer", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert [int(x["params"]) for x in rows] == [292_864, 526_336]


def test_count_by_total(run):
    r = run("count", "gru", "-d", "64", "-H", "256", "--convention", "keras", "--by", "total", "-f", "json")
    assert json.loads(r.output)["total"] == 3 * (64 * 256 + 256 * 256 + 2 * 256)
    r = run(
        "count", "gru", "-d", "64", "-H", "256", "--convention", "keras", "--no-reset-after", "-f", "json"
    )
    assert json.loads(r.output)["total"] == 3 * (64 * 256 + 256 * 256 + 256)


@pytest.mark.parametrize("fmt", tabulate_formats)
def test_every_tabulate_format(run, fmt):
    r = run("count", "rnn", "-d", "3", "-H", "4", "--format", fmt)
    assert r.exit_code == 0, r.output
    assert "weight_ih_l0" in r.output.replace("\\_", "_")
    if fmt.startswith("latex") or fmt.endswith("html"):
        assert "total:" not in r.output  # markup stays clean for pasting into a document


def test_projection_and_bidirectional(run):
    r = run(
        "count",
        "lstm",
        "-d",
        "12",
        "-H",
        "16",
        "-L",
        "2",
        "--bidirectional",
        "--proj-size",
        "6",
        "-f",
        "json",
    )
    data = json.loads(r.output)
    assert data["total"] == 5504
    assert "weight_hr_l1_reverse" in [row["name"] for row in data["rows"]]


def test_solve_budget_and_match(run):
    r = run("solve", "lstm", "-d", "28", "-L", "2", "--budget", "819.2k", "-f", "json")
    assert json.loads(r.output)["rows"][0]["hidden_size"] == 256
    r = run("solve", "lstm", "-d", "28", "-H", "256", "-L", "2", "-f", "json")
    data = json.loads(r.output)
    assert data["total"] == 819_200 and [x["cell"] for x in data["rows"]] == ["lstm", "rnn", "gru"]


def test_version_and_help(run):
    assert __version__ in run("--version").output
    for cmd in ("count", "solve"):
        r = run(cmd, "--help")
        assert r.exit_code == 0 and "Examples:" in r.output and "paramcalc " + cmd in r.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (["count", "lstm", "-d", "0", "-H", "4"], "input_size must be a positive integer"),
        (["count", "lstm", "-d", "-3", "-H", "4"], "input_size must be a positive integer"),
        (["count", "lstm", "-d", "2.5", "-H", "4"], "not a valid integer"),
        (["count", "lstm", "-d", "4", "-H", "99999999999"], "hidden_size must be at most"),
        (["count", "lstm", "-d", "4"], "Missing option"),
        (["count", "attention", "-d", "4", "-H", "4"], "unknown cell 'attention'"),
        (["count", "gru", "-d", "4", "-H", "8", "--proj-size", "2"], "proj_size is only supported for LSTM"),
        (["count", "lstm", "-d", "4", "-H", "8", "--proj-size", "8"], "proj_size has to be smaller"),
        (["count", "lstm", "-d", "4", "-H", "8", "--no-reset-after"], "only to GRU"),
        (["count", "gru", "-d", "4", "-H", "8", "--no-reset-after"], "only under the keras"),
        (["count", "lstm_cell", "-d", "4", "-H", "8", "-L", "2"], "single-step cell"),
        (["count", "lstm", "-d", "4", "-H", "8", "--format", "excel"], "not a table format"),
        (["count", "lstm", "-d", "4", "-H", "8", "--bogus"], "No such option"),
        (["count", "lstm", "-d", "4", "-H", "8", "--convention", "tf"], "Invalid value for '--convention'"),
        (["solve", "lstm", "-d", "4", "--budget", "lots"], "cannot parse budget 'lots'"),
        (["solve", "lstm", "-d", "4", "--budget", "10"], "too small"),
        (["solve", "lstm", "-d", "4", "-H", "8", "--budget", "1M"], "not both"),
        (["solve", "lstm", "-d", "4"], "give --budget"),
        (["solve", "lstm", "-d", "4", "--budget", "1M", "--multiple-of", "0"], "multiple_of"),
        (["solve", "lstm", "-d", "4", "--budget", "1M", "--cells", ","], "--cells is empty"),
        (["frobnicate"], "No such command"),
    ],
)
def test_user_errors_are_one_line_exit_2(args, needle):
    result = CliRunner().invoke(cli, args)
    line = one_line_error(result)
    assert needle in line


def test_console_script_exit_code_and_stderr():
    p = subprocess.run(
        [sys.executable, "-m", "paramcalc", "count", "gru", "-d", "4", "-H", "0"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr.strip() == "Error: hidden_size must be a positive integer, got 0"


def test_analytic_query_imports_neither_torch_nor_pandas():
    code = (
        "import sys\n"
        "from paramcalc.cli import cli\n"
        "try:\n"
        "    cli.main(['count', 'lstm', '-d', '28', '-H', '256', '-L', '2'], standalone_mode=False)\n"
        "finally:\n"
        "    print('HEAVY', sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in p.stdout, p.stdout
    assert "819,200" in p.stdout
