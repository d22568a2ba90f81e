"""Solving for hidden sizes, against the quadratic written out in each test.

For a unidirectional torch stack of ``L`` layers, ``G`` gate blocks and two bias vectors,
``params(h) = G(h·d + h² + 2h) + (L-1)·G(2h² + 2h) = a·h² + b·h`` with ``a = G(2L - 1)`` and
``b = G(d + 2L)``; the largest ``h`` under a budget is the floor of the positive root, found here
with ``math.isqrt`` (the package bisects over its own counts instead). The same answers against
torch's own module sizes are in tests/torch/test_solve_torch.py.
"""

from __future__ import annotations

import math
import warnings

import pytest

import paramcalc as pc
from paramcalc import ParamcalcError, RecurrentSpec

GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def quadratic(cell: str, d: int, layers: int) -> tuple[int, int]:
    """``(a, b)`` of ``params(h) = a·h² + b·h`` (torch layout, unidirectional, no projection)."""
    g = GATES[cell]
    return g * (2 * layers - 1), g * (d + 2 * layers)


def floor_root(a: int, b: int, target: int) -> int:
    """The largest integer ``h`` with ``a·h² + b·h <= target``."""
    h = (math.isqrt(b * b + 4 * a * target) - b) // (2 * a)
    while a * (h + 1) ** 2 + b * (h + 1) <= target:  # isqrt floors: at most one step either way
        h += 1
    while a * h * h + b * h > target:
        h -= 1
    return h


def closest(a: int, b: int, target: int) -> int:
    """The ``h`` whose ``a·h² + b·h`` is closest to ``target`` (ties: the smaller)."""
    lo = floor_root(a, b, target)
    hi = lo + 1
    below, above = target - (a * lo * lo + b * lo), (a * hi * hi + b * hi) - target
    return hi if above < below else lo


def test_the_quadratic_is_the_count():
    for cell in GATES:
        for layers in (1, 2, 3):
            a, b = quadratic(cell, 28, layers)
            for h in (1, 17, 256):
                assert pc.total_params(RecurrentSpec(cell, 28, h, num_layers=layers)) == a * h * h + b * h


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1.5M", 1_500_000),
        ("250k", 250_000),
        ("250K", 250_000),
        ("2e6", 2_000_000),
        ("1,000,000", 1_000_000),
        ("1_000", 1_000),
        ("819200", 819_200),
        ("819.2k", 819_200),
        ("1.25G", 1_250_000_000),
        ("2B", 2_000_000_000),
        ("3T", 3_000_000_000_000),
        (" 12 ", 12),
        ("1e30", 10**30),
        (42, 42),
    ],
)
def test_parse_count(text, expected):
    assert pc.parse_count(text) == expected


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "cannot parse budget ''"),
        ("abc", "cannot parse budget 'abc'"),
        ("1.5X", "cannot parse"),
        ("-5", "cannot parse"),
        ("0", "must be positive"),
        ("1.2345k", "whole number"),
        ("1e-3", "whole number"),
        ("M", "cannot parse"),
        ("1..5M", "cannot parse"),
        ("1e31", "out of range: at most 1e30"),
        ("1e1000000", "out of range"),  # refused before anything is computed
        ("9" * 5000, "5,000 characters is not a count"),
        (10**31, "at most 1e30, got a 32-digit number"),
        (True, "must be a number or a text"),
        (2.5, "must be a number or a text"),
    ],
)
def test_parse_count_rejects(text, needle):
    with pytest.raises(ParamcalcError) as info:
        pc.parse_count(text)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_misplaced_thousands_separator_is_refused():
    with pytest.raises(ParamcalcError):
        pc.parse_count("1,5M")


# --- budgets ------------------------------------------------------------------------------------


def test_budget_exact_boundary_seed():
    # The seed's LSTM(28, 256, 2) has exactly 819,200 parameters: 12·256² + 4·32·256.
    a, b = quadratic("lstm", 28, 2)
    assert a * 256**2 + b * 256 == 819_200
    spec = RecurrentSpec("lstm", 28, 1, num_layers=2)
    assert pc.solve_budget(spec, 819_200).rows[0].spec.hidden_size == 256
    assert pc.solve_budget(spec, 819_199).rows[0].spec.hidden_size == 255


@pytest.mark.parametrize(
    "cell, layers, budget",
    [("lstm", 2, "1.5M"), ("gru", 3, "250k"), ("rnn", 1, "2e6"), ("lstm", 1, "1e12"), ("gru", 1, "1e30")],
)
def test_budget_is_the_floor_of_the_root(cell, layers, budget):
    spec = RecurrentSpec(cell, 40, 17, num_layers=layers)
    row = pc.solve_budget(spec, budget).rows[0]
    a, b = quadratic(cell, 40, layers)
    expected = min(floor_root(a, b, pc.parse_count(budget)), 2**31 - 1)
    assert row.spec.hidden_size == expected
    assert row.params == a * expected**2 + b * expected <= pc.parse_count(budget)
    assert row.spec.num_layers == layers and row.spec.input_size == 40


def test_budget_multiple_of():
    spec = RecurrentSpec("lstm", 28, 1, num_layers=2)
    h = pc.solve_budget(spec, "1.5M", multiple_of=64).rows[0].spec.hidden_size
    a, b = quadratic("lstm", 28, 2)
    assert h == floor_root(a, b, 1_500_000) // 64 * 64
    assert h % 64 == 0


def test_budget_several_cells():
    res = pc.solve_budget(RecurrentSpec("lstm", 28, 1), "100k", cells=["rnn", "lstm", "gru"])
    assert [r.spec.cell for r in res.rows] == ["rnn", "lstm", "gru"]
    for row in res.rows:
        assert row.spec.hidden_size == floor_root(*quadratic(row.spec.cell, 28, 1), 100_000)
        assert row.target == 100_000 and row.difference == row.params - 100_000 <= 0


def test_budget_of_newer_cells():
    # minGRU: 2(h·d + h) = 2h(d + 1) <= 1e6 with d = 28: h = 1e6 // 58
    res = pc.solve_budget(RecurrentSpec("lstm", 28, 1), "1M", cells=["mingru", "indrnn"])
    assert res.rows[0].spec.hidden_size == 1_000_000 // (2 * 29) == 17_241
    # IndRNN: h·d + h + h = h(d + 2)
    assert res.rows[1].spec.hidden_size == 1_000_000 // 30 == 33_333


def test_budget_too_small():
    with pytest.raises(ParamcalcError) as info:
        pc.solve_budget(RecurrentSpec("lstm", 1000, 1), 100)
    # the smallest LSTM(1000, 1): 4(1·1000 + 1 + 2) = 4,012
    assert str(info.value) == "budget 100 is too small for lstm: the smallest hidden size (1) needs 4,012"


def test_budget_bad_multiple():
    with pytest.raises(ParamcalcError, match="multiple_of must be a positive integer, got 0"):
        pc.solve_budget(RecurrentSpec("lstm", 28, 1), "1M", multiple_of=0)


def test_largest_hidden_none_when_nothing_fits():
    assert pc.largest_hidden(RecurrentSpec("lstm", 28, 1), 10) is None


# --- matching a reference -----------------------------------------------------------------------


def test_match_hidden_by_the_quadratic():
    ref = RecurrentSpec("lstm", 28, 256, num_layers=2)
    res = pc.match_hidden(ref)
    assert res.target == res.total == 819_200
    assert [r.spec.cell for r in res.rows] == ["lstm", "rnn", "gru"]
    assert res.rows[0].spec == ref and res.rows[0].difference == 0
    for row in res.rows[1:]:
        a, b = quadratic(row.spec.cell, 28, 2)
        h = closest(a, b, 819_200)
        assert row.spec.hidden_size == h
        assert row.params == a * h * h + b * h
        assert row.relative == pytest.approx((a * h * h + b * h - 819_200) / 819_200)
    # worked out: RNN 3h² + 32h, GRU 9h² + 96h
    assert [r.spec.hidden_size for r in res.rows[1:]] == [517, 296]
    assert [r.params for r in res.rows[1:]] == [3 * 517**2 + 32 * 517, 9 * 296**2 + 96 * 296]


def test_match_hidden_multiple_of():
    res = pc.match_hidden(RecurrentSpec("lstm", 28, 256, num_layers=2), ["gru"], multiple_of=8)
    a, b = quadratic("gru", 28, 2)
    # closest multiple of 8 to the root: 296 is one
    candidates = [8 * k for k in range(1, 100)]
    best = min(candidates, key=lambda h: (abs(a * h * h + b * h - 819_200), h))
    assert res.rows[1].spec.hidden_size == best


def test_match_drops_projection_for_other_cells():
    ref = RecurrentSpec("lstm", 12, 16, 2, bidirectional=True, proj_size=6)
    res = pc.match_hidden(ref, ["gru"])
    assert res.rows[1].spec.proj_size == 0 and res.rows[1].spec.bidirectional
    assert res.rows[1].spec.num_layers == 2


def test_match_is_a_deprecated_alias():
    ref = RecurrentSpec("lstm", 28, 256, num_layers=2)
    with pytest.warns(DeprecationWarning, match="use paramcalc.match_hidden"):
        old = pc.match(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = pc.match_hidden(ref)
    assert old.table().records() == new.table().records()


def test_result_table_and_frame():
    res = pc.match_hidden(RecurrentSpec("lstm", 28, 256, num_layers=2))
    t = res.table()
    assert t.names == ["cell", "hidden_size", "params", "target", "difference", "diff_pct"]
    assert t.column("cell") == ["lstm", "rnn", "gru"]
    assert t.column("difference") == [0, 3 * 517**2 + 32 * 517 - 819_200, 9 * 296**2 + 96 * 296 - 819_200]
    assert list(res.to_frame()["cell"]) == ["lstm", "rnn", "gru"]
    assert res.title() == "hidden sizes matching LSTM(28, 256, num_layers=2) = 819,200 parameters"
    budget = pc.solve_budget(RecurrentSpec("lstm", 28, 1), "1.5M")
    assert budget.title() == "largest hidden size within a budget of 1,500,000 parameters"
    assert budget.meta() == {"mode": "budget", "total": 1_500_000}


# --- wrong types from the library (issue 22) ---------------------------------------------------


def test_largest_hidden_takes_a_budget_text():
    # LSTM(28, h): 4(28h + h² + 2h) <= 10**6  ->  h² + 30h <= 250,000  ->  h = 485
    # (485: 4·249,775 = 999,100; 486: 4·250,776 = 1,003,104)
    spec = RecurrentSpec("lstm", 28, 8)
    assert pc.largest_hidden(spec, "1M") == pc.largest_hidden(spec, 1_000_000) == 485


@pytest.mark.parametrize(
    "call",
    [
        lambda: pc.largest_hidden("lstm", 1000),
        lambda: pc.largest_hidden(RecurrentSpec("lstm", 28, 8), [1000]),
        lambda: pc.largest_hidden(RecurrentSpec("lstm", 28, 8), 1000, multiple_of=0),
        lambda: pc.match_hidden(RecurrentSpec("lstm", 28, 8), multiple_of=0),
        lambda: pc.solve_budget(RecurrentSpec("lstm", 28, 8), "1M", cells=123),
        lambda: pc.solve_budget(RecurrentSpec("lstm", 28, 8), "1M", cells=["gru", 3]),
        lambda: pc.match_hidden(RecurrentSpec("lstm", 28, 8), cells=b"gru"),
    ],
)
def test_wrong_types_are_one_line_errors(call):
    with pytest.raises(ParamcalcError) as info:
        call()
    assert "\n" not in str(info.value)


def test_a_cell_name_is_one_cell_not_its_letters():
    spec = RecurrentSpec("lstm", 28, 8)
    # GRU(28, h): 3(28h + h² + 2h) <= 10**6 -> h = 562 (3·332,704 = 998,112; 563: 1,001,577)
    solved = pc.solve_budget(spec, "1M", cells="gru")
    assert [(r.spec.cell, r.spec.hidden_size) for r in solved.rows] == [("gru", 562)]
    matched = pc.match_hidden(RecurrentSpec("lstm", 28, 256), cells="rnn, gru")
    assert [r.spec.cell for r in matched.rows] == ["lstm", "rnn", "gru"]
    compared = pc.compare(spec, "gru")
    assert [r.spec.cell for r in compared.rows] == ["gru"]
    assert [r.spec.cell for r in pc.compare(spec, pc.get_cell("mgu")).rows] == ["mgu"]
