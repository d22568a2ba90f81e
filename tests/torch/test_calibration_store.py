"""The cuDNN calibration store (bridge/calibration.py) and the CUDA setup the bridge hands the model.

Every file lives in ``tmp_path``; nothing touches the user's cache. The store is held to the
timing cache's rules: no link followed or written through, a FIFO never blocks, bounded reads,
another key's file ignored, saves atomic under a lock with a bounded wait.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import filelock
import pytest
import torch

import paramcalc as pc
from paramcalc.bridge import calibrate as M
from paramcalc.bridge import calibration as C
from paramcalc.bridge import devices
from paramcalc.core.memory import memory_model
from paramcalc.errors import ParamcalcError
from tests.helpers import ROOT

SHIPPED = ROOT / "benchmarks" / "results" / "cudnn_calibration_h200.json"
KEY = {
    "device": "NVIDIA H200",
    "multiprocessors": "132",
    "sm": "9.0",
    "driver": "580.159.04",
    "cuda": "13.0",
    "cudnn": "91900",
    "torch": "2.11.0+cu130",
}


def test_the_shipped_h200_calibration_reads_and_says_where_it_was_measured():
    cal = C.read_calibration(SHIPPED)
    assert C.normal_key(dict(cal.key)) == KEY
    assert cal.source.startswith("measured on the device") and cal.fit_runs == 1964
    assert cal.describe().startswith("cudnn_calibration_h200.json (NVIDIA H200, SMs 132, sm 9.0")


def test_store_then_load_by_key(tmp_path):
    cal = C.read_calibration(SHIPPED)
    path = C.store_calibration(cal, tmp_path)
    assert path.parent == tmp_path and path.name.startswith("cudnn-")
    loaded, problem = C.load_calibration(KEY, tmp_path)
    assert problem == "" and loaded is not None
    assert loaded.coef == cal.coef and loaded.key == cal.key and loaded.origin == path.name
    assert json.loads(path.read_text())["schema"] == C.SCHEMA
    other, why = C.load_calibration({**KEY, "torch": "2.13.0+cu130"}, tmp_path)
    assert other is None and why == ""  # another key: another file, none there


def test_a_file_for_another_key_is_ignored(tmp_path):
    cal = C.read_calibration(SHIPPED)
    path = C.store_calibration(cal, tmp_path)
    wanted = {**KEY, "driver": "999.1"}
    os.replace(path, C.calibration_file(wanted, tmp_path))
    loaded, why = C.load_calibration(wanted, tmp_path)
    assert loaded is None and "is for another device or versions: ignored" in why


def test_a_link_at_the_calibration_path_is_neither_followed_nor_written_through(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text(SHIPPED.read_text())
    link = C.calibration_file(KEY, tmp_path)
    link.symlink_to(target)
    loaded, why = C.load_calibration(KEY, tmp_path)
    assert loaded is None and "is a symbolic link: not followed" in why
    C.store_calibration(C.read_calibration(SHIPPED), tmp_path)
    assert not link.is_symlink() and target.read_text() == SHIPPED.read_text()


def test_a_fifo_at_the_calibration_path_does_not_block(tmp_path):
    os.mkfifo(C.calibration_file(KEY, tmp_path))
    loaded, why = C.load_calibration(KEY, tmp_path)
    assert loaded is None and "is a FIFO: not read" in why


@pytest.mark.parametrize(
    "text,needle",
    [
        ("{", "is not valid JSON"),
        ("[" * 100_000, "nested too deeply"),
        ('{"schema": "other/1"}', "is not a paramcalc.cudnn-calibration/1 file"),
        ('{"key": {}, "basis": [], "coef": {}}', "basis is not this model's"),
    ],
)
def test_a_malformed_cache_file_is_ignored_with_a_reason(tmp_path, text, needle):
    C.calibration_file(KEY, tmp_path).write_text(text)
    loaded, why = C.load_calibration(KEY, tmp_path)
    assert loaded is None and needle in why and why.endswith("ignored")


def test_a_file_over_the_cap_is_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "MAX_FILE", 100)
    C.calibration_file(KEY, tmp_path).write_text(SHIPPED.read_text())
    loaded, why = C.load_calibration(KEY, tmp_path)
    assert loaded is None and "is larger than 100 bytes" in why


def test_a_user_file_that_is_not_a_calibration_is_one_line(tmp_path):
    with pytest.raises(ParamcalcError, match="no such file"):
        C.read_calibration(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"key": {"device": "x"}, "basis": ["c"], "coef": {}}')
    with pytest.raises(ParamcalcError, match="basis is not this model's"):
        C.read_calibration(bad)


def test_a_lock_held_elsewhere_refuses_the_save_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "LOCK_TIMEOUT_S", 0.05)
    path = C.calibration_file(KEY, tmp_path)
    held = filelock.FileLock(str(path.with_name(path.name + ".lock")))
    held.acquire()
    try:
        with pytest.raises(ParamcalcError, match="was not saved: another process has held its lock"):
            C.store_calibration(C.read_calibration(SHIPPED), tmp_path)
    finally:
        held.release()
    assert not path.exists()


def test_cublas_workspace_config_is_read_as_torch_reads_it():
    assert devices._cublas_config_bytes(":4096:8") == 32 << 20
    assert devices._cublas_config_bytes(":4096:2:16:8") == 4096 * 1024 * 2 + 16 * 1024 * 8
    assert devices._cublas_config_bytes("") is None and devices._cublas_config_bytes("junk") is None


def test_the_run_memory_model_on_a_cpu_is_the_cpu_model():
    spec, wl = pc.RecurrentSpec("gru", 8, 16), pc.Workload(4, 5, mode="training")
    got = devices.run_memory_model(spec, wl, "native", torch.device("cpu"))
    assert got == memory_model(spec, wl, "native", device_type="cpu")
    assert devices.run_memory_needed(spec, wl, torch.device("cpu")) == got.peak_bytes


def test_the_cache_folder_is_the_timing_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("PARAMCALC_CACHE_DIR", str(tmp_path))
    assert C.calibration_file(KEY).parent == Path(tmp_path)


# --- fitting a calibration ------------------------------------------------------------------------

FIT = ROOT / "data" / "cuda" / "cudnn_workspaces_h200_fit.jsonl"


def _spec_workload(r: dict) -> tuple[pc.RecurrentSpec, pc.Workload]:
    from tests.core.test_memory_cuda import _case

    spec, wl, _ = _case({**r, "train": 1})
    return spec, wl


def test_a_calibration_fitted_from_the_h200_runs_predicts_the_held_out_traces():
    """The fit (bridge.calibration.fit_calibration) on the H200 sweeps' fit runs (1,964 traced
    training calls, their workspaces) against the held-out traced calls it never saw."""
    import statistics

    from paramcalc.core.memory import CudaSetup
    from paramcalc.core.memory.cudnn import buffers
    from tests.core.test_memory_cuda import _traced_buffers, _traces

    setup = CudaSetup("NVIDIA H200", (9, 0), 132)
    samples = []
    for line in FIT.read_text().splitlines():
        r = json.loads(line)
        samples.append((*_spec_workload(r), r["ws_fwd"], r["ws_bwd"]))
    cal = M.fit_calibration(samples, KEY, "fitted in a test", setup)
    assert cal.fit_runs == 1964 and cal.coefficients("bwd/std/lstm") is not None
    fitted = CudaSetup("NVIDIA H200", (9, 0), 132, calibration=cal)
    errors = []
    for r in (r for r in _traces() if r["train"]):
        spec, wl = _spec_workload(r)
        traced, got = _traced_buffers(r["ev"], True), buffers(spec, wl, fitted)
        for key in ("workspace_forward", "workspace_backward"):
            errors.append(abs(got[key] / traced[key] - 1))
    assert statistics.median(errors) <= 0.02 and max(errors) <= 0.15


def test_too_few_calls_fit_nothing():
    spec, wl = pc.RecurrentSpec("lstm", 64, 256), pc.Workload(8, 10, mode="training")
    with pytest.raises(ParamcalcError, match="too few traced calls"):
        M.fit_calibration([(spec, wl, 9 << 20, 9 << 20)], KEY, "two calls")


def test_the_workspaces_are_read_off_a_training_calls_allocations():
    # hx, y, hy, workspace (W) with the reserve (R) allocated right after it, W freed, ...,
    # backward data: dy, workspace (B1) freed at once; backward weights: dw, workspace (B2) freed
    w, r, b1, b2 = 9_000_000, 700_000, 9_500_000, 9_400_000
    events = [4096, 8192, 4096, w, r, -w, -4096, 8192, b1, -b1, -8192, 65536, b2, -b2, -r]
    assert M.workspaces_of(events) == (w, b1)
    with pytest.raises(ParamcalcError, match="no cuDNN workspace found"):
        M.workspaces_of([4096, -4096])


def test_calibration_shapes_cover_the_algorithms_and_dtypes():
    from paramcalc.core.memory.cudnn import buffers

    shapes = M.calibration_shapes(400, seed=0)
    assert len(shapes) == 400 and shapes == M.calibration_shapes(400, seed=0)
    seen = {(s.cell, w.dtype, buffers(s, w)["algo_forward"]) for s, w in shapes}
    for cell in ("rnn", "lstm", "gru"):
        for dtype in ("fp32", "fp16"):
            assert {(cell, dtype, "std"), (cell, dtype, "small_h")} <= seen
    assert any(w.lengths for _, w in shapes) and any(s.proj_size for s, _ in shapes)
