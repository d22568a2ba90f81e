"""Analytic counts against independent sources: hand arithmetic and published numbers.

The comparisons with torch's ``named_parameters()`` live in tests/torch/test_named_parameters.py.
"""

from __future__ import annotations

import pytest

import paramcalc as pc
from paramcalc import RecurrentSpec
from tests.helpers import invoke

S = RecurrentSpec


# --- reference data -----------------------------------------------------------------------


def test_reference_cases_totals(reference_cases):
    assert len(reference_cases) >= 10
    for case in reference_cases:
        spec = S(**case["spec"])
        assert pc.count(spec).total == case["total"], case["id"]
        assert pc.total_params(spec) == case["total"], case["id"]
        rows = {r.name: r.shape for r in pc.count(spec).rows}
        for name, shape in case.get("tensors", {}).items():
            assert rows[name] == tuple(shape), (case["id"], name)


def test_seed_example_with_linear_head(reference_cases):
    seed = next(c for c in reference_cases if c["id"] == "seed-mnist-rows-lstm")
    lstm = pc.count(S(**seed["spec"]))
    rows = {r.name: r for r in lstm.rows}
    assert rows["weight_ih_l0"].shape == (1024, 28)
    d_in, d_out = seed["head"]["linear"]
    head = d_in * d_out + d_out  # Linear(256, 10): weight + bias
    assert lstm.total + head == seed["head"]["total_with_head"] == 821_770


# --- formulas -------------------------------------------------------------------------------


def test_seed_formula_text():
    r = pc.count(S("lstm", 28, 256, num_layers=2))
    assert str(r.formulas[0]) == "4(Dh·d + Dh·Dh + 2Dh) = 4(256·28 + 256·256 + 2·256) = 292,864"
    assert r.formulas[1].params == 4 * (256 * 256 + 256 * 256 + 2 * 256)
    assert r.formulas[1].input_size == 256


def test_projection_formula_text():
    r = pc.count(S("lstm", 12, 16, 2, bidirectional=True, proj_size=6))
    f0 = r.formulas[0]
    assert f0.symbolic == "4(Dh·d + Dh·P + 2Dh) + P·Dh"
    assert f0.substituted == "4(16·12 + 16·6 + 2·16) + 6·16"
    assert f0.params == 4 * (16 * 12 + 16 * 6 + 2 * 16) + 6 * 16 == 1376
    # layer 1 takes both directions' projected outputs: 2 * 6 inputs
    assert r.formulas[2].symbolic == "4(Dh·2P + Dh·P + 2Dh) + P·Dh"
    assert r.formulas[2].input_size == 12
    assert [f.direction for f in r.formulas] == ["forward", "reverse"] * 2
    assert r.total == 5504


def test_formula_without_bias_and_single_gate():
    f = pc.count(S("rnn", 3, 5, bias=False)).formulas[0]
    assert f.symbolic == "Dh·d + Dh·Dh"
    assert f.params == 5 * 3 + 5 * 5


def test_formulas_sum_to_rows():
    r = pc.count(S("gru", 7, 9, num_layers=3, bidirectional=True))
    assert sum(f.params for f in r.formulas) == sum(row.numel for row in r.rows) == r.total


# --- the newer cells and layout knobs, by hand ------------------------------------------------

D, H = 5, 7


@pytest.mark.parametrize(
    "spec, by_hand, symbolic",
    [
        # CIFG (Greff et al.): 3 blocks (i, g, o), one bias, peepholes on i and o
        (S("cifg", D, H), 3 * (H * D + H * H + H) + 2 * H, "3(Dh·d + Dh·Dh + Dh) + 2Dh"),
        (S("cifg", D, H, peephole=False), 3 * (H * D + H * H + H), "3(Dh·d + Dh·Dh + Dh)"),
        # MGU (Zhou et al.): 2 blocks (f, n), one bias
        (S("mgu", D, H), 2 * (H * D + H * H + H), "2(Dh·d + Dh·Dh + Dh)"),
        # IndRNN (Li et al.): W (Dh, d), u (Dh), b (Dh)
        (S("indrnn", D, H), H * D + H + H, "Dh·d + Dh + Dh"),
        (S("indrnn", D, H, bias=False), H * D + H, "Dh·d + Dh"),
        # minGRU / minLSTM (Feng et al.): nn.Linear(d, Dh) per block, no recurrent weight
        (S("mingru", D, H), 2 * (H * D + H), "2(Dh·d + Dh)"),
        (S("minlstm", D, H), 3 * (H * D + H), "3(Dh·d + Dh)"),
        # LSTM with peepholes (Gers & Schmidhuber): + 3 diagonal vectors
        (S("lstm", D, H, peephole=True), 4 * (H * D + H * H + 2 * H) + 3 * H, "4(Dh·d + Dh·Dh + 2Dh) + 3Dh"),
        # TensorFlow's LSTMP (num_proj): one bias vector and a projection
        (
            S("lstm", D, H, bias_vectors=1, proj_size=3),
            4 * (H * D + H * 3 + H) + 3 * H,
            "4(Dh·d + Dh·P + Dh) + P·Dh",
        ),
        (S("rnn_relu_cell", D, H), H * D + H * H + 2 * H, "Dh·d + Dh·Dh + 2Dh"),
        (S("gru", D, H, reset_after=False), 3 * (H * D + H * H + 2 * H), "3(Dh·d + Dh·Dh + 2Dh)"),
    ],
    ids=lambda v: v.describe() if isinstance(v, RecurrentSpec) else None,
)
def test_newer_cells_and_knobs_by_hand(spec, by_hand, symbolic):
    r = pc.count(spec)
    assert r.total == by_hand == pc.total_params(spec)
    assert r.formulas[0].symbolic == symbolic
    assert sum(row.numel for row in r.rows) == by_hand


def test_new_cells_tensor_names_and_shapes():
    assert [(r.name, r.shape) for r in pc.count(S("cifg", D, H)).rows] == [
        ("weight_ih_l0", (3 * H, D)),
        ("weight_hh_l0", (3 * H, H)),
        ("bias_ih_l0", (3 * H,)),
        ("weight_ci_l0", (H,)),
        ("weight_co_l0", (H,)),
    ]
    assert [(r.name, r.shape) for r in pc.count(S("indrnn", D, H)).rows] == [
        ("weight_ih_l0", (H, D)),
        ("weight_hh_l0", (H,)),  # u: one recurrent weight per unit
        ("bias_ih_l0", (H,)),
    ]
    assert [r.name for r in pc.count(S("mingru", D, H, num_layers=2)).rows] == [
        "weight_ih_l0",
        "bias_ih_l0",
        "weight_ih_l1",
        "bias_ih_l1",
    ]
    peep = [r.name for r in pc.count(S("lstm", D, H, peephole=True)).rows]
    assert peep[-3:] == ["weight_ci_l0", "weight_cf_l0", "weight_co_l0"]


def test_gemm_flag_marks_the_matrix_operands():
    rows = {r.name: r.gemm for r in pc.count(S("lstm", D, H, proj_size=3, peephole=True)).rows}
    assert rows == {
        "weight_ih_l0": True,
        "weight_hh_l0": True,
        "bias_ih_l0": False,
        "bias_hh_l0": False,
        "weight_ci_l0": False,
        "weight_cf_l0": False,
        "weight_co_l0": False,
        "weight_hr_l0": True,
    }
    assert not {r.name: r.gemm for r in pc.count(S("indrnn", D, H)).rows}["weight_hh_l0"]  # u ⊙ h


@pytest.mark.parametrize("merge", ["sum", "ave", "mul"])
def test_merged_directions_hand_dh_to_the_next_layer(merge):
    spec = S("lstm", D, H, num_layers=2, bidirectional=True, merge_mode=merge)
    # layer 0 takes d = 5, layer 1 takes the merged Dh = 7 (not 2Dh = 14), per direction
    by_hand = 2 * 4 * (H * D + H * H + 2 * H) + 2 * 4 * (H * H + H * H + 2 * H)
    r = pc.count(spec)
    assert r.total == by_hand
    assert r.formulas[2].symbolic == "4(Dh·Dh + Dh·Dh + 2Dh)"
    concat = pc.count(spec.replace(merge_mode="concat"))
    assert concat.total - r.total == 2 * 4 * H * H  # the wider input of layer 1, both directions


def test_bias_vectors_knob():
    two, one, none = (pc.total_params(S("gru", D, H, bias_vectors=b)) for b in (2, 1, 0))
    assert two - one == one - none == 3 * H


def test_rows_carry_layer_and_direction():
    r = pc.count(S("gru", 2, 3, num_layers=2, bidirectional=True))
    by_name = {row.name: row for row in r.rows}
    assert by_name["bias_hh_l1_reverse"].layer == 1
    assert by_name["bias_hh_l1_reverse"].direction == "reverse"
    assert by_name["weight_ih_l0"].direction == "forward"
    assert by_name["weight_ih_l1"].shape == (9, 6)  # 3 gates * 3 hidden, 2 directions * 3 inputs


def test_row_formulas():
    rows = {r.name: r.formula for r in pc.count(S("lstm", 28, 256)).rows}
    assert rows["weight_ih_l0"] == "4Dh·d = 4·256·28"
    assert rows["bias_hh_l0"] == "4Dh = 4·256"


# --- keras ----------------------------------------------------------------------------------


def test_keras_rows_use_keras_names_and_shapes():
    r = pc.count(S("lstm", 64, 128, convention="keras"))
    assert [(x.name, x.shape) for x in r.rows] == [
        ("kernel", (64, 512)),
        ("recurrent_kernel", (128, 512)),
        ("bias", (512,)),
    ]
    g = pc.count(S("gru", 64, 256, convention="keras"))
    assert g.rows[-1].shape == (2, 768)  # reset_after=True: input and recurrent bias
    g2 = pc.count(S("gru", 64, 256, convention="keras", reset_after=False))
    assert g2.rows[-1].shape == (768,)
    cifg = pc.count(S("cifg", 4, 8, convention="keras"))
    assert [x.name for x in cifg.rows] == ["kernel", "recurrent_kernel", "bias", "w_i_diag", "w_o_diag"]


def test_keras_and_torch_differ_by_one_bias_vector_per_gate():
    t = pc.count(S("lstm", 64, 128)).total
    k = pc.count(S("lstm", 64, 128, convention="keras")).total
    assert t - k == 4 * 128


def test_convention_notes():
    assert pc.count(S("lstm", 4, 8)).convention_note == (
        "PyTorch/cuDNN convention: two bias vectors (b_ih, b_hh) per gate block"
    )
    assert pc.count(S("lstm", 4, 8, convention="keras")).convention_note == (
        "Keras convention: one bias vector per gate block"
    )
    assert "Greff et al. 2017" in pc.count(S("cifg", 4, 8)).convention_note
    assert "parallel scan" in pc.count(S("mingru", 4, 8)).convention_note
    merged = pc.count(S("gru", 4, 8, bidirectional=True, merge_mode="sum")).convention_note
    assert "directions merged by sum (the next layer's input is Dh, not 2Dh)" in merged


# --- scale ------------------------------------------------------------------------------------


def test_trillion_parameter_stack_is_exact():
    spec = S("lstm", 500_000, 500_000)
    # 4(Dh·d + Dh·Dh + 2Dh) = 4(2.5e11 + 2.5e11 + 1e6) = 2,000,004,000,000
    assert pc.count(spec).total == 2_000_004_000_000
    assert isinstance(pc.total_params(spec), int)


def test_largest_spec_beyond_int64_stays_exact():
    h = 2**31 - 1
    spec = S("lstm", h, h, num_layers=10_000)
    per_layer = 4 * (h * h + h * h + 2 * h)
    assert pc.total_params(spec) == 10_000 * per_layer > 2**63


def test_total_params_fast_path_equals_rows():
    for spec in [
        S("lstm", 7, 11, num_layers=5, bidirectional=True, proj_size=3),
        S("gru", 2, 3, num_layers=4, convention="keras", reset_after=False),
        S("cifg", 2, 3, num_layers=3, bidirectional=True, merge_mode="ave"),
    ]:
        assert pc.total_params(spec) == sum(r.numel for r in pc.count(spec).rows)


# --- the result protocol ------------------------------------------------------------------------


def test_views_and_tables():
    r = pc.count(S("lstm", 28, 256, num_layers=2))
    assert r.VIEWS == ("tensor", "layer", "total")
    tensors = r.table()
    assert tensors.names[:3] == ["name", "shape", "numel"]
    assert tensors.column("name")[:2] == ["weight_ih_l0", "weight_hh_l0"]
    assert sum(tensors.column("numel")) == 819_200
    assert r.table("layer").column("params") == [292_864, 526_336]
    assert r.table("total").records() == [
        {"spec": "LSTM(28, 256, num_layers=2)", "tensors": 8, "params": 819_200}
    ]
    with pytest.raises(pc.ParamcalcError, match="CountResult has no view 'gemm'"):
        r.table("gemm")


def test_to_frame_has_rows():
    r = pc.count(S("lstm", 28, 256, num_layers=2))
    df = r.to_frame()
    assert list(df["name"])[:2] == ["weight_ih_l0", "weight_hh_l0"]
    assert int(df["numel"].sum()) == 819_200
    assert str(df["numel"].dtype) == "Int64"
    assert list(r.to_frame("layer")["params"]) == [292_864, 526_336]


def test_meta_summary_and_repr():
    r = pc.count(S("lstm", 28, 256, num_layers=2))
    assert r.meta()["total"] == 819_200 and r.meta()["spec"]["cell"] == "lstm"
    assert r.summary()[-1] == "total: 819,200 parameters"
    assert r.summary("total") == ["total: 819,200 parameters"]
    assert repr(r) == "<CountResult: LSTM(28, 256, num_layers=2): 819,200 parameters>"


def test_count_rejects_what_is_not_a_spec():
    with pytest.raises(pc.ParamcalcError, match=r"count\(spec\) takes a RecurrentSpec .* missing 2 required"):
        pc.count("lstm")
    with pytest.raises(pc.ParamcalcError, match=r"count needs a RecurrentSpec .* got int"):
        pc.count(28)


def test_indrnn_takes_two_bias_vectors():
    # IndRNN(5, 7) with b_ih and b_hh: W 7·5 + u 7 + 7 + 7 = 56 (the paper's one bias: 49)
    spec = S("indrnn", 5, 7, bias_vectors=2)
    res = pc.count(spec)
    assert [(r.name, r.shape) for r in res.rows] == [
        ("weight_ih_l0", (7, 5)),
        ("weight_hh_l0", (7,)),
        ("bias_ih_l0", (7,)),
        ("bias_hh_l0", (7,)),
    ]
    assert res.total == 56 and pc.count(S("indrnn", 5, 7)).total == 49
    assert spec.describe() == "IndRNN(5, 7, bias_vectors=2)"
    # per token: 2·(7·5) for the input GEMM, 2·7 bias additions, 7·(add + mul + ReLU) = 105
    assert pc.cost(spec).forward_flops == 2 * 35 + 2 * 7 + 3 * 7
    r = invoke("count", "indrnn", "-d", "5", "-H", "7", "--bias-vectors", "2", "--by", "total")
    assert r.exit_code == 0 and "total: 56 parameters" in r.stdout
