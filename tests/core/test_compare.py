"""compare and sweep without timing: rows checked against counts written out by hand, ranges,
caps, the commands and the plots. Timed runs are in tests/torch/test_compare_bench.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

import paramcalc as pc
from paramcalc import ParamcalcError, RecurrentSpec, Workload
from paramcalc.cli.ranges import parse_cells, parse_range
from paramcalc.core.costmodel import cost
from tests.helpers import invoke, one_line_error

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def params(cell: str, d: int, h: int, layers: int = 1) -> int:
    """A unidirectional torch stack: G(h·d + h² + 2h) + (L-1)·G(2h² + 2h)."""
    g = GATES[cell]
    return g * (h * d + h * h + 2 * h) + (layers - 1) * g * (2 * h * h + 2 * h)


def weights(cell: str, d: int, h: int, layers: int = 1) -> int:
    """Weight elements (biases excluded): the GEMM multiply-adds of one time step."""
    g = GATES[cell]
    return g * (h * d + h * h) + (layers - 1) * g * 2 * h * h


# --- compare: the analytic columns ------------------------------------------------------------


def test_compare_keeps_the_given_cell_first():
    r = pc.compare(RecurrentSpec("lstm", 28, 256, num_layers=2), workload=Workload(batch=64, seq_len=28))
    assert [row.spec.cell for row in r.rows] == ["lstm", "rnn", "gru"]
    assert r.reference == RecurrentSpec("lstm", 28, 256, num_layers=2)
    for rec in r.table().records():
        cell = rec["cell"]
        assert rec["hidden_size"] == 256
        assert rec["params"] == params(cell, 28, 256, 2)
        assert rec["macs_per_step"] == weights(cell, 28, 256, 2)
        assert rec["param_bytes"] == 4 * params(cell, 28, 256, 2)  # fp32
        spec = RecurrentSpec(cell, 28, 256, num_layers=2)
        assert rec["flops_per_seq"] == cost(spec, Workload(batch=64, seq_len=28)).flops_per_sequence
        assert rec["train_bytes"] == cost(spec, Workload(batch=64, seq_len=28)).training_bytes
        assert "time_ms" not in rec
    assert r.table().column("params")[0] == 819_200  # the seed's LSTM(28, 256, 2)


def test_compare_carries_specs_and_workload():
    w = Workload(batch=2, seq_len=3, dtype="bf16")
    r = pc.compare(RecurrentSpec("gru", 5, 7), ["gru", "rnn"], workload=w)
    assert r.workload is w and r.specs == (RecurrentSpec("gru", 5, 7), RecurrentSpec("rnn", 5, 7))
    assert r.device is None and not r.benched
    assert r.table().column("param_bytes") == [2 * params(c, 5, 7) for c in ("gru", "rnn")]
    assert list(r.to_frame()["cell"]) == ["gru", "rnn"]
    assert r.meta()["workload"]["dtype"] == "bf16" and r.meta()["cells"] == ["gru", "rnn"]
    assert r.title() == "GRU vs RNN: d=5, L=1, B=2 T=3 bf16 inference, equal hidden size 7"


def test_equal_params_keeps_the_reference_and_sizes_the_others():
    """compare(lstm_spec, equal="params") keeps the LSTM first, as given; RNN and GRU get the hidden
    size whose count is closest to 819,200 (RNN 3h² + 32h, GRU 9h² + 96h: 517 and 296)."""
    r = pc.compare(RecurrentSpec("lstm", 28, 256, num_layers=2), equal="params")
    target = params("lstm", 28, 256, 2)
    assert [(row.spec.cell, row.spec.hidden_size) for row in r.rows] == [
        ("lstm", 256),
        ("rnn", 517),
        ("gru", 296),
    ]
    assert r.rows[0].params == target
    for row in r.rows[1:]:
        h, cell = row.spec.hidden_size, row.spec.cell
        here = abs(params(cell, 28, h, 2) - target)
        assert here <= abs(params(cell, 28, h - 1, 2) - target)
        assert here <= abs(params(cell, 28, h + 1, 2) - target)
        assert row.params == params(cell, 28, h, 2)
    t = r.table()
    assert t.names[:4] == ["cell", "hidden_size", "params", "params_diff_pct"]
    diffs = t.column("params_diff_pct")
    assert diffs[0] == 0
    assert diffs[1] == pytest.approx(100 * (params("rnn", 28, 517, 2) - target) / target)
    assert "equal parameters: 819,200 (lstm)" in r.title()


def test_equal_params_multiple_of():
    r = pc.compare(RecurrentSpec("lstm", 28, 256), ["lstm", "gru"], equal="params", multiple_of=8)
    h = r.rows[1].spec.hidden_size
    target = params("lstm", 28, 256)
    assert h % 8 == 0
    assert abs(params("gru", 28, h) - target) <= min(abs(params("gru", 28, h + s) - target) for s in (-8, 8))


def test_projection_only_on_lstm_rows():
    r = pc.compare(RecurrentSpec("lstm", 12, 16, num_layers=2, proj_size=6))
    by_cell = {row.spec.cell: row for row in r.rows}
    # LSTM(12, 16, 2, proj_size=6): 4(16·12 + 16·6 + 2·16) + 6·16, then 4(16·6 + 16·6 + 2·16) + 6·16
    assert by_cell["lstm"].spec.proj_size == 6
    assert by_cell["lstm"].params == (4 * (16 * 12 + 16 * 6 + 32) + 96) + (4 * (16 * 6 + 16 * 6 + 32) + 96)
    assert by_cell["gru"].spec.proj_size == 0 and by_cell["gru"].params == params("gru", 12, 16, 2)


def test_compare_newer_cells():
    r = pc.compare(RecurrentSpec("lstm", 28, 256), ["lstm", "mgu", "mingru"], equal="params")
    target = params("lstm", 28, 256)
    mgu, mingru = r.rows[1].spec.hidden_size, r.rows[2].spec.hidden_size
    mgu_count = lambda h: 2 * (h * 28 + h * h + h)  # noqa: E731
    mingru_count = lambda h: 2 * (h * 28 + h)  # noqa: E731
    assert abs(mgu_count(mgu) - target) <= min(abs(mgu_count(mgu + s) - target) for s in (-1, 1))
    assert abs(mingru_count(mingru) - target) <= min(abs(mingru_count(mingru + s) - target) for s in (-1, 1))


def test_compare_an_explicit_list_of_specs():
    specs = [RecurrentSpec("gru", 5, 7), RecurrentSpec("lstm", 5, 9)]
    r = pc.compare(specs)
    assert r.specs == tuple(specs)
    assert r.table().column("params") == [params("gru", 5, 7), params("lstm", 5, 9)]


def test_title_of_specs_with_different_hidden_sizes_does_not_claim_equal_sizes():
    r = pc.compare([RecurrentSpec("gru", 5, 7), RecurrentSpec("lstm", 5, 9)])
    assert "equal hidden size" not in r.title()


@pytest.mark.parametrize(
    "call, needle",
    [
        (
            lambda: pc.compare(RecurrentSpec("lstm", 4, 8), equal="flops"),
            "equal must be one of hidden, params",
        ),
        (lambda: pc.compare(RecurrentSpec("lstm", 4, 8), ["lstm", "transformer"]), "unknown cell"),
        (lambda: pc.compare(RecurrentSpec("lstm", 4, 8), []), "at least one cell"),
        (lambda: pc.compare([]), "non-empty list"),
        (lambda: pc.compare([RecurrentSpec("gru", 5, 7)], ["rnn"]), "give cells only with a single template"),
        (lambda: pc.compare(RecurrentSpec("lstm", 4, 8), workload="B=2"), "workload must be a Workload"),
        (lambda: pc.compare(RecurrentSpec("lstm", 4, 8), equal="params", multiple_of=0), "multiple_of"),
        (lambda: pc.compare("lstm"), "compare needs a RecurrentSpec"),
    ],
)
def test_compare_api_errors(call, needle):
    with pytest.raises(ParamcalcError, match=needle):
        call()


def test_on_row_is_called_per_row():
    seen = []
    pc.compare(RecurrentSpec("lstm", 4, 8), on_row=lambda row: seen.append(row.spec.cell))
    assert seen == ["lstm", "rnn", "gru"]


def test_lazy_functions_are_the_functions():
    import paramcalc.studies.compare as comparison
    import paramcalc.studies.sweep as sweeping

    assert pc.compare is comparison.compare and pc.sweep is sweeping.sweep
    assert pc.CompareResult is comparison.CompareResult
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pc.nope  # noqa: B018
    assert {"compare", "bench", "check", "inspect"} <= set(dir(pc))


# --- compare: the command ---------------------------------------------------------------------


def test_compare_command_first_cell_is_the_reference():
    r = invoke("compare", "-d", "28", "-H", "256", "-L", "2", "--equal", "params", "--format", "json")
    data = json.loads(r.stdout)
    assert data["equal"] == "params" and data["reference"]["cell"] == "rnn"
    assert [row["cell"] for row in data["rows"]] == ["rnn", "lstm", "gru"]
    assert data["rows"][0]["params"] == params("rnn", 28, 256, 2) == 204_800


def test_compare_command_csv_and_text():
    r = invoke("compare", "-d", "4", "-H", "8", "--cells", "gru,lstm", "--format", "csv")
    assert (
        r.stdout.splitlines()[0]
        == "cell,hidden_size,params,macs_per_step,flops_per_seq,param_bytes,train_bytes"
    )
    text = invoke("compare", "-d", "28", "-H", "256", "-L", "2", "--batch", "64", "--seq-len", "28").stdout
    assert text.startswith("RNN vs LSTM vs GRU: d=28, L=2, B=64 T=28 fp32 inference, equal hidden size 256\n")
    assert "param_bytes" not in text.splitlines()[1]  # a --wide column
    assert "param_bytes" in invoke("compare", "-d", "4", "-H", "8", "--wide").stdout


def test_compare_command_template_takes_the_knobs_of_the_cell_that_has_them():
    r = invoke("compare", "-d", "4", "-H", "8", "--cells", "rnn,lstm", "--proj-size", "4", "-f", "json")
    rows = {row["cell"]: row for row in json.loads(r.stdout)["rows"]}
    assert rows["lstm"]["params"] == 4 * (8 * 4 + 8 * 4 + 16) + 4 * 8  # LSTM(4, 8, proj_size=4)
    assert rows["rnn"]["params"] == params("rnn", 4, 8)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--device", "cpu"], "--device only applies when timing: add --bench"),
        (["--cells", "rnn,gru", "--proj-size", "4"], "no cell in --cells takes --proj-size"),
        (["--cells", "rnn,lstm", "--reset-after"], "no cell in --cells takes --reset-after/--no-reset-after"),
        (["--cells", ","], "--cells is empty"),
        (["--cells", "rnn,attention"], "unknown cell 'attention'"),
        (["--bench", "--min-time", "0"], "min_run_time must be in (0, 600] seconds"),
        (["--plot", "x.gif"], "unknown suffix '.gif'"),
        (["--output", "nowhere/report.md"], "does not exist"),
        (["--multiple-of", "8"], "--multiple-of only applies with --equal params"),
        (["--equal", "params", "--multiple-of", "-8"], "multiple_of must be a positive integer"),
    ],
)
def test_compare_user_errors(args, needle):
    assert needle in one_line_error(invoke("compare", "-d", "4", "-H", "8", *args))


def test_compare_multiple_of_zero_is_refused():
    one_line_error(invoke("compare", "-d", "4", "-H", "8", "--equal", "params", "--multiple-of", "0"))


def test_output_and_plot_on_the_same_file(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")
    line = one_line_error(
        invoke("compare", "-d", "4", "-H", "8", "--output", tmp_path / "a.svg", "--plot", tmp_path / "a.svg")
    )
    assert "unknown suffix '.svg'" in line  # a plot suffix is not an export suffix


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
        (range(2, 5), (2, 3, 4)),
        ([3, 1, 3], (3, 1)),
        (7, (7,)),
    ],
)
def test_parse_range(text, expected):
    assert parse_range(text, "hidden sizes") == expected


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
        ("-1:4", "must be positive, got -1"),
        ("1:100000000", "more than 10,000"),
        ("1:3000000000:1000000", "at most 2,147,483,647"),
        ("1:99999999999999", "more than 12 digits"),
        ("1," * 150, "characters is too long for a range"),
        (range(1, 20_000), "more than 10,000"),
        ([1, 2, True], "must be integers, got True"),
        (3.5, "a range text like 64:512:64"),
    ],
)
def test_bad_ranges(text, needle):
    with pytest.raises(ParamcalcError, match=re.escape(needle)):
        parse_range(text, "hidden sizes")


def test_parse_cells():
    assert parse_cells("RNN, lstm ,rnn_tanh") == ["rnn", "lstm"]
    assert parse_cells(None) is None
    with pytest.raises(ParamcalcError, match="--cells is empty"):
        parse_cells(" , ")


# --- sweep ------------------------------------------------------------------------------------


def test_sweep_is_tidy_and_counts_by_hand():
    r = pc.sweep(
        RecurrentSpec("lstm", 28, 64),
        cells="lstm,gru",
        hidden_sizes=range(64, 193, 64),
        num_layers=range(1, 3),
        batches=[1, 8],
        seq_lens=28,
    )
    assert len(r.rows) == 2 * 3 * 2 * 2 * 1
    recs = r.table().records()
    keys = {(x["cell"], x["hidden_size"], x["num_layers"], x["batch"], x["seq_len"]) for x in recs}
    assert len(keys) == len(recs)  # one row per configuration
    for rec in recs:
        assert rec["params"] == params(rec["cell"], 28, rec["hidden_size"], rec["num_layers"])
        w = Workload(batch=rec["batch"], seq_len=28)
        spec = RecurrentSpec(rec["cell"], 28, rec["hidden_size"], num_layers=rec["num_layers"])
        assert rec["flops"] == cost(spec, w).flops
    assert [w.batch for w in r.workloads][:2] == [1, 8] and r.specs[0].cell == "lstm"
    assert len(r.to_frame()) == len(recs)
    assert r.title() == "sweep: 24 configurations, d=28, seq_len 28, fp32, inference"
    assert r.meta()["configurations"] == 24


def test_sweep_defaults_to_the_template():
    r = pc.sweep(RecurrentSpec("gru", 4, 8, num_layers=2))
    assert [(row.spec.cell, row.spec.hidden_size, row.spec.num_layers) for row in r.rows] == [("gru", 8, 2)]


def test_single_step_cells_have_one_layer():
    r = pc.sweep(RecurrentSpec("lstm", 4, 8), cells="lstm_cell,lstm", num_layers=range(1, 4))
    assert [(row.spec.cell, row.spec.num_layers) for row in r.rows] == [
        ("lstm_cell", 1),
        ("lstm", 1),
        ("lstm", 2),
        ("lstm", 3),
    ]


def test_sweep_caps():
    with pytest.raises(ParamcalcError, match="more than the 10,000 allowed"):
        pc.sweep(RecurrentSpec("lstm", 4, 8), cells="rnn,lstm,gru", hidden_sizes=range(1, 4001))
    line = one_line_error(invoke("sweep", "-d", "4", "-H", "1:600", "--cells", "lstm", "--bench"))
    assert "601" not in line and "600 configurations" in line and "500 allowed when timing" in line


def test_sweep_does_not_relabel_hidden_sizes_below_the_projection():
    try:
        r = pc.sweep(RecurrentSpec("lstm", 4, 8, proj_size=6), hidden_sizes=range(4, 9))
    except ParamcalcError as exc:
        assert "proj_size" in str(exc)
    else:
        sizes = [row.spec.hidden_size for row in r.rows]
        assert len(sizes) == len(set(sizes)) and set(sizes) <= {4, 5, 6, 7, 8}


@pytest.mark.parametrize(
    "args,needle",
    [
        (["-H", "64:32"], "larger than stop"),
        (["-H", "8", "-L", "0:2"], "layers must be positive"),
        (["-H", "8", "--batch", "x"], "cannot parse batch sizes"),
        (["-H", "8", "--seq-len", "1:2:0"], "step must be positive"),
        (["-H", "8", "--dtype", "fp64"], "unknown dtype"),
        (["-H", "8", "--threads", "2"], "add --bench"),
        (["-H", "8", "--cells", "rnn,mgu", "--peephole"], "no cell in --cells takes --peephole"),
    ],
)
def test_sweep_user_errors(args, needle):
    assert needle in one_line_error(invoke("sweep", "-d", "4", *args))


def test_sweep_command_output(tmp_path):
    out = tmp_path / "sweep.json"
    r = invoke("sweep", "-d", "28", "-H", "64,128", "-L", "1:2", "--cells", "gru", "--output", out)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("sweep: 4 configurations, d=28, batch 1, seq_len 1, fp32, inference")
    assert r.stderr == f"wrote {out}\n"
    data = json.loads(out.read_text())
    assert data["configurations"] == 4
    assert [(x["hidden_size"], x["num_layers"]) for x in data["rows"]] == [
        (64, 1),
        (64, 2),
        (128, 1),
        (128, 2),
    ]
    assert data["rows"][3]["params"] == params("gru", 28, 128, 2)


# --- plots ------------------------------------------------------------------------------------


def test_sweep_plot_svg_has_labelled_axes(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")
    from paramcalc.render.plot import series

    svg = tmp_path / "sweep.svg"
    r = pc.sweep(
        RecurrentSpec("lstm", 28, 64),
        cells="rnn,lstm,gru",
        hidden_sizes=range(64, 257, 64),
        num_layers=[1, 2],
    )
    assert r.plot(svg) == svg
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    labels = set(re.findall(r"<!-- (.*?) -->", text))  # matplotlib notes every text it draws
    assert {"hidden size Dh", "parameters", "FLOP / sequence", "Parameters", "FLOPs per sequence"} <= labels
    assert {f"{c} L={n}" for c in ("rnn", "lstm", "gru") for n in (1, 2)} <= labels  # the legend
    assert r.title() in labels  # the title: what the rows share
    assert "tokens / s" not in labels  # nothing measured, no throughput panel
    lines = series(r.table().records())
    assert all(len(v) == 4 for v in lines.values()) and len(lines) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.svg"]  # no temporary file left


def test_compare_plot_png(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")
    png = tmp_path / "compare.png"
    r = invoke("compare", "-d", "4", "-H", "8", "--plot", png)
    assert r.exit_code == 0, r.output
    assert r.stderr == f"wrote {png}\n"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_errors(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")
    r = pc.sweep(RecurrentSpec("lstm", 4, 8))
    with pytest.raises(ParamcalcError, match="does not exist"):
        r.plot(tmp_path / "no" / "x.png")
    with pytest.raises(ParamcalcError, match=r"unknown suffix '\.jpg'"):
        r.plot(tmp_path / "x.jpg")
    with pytest.raises(ParamcalcError, match="nothing to plot for a CountResult"):
        pc.count(RecurrentSpec("lstm", 4, 8)).plot(tmp_path / "x.png")


def test_plot_without_matplotlib_is_one_line(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "matplotlib" else real(n, *a))
    for command in ("compare", "sweep"):
        line = one_line_error(invoke(command, "-d", "4", "-H", "8", "--plot", tmp_path / "x.svg"))
        assert line == "Error: plotting needs matplotlib: pip install 'paramcalc[plot]'"
    assert not (tmp_path / "x.svg").exists()


def test_docs_plot_exists():
    assert (Path(__file__).resolve().parents[2] / "docs" / "compare.png").stat().st_size > 0
