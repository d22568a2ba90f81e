"""``pc.bench`` and `paramcalc bench`: timed throughput on CPU with tiny sizes.

Timing values are never asserted, only their presence, units and consistency (tokens/s = B·T /
time, FLOP/s = FLOPs / time, ...). Tests that really time something are marked ``slow``; they
use one thread, which keeps a busy 2-core machine from stalling OpenMP. GPU tests skip where
there is none.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch
from torch import nn

import paramcalc.bridge.devices as devices
import paramcalc.bridge.driver as driver
import paramcalc.timing.benchmark as B
from paramcalc import ParamcalcError, RecurrentSpec, Workload
from paramcalc.core.costmodel import cost
from paramcalc.core.memory import peak_bytes
from tests.helpers import invoke, needs_reference_modules, one_line_error

FAST = 0.01  # seconds of timing per measurement in these tests
SPEC = RecurrentSpec("lstm", 4, 8, num_layers=2)
WL = Workload(batch=3, seq_len=5)
TINY = ["-d", "4", "-H", "8", "--batch", "3", "--seq-len", "5", "--min-time", "0.01", "--threads", "1"]
KNOWN_PATHS = {*driver.KERNEL_PATHS.values(), driver.NATIVE_PATH, driver.REFERENCE_PATH}


def bench(spec=SPEC, wl=WL, **kw):
    kw.setdefault("min_run_time", FAST)
    kw.setdefault("threads", 1)
    return B.bench(spec, wl, **kw)


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


def test_noisy_is_an_iqr_above_ten_percent_of_the_median():
    r = B.BenchResult(
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
        times=(1.0,) * 5,
        median_s=1.0,
        iqr_s=0.1,
        number_per_run=1,
    )
    assert not r.noisy and not any("noisy" in n for n in r.notes())
    noisy = dataclasses.replace(r, iqr_s=0.11)
    assert noisy.noisy
    assert "noisy: the IQR is 11% of the median" in noisy.notes()[0]


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


@needs_reference_modules
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


def test_measure_takes_at_least_min_runs_blocks():
    m = B.measure(lambda: None, torch.device("cpu"), threads=1, min_run_time=0.01)
    assert len(m.raw_times) >= B.MIN_RUNS


def test_a_slow_first_call_does_not_make_a_fast_call_slow():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.005 if len(calls) == 1 else 0.0001)  # a cold first call, then 0.1 ms

    m = B.measure(fn, torch.device("cpu"), threads=1, min_run_time=0.01)
    assert len(m.raw_times) >= B.MIN_RUNS


def test_slow_calls_are_timed_one_by_one_within_min_time():
    m = B.measure(lambda: time.sleep(0.004), torch.device("cpu"), threads=1, min_run_time=0.01)
    assert m.number_per_run == 1 and 1 <= len(m.raw_times) <= B.MIN_RUNS


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
    r = B.bench(SPEC, WL, device="cuda", min_run_time=FAST)
    assert r.device.startswith("cuda") and r.device_name == torch.cuda.get_device_name()
    if torch.backends.cudnn.is_available():
        assert r.kernel_path == "cuDNN"
    assert r.tokens_per_s == pytest.approx(15 / r.median_s)
    assert B.timer_for(torch.device("cuda")) is not time.perf_counter


@pytest.mark.gpu
def test_cuda_half_precision_and_training():
    r = B.bench(
        SPEC, Workload(batch=3, seq_len=5, dtype="fp16", mode="training"), device="cuda", min_run_time=FAST
    )
    assert r.dtype == "fp16" and r.train and r.median_s > 0


@pytest.mark.gpu
def test_cuda_memory_check_refuses_a_run_that_cannot_fit():
    free = devices.available_bytes(torch.device("cuda"))
    h = 2**15  # LSTM(h, h, 8): 8·4(2h² + 2h) parameters, far beyond any GPU in fp32
    with pytest.raises(ParamcalcError, match="not enough memory on cuda"):
        B.bench(RecurrentSpec("lstm", h, h, num_layers=8), Workload(64, 64), device="cuda")
    assert devices.available_bytes(torch.device("cuda")) == pytest.approx(free, rel=0.05)


@pytest.mark.skipif(
    not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()), reason="no MPS device"
)
def test_mps_bench():  # pragma: no cover - Apple only
    r = B.bench(SPEC, WL, device="mps", min_run_time=FAST)
    assert r.device == "mps" and r.median_s > 0
