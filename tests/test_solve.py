"""Solving for hidden sizes; expectations checked against PyTorch's own counts."""

from __future__ import annotations

import pytest
from torch import nn

import paramcalc as pc
from paramcalc.errors import ParamcalcError


def torch_count(cls, *args, **kw) -> int:
    return sum(p.numel() for p in cls(*args, **kw, device="meta").parameters())


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1.5M", 1_500_000),
        ("250k", 250_000),
        ("250K", 250_000),
        ("2e6", 2_000_000),
        ("1,000,000", 1_000_000),
        ("819200", 819_200),
        ("1.25G", 1_250_000_000),
        ("3T", 3_000_000_000_000),
        (" 12 ", 12),
        (42, 42),
    ],
)
def test_parse_count(text, expected):
    assert pc.parse_count(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "1.5X", "-5", "0", "1.2345k", "1e-3", "M", "1..5M"])
def test_parse_count_rejects(text):
    with pytest.raises(ParamcalcError):
        pc.parse_count(text)


def test_budget_exact_boundary_seed():
    # The seed's LSTM(28, 256, 2) has exactly 819,200 parameters (PyTorch).
    assert torch_count(nn.LSTM, 28, 256, 2) == 819_200
    spec = pc.RecurrentSpec("lstm", 28, 1, num_layers=2)
    assert pc.solve_budget(spec, 819_200).rows[0].spec.hidden_size == 256
    assert pc.solve_budget(spec, 819_199).rows[0].spec.hidden_size == 255


@pytest.mark.parametrize(
    "cell,cls,kw,budget",
    [
        ("lstm", nn.LSTM, dict(num_layers=2), "1.5M"),
        ("gru", nn.GRU, dict(num_layers=3, bidirectional=True), "250k"),
        ("rnn", nn.RNN, dict(), "2e6"),
        ("lstm", nn.LSTM, dict(proj_size=16), "300k"),
    ],
)
def test_budget_largest_fit_against_torch(cell, cls, kw, budget):
    spec = pc.RecurrentSpec(cell, 40, 17, **kw)
    row = pc.solve_budget(spec, budget).rows[0]
    h = row.spec.hidden_size
    b = pc.parse_count(budget)
    assert torch_count(cls, 40, h, **kw) == row.params <= b
    assert torch_count(cls, 40, h + 1, **kw) > b


def test_budget_multiple_of():
    spec = pc.RecurrentSpec("lstm", 28, 1, num_layers=2)
    h = pc.solve_budget(spec, "1.5M", multiple_of=64).rows[0].spec.hidden_size
    assert h % 64 == 0
    assert torch_count(nn.LSTM, 28, h, 2) <= 1_500_000 < torch_count(nn.LSTM, 28, h + 64, 2)


def test_budget_too_small():
    with pytest.raises(ParamcalcError, match="too small"):
        pc.solve_budget(pc.RecurrentSpec("lstm", 1000, 1), 100)


def test_budget_several_cells():
    res = pc.solve_budget(pc.RecurrentSpec("lstm", 28, 1), "100k", cells=["rnn", "lstm", "gru"])
    assert [r.spec.cell for r in res.rows] == ["rnn", "lstm", "gru"]
    for r, cls in zip(res.rows, (nn.RNN, nn.LSTM, nn.GRU), strict=True):
        assert (
            torch_count(cls, 28, r.spec.hidden_size) <= 100_000 < torch_count(cls, 28, r.spec.hidden_size + 1)
        )


def test_match_closest_against_torch():
    ref = pc.RecurrentSpec("lstm", 28, 256, num_layers=2)
    res = pc.match(ref)
    assert res.target == 819_200
    assert [r.spec.cell for r in res.rows] == ["lstm", "rnn", "gru"]
    for row, cls in zip(res.rows[1:], (nn.RNN, nn.GRU), strict=True):
        h = row.spec.hidden_size
        mine = abs(torch_count(cls, 28, h, 2) - 819_200)
        assert mine <= abs(torch_count(cls, 28, h - 1, 2) - 819_200)
        assert mine <= abs(torch_count(cls, 28, h + 1, 2) - 819_200)
        assert row.relative == pytest.approx((torch_count(cls, 28, h, 2) - 819_200) / 819_200)


def test_match_drops_projection_for_other_cells():
    ref = pc.RecurrentSpec("lstm", 12, 16, 2, bidirectional=True, proj_size=6)
    res = pc.match(ref, ["gru"])
    assert res.rows[1].spec.proj_size == 0 and res.rows[1].spec.bidirectional


def test_result_to_frame():
    df = pc.match(pc.RecurrentSpec("lstm", 28, 256, num_layers=2)).to_frame()
    assert list(df["cell"]) == ["lstm", "rnn", "gru"]
