"""``predict`` of a packed batch with many distinct lengths: the per-step GEMMs' rows are
bucketed to a geometric grid before anything is timed (pure Python, no torch)."""

from __future__ import annotations

import itertools
import math

from paramcalc import RecurrentSpec, Workload
from paramcalc.timing.predict import (
    EXACT_ROWS,
    MAX_EXACT_GEMMS,
    ROW_STEPS,
    bucket_rows,
    gemm_calls,
    row_bucket,
    row_grid,
)


def test_the_grid_is_exact_below_16_then_8_sizes_per_doubling():
    grid = row_grid(3000)
    assert grid[:EXACT_ROWS] == list(range(1, 17)) and grid[-1] == 3000
    assert all(a < b for a, b in itertools.pairwise(grid))
    assert len(grid) <= EXACT_ROWS + ROW_STEPS * math.ceil(math.log2(3000 / EXACT_ROWS)) + 1  # 77, not 3,000
    assert row_grid(5) == [1, 2, 3, 4, 5]


def test_a_bucket_never_has_fewer_rows_nor_more_than_9_1_percent_more():
    grid = row_grid(3000)
    for m in range(1, 3001):
        b = row_bucket(m, grid)
        assert b in grid and m <= b <= m * 2 ** (1 / ROW_STEPS) + 1e-9, m
        if m <= EXACT_ROWS or m == 3000:
            assert b == m


def test_few_shapes_are_left_exact():
    spec, wl = RecurrentSpec("lstm", 8, 8), Workload.packed([5, 3, 3, 1])
    calls = gemm_calls(spec, wl)
    assert bucket_rows(calls, wl) == (calls, "")


def test_many_lengths_bucket_the_rows_of_forward_dx_and_dw():
    lengths = list(range(1, 1001))  # 1,000 distinct row counts
    spec, wl = RecurrentSpec("gru", 8, 8), Workload.packed(lengths, mode="train")
    calls = gemm_calls(spec, wl)
    assert len({(g.m, g.k, g.n) for g in calls}) > MAX_EXACT_GEMMS
    out, note = bucket_rows(calls, wl)
    grid = set(row_grid(1000))
    for before, after in zip(calls, out, strict=True):
        rows = (before.k, after.k) if before.phase == "dW" else (before.m, after.m)
        if rows[0] < 1000:
            assert rows[1] in grid and rows[0] <= rows[1]
        else:  # the full batch and the input GEMM over all tokens stay exact
            assert rows[1] == rows[0]
        assert (before.phase, before.name, before.calls) == (after.phase, after.name, after.calls)
    assert len({(g.m, g.k, g.n) for g in out}) <= 3 * len(grid) + 3
    assert "1,000 distinct lengths" in note and "errs high" in note
