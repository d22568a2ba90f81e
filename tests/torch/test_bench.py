"""``pc.bench`` and `paramcalc bench`: timed throughput on CPU with tiny sizes.

Timing values are never asserted, only their presence, units and consistency (tokens/s = B·T /
time, FLOP/s = FLOPs / time, ...). Tests that really time something are marked ``slow``; they
use one thread, which keeps a busy 2-core machine from stalling OpenMP. GPU tests skip where
there is none.
"""

from __future__ import annotations

import json
import time
import types
import warnings

import pytest
import torch
from torch import nn

import paramcalc.bridge.devices as devices
import paramcalc.bridge.driver as driver
import paramcalc.studies.timed as T
import paramcalc.timing.base as TB
import paramcalc.timing.benchmark as B
from paramcalc import ParamcalcError, RecurrentSpec, Workload
from paramcalc.core.costmodel import cost
from paramcalc.core.memory import peak_bytes
from tests.helpers import invoke, one_line_error

FAST = 0.01  # seconds of timing per measurement in these tests
SPEC = RecurrentSpec("lstm", 4, 8, num_layers=2)
WL = Workload(batch=3, seq_len=5)
TINY = ["-d", "4", "-H", "8", "--batch", "3", "--seq-len", "5", "--min-time", "0.01", "--threads", "1"]
KNOWN_PATHS = {*driver.KERNEL_PATHS.values(), driver.NATIVE_PATH, driver.REFERENCE_PATH}


def bench(spec=SPEC, wl=WL, **kw):
    kw.setdefault("min_run_time", FAST)
    kw.setdefault("threads", 1)
    return T.bench(spec, wl, **kw)


@pytest.fixture(scope="module")
def lstm_result() -> B.BenchResult:
    return bench()


# --- consistency of one result ------------------------------------------------------------


@pytest.mark.slow
def test_result_units_and_consistency(lstm_result):
    r = lstm_result
    assert r.spec == SPEC and r.workload == WL  # results carry what they measured
    assert len(r.times) >= 1 and all(t > 0 for t in r.times)
    assert r.median_s > 0 and r.iqr_s >= 0
    assert r.tokens == 3 * 5
    assert r.tokens_per_s == pytest.approx(3 * 5 / r.median_s)
    assert r.sequences_per_s == pytest.approx(3 / r.median_s)
    assert r.flops == cost(SPEC, WL).flops
    assert r.flop_per_s == pytest.approx(r.flops / r.median_s)
    assert r.kernel_path in KNOWN_PATHS
    assert r.torch_version == torch.__version__
    assert r.threads == 1
    assert r.device == "cpu" and r.device_name
    assert not r.train and r.mode == "inference"
    # like torch.utils.benchmark: the Measurement itself comes along
    assert r.measurement is not None and r.measurement.median == pytest.approx(r.median_s)


@pytest.mark.slow
def test_table_row_is_in_stated_units(lstm_result):
    (rec,) = lstm_result.table().records()
    assert rec["time_ms"] == pytest.approx(lstm_result.median_s * 1e3)
    assert rec["tokens_per_s"] == pytest.approx(15 / (rec["time_ms"] / 1e3))
    assert rec["sequences_per_s"] == pytest.approx(3 / (rec["time_ms"] / 1e3))
    assert rec["gflop_per_s"] == pytest.approx(rec["flops"] / (rec["time_ms"] / 1e3) / 1e9)
    assert rec["runs"] == len(lstm_result.times)
    assert rec["memory_estimate_bytes"] == lstm_result.memory_estimate
    frame = lstm_result.to_frame()
    assert list(frame.columns) == list(rec) and len(frame) == 1
    meta = lstm_result.meta()
    assert meta["times_s"] == list(lstm_result.times) and meta["seed"] == 0 and meta["threads"] == 1


@pytest.mark.slow
def test_summary_names_time_kernel_flops_and_memory(lstm_result):
    text = "\n".join(lstm_result.summary())
    assert f"kernel path: {lstm_result.kernel_path}" in text
    assert f"FLOPs per call (cost model): {cost(SPEC, WL).flops:,}" in text
    assert "GFLOP/s achieved" in text and "memory estimate:" in text
    assert lstm_result.title().endswith(f"1 thread, torch {torch.__version__}")


def made_result(times=(1.0,) * 5, **kw) -> B.BenchResult:
    """A BenchResult built by hand (no timing): its verdicts depend only on what it holds."""
    base = dict(
        spec=SPEC,
        workload=WL,
        cost=cost(SPEC, WL),
        device="cpu",
        device_name="test",
        dtype="fp32",
        train=False,
        threads=1,
        kernel_path="native",
        kernel_ops=(),
        torch_version="x",
        seed=0,
        memory_estimate=0,
        times=tuple(times),
        median_s=sorted(times)[len(times) // 2],
        iqr_s=0.0,
        number_per_run=1,
    )
    base.update(kw)
    return B.BenchResult(**base)


@pytest.mark.parametrize(
    "times, verdict",
    [
        # quartiles by linear interpolation (numpy's and torch.quantile's default), by hand:
        ((1.0, 1.0, 1.0, 1.05, 1.1), ""),  # p25 1.0, p75 1.05: IQR 5% of the median 1.0
        ((0.9, 0.95, 1.0, 1.1, 1.2), "noisy"),  # p25 0.95, p75 1.1: 15%
        ((0.7, 0.8, 1.0, 1.2, 1.4), "gross"),  # p25 0.8, p75 1.2: 40%
        ((1.0, 3.0), ""),  # two single calls: no IQR, no verdict
    ],
)
def test_noise_verdicts_are_torch_measurements(times, verdict):
    r = made_result(times)
    assert r.noise == verdict and r.noisy == bool(verdict)
    notes = " ".join(r.notes())
    assert ("very noisy" in notes) == (verdict == "gross")
    assert ("noisy: the IQR is" in notes) == bool(verdict)
    if verdict == "noisy":
        assert "noisy: the IQR is 15% of the median, which could indicate system fluctuation" in notes
    if verdict == "gross":
        assert "IQR is 40% of the median, which suggests significant environmental influence" in notes
    if verdict:  # the thread advice is for CPUs only
        assert "`threads=1`" in notes
        assert "`threads" not in " ".join(made_result(times, device="cuda:0").notes())


def test_significant_figures_follow_the_spread():
    steady = made_result((1.000, 1.001, 1.002, 1.001, 1.000))
    wide = made_result((0.7, 0.8, 1.0, 1.2, 1.4))
    # torch's estimate: log10(median / (1.645 · std(interquartile points) / sqrt(n))), floored
    assert wide.significant_figures == 1 and steady.significant_figures == 3
    assert made_result((1.0, 3.0)).significant_figures is None
    assert "(median, 1 significant figure)" in wide.summary()[0]


def test_oversubscription_is_said_with_the_fix():
    busy = made_result(threads=2, other_load=2.0, cpus=2)
    assert busy.oversubscribed
    (note,) = [n for n in busy.notes() if "oversubscribed" in n]
    assert "2 runnable tasks of other processes + 2 torch threads on 2 CPUs" in note
    assert note.endswith("use `threads=1`")
    assert not made_result(threads=1, other_load=8.0, cpus=2).oversubscribed  # the fix applied
    assert not made_result(threads=2, other_load=0.0, cpus=2).oversubscribed
    assert not made_result(threads=2, other_load=None, cpus=2).oversubscribed  # not known


def _prediction(seconds: float):
    return types.SimpleNamespace(seconds=seconds, bound_applies=True, fused="", notes=lambda: [])


@pytest.mark.parametrize("predicted, far", [(1.0, None), (0.6, None), (1.9, None), (57.0, 57.0), (0.25, 4.0)])
def test_a_ratio_far_from_one_is_flagged(predicted, far):
    r = made_result(prediction=_prediction(predicted))  # measured: 1.0 s
    assert r.measured_over_predicted == pytest.approx(1 / predicted)
    assert r.far_from_prediction == (None if far is None else pytest.approx(far))
    flagged = [n for n in r.warnings() if n.startswith("measured/predicted is")]
    if far is None:
        assert flagged == []
    else:
        side = "faster" if predicted > 1 else "slower"
        assert f"the run was {far:.3g}x {side} than predicted (more than 2x from 1)" in flagged[0]


# --- what is timed --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec",
    [
        RecurrentSpec("gru", 4, 8, bidirectional=True),
        RecurrentSpec("lstm", 4, 8, proj_size=3),
        RecurrentSpec("rnn_relu", 4, 8),
        RecurrentSpec("lstm_cell", 4, 8),
        RecurrentSpec("gru_cell", 4, 8),
        RecurrentSpec("rnn_relu_cell", 4, 8),
        RecurrentSpec("gru", 4, 8, convention="keras"),
    ],
    ids=lambda s: s.describe(),
)
def test_every_kind_of_torch_module_runs(spec):
    r = bench(spec)
    assert r.tokens_per_s == pytest.approx(15 / r.median_s)
    assert r.kernel_path in KNOWN_PATHS and r.timed_as == ""


@pytest.mark.slow
def test_one_bias_layout_is_timed_as_the_two_bias_module():
    r = bench(RecurrentSpec("lstm", 4, 8, bias_vectors=1))
    assert r.timed_as.startswith("timed as torch.nn.LSTM with two bias vectors per gate block")
    assert r.flops == cost(RecurrentSpec("lstm", 4, 8, bias_vectors=1), WL).flops  # counted as asked
    assert r.timed_as in r.notes()


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec",
    [RecurrentSpec("mgu", 4, 8), RecurrentSpec("gru", 4, 8, convention="keras", reset_after=False)],
    ids=lambda s: s.describe(),
)
def test_reference_modules_are_timed_and_labelled(spec):
    r = bench(spec)
    assert r.kernel_path == driver.REFERENCE_PATH
    assert "a correctness reference, not an optimised kernel" in r.timed_as


@pytest.mark.parametrize("cell", ["indrnn", "mingru", "minlstm"])
def test_one_bias_cells_outside_torch_nn_have_a_timing_spec(cell):
    spec = RecurrentSpec(cell, 4, 8)
    timed, note = B.timing_spec(spec)
    assert timed.bias_vectors == 1 and "correctness reference" in note


@pytest.mark.slow
def test_training_times_forward_and_backward():
    w = Workload(batch=3, seq_len=5, mode="training")
    r = bench(SPEC, w)
    assert r.train and r.table().records()[0]["mode"] == "training"
    assert r.flops == cost(SPEC, w).flops > cost(SPEC, WL).flops  # backward counted
    assert r.memory_estimate == peak_bytes(SPEC, w)


def test_training_step_really_runs_backward():
    case = driver.make_case(SPEC, WL)
    case.module.train()
    case.callable(train=True)()
    assert all(p.grad is not None for p in case.module.parameters())


def test_inference_call_is_the_bare_forward():
    case = driver.make_case(SPEC, WL)
    assert case.callable(train=False) == case.forward
    out = case.forward()
    assert isinstance(out, torch.Tensor) and out.shape == (5, 3, 8)


def test_packed_lengths_run_the_real_tokens():
    w = Workload(batch=3, seq_len=5, lengths=(5, 3, 2))
    case = driver.make_case(RecurrentSpec("gru", 4, 8), w)
    assert hasattr(case.inputs, "batch_sizes") and case.inputs.batch_sizes.tolist() == [3, 3, 2, 1, 1]
    assert case.forward().shape == (10, 8)  # the packed output's data: 5 + 3 + 2 real steps


def test_cells_are_stepped_over_the_real_tokens():
    w = Workload(batch=3, seq_len=5, lengths=(2, 5, 3))
    case = driver.make_case(RecurrentSpec("lstm_cell", 4, 8), w)
    assert case.step_batches == (3, 3, 2, 1, 1)
    outs = case.forward()
    assert [o.shape[0] for o in outs] == [3, 3, 2, 1, 1]  # sorted longest first, shrinking


@pytest.mark.slow
def test_packed_bench_counts_real_tokens():
    r = bench(RecurrentSpec("gru", 4, 8), Workload(batch=3, seq_len=5, lengths=(5, 3, 2)))
    assert r.tokens == 10 and r.tokens_per_s == pytest.approx(10 / r.median_s)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_kernel_path_is_detected_from_the_operators_that_ran():
    case = driver.make_case(RecurrentSpec("lstm", 4, 8), WL)
    ops = driver.kernel_ops(case, train=False)
    assert driver.kernel_path(ops) == "oneDNN" and "mkldnn_rnn_layer" in ops
    with torch.backends.mkldnn.flags(enabled=False):
        ops = driver.kernel_ops(case, train=False)
    assert driver.kernel_path(ops) == driver.NATIVE_PATH and "mkldnn_rnn_layer" not in ops
    gru = driver.make_case(RecurrentSpec("gru", 4, 8), WL)
    assert driver.kernel_path(driver.kernel_ops(gru, train=False)) == driver.NATIVE_PATH


def test_kernel_path_registry():
    assert driver.kernel_path(("_cudnn_rnn", "addmm")) == "cuDNN"
    assert driver.kernel_path(("_lstm_mps",)) == "MPS"
    assert driver.kernel_path(("addmm", "tanh")) == driver.NATIVE_PATH
    assert driver.kernel_path(("addmm", "tanh"), native=False) == driver.REFERENCE_PATH


def test_cpu_clock_does_not_synchronise_anything():
    assert B.timer_for(torch.device("cpu")) is time.perf_counter


@pytest.mark.slow
def test_threads_are_applied_and_restored():
    before = torch.get_num_threads()
    r = bench(RecurrentSpec("rnn", 2, 4), Workload(batch=1, seq_len=2), threads=1)
    assert r.threads == 1 and r.measurement.task_spec.num_threads == 1
    assert torch.get_num_threads() == before


class FakeClock:
    """A clock that only moves when a fake call advances it: timing without load or wall time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_calls(clock: FakeClock, durations) -> tuple[list[float], object]:
    """A function that takes ``durations[i]`` on ``clock`` at its i-th call (the last one after),
    and the list of the durations it really took."""
    done: list[float] = []

    def fn() -> None:
        d = durations[min(len(done), len(durations) - 1)]
        clock.now += d
        done.append(d)

    return done, fn


def measure(fn, clock, min_run_time):
    return B.measure(fn, torch.device("cpu"), threads=1, min_run_time=min_run_time, clock=clock)


def test_a_fast_call_is_timed_in_blocks_of_at_least_min_runs():
    clock = FakeClock()
    _, fn = fake_calls(clock, [1e-6])
    m = measure(fn, clock, 0.01)
    assert len(m.raw_times) >= B.MIN_RUNS and m.number_per_run > 1
    assert m.median == pytest.approx(1e-6)  # each block of n calls took n µs


def test_a_slow_first_call_does_not_make_a_fast_call_slow():
    clock = FakeClock()
    done, fn = fake_calls(clock, [5e-3, 1e-4])  # a cold first call, then 0.1 ms
    m = measure(fn, clock, 0.01)
    assert len(m.raw_times) >= B.MIN_RUNS and m.median == pytest.approx(1e-4)
    assert done.count(5e-3) == 1  # the cold call was not timed again


@pytest.mark.parametrize("seconds", [0.5, 2.0])
def test_a_slow_call_is_run_only_as_often_as_the_measurement_needs(seconds):
    """A call longer than min_run_time costs two calls, both timed: wall / timed = 1."""
    clock = FakeClock()
    done, fn = fake_calls(clock, [seconds])
    m = measure(fn, clock, 0.5)
    assert m.number_per_run == 1 and m.raw_times == pytest.approx([seconds, seconds])
    assert done == [seconds, seconds]
    assert sum(done) / sum(m.raw_times) == pytest.approx(1.0)


def test_a_cold_first_slow_call_is_a_warm_up_only():
    clock = FakeClock()
    done, fn = fake_calls(clock, [0.8, 0.5])  # 60% slower than the next: cold (over 25%)
    m = measure(fn, clock, 0.5)
    assert m.raw_times == pytest.approx([0.5]) and done == [0.8, 0.5]


@pytest.mark.parametrize("first", [0.45, 0.54, 0.6, 0.62])
def test_a_first_call_within_the_gross_noise_threshold_counts(first):
    clock = FakeClock()
    done, fn = fake_calls(clock, [first, 0.5])  # up to 24% slower: within torch's 25% (gross) level
    assert measure(fn, clock, 0.5).raw_times == pytest.approx([first, 0.5]) and len(done) == 2


@pytest.mark.parametrize("seconds, runs", [(0.15, 3), (0.02, 25), (0.004, 2)])
def test_single_calls_fill_min_run_time(seconds, runs):
    """As many single calls as fit in min_run_time (0.5 s; 0.01 s for the 4 ms call), the two
    first ones included: no call is made only to warm up."""
    clock = FakeClock()
    done, fn = fake_calls(clock, [seconds])
    m = measure(fn, clock, 0.01 if seconds == 0.004 else 0.5)
    assert m.number_per_run == 1 and len(m.raw_times) == runs == len(done)


def test_bench_runs_a_slow_module_twice_and_times_both(monkeypatch):
    """The whole of bench, on a fake clock: the full module runs twice for a 0.5 s call (the
    kernel-path probe and the dtype probe run a one-step or tiny module), and both are timed."""
    clock = FakeClock()
    full: list[int] = []
    forward = driver.Case.forward

    def slow_forward(self):
        if self.spec.hidden_size == SPEC.hidden_size and len(self.step_batches) == WL.steps:
            clock.now += 0.5
            full.append(1)
        return forward(self)

    monkeypatch.setattr(B, "timer_for", lambda dev: clock)
    monkeypatch.setattr(driver.Case, "forward", slow_forward)
    r = bench(min_run_time=0.5, predict=False)
    assert len(full) == 2 and r.times == pytest.approx((0.5, 0.5)) and r.timed_s == pytest.approx(1.0)
    assert not r.spread_known and r.significant_figures is None


def test_bench_notes_oversubscription_measured_before_timing(monkeypatch):
    clock = FakeClock()
    _, fn = fake_calls(clock, [1e-3])
    monkeypatch.setattr(B, "other_load", lambda: 3.0)
    monkeypatch.setattr(B, "cpu_count", lambda: 2)
    monkeypatch.setattr(TB, "cpu_count", lambda: 2)  # threads=2 allowed where this process has one CPU
    monkeypatch.setattr(B, "timer_for", lambda dev: clock)
    monkeypatch.setattr(driver.Case, "callable", lambda self, train: fn)
    r = bench(threads=1, predict=False)
    assert r.other_load == 3.0 and r.cpus == 2 and not r.oversubscribed  # one thread: nothing to fix
    r = bench(threads=2, predict=False)
    assert r.oversubscribed and any(n.endswith("use `threads=1`") for n in r.warnings())


def test_other_load_is_a_count_or_unknown(monkeypatch):
    reads = iter([3, 2])  # two reads that disagree: the low median, a count of tasks (not 2.5)
    monkeypatch.setattr(devices, "_running_elsewhere", lambda: next(reads))
    assert devices.other_load(samples=2, gap_s=0) == 2.0
    monkeypatch.setattr(devices, "_running_elsewhere", lambda: None)  # no /proc: the load average
    monkeypatch.setattr(devices.os, "getloadavg", lambda: (0.25, 0.0, 0.0))
    assert devices.other_load(samples=2, gap_s=0) == 0.0


def test_one_bench_coerces_once_and_evaluates_the_memory_model_once(monkeypatch):
    """A module is read into a spec once; the cost model runs once (shared with the prediction);
    the memory model of the run once (the path that ran is the one expected here)."""
    import paramcalc.bridge.adapters as adapters
    import paramcalc.core.memory as memory
    import paramcalc.timing.predict as P

    counts = {"spec_from_module": 0, "memory_model": 0, "cost": 0}

    def counted(module, name):
        real = getattr(module, name)

        def wrapper(*a, **k):
            counts[name] += 1
            return real(*a, **k)

        monkeypatch.setattr(module, name, wrapper)

    counted(adapters, "spec_from_module")
    counted(memory, "memory_model")  # what peak_bytes evaluates
    counted(B, "cost")
    monkeypatch.setattr(P, "cost", lambda *a, **k: pytest.fail("the prediction computed the cost again"))
    r = T.bench(nn.GRU(4, 8), WL, threads=1, min_run_time=FAST, cache=False)
    assert counts == {"spec_from_module": 1, "memory_model": 1, "cost": 1}
    assert r.predicted_peak_bytes == r.memory_estimate == peak_bytes(RecurrentSpec("gru", 4, 8), WL)
    assert r.prediction is not None and r.prediction.cost is r.cost


def test_bench_measures_and_the_caller_attaches_the_prediction(monkeypatch):
    """timing's bench measures only (no prediction, no predict argument); pc.bench predicts the
    kernel path that ran, with the cost the measurement holds."""
    import paramcalc.timing.predict as P

    measured = B.bench(SPEC, WL, threads=1, min_run_time=FAST)
    assert measured.prediction is None and measured.predicted_s is None
    with pytest.raises(TypeError):
        B.bench(SPEC, WL, predict=True)  # type: ignore[call-arg]
    asked = []
    real = P.predict
    monkeypatch.setattr(P, "predict", lambda *a, **k: asked.append(k) or real(*a, **k))
    r = T.bench(SPEC, WL, threads=1, min_run_time=FAST, cache=False)
    (kw,) = asked
    assert kw["kernel"] == r.kernel_path and kw["cost_result"] is r.cost and kw["threads"] == 1
    assert r.prediction is not None and r.measured_over_predicted == pytest.approx(r.median_s / r.predicted_s)


def test_a_timed_compare_evaluates_each_rows_memory_model_once(monkeypatch):
    """The runner checks every row's memory before timing and hands bench that plan: one memory
    model per row, not one for the check and another in bench."""
    import paramcalc as pc
    import paramcalc.core.memory as memory

    calls = []
    real = memory.memory_model
    monkeypatch.setattr(memory, "memory_model", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    r = pc.compare(SPEC, ["lstm", "gru"], workload=WL, bench=True, threads=1, min_run_time=FAST)
    assert [s.cell for s in calls] == ["lstm", "gru"]
    for row in r.rows:
        assert row.memory == row.bench.memory_estimate == row.bench.predicted_peak_bytes
        assert row.memory == peak_bytes(row.spec, WL)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_the_timed_module_is_flattened_after_its_last_cast(monkeypatch, dtype):
    """bench hands the timer the module the driver built, cast and flattened (cuDNN runs from
    one weight buffer; without it each half-precision call copies the weights on CUDA)."""
    events: list[tuple[str, object, object]] = []
    real_flatten, real_apply = driver.flatten_weights, nn.Module._apply

    def flatten(module):
        events.append(("flatten", module, next(module.parameters()).dtype))
        real_flatten(module)

    def apply(self, fn, recurse=True):
        events.append(("apply", self, None))
        return real_apply(self, fn, recurse)

    handed = []

    def fake_measure(fn, dev, **kw):
        handed.append(fn.__self__.module)  # the Case's bound forward: its module is what runs
        from torch.utils.benchmark import Measurement, TaskSpec

        return Measurement(1, [1e-3] * B.MIN_RUNS, TaskSpec("step()", "pass"))

    monkeypatch.setattr(driver, "flatten_weights", flatten)
    monkeypatch.setattr(nn.Module, "_apply", apply)
    monkeypatch.setattr(B, "measure", fake_measure)
    bench(RecurrentSpec("lstm", 4, 8), Workload(batch=2, seq_len=3, dtype=dtype), predict=False)
    (module,) = handed
    mine = [e for e in events if e[1] is module]
    assert mine and mine[-1] == ("flatten", module, {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype])


def test_flatten_reaches_every_rnn_inside_a_module(monkeypatch):
    seen = []
    model = nn.Sequential(nn.LSTM(4, 8), nn.Linear(8, 8), nn.ModuleList([nn.GRU(8, 8)]))
    monkeypatch.setattr(nn.RNNBase, "flatten_parameters", lambda self: seen.append(self))
    driver.flatten_weights(model)
    assert seen == [model[0], model[2][0]]


# --- determinism ----------------------------------------------------------------------------


def test_runs_are_seeded_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    c1 = driver.make_case(SPEC, WL, seed=3)
    c2 = driver.make_case(SPEC, WL, seed=3)
    c3 = driver.make_case(SPEC, WL, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(c1.inputs, c2.inputs)
    for (n1, p1), (n2, p2) in zip(c1.module.named_parameters(), c2.module.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    assert not torch.equal(c1.module.weight_ih_l0, c3.module.weight_ih_l0)
    assert isinstance(c1.module, nn.LSTM) and c1.inputs.shape == (5, 3, 4)


# --- dtypes and devices ---------------------------------------------------------------------


def test_int8_is_a_one_line_error():
    with pytest.raises(ParamcalcError, match="dtype int8 cannot be run"):
        bench(SPEC, Workload(batch=1, seq_len=1, dtype="int8"))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precisions_on_cpu_follow_torch(dtype):
    """bench runs a half-precision GRU exactly when torch itself can (asked here directly)."""
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    try:
        nn.GRU(4, 8).to(torch_dtype)(torch.randn(2, 2, 4, dtype=torch_dtype))
        torch_can = True
    except RuntimeError:
        torch_can = False
    w = Workload(batch=2, seq_len=2, dtype=dtype)
    if torch_can:
        r = bench(RecurrentSpec("gru", 4, 8), w)
        assert r.dtype == dtype and r.memory_estimate == peak_bytes(RecurrentSpec("gru", 4, 8), w)
    else:
        with pytest.raises(ParamcalcError, match=f"dtype {dtype} is not supported for GRU on cpu"):
            bench(RecurrentSpec("gru", 4, 8), w)


def test_dtype_the_device_cannot_run_is_one_line(monkeypatch):
    def no_half(*args, **kwargs):
        raise RuntimeError("\"addmm_impl_cpu_\" not implemented for 'Half'\nmore detail")

    monkeypatch.setattr(driver, "build_module", no_half)
    with pytest.raises(ParamcalcError) as info:
        bench(SPEC, Workload(batch=1, seq_len=1, dtype="fp16"))
    msg = str(info.value)
    assert msg.startswith("dtype fp16 is not supported for LSTM on cpu by torch") and "\n" not in msg


@pytest.mark.parametrize(
    "device, needle",
    [
        ("meta", "the meta device holds no data and cannot be timed"),
        ("tpu", "unknown device 'tpu'"),
        ("cpu:1", "cpu has no index 1"),
    ],
)
def test_bad_devices_are_one_line(device, needle):
    assert needle in one_line_error(invoke("bench", "lstm", *TINY, "--device", device))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_absent_cuda_is_one_line():
    assert "not available" in one_line_error(invoke("bench", "lstm", *TINY, "--device", "cuda"))


# --- memory safety --------------------------------------------------------------------------


def test_memory_estimate_by_hand():
    # LSTM(4, 8, 2), B=3, T=5, fp32 inference on a CPU: the oneDNN path, peak in layer 1's forward.
    # Parameters 4(8·4 + 8·8 + 16) + 4(8·8 + 8·8 + 16) = 1,024 elements; input 5·3·4 = 60; the
    # zero states (h, c) 2 layers x 3 x (8 + 8) = 96; layer 1's input and output 15·8 = 120 each;
    # ideep's reordered W_ih, W_hh of layer 1: 32·(8 + 8) = 512; all x 4 bytes: 7,728. oneDNN's
    # scratchpad: the c states of every step, (5 + 1)·3·8 fp32 = 576 B. The CPU allocator terms:
    # library buffers min(6 MiB, N·G·Dh·4 = 15·32·4) = 1,920 B and 0.5 x the largest block
    # (the same 1,920 B) = 960 B (docs/memory.md).
    assert peak_bytes(SPEC, WL) == 7728 + 576 + 1920 + 960 == 11184
    assert cost(SPEC, WL).inference_bytes == peak_bytes(SPEC, WL)


def test_refuses_before_allocating_anything(monkeypatch):
    def must_not_build(*args, **kwargs):
        raise AssertionError("allocated before the memory check")

    monkeypatch.setattr(devices, "available_bytes", lambda dev: 1000)
    monkeypatch.setattr(driver, "build_module", must_not_build)
    monkeypatch.setattr(B, "make_case", must_not_build)
    line = one_line_error(invoke("bench", "lstm", *TINY))
    assert "not enough memory on cpu for the timed run of LSTM(4, 8)" in line and "available" in line


@pytest.mark.parametrize(
    "exc",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
        MemoryError(),
    ],
    ids=["cuda-oom", "cpu-allocator", "MemoryError"],
)
def test_out_of_memory_during_the_run_is_one_line(monkeypatch, exc):
    def oom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(B, "probe_dtype", lambda *a, **k: None)  # the dtype probe passed
    monkeypatch.setattr(B, "make_case", oom)
    line = one_line_error(invoke("bench", "lstm", *TINY))
    assert "out of memory timing LSTM(4, 8) with batch 3, seq_len 5 on cpu" in line


def test_other_runtime_errors_are_not_disguised(monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(B, "probe_dtype", lambda *a, **k: None)  # the dtype probe passed
    monkeypatch.setattr(B, "make_case", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        bench()
    assert one_line_error(invoke("bench", "lstm", *TINY), code=3).startswith(
        "Error: internal error: RuntimeError"
    )


def test_a_bug_in_the_module_is_not_reported_as_an_unsupported_dtype(monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(driver, "build_module", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        bench()


# --- the command ----------------------------------------------------------------------------


@pytest.mark.slow
def test_bench_command_table():
    r = invoke("bench", "lstm", *TINY, "-L", "2")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert out.startswith(
        "LSTM(4, 8, num_layers=2)  [B=3 T=5 fp32 inference]: forward (eval, inference_mode) on cpu"
    )
    header = out.splitlines()[1].split()
    assert header == [  # the workload is in the title; --wide adds it and the rest
        "cell",
        "hidden_size",
        "kernel",
        "time_ms",
        "iqr_ms",
        "tokens_per_s",
        "predicted_ms",
        "measured_over_predicted",
    ]
    assert "FLOPs: 1 MAC = one multiply-add" in out and torch.__version__ in out


@pytest.mark.slow
def test_bench_command_defaults_to_one_step_of_one_sequence():
    r = invoke("bench", "gru", "-d", "4", "-H", "8", "--min-time", "0.01", "--threads", "1", "-f", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["workload"] == {
        "batch": 1,
        "seq_len": 1,
        "lengths": None,
        "dtype": "fp32",
        "mode": "inference",
    }


@pytest.mark.slow
def test_bench_command_json_is_consistent():
    r = invoke("bench", "gru", *TINY, "--train", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    (row,) = data["rows"]
    assert data["threads"] == 1 and data["device"] == "cpu" and data["torch"] == torch.__version__
    assert data["workload"] == {
        "batch": 3,
        "seq_len": 5,
        "lengths": None,
        "dtype": "fp32",
        "mode": "training",
    }
    assert row["mode"] == "training" and row["threads"] == 1
    assert row["tokens_per_s"] == pytest.approx(3 * 5 / (row["time_ms"] / 1e3))
    assert row["flops"] == cost(RecurrentSpec("gru", 4, 8), Workload(3, 5, mode="training")).flops


@pytest.mark.slow
def test_bench_command_exports_the_wide_row(tmp_path):
    out = tmp_path / "bench.csv"
    r = invoke("bench", "rnn", *TINY, "--output", out)
    assert r.exit_code == 0, r.output
    import pandas as pd

    frame = pd.read_csv(out)
    assert len(frame) == 1 and {"time_ms", "iqr_ms", "tokens_per_s", "kernel", "torch", "device_name"} <= set(
        frame.columns
    )


@pytest.mark.parametrize(
    "args,needle",
    [
        (["bench", "lstm", *TINY[:-1], "0"], "threads must be a positive integer, got 0"),
        (["bench", "lstm", *TINY, "--dtype", "int8"], "dtype int8 cannot be run"),
        (["bench", "lstm", *TINY, "--dtype", "fp64"], "unknown dtype"),
        (
            ["bench", "lstm", "-d", "4", "-H", "8", "--min-time", "0"],
            "min_run_time must be in (0, 600] seconds",
        ),
        (["bench", "lstm", *TINY, "--output", "x.txt"], "unknown suffix"),
        (["bench", "lstm", *TINY, "--seed", "-1"], "--seed must be in [0, 2**63)"),
        (["bench", "lstm", "-d", "4", "-H", "8", "--threads", "100000"], "threads must be at most"),
    ],
)
def test_bench_user_errors(args, needle):
    assert needle in one_line_error(invoke(*args))


# --- accelerators -----------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_bench_synchronises_and_names_cudnn():
    r = T.bench(SPEC, WL, device="cuda", min_run_time=FAST)
    assert r.device.startswith("cuda") and r.device_name == torch.cuda.get_device_name()
    if torch.backends.cudnn.is_available():
        assert r.kernel_path == "cuDNN"
    assert r.tokens_per_s == pytest.approx(15 / r.median_s)
    assert B.timer_for(torch.device("cuda")) is not time.perf_counter


@pytest.mark.gpu
def test_cuda_half_precision_and_training():
    r = T.bench(
        SPEC, Workload(batch=3, seq_len=5, dtype="fp16", mode="training"), device="cuda", min_run_time=FAST
    )
    assert r.dtype == "fp16" and r.train and r.median_s > 0


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_cuda_half_precision_times_flat_weights_without_a_torch_warning(dtype):
    """Issue 19: a bf16 LSTM's weights were not in cuDNN's one buffer (torch's flatten_parameters
    skips bf16), so each call copied them and torch warned; now they are flat, nothing warns."""
    spec, w = RecurrentSpec("lstm", 64, 128, num_layers=2), Workload(8, 16, dtype=dtype)
    case = driver.make_case(spec, w, "cuda")
    weights = case.module._flat_weights
    assert len({t.untyped_storage().data_ptr() for t in weights}) == 1  # one buffer
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        case.forward()
        T.bench(spec, w, device="cuda", min_run_time=FAST, predict=False)
    assert [str(c.message) for c in caught if issubclass(c.category, UserWarning)] == []
    res = invoke("bench", "lstm", "-d", "64", "-H", "128", "-L", "2", "--batch", "8", "--seq-len", "16",
                 "--dtype", dtype, "--device", "cuda", "--min-time", "0.01")  # fmt: skip
    assert res.exit_code == 0 and "Warning" not in res.output, res.output


@pytest.mark.gpu
def test_cuda_memory_check_refuses_a_run_that_cannot_fit():
    free = devices.available_bytes(torch.device("cuda"))
    h = 2**15  # LSTM(h, h, 8): 8·4(2h² + 2h) parameters, far beyond any GPU in fp32
    with pytest.raises(ParamcalcError, match="not enough memory on cuda"):
        T.bench(RecurrentSpec("lstm", h, h, num_layers=8), Workload(64, 64), device="cuda")
    assert devices.available_bytes(torch.device("cuda")) == pytest.approx(free, rel=0.05)


@pytest.mark.skipif(
    not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()), reason="no MPS device"
)
def test_mps_bench():  # pragma: no cover - Apple only
    r = T.bench(SPEC, WL, device="mps", min_run_time=FAST)
    assert r.device == "mps" and r.median_s > 0
