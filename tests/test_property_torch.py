"""Property-based cross-check: analytic rows == torch's named_parameters() for random specs.

Thousands of random specs across every cell, 1 to 4 layers, both directions, with and without
bias and projection, sizes from 1 upward, each built as the real torch.nn module on ``meta``
(no memory, so large sizes cost nothing). The torch modules are constructed here from the
spec's fields, independently of paramcalc.torch_bridge.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import paramcalc as pc
from paramcalc.count import count, total_params
from paramcalc.torch_bridge import infer_components

CHECKED = {"specs": 0, "tensors": 0, "read_back": 0}

SIZES = st.one_of(st.integers(1, 8), st.integers(1, 4096), st.integers(1, 2**20))


@st.composite
def specs(draw: st.DrawFn) -> pc.RecurrentSpec:
    cell = draw(st.sampled_from(sorted(pc.CELLS)))
    single = pc.CELLS[cell].single_step
    hidden = draw(SIZES)
    proj = 0
    if pc.CELLS[cell].supports_proj and hidden > 1 and draw(st.booleans()):
        proj = draw(st.integers(1, hidden - 1))
    return pc.RecurrentSpec(
        cell,
        draw(SIZES),
        hidden,
        num_layers=1 if single else draw(st.integers(1, 4)),
        bidirectional=False if single else draw(st.booleans()),
        bias=draw(st.booleans()),
        proj_size=proj,
    )


def torch_module(spec: pc.RecurrentSpec) -> nn.Module:
    """The torch.nn module for ``spec``, written out here (not via paramcalc.torch_bridge)."""
    kw: dict = {"bias": spec.bias, "device": "meta"}
    if spec.cell == "rnn_cell":
        return nn.RNNCell(spec.input_size, spec.hidden_size, **kw)
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


SETTINGS = settings(
    max_examples=2000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@SETTINGS
@given(specs())
def test_analytic_rows_equal_named_parameters(spec: pc.RecurrentSpec) -> None:
    m = torch_module(spec)
    named = [(n, tuple(p.shape), p.numel()) for n, p in m.named_parameters()]
    rows = [(r.name, r.shape, r.numel) for r in count(spec).rows]
    assert rows == named
    assert total_params(spec) == sum(n for _, _, n in named)
    CHECKED["specs"] += 1
    CHECKED["tensors"] += len(named)


@settings(max_examples=500, deadline=None, database=None)
@given(specs())
def test_state_dict_shapes_read_back_as_the_spec(spec: pc.RecurrentSpec) -> None:
    shapes = {f"rnn.{n}": tuple(p.shape) for n, p in torch_module(spec).named_parameters()}
    (inferred,) = infer_components(shapes)
    # From shapes alone an RNN with ReLU reads as the tanh RNN: the same tensors.
    expected = spec.replace(cell="rnn") if spec.cell == "rnn_relu" else spec
    assert inferred.component is not None and inferred.component.spec == expected
    CHECKED["read_back"] += 1


def test_zz_report_how_many_specs_were_checked(capsys: pytest.CaptureFixture[str]) -> None:
    if CHECKED["specs"] == 0:
        pytest.skip("the property tests did not run in this session")
    with capsys.disabled():
        print(
            f"\nproperty cross-check: {CHECKED['specs']} random specs ({CHECKED['tensors']} tensors) "
            f"matched torch's named_parameters() on meta; {CHECKED['read_back']} state dicts read back"
        )
    assert CHECKED["specs"] >= 1000
