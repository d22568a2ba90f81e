"""What a design search and the scans rest on, against torch.

* minGRU's and minLSTM's reference modules run a parallel log-space scan whose outputs, final
  states and gradients are the step loop's (the same module with its scan switched off, which
  the other reference tests check against the paper's equations), for every layout: layers,
  directions, packed batches, a given initial state, 16-bit dtypes;
* every reference row says how it runs, in bench, predict and compare;
* the operator calls a module dispatches grow linearly in layers (what the bulk speed model
  extends from one and two layers);
* the bulk speed model is ``predict``'s, given the same GEMM, copy, per-call and scan times;
* ``verify`` times front points through the studies runner: measured/predicted per point, and an
  interrupted verification leaves a readable partial file.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import paramcalc as pc
import paramcalc.timing.benchmark as B
from paramcalc.bridge.driver import dispatched_ops
from paramcalc.bridge.modules import ReferenceRecurrent, linear_scan
from paramcalc.core import bulk
from paramcalc.studies.design import design
from paramcalc.timing.gemm import DeviceTimer, GemmTime, Tile
from paramcalc.timing.surface import DeviceSpeed, predict_grid
from tests.speedstub import StubSpeed

SCANS = [
    pc.RecurrentSpec("mingru", 5, 7),
    pc.RecurrentSpec("mingru", 5, 7, num_layers=2, bidirectional=True),
    pc.RecurrentSpec("minlstm", 5, 7, num_layers=3, bias=False),
    pc.RecurrentSpec("minlstm", 5, 7, num_layers=2, bidirectional=True, merge_mode="sum"),
]


def _pair(spec: pc.RecurrentSpec, dtype: torch.dtype) -> tuple[ReferenceRecurrent, ReferenceRecurrent]:
    torch.manual_seed(0)
    scan = ReferenceRecurrent(spec, dtype=dtype)
    loop = ReferenceRecurrent(spec, dtype=dtype)
    loop.load_state_dict(scan.state_dict())
    loop.scan = None  # the same cell stepped by its step function
    assert scan.scan is not None
    return scan, loop


@pytest.mark.parametrize("spec", SCANS, ids=lambda s: s.describe())
@pytest.mark.parametrize("given_state", [False, True])
def test_the_scan_is_the_step_loop(spec, given_state):
    scan, loop = _pair(spec, torch.float64)
    x = 3 * torch.randn(40, 4, 5, dtype=torch.float64)
    hx = (
        torch.randn(spec.num_layers * spec.num_directions, 4, 7, dtype=torch.float64) if given_state else None
    )
    (out, h), (out_loop, h_loop) = scan(x, hx), loop(x, hx)
    torch.testing.assert_close(out, out_loop, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, h_loop, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spec", SCANS, ids=lambda s: s.describe())
def test_the_scan_of_a_packed_batch_is_the_step_loop(spec):
    scan, loop = _pair(spec, torch.float64)
    x = torch.randn(30, 4, 5, dtype=torch.float64)
    packed = pack_padded_sequence(x, [30, 22, 9, 1])
    (out, h), (out_loop, h_loop) = scan(packed), loop(packed)
    torch.testing.assert_close(out.data, out_loop.data, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, h_loop, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("spec", SCANS[:3], ids=lambda s: s.describe())
def test_the_scans_gradients_are_the_step_loops(spec):
    scan, loop = _pair(spec, torch.float64)
    x = torch.randn(25, 3, 5, dtype=torch.float64)
    for module in (scan, loop):
        module(x)[0].pow(2).sum().backward()
    for a, b in zip(scan.parameters(), loop.parameters(), strict=True):
        assert a.grad is not None and torch.isfinite(a.grad).all()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-4), (torch.bfloat16, 5e-2)])
def test_the_scan_in_lower_precision(dtype, tol):
    """fp32 to rounding; 16 bits: scanned in fp32 (the cumulative sums), so within bf16's error."""
    scan, loop = _pair(pc.RecurrentSpec("mingru", 5, 7), dtype)
    x = torch.randn(200, 4, 5).to(dtype)
    torch.testing.assert_close(scan(x)[0].float(), loop(x)[0].float(), rtol=tol, atol=tol)


def test_the_scan_is_a_linear_recurrence_in_log_space():
    """h_t = a_t h_{t-1} + b_t by hand, with b of both signs and a zero b."""
    a = torch.tensor([[0.5], [0.25], [1.0], [0.1]], dtype=torch.float64)
    b = torch.tensor([[1.0], [-2.0], [0.0], [3.0]], dtype=torch.float64)
    h0 = torch.tensor([4.0], dtype=torch.float64)
    want, h = [], h0
    for t in range(4):
        h = a[t] * h + b[t]
        want.append(h)
    torch.testing.assert_close(linear_scan(a.log(), b, h0), torch.stack(want))
    zero_start = torch.tensor([[1.0], [-1.75], [-1.75], [2.825]], dtype=torch.float64)  # h_0 = 0 by hand
    torch.testing.assert_close(linear_scan(a.log(), b), zero_start)


def test_the_scan_runs_on_meta_with_a_packed_batch():
    """No decision depends on a tensor's values: the module runs on meta (shapes only)."""
    spec = pc.RecurrentSpec("minlstm", 5, 7, bidirectional=True)
    module = ReferenceRecurrent(spec, device="meta")
    packed = pack_padded_sequence(torch.randn(6, 3, 5, device="meta"), [6, 4, 1])
    out, h = module(packed)
    assert out.data.shape == (11, 14) and h.shape == (2, 3, 7)


# --- reference rows say how they run ----------------------------------------------------------------


def test_bench_predict_and_compare_say_how_a_reference_runs():
    wl = pc.Workload(2, 3)
    b = pc.bench(pc.RecurrentSpec("mingru", 4, 8), wl, min_run_time=0.01, threads=1)
    assert b.table().records()[0]["kernel"] == "reference (scan)" and b.kernel_path == "reference"
    assert "reference module (a parallel scan): a correctness reference" in b.timed_as
    b = pc.bench(pc.RecurrentSpec("mgu", 4, 8), wl, min_run_time=0.01, threads=1, predict=False)
    assert b.table().records()[0]["kernel"] == "reference (step loop)"
    p = pc.predict(pc.RecurrentSpec("minlstm", 4, 8), wl, threads=1)
    assert any(
        n.startswith("predicted for paramcalc's reference module (a parallel scan)") for n in p.notes()
    )
    assert p.scan_s > 0 and any(
        n.startswith("elementwise: the module runs the recurrence as one scan") for n in p.notes()
    )
    c = pc.compare(
        pc.RecurrentSpec("lstm", 4, 8), ["lstm", "mgu", "mingru"], workload=wl, predict=True, threads=1
    )
    notes = c.notes()
    assert "MGU: predicted for paramcalc's reference module (a Python step loop)" in " ".join(notes)
    assert "minGRU: predicted for paramcalc's reference module (a parallel scan)" in " ".join(notes)


# --- the bulk speed model -------------------------------------------------------------------------------

STACKS = ["rnn", "lstm", "gru", "cifg", "mgu", "indrnn", "mingru", "minlstm"]


@pytest.mark.parametrize("cell", STACKS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dispatched_calls_grow_linearly_in_layers(cell, bidirectional):
    specs = [pc.RecurrentSpec(cell, 4, 4, num_layers=n, bidirectional=bidirectional) for n in (1, 2, 3, 4)]
    ops = [dispatched_ops(s, "fp32", "cpu") for s in specs]
    for n in (2, 3):
        for i in (0, 1):
            assert ops[n][i] == ops[0][i] + n * (ops[1][i] - ops[0][i])


def _fixed_timer(tmp_path) -> DeviceTimer:
    """A DeviceTimer whose every time is a formula (nothing timed): the same inputs for predict
    and for the bulk speed model."""
    t = DeviceTimer("cpu", threads=1, folder=tmp_path, cache=False, verify=False)
    t.ensure = lambda requests, on_timed=None: 0  # type: ignore[method-assign]
    t.gemm_time = lambda req: GemmTime(
        req, _gemm_s(req.m, req.k, req.n), (Tile(req.m, req.k, req.n, 1),), False
    )  # type: ignore[method-assign]
    t.copy_bandwidth = lambda: 7e9  # type: ignore[method-assign]
    t.op_seconds = lambda spec=None, dtype="fp32": 4e-6  # type: ignore[method-assign]
    t.scan_seconds = lambda spec, dtype="fp32", training=False: 3e-8  # type: ignore[method-assign]
    return t


def _gemm_s(m, k, n):
    return 1e-6 + np.asarray(m, dtype=float) * k * n / 3e10 + (np.asarray(m, dtype=float) + n) * 1e-9


@pytest.mark.parametrize("cell", STACKS)
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_the_bulk_speed_model_is_predicts(cell, mode, tmp_path):
    timer = _fixed_timer(tmp_path)
    wl = pc.Workload(6, 9, mode=mode)
    proj = [0, 0, 5, 0] if cell == "lstm" else [0] * 4
    g = bulk.grid(cell, 10, wl, [16, 24, 32, 12], [1, 3, 2, 2], proj, [1, 2, 1, 2])
    got = predict_grid(g, _gemm_s, DeviceSpeed(timer=timer)).seconds  # type: ignore[arg-type]
    for i in range(len(g)):
        want = pc.predict(g.spec(i), wl, timer=timer).seconds
        assert got[i] == pytest.approx(want, rel=1e-9)


# --- verify ----------------------------------------------------------------------------------------------

SMALL = {
    "cells": ["lstm", "gru"],
    "hidden_sizes": (8, 16, 32),
    "num_layers": (1, 2),
    "proj_sizes": (0,),
    "directions": (1,),
}


def test_verify_times_front_points_and_reports_measured_over_predicted(tmp_path):
    out = tmp_path / "front.json"
    r = design(
        4, pc.Workload(2, 3), source=StubSpeed(), verify=2, min_run_time=0.01, threads=1, output=out, **SMALL
    )
    assert len(r.rows) == 2 and not r.partial
    assert [row.spec for row in r.rows] == [p.spec for p in r.spread(2)]
    ratios = r.ratios()
    assert len(ratios) == 2 and all(x > 0 for x in ratios)
    records = [rec for rec in r.table().records() if rec["measured_ms"] is not None]
    assert len(records) == 2 and all(rec["measured_over_predicted"] > 0 for rec in records)
    data = json.loads(out.read_text())
    assert len(data["runs"]) == 2 and "partial" not in data
    assert any(line.startswith("verified: 2 front points") for line in r.summary())


def test_an_interrupted_verification_keeps_a_partial_file(tmp_path, monkeypatch):
    import pandas as pd

    real, calls = B.bench, []

    def bench(spec, workload, **kw):
        calls.append(spec)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(spec, workload, **kw)

    monkeypatch.setattr(B, "bench", bench)
    out = tmp_path / "front.csv"
    with pytest.raises(pc.Interrupted) as info:
        design(
            4,
            pc.Workload(2, 3),
            source=StubSpeed(),
            verify=4,
            min_run_time=0.01,
            threads=1,
            output=out,
            **SMALL,
        )
    partial = info.value.partial
    assert partial.partial and partial.planned == 4 and len(partial.rows) == 2
    text = out.read_text()
    assert text.splitlines()[-1] == "# partial: 2 of 4 verified points (the run was interrupted)"
    frame = pd.read_csv(out, comment="#")
    assert len(frame) == len(partial.points) and frame["measured_ms"].notna().sum() == 2


def test_the_command_verifies_with_progress_and_keeps_an_interrupted_run(tmp_path, monkeypatch):
    from paramcalc.timing import surface
    from tests.helpers import invoke

    monkeypatch.setattr(surface, "DeviceSpeed", lambda *a, **k: StubSpeed())
    real, calls = B.bench, []

    def bench(spec, workload, **kw):
        calls.append(spec)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(spec, workload, **kw)

    monkeypatch.setattr(B, "bench", bench)
    out = tmp_path / "front.csv"
    args = ["design", "-d", "4", "--batch", "2", "--seq-len", "3", "--cells", "lstm,gru", "-H", "8,16,32"]
    r = invoke(
        *args,
        "-L",
        "1:2",
        "--directions",
        "1",
        "--proj-size",
        "0",
        "--threads",
        "1",
        "--min-time",
        "0.01",
        "--bench",
        "--output",
        str(out),
    )
    assert r.exit_code == 130, r.output
    err = [ln for ln in r.stderr.splitlines() if ln]
    assert err[0].startswith("verifying: 1 of ") and "left" in err[0]
    assert err[-2].startswith("interrupted: 2 of ") and err[-2].endswith(f"kept in {out} (marked partial)")
    assert out.read_text().splitlines()[-1].startswith("# partial: 2 of ")
    assert r.stdout.startswith("design: ") and "(partial: 2 of " in r.stdout.splitlines()[0]
