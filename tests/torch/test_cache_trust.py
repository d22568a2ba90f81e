"""What the GEMM cache trusts (issues 21 and 22): suspect timings are timed again or named in a
note, physical bounds, and a cache file that is hostile (a link, a FIFO, a held lock, nested
JSON, absurd numbers) never hangs, never writes through, never ends in an internal error.

Every cache, link and FIFO is built in a temporary folder. The suspicion rule is tested with a
fixed :class:`~paramcalc.timing.gemm.Probe` (what the device does "now"), so no assertion
depends on the machine's load; one test runs the real probe against a timing 50 × too slow.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import filelock
import pytest

from paramcalc import RecurrentSpec, Workload
from paramcalc.timing import gemm as G
from paramcalc.timing import gemmcache
from paramcalc.timing import predict as P
from tests.helpers import invoke

FAST = 0.002
TINY = ["--batch", "2", "--seq-len", "3", "--min-time", "0.002", "-q", "--threads", "1"]
#: The probe every deterministic test uses: 1 µs per call, 10 GMAC/s, 10 GB/s.
FLOOR, RATE, BW = 1e-6, 1e10, 1e10


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch) -> Path:
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv(G.CACHE_ENV, str(folder))
    monkeypatch.setattr(G, "SPIN_UP_S", 0.0)
    monkeypatch.setattr(G, "WARMUP_S", 0.001)
    monkeypatch.setitem(G.COPY_BYTES, "cpu", 4 * 2**20)
    return folder


def timer(**kw) -> G.DeviceTimer:
    return P.make_timer("cpu", threads=1, min_run_time=FAST, **kw)


def fixed_probe(t: G.DeviceTimer) -> G.DeviceTimer:
    """``t`` judges against FLOOR, RATE and BW instead of measuring the device."""
    t._probes[("fp32", "ieee")] = (FLOOR, RATE)
    t._copy_probe = BW
    return t


def estimate(m: int, k: int, n: int) -> float:
    """The probe's time for a fp32 GEMM, by hand: floor + MACs / rate + operand bytes / bandwidth."""
    return FLOOR + m * k * n / RATE + 4 * (m * k + n * k + m * n) / BW


def entry(median_s: float, **more) -> dict:
    return {"median_s": median_s, "iqr_s": 0.0, "runs": 5, "noisy": False, "tries": 1, **more}


def write_cache(t: G.DeviceTimer, gemm: dict | None = None, copy: dict | None = None, **raw) -> Path:
    doc = {**t.identity(), "gemm": gemm or {}, "copy": copy or {}, **raw}
    t.path.parent.mkdir(parents=True, exist_ok=True)
    t.path.write_text(json.dumps(doc))
    return t.path


def gkey(m: int, k: int, n: int) -> str:
    return f"fp32:ieee:{m}x{k}x{n}:t1"


# --- the rule --------------------------------------------------------------------------------


def test_the_probes_estimate_is_the_stated_sum():
    assert G.Probe(FLOOR, RATE, BW).gemm_s(64, 32, 256, 4) == pytest.approx(estimate(64, 32, 256))


def stub_timings(t: G.DeviceTimer, seconds: float = 2e-5) -> G.DeviceTimer:
    """Whatever ``t`` times now takes ``seconds`` (the tests judge the rule, not the machine)."""
    now = G.Timing(seconds, 0.0, 5, False)
    t._time_gemm = lambda req, tile: now
    t._time_copy = lambda: now
    t._time_op = lambda: now
    return t


@pytest.mark.parametrize(
    ("factor", "suspect"),
    [(50.0, True), (21.0, True), (19.0, False), (8.0, False), (1.0, False)],
)
def test_a_timing_many_times_the_estimate_is_suspect(factor, suspect):
    t = fixed_probe(timer())
    req = G.GemmRequest(64, 32, 256)
    (tile,) = t.tiles(req)
    have = G.Timing(factor * estimate(64, 32, 256), 0.0, 5, False)
    assert t.judge_gemm(req, tile, have) is suspect
    if suspect:
        assert f"{factor:.0f} × the probe's estimate" in t.suspects[gkey(64, 32, 256)].why


def test_a_timing_is_never_judged_too_fast():
    """Load only slows a timing down; a probe taken in a busy moment must not condemn a good one."""
    t = fixed_probe(timer())
    req = G.GemmRequest(64, 32, 256)
    assert not t.judge_gemm(req, t.tiles(req)[0], G.Timing(estimate(64, 32, 256) / 1000, 0.0, 5, False))


def test_taken_under_load_and_used_on_a_quiet_machine_is_suspect(monkeypatch):
    req = G.GemmRequest(64, 32, 256)
    plausible = 2 * estimate(64, 32, 256)
    busy = G.Timing(plausible, 0.0, 5, False, load=7.5, cpus=2)
    monkeypatch.setattr(G, "host_load", lambda: (0.3, 2))
    t = fixed_probe(timer())
    assert t.judge_gemm(req, t.tiles(req)[0], busy)
    assert "taken under load 7.5 on 2 CPUs" in t.suspects[gkey(64, 32, 256)].why
    monkeypatch.setattr(G, "host_load", lambda: (9.0, 2))  # still busy: only the probe judges
    t = fixed_probe(timer())
    assert not t.judge_gemm(req, t.tiles(req)[0], busy)
    assert busy.busy and not G.Timing(plausible, 0.0, 5, False, load=2.0, cpus=2).busy  # 1 task per CPU


def test_a_poisoned_entry_is_timed_again_and_the_prediction_says_so(cache_dir):
    """The issue's reproducer in miniature: one cached GEMM 50 × too slow."""
    spec, wl = RecurrentSpec("rnn", 32, 64), Workload(16, 4)  # GEMMs (64, 32, 64) and (16, 64, 64)
    poisoned = 50 * estimate(64, 32, 64)
    write_cache(timer(), gemm={gkey(64, 32, 64): entry(poisoned)})
    t = stub_timings(fixed_probe(timer()), 2e-5)
    r = P.predict(spec, wl, timer=t)
    assert t.suspects[gkey(64, 32, 64)].retimed_s == 2e-5
    assert {(g.m, g.k, g.n): g.seconds_per_call for g in r.gemms}[(64, 32, 64)] == 2e-5
    (note,) = [n for n in r.notes() if "looked wrong" in n]
    assert (
        note.startswith("the cache had 1 timing that")
        and "GEMM (64, 32, 64) fp32" in note
        and "timed again" in note
    )
    assert "50 × the probe's estimate" in note
    saved = json.loads(t.path.read_text())["gemm"][gkey(64, 32, 64)]
    assert saved["median_s"] == 2e-5 and saved["tries"] == 2


def test_a_suspect_timed_again_keeps_the_faster_of_the_two(cache_dir, monkeypatch):
    """Taken busy, used quiet: timed again; a new timing slower than the old (a busy moment
    again) does not replace it."""
    monkeypatch.setattr(G, "host_load", lambda: (0.2, 2))
    write_cache(timer(), gemm={gkey(8, 8, 8): entry(3e-6, load=6.0, cpus=2)})
    t = stub_timings(fixed_probe(timer()), 9e-6)
    assert t.gemm_time(G.GemmRequest(8, 8, 8)).seconds == 3e-6 and t.timed == 1
    assert "taken under load 6.0" in t.suspect_notes([gkey(8, 8, 8)])[0]
    assert json.loads(t.path.read_text())["gemm"][gkey(8, 8, 8)]["tries"] == 2


def test_a_poisoned_entry_timed_enough_is_used_with_a_note(cache_dir):
    spec, wl = RecurrentSpec("rnn", 32, 64), Workload(16, 4)
    poisoned = 50 * estimate(64, 32, 64)
    write_cache(timer(), gemm={gkey(64, 32, 64): entry(poisoned, tries=G.MAX_TRIES)})
    t = fixed_probe(timer())
    r = P.predict(spec, wl, timer=t)
    share = next(g for g in r.gemms if (g.m, g.k, g.n) == (64, 32, 64))
    assert share.seconds_per_call == poisoned  # not timed a third time ...
    (note,) = [n for n in r.notes() if "wrong for this device now but" in n]
    assert "uses it as cached and may be off" in note  # ... but said so
    assert "refresh" in note and "--" not in note


def test_a_plausible_entry_is_used_as_cached(cache_dir):
    spec, wl = RecurrentSpec("rnn", 32, 64), Workload(16, 4)
    fine = 3 * estimate(64, 32, 64)
    write_cache(timer(), gemm={gkey(64, 32, 64): entry(fine), gkey(16, 64, 64): entry(estimate(16, 64, 64))})
    t = fixed_probe(timer())
    r = P.predict(spec, wl, timer=t)
    assert {(g.m, g.k, g.n): g.seconds_per_call for g in r.gemms}[(64, 32, 64)] == fine
    assert not t.suspects and not any("wrong for this device" in n for n in r.notes())


def test_a_poisoned_copy_or_overhead_entry_is_timed_again(cache_dir):
    t0 = timer()
    slow_copy = 50 * 2 * t0.copy_bytes / BW
    write_cache(t0, copy={"t1": entry(slow_copy), "op:t1": entry(50 * FLOOR)})
    t = stub_timings(fixed_probe(timer()), 2e-6)
    assert t.copy_bandwidth() == 2 * t.copy_bytes / 2e-6
    assert t.op_seconds() == 2e-6
    assert t.suspects["t1"].retimed_s == 2e-6 and t.suspects["op:t1"].retimed_s == 2e-6
    assert t.timed == 2
    assert len(t.suspect_notes(["t1", "op:t1"])) == 1


def test_verify_false_trusts_the_cache(cache_dir):
    write_cache(timer(), gemm={gkey(64, 32, 64): entry(1000.0)})
    t = timer(verify=False)
    assert t.gemm_time(G.GemmRequest(64, 32, 64)).seconds == 1000.0 and t.timed == 0 and not t.suspects


def test_the_real_probe_catches_a_timing_50_times_too_slow(cache_dir):
    """Done when (issue 21): time a small prediction, make every cached GEMM 50 × slower (as a
    busy moment would, with no load recorded, as in a 0.2 file), predict again."""
    spec, wl = RecurrentSpec("lstm", 32, 64), Workload(16, 4)
    first = P.predict(spec, wl, timer=timer())
    path = Path(first.cache_path)
    doc = json.loads(path.read_text())
    for v in doc["gemm"].values():
        v.update(median_s=50 * v["median_s"], noisy=False, tries=1)
        v.pop("load", None), v.pop("cpus", None)
    path.write_text(json.dumps(doc))
    t = timer()
    second = P.predict(spec, wl, timer=t)
    keys = {
        t.gemm_key(g, tile)
        for g in (G.GemmRequest(s.m, s.k, s.n) for s in second.gemms)
        for tile in t.tiles(g)
    }
    assert keys <= set(t.suspects), (keys, t.suspects)
    assert all(t.suspects[k].retimed_s is not None for k in keys)
    assert any("looked wrong for this device now, timed again" in n for n in second.notes())


# --- old files, bounds, malformed files ------------------------------------------------------


def test_an_old_cache_without_load_still_loads(cache_dir):
    t0 = timer()
    write_cache(t0, gemm={gkey(4, 4, 4): {"median_s": 2e-6, "iqr_s": 1e-7, "runs": 5, "noisy": False}})
    gemm, _, problem = G.read_cache(t0.path, t0.identity())
    assert problem == "" and gemm[gkey(4, 4, 4)].load is None and not gemm[gkey(4, 4, 4)].busy
    assert "load" not in gemm[gkey(4, 4, 4)].to_json()


def test_new_entries_carry_their_spread_and_load(cache_dir):
    t = timer()
    t.gemm_time(G.GemmRequest(8, 8, 8))
    saved = json.loads(t.path.read_text())["gemm"][gkey(8, 8, 8)]
    assert saved["iqr_s"] >= 0 and saved["cpus"] >= 1
    if hasattr(os, "getloadavg"):
        assert saved["load"] >= 0


@pytest.mark.parametrize(
    "literal",
    ["1e300", "1e-300", "-1", "0", "NaN", "Infinity", "-Infinity", "1" + "0" * 400, "4000"],
)
def test_timings_beyond_physical_bounds_are_dropped_with_a_note(cache_dir, literal):
    t0 = timer()
    good = entry(estimate(8, 8, 8))
    doc = {**t0.identity(), "gemm": {gkey(8, 8, 8): good, gkey(4, 4, 4): entry(123.0)}, "copy": {}}
    t0.path.write_text(json.dumps(doc).replace("123.0", literal))
    t = timer()
    assert "outside physical bounds" in t.cache_problem and gkey(4, 4, 4) in t.cache_problem
    assert gkey(8, 8, 8) in t._gemm and gkey(4, 4, 4) not in t._gemm  # the rest of the file is kept
    r = P.predict(RecurrentSpec("rnn", 4, 4), Workload(1, 1), timer=t)
    assert math.isfinite(r.seconds) and any("outside physical bounds" in n for n in r.notes())


def test_deeply_nested_json_is_a_note_not_a_recursion_error(cache_dir):
    t0 = timer()
    t0.path.write_text('{"gemm": ' + "[" * 200_000 + "]" * 200_000 + "}")
    t = timer()
    assert "nested too deeply" in t.cache_problem
    res = invoke("predict", "rnn", "-d", 4, "-H", 4, *TINY)
    assert res.exit_code == 0, res.output
    assert "nested too deeply" in res.stdout
    assert json.loads(t0.path.read_text())["schema"] == G.SCHEMA  # rebuilt


def test_a_cache_file_over_the_cap_is_ignored(cache_dir, monkeypatch):
    monkeypatch.setattr(gemmcache, "MAX_CACHE_FILE", 100)
    t0 = timer()
    write_cache(t0, gemm={gkey(4, 4, 4): entry(2e-6), gkey(8, 8, 8): entry(2e-6)})
    assert "larger than 100 bytes" in timer().cache_problem


# --- links, FIFOs, locks ------------------------------------------------------------------------


def test_a_link_at_the_cache_path_is_replaced_never_written_through(cache_dir, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("KEEP\n")
    path = timer(cache=False).path
    path.symlink_to(victim)
    t = timer()
    assert "symbolic link: not followed" in t.cache_problem
    res = invoke("predict", "lstm", "-d", 8, "-H", 16, *TINY)
    assert res.exit_code == 0, res.output
    assert victim.read_text() == "KEEP\n"
    assert not path.is_symlink() and json.loads(path.read_text())["schema"] == G.SCHEMA


def test_a_link_to_a_valid_cache_is_not_read_either(cache_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere.json"
    t0 = timer(cache=False)
    elsewhere.write_text(json.dumps({**t0.identity(), "gemm": {gkey(4, 4, 4): entry(1000.0)}, "copy": {}}))
    t0.path.symlink_to(elsewhere)
    t = timer(verify=False)
    assert t._gemm == {} and "symbolic link" in t.cache_problem


def test_a_fifo_at_the_cache_path_neither_blocks_nor_is_written_into(cache_dir):
    path = timer(cache=False).path
    os.mkfifo(path)
    t = timer()  # opening a FIFO without O_NONBLOCK would wait here for a writer, forever
    assert "is a FIFO" in t.cache_problem
    r = P.predict(RecurrentSpec("rnn", 4, 4), Workload(1, 2), timer=t)
    assert any("FIFO" in n for n in r.notes())
    assert stat.S_ISREG(os.lstat(path).st_mode)  # replaced by the saved file


def test_a_lock_held_elsewhere_is_a_bounded_wait_and_a_note(cache_dir, monkeypatch):
    monkeypatch.setattr(G, "LOCK_TIMEOUT_S", 0.05)
    t = timer()
    t.folder.mkdir(parents=True, exist_ok=True)
    held = filelock.FileLock(str(t.lock_path))  # another process's lock: its own open file
    held.acquire()
    try:
        r = P.predict(RecurrentSpec("rnn", 4, 4), Workload(1, 2), timer=t)
    finally:
        held.release()
    (note,) = [n for n in r.notes() if "was not saved" in n]
    assert "another process has held its lock for 0.05 s" in note
    assert not t.path.exists()  # nothing written without the lock
    t.save()  # once the lock is free
    assert t.write_problem == "" and t.path.exists()


def test_a_link_at_the_lock_path_is_not_followed(cache_dir, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("KEEP\n")
    t = timer()
    t.folder.mkdir(parents=True, exist_ok=True)
    t.lock_path.symlink_to(victim)
    P.predict(RecurrentSpec("rnn", 4, 4), Workload(1, 2), timer=t)
    assert "not a regular file" in t.write_problem and "was not saved" in t.write_problem
    assert victim.read_text() == "KEEP\n" and not t.path.exists()


def test_a_new_cache_folder_is_private(cache_dir):
    folder = cache_dir / "sub" / "paramcalc"
    t = P.make_timer("cpu", threads=1, min_run_time=FAST, cache_dir=folder)
    t.gemm_time(G.GemmRequest(4, 4, 4))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


# --- many distinct lengths ----------------------------------------------------------------------


def test_thousands_of_lengths_time_a_bucketed_few(monkeypatch):
    monkeypatch.setattr(P, "MAX_EXACT_GEMMS", 16)  # 60 distinct lengths stand in for thousands
    lengths = list(range(1, 61))
    wl = Workload.packed(lengths)
    t = timer()
    r = P.predict(RecurrentSpec("rnn", 4, 4), wl, timer=t)
    grid = P.row_grid(60)
    recurrent_rows = {g.m for g in r.gemms if g.m < 60}
    assert recurrent_rows == {P.row_bucket(m, grid) for m in range(1, 60)}
    assert len(r.gemms) == len(recurrent_rows) + 2  # + the full batch and the input GEMM
    assert t.timed < 61 and r.gemm_call_count == sum(g.calls for g in P.gemm_calls(r.spec, wl))
    (note,) = [n for n in r.notes() if "distinct GEMM shapes" in n]
    assert "61 distinct GEMM shapes (60 distinct lengths)" in note and "errs high" in note
