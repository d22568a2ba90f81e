"""The cost model (paramcalc.cost): hand-derived MACs, FLOPs, critical path and memory.

Every expected number is worked out in the test from the layer shapes, never copied from the
code's output. FlopCounterMode comparisons live in test_flopcheck.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from paramcalc import ParamcalcError, RecurrentSpec, get_cell
from paramcalc.cli import cli
from paramcalc.cost import Workload, cell_equations, cost
from paramcalc.count import count


# --- hand-derived MACs and FLOPs --------------------------------------------------------------
def test_lstm_28_256_2_by_hand() -> None:
    spec = RecurrentSpec("lstm", 28, 256, num_layers=2)
    r = cost(spec, Workload(batch=64, seq_len=28))
    # layer 0: x·W_ihᵀ 4·256·28, h·W_hhᵀ 4·256·256; layer 1: both 4·256·256
    per_step = 4 * 256 * 28 + 3 * (4 * 256 * 256)
    assert per_step == 815_104
    assert r.macs_per_step == per_step
    assert r.macs == per_step * 64 * 28 == 1_460_666_368
    # per token: 2·MACs + bias adds (2 layers · 2 vectors · 4·256) + elementwise (2 · 13 · 256)
    bias = 2 * 2 * 4 * 256
    elem = 2 * 13 * 256
    per_token = 2 * per_step + bias + elem
    assert r.forward_flops == r.flops == per_token * 64 * 28
    assert r.flops_per_sequence == per_token * 28
    assert r.backward_flops == 0


def test_rnn_small_by_hand() -> None:
    r = cost(RecurrentSpec("rnn", 5, 7), Workload(batch=2, seq_len=4))
    # 7·5 + 7·7 = 84 MACs per step; biases b_ih + b_hh = 14 adds; elementwise: 1 sum + tanh = 2·7
    assert r.macs_per_step == 84
    assert r.macs == 84 * 8
    assert r.flops == (2 * 84 + 14 + 14) * 8


def test_lstm_projection_counts_weight_hr() -> None:
    r = cost(RecurrentSpec("lstm", 5, 7, proj_size=3), Workload(batch=1, seq_len=1))
    # weight_ih 28x5, weight_hh 28x3 (recurrent width is P), weight_hr 3x7
    assert r.macs_per_step == 28 * 5 + 28 * 3 + 3 * 7
    (lc,) = r.layers
    assert (lc.input_macs, lc.recurrent_macs, lc.projection_macs) == (140, 84, 21)


def test_bidirectional_second_layer_input() -> None:
    r = cost(RecurrentSpec("gru", 10, 6, num_layers=2, bidirectional=True), Workload())
    # layer 0: 3·6·10 + 3·6·6 per direction; layer 1 input is 2·6 = 12: 3·6·12 + 3·6·6
    assert r.macs_per_step == 2 * (180 + 108) + 2 * (216 + 108)
    assert [lc.input_size for lc in r.layers] == [10, 10, 12, 12]


def test_keras_gru_reset_before_one_bias_and_two_stages() -> None:
    spec = RecurrentSpec("gru", 3, 4, convention="keras", reset_after=False)
    r = cost(spec, Workload(batch=2, seq_len=5))
    # GEMMs 3·4·3 + 3·4·4 = 84 (same as torch); one bias vector: 3·4 adds; elementwise 11·4
    assert r.macs_per_step == 84
    assert r.flops == (2 * 84 + 12 + 44) * 10
    # r,z then n: two sequential GEMMs per step, [2×4]·[4×8] then [2×4]·[4×4]
    assert r.gemms_per_step == 2
    gemms = [g for g in r.records("gemm") if g["gemm"].startswith("recurrent")]
    assert [(g["K"], g["N"]) for g in gemms] == [(4, 8), (4, 4)]
    assert "(r_t ⊙ h_{t-1})·W_hnᵀ" in " ".join(cell_equations(spec))
    # PyTorch's form has one recurrent GEMM per step
    assert cost(RecurrentSpec("gru", 3, 4), Workload()).gemms_per_step == 1


def test_packed_batch_costs_real_steps() -> None:
    spec = RecurrentSpec("gru", 4, 6)
    per_step = 3 * 6 * 4 + 3 * 6 * 6  # 180
    r = cost(spec, Workload(batch=3, seq_len=12, lengths=(12, 9, 3)))
    assert r.workload.tokens == 24
    assert r.macs == per_step * 24  # not the padded 3·12 = 36 steps
    assert r.critical_path_steps == 12
    # any order: lengths are a multiset for cost
    assert cost(spec, Workload(3, 12, (3, 12, 9))).flops == r.flops
    # shrinking recurrent GEMM: 3 rows at first, 1 at the end
    rec = next(g for g in r.records("gemm") if g["gemm"] == "recurrent")
    assert rec["M"] == "3→1" and rec["calls"] == 12


def test_cells_loop_over_steps() -> None:
    r = cost(RecurrentSpec("lstm_cell", 5, 7), Workload(batch=3, seq_len=4))
    assert r.macs == (28 * 5 + 28 * 7) * 12
    assert r.critical_path_steps == 4


def test_elementwise_facts_from_registry() -> None:
    # counted from the equations in the test: RNN: sum + act; LSTM: 4 sums, 3 σ, 2 tanh,
    # c = f⊙c + i⊙g (3), h = o⊙tanh(c) (1 ⊙ beside the tanh); GRU: 3 sums, 2 σ, tanh, r⊙(..),
    # (1 - z)⊙n + z⊙h (4)
    assert get_cell("rnn").elementwise_per_unit == 2
    assert get_cell("rnn_relu").elementwise_ops == (("add", 1), ("relu", 1))
    assert get_cell("lstm").elementwise_per_unit == 4 + 3 + 1 + 3 + 2
    assert get_cell("gru").elementwise_per_unit == 3 + 2 + 1 + 1 + 4


# --- conventions and switches -----------------------------------------------------------------
def test_switches_change_flops_not_macs() -> None:
    spec = RecurrentSpec("lstm", 5, 7, proj_size=3)
    wl = Workload(batch=2, seq_len=3)
    full = cost(spec, wl)
    gemm_only = cost(spec, wl, bias_ops=False, elementwise=False)
    assert gemm_only.macs == full.macs
    assert gemm_only.flops == 2 * (140 + 84 + 21) * 6
    assert full.flops - gemm_only.flops == (2 * 28 + 13 * 7) * 6
    no_rec = cost(spec, wl, recurrent=False, projection=False, bias_ops=False, elementwise=False)
    assert no_rec.flops == 2 * 140 * 6
    assert "left out of FLOPs: recurrent GEMM, projection GEMM" in no_rec.convention
    assert "bias" in full.convention and "inference" in full.convention


def test_training_2x_rule() -> None:
    spec = RecurrentSpec("gru", 4, 6, num_layers=2)
    inf = cost(spec, Workload(batch=2, seq_len=5))
    tr = cost(spec, Workload(batch=2, seq_len=5, mode="training"))
    assert tr.backward_flops == 2 * inf.flops
    assert tr.flops == 3 * inf.flops
    assert tr.macs == inf.macs  # forward MACs
    assert "2 × forward" in tr.convention


def test_training_autograd_rule_by_hand() -> None:
    # RNN(5, 7), B=3, T=4, data input, h0 = 0: forward 84·12 MACs; backward dW 84·12,
    # no dX for the layer-0 input, dh for 12 - 3 rows: 49·9
    r = cost(
        RecurrentSpec("rnn", 5, 7, bias=False),
        Workload(3, 4, mode="training"),
        bias_ops=False,
        elementwise=False,
        backward="autograd",
    )
    assert r.flops == 2 * (84 * 12 + 84 * 12 + 49 * 9) == 4914
    assert "autograd" in r.convention


def test_unknown_backward_rule() -> None:
    with pytest.raises(ParamcalcError, match="backward rule"):
        cost(RecurrentSpec("rnn", 2, 2), Workload(), backward="3x")


# --- invariant (hypothesis) -------------------------------------------------------------------
specs = st.builds(
    lambda cell, d, h, layers, bi, bias, proj, keras: RecurrentSpec(
        cell,
        d,
        h,
        num_layers=1 if cell.endswith("_cell") else layers,
        bidirectional=bi and not cell.endswith("_cell"),
        bias=bias,
        proj_size=proj % h if cell == "lstm" and not keras else 0,
        convention="keras" if keras else "torch",
    ),
    st.sampled_from(["rnn", "rnn_relu", "lstm", "gru", "rnn_cell", "lstm_cell", "gru_cell"]),
    st.integers(1, 300),
    st.integers(1, 300),
    st.integers(1, 4),
    st.booleans(),
    st.booleans(),
    st.integers(0, 299),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(spec=specs, batch=st.integers(1, 9), seq_len=st.integers(1, 9))
def test_gemm_macs_per_token_equal_weight_elements(spec: RecurrentSpec, batch: int, seq_len: int) -> None:
    weights = sum(r.numel for r in count(spec).rows if not r.role.startswith("bias"))
    r = cost(spec, Workload(batch, seq_len))
    assert r.macs_per_step == weights
    assert r.macs == weights * batch * seq_len
    # with every part left out but GEMMs, FLOPs are exactly 2·MACs
    assert cost(spec, Workload(batch, seq_len), bias_ops=False, elementwise=False).flops == 2 * r.macs


# --- critical path -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("layers", "bi", "expected"),
    [(1, False, 10), (3, False, 10 + 3 - 1), (1, True, 10), (3, True, 3 * 10)],
)
def test_critical_path(layers: int, bi: bool, expected: int) -> None:
    r = cost(RecurrentSpec("lstm", 4, 8, num_layers=layers, bidirectional=bi), Workload(2, 10))
    assert r.critical_path_steps == expected
    assert r.layerwise_steps == layers * 10


def test_projection_is_on_the_critical_path() -> None:
    r = cost(RecurrentSpec("lstm", 4, 8, proj_size=2), Workload(5, 7))
    assert r.gemms_per_step == 2
    assert r.critical_path_gemms == 14


# --- memory ------------------------------------------------------------------------------------
def test_memory_by_hand() -> None:
    spec = RecurrentSpec("lstm", 28, 256, num_layers=2)
    r = cost(spec, Workload(64, 28, dtype="fp16", mode="training"))
    params = 819_200
    assert r.param_bytes == params * 2
    assert r.grad_bytes == params * 2 and r.optimizer_bytes == 2 * params * 2
    # h and c, 256 each, per layer, 64 sequences
    assert r.state_bytes == 2 * (256 + 256) * 64 * 2
    # per token: layer input + h_{t-1} + 6 Dh vectors (i, f, g, o, c_t, tanh c_t) per layer
    saved = (28 + 256 + 6 * 256) + (256 + 256 + 6 * 256)
    assert r.activation_bytes == saved * 64 * 28 * 2
    assert r.training_bytes == 4 * params * 2 + saved * 64 * 28 * 2
    # working set: params + state + the largest layer's input + gates (4·256) + output, all steps
    live = 64 * 28 * max(28 + 1024 + 256, 256 + 1024 + 256)
    assert r.inference_bytes == (params + 2 * 512 * 64 + live) * 2
    items = {row["item"]: row for row in r.records("memory")}
    assert items["parameters"]["bytes"] == params * 2
    assert all(row["assumption"] for row in r.records("memory"))


def test_dtype_bytes() -> None:
    spec = RecurrentSpec("rnn", 3, 4)  # 4·3 + 4·4 + 8 = 36 params
    assert [cost(spec, Workload(dtype=d)).param_bytes for d in ("fp32", "fp16", "bf16", "int8")] == [
        144,
        72,
        72,
        36,
    ]


# --- records, frames ---------------------------------------------------------------------------
def test_views() -> None:
    r = cost(RecurrentSpec("lstm", 5, 7, num_layers=2, proj_size=3), Workload(2, 3, mode="training"))
    layer = r.records("layer")
    assert len(layer) == 2 and sum(row["flops"] for row in layer) == r.flops
    assert sum(row["macs"] for row in layer) == r.macs
    parts = {row["part"]: row for row in r.records("part")}
    assert parts["total"]["per_batch"] == r.flops
    assert parts["projection h·W_hrᵀ"]["per_step"] == 2 * 21
    assert "backward (2x rule)" in parts
    total = r.records("total")[0]
    assert total["macs"] == r.macs and total["critical_path"] == r.critical_path_steps
    frame = r.to_frame("gemm")
    assert list(frame["gemm"]) == ["input", "recurrent", "projection"] * 2
    with pytest.raises(ValueError):
        r.records("tensor")


# --- workload validation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch": 0}, "batch must be a positive integer"),
        ({"batch": -3}, "batch must be a positive integer"),
        ({"seq_len": 0}, "seq_len must be a positive integer"),
        ({"batch": 3, "seq_len": 10, "lengths": (12, 9, 3)}, "longer than seq_len=10"),
        ({"batch": 2, "seq_len": 12, "lengths": (12, 9, 3)}, "3 entries but batch is 2"),
        ({"batch": 3, "seq_len": 12, "lengths": (12, 0, 3)}, "lengths\\[1\\] must be a positive"),
        ({"dtype": "fp8"}, "unknown dtype 'fp8'"),
        ({"mode": "serving"}, "unknown mode"),
        ({"dtype": "int8", "mode": "training"}, "int8 is an inference format"),
    ],
)
def test_bad_workload(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ParamcalcError, match=message):
        Workload(**kwargs)  # type: ignore[arg-type]


def test_workload_aliases_and_packed() -> None:
    wl = Workload.packed([3, 12, 9], dtype="bfloat16", mode="train")
    assert (wl.batch, wl.seq_len, wl.tokens, wl.dtype, wl.mode) == (3, 12, 24, "bf16", "training")
    assert wl.dtype_bytes == 2


# --- CLI ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["--batch", "0", "--seq-len", "5"],
        ["--batch", "-2", "--seq-len", "5"],
        ["--seq-len", "5", "--lengths", "6,2"],
        ["--batch", "3", "--lengths", "4,2"],
        ["--lengths", "4,0,2"],
        ["--lengths", "4,x"],
        ["--dtype", "fp64"],
        ["--dtype", "int8", "--train"],
    ],
)
@pytest.mark.parametrize("command", ["cost", "count"])
def test_cli_bad_workload_exit_2(command: str, args: list[str]) -> None:
    result = CliRunner().invoke(cli, [command, "gru", "-d", "8", "-H", "16", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ")


def test_cli_cost_views() -> None:
    base = ["cost", "lstm", "-d", "28", "-H", "256", "-L", "2", "--batch", "64", "--seq-len", "28"]
    for by in ("layer", "part", "gemm", "memory", "total"):
        result = CliRunner().invoke(cli, [*base, "--by", by])
        assert result.exit_code == 0, result.output
        assert f"{1_460_666_368:,}" in result.output  # MACs in the summary lines
        assert "convention: 1 MAC = one multiply-add" in result.output
    out = CliRunner().invoke(cli, [*base, "--no-elementwise", "--no-bias-ops", "--by", "total"]).output
    assert f"{2 * 1_460_666_368:,}" in out and "left out of FLOPs: bias additions, elementwise ops" in out


def test_cli_cost_json() -> None:
    import json

    args = ["cost", "rnn", "-d", "5", "-H", "7", "--batch", "2", "--seq-len", "4", "-f", "json"]
    result = CliRunner().invoke(cli, args)
    data = json.loads(result.output)
    assert data["macs"] == 84 * 8 and data["workload"]["batch"] == 2 and data["convention"]


def test_count_gains_cost_columns_only_with_a_workload() -> None:
    base = ["count", "lstm", "-d", "28", "-H", "256", "-L", "2"]
    for by in ("layer", "total"):
        plain = CliRunner().invoke(cli, [*base, "--by", by]).output
        assert "macs" not in plain and "cost" not in plain
        costed = CliRunner().invoke(cli, [*base, "--by", by, "--batch", "64", "--seq-len", "28"]).output
        assert "macs" in costed and "flops" in costed and f"{1_460_666_368:,}" in costed
        assert plain.splitlines()[-1] == costed.splitlines()[-1] == "total: 819,200 parameters"


@pytest.mark.parametrize("extra", [[], ["--batch", "64", "--seq-len", "28", "--by", "layer"]])
def test_count_imports_neither_torch_nor_pandas(extra: list[str]) -> None:
    code = (
        "import sys\n"
        "from paramcalc.cli import cli\n"
        f"args = ['count', 'lstm', '-d', '28', '-H', '256', '-L', '2', *{extra!r}]\n"
        "cli.main(args, standalone_mode=False)\n"
        "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
