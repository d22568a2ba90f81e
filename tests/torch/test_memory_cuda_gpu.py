"""The CUDA memory model against the device itself (``gpu``: skipped with a reason without CUDA).

Each case runs in a fresh process, as ``benchmarks/bench_memory.py`` does, so no case inherits
another's allocator state or cuBLAS handles: one ``bench`` per kernel path (cuDNN, the fused
GRU cell, RNNCell's native path, a reference module), its measured ``max_memory_allocated``
against the model's peak, and one traced cuDNN call whose reserve space and workspaces are read
off its allocations and compared with cuDNN's rules byte for byte.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from paramcalc.bridge import calibrate as M
from paramcalc.bridge import calibration as C
from tests.core.test_memory_cuda import _traced_buffers
from tests.helpers import ROOT

pytestmark = pytest.mark.gpu

SHIPPED = ROOT / "benchmarks" / "results" / "cudnn_calibration_h200.json"

BENCH_ONE = """
import json, sys
import paramcalc as pc
cell, kw, mode = json.loads(sys.argv[1])
r = pc.bench(pc.RecurrentSpec(cell, 128, 256, **kw), pc.Workload(32, 50, mode=mode), device="cuda",
             min_run_time=0.05, predict=False)
print(json.dumps({"path": r.kernel_path, "peak": r.peak_bytes, "predicted": r.predicted_peak_bytes,
                  "notes": list(r.memory_notes)}))
"""

TRACE_ONE = """
import json, sys, torch
from paramcalc.bridge.driver import make_case
import paramcalc as pc
cell, mode = json.loads(sys.argv[1])
case = make_case(pc.RecurrentSpec(cell, 128, 256), pc.Workload(32, 50, mode=mode), "cuda")
case.module.train(mode == "training")
run = case.train_step if mode == "training" else case.forward
def call():
    if mode == "training":
        run()
    else:
        with torch.inference_mode():
            run()
call(); call(); torch.cuda.synchronize()
torch.cuda.memory._record_memory_history(enabled="all", context=None, stacks="python", max_entries=99999)
call(); torch.cuda.synchronize()
snap = torch.cuda.memory._snapshot()
torch.cuda.memory._record_memory_history(enabled=None)
ev = [int(e["size"]) * (1 if e["action"] == "alloc" else -1) for t in snap["device_traces"] for e in t
      if e["action"] in ("alloc", "free_requested")]
print(json.dumps(ev))
"""


def _child(code: str, arg: object) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(arg)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture
def calibrated(tmp_path, monkeypatch) -> bool:
    """The shipped H200 calibration in a private cache, where this device and stack are its key."""
    monkeypatch.setenv("PARAMCALC_CACHE_DIR", str(tmp_path))
    key = C.device_key(torch.device("cuda"))
    if C.normal_key(key) != C.normal_key(dict(C.read_calibration(SHIPPED).key)):
        return False
    shutil.copy(SHIPPED, C.calibration_file(key, tmp_path))
    return True


@pytest.mark.parametrize(
    "cell,kw,path",
    [
        ("lstm", {}, "cuDNN"),
        ("gru_cell", {}, "native fused cell"),
        ("rnn_cell", {}, "native"),
        ("lstm", {"peephole": True, "num_layers": 2}, "reference"),
    ],
)
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_one_call_per_path_against_the_device(cell, kw, path, mode, calibrated):
    out = json.loads(_child(BENCH_ONE, [cell, kw, mode]))
    assert out["path"] == path
    ratio = out["peak"] / out["predicted"]
    if path == "cuDNN" and mode == "training" and not calibrated:
        # without a calibration cuDNN's training workspace is the inference form, a floor
        assert any("no calibration" in n for n in out["notes"])
        assert 0.95 <= ratio <= 1.8, out
    else:
        assert 0.95 <= ratio <= 1.05, out
    assert any(n.startswith("CUDA memory model for ") for n in out["notes"])


@pytest.mark.parametrize("mode", ["inference", "training"])
def test_cudnns_buffers_are_its_rules(mode, calibrated):
    import paramcalc as pc
    from paramcalc.bridge.devices import cuda_setup
    from paramcalc.core.memory.cudnn import buffers

    ev = json.loads(_child(TRACE_ONE, ["lstm", mode]))
    traced = _traced_buffers(ev, mode == "training")
    got = buffers(pc.RecurrentSpec("lstm", 128, 256), pc.Workload(32, 50, mode=mode), cuda_setup("cuda"))
    if mode == "training":
        assert abs(got["reserve"] - traced["reserve"]) <= 64
        ratio = got["workspace_forward"] / traced["workspace_forward"]
        assert 0.85 <= ratio <= 1.15 if calibrated else ratio <= 1.0 + 1e-9  # uncalibrated: the floor
    else:
        assert abs(got["workspace"] - traced["workspace"]) <= 4096


def test_a_calibration_measured_on_the_device_predicts_its_own_traces(tmp_path, monkeypatch):
    """bridge.calibration.measure_calibration: 400 traced training calls, fitted and cached under
    the device's key; then a call it never traced (another seed) against its own trace."""
    import paramcalc as pc
    from paramcalc.bridge.devices import cuda_setup
    from paramcalc.core.memory.cudnn import buffers

    monkeypatch.setenv("PARAMCALC_CACHE_DIR", str(tmp_path))
    dev = torch.device("cuda")
    cal = M.measure_calibration(dev, calls=400, seed=0)
    loaded, why = C.load_calibration(C.device_key(dev))
    assert why == "" and loaded is not None and loaded.coef == cal.coef
    assert cuda_setup(dev).calibration is not None
    spec, wl = pc.RecurrentSpec("lstm", 256, 512, num_layers=2), pc.Workload(32, 100, mode="training")
    traced_fwd, traced_bwd = M.trace_training_call(spec, wl, dev)
    got = buffers(spec, wl, cuda_setup(dev))
    assert got["source_forward"].startswith("calibration cudnn-")
    assert abs(got["workspace_forward"] / traced_fwd - 1) <= 0.1
    assert abs(got["workspace_backward"] / traced_bwd - 1) <= 0.1
