"""paramcalc bench: timed throughput on CPU with tiny sizes.

Timing values are never asserted, only their presence, units and consistency
(tokens/s = B·T / time, FLOP/s = FLOPs / time, ...). GPU tests skip where there is none.
"""

from __future__ import annotations

import importlib
import json
import time

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from paramcalc import ParamcalcError, RecurrentSpec
from paramcalc.cli import cli
from paramcalc.cost import Workload, cost
from tests.conftest import one_line_error

B = importlib.import_module("paramcalc.bench")  # the module (paramcalc.bench is the function)

FAST = 0.01  # seconds of timing per measurement in these tests
SPEC = RecurrentSpec("lstm", 4, 8, num_layers=2)
WL = Workload(batch=3, seq_len=5)
TINY = ["-d", "4", "-H", "8", "--batch", "3", "--seq-len", "5", "--min-time", "0.01"]
KNOWN_PATHS = {*B.KERNEL_PATHS.values(), B.NATIVE_PATH}


@pytest.fixture(scope="module")
def lstm_result() -> B.BenchResult:
    return B.bench(SPEC, WL, min_run_time=FAST)


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(args))


# --- consistency of one result ------------------------------------------------------------


def test_result_units_and_consistency(lstm_result):
    r = lstm_result
    assert r.spec == SPEC and r.workload == WL  # results carry what they measured
    assert len(r.times) >= B.MIN_RUNS and all(t > 0 for t in r.times)
    assert r.median_s > 0 and r.iqr_s >= 0
    assert r.tokens == 3 * 5
    assert r.tokens_per_s == pytest.approx(3 * 5 / r.median_s)
    assert r.sequences_per_s == pytest.approx(3 / r.median_s)
    assert r.flops == cost(SPEC, WL).flops
    assert r.flop_per_s == pytest.approx(r.flops / r.median_s)
    # the GEMM of the recurrent shape: (B, Dh) @ (Dh, 4·Dh), 2 FLOPs per multiply-add
    assert r.gemm_shape == (3, 8, 32)
    assert r.gemm_flops == 2 * 3 * 8 * 32
    assert r.gemm_flop_per_s == pytest.approx(2 * 3 * 8 * 32 / r.gemm_median_s)
    assert r.efficiency == pytest.approx(r.flop_per_s / r.gemm_flop_per_s)
    assert r.kernel_path in KNOWN_PATHS
    assert r.torch_version == torch.__version__
    assert r.threads == torch.get_num_threads()
    assert r.device == "cpu" and r.device_name
    assert not r.train and r.mode == "inference"
    # like torch.utils.benchmark: the Measurement itself comes along
    assert r.measurement is not None and r.measurement.median == pytest.approx(r.median_s)


def test_record_is_in_stated_units(lstm_result):
    rec = lstm_result.record()
    assert rec["time_ms"] == pytest.approx(lstm_result.median_s * 1e3, rel=1e-3)
    assert rec["tokens_per_s"] == pytest.approx(15 / (rec["time_ms"] / 1e3), rel=2e-3)
    assert rec["sequences_per_s"] == pytest.approx(3 / (rec["time_ms"] / 1e3), rel=2e-3)
    assert rec["gflop_per_s"] == pytest.approx(rec["flops"] / (rec["time_ms"] / 1e3) / 1e9, rel=2e-3)
    assert rec["efficiency_%"] == pytest.approx(100 * rec["gflop_per_s"] / rec["gemm_gflop_per_s"], rel=3e-3)
    assert rec["runs"] == len(lstm_result.times)
    assert rec["gemm"] == "(3x8)@(8x32)"
    frame = lstm_result.to_frame()
    assert list(frame.columns) == list(rec) and len(frame) == 1


def test_summary_names_everything_the_issue_asks_for(lstm_result):
    text = "\n".join(f"{r['quantity']}: {r['value']}" for r in lstm_result.summary())
    for needle in ("time per batch", "tokens/s", "sequences/s", "GFLOP/s", "GEMM roofline", "efficiency"):
        assert needle in text
    assert "kernel path: " + lstm_result.kernel_path in text
    assert torch.__version__ in text and "threads: " in text


def test_noisy_flag():
    r = B.bench(RecurrentSpec("rnn", 2, 4), Workload(batch=1, seq_len=2), min_run_time=FAST)
    assert r.noisy == (r.iqr_s > B.NOISY_IQR * r.median_s)


# --- what is timed --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,gemm",
    [
        (RecurrentSpec("gru", 4, 8, bidirectional=True), (3, 8, 24)),
        (RecurrentSpec("lstm", 4, 8, proj_size=3), (3, 3, 32)),  # R = P
        (RecurrentSpec("rnn_relu", 4, 8), (3, 8, 8)),
        (RecurrentSpec("lstm_cell", 4, 8), (3, 8, 32)),
        (RecurrentSpec("gru_cell", 4, 8), (3, 8, 24)),
        (RecurrentSpec("gru", 4, 8, convention="keras", reset_after=False), (3, 8, 24)),
    ],
    ids=lambda v: getattr(v, "cell", None) or str(v),
)
def test_every_kind_of_module_runs(spec, gemm):
    r = B.bench(spec, WL, min_run_time=FAST)
    assert r.gemm_shape == gemm
    assert r.tokens_per_s == pytest.approx(15 / r.median_s)


def test_training_times_forward_and_backward():
    w = Workload(batch=3, seq_len=5, mode="training")
    r = B.bench(SPEC, w, min_run_time=FAST)
    assert r.train and r.record()["mode"] == "training"
    assert r.flops == cost(SPEC, w).flops > cost(SPEC, WL).flops  # backward counted
    assert r.memory_estimate >= cost(SPEC, w).training_bytes


def test_training_statement_really_runs_backward():
    module, x = B.make_case(SPEC, WL)
    module.train()
    _, _, fn = B._statement(SPEC, module, x, train=True)
    fn()
    assert all(p.grad is not None for p in module.parameters())


def test_inference_statement_is_the_bare_forward():
    module, x = B.make_case(SPEC, WL)
    stmt, globals_, _ = B._statement(SPEC, module, x, train=False)
    assert stmt == "module(x)" and globals_["module"] is module and globals_["x"] is x


def test_packed_lengths_count_real_tokens():
    w = Workload(batch=3, seq_len=5, lengths=(5, 3, 2))
    r = B.bench(RecurrentSpec("gru", 4, 8), w, min_run_time=FAST)
    assert r.tokens == 10
    assert r.tokens_per_s == pytest.approx(10 / r.median_s)
    _, x = B.make_case(RecurrentSpec("gru", 4, 8), w)
    assert hasattr(x, "batch_sizes") and x.batch_sizes.tolist() == [3, 3, 2, 1, 1]


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_kernel_path_is_detected_from_the_operators_that_ran():
    spec = RecurrentSpec("lstm", 4, 8)
    module, x = B.make_case(spec, WL)
    ops = B.kernel_ops(spec, module, x, train=False)
    assert B.kernel_path(ops) == "oneDNN" and "mkldnn_rnn_layer" in ops
    with torch.backends.mkldnn.flags(enabled=False):
        ops = B.kernel_ops(spec, module, x, train=False)
    assert B.kernel_path(ops) == B.NATIVE_PATH and "mkldnn_rnn_layer" not in ops
    gru = RecurrentSpec("gru", 4, 8)
    module, x = B.make_case(gru, WL)
    assert B.kernel_path(B.kernel_ops(gru, module, x, train=False)) == B.NATIVE_PATH


def test_kernel_path_registry():
    assert B.kernel_path(("_cudnn_rnn", "addmm")) == "cuDNN"
    assert B.kernel_path(("_lstm_mps",)) == "MPS"
    assert B.kernel_path(("addmm", "tanh")) == B.NATIVE_PATH


def test_cpu_clock_does_not_synchronise_anything():
    assert B._timer_for(torch.device("cpu")) is time.perf_counter


def test_threads_are_applied_and_restored():
    before = torch.get_num_threads()
    r = B.bench(RecurrentSpec("rnn", 2, 4), Workload(batch=1, seq_len=2), threads=1, min_run_time=FAST)
    assert r.threads == 1 and r.measurement.task_spec.num_threads == 1
    assert torch.get_num_threads() == before


# --- determinism ----------------------------------------------------------------------------


def test_runs_are_seeded_and_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    m1, x1 = B.make_case(SPEC, WL, seed=3)
    m2, x2 = B.make_case(SPEC, WL, seed=3)
    m3, _ = B.make_case(SPEC, WL, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(x1, x2)
    for (n1, p1), (n2, p2) in zip(m1.named_parameters(), m2.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    assert not torch.equal(m1.weight_ih_l0, m3.weight_ih_l0)
    assert isinstance(m1, nn.LSTM) and x1.shape == (5, 3, 4)


# --- dtypes and devices ---------------------------------------------------------------------


def test_int8_is_a_one_line_error():
    with pytest.raises(ParamcalcError, match="int8"):
        B.bench(SPEC, Workload(batch=1, seq_len=1, dtype="int8"), min_run_time=FAST)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precisions_on_cpu(dtype):
    """torch 2.13's CPU runs fp16 and bf16 recurrent layers; an older torch must say so in one line."""
    w = Workload(batch=2, seq_len=2, dtype=dtype)
    try:
        r = B.bench(RecurrentSpec("gru", 4, 8), w, min_run_time=FAST)
    except ParamcalcError as exc:
        assert f"dtype {dtype} is not supported" in str(exc) and "\n" not in str(exc)
    else:
        assert r.dtype == dtype and r.memory_estimate > 0


def test_dtype_the_device_cannot_run_is_one_line(monkeypatch):
    def no_half(*args, **kwargs):
        raise RuntimeError("\"addmm_impl_cpu_\" not implemented for 'Half'\nmore detail")

    monkeypatch.setattr(B, "build_module", no_half)
    with pytest.raises(ParamcalcError) as info:
        B.bench(SPEC, Workload(batch=1, seq_len=1, dtype="fp16"), min_run_time=FAST)
    msg = str(info.value)
    assert "dtype fp16 is not supported for LSTM on cpu" in msg and "\n" not in msg


@pytest.mark.parametrize("device", ["meta", "tpu", "cpu:1"])
def test_bad_devices_are_one_line(run, device):
    line = one_line_error(run("bench", "lstm", *TINY, "--device", device))
    assert device in line or "meta" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_absent_cuda_is_one_line(run):
    assert "not available" in one_line_error(run("bench", "lstm", *TINY, "--device", "cuda"))


# --- memory safety --------------------------------------------------------------------------


def test_memory_estimate_comes_from_the_cost_model():
    c = cost(SPEC, WL)
    gemm = (3 * 8 + 8 * 32 + 3 * 32) * 4  # fp32 operands of the (3x8)@(8x32) GEMM
    assert B.memory_needed(SPEC, WL) == c.inference_bytes + gemm
    wt = Workload(batch=3, seq_len=5, mode="training")
    assert B.memory_needed(SPEC, wt) == cost(SPEC, wt).training_bytes + gemm
    cell = RecurrentSpec("lstm_cell", 4, 8)  # the cost model holds one step; the run all T inputs
    assert B.memory_needed(cell, WL) == cost(cell, WL).inference_bytes + gemm + 5 * 3 * 4 * 4


def test_available_cpu_memory_is_read():
    free = B.available_bytes(torch.device("cpu"))
    assert free is None or free > 0


def test_refuses_before_allocating_anything(monkeypatch, run):
    def must_not_build(*args, **kwargs):
        raise AssertionError("allocated before the memory check")

    monkeypatch.setattr(B, "available_bytes", lambda dev: 1000)
    monkeypatch.setattr(B, "build_module", must_not_build)
    monkeypatch.setattr(B, "make_case", must_not_build)
    line = one_line_error(run("bench", "lstm", *TINY))
    assert "not enough memory on cpu" in line and "available" in line


@pytest.mark.parametrize(
    "exc",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
        MemoryError(),
    ],
    ids=["cuda-oom", "cpu-allocator", "MemoryError"],
)
def test_out_of_memory_during_the_run_is_one_line(monkeypatch, run, exc):
    def oom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(B, "make_case", oom)
    line = one_line_error(run("bench", "lstm", *TINY))
    assert "out of memory timing LSTM(4, 8)" in line


def test_other_runtime_errors_are_not_disguised(monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(B, "make_case", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        B.bench(SPEC, WL, min_run_time=FAST)


# --- the command ----------------------------------------------------------------------------


def test_bench_command_table(run):
    r = run("bench", "lstm", *TINY, "-L", "2")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert out.startswith("LSTM(4, 8, num_layers=2)  [B=3 T=5 fp32 inference]")
    for needle in ("tokens/s", "sequences/s", "GEMM roofline", "kernel path", "threads", torch.__version__):
        assert needle in out
    assert "FLOPs: 1 MAC = one multiply-add" in out


def test_bench_command_json_is_consistent(run):
    r = run("bench", "gru", *TINY, "--train", "--threads", "1", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    row = data["rows"][0]
    assert data["threads"] == 1 and data["device"] == "cpu" and data["torch"] == torch.__version__
    assert data["workload"] == {
        "batch": 3,
        "seq_len": 5,
        "lengths": None,
        "dtype": "fp32",
        "mode": "training",
    }
    assert row["mode"] == "training" and row["threads"] == 1
    assert row["tokens_per_s"] == pytest.approx(3 * 5 / (row["time_ms"] / 1e3), rel=2e-3)
    spec = RecurrentSpec("gru", 4, 8)
    assert row["flops"] == cost(spec, Workload(3, 5, mode="training")).flops


def test_bench_command_exports_the_wide_row(run, tmp_path):
    out = tmp_path / "bench.csv"
    r = run("bench", "rnn", *TINY, "--output", str(out))
    assert r.exit_code == 0, r.output
    import pandas as pd

    frame = pd.read_csv(out)
    assert len(frame) == 1 and {"time_ms", "iqr_ms", "tokens_per_s", "kernel"} <= set(frame.columns)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["bench", "lstm", "-d", "4", "-H", "8"], "give --batch"),
        (["bench", "lstm", *TINY, "--threads", "0"], "threads must be a positive integer"),
        (["bench", "lstm", *TINY, "--dtype", "int8"], "int8"),
        (["bench", "lstm", *TINY, "--dtype", "fp64"], "unknown dtype"),
        (["bench", "lstm", *TINY[:-1], "0"], "--min-time must be"),
        (["bench", "lstm", *TINY, "--output", "x.txt"], "unknown suffix"),
    ],
)
def test_bench_user_errors(run, args, needle):
    assert needle in one_line_error(run(*args))


# --- accelerators -----------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_bench_synchronises_and_names_cudnn():
    r = B.bench(SPEC, WL, device="cuda", min_run_time=FAST)
    assert r.device.startswith("cuda") and r.device_name == torch.cuda.get_device_name()
    assert r.kernel_path == ("cuDNN" if torch.backends.cudnn.is_available() else r.kernel_path)
    assert r.tokens_per_s == pytest.approx(15 / r.median_s)
    assert B._timer_for(torch.device("cuda")) is not time.perf_counter


@pytest.mark.skipif(
    not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()), reason="no MPS device"
)
def test_mps_bench():
    r = B.bench(SPEC, WL, device="mps", min_run_time=FAST)
    assert r.device == "mps" and r.median_s > 0
