"""paramcalc compare and sweep: rows checked against real torch modules, ranges, caps, plots."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import paramcalc as pc
from paramcalc import ParamcalcError, RecurrentSpec
from paramcalc.cli import cli
from paramcalc.cost import Workload, cost
from tests.conftest import one_line_error

C = importlib.import_module("paramcalc.compare")
CLI = importlib.import_module("paramcalc.cli")

FAST = "0.01"
NN = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def torch_params(cell: str, d: int, h: int, layers: int = 1, **kw) -> int:
    """Parameters of the real module, built on the meta device (nothing allocated)."""
    m = NN[cell](d, h, layers, device="meta", **kw)
    return sum(p.numel() for p in m.parameters())


def torch_weights(cell: str, d: int, h: int, layers: int = 1, **kw) -> int:
    """Weight elements (biases excluded): the GEMM multiply-adds of one time step."""
    m = NN[cell](d, h, layers, device="meta", **kw)
    return sum(p.numel() for n, p in m.named_parameters() if n.startswith("weight"))


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(args))


# --- compare: the analytic columns ------------------------------------------------------------


def test_compare_rows_match_real_modules():
    r = pc.compare(RecurrentSpec("lstm", 28, 256, num_layers=2), workload=Workload(batch=64, seq_len=28))
    assert [row.spec.cell for row in r.rows] == ["rnn", "lstm", "gru"]
    for rec in r.records():
        cell = rec["cell"]
        assert rec["hidden_size"] == 256
        assert rec["params"] == torch_params(cell, 28, 256, 2)
        assert rec["macs_per_step"] == torch_weights(cell, 28, 256, 2)
        assert rec["param_bytes"] == 4 * torch_params(cell, 28, 256, 2)  # fp32
        spec = RecurrentSpec(cell, 28, 256, num_layers=2)
        assert rec["flops_per_seq"] == cost(spec, Workload(batch=64, seq_len=28)).flops_per_sequence
        assert rec["train_bytes"] == cost(spec, Workload(batch=64, seq_len=28)).training_bytes
        assert "time_ms" not in rec
    assert r.records()[1]["params"] == 819_200  # the seed's LSTM(28, 256, 2)


def test_compare_carries_specs_and_workload():
    w = Workload(batch=2, seq_len=3, dtype="bf16")
    r = pc.compare(RecurrentSpec("gru", 5, 7), ["gru", "rnn"], workload=w)
    assert r.workload is w and r.specs == (RecurrentSpec("gru", 5, 7), RecurrentSpec("rnn", 5, 7))
    assert r.reference == RecurrentSpec("gru", 5, 7) and r.device is None and not r.benched
    assert [rec["param_bytes"] for rec in r.records()] == [2 * torch_params(c, 5, 7) for c in ("gru", "rnn")]
    assert list(r.to_frame()["cell"]) == ["gru", "rnn"]
    assert r.meta()["workload"]["dtype"] == "bf16"


def test_equal_params_gives_each_cell_the_closest_budget():
    r = pc.compare(RecurrentSpec("lstm", 28, 256, num_layers=2), ["lstm", "rnn", "gru"], equal="params")
    target = torch_params("lstm", 28, 256, 2)
    assert r.rows[0].spec.hidden_size == 256 and r.rows[0].params == target
    for row in r.rows[1:]:
        h, cell = row.spec.hidden_size, row.spec.cell
        here = abs(torch_params(cell, 28, h, 2) - target)
        assert here <= abs(torch_params(cell, 28, h - 1, 2) - target)
        assert here <= abs(torch_params(cell, 28, h + 1, 2) - target)
        assert row.params == torch_params(cell, 28, h, 2)
    recs = r.records()
    assert recs[0]["params_vs_first_%"] == 0
    assert recs[1]["params_vs_first_%"] == pytest.approx(
        100 * (recs[1]["params"] - target) / target, abs=1e-3
    )


def test_equal_params_multiple_of():
    r = pc.compare(RecurrentSpec("lstm", 28, 256), ["lstm", "gru"], equal="params", multiple_of=8)
    assert r.rows[1].spec.hidden_size % 8 == 0


def test_projection_only_on_lstm_rows():
    r = pc.compare(RecurrentSpec("lstm", 12, 16, num_layers=2, proj_size=6))
    by_cell = {row.spec.cell: row for row in r.rows}
    assert by_cell["lstm"].spec.proj_size == 6 and by_cell["lstm"].params == torch_params(
        "lstm", 12, 16, 2, proj_size=6
    )
    assert by_cell["gru"].spec.proj_size == 0 and by_cell["gru"].params == torch_params("gru", 12, 16, 2)


def test_compare_api_errors():
    with pytest.raises(ParamcalcError, match="equal must be one of"):
        pc.compare(RecurrentSpec("lstm", 4, 8), equal="flops")
    with pytest.raises(ParamcalcError, match="unknown cell"):
        pc.compare(RecurrentSpec("lstm", 4, 8), ["lstm", "transformer"])
    with pytest.raises(ParamcalcError, match="at least one cell"):
        pc.compare(RecurrentSpec("lstm", 4, 8), [])


def test_analytic_compare_and_sweep_import_neither_torch_nor_pandas():
    code = (
        "import sys, paramcalc as pc\n"
        "s = pc.RecurrentSpec('lstm', 28, 256, num_layers=2)\n"
        "pc.compare(s, equal='params').records(); pc.sweep(s, hidden_sizes='64:256:64').records()\n"
        "assert 'torch' not in sys.modules and 'pandas' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_functions_are_not_shadowed_by_their_modules():
    code = (
        "import paramcalc as pc\n"
        "from paramcalc.bench import BenchResult\n"
        "from paramcalc.compare import SweepResult\n"
        "import paramcalc.compare, types\n"
        "for name in ('bench', 'compare', 'sweep'):\n"
        "    f = getattr(pc, name)\n"
        "    assert callable(f) and not isinstance(f, types.ModuleType) and f.__name__ == name, f\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert pc.bench is sys.modules["paramcalc.bench"].bench
    assert pc.compare is C.compare and pc.sweep is C.sweep


# --- compare: timed ---------------------------------------------------------------------------


def test_compare_bench_columns_are_consistent():
    w = Workload(batch=3, seq_len=4)
    r = pc.compare(RecurrentSpec("lstm", 4, 8), workload=w, bench=True, min_run_time=0.01)
    assert r.benched and r.device == "cpu"
    first = r.rows[0].bench.median_s
    for row, rec in zip(r.rows, r.records(), strict=True):
        b = row.bench
        assert b.spec == row.spec and b.workload == w
        assert rec["time_ms"] == pytest.approx(b.median_s * 1e3, rel=1e-3)
        assert rec["tokens_per_s"] == pytest.approx(12 / b.median_s, rel=1e-3)
        assert rec["time_vs_first"] == pytest.approx(b.median_s / first, rel=1e-3)
        assert rec["kernel"] == b.kernel_path
    assert r.records()[0]["time_vs_first"] == 1
    assert r.meta()["threads"] == torch.get_num_threads()


def test_compare_checks_memory_of_every_row_before_timing(monkeypatch):
    B = importlib.import_module("paramcalc.bench")
    timed = []
    monkeypatch.setattr(B, "available_bytes", lambda dev: 10**6)
    monkeypatch.setattr(B, "bench", lambda *a, **k: timed.append(a))
    with pytest.raises(ParamcalcError, match="not enough memory"):
        # the RNN fits in 1 MB, the LSTM does not: nothing may be timed
        pc.compare(RecurrentSpec("lstm", 28, 64), workload=Workload(64, 28), bench=True)
    assert timed == []


# --- compare: the command ---------------------------------------------------------------------


def test_main_job_command(run, tmp_path, monkeypatch):
    """The README's main job, verbatim: RNN vs LSTM vs GRU, measured on CPU, exported."""
    monkeypatch.chdir(tmp_path)
    args = "compare -d 28 -H 256 -L 2 --batch 64 --seq-len 28 --bench --device cpu --output report.md"
    r = run(*args.split())
    assert r.exit_code == 0, r.output
    text = Path("report.md").read_text()
    lines = text.strip().splitlines()
    assert len(lines) == 2 + 3 and lines[0].startswith("| cell")
    for col in ("params", "macs_per_step", "flops_per_seq", "param_bytes", "train_bytes", "time_ms"):
        assert col in lines[0]
    for col in ("tokens_per_s", "time_vs_first"):
        assert col in lines[0]
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["rnn", "lstm", "gru"]
    assert "819200" in lines[3]  # LSTM(28, 256, 2)
    assert r.stdout.startswith(
        "RNN vs LSTM vs GRU: d=28, L=2, B=64 T=28 fp32 inference; equal hidden size 256"
    )
    assert "timed on cpu" in r.stdout


def test_compare_command_formats(run):
    r = run("compare", "-d", "28", "-H", "256", "-L", "2", "--equal", "params", "--format", "json")
    data = json.loads(r.stdout)
    assert data["equal"] == "params" and data["reference"]["cell"] == "rnn"
    assert [row["cell"] for row in data["rows"]] == ["rnn", "lstm", "gru"]
    assert data["rows"][0]["params"] == torch_params("rnn", 28, 256, 2)
    r = run("compare", "-d", "4", "-H", "8", "--cells", "gru,lstm", "--format", "csv")
    assert r.stdout.splitlines()[0].startswith("cell,hidden_size,params,macs_per_step")


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--device", "cpu"], "only apply when timing: add --bench"),
        (["--cells", "rnn,gru", "--proj-size", "4"], "--proj-size applies only to LSTM"),
        (["--cells", "rnn,lstm", "--reset-after"], "applies only to GRU"),
        (["--cells", ","], "--cells is empty"),
        (["--cells", "rnn,attention"], "unknown cell"),
        (["--bench", "--device", "meta"], "meta"),
        (["--plot", "x.gif"], "unknown suffix '.gif'"),
        (["--output", "nowhere/report.md"], "does not exist"),
    ],
)
def test_compare_user_errors(run, args, needle):
    assert needle in one_line_error(run("compare", "-d", "4", "-H", "8", *args))


def test_bad_output_fails_before_anything_is_timed(run, monkeypatch):
    B = importlib.import_module("paramcalc.bench")
    monkeypatch.setattr(B, "bench", lambda *a, **k: pytest.fail("timed before checking --output"))
    line = one_line_error(run("compare", "-d", "4", "-H", "8", "--bench", "--output", "table.txt"))
    assert "unknown suffix '.txt'" in line


# --- ranges -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("64:1024:64", tuple(range(64, 1025, 64))),
        ("1:4", (1, 2, 3, 4)),
        ("32,64,128", (32, 64, 128)),
        ("256", (256,)),
        ("16,32:64:16", (16, 32, 48, 64)),
        ("1:10:4", (1, 5, 9)),  # stop is included only when it is on the grid
        (" 8 , 8 ,4", (8, 4)),  # duplicates dropped, order kept
    ],
)
def test_parse_range(text, expected):
    assert C.parse_range(text, "hidden sizes") == expected


@pytest.mark.parametrize(
    "text,needle",
    [
        ("5:1", "start 5 is larger than stop 1"),
        ("1:4:0", "step must be positive"),
        ("1:4:-1", "step must be positive"),
        ("a:b", "cannot parse"),
        ("", "cannot parse"),
        ("1:2:3:4", "cannot parse"),
        ("0:4", "must be positive"),
        ("1:100000000", "more than 10,000"),
        ("1:3000000000:1000000", "at most"),
    ],
)
def test_bad_ranges(text, needle):
    with pytest.raises(ParamcalcError, match=needle):
        C.parse_range(text, "hidden sizes")


# --- sweep ------------------------------------------------------------------------------------


def test_sweep_is_tidy_and_matches_real_modules():
    r = pc.sweep(
        RecurrentSpec("lstm", 28, 64),
        cells="lstm,gru",
        hidden_sizes="64:192:64",
        num_layers="1:2",
        batches="1,8",
        seq_lens=28,
    )
    assert len(r.rows) == 2 * 3 * 2 * 2 * 1
    recs = r.records()
    keys = {(x["cell"], x["hidden_size"], x["num_layers"], x["batch"], x["seq_len"]) for x in recs}
    assert len(keys) == len(recs)  # one row per configuration
    for rec in recs:
        assert rec["params"] == torch_params(rec["cell"], 28, rec["hidden_size"], rec["num_layers"])
        w = Workload(batch=rec["batch"], seq_len=28)
        spec = RecurrentSpec(rec["cell"], 28, rec["hidden_size"], num_layers=rec["num_layers"])
        assert rec["flops"] == cost(spec, w).flops
    assert [w.batch for w in r.workloads][:2] == [1, 8] and r.specs[0].cell == "lstm"
    assert len(r.to_frame()) == len(recs)
    assert r.title() == "d=28, seq_len 28, fp32, inference"


def test_single_step_cells_have_one_layer():
    r = pc.sweep(RecurrentSpec("lstm", 4, 8), cells="lstm_cell,lstm", num_layers="1:3")
    assert [(row.spec.cell, row.spec.num_layers) for row in r.rows] == [
        ("lstm_cell", 1),
        ("lstm", 1),
        ("lstm", 2),
        ("lstm", 3),
    ]


def test_sweep_caps(run):
    with pytest.raises(ParamcalcError, match="more than the 10,000 allowed"):
        pc.sweep(RecurrentSpec("lstm", 4, 8), cells="rnn,lstm,gru", hidden_sizes="1:4000")
    line = one_line_error(run("sweep", "-d", "4", "-H", "1:600", "--cells", "lstm", "--bench"))
    assert "601" not in line and "600 configurations" in line and "500 allowed when timing" in line


@pytest.mark.parametrize(
    "args,needle",
    [
        (["-H", "64:32"], "larger than stop"),
        (["-H", "8", "-L", "0:2"], "layers must be positive"),
        (["-H", "8", "--batch", "x"], "cannot parse batch sizes"),
        (["-H", "8", "--seq-len", "1:2:0"], "step must be positive"),
        (["-H", "8", "--dtype", "fp64"], "unknown dtype"),
        (["-H", "8", "--threads", "2"], "add --bench"),
        (
            ["-H", "4:8", "--cells", "lstm", "--proj-size", "6"],
            "proj_size has to be smaller than hidden_size",
        ),
    ],
)
def test_sweep_user_errors(run, args, needle):
    assert needle in one_line_error(run("sweep", "-d", "4", *args))


def test_sweep_command_output(run, tmp_path):
    out = tmp_path / "sweep.json"
    r = run("sweep", "-d", "28", "-H", "64,128", "-L", "1:2", "--cells", "gru", "--output", str(out))
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("sweep: 4 configurations, d=28, batch 1, seq_len 1, fp32, inference")
    data = json.loads(out.read_text())
    assert data["configurations"] == 4
    assert [(x["hidden_size"], x["num_layers"]) for x in data["rows"]] == [
        (64, 1),
        (64, 2),
        (128, 1),
        (128, 2),
    ]
    assert data["rows"][3]["params"] == torch_params("gru", 28, 128, 2)


def test_sweep_bench_progress_bar(run, monkeypatch):
    updates: list[int] = []

    class Bar:
        def __init__(self, length, **kwargs):
            updates.append(-length)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            updates.append(n)

    monkeypatch.setattr(CLI.click, "progressbar", Bar)
    args = ["sweep", "-d", "4", "-H", "4,8", "--cells", "rnn", "--batch", "2", "--seq-len", "3"]
    timed = [*args, "--bench", "--min-time", FAST]
    # stderr is not a terminal under CliRunner: no bar
    assert run(*timed).exit_code == 0 and updates == []
    monkeypatch.setattr(CLI, "_stderr_is_tty", lambda: True)
    r = run(*timed)
    assert r.exit_code == 0, r.output
    assert updates == [-2, 1, 1]  # a bar of 2 configurations, advanced after each
    updates.clear()
    assert run(*timed, "--quiet").exit_code == 0 and updates == []
    assert run(*args).exit_code == 0 and updates == []  # nothing timed: no bar
    rows = [ln.split() for ln in r.stdout.splitlines()[3:5]]
    header = r.stdout.splitlines()[1].split()
    for row in rows:
        rec = dict(zip(header, row, strict=False))
        t = float(rec["time_ms"]) / 1e3
        assert float(rec["tokens_per_s"].replace(",", "")) == pytest.approx(2 * 3 / t, rel=2e-3)


# --- plots ------------------------------------------------------------------------------------


def test_compare_plot_png(run, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")
    png = tmp_path / "compare.png"
    r = run("compare", "-d", "4", "-H", "8", "--bench", "--min-time", FAST, "--plot", str(png), "-q")
    assert r.exit_code == 0, r.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compare.png"]  # no temporary file left


def test_sweep_plot_svg_has_labelled_axes(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")
    svg = tmp_path / "sweep.svg"
    r = pc.sweep(
        RecurrentSpec("lstm", 28, 64), cells="rnn,lstm,gru", hidden_sizes="64:256:64", num_layers="1,2"
    )
    r.plot(svg)
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    labels = set(re.findall(r"<!-- (.*?) -->", text))  # matplotlib notes every text it draws
    assert {"hidden size Dh", "parameters", "FLOP / sequence", "Parameters", "FLOPs per sequence"} <= labels
    assert {f"{c} L={n}" for c in ("RNN", "LSTM", "GRU") for n in (1, 2)} <= labels  # the legend
    assert "d=28, batch 1, seq_len 1, fp32, inference" in labels  # the title: what the rows share
    assert "tokens / s" not in labels  # nothing measured, no throughput panel
    lines = importlib.import_module("paramcalc.plot").series(r.records())
    assert all(len(v) == 4 for v in lines.values()) and len(lines) == 6


def test_plot_errors(run, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")
    P = importlib.import_module("paramcalc.plot")
    with pytest.raises(ParamcalcError, match="folder"):
        P.plot_records([{"cell": "rnn", "hidden_size": 8, "params": 1}], tmp_path / "no" / "x.png")
    with pytest.raises(ParamcalcError, match="nothing to plot"):
        P.plot_records([], tmp_path / "x.png")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "matplotlib" else real(n, *a))
    line = one_line_error(run("sweep", "-d", "4", "-H", "8", "--plot", str(tmp_path / "x.png")))
    assert line == "Error: plotting needs matplotlib: pip install 'paramcalc[plot]'"
    assert not (tmp_path / "x.png").exists()


def test_plot_without_matplotlib_is_one_line(run, monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "matplotlib" else real(n, *a))
    line = one_line_error(run("compare", "-d", "4", "-H", "8", "--plot", str(tmp_path / "x.svg")))
    assert line == "Error: plotting needs matplotlib: pip install 'paramcalc[plot]'"
