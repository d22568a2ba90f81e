"""Analytic counts against independent sources: hand arithmetic, PyTorch, published numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import paramcalc as pc
from paramcalc.errors import ParamcalcError


def torch_params(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(n, tuple(p.shape)) for n, p in module.named_parameters()]


# --- reference data -----------------------------------------------------------------------


def test_reference_cases_totals(reference_cases):
    assert len(reference_cases) >= 10
    for case in reference_cases:
        spec = pc.RecurrentSpec(**case["spec"])
        assert pc.count(spec).total == case["total"], case["id"]
        assert pc.total_params(spec) == case["total"], case["id"]


def test_reference_cases_agree_with_torch(reference_cases):
    for case in reference_cases:
        spec = pc.RecurrentSpec(**case["spec"])
        if spec.convention != "torch":
            continue
        kw = dict(case["spec"])
        cell = kw.pop("cell")
        cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN, "lstm_cell": nn.LSTMCell}[cell]
        m = cls(**kw, device="meta")
        assert sum(p.numel() for p in m.parameters()) == case["total"], case["id"]
        for name, shape in case.get("tensors", {}).items():
            assert tuple(getattr(m, name).shape) == tuple(shape)


def test_seed_example_with_linear_head(reference_cases):
    seed = next(c for c in reference_cases if c["id"] == "seed-mnist-rows-lstm")
    lstm = pc.count(pc.RecurrentSpec(**seed["spec"]))
    rows = {r.name: r for r in lstm.rows}
    assert rows["weight_ih_l0"].shape == (1024, 28)
    d_in, d_out = seed["head"]["linear"]
    head = d_in * d_out + d_out  # Linear(256, 10): weight + bias
    assert lstm.total + head == seed["head"]["total_with_head"] == 821_770


# --- formulas -------------------------------------------------------------------------------


def test_seed_formula_text():
    r = pc.count(pc.RecurrentSpec("lstm", 28, 256, num_layers=2))
    assert str(r.formulas[0]) == "4(Dh·d + Dh·Dh + 2Dh) = 4(256·28 + 256·256 + 2·256) = 292,864"
    assert r.formulas[1].params == 4 * (256 * 256 + 256 * 256 + 2 * 256)
    assert r.formulas[1].input_size == 256


def test_projection_formula_text():
    r = pc.count(pc.RecurrentSpec("lstm", 12, 16, 2, bidirectional=True, proj_size=6))
    f0 = r.formulas[0]
    assert f0.symbolic == "4(Dh·d + Dh·P + 2Dh) + P·Dh"
    assert f0.substituted == "4(16·12 + 16·6 + 2·16) + 6·16"
    assert f0.params == 4 * (16 * 12 + 16 * 6 + 2 * 16) + 6 * 16 == 1376
    # layer 1 takes both directions' projected outputs: 2 * 6 inputs
    assert r.formulas[2].symbolic.startswith("4(Dh·2P")
    assert r.formulas[2].input_size == 12
    assert [f.direction for f in r.formulas] == ["forward", "reverse"] * 2
    assert r.total == 5504


def test_formula_without_bias_and_single_gate():
    f = pc.count(pc.RecurrentSpec("rnn", 3, 5, bias=False)).formulas[0]
    assert f.symbolic == "Dh·d + Dh·Dh"
    assert f.params == 5 * 3 + 5 * 5


def test_formulas_sum_to_rows():
    r = pc.count(pc.RecurrentSpec("gru", 7, 9, num_layers=3, bidirectional=True))
    assert sum(f.params for f in r.formulas) == sum(row.numel for row in r.rows) == r.total


# --- tensor rows vs torch --------------------------------------------------------------------

CONFIGS = [
    ("rnn", nn.RNN, dict(input_size=3, hidden_size=5)),
    ("rnn_tanh", nn.RNN, dict(input_size=3, hidden_size=5, num_layers=3)),
    ("rnn_relu", nn.RNN, dict(input_size=4, hidden_size=6, nonlinearity="relu", bidirectional=True)),
    ("lstm", nn.LSTM, dict(input_size=28, hidden_size=256, num_layers=2)),
    ("lstm", nn.LSTM, dict(input_size=5, hidden_size=8, num_layers=3, bidirectional=True)),
    ("lstm", nn.LSTM, dict(input_size=5, hidden_size=8, num_layers=2, proj_size=3, bias=False)),
    ("lstm", nn.LSTM, dict(input_size=12, hidden_size=16, num_layers=2, bidirectional=True, proj_size=6)),
    ("gru", nn.GRU, dict(input_size=1, hidden_size=1)),
    ("gru", nn.GRU, dict(input_size=9, hidden_size=4, num_layers=4, bidirectional=True, bias=False)),
    ("rnn_cell", nn.RNNCell, dict(input_size=3, hidden_size=7)),
    ("lstm_cell", nn.LSTMCell, dict(input_size=3, hidden_size=7, bias=False)),
    ("gru_cell", nn.GRUCell, dict(input_size=3, hidden_size=7)),
]


@pytest.mark.parametrize("cell,cls,kw", CONFIGS)
def test_rows_match_torch_named_parameters(cell, cls, kw):
    module = cls(**kw, device="meta")
    kw = {k: v for k, v in kw.items() if k != "nonlinearity"}
    result = pc.count(pc.RecurrentSpec(cell, **kw))
    assert [(r.name, r.shape) for r in result.rows] == torch_params(module)
    assert [r.numel for r in result.rows] == [p.numel() for p in module.parameters()]
    assert result.total == sum(p.numel() for p in module.parameters())


def test_rows_carry_layer_and_direction():
    r = pc.count(pc.RecurrentSpec("gru", 2, 3, num_layers=2, bidirectional=True))
    by_name = {row.name: row for row in r.rows}
    assert by_name["bias_hh_l1_reverse"].layer == 1
    assert by_name["bias_hh_l1_reverse"].direction == "reverse"
    assert by_name["weight_ih_l0"].direction == "forward"
    assert by_name["weight_ih_l1"].shape == (9, 6)  # 3 gates * 3 hidden, 2 directions * 3 inputs


def test_projection_weight_hr_named_like_torch():
    names = [r.name for r in pc.count(pc.RecurrentSpec("lstm", 4, 8, 1, True, proj_size=2)).rows]
    assert "weight_hr_l0" in names and "weight_hr_l0_reverse" in names
    m = nn.LSTM(4, 8, 1, bidirectional=True, proj_size=2, device="meta")
    assert tuple(m.weight_hr_l0.shape) == (2, 8)


# --- keras ----------------------------------------------------------------------------------


def test_keras_rows_use_keras_names_and_shapes():
    r = pc.count(pc.RecurrentSpec("lstm", 64, 128, convention="keras"))
    assert [(x.name, x.shape) for x in r.rows] == [
        ("kernel", (64, 512)),
        ("recurrent_kernel", (128, 512)),
        ("bias", (512,)),
    ]
    g = pc.count(pc.RecurrentSpec("gru", 64, 256, convention="keras"))
    assert g.rows[-1].shape == (2, 768)  # reset_after=True: input and recurrent bias
    g2 = pc.count(pc.RecurrentSpec("gru", 64, 256, convention="keras", reset_after=False))
    assert g2.rows[-1].shape == (768,)


def test_keras_and_torch_differ_by_one_bias_vector_per_gate():
    t = pc.count(pc.RecurrentSpec("lstm", 64, 128)).total
    k = pc.count(pc.RecurrentSpec("lstm", 64, 128, convention="keras")).total
    assert t - k == 4 * 128


# --- scale ------------------------------------------------------------------------------------


def test_trillion_parameter_stack_is_exact():
    spec = pc.RecurrentSpec("lstm", 500_000, 500_000)
    # 4(Dh·d + Dh·Dh + 2Dh) = 4(2.5e11 + 2.5e11 + 1e6) = 2,000,004,000,000
    assert pc.count(spec).total == 2_000_004_000_000
    assert isinstance(pc.total_params(spec), int)


def test_total_params_fast_path_equals_rows():
    for spec in [
        pc.RecurrentSpec("lstm", 7, 11, num_layers=5, bidirectional=True, proj_size=3),
        pc.RecurrentSpec("gru", 2, 3, num_layers=4, convention="keras", reset_after=False),
    ]:
        assert pc.total_params(spec) == sum(r.numel for r in pc.count(spec).rows)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(cell="lstm", input_size=0, hidden_size=4), "input_size must be a positive integer"),
        (dict(cell="lstm", input_size=4, hidden_size=-3), "hidden_size must be a positive integer"),
        (dict(cell="lstm", input_size=4.5, hidden_size=4), "input_size must be an integer"),
        (dict(cell="lstm", input_size=4, hidden_size=2**40), "hidden_size must be at most"),
        (dict(cell="lstm", input_size=4, hidden_size=4, num_layers=0), "num_layers"),
        (dict(cell="lstm", input_size=4, hidden_size=4, num_layers=True), "num_layers must be an integer"),
        (dict(cell="transformer", input_size=4, hidden_size=4), "unknown cell 'transformer'"),
        (dict(cell="gru", input_size=4, hidden_size=8, proj_size=2), "proj_size is only supported for LSTM"),
        (dict(cell="lstm", input_size=4, hidden_size=8, proj_size=8), "proj_size has to be smaller"),
        (dict(cell="lstm", input_size=4, hidden_size=8, proj_size=-1), "proj_size must be"),
        (dict(cell="lstm_cell", input_size=4, hidden_size=8, num_layers=2), "single-step cell"),
        (dict(cell="gru_cell", input_size=4, hidden_size=8, bidirectional=True), "single-step cell"),
        (dict(cell="lstm", input_size=4, hidden_size=8, convention="tf"), "convention must be one of"),
        (dict(cell="lstm", input_size=4, hidden_size=8, proj_size=2, convention="keras"), "no Keras"),
        (dict(cell="gru", input_size=4, hidden_size=8, reset_after=False), "only under the keras"),
        (dict(cell="lstm", input_size=4, hidden_size=8, reset_after=False, convention="keras"), "GRU"),
    ],
)
def test_validation_names_field_and_rule(kwargs, needle):
    with pytest.raises(ParamcalcError) as info:
        pc.RecurrentSpec(**kwargs)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_proj_rule_matches_torch():
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(4, 8, proj_size=8)
    with pytest.raises(ValueError):
        nn.GRU(4, 8, proj_size=2)


def test_spec_is_frozen_and_normalised():
    s = pc.RecurrentSpec("RNN_TANH", 3, 4)
    assert s.cell == "rnn"
    with pytest.raises(AttributeError):
        s.hidden_size = 5  # type: ignore[misc]
    assert s == pc.RecurrentSpec("rnn", 3, 4)


def test_to_frame_has_rows():
    df = pc.count(pc.RecurrentSpec("lstm", 28, 256, num_layers=2)).to_frame()
    assert list(df["name"])[:2] == ["weight_ih_l0", "weight_hh_l0"]
    assert int(df["numel"].sum()) == 819_200
    layers = pc.count(pc.RecurrentSpec("lstm", 28, 256, num_layers=2)).to_frame("layer")
    assert list(layers["params"]) == [292_864, 526_336]


def test_torch_is_the_real_thing():
    # guard: the tests above compare with a real torch, not a stub
    assert hasattr(torch, "__version__") and nn.LSTM.__module__.startswith("torch.")
