"""The memory model against torch: kernel paths, oneDNN's workspace, saved activations, refusals.

* :func:`paramcalc.core.memory.predict_path` (pure rules) names the path torch dispatches to
  (:func:`paramcalc.bridge.driver.kernel_path` on recorded operators) for every cell, dtype,
  mode, projection, packing and direction on this CPU, with oneDNN on and off;
* :func:`onednn_workspace_bytes` is, byte for byte, the workspace ``mkldnn_rnn_layer`` keeps;
* the model's saved activations are exactly the bytes autograd saves (saved-tensor hooks) on the
  native and reference paths;
* ``bench`` measures a peak and reports it beside the prediction;
* the refusal line (``need × headroom`` against what is free) on both sides: a run just below it
  runs, one just above it is refused with one line (exit 2 via the CLI), and, in a child process
  whose address space is limited to what is "free", an accepted run completes.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import paramcalc as pc
from paramcalc.bridge import devices
from paramcalc.bridge.build import is_torch_native
from paramcalc.bridge.driver import kernel_ops, kernel_path, make_case
from paramcalc.cli import run
from paramcalc.core.memory import (
    NATIVE,
    ONEDNN,
    REFERENCE,
    memory_model,
    onednn_workspace_bytes,
    peak_bytes,
    predict_path,
)
from paramcalc.timing.base import timing_spec

ROOT = Path(__file__).resolve().parents[2]


def _observed_path(spec: pc.RecurrentSpec, wl: pc.Workload, timed: bool = True) -> str:
    """The kernel path of the module bench times for ``spec`` (or, ``timed=False``, of ``spec``'s own)."""
    run = timing_spec(spec)[0] if timed else spec
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not supported with oneDNN")
        case = make_case(run, wl, "cpu")
        case.module.train(wl.training)
        return kernel_path(kernel_ops(case, wl.training), native=is_torch_native(run))


PATH_SPECS = [
    ("rnn", {}),
    ("rnn_relu", {}),
    ("gru", {}),
    ("lstm", {}),
    ("lstm", {"proj_size": 4}),
    ("lstm", {"bidirectional": True, "num_layers": 2}),
    ("lstm", {"bias": False}),
    ("gru", {"bidirectional": True}),
    ("rnn_cell", {}),
    ("lstm_cell", {}),
    ("gru_cell", {}),
    ("lstm", {"peephole": True}),
    ("lstm", {"convention": "keras"}),
    ("gru", {"convention": "keras", "reset_after": False}),
    ("mgu", {}),
    ("mingru", {}),
]


@pytest.mark.parametrize("cell,kw", PATH_SPECS)
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("packed", [False, True])
def test_predicted_path_is_the_path_torch_takes(cell, kw, dtype, mode, packed):
    spec = pc.RecurrentSpec(cell, 6, 8, **kw)
    if packed and spec.cell_type.single_step:
        pytest.skip("cells take no packed batch")
    wl = pc.Workload(3, 4, lengths=(4, 2, 1) if packed else None, dtype=dtype, mode=mode)
    caps = devices.kernel_capabilities(torch.device("cpu"))
    # bench times a one-bias layout as the torch.nn twin with two: predict for what runs
    assert predict_path(timing_spec(spec)[0], wl, **caps) == _observed_path(spec, wl)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_predicted_path_without_onednn(cell):
    spec, wl = pc.RecurrentSpec(cell, 6, 8), pc.Workload(3, 4, mode="training")
    caps = devices.kernel_capabilities(torch.device("cpu"), fused=False)
    assert caps["onednn"] is False
    with torch.backends.mkldnn.flags(enabled=False):
        assert predict_path(spec, wl, **caps) == _observed_path(spec, wl) == NATIVE


def test_only_lstm_takes_onednn_on_cpu():
    """torch 2.13 routes only aten::lstm to oneDNN: nn.RNN and nn.GRU run ATen's loop."""
    wl = pc.Workload(3, 4)
    assert predict_path(pc.RecurrentSpec("lstm", 6, 8), wl) == ONEDNN
    assert predict_path(pc.RecurrentSpec("gru", 6, 8), wl) == NATIVE
    assert predict_path(pc.RecurrentSpec("rnn", 6, 8), wl) == NATIVE
    assert predict_path(pc.RecurrentSpec("lstm", 6, 8, peephole=True), wl) == REFERENCE
    assert predict_path(pc.RecurrentSpec("lstm", 6, 8), wl, "cuda") == "cuDNN"
    assert predict_path(pc.RecurrentSpec("lstm_cell", 6, 8), wl, "cuda") == "native fused cell"


# --- oneDNN's workspace ---------------------------------------------------------------------------


def _workspaces(module: torch.nn.Module, x: torch.Tensor) -> list[tuple[int, int]]:
    """(layer input width, workspace bytes) of every MkldnnRnnLayerBackward in the graph."""
    out = module(x)[0]
    found, stack, seen = [], [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__.startswith("MkldnnRnnLayer"):
            found.append((int(node._saved_input.shape[2]), int(node._saved_result3.numel())))
        stack += [f for f, _ in node.next_functions]
    return found


@pytest.mark.parametrize(
    "d,h,t,b", [(64, 256, 100, 16), (512, 256, 10, 4), (3, 5, 7, 2), (100, 300, 13, 3), (300, 100, 13, 3)]
)
def test_onednn_workspace_is_byte_exact(d, h, t, b):
    torch.manual_seed(0)
    module = torch.nn.LSTM(d, h, num_layers=2, bidirectional=True)
    found = _workspaces(module, torch.randn(t, b, d))
    assert len(found) == 4
    for width, nbytes in found:
        assert onednn_workspace_bytes(t, b, width, h, 4) == nbytes


# --- saved activations ----------------------------------------------------------------------------


def _saved_bytes(spec: pc.RecurrentSpec, wl: pc.Workload) -> int:
    """Bytes autograd saves in one forward, outside the parameters and the input."""
    case = make_case(spec, wl, "cpu")
    case.module.train(True)
    skip = {p.untyped_storage().data_ptr() for p in case.module.parameters()}
    skip.add(case.inputs.data.untyped_storage().data_ptr())
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in skip:
            seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        case.forward()
    return sum(seen.values())


SAVED_SPECS = [
    ("rnn", {}, NATIVE),
    ("gru", {}, NATIVE),
    ("lstm", {"proj_size": 3}, NATIVE),
    ("gru", {"num_layers": 2}, NATIVE),
    ("rnn", {"bidirectional": True}, NATIVE),
    ("rnn_cell", {}, NATIVE),
    ("gru_cell", {}, NATIVE),
    ("lstm", {"bias_vectors": 1}, REFERENCE),
    ("lstm", {"peephole": True}, REFERENCE),
    ("gru", {"convention": "keras", "reset_after": False}, REFERENCE),
    ("gru", {"bias_vectors": 1}, REFERENCE),
    ("cifg", {}, REFERENCE),
    ("mgu", {}, REFERENCE),
    ("indrnn", {}, REFERENCE),
    ("indrnn", {"bias_vectors": 2}, REFERENCE),  # the second bias is an addition: nothing more kept
    ("mingru", {}, REFERENCE),
    ("minlstm", {"num_layers": 2}, REFERENCE),
]


@pytest.mark.parametrize("cell,kw,path", SAVED_SPECS)
def test_saved_activations_are_what_autograd_keeps(cell, kw, path):
    spec = pc.RecurrentSpec(cell, 5, 8, **kw)
    wl = pc.Workload(2, 10, mode="training")
    assert _observed_path(spec, wl, timed=False) == path
    model = memory_model(spec, wl, path)
    kept = sum(
        t.bytes
        for t in model.terms
        if t.item.startswith("saved activations")
        or (t.item.startswith("layer ") and t.item.endswith(" input"))
    )
    assert kept == _saved_bytes(spec, wl)


# --- bench measures a peak ----------------------------------------------------------------------


def test_bench_reports_measured_and_predicted_peak():
    spec, wl = pc.RecurrentSpec("gru", 16, 32), pc.Workload(4, 8, mode="training")
    r = pc.bench(spec, wl, min_run_time=0.01, threads=1)
    assert r.predicted_peak_bytes == peak_bytes(spec, wl, r.kernel_path)
    assert r.peak_bytes is not None and r.peak_bytes > 0, r.peak_method
    assert r.peak_ratio == pytest.approx(r.peak_bytes / r.predicted_peak_bytes)
    frame = r.to_frame()
    assert {"peak_bytes", "predicted_peak_bytes", "peak_ratio"} <= set(frame.columns)
    assert any(line.startswith("peak memory:") for line in r.summary())


def test_peak_memory_sees_an_allocation():
    with devices.peak_memory(torch.device("cpu"), resident=1000) as peak:
        x = torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB, touched
        del x
    assert peak.bytes is not None and peak.bytes >= (64 << 20) + 1000 - (4 << 20), peak


# --- the refusal line ---------------------------------------------------------------------------

LINE_SPEC = pc.RecurrentSpec("gru", 16, 64)
LINE_WL = pc.Workload(8, 20, mode="training")


def _line() -> int:
    """The free bytes at which LINE_SPEC's run is just accepted (need × headroom)."""
    need = devices.run_memory_needed(LINE_SPEC, LINE_WL, torch.device("cpu"))
    return math.ceil(need * devices.MEMORY_HEADROOM)


def test_refusal_line_both_sides_in_process(monkeypatch):
    line = _line()
    monkeypatch.setattr(devices, "available_bytes", lambda dev: line)
    r = pc.bench(LINE_SPEC, LINE_WL, min_run_time=0.01, threads=1)  # accepted, and it runs
    assert r.memory_estimate * devices.MEMORY_HEADROOM <= line
    monkeypatch.setattr(devices, "available_bytes", lambda dev: line - 2)
    with pytest.raises(pc.ParamcalcError, match=r"not enough memory .*\(\+20% headroom"):
        pc.bench(LINE_SPEC, LINE_WL, min_run_time=0.01, threads=1)


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "gru", "-d", "16", "-H", "64", "--batch", "8", "--seq-len", "20", "--train"],
        [
            "compare",
            "-d",
            "16",
            "-H",
            "64",
            "--cells",
            "gru",
            "--batch",
            "8",
            "--seq-len",
            "20",
            "--train",
            "--bench",
        ],
        [
            "sweep",
            "--cells",
            "gru",
            "-d",
            "16",
            "-H",
            "64",
            "--batch",
            "8",
            "--seq-len",
            "20",
            "--train",
            "--bench",
        ],
    ],
)
def test_cli_refuses_just_above_the_line_with_one_line(monkeypatch, capsys, args):
    monkeypatch.setattr(devices, "available_bytes", lambda dev: _line() - 2)
    line = _one_line_error(capsys, [*args, "--min-time", "0.01"])
    assert "not enough memory on cpu" in line and "headroom" in line


def _one_line_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run the CLI (``paramcalc.cli.run``): exit 2, nothing on stdout, one line on stderr."""
    code = run(args)
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and not out.strip(), (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    return lines[0]


def test_flop_check_refusal_uses_the_unfused_path(monkeypatch, capsys):
    spec, wl = pc.RecurrentSpec("lstm", 16, 64), pc.Workload(8, 20, mode="training")
    cpu = torch.device("cpu")
    unfused = devices.run_memory_needed(spec, wl, cpu, fused=False)
    assert unfused == peak_bytes(spec, wl, NATIVE)
    assert devices.run_memory_needed(spec, wl, cpu) == peak_bytes(spec, wl, ONEDNN)
    monkeypatch.setattr(devices, "available_bytes", lambda dev: math.ceil(unfused * 1.2) - 2)
    args = ["cost", "lstm", "-d", "16", "-H", "64", "--batch", "8", "--seq-len", "20", "--train"]
    line = _one_line_error(capsys, [*args, "--flop-check", "--flop-device", "cpu"])
    assert "not enough memory on cpu for the flop check" in line


CHILD = r"""
import contextlib, io, json, resource, sys
import paramcalc.bridge.devices as devices
from paramcalc.cli import run

free, told, args, tiny = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    run(tiny)  # import and warm up everything a bench touches (torch, oneDNN, the renderer) first
vm = next(int(ln.split()[1]) * 1024 for ln in open("/proc/self/status") if ln.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + free, vm + free))  # the process may grow by `free` only
devices.available_bytes = lambda dev: told  # and the device says `told` bytes are free
sys.exit(run(args))
"""

AS_ARGS = ["bench", "gru", "-d", "64", "-H", "256", "--batch", "32", "--seq-len", "200", "--train"]
AS_ARGS += ["--min-time", "0.2", "--threads", "1"]
TINY_ARGS = [
    "bench",
    "gru",
    "-d",
    "4",
    "-H",
    "8",
    "--batch",
    "2",
    "--seq-len",
    "3",
    "--train",
    "--min-time",
    "0.01",
]


def _limited(free: int, told: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(free), str(told), json.dumps(AS_ARGS), json.dumps(TINY_ARGS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_refusal_line_under_an_address_space_limit():
    """A child whose address space may grow by exactly what it is told is free (RLIMIT_AS): the
    run the model accepts at the line completes within it; just above the line it is refused
    before anything is allocated; and the limit is real (told more than it may take, it fails)."""
    spec = pc.RecurrentSpec("gru", 64, 256)
    wl = pc.Workload(32, 200, mode="training")
    line = math.ceil(devices.run_memory_needed(spec, wl, torch.device("cpu")) * devices.MEMORY_HEADROOM)
    ok = _limited(line, line)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "peak memory:" in ok.stdout
    refused = _limited(line, line - 2)
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert refused.returncode == 2 and len(lines) == 1 and "not enough memory" in lines[0], refused.stderr
    starved = _limited(line // 4, 10 * line)  # accepted on its word, but the process cannot grow
    lines = [ln for ln in starved.stderr.splitlines() if ln.strip()]
    assert starved.returncode == 2 and len(lines) == 1 and "out of memory" in lines[0], starved.stderr
