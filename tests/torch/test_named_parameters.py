"""The analytic rows against torch's own modules: ``named_parameters()`` is the ground truth.

The torch modules are constructed here from the spec's fields, independently of paramcalc's own
bridge (``paramcalc.bridge.build``). Every module is built on ``meta``: no memory, so large sizes
cost nothing.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

import paramcalc as pc
from paramcalc.bridge.statedict import infer_components

TORCH_NN = ("rnn", "rnn_relu", "lstm", "gru", "rnn_cell", "rnn_relu_cell", "lstm_cell", "gru_cell")


def torch_module(spec: pc.RecurrentSpec) -> nn.Module:
    """The torch.nn module for ``spec``, written out here (not via paramcalc.bridge)."""
    kw: dict = {"bias": spec.bias, "device": "meta"}
    if spec.cell in ("rnn_cell", "rnn_relu_cell"):
        act = "relu" if spec.cell == "rnn_relu_cell" else "tanh"
        return nn.RNNCell(spec.input_size, spec.hidden_size, nonlinearity=act, **kw)
    if spec.cell == "lstm_cell":
        return nn.LSTMCell(spec.input_size, spec.hidden_size, **kw)
    if spec.cell == "gru_cell":
        return nn.GRUCell(spec.input_size, spec.hidden_size, **kw)
    kw.update(num_layers=spec.num_layers, bidirectional=spec.bidirectional)
    if spec.cell == "lstm":
        return nn.LSTM(spec.input_size, spec.hidden_size, proj_size=spec.proj_size, **kw)
    if spec.cell == "gru":
        return nn.GRU(spec.input_size, spec.hidden_size, **kw)
    act = "relu" if spec.cell == "rnn_relu" else "tanh"
    return nn.RNN(spec.input_size, spec.hidden_size, nonlinearity=act, **kw)


def named(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(n, tuple(p.shape)) for n, p in module.named_parameters()]


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_torch_is_the_real_thing():
    # guard: the tests here compare with a real torch, not a stub
    assert hasattr(torch, "__version__") and nn.LSTM.__module__.startswith("torch.")


def test_reference_cases_agree_with_torch(reference_cases):
    for case in reference_cases:
        spec = pc.RecurrentSpec(**case["spec"])
        if spec.convention != "torch":
            continue
        m = torch_module(spec)
        assert n_params(m) == case["total"], case["id"]
        for name, shape in case.get("tensors", {}).items():
            assert tuple(getattr(m, name).shape) == tuple(shape)


CONFIGS = [
    pc.RecurrentSpec("rnn", 3, 5),
    pc.RecurrentSpec("rnn_tanh", 3, 5, num_layers=3),
    pc.RecurrentSpec("rnn_relu", 4, 6, bidirectional=True),
    pc.RecurrentSpec("lstm", 28, 256, num_layers=2),
    pc.RecurrentSpec("lstm", 5, 8, num_layers=3, bidirectional=True),
    pc.RecurrentSpec("lstm", 5, 8, num_layers=2, proj_size=3, bias=False),
    pc.RecurrentSpec("lstm", 12, 16, num_layers=2, bidirectional=True, proj_size=6),
    pc.RecurrentSpec("gru", 1, 1),
    pc.RecurrentSpec("gru", 9, 4, num_layers=4, bidirectional=True, bias=False),
    pc.RecurrentSpec("rnn_cell", 3, 7),
    pc.RecurrentSpec("rnn_relu_cell", 3, 7),
    pc.RecurrentSpec("lstm_cell", 3, 7, bias=False),
    pc.RecurrentSpec("gru_cell", 3, 7),
]


@pytest.mark.parametrize("spec", CONFIGS, ids=[s.describe() for s in CONFIGS])
def test_rows_match_torch_named_parameters(spec):
    module = torch_module(spec)
    result = pc.count(spec)
    assert [(r.name, r.shape) for r in result.rows] == named(module)
    assert [r.numel for r in result.rows] == [p.numel() for p in module.parameters()]
    assert result.total == n_params(module)


def test_proj_rule_matches_torch():
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        nn.LSTM(4, 8, proj_size=8)
    with pytest.raises(pc.ParamcalcError, match="proj_size has to be smaller than hidden_size"):
        pc.RecurrentSpec("lstm", 4, 8, proj_size=8)
    with pytest.raises(ValueError):
        nn.GRU(4, 8, proj_size=2)


def test_gemm_params_are_the_weights_torch_multiplies():
    spec = pc.RecurrentSpec("lstm", 5, 8, num_layers=2, proj_size=3)
    weights = sum(p.numel() for n, p in torch_module(spec).named_parameters() if n.startswith("weight"))
    assert sum(r.numel for r in pc.count(spec).rows if r.gemm) == weights


def test_spec_from_module_reads_constructor_arguments():
    assert pc.spec_from_module(nn.LSTM(4, 8, 2, bidirectional=True, proj_size=3)) == pc.RecurrentSpec(
        "lstm", 4, 8, num_layers=2, bidirectional=True, proj_size=3
    )
    assert pc.spec_from_module(nn.RNN(4, 8, nonlinearity="relu")).cell == "rnn_relu"
    assert pc.spec_from_module(nn.RNNCell(4, 8, nonlinearity="relu")).cell == "rnn_relu_cell"
    assert pc.spec_from_module(nn.GRUCell(4, 8, bias=False)) == pc.RecurrentSpec("gru_cell", 4, 8, bias=False)
    with pytest.raises(pc.ParamcalcError, match="Linear is not a recurrent module paramcalc knows"):
        pc.spec_from_module(nn.Linear(4, 8))


def test_analytic_functions_take_modules():
    m = nn.GRU(5, 7, num_layers=2, device="meta")
    assert pc.count(m).total == n_params(m)
    weights = sum(p.numel() for n, p in m.named_parameters() if n.startswith("weight"))
    assert pc.cost(m, pc.Workload(batch=2, seq_len=3)).macs == weights * 6
    assert pc.explain(m).spec == pc.RecurrentSpec("gru", 5, 7, num_layers=2)
    r = pc.compare(m, ["gru", "lstm"])
    assert r.rows[0].params == n_params(m)


# --- compare and solve against the modules' own sizes ------------------------------------------


def test_compare_rows_match_real_modules():
    spec = pc.RecurrentSpec("lstm", 28, 256, num_layers=2)
    r = pc.compare(spec, equal="params")
    for row in r.rows:
        m = torch_module(row.spec)
        assert row.params == n_params(m)
        assert row.cost.macs_per_step == sum(
            p.numel() for n, p in m.named_parameters() if n.startswith("weight")
        )


@pytest.mark.parametrize(
    "cell, kw, budget",
    [
        ("lstm", dict(num_layers=2), "1.5M"),
        ("gru", dict(num_layers=3, bidirectional=True), "250k"),
        ("rnn", dict(), "2e6"),
        ("lstm", dict(proj_size=16), "300k"),
    ],
)
def test_budget_largest_fit_against_torch(cell, kw, budget):
    spec = pc.RecurrentSpec(cell, 40, 17, **kw)
    row = pc.solve_budget(spec, budget).rows[0]
    h = row.spec.hidden_size
    b = pc.parse_count(budget)
    assert n_params(torch_module(spec.replace(hidden_size=h))) == row.params <= b
    assert n_params(torch_module(spec.replace(hidden_size=h + 1))) > b


def test_match_closest_against_torch():
    ref = pc.RecurrentSpec("lstm", 28, 256, num_layers=2)
    res = pc.match_hidden(ref)
    assert res.target == n_params(torch_module(ref)) == 819_200
    for row in res.rows[1:]:
        h = row.spec.hidden_size
        here = abs(n_params(torch_module(row.spec)) - 819_200)
        for other in (h - 1, h + 1):
            assert here <= abs(n_params(torch_module(row.spec.replace(hidden_size=other))) - 819_200)


# --- property tests -------------------------------------------------------------------------------

SIZES = st.one_of(st.integers(1, 8), st.integers(1, 4096), st.integers(1, 2**20))


@st.composite
def specs(draw: st.DrawFn) -> pc.RecurrentSpec:
    cell = draw(st.sampled_from(TORCH_NN))
    ct = pc.CELLS[cell]
    hidden = draw(SIZES)
    proj = 0
    if ct.projection and hidden > 1 and draw(st.booleans()):
        proj = draw(st.integers(1, hidden - 1))
    return pc.RecurrentSpec(
        cell,
        draw(SIZES),
        hidden,
        num_layers=1 if ct.single_step else draw(st.integers(1, 4)),
        bidirectional=False if ct.single_step else draw(st.booleans()),
        bias=draw(st.booleans()),
        proj_size=proj,
    )


def rows_equal_named_parameters(spec: pc.RecurrentSpec) -> None:
    m = torch_module(spec)
    expected = [(n, tuple(p.shape), p.numel()) for n, p in m.named_parameters()]
    assert [(r.name, r.shape, r.numel) for r in pc.count(spec).rows] == expected
    assert pc.total_params(spec) == sum(n for _, _, n in expected)
    event(f"cell: {spec.cell}")


def read_back(spec: pc.RecurrentSpec) -> None:
    shapes = {f"rnn.{n}": tuple(p.shape) for n, p in torch_module(spec).named_parameters()}
    (inferred,) = infer_components(shapes)
    # From shapes alone an RNN with ReLU reads as the tanh RNN: the same tensors.
    relu = {"rnn_relu": "rnn", "rnn_relu_cell": "rnn_cell"}
    expected = spec.replace(cell=relu[spec.cell]) if spec.cell in relu else spec
    assert inferred.component is not None and inferred.component.spec == expected
    event(f"read back: {spec.cell}")


FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
BIG = settings(max_examples=2000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(specs())
def test_analytic_rows_equal_named_parameters(spec: pc.RecurrentSpec) -> None:
    rows_equal_named_parameters(spec)


@pytest.mark.slow
@BIG
@given(specs())
def test_analytic_rows_equal_named_parameters_2000_specs(spec: pc.RecurrentSpec) -> None:
    """2,000 random specs (run with --hypothesis-show-statistics for the cells drawn)."""
    rows_equal_named_parameters(spec)


@FAST
@given(specs())
def test_state_dict_shapes_read_back_as_the_spec(spec: pc.RecurrentSpec) -> None:
    read_back(spec)


@pytest.mark.slow
@settings(max_examples=500, deadline=None, database=None)
@given(specs())
def test_state_dict_shapes_read_back_as_the_spec_500_specs(spec: pc.RecurrentSpec) -> None:
    read_back(spec)
