"""`paramcalc explain`: the equations and the term each tensor of the first layer enters."""

from __future__ import annotations

import json

import pytest

import paramcalc as pc
from paramcalc import RecurrentSpec
from tests.helpers import invoke, one_line_error


def test_seed_note_weight_ih_is_four_gate_blocks():
    e = pc.explain(RecurrentSpec("lstm", 28, 256, num_layers=2))
    rows = {r["tensor"]: r for r in e.table().records()}
    assert list(rows) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]  # first layer only
    ih = rows["weight_ih_l0"]
    assert ih["shape"] == (4 * 256, 28) and ih["numel"] == 28_672
    assert ih["term"] == "x_t·W_ihᵀ"
    assert ih["why"] == "4 gate blocks (i, f, g, o) of Dh=256 rows x 28 input features d"
    assert rows["weight_hh_l0"]["term"] == "h_{t-1}·W_hhᵀ"
    assert e.summary() == [
        "layer 0, forward direction shown; 2 layers x 1 direction in all; "
        "layers above the first take 256 features"
    ]
    assert len(e.equations) == 6 and e.equations[4] == "c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t"


def test_equations_follow_the_layout():
    reset_before = pc.explain(RecurrentSpec("gru", 4, 8, convention="keras", reset_after=False))
    assert "(r_t ⊙ h_{t-1})·W_hnᵀ" in reset_before.equations[2]
    assert "r_t ⊙ (h_{t-1}·W_hnᵀ + b_hn)" in pc.explain(RecurrentSpec("gru", 4, 8)).equations[2]
    peep = pc.explain(RecurrentSpec("lstm", 4, 8, peephole=True))
    assert "p_i ⊙ c_{t-1}" in peep.equations[0]
    rows = {r["tensor"]: r["term"] for r in peep.table().records()}
    assert rows["weight_ci_l0"] == "p_i ⊙ c"


def test_keras_bias_is_one_tensor_for_both_vectors():
    e = pc.explain(RecurrentSpec("gru", 4, 8, convention="keras"))
    bias = e.table().records()[-1]
    assert bias["tensor"] == "bias" and bias["shape"] == (2, 24)
    assert bias["term"] == "b_ih (added) and b_hh (added)"
    assert bias["why"].startswith("2 vectors x 3 gate blocks (r, z, n)")
    assert (
        e.table().records()[0]["why"].startswith("3 gate blocks (r, z, n) of Dh=8 columns")
    )  # stored (d, 3u)


@pytest.mark.parametrize(
    "spec, tensor, why",
    [
        (
            RecurrentSpec("indrnn", 4, 8),
            "weight_hh_l0",
            "one recurrent weight per hidden unit (Dh=8): u ⊙ h, no matrix",
        ),
        (RecurrentSpec("lstm", 4, 8, proj_size=3), "weight_hr_l0", "projects Dh=8 down to P=3"),
        (
            RecurrentSpec("lstm", 4, 8, proj_size=3),
            "weight_hh_l0",
            "4 gate blocks (i, f, g, o) of Dh=8 rows x P=3 projected recurrent features",
        ),
        (
            RecurrentSpec("mgu", 4, 8),
            "weight_ih_l0",
            "2 gate blocks (f, n) of Dh=8 rows x 4 input features d",
        ),
    ],
)
def test_why(spec, tensor, why):
    rows = {r["tensor"]: r["why"] for r in pc.explain(spec).table().records()}
    assert rows[tensor] == why


def test_cell_without_recurrent_weight():
    e = pc.explain(RecurrentSpec("mingru", 4, 8))
    assert [r["tensor"] for r in e.table().records()] == ["weight_ih_l0", "bias_ih_l0"]
    assert "parallel scan" in e.title()


def test_cli_explain_prints_equations_then_the_table():
    r = invoke("explain", "lstm", "-d", "28", "-H", "256")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert (
        lines[0] == "LSTM(28, 256)  [PyTorch/cuDNN convention: two bias vectors (b_ih, b_hh) per gate block]"
    )
    assert lines[1] == "" and lines[2] == "  i_t = σ(x_t·W_iiᵀ + b_ii + h_{t-1}·W_hiᵀ + b_hi)"
    assert any(line.startswith("weight_ih_l0  (1024, 28)") for line in lines)


def test_cli_explain_json():
    data = json.loads(invoke("explain", "indrnn", "-d", "4", "-H", "8", "-f", "json").stdout)
    assert data["equations"] == [
        "h_t = ReLU(x_t·W_ihᵀ + u ⊙ h_{t-1} + b)      (u: one recurrent weight per unit; "
        "b = b_ih, or b_ih + b_hh with two bias vectors)"
    ]
    assert [(r["tensor"], r["shape"]) for r in data["rows"]] == [
        ("weight_ih_l0", [8, 4]),
        ("weight_hh_l0", [8]),
        ("bias_ih_l0", [8]),
    ]


def test_cli_explain_errors():
    assert "unknown cell 'attention'" in one_line_error(invoke("explain", "attention", "-d", "4", "-H", "8"))
    assert "applies only to GRU" in one_line_error(
        invoke("explain", "lstm", "-d", "4", "-H", "8", "--no-reset-after")
    )


# ONNX operator inputs (onnx.ai/onnx/operators: LSTM, GRU, RNN): W [num_directions, G·hidden,
# input_size], R [num_directions, G·hidden, hidden], B [num_directions, 2·G·hidden] (Wb and Rb),
# P [num_directions, 3·hidden] (P[iof]); gates stacked LSTM iofc, GRU zrh.
@pytest.mark.parametrize(
    "cell, gates, order",
    [("rnn", 1, "(h)"), ("gru", 3, "(z, r, h, ONNX's order)"), ("lstm", 4, "(i, o, f, c, ONNX's order)")],
)
@pytest.mark.parametrize("nd", [1, 2])
def test_explain_names_onnx_inputs(cell, gates, order, nd):
    d, h = 5, 7
    e = pc.explain(RecurrentSpec(cell, d, h, num_layers=2, bidirectional=nd == 2, convention="onnx"))
    rows = {r["tensor"]: r for r in e.table().records()}
    assert list(rows) == ["W", "R", "B"]
    assert rows["W"]["shape"] == (nd, gates * h, d) and rows["W"]["term"] == "x_t·W_ihᵀ"
    assert rows["R"]["shape"] == (nd, gates * h, h) and rows["R"]["term"] == "h_{t-1}·W_hhᵀ"
    assert rows["B"]["shape"] == (nd, 2 * gates * h)
    assert rows["B"]["term"] == "b_ih (added) and b_hh (added)"
    assert order in rows["W"]["why"] and rows["W"]["why"].startswith(f"{nd} direction")
    assert rows["B"]["why"].startswith(f"{nd} direction{'s' if nd > 1 else ''} x Wb and Rb concatenated")
    assert e.summary()[0].startswith("layer 0 shown (W, R, B, P hold both directions); 2 layers in all")


def test_explain_onnx_peepholes_follow_onnx_order():
    e = pc.explain(RecurrentSpec("lstm", 3, 4, peephole=True, convention="onnx"))
    p = e.table().records()[-1]
    assert p["tensor"] == "P" and p["shape"] == (1, 12)
    assert p["term"] == "p_i ⊙ c and p_o ⊙ c and p_f ⊙ c"  # P[iof]
    assert "(i, o, f)" in p["why"]


def test_cli_explain_onnx_convention():
    r = invoke("explain", "lstm", "-d", "4", "-H", "4", "--convention", "onnx")
    assert r.exit_code == 0, r.output
    assert "W " in r.stdout and "(1, 16, 4)" in r.stdout and "KeyError" not in r.output
