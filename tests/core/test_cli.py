"""The analytic commands (count, solve, cost, explain) and the CLI's error boundary.

Exit codes: 0 ok; 1 a cross-check found a mismatch (tests/torch); 2 a usage or input error, one
line on stderr; 3 an internal error, one line asking for a report; 130 interrupted; 141 the
reader of stdout went away. Every run goes through ``paramcalc.cli.run``, what the console
script calls.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import subprocess
import sys

import click
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import paramcalc as pc
import paramcalc.core.params as params_module
from paramcalc import __version__
from tests.helpers import ROOT, invoke, one_line_error

SEED = ["count", "lstm", "-d", "28", "-H", "256", "-L", "2"]
ISSUES = "https://github.com/paramcalc/paramcalc/issues"


# --- count ------------------------------------------------------------------------------------


def test_count_seed_table():
    r = invoke(*SEED)
    assert r.exit_code == 0 and r.stderr == ""
    assert "weight_ih_l0" in r.stdout and "(1024, 28)" in r.stdout
    assert "4(Dh·d + Dh·Dh + 2Dh) = 4(256·28 + 256·256 + 2·256) = 292,864" in r.stdout
    assert r.stdout.splitlines()[-1] == "total: 819,200 parameters"


def test_count_json():
    data = json.loads(invoke(*SEED, "--format", "json").stdout)
    assert data["total"] == 4 * (256 * 28 + 256 * 256 + 512) + 4 * (2 * 256 * 256 + 512)
    assert [row["name"] for row in data["rows"]][:4] == [
        "weight_ih_l0",
        "weight_hh_l0",
        "bias_ih_l0",
        "bias_hh_l0",
    ]
    assert data["rows"][0]["shape"] == [1024, 28]


def test_count_csv():
    rows = list(csv.DictReader(io.StringIO(invoke(*SEED, "--by", "layer", "--format", "csv").stdout)))
    assert [int(x["params"]) for x in rows] == [292_864, 526_336]


def test_count_keras_by_total():
    args = ["count", "gru", "-d", "64", "-H", "256", "--convention", "keras", "--by", "total", "-f", "json"]
    assert json.loads(invoke(*args).stdout)["total"] == 3 * (64 * 256 + 256 * 256 + 2 * 256)
    data = json.loads(invoke(*args, "--no-reset-after").stdout)
    assert data["total"] == 3 * (64 * 256 + 256 * 256 + 256)


def test_count_projection_and_bidirectional():
    args = [
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
    ]
    data = json.loads(invoke(*args).stdout)
    assert data["total"] == 4 * (4 * (16 * 12 + 16 * 6 + 2 * 16) + 6 * 16) == 5504
    assert "weight_hr_l1_reverse" in [row["name"] for row in data["rows"]]


@pytest.mark.parametrize(
    "flags, total",
    [
        (["--peephole"], 4 * (8 * 4 + 8 * 8 + 2 * 8) + 3 * 8),
        (["--bias-vectors", "1"], 4 * (8 * 4 + 8 * 8 + 8)),
        (["--no-bias"], 4 * (8 * 4 + 8 * 8)),
        (
            ["--bidirectional", "-L", "2", "--merge-mode", "sum"],
            2 * 4 * (8 * 4 + 8 * 8 + 16) + 2 * 4 * (8 * 8 + 8 * 8 + 16),
        ),
    ],
)
def test_count_layout_flags(flags, total):
    data = json.loads(
        invoke("count", "lstm", "-d", "4", "-H", "8", *flags, "--by", "total", "-f", "json").stdout
    )
    assert data["total"] == total


def test_count_new_cells():
    data = json.loads(invoke("count", "mgu", "-d", "28", "-H", "256", "--by", "total", "-f", "json").stdout)
    assert data["total"] == 2 * (256 * 28 + 256 * 256 + 256)
    assert "Zhou et al. 2016" in data["convention"]


def test_count_with_a_workload_adds_the_cost_line():
    plain = invoke(*SEED, "--by", "layer").stdout
    costed = invoke(*SEED, "--by", "layer", "--batch", "64", "--seq-len", "28").stdout
    # 815,104 MACs per step · 64 · 28; FLOPs (2·815,104 + 4,096 bias + 6,656 elementwise) · 1,792
    line = (
        "cost (B=64 T=28 fp32 inference): 1,460,666,368 GEMM MACs, 2,940,600,320 FLOPs, "
        "critical path 29 steps (paramcalc cost for the details)"
    )
    assert costed == plain + line + "\n"
    assert "cost" not in invoke(*SEED, "--by", "layer", "--batch", "64", "-f", "csv").stdout


# --- solve ------------------------------------------------------------------------------------


def test_solve_budget_and_match():
    r = invoke("solve", "lstm", "-d", "28", "-L", "2", "--budget", "819.2k", "-f", "json")
    assert json.loads(r.stdout)["rows"][0]["hidden_size"] == 256  # 12·256² + 128·256 = 819,200
    data = json.loads(invoke("solve", "lstm", "-d", "28", "-H", "256", "-L", "2", "-f", "json").stdout)
    assert data["total"] == 819_200 and [x["cell"] for x in data["rows"]] == ["lstm", "rnn", "gru"]
    # RNN 3h² + 32h closest to 819,200 at h = 517; GRU 9h² + 96h at h = 296
    assert [x["hidden_size"] for x in data["rows"]] == [256, 517, 296]


def test_solve_projection_budget():
    r = invoke("solve", "lstm", "-d", "40", "--proj-size", "16", "--budget", "300k", "-f", "json")
    h = json.loads(r.stdout)["rows"][0]["hidden_size"]
    count = lambda h: 4 * (h * 40 + h * 16 + 2 * h) + 16 * h  # noqa: E731
    assert count(h) <= 300_000 < count(h + 1)


# --- cost -------------------------------------------------------------------------------------


def test_cli_cost_views():
    base = ["cost", "lstm", "-d", "28", "-H", "256", "-L", "2", "--batch", "64", "--seq-len", "28"]
    for by in ("layer", "part", "gemm", "memory", "total"):
        r = invoke(*base, "--by", by)
        assert r.exit_code == 0, r.output
        assert f"{1_460_666_368:,}" in r.stdout  # MACs in the summary lines
        assert "note: convention: 1 MAC = one multiply-add" in r.stdout
    out = invoke(*base, "--no-elementwise", "--no-bias-ops", "--by", "total").stdout
    assert f"{2 * 1_460_666_368:,}" in out and "left out of FLOPs: bias additions, elementwise ops" in out


def test_cli_cost_json():
    data = json.loads(
        invoke("cost", "rnn", "-d", "5", "-H", "7", "--batch", "2", "--seq-len", "4", "-f", "json").stdout
    )
    assert data["macs"] == 84 * 8 and data["workload"]["batch"] == 2 and data["convention"]
    assert data["flops"] == (2 * 84 + 14 + 14) * 8


def test_cli_cost_lengths_default_batch_and_seq_len():
    data = json.loads(invoke("cost", "gru", "-d", "4", "-H", "6", "--lengths", "12,9,3", "-f", "json").stdout)
    assert data["workload"] == {
        "batch": 3,
        "seq_len": 12,
        "lengths": [12, 9, 3],
        "dtype": "fp32",
        "mode": "inference",
    }
    assert data["macs"] == (3 * 6 * 4 + 3 * 6 * 6) * 24


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--batch", "0", "--seq-len", "5"], "batch must be a positive integer, got 0"),
        (["--batch", "-2", "--seq-len", "5"], "batch must be a positive integer"),
        (["--seq-len", "5", "--lengths", "6,2"], "lengths[0]=6 is longer than seq_len=5"),
        (["--batch", "3", "--lengths", "4,2"], "lengths has 2 entries but batch is 3"),
        (["--lengths", "4,0,2"], "lengths[1] must be a positive integer"),
        (["--lengths", "4,x"], "--lengths must be comma-separated integers"),
        (["--lengths", "1" * 13], "at most 12 digits"),
        (["--dtype", "fp64"], "unknown dtype 'fp64'"),
        (["--dtype", "int8", "--train"], "int8 is an inference format"),
    ],
)
@pytest.mark.parametrize("command", ["cost", "count"])
def test_cli_bad_workload_exit_2(command, args, needle):
    assert needle in one_line_error(invoke(command, "gru", "-d", "8", "-H", "16", *args))


def test_flop_check_flags_need_flop_check():
    line = one_line_error(invoke("cost", "gru", "-d", "8", "-H", "16", "--flop-device", "cpu"))
    assert line == "Error: --flop-device and --fused only apply with --flop-check"


# --- help, version, usage errors ----------------------------------------------------------------


def test_no_arguments_prints_the_help_on_stdout_exit_0():
    r = invoke()
    assert r.exit_code == 0 and r.stderr == ""
    assert r.stdout.startswith("Usage: paramcalc [OPTIONS] COMMAND [ARGS]...")
    for command in (
        "count",
        "solve",
        "cost",
        "explain",
        "check",
        "report",
        "inspect",
        "bench",
        "compare",
        "sweep",
    ):
        assert f"\n  {command} " in r.stdout


def test_version_and_help():
    assert invoke("--version").stdout == f"paramcalc, version {__version__}\n"
    assert invoke("-V").exit_code == 0
    for cmd in ("count", "solve", "cost", "explain", "compare", "sweep"):
        for flag in ("-h", "--help"):
            r = invoke(cmd, flag)
            assert r.exit_code == 0 and "Examples:" in r.stdout and "paramcalc " + cmd in r.stdout


@pytest.mark.parametrize(
    "args, needle, command",
    [
        (["count", "lstm", "-d", "2.5", "-H", "4"], "'2.5' is not a valid integer", "count"),
        (["count", "lstm", "-d", "4"], "Missing option '-H' / '--hidden-size'", "count"),
        (["count"], "Missing argument 'CELL'", "count"),
        (
            ["count", "lstm", "-d", "4", "-H", "8", "--format", "excel"],
            "'excel' is not a table format",
            "count",
        ),
        (["count", "lstm", "-d", "4", "-H", "8", "--bogus"], "No such option '--bogus'", "count"),
        (
            ["count", "lstm", "-d", "4", "-H", "8", "--convention", "tf"],
            "Invalid value for '--convention'",
            "count",
        ),
        (
            ["count", "lstm", "-d", "4", "-H", "8", "--bias-vectors", "3"],
            "3 is not in the range 0<=x<=2",
            "count",
        ),
        (["cost", "lstm", "-d", "4", "-H", "8", "--by", "tensor"], "Invalid value for '--by'", "cost"),
        (["solve", "lstm"], "Missing option '-d' / '--input-size'", "solve"),
        (["frobnicate"], "No such command 'frobnicate'", None),
    ],
)
def test_usage_errors_end_with_a_help_hint(args, needle, command):
    line = one_line_error(invoke(*args))
    assert needle in line
    path = f"paramcalc {command}" if command else "paramcalc"
    assert line.startswith(f"Error: {path}: ")
    assert line.endswith(f"; try '{path} -h'")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["count", "lstm", "-d", "0", "-H", "4"], "input_size must be a positive integer, got 0"),
        (["count", "lstm", "-d", "-3", "-H", "4"], "input_size must be a positive integer"),
        (["count", "lstm", "-d", "4", "-H", "99999999999"], "hidden_size must be at most 2,147,483,647"),
        (["count", "attention", "-d", "4", "-H", "4"], "unknown cell 'attention'"),
        (
            ["count", "gru", "-d", "4", "-H", "8", "--proj-size", "2"],
            "proj_size is only supported for lstm, not gru",
        ),
        (["count", "lstm", "-d", "4", "-H", "8", "--proj-size", "8"], "proj_size has to be smaller"),
        (["count", "lstm", "-d", "4", "-H", "8", "--no-reset-after"], "applies only to GRU cells, not lstm"),
        (["count", "lstm_cell", "-d", "4", "-H", "8", "-L", "2"], "single-step cell"),
        (
            ["count", "lstm", "-d", "4", "-H", "8", "--no-bias", "--bias-vectors", "1"],
            "--no-bias contradicts",
        ),
        (["count", "lstm", "-d", "4", "-H", "8", "--merge-mode", "sum"], "only to bidirectional stacks"),
        (["count", "gru", "-d", "4", "-H", "8", "--peephole"], "peephole connections exist only for"),
        (["solve", "lstm", "-d", "4", "--budget", "lots"], "cannot parse budget 'lots'"),
        (
            ["solve", "lstm", "-d", "4", "--budget", "10"],
            "too small for lstm: the smallest hidden size (1) needs 28",
        ),
        (["solve", "lstm", "-d", "4", "-H", "8", "--budget", "1M"], "not both"),
        (["solve", "lstm", "-d", "4"], "give --budget"),
        (
            ["solve", "lstm", "-d", "4", "--budget", "1M", "--multiple-of", "0"],
            "--multiple-of must be in 1..2,147,483,647",
        ),
        (["solve", "lstm", "-d", "4", "--budget", "1M", "--cells", ","], "--cells is empty"),
    ],
)
def test_user_errors_are_one_line_exit_2(args, needle):
    line = one_line_error(invoke(*args))
    assert needle in line and "try 'paramcalc" not in line


# --- the error boundary ---------------------------------------------------------------------------


def boom(*args, **kwargs):
    raise RuntimeError("boom\nsecond line")


def test_internal_error_is_one_line_exit_3(monkeypatch):
    monkeypatch.setattr(params_module, "count", boom)
    line = one_line_error(invoke(*SEED), code=3)
    assert line == (
        f"Error: internal error: RuntimeError: boom (please report it at {ISSUES}; "
        "rerun with --debug for the traceback)"
    )


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(monkeypatch, how):
    monkeypatch.setattr(params_module, "count", boom)
    r = invoke("--debug", *SEED) if how == "flag" else invoke(*SEED, env={"PARAMCALC_DEBUG": "1"})
    assert r.exit_code == 3
    assert r.stderr.startswith("Traceback (most recent call last):")
    assert "RuntimeError: boom" in r.stderr
    assert r.stderr.splitlines()[-1].startswith("Error: internal error: RuntimeError: boom")


def test_interrupt_exits_130(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(params_module, "count", interrupted)
    r = invoke(*SEED)
    assert (r.exit_code, r.stdout, r.stderr.strip()) == (130, "", "Aborted.")  # click echoes a newline first


def test_full_stdout_device_is_one_line_exit_2(monkeypatch):
    real = click.echo

    def full(message=None, file=None, err=False, **kwargs):
        if err:
            return real(message, file=file, err=err, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(click, "echo", full)
    line = one_line_error(invoke(*SEED))
    assert line == "Error: cannot write the output: No space left on device"


def test_click_exceptions_never_reach_the_user_as_tracebacks():
    r = invoke("count", "lstm", "-d", "4", "-H", "8", "--format")
    line = one_line_error(r)
    assert "Option '--format' requires an argument" in line


@pytest.mark.slow
def test_console_script_exit_code_and_stderr():
    p = subprocess.run(
        [sys.executable, "-m", "paramcalc", "count", "gru", "-d", "4", "-H", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr == "Error: hidden_size must be a positive integer, got 0\n"
    p = subprocess.run([sys.executable, "-m", "paramcalc"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0 and p.stdout.startswith("Usage: paramcalc")


@pytest.mark.slow
def test_console_script_head_closes_the_pipe():
    """`paramcalc count ... | head -1`: the reader goes away; no traceback, no error message."""
    code = (
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-m', 'paramcalc', 'count', 'lstm', '-d', '4', '-H', '8',"
        " '-L', '10000', '--by', 'tensor'], stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
        "p.stdout.readline(); p.stdout.close(); err = p.stderr.read(); rc = p.wait()\n"
        "print(rc, repr(err))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    rc, err = out.stdout.split(" ", 1)
    # click itself ends quietly on EPIPE (exit 0); paramcalc's own handler would say 141
    assert rc in ("0", "141") and err.strip() == "b''"


# --- robustness: no combination of flags ends in an internal error --------------------------------

CELLS = sorted(pc.CELLS)
NUMBERS = st.sampled_from(["0", "1", "2", "7", "-1", "2147483647", "2147483648", "9" * 25, "x", "1.5", ""])
FLAGS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["-L", "--proj-size", "--bias-vectors", "--batch", "--seq-len"]), NUMBERS),
        st.tuples(st.just("--lengths"), st.sampled_from(["3,2", "0", "5,x", "2147483648", "1,1,1", ","])),
        st.tuples(
            st.sampled_from(
                [
                    "--bidirectional",
                    "--no-bias",
                    "--peephole",
                    "--no-peephole",
                    "--no-reset-after",
                    "--reset-after",
                    "--train",
                ]
            )
        ),
        st.tuples(st.just("--merge-mode"), st.sampled_from(["sum", "ave", "mul", "concat"])),
        st.tuples(st.just("--convention"), st.sampled_from(["torch", "keras"])),
        st.tuples(st.just("--dtype"), st.sampled_from(["bf16", "int8", "fp64"])),
    ),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(
    command=st.sampled_from(["count", "cost", "explain"]),
    cell=st.sampled_from(CELLS),
    d=NUMBERS,
    h=NUMBERS,
    flags=FLAGS,
)
def test_no_flag_combination_is_an_internal_error(command, cell, d, h, flags):
    args = [command, cell, "-d", d, "-H", h, *(x for flag in flags for x in flag)]
    r = invoke(*args)
    event(f"exit {r.exit_code}")
    assert r.exit_code in (0, 2), (args, r.stderr)
    if r.exit_code == 2:
        one_line_error(r)
