"""The cost model: hand-derived MACs, FLOPs, critical path and memory.

Every expected number is worked out in the test from the layer shapes, never copied from the
code's output. FlopCounterMode comparisons live in tests/torch/test_flopcheck.py.
"""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import paramcalc as pc
from paramcalc import ParamcalcError, RecurrentSpec, Workload, get_cell
from paramcalc.core.costmodel import cell_equations, cost
from paramcalc.core.memory import memory_model

S = RecurrentSpec


# --- hand-derived MACs and FLOPs --------------------------------------------------------------
def test_lstm_28_256_2_by_hand() -> None:
    spec = S("lstm", 28, 256, num_layers=2)
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
    assert r.forward_flops == r.flops == per_token * 64 * 28 == 2_940_600_320
    assert r.flops_per_sequence == per_token * 28
    assert r.backward_flops == 0


def test_rnn_small_by_hand() -> None:
    r = cost(S("rnn", 5, 7), Workload(batch=2, seq_len=4))
    # 7·5 + 7·7 = 84 MACs per step; biases b_ih + b_hh = 14 adds; elementwise: 1 sum + tanh = 2·7
    assert r.macs_per_step == 84
    assert r.macs == 84 * 8
    assert r.flops == (2 * 84 + 14 + 14) * 8


def test_default_workload_is_one_step_of_one_sequence() -> None:
    r = cost(S("rnn", 5, 7))
    assert (r.workload.batch, r.workload.seq_len, r.macs) == (1, 1, 84)


def test_lstm_projection_counts_weight_hr() -> None:
    r = cost(S("lstm", 5, 7, proj_size=3), Workload(batch=1, seq_len=1))
    # weight_ih 28x5, weight_hh 28x3 (recurrent width is P), weight_hr 3x7
    assert r.macs_per_step == 28 * 5 + 28 * 3 + 3 * 7
    (lc,) = r.layers
    assert (lc.input_macs, lc.recurrent_macs, lc.projection_macs) == (140, 84, 21)


def test_bidirectional_second_layer_input() -> None:
    r = cost(S("gru", 10, 6, num_layers=2, bidirectional=True), Workload())
    # layer 0: 3·6·10 + 3·6·6 per direction; layer 1 input is 2·6 = 12: 3·6·12 + 3·6·6
    assert r.macs_per_step == 2 * (180 + 108) + 2 * (216 + 108)
    assert [lc.input_size for lc in r.layers] == [10, 10, 12, 12]


W = Workload(batch=2, seq_len=4)  # 8 real steps
D, H = 5, 7


@pytest.mark.parametrize(
    "spec, macs_per_step, flops_per_token",
    [
        # CIFG: G = 3; one bias (21 adds); 12 ops/unit + peepholes on i, o (a ⊙ and a + each)
        (S("cifg", D, H), 21 * 5 + 21 * 7, 2 * 252 + 21 + (12 + 4) * H),
        # MGU: G = 2; one bias (14); 9 ops/unit
        (S("mgu", D, H), 14 * 5 + 14 * 7, 2 * 168 + 14 + 9 * H),
        # IndRNN: only W·x is a GEMM; u ⊙ h is elementwise (1 ⊙ + 1 sum + ReLU = 3 ops/unit); one bias
        (S("indrnn", D, H), 7 * 5, 2 * 35 + 7 + 3 * H),
        # minGRU: 2 blocks from x only; one bias (14); 5 ops/unit
        (S("mingru", D, H), 14 * 5, 2 * 70 + 14 + 5 * H),
        # minLSTM: 3 blocks from x only; one bias (21); 8 ops/unit
        (S("minlstm", D, H), 21 * 5, 2 * 105 + 21 + 8 * H),
        # LSTM with peepholes: 2 biases (56); 13 ops/unit + 3 peepholes x 2
        (S("lstm", D, H, peephole=True), 28 * 5 + 28 * 7, 2 * 336 + 56 + (13 + 6) * H),
        # GRU in the reset-before form: same weights, same ops, 2 biases under torch names
        (S("gru", D, H, reset_after=False), 21 * 5 + 21 * 7, 2 * 252 + 42 + 11 * H),
    ],
    ids=lambda v: v.describe() if isinstance(v, RecurrentSpec) else None,
)
def test_newer_cells_by_hand(spec, macs_per_step, flops_per_token) -> None:
    r = cost(spec, W)
    assert r.macs_per_step == macs_per_step
    assert r.macs == macs_per_step * 8
    assert r.flops == flops_per_token * 8


@pytest.mark.parametrize("merge, ops", [("sum", 1), ("mul", 1), ("ave", 2)])
def test_merging_directions(merge, ops) -> None:
    spec = S("lstm", D, H, num_layers=2, bidirectional=True, merge_mode=merge)
    r = cost(spec, W)
    # layer 0: 28·5 + 28·7 per direction; layer 1 takes the merged Dh = 7: 28·7 + 28·7
    assert r.macs_per_step == 2 * (28 * 5 + 28 * 7) + 2 * (28 * 7 + 28 * 7) == 1456
    bias, elem = 4 * 2 * 28, 4 * 13 * H
    merging = 2 * ops * H  # per layer, one (sum, mul) or two (ave) ops per output element
    assert r.flops == (2 * 1456 + bias + elem + merging) * 8


def test_keras_gru_reset_before_one_bias_and_two_stages() -> None:
    spec = S("gru", 3, 4, convention="keras", reset_after=False)
    r = cost(spec, Workload(batch=2, seq_len=5))
    # GEMMs 3·4·3 + 3·4·4 = 84 (same as torch); one bias vector: 3·4 adds; elementwise 11·4
    assert r.macs_per_step == 84
    assert r.flops == (2 * 84 + 12 + 44) * 10
    # r,z then n: two sequential GEMMs per step, [2×4]·[4×8] then [2×4]·[4×4]
    assert r.gemms_per_step == 2
    gemms = [g for g in r.table("gemm").records() if g["gemm"].startswith("recurrent")]
    assert [(g["K"], g["N"]) for g in gemms] == [(4, 8), (4, 4)]
    assert "(r_t ⊙ h_{t-1})·W_hnᵀ" in " ".join(cell_equations(spec))
    # PyTorch's form has one recurrent GEMM per step
    assert cost(S("gru", 3, 4), Workload()).gemms_per_step == 1


def test_mgu_candidate_waits_for_the_forget_gate() -> None:
    # n_t = tanh(x·W_n + (f_t ⊙ h_{t-1})·U_n + b_n): two sequential GEMMs, [B×Dh]·[Dh×Dh] each
    r = cost(S("mgu", 3, 4), Workload(batch=2, seq_len=5))
    assert r.gemms_per_step == 2
    rec = [(g["gemm"], g["K"], g["N"]) for g in r.table("gemm").records() if g["gemm"] != "input"]
    assert rec == [("recurrent (f)", 4, 4), ("recurrent (n)", 4, 4)]


def test_cells_without_a_recurrent_gemm() -> None:
    for cell in ("indrnn", "mingru", "minlstm"):
        r = cost(S(cell, 3, 4), Workload(batch=2, seq_len=5))
        assert r.gemms_per_step == 0 and r.critical_path_gemms == 0
        assert [g["gemm"] for g in r.table("gemm").records()] == ["input"]
        assert "each elementwise only (no recurrent GEMM)" in r.summary()[2]


def test_scan_levels_of_linear_recurrences() -> None:
    r = cost(S("mingru", 28, 256, num_layers=2), Workload(batch=64, seq_len=1000))
    # ⌈log₂ 1000⌉ = 10 levels per layer
    assert r.scan_levels == 2 * 10
    assert r.critical_path_steps == 1000 + 2 - 1
    assert any("parallel scan takes 20 dependent levels" in n for n in r.notes())
    assert cost(S("lstm", 28, 256), Workload(seq_len=1000)).scan_levels is None
    assert cost(S("minlstm", 2, 3), Workload(seq_len=1)).scan_levels == 1  # at least one level


def test_packed_batch_costs_real_steps() -> None:
    spec = S("gru", 4, 6)
    per_step = 3 * 6 * 4 + 3 * 6 * 6  # 180
    r = cost(spec, Workload(batch=3, seq_len=12, lengths=(12, 9, 3)))
    assert r.workload.tokens == 24
    assert r.macs == per_step * 24  # not the padded 3·12 = 36 steps
    assert r.critical_path_steps == 12
    # any order: lengths are a multiset for cost
    assert cost(spec, Workload(3, 12, (3, 12, 9))).flops == r.flops
    # shrinking recurrent GEMM: 3 rows at first, 1 at the end
    rec = next(g for g in r.table("gemm").records() if g["gemm"] == "recurrent")
    assert (rec["M"], rec["M_last"], rec["calls"]) == (3, 1, 12)
    assert rec["macs"] == 3 * 6 * 6 * 24
    inp = next(g for g in r.table("gemm").records() if g["gemm"] == "input")
    assert (inp["M"], inp["calls"], inp["macs"]) == (24, 1, 3 * 6 * 4 * 24)


def test_cells_loop_over_steps() -> None:
    r = cost(S("lstm_cell", 5, 7), Workload(batch=3, seq_len=4))
    assert r.macs == (28 * 5 + 28 * 7) * 12
    assert r.critical_path_steps == 4


# --- conventions and switches -----------------------------------------------------------------
def test_switches_change_flops_not_macs() -> None:
    spec = S("lstm", 5, 7, proj_size=3)
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
    spec = S("gru", 4, 6, num_layers=2)
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
        S("rnn", 5, 7, bias=False),
        Workload(3, 4, mode="training"),
        bias_ops=False,
        elementwise=False,
        backward="autograd",
    )
    assert r.flops == 2 * (84 * 12 + 84 * 12 + 49 * 9) == 4914
    assert "autograd" in r.convention


def test_unknown_backward_rule() -> None:
    with pytest.raises(ParamcalcError, match="unknown backward rule '3x': expected one of 2x, autograd"):
        cost(S("rnn", 2, 2), Workload(), backward="3x")


def test_cost_rejects_what_is_not_a_workload() -> None:
    with pytest.raises(ParamcalcError, match="cost needs a Workload, got str"):
        cost(S("rnn", 2, 2), "B=2")  # type: ignore[arg-type]


# --- invariant (hypothesis) -------------------------------------------------------------------
@st.composite
def specs(draw: st.DrawFn) -> RecurrentSpec:
    cell = draw(st.sampled_from(sorted(pc.CELLS)))
    ct = get_cell(cell)
    single = ct.single_step
    keras = draw(st.booleans())
    h = draw(st.integers(1, 300))
    bi = not single and draw(st.booleans())
    return RecurrentSpec(
        cell,
        draw(st.integers(1, 300)),
        h,
        num_layers=1 if single else draw(st.integers(1, 4)),
        bidirectional=bi,
        bias=draw(st.booleans()),
        proj_size=draw(st.integers(0, h - 1)) if ct.projection and not keras else 0,
        convention="keras" if keras else "torch",
        merge_mode=draw(st.sampled_from(["concat", "sum"])) if bi else "concat",
    )


@settings(max_examples=200, deadline=None)
@given(spec=specs(), batch=st.integers(1, 9), seq_len=st.integers(1, 9))
def test_gemm_macs_per_token_equal_gemm_operand_elements(
    spec: RecurrentSpec, batch: int, seq_len: int
) -> None:
    event(f"cell {spec.cell}")
    weights = sum(r.numel for r in pc.count(spec).rows if r.gemm)
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
    r = cost(S("lstm", 4, 8, num_layers=layers, bidirectional=bi), Workload(2, 10))
    assert r.critical_path_steps == expected
    assert r.layerwise_steps == layers * 10


def test_projection_is_on_the_critical_path() -> None:
    r = cost(S("lstm", 4, 8, proj_size=2), Workload(5, 7))
    assert r.gemms_per_step == 2
    assert r.critical_path_gemms == 14


# --- memory ------------------------------------------------------------------------------------
def test_memory_by_hand() -> None:
    spec = S("lstm", 28, 256, num_layers=2)
    r = cost(spec, Workload(64, 28, dtype="fp16", mode="training"))
    params = 819_200
    assert r.param_bytes == params * 2
    assert r.grad_bytes == params * 2 and r.optimizer_bytes == 2 * params * 2
    # h and c, 256 each, per layer, 64 sequences
    assert r.state_bytes == 2 * (256 + 256) * 64 * 2
    # kept for backward by ATen's native LSTM (fp16 has no oneDNN kernel on a CPU), per token:
    # h_(t-1) + 6 Dh vectors (the gates i, f, g, o as one tensor, c_(t-1), tanh c_t) per layer,
    # and layer 1's input (layer 0's output); the first layer's input is the resident x
    saved = 2 * (256 + 6 * 256) + 256
    assert r.activation_bytes == saved * 64 * 28 * 2
    wl = Workload(64, 28, dtype="fp16", mode="training")
    m = memory_model(spec, wl, optimizer="adam")
    assert m.path == "native" and r.training_bytes == m.peak_bytes + 2 * params * 2
    assert r.inference_bytes == memory_model(spec, Workload(64, 28, dtype="fp16")).peak_bytes
    items = {row["item"]: row for row in r.table("memory").records()}
    assert items["parameters"]["bytes"] == params * 2 and items["parameters"]["elements"] == params
    assert items["Adam moments"]["bytes"] == r.optimizer_bytes
    assert items["training with Adam"]["bytes"] == r.training_bytes
    assert all(row["assumption"] for row in r.table("memory").records())


def test_dtype_bytes() -> None:
    spec = S("rnn", 3, 4)  # 4·3 + 4·4 + 8 = 36 params
    assert [cost(spec, Workload(dtype=d)).param_bytes for d in ("fp32", "fp16", "bf16", "int8")] == [
        144,
        72,
        72,
        36,
    ]


# --- views, frames -------------------------------------------------------------------------------
def test_views() -> None:
    r = cost(S("lstm", 5, 7, num_layers=2, proj_size=3), Workload(2, 3, mode="training"))
    assert r.VIEWS == ("layer", "part", "gemm", "memory", "total")
    layer = r.table("layer").records()
    assert len(layer) == 2 and sum(row["flops"] for row in layer) == r.flops
    assert sum(row["macs"] for row in layer) == r.macs
    parts = {row["part"]: row for row in r.table("part").records()}
    assert parts["total"]["per_batch"] == r.flops
    assert parts["projection h·W_hrᵀ"]["per_step"] == 2 * 21
    assert "backward (2x rule)" in parts
    total = r.table("total").records()[0]
    assert total["macs"] == r.macs and total["critical_path"] == r.critical_path_steps
    frame = r.to_frame("gemm")
    assert list(frame["gemm"]) == ["input", "recurrent", "projection"] * 2
    with pytest.raises(ParamcalcError, match="CostResult has no view 'tensor'"):
        r.table("tensor")


def test_summary_lines() -> None:
    r = cost(S("lstm", 28, 256, num_layers=2), Workload(batch=64, seq_len=28))
    lines = r.summary()
    assert lines[0] == (
        "GEMM MACs: 815,104 per step, 22,822,912 per sequence (T=28), "
        "1,460,666,368 per batch (1,792 real steps)"
    )
    assert lines[2].startswith(
        "critical path: 29 dependent steps (T + L - 1), each 1 sequential GEMM [64×256]·[256×1024]"
    )
    assert r.meta()["macs"] == 1_460_666_368 and r.to_dict() == r.meta()


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
        ({"batch": 1, "seq_len": 12, "lengths": "12"}, "lengths must be a sequence of integers"),
        ({"batch": 1, "seq_len": 12, "lengths": ()}, "lengths is empty"),
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
    assert wl.dtype_bytes == 2 and wl.steps == 12 and wl.longest == 1
    assert [wl.step_batch(t) for t in (0, 2, 3, 8, 9, 11)] == [3, 3, 2, 2, 1, 1]
    assert wl.describe() == "B=3 lengths=3,12,9 (24 real steps) bf16 training"
    assert Workload(dtype="half", mode="eval").describe() == "B=1 T=1 fp16 inference"
