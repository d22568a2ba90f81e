"""The speed model: GEMM timing cache, the GEMM-sequence prediction, bench's ratio, the merge of
exports from several devices, and the CLI (predict, compare/sweep --predict, compare --from).

Timings are never asserted, only their presence and consistency. Every test runs with a
temporary cache folder (``PARAMCALC_CACHE_DIR``) and tiny shapes and timing budgets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import paramcalc as pc
from paramcalc import ParamcalcError, RecurrentSpec, Workload
from paramcalc.cli import run as cli_run
from paramcalc.core.costmodel import cost
from paramcalc.timing import gemm as G
from paramcalc.timing import predict as P
from paramcalc.timing.merge import merge_files
from paramcalc.timing.runs import load_runs
from tests.helpers import one_line_error

FAST = 0.002  # seconds of timing per GEMM shape in these tests
TINY = ["--batch", "2", "--seq-len", "3", "--min-time", "0.002"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own cache folder, and no 0.2 s thread spin-up per timer."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv(G.CACHE_ENV, str(folder))
    monkeypatch.setattr(G, "SPIN_UP_S", 0.0)
    monkeypatch.setattr(G, "WARMUP_S", 0.001)
    monkeypatch.setitem(G.COPY_BYTES, "cpu", 4 * 2**20)
    return folder


@pytest.fixture
def timer(cache_dir) -> G.DeviceTimer:
    return P.make_timer("cpu", min_run_time=FAST, cache_dir=cache_dir)


@dataclass
class CliResult:
    """What ``paramcalc ARGS`` did: its exit code and streams (the entry point's own handling)."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(*args: object) -> CliResult:
    """Run the CLI in-process through :func:`paramcalc.cli.run` (exit codes, one-line errors)."""
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        code = cli_run([str(a) for a in args])
    return CliResult(code, out.getvalue().decode(), err.getvalue().decode())


@pytest.fixture
def run():
    return invoke


# --- the cache folder and the tiles (pure) ---------------------------------------------------


def test_cache_dir_follows_env_then_xdg_then_home(tmp_path):
    assert G.cache_dir({G.CACHE_ENV: str(tmp_path)}) == tmp_path
    assert G.cache_dir({"XDG_CACHE_HOME": "/x/y"}) == Path("/x/y/paramcalc")
    assert G.cache_dir({"XDG_CACHE_HOME": "relative"}) == Path.home() / ".cache" / "paramcalc"
    assert G.cache_dir({}) == Path.home() / ".cache" / "paramcalc"


@pytest.mark.parametrize(
    "shape",
    [(6400, 16384, 65536), (64, 16384, 65536), (3, 2**31 - 1, 5), (2**31 - 1, 3, 5), (7, 9, 11), (1, 1, 1)],
)
def test_tile_plan_is_exact_in_macs_and_within_budget(shape):
    for elem, budget in ((4, G.CPU_OPERAND_BUDGET), (2, 10_000), (4, 12)):
        tiles = G.tile_plan(*shape, elem, budget)
        assert sum(t.macs for t in tiles) == shape[0] * shape[1] * shape[2]
        assert all(G.operand_bytes(t.m, t.k, t.n, elem) <= budget for t in tiles)
    m, k, n = shape
    if G.operand_bytes(m, k, n, 4) <= G.CPU_OPERAND_BUDGET:
        assert G.tile_plan(m, k, n, 4, G.CPU_OPERAND_BUDGET) == (G.Tile(m, k, n, 1),)


def test_the_documented_large_case_tiles_n_not_k():
    # LSTM 16384: the recurrent GEMM 64 x 16384 by 16384 x 65536 (a 4 GiB fp32 weight)
    (tile,) = G.tile_plan(64, 16384, 65536, 4, G.CPU_OPERAND_BUDGET)
    assert (tile.m, tile.k) == (64, 16384) and tile.n * tile.count == 65536


# --- the GEMM list (pure) ---------------------------------------------------------------------

BACKWARD_CASES = [
    (RecurrentSpec("lstm", 5, 7, num_layers=2, bidirectional=True), Workload.packed([5, 3, 3, 1])),
    (RecurrentSpec("gru", 5, 7, num_layers=2, reset_after=False, convention="keras"), Workload(3, 4)),
    (RecurrentSpec("lstm", 5, 7, proj_size=3, num_layers=3), Workload(3, 4)),
    (RecurrentSpec("lstm_cell", 5, 7), Workload.packed([4, 2, 2])),
    (RecurrentSpec("mgu", 5, 7, bidirectional=True), Workload.packed([4, 2, 2])),
    (RecurrentSpec("mingru", 5, 7, num_layers=2), Workload(3, 4)),
]


@pytest.mark.parametrize(("spec", "wl"), BACKWARD_CASES, ids=lambda x: getattr(x, "cell", ""))
def test_backward_gemms_are_the_cost_models_autograd_rule(spec, wl):
    wl = replace(wl, mode="training")
    calls = P.gemm_calls(spec, wl)
    fwd = sum(g.macs for g in calls if g.phase == "forward")
    bwd = sum(g.macs for g in calls if g.phase != "forward")
    c = cost(spec, wl, backward="autograd", bias_ops=False, elementwise=False)
    assert fwd == c.macs
    assert 2 * bwd == c.backward_flops
    for g in calls:  # dX (M, N, K) and dW (K, M, N) of a forward (M, K, N)
        assert g.phase in ("forward", "dX", "dW")


def test_packed_lengths_shrink_the_recurrent_rows():
    spec = RecurrentSpec("gru", 4, 6)
    wl = Workload.packed([5, 3, 3, 1])
    rec = [g for g in P.gemm_calls(spec, wl) if g.name == "recurrent"]
    assert sorted((g.m, g.calls) for g in rec) == [(1, 2), (3, 2), (4, 1)]  # rows 4, 3, 3, 1, 1
    assert sum(g.m * g.calls for g in rec) == wl.tokens == 12
    (inp,) = [g for g in P.gemm_calls(spec, wl) if g.name == "input"]
    assert (inp.m, inp.calls) == (12, 1)  # the input GEMM over the real tokens only


def test_packed_prediction_rests_on_shrinking_rows(timer):
    spec = RecurrentSpec("gru", 4, 6)
    r = P.predict(spec, Workload.packed([5, 3, 3, 1]), timer=timer)
    rows = {(g.m, g.calls) for g in r.gemms if "recurrent" in g.roles}
    assert rows == {(4, 1), (3, 2), (1, 2)}
    gemm = r.table("gemm")
    assert gemm.column("M") == [g.m for g in r.gemms]


# --- where the bound does not apply (pure) ----------------------------------------------------

H200 = (9, 0, 132)


def test_cudnn_persistent_follows_pytorchs_choice():
    wl = Workload(64, 50)
    small_rnn = RecurrentSpec("rnn", 28, 256, num_layers=2)
    assert "SMALL_H" in P.cudnn_persistent(small_rnn, wl, H200)
    assert P.cudnn_persistent(RecurrentSpec("lstm", 28, 256, num_layers=2), wl, H200) == ""
    assert "SMALL_H" in P.cudnn_persistent(RecurrentSpec("lstm", 28, 192), wl, H200)
    assert P.cudnn_persistent(RecurrentSpec("lstm", 28, 192), wl, H200, forward=False) == ""
    assert P.cudnn_persistent(small_rnn, Workload.packed([3, 2]), H200) == ""  # packed: standard
    assert P.cudnn_persistent(RecurrentSpec("lstm", 28, 128, proj_size=64), wl, H200) == ""
    assert P.cudnn_persistent(small_rnn, wl, (5, 2, 20)) == ""  # too old for SMALL_H
    fp16 = Workload(64, 50, dtype="fp16")
    big = RecurrentSpec("lstm", 512, 512)
    assert "PERSIST_STATIC" in P.cudnn_persistent(big, fp16, H200)
    assert P.cudnn_persistent(big, wl, H200) == ""  # fp32: standard
    assert P.cudnn_persistent(RecurrentSpec("gru", 512, 512), fp16, H200) == ""  # GRU excluded
    assert P.cudnn_persistent(big.replace(num_layers=2), fp16, H200) == ""
    assert P.cudnn_persistent(RecurrentSpec("mgu", 28, 64), wl, H200) == ""  # not a cuDNN mode


def test_fused_reason_only_for_cudnn():
    spec, wl = RecurrentSpec("rnn", 28, 64), Workload(8, 10)
    assert "does not apply" in P.fused_reason(spec, wl, "cuDNN", H200)
    assert P.fused_reason(spec, wl, "oneDNN", None) == ""  # CPUs: oneDNN is not persistent
    assert P.fused_reason(spec, wl, "native", H200) == ""
    train = Workload(8, 10, mode="training")
    assert "in backward" in P.fused_reason(RecurrentSpec("lstm", 28, 160), train, "cuDNN", H200) or (
        "SMALL_H" in P.fused_reason(RecurrentSpec("lstm", 28, 160), train, "cuDNN", H200)
    )


# --- predict ----------------------------------------------------------------------------------


def _tiny(cell: str) -> RecurrentSpec:
    ct = pc.get_cell(cell)
    return RecurrentSpec(cell, 4, 8, num_layers=1 if ct.single_step else 2)


def test_predict_every_registered_cell(timer):
    wl = Workload(2, 3)
    results = P.predict_many([(_tiny(c), wl) for c in pc.CELLS], timer=timer)
    for cell, r in zip(pc.CELLS, results, strict=True):
        assert isinstance(r, pc.PredictResult)
        assert r.seconds > 0 and r.gemm_s > 0 and r.elementwise_s > 0
        assert r.seconds == pytest.approx(r.gemm_s + r.elementwise_s + r.dispatch_s)
        assert r.dispatch_s == pytest.approx(r.dispatch_ops * r.op_s) and r.op_s > 0
        assert r.tokens_per_s == pytest.approx(wl.tokens / r.seconds)
        roles = {role for g in r.gemms for role in g.roles}
        if pc.get_cell(cell).recurrent_gemm:
            assert any(x.startswith("recurrent") for x in roles), cell
        else:  # mingru, minlstm, indrnn: the input GEMM and elementwise work only
            assert roles == {"input"}, cell
        assert sum(g.calls for g in r.gemms) == r.gemm_call_count
        assert sum(g.seconds for g in r.gemms) == pytest.approx(r.gemm_s)
        shares = r.table("gemm").column("share_pct")
        assert sum(shares) + 100 * (r.elementwise_s + r.dispatch_s) / r.seconds == pytest.approx(100)
        text = r.render(wide=True) + r.render(view="gemm", wide=True)
        assert "GEMM-sequence bound" in text and "efficiency" not in text.lower()


def test_predict_training_adds_backward_and_three_elementwise_passes(timer):
    spec = RecurrentSpec("lstm", 4, 8)
    inf = P.predict(spec, Workload(2, 3), timer=timer)
    tr = P.predict(spec, Workload(2, 3, mode="training"), timer=timer)
    assert tr.elementwise_bytes == 3 * inf.elementwise_bytes
    assert tr.dispatch_ops == 3 * inf.dispatch_ops
    roles = {role for g in tr.gemms for role in g.roles}
    assert {"dW input", "dX recurrent", "dW recurrent"} <= roles
    assert "dX input" not in roles  # layer 0's input is data


def test_predict_checks_its_inputs(timer):
    spec = RecurrentSpec("lstm", 4, 8)
    with pytest.raises(ParamcalcError, match="int8"):
        P.predict(spec, Workload(2, 3, dtype="int8"), timer=timer)
    with pytest.raises(ParamcalcError, match="meta"):
        P.predict(spec, Workload(2, 3), device="meta")
    with pytest.raises(ParamcalcError, match="Workload"):
        P.predict(spec, "B=2")  # type: ignore[arg-type]


def test_a_module_that_would_not_fit_is_never_built(monkeypatch, timer):
    import paramcalc.bridge.build as build
    import paramcalc.bridge.driver as driver

    real = build.build_module

    def refuse(spec, *a, **k):  # only the 4-unit copy that counts and times the dispatch
        if spec.hidden_size > 4 or spec.input_size > 4:
            raise AssertionError("predict built the module")
        return real(spec, *a, **k)

    monkeypatch.setattr(build, "build_module", refuse)
    monkeypatch.setattr(driver, "build_module", refuse)
    spec = RecurrentSpec("lstm", 2048, 2048)  # 134 MB of fp32 weights would be allocated
    r = P.predict(spec, Workload(1, 2), timer=replace_budget(timer, 4 * 2**20))
    assert any(g.tiles for g in r.gemms)
    assert any("tiles" in n for n in r.notes())


# --- the dispatch term -------------------------------------------------------------------------
# Calls per step of ATen's native cells (aten/src/ATen/native/RNN.cpp, the input GEMM
# pre-computed for the whole sequence): SimpleCell: linear_hh(h) (the GEMM), add_, tanh (relu);
# GRUCell: unsafe_chunk of the input part and of linear_hh(h) (the GEMM), r and z as add_ +
# sigmoid_ each, n as mul_ + add + tanh_, h' as sub + mul_ + add_.
NATIVE_CALLS_PER_STEP = {"rnn": 2, "rnn_relu": 2, "gru": 12}


@pytest.mark.parametrize("cell", sorted(NATIVE_CALLS_PER_STEP))
def test_dispatched_calls_per_step_of_the_native_cells(cell):
    from paramcalc.bridge.driver import dispatched_ops

    n = NATIVE_CALLS_PER_STEP[cell]
    _, per_step, all_calls = dispatched_ops(RecurrentSpec(cell, 28, 256), "fp32", "cpu")
    assert (per_step, all_calls) == (n, n + 1)  # + the recurrent GEMM
    # per layer and per direction, whatever the sizes
    assert dispatched_ops(RecurrentSpec(cell, 300, 64, num_layers=3), "fp32", "cpu")[1] == 3 * n
    assert dispatched_ops(RecurrentSpec(cell, 8, 16, bidirectional=True), "fp32", "cpu")[1] == 2 * n


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch build")
def test_a_fused_onednn_lstm_dispatches_nothing_per_step(timer):
    from paramcalc.bridge.driver import dispatched_ops

    once, per_step, _ = dispatched_ops(RecurrentSpec("lstm", 28, 256, num_layers=2), "fp32", "cpu")
    assert per_step == 0 and 0 < once < 40
    r = P.predict(RecurrentSpec("lstm", 28, 256, num_layers=2), Workload(4, 50), timer=timer)
    assert r.dispatch_ops == once  # the same for 50 steps as for one


def test_the_dispatch_term_is_calls_times_the_per_call_overhead(timer, monkeypatch):
    monkeypatch.setattr(timer, "op_seconds", lambda spec=None, dtype="fp32": 1e-3)
    spec, wl = RecurrentSpec("gru", 4, 8, num_layers=2), Workload(2, 5)
    r = P.predict(spec, wl, timer=timer)
    n = NATIVE_CALLS_PER_STEP["gru"]
    assert r.dispatch_ops >= 5 * 2 * n  # 5 steps of 2 layers, + the calls made once
    assert r.dispatch_s == pytest.approx(r.dispatch_ops * 1e-3)
    assert r.seconds == pytest.approx(r.gemm_s + r.elementwise_s + r.dispatch_ops * 1e-3)
    assert "dispatch" in r.render()


def test_the_per_call_overhead_of_a_native_path_is_measured_and_cached(timer):
    spec = RecurrentSpec("gru", 28, 64)
    first = timer.op_seconds(spec, "fp32")
    assert 1e-8 < first < 1e-3  # from the 4-unit GRU's extra time per step over its 14 calls
    keys = [k for k in timer._copy if k.startswith("op:") and k.count(":") == 2]
    assert len(keys) == 1
    again = P.make_timer("cpu", min_run_time=FAST, verify=False)  # no judging against the load now
    assert again.op_seconds(spec, "fp32") == first and again.timed == 0  # from the cache file


def replace_budget(timer: G.DeviceTimer, budget: int) -> G.DeviceTimer:
    timer.operand_budget = budget
    return timer


@pytest.mark.slow
def test_the_16384_lstm_is_predicted_from_a_few_tiles_under_1gb(tmp_path):
    """The issue's case: 68.7 GB of weights; the prediction allocates one tile at a time."""
    script = textwrap.dedent(
        f"""
        import resource, subprocess, sys, os
        p = subprocess.run([sys.executable, "-m", "paramcalc", "predict", "lstm", "-d", "16384",
            "-H", "16384", "-L", "8", "--batch", "64", "--seq-len", "100", "--device", "cpu",
            "--min-time", "0.01", "--format", "json"], capture_output=True, text=True, env={{**os.environ,
            "PARAMCALC_CACHE_DIR": {str(tmp_path)!r}}})
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print(p.returncode, rss)
        print(p.stdout)
        print(p.stderr, file=sys.stderr)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    head, _, body = out.stdout.partition("\n")
    code, rss = head.split()
    assert code == "0", out.stderr
    assert int(rss) < 2**30, f"peak RSS {int(rss) / 2**20:.0f} MiB"
    # "in seconds" without a clock: a handful of GEMM tiles timed, no model built (the RSS above)
    (cache_file,) = tmp_path.glob("gemm-cpu-*.json")
    assert 1 <= len(json.loads(cache_file.read_text())["gemm"]) <= 12
    doc = json.loads(body)
    assert doc["predicted_s"] > 0 and doc["runs"][0]["predicted_s"] == doc["predicted_s"]
    assert cost(RecurrentSpec("lstm", 16384, 16384, num_layers=8)).param_bytes > 68e9


# --- the cache ------------------------------------------------------------------------------


def test_timings_are_cached_on_disk_and_reused(cache_dir):
    spec, wl = RecurrentSpec("gru", 4, 8), Workload(2, 3)
    first = P.predict(spec, wl, min_run_time=FAST)
    assert first.timed_now > 0
    files = list(cache_dir.glob("gemm-cpu-*.json"))
    assert len(files) == 1 and first.cache_path == str(files[0])
    doc = json.loads(files[0].read_text())
    assert doc["schema"] == G.SCHEMA and doc["torch"] == torch.__version__
    assert doc["gemm"] and doc["copy"]
    again = P.make_timer("cpu", min_run_time=FAST, verify=False)  # a suspect timing would be retried
    for key, t in list(again._gemm.items()):
        again._gemm[key] = replace(t, noisy=False)  # a noisy timing would be retried once
    second = P.predict(spec, wl, timer=again)
    assert second.timed_now == 0  # everything came from the cache
    assert second.gemm_s == pytest.approx(sum(g.seconds for g in second.gemms))


def test_refresh_times_again_and_replaces_the_cached_timings(cache_dir):
    probe = P.make_timer("cpu", min_run_time=FAST)
    _write_cache(probe)  # 1000 s for (2, 4, 24) and for the copy
    t = P.make_timer("cpu", min_run_time=FAST, refresh=True)
    assert t.gemm_time(G.GemmRequest(2, 4, 24)).seconds < 1000 and t.timed == 1
    fresh = P.make_timer("cpu", min_run_time=FAST)
    assert fresh.gemm_time(G.GemmRequest(2, 4, 24)).seconds < 1000  # written over the old one
    res = invoke("predict", "rnn", "-d", 4, "-H", 6, *TINY, "--refresh")
    assert res.exit_code == 0, res.output


def test_refresh_retimes_every_shape_even_after_its_first_save(cache_dir):
    # the first timing saves, and saving merges the file back in: a later shape and the copy,
    # cached at 1000 s, must still be timed again by the same refreshing timer
    probe = P.make_timer("cpu", min_run_time=FAST)
    _write_cache(probe)
    t = P.make_timer("cpu", min_run_time=FAST, refresh=True)
    assert t.gemm_time(G.GemmRequest(3, 5, 7)).seconds < 1000  # not cached: timed, then saved
    assert t.gemm_time(G.GemmRequest(2, 4, 24)).seconds < 1000  # cached at 1000 s: timed again
    assert t.copy_bandwidth() > 2 * t.copy_bytes / 1000
    assert t.timed == 3
    again = t.gemm_time(G.GemmRequest(2, 4, 24))
    assert t.timed == 3 and again.seconds < 1000  # once per object


def test_no_cache_writes_nothing(cache_dir):
    r = P.predict(RecurrentSpec("rnn", 4, 8), Workload(2, 3), min_run_time=FAST, cache=False)
    assert r.cache_path == "" and not list(cache_dir.iterdir())
    assert any("no GEMM cache" in n for n in r.notes())


def test_an_unwritable_cache_is_a_note_not_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = P.predict(RecurrentSpec("rnn", 4, 6), Workload(2, 3), min_run_time=FAST, cache_dir=blocker / "sub")
    assert r.seconds > 0
    assert any("could not be written" in n for n in r.notes())


def _write_cache(timer: G.DeviceTimer, **changes) -> None:
    doc = {
        **timer.identity(),
        "gemm": {
            f"fp32:ieee:2x4x24:t{timer.threads}": {"median_s": 1000.0, "iqr_s": 0, "runs": 5, "noisy": False}
        },
        "copy": {f"t{timer.threads}": {"median_s": 1000.0, "iqr_s": 0, "runs": 5, "noisy": False}},
    }
    doc.update(changes)
    timer.path.parent.mkdir(parents=True, exist_ok=True)
    timer.path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"torch": "0.0.1"}, "another torch"),
        ({"device_name": "Some Other CPU"}, "another device name"),
        ({"schema": "paramcalc.gemm-cache/0"}, "another schema"),
        (
            {"gemm": {"fp32:ieee:2x4x24:t1": {"median_s": -1.0, "iqr_s": 0, "runs": 1, "noisy": False}}},
            "outside physical bounds",
        ),
        ({"gemm": {"nonsense": {}}}, "wrong schema"),
        ({"copy": []}, "wrong schema"),
    ],
)
def test_a_foreign_cache_is_ignored_and_rebuilt(cache_dir, changes, why):
    probe = P.make_timer("cpu", min_run_time=FAST)
    _write_cache(probe, **changes)
    t = P.make_timer("cpu", min_run_time=FAST)
    assert why in t.cache_problem
    r = P.predict(RecurrentSpec("lstm", 4, 6), Workload(2, 3), timer=t)
    assert r.seconds < 100  # the foreign 1000 s entries were not used
    assert any("ignored" in n for n in r.notes())
    doc = json.loads(t.path.read_text())
    assert doc["torch"] == torch.__version__ and doc["schema"] == G.SCHEMA
    assert G.read_cache(t.path, t.identity())[2] == ""  # valid again


def test_a_valid_cache_of_ours_is_trusted(cache_dir):
    probe = P.make_timer("cpu", min_run_time=FAST)
    _write_cache(probe)
    t = P.make_timer("cpu", min_run_time=FAST, verify=False)  # 1000 s is suspect: see test_cache_trust
    assert t.cache_problem == ""
    gt = t.gemm_time(G.GemmRequest(2, 4, 24))
    assert gt.seconds == 1000.0 and t.timed == 0


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe", b"[1, 2]", b'{"schema": 1}'])
def test_a_corrupt_cache_is_ignored_and_rebuilt(cache_dir, content):
    probe = P.make_timer("cpu", min_run_time=FAST)
    probe.path.parent.mkdir(parents=True, exist_ok=True)
    probe.path.write_bytes(content)
    t = P.make_timer("cpu", min_run_time=FAST)
    assert "ignored" in t.cache_problem
    r = P.predict(RecurrentSpec("rnn", 4, 6), Workload(2, 3), timer=t)
    assert r.seconds > 0
    assert json.loads(t.path.read_text())["schema"] == G.SCHEMA


def test_concurrent_writers_merge_atomically(cache_dir):
    """Threads save their own timings at once: the file is always whole JSON, and nothing is lost."""
    writers, per = 6, 8
    stop = threading.Event()
    torn: list[str] = []

    def reader(path: Path) -> None:
        while not stop.is_set():
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue
            try:
                json.loads(text)
            except ValueError:
                torn.append(text[:40])

    timers = [P.make_timer("cpu", min_run_time=FAST) for _ in range(writers)]
    r = threading.Thread(target=reader, args=(timers[0].path,))
    r.start()

    def write(i: int, t: G.DeviceTimer) -> None:
        for j in range(per):
            t._gemm[t._key("fp32", "ieee", i + 1, j + 1, 7)] = G.Timing(1e-5 * (i + 1), 0.0, 5, False)
            t.save()

    threads = [threading.Thread(target=write, args=(i, t)) for i, t in enumerate(timers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    stop.set()
    r.join()
    assert not torn
    assert all(t.write_problem == "" for t in timers)
    gemm, _, problem = G.read_cache(timers[0].path, timers[0].identity())
    assert problem == ""
    assert len(gemm) == writers * per
    assert not list(cache_dir.glob(".paramcalc-*.tmp"))  # no temporary file left behind


def test_noisy_cached_timings_are_retried_a_bounded_number_of_times(cache_dir):
    t = P.make_timer("cpu", min_run_time=FAST)
    req = G.GemmRequest(3, 5, 7)
    key = t._key("fp32", "ieee", 3, 5, 7)
    t._gemm[key] = G.Timing(1.0, 1.0, 3, True, tries=1)
    t.save()
    fresh = P.make_timer("cpu", min_run_time=FAST)
    assert fresh.missing([req])  # noisy, tried once: time it again
    fresh._gemm[key] = G.Timing(1.0, 1.0, 3, True, tries=G.MAX_TRIES)
    assert not fresh.missing([req])  # tried enough: keep it


# --- bench ------------------------------------------------------------------------------------


def test_bench_reports_predicted_and_the_ratio():
    spec, wl = RecurrentSpec("lstm", 4, 8, num_layers=2), Workload(3, 5)
    r = pc.bench(spec, wl, min_run_time=0.01)
    assert r.prediction is not None and r.predicted_s == r.prediction.seconds
    assert r.measured_over_predicted == pytest.approx(r.median_s / r.predicted_s)
    table = r.table()
    assert table.column("predicted_ms") == [pytest.approx(r.predicted_s * 1e3)]
    assert table.column("measured_over_predicted") == [pytest.approx(r.measured_over_predicted)]
    assert not any("efficien" in n for n in table.names)
    assert r.timed_s == pytest.approx(sum(r.times) * r.number_per_run)
    assert r.meta()["runs"][0]["predicted_s"] == r.predicted_s
    # a fused kernel: no ratio, a note instead
    fused = replace(r, prediction=replace(r.prediction, fused="the GEMM-sequence bound does not apply: x"))
    assert fused.measured_over_predicted is None
    assert fused.table().column("measured_over_predicted") == [None]
    assert any("does not apply" in n for n in fused.notes())
    assert "efficiency" not in fused.render(wide=True).lower()
    assert pc.bench(spec, wl, min_run_time=0.01, predict=False).prediction is None


def test_bench_reuses_the_cached_gemm_timings(cache_dir):
    spec, wl = RecurrentSpec("gru", 4, 8), Workload(2, 3)
    pc.bench(spec, wl, min_run_time=0.01)
    t = P.make_timer("cpu", verify=False)  # a suspect timing (a busy moment) would be retried
    for key, v in list(t._gemm.items()):
        t._gemm[key] = replace(v, noisy=False)
    r = pc.bench(spec, wl, min_run_time=0.01, timer=t)
    assert r.prediction is not None and r.prediction.timed_now == 0


# --- compare and sweep --predict --------------------------------------------------------------


def test_compare_predict_and_bench(cache_dir):
    spec = RecurrentSpec("lstm", 4, 8)
    seen: list[tuple[int, int]] = []
    r = pc.compare(
        spec,
        workload=Workload(2, 3),
        predict=True,
        bench=True,
        min_run_time=0.01,
        on_gemm=lambda d, t: seen.append((d, t)),
    )
    names = r.table().names
    assert {"predicted_ms", "predicted_tokens_per_s", "measured_over_predicted"} <= set(names)
    assert seen and seen[-1][0] == seen[-1][1]
    ratios = r.table().column("measured_over_predicted")
    for row, ratio in zip(r.rows, ratios, strict=True):
        assert ratio == pytest.approx(row.bench.median_s / row.prediction.seconds)
    runs = r.meta()["runs"]
    assert len(runs) == 3 and all(x["measured_s"] and x["predicted_s"] for x in runs)


def test_sweep_predict_times_each_distinct_shape_once(cache_dir):
    spec = RecurrentSpec("lstm", 4, 8)
    totals: list[int] = []
    r = pc.sweep(
        spec,
        cells="rnn,gru",
        hidden_sizes=[8, 16],
        num_layers=[1, 2],
        batches=[2, 4],
        seq_lens=3,
        predict=True,
        on_gemm=lambda d, t: totals.append(t),
    )
    assert len(r.rows) == 16 and r.predicted and not r.benched
    shapes = {(g.m, g.k, g.n) for row in r.rows for g in P.gemm_calls(row.spec, row.workload)}
    assert totals[-1] == len(shapes) < 2 * len(r.rows)
    assert "predicted_ms" in r.table().names
    assert "measured_over_predicted" not in r.table().names  # nothing measured


# --- the merge of exports ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """A bench, a predict and a compare --predict export, and a copy "from another machine"."""
    tmp_path = tmp_path_factory.mktemp("exports")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(G.CACHE_ENV, str(tmp_path / "cache"))
        mp.setattr(G, "SPIN_UP_S", 0.0)
        return _exports(tmp_path, invoke)


def _exports(tmp_path: Path, run) -> dict[str, Path]:
    out = {}
    out["bench"] = tmp_path / "bench.json"
    res = run("bench", "lstm", "-d", 4, "-H", 8, *TINY[:4], "--min-time", "0.01", "--output", out["bench"])
    assert res.exit_code == 0, res.output
    out["predict"] = tmp_path / "predict.json"
    res = run("predict", "gru", "-d", 4, "-H", 8, *TINY, "--output", out["predict"])
    assert res.exit_code == 0, res.output
    out["compare"] = tmp_path / "compare.json"
    res = run("compare", "-d", 4, "-H", 8, "--batch", 2, "--seq-len", 3, "--predict", "-o", out["compare"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out["bench"].read_text())
    for rec in doc["runs"]:
        rec["device"], rec["device_name"] = "cuda:0", "NVIDIA H200"
    out["other"] = tmp_path / "h200.json"
    out["other"].write_text(json.dumps(doc))
    return out


def test_exports_carry_what_the_merge_needs(exports):
    for name in ("bench", "predict", "compare"):
        doc = json.loads(exports[name].read_text())
        assert doc["runs_schema"] == 1
        for rec in doc["runs"]:
            assert {"spec", "workload", "device", "device_name", "torch"} <= set(rec)
            assert rec["measured_s"] or rec["predicted_s"]
    bench_run = json.loads(exports["bench"].read_text())["runs"][0]
    assert bench_run["times_s"] and bench_run["predicted_s"]


def test_compare_from_merges_devices(exports, run, tmp_path):
    files = [exports["bench"], exports["other"], exports["predict"], exports["compare"]]
    merged = merge_files(files)
    assert set(merged.devices) == {"NVIDIA H200", merged.runs[0].device_name}
    assert len(merged.runs) == 1 + 1 + 1 + 3
    table = merged.table()
    assert table.names[0] == "device_name"
    assert "NVIDIA H200" in table.column("device_name")
    res = run("compare", "--from", *files, "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert len(doc["rows"]) == 6 and doc["runs_schema"] == 1
    # the merged export can be merged again
    again = tmp_path / "merged.json"
    assert run("compare", "--from", *files, "-o", again).exit_code == 0
    assert len(load_runs(again)) == 6
    res = run("compare", "--from", *files)
    assert res.exit_code == 0 and "NVIDIA H200" in res.stdout


def test_compare_from_plots_bars(exports, run, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "devices.png"
    res = run("compare", "--from", exports["bench"], exports["other"], exports["predict"], "--plot", png)
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _mutated(tmp_path: Path, src: Path, edit) -> Path:
    doc = json.loads(src.read_text())
    edit(doc)
    p = tmp_path / f"bad{len(list(tmp_path.iterdir()))}.json"
    p.write_text(json.dumps(doc))
    return p


def test_foreign_or_malformed_exports_are_one_line(exports, run, tmp_path):
    b = exports["bench"]
    bad = {
        "not json": (tmp_path / "x.json", "not valid JSON"),
        "no runs": (_mutated(tmp_path, b, lambda d: d.pop("runs")), "no 'runs'"),
        "schema": (_mutated(tmp_path, b, lambda d: d.update(runs_schema=99)), "schema"),
        "empty": (_mutated(tmp_path, b, lambda d: d.update(runs=[])), "no runs"),
        "cell": (_mutated(tmp_path, b, lambda d: d["runs"][0]["spec"].update(cell="nope")), "unknown cell"),
        "field": (_mutated(tmp_path, b, lambda d: d["runs"][0]["spec"].update(colour=1)), "unknown field"),
        "time": (_mutated(tmp_path, b, lambda d: d["runs"][0].update(measured_s=-1)), "positive"),
        "none": (
            _mutated(tmp_path, b, lambda d: d["runs"][0].update(measured_s=None, predicted_s=None)),
            "neither",
        ),
        "label": (_mutated(tmp_path, b, lambda d: d["runs"][0].update(device_name=7)), "device_name"),
        "suffix": (tmp_path / "x.csv", "not a .json"),
        "missing": (tmp_path / "missing.json", "no such file"),
    }
    (tmp_path / "x.json").write_text("{oops")
    (tmp_path / "x.csv").write_text("a,b\n")
    for name, (path, words) in bad.items():
        line = one_line_error(run("compare", "--from", b, path))
        assert words in line, (name, line)
        with pytest.raises(ParamcalcError):
            load_runs(path)


def test_compare_from_refuses_spec_options_and_bare_files(exports, run):
    assert "do not apply" in one_line_error(run("compare", "--from", exports["bench"], "-d", 4))
    assert "do not apply" in one_line_error(run("compare", "--from", exports["bench"], "--predict"))
    assert "--from" in one_line_error(run("compare", exports["bench"]))
    assert "at least one" in one_line_error(run("compare", "--from"))
    assert "-d" in one_line_error(run("compare", "-H", 8))


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_predict_prints_total_and_gemms(run):
    res = run("predict", "lstm", "-d", 4, "-H", 8, "-L", 2, *TINY)
    assert res.exit_code == 0, res.output
    assert "predicted_ms" in res.stdout and "tokens/s" in res.stdout
    assert "efficiency" not in res.stdout.lower()
    res = run("predict", "lstm", "-d", 4, "-H", 8, *TINY, "--by", "gemm", "--train", "--wide")
    assert res.exit_code == 0, res.output
    assert "dW recurrent" in res.stdout and "share_pct" in res.stdout
    res = run(
        "predict", "gru", "-d", 4, "-H", 8, "--lengths", "3,2,1", "--format", "json", "--min-time", FAST
    )
    doc = json.loads(res.stdout)
    assert doc["result"] == "predict" and doc["workload"]["lengths"] == [3, 2, 1]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--device", "meta"], "meta"),
        (["--device", "tpu"], "unknown device"),
        (["--dtype", "int8"], "int8"),
        (["--threads", "0"], "threads"),
        (["--min-time", "-1"], "min_run_time"),
        (["--batch", "0"], "batch"),
        (["--proj-size", "9"], "proj_size"),
    ],
)
def test_cli_predict_errors_are_one_line(run, args, words):
    assert words in one_line_error(run("predict", "lstm", "-d", 4, "-H", 8, *args))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_predict_on_absent_cuda_is_one_line(run):
    assert "not available" in one_line_error(run("predict", "lstm", "-d", 4, "-H", 8, "--device", "cuda"))


def test_cli_compare_and_sweep_predict(run):
    res = run("compare", "-d", 4, "-H", 8, "--batch", 2, "--seq-len", 3, "--predict", "--quiet")
    assert res.exit_code == 0, res.output
    assert "predicted_ms" in res.stdout and "measured_over_predicted" not in res.stdout
    res = run("sweep", "-d", 4, "-H", "8,16", "--cells", "lstm,gru", "--batch", "2", "--predict", "-q")
    assert res.exit_code == 0, res.output
    assert "predicted_ms" in res.stdout
    line = one_line_error(run("compare", "-d", 4, "-H", 8, "--device", "cpu"))
    assert "--bench or --predict" in line
    line = one_line_error(run("sweep", "-d", 4, "-H", 8, "--predict", "--min-time", "1"))
    assert "add --bench" in line


def test_predict_stays_lazy():
    """``import paramcalc`` and the predict module's pure parts import neither torch nor pandas."""
    code = (
        "import sys, paramcalc, paramcalc.timing.predict, paramcalc.timing.merge, paramcalc.cli;"
        "print('torch' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert "predict" in pc.__all__ and "PredictResult" in pc.__all__
    assert pc.predict is P.predict and os.environ.get(G.CACHE_ENV)
