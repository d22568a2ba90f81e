"""Hostile input and faults, driven through the CLI in subprocesses with timeouts.

Every case asserts the exit code, that stderr is one line (no traceback), that nothing hangs or
crashes (no signal death), and the state of the files. The classes follow issue 10: crashes,
tracebacks from exports, parsers, sizes and structures, unbounded work, checks done too late,
injection, leftovers and silence, and the Python API.
"""

from __future__ import annotations

import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import paramcalc as pc

pytestmark = pytest.mark.slow


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 60, stdin=None, **popen
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(
        [sys.executable, "-m", "paramcalc", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        stdin=stdin,
        **popen,
    )


def one_line(res: subprocess.CompletedProcess, code: int = 2) -> str:
    assert res.returncode == code, (res.returncode, res.stdout[-500:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def no_temp_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".paramcalc-")]


# --- crashes ----------------------------------------------------------------------------------


def test_threads_beyond_the_cpus_is_one_line_not_a_segfault():
    line = one_line(
        cli("bench", "lstm", "-d", "28", "-H", "16", "--batch", "1", "--seq-len", "1", "--threads", "100000")
    )
    assert "threads must be at most" in line
    for cmd in (["compare", "-d", "28", "-H", "16", "--bench"], ["sweep", "-d", "28", "-H", "16", "--bench"]):
        assert "threads" in one_line(cli(*cmd, "--threads", "100000"))


#: Runs ``python -m paramcalc ARGS`` after arranging for it to stop at one point (``STOP_AT``):
#: there it writes a byte to the pipe ``READY_FD`` and waits for the test's SIGINT. The signal
#: thus lands at a known moment, whatever the machine's load: no sleep decides when.
SIGINT_BOOT = textwrap.dedent(
    """
    import importlib.abc, os, runpy, signal, sys, time

    # A shell without job control starts background jobs with SIGINT ignored, and an ignored
    # signal stays ignored across exec (Python then installs no handler): put back the handler
    # an interactive shell's child has, so the test does not depend on how it was launched.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def ready_then_wait():
        os.write(int(os.environ["READY_FD"]), b"r")
        time.sleep(120)  # the SIGINT interrupts this (KeyboardInterrupt)
        raise SystemExit("no SIGINT came")

    class StopAtImport(importlib.abc.MetaPathFinder):
        def __init__(self, name):
            self.name = name

        def find_spec(self, name, path=None, target=None):
            if name == self.name:
                sys.meta_path.remove(self)
                ready_then_wait()
            return None

    point = os.environ["STOP_AT"]
    if point.startswith("import "):  # while this module is being imported
        sys.meta_path.insert(0, StopAtImport(point.split()[1]))
    elif point == "check":  # the output target is being checked: no work done yet
        import paramcalc.render.export as E
        real_check = E.check_export_target
        def check_export_target(path):
            ready_then_wait()
        E.check_export_target = check_export_target
    elif point == "rename":  # the temporary file is complete, not yet renamed over the target
        import paramcalc.core.writes as E
        real_write = E.atomic_write
        def atomic_write(target, write):
            def stop_after(tmp):
                write(tmp)
                ready_then_wait()
            real_write(target, stop_after)
        E.atomic_write = atomic_write
    sys.argv = ["paramcalc", *sys.argv[1:]]
    runpy.run_module("paramcalc", run_name="__main__", alter_sys=True)
    """
)

SIGINT_POINTS = {
    "import paramcalc.cli": ["count", "lstm", "-d", "8", "-H", "8", "-L", "100", "-f", "csv"],
    "import torch": ["bench", "lstm", "-d", "4", "-H", "4", "--min-time", "0.01"],
    "check": ["count", "lstm", "-d", "8", "-H", "8", "-L", "100", "-f", "csv"],
    "rename": ["count", "lstm", "-d", "8", "-H", "8", "-L", "10000", "--bidirectional", "-f", "csv"],
}


@pytest.mark.parametrize("point", list(SIGINT_POINTS))
def test_sigint_at_any_point_is_aborted_not_a_crash(tmp_path, point):
    """Ctrl-C while the CLI is imported, while torch is imported, before any work, and while a
    finished temporary file waits to replace the target: "Aborted.", exit 130, no traceback,
    the old file intact, no temporary file left. The child says when it is there (a pipe)."""
    target = tmp_path / "big.json"
    target.write_text("old\n")
    read_fd, write_fd = os.pipe()
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "READY_FD": str(write_fd),
        "STOP_AT": point,
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGINT_BOOT, *SIGINT_POINTS[point], "--output", str(target)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, pass_fds=(write_fd,),
    )  # fmt: skip
    os.close(write_fd)
    try:
        ready = select.select([read_fd], [], [], 120)[0] and os.read(read_fd, 1)  # a hang guard only
        assert ready == b"r", ("the child never reached", point, proc.poll())
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        os.close(read_fd)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err[-1500:])
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "Aborted."
    assert target.read_text() == "old\n"
    no_temp_files(tmp_path)


# --- tracebacks from exports ------------------------------------------------------------------------


def test_integers_beyond_int64_export_losslessly(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    out = tmp_path / "big.parquet"
    res = cli("count", "lstm", "-d", "2147483647", "-H", "2147483647", "-L", "10000", "--bidirectional",
              "--by", "total", "--output", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    h = 2**31 - 1  # by hand: 2 directions x (layer 0 + 9,999 layers of input 2Dh)
    want = 2 * (4 * (h * h + h * h + 2 * h) + 9_999 * 4 * (h * 2 * h + h * h + 2 * h))
    assert int(pd.read_parquet(out)["params"][0]) == want


def test_a_budget_beyond_any_model_is_one_line(tmp_path):
    assert "out of range" in one_line(
        cli("solve", "lstm", "-d", "28", "--budget", "1e4000", "--output", str(tmp_path / "s.csv"))
    )
    assert not (tmp_path / "s.csv").exists()


@pytest.fixture
def hostile_checkpoint(tmp_path) -> Path:
    sd = {
        "rnn.weight_ih_l0": torch.zeros(8, 3),
        "rnn.weight_hh_l0": torch.zeros(8, 2),
        "\x1b]0;pwned\x07\x1b[2Jevil.weight": torch.zeros(3),
        '=HYPERLINK("http://x","y").weight': torch.zeros(2),
        "lone\ud800.surrogate": torch.zeros(1),
    }
    path = tmp_path / "hostile.pt"
    torch.save(sd, path)
    return path


def test_hostile_tensor_names_are_printed_and_exported_safely(hostile_checkpoint, tmp_path):
    res = cli("inspect", str(hostile_checkpoint), "--by", "tensor")
    assert res.returncode in (0, 1) and "Traceback" not in res.stderr
    assert "\x1b" not in res.stdout and "\x07" not in res.stdout and "\\x1b" in res.stdout
    xlsx = importlib.util.find_spec("openpyxl") is not None  # the [export] extra
    for suffix in (".csv", ".json", ".md", ".html", *([".xlsx"] if xlsx else [])):
        out = tmp_path / f"t{suffix}"
        res = cli("inspect", str(hostile_checkpoint), "--by", "tensor", "--output", str(out))
        assert res.returncode in (0, 1) and "Traceback" not in res.stderr, (suffix, res.stderr)
        if suffix != ".xlsx":  # a zip: its compressed bytes may hold any value
            data = out.read_bytes()
            assert b"\x1b" not in data and b"\x07" not in data
    csv_text = (tmp_path / "t.csv").read_text()
    assert "'=HYPERLINK" in csv_text and "\n=HYPERLINK" not in csv_text and ",=HYPERLINK" not in csv_text
    json.loads((tmp_path / "t.json").read_text())  # valid JSON despite the surrogate
    if not xlsx:
        pytest.skip("the .xlsx half needs openpyxl (the [export] extra)")
    import openpyxl

    cells = [c.value for row in openpyxl.load_workbook(tmp_path / "t.xlsx").active.iter_rows() for c in row]
    assert not any(isinstance(v, str) and ("\x1b" in v or "\x07" in v) for v in cells)
    assert not any(isinstance(v, str) and v.startswith("=") for v in cells)
    assert any(isinstance(v, str) and v.startswith("'=HYPERLINK") for v in cells)


def test_a_300_character_output_name_is_one_line(tmp_path):
    assert "longer than" in one_line(
        cli("count", "lstm", "-d", "5", "-H", "5", "--output", str(tmp_path / ("x" * 300 + ".csv")))
    )


def test_a_full_disk_during_an_xlsx_export_is_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("openpyxl")
    import errno

    from paramcalc.cli import run
    from paramcalc.render import export

    def full(target, data):
        raise pc.ParamcalcError(f"cannot write {str(target)!r}: {os.strerror(errno.ENOSPC)}")

    monkeypatch.setattr(export, "write_bytes", full)
    code = run(["count", "lstm", "-d", "5", "-H", "5", "--output", str(tmp_path / "x.xlsx")])
    err = capsys.readouterr().err
    assert code == 2 and "No space left" in err and "Exception ignored" not in err
    assert len([x for x in err.splitlines() if x]) == 1


# --- parsers and sizes --------------------------------------------------------------------------


@pytest.mark.parametrize("budget", ["1e5000", "1e1000000", "9" * 5000])
def test_huge_budgets(budget):
    assert "budget" in one_line(cli("solve", "lstm", "-d", "28", "--budget", budget))
    with pytest.raises(pc.ParamcalcError):
        pc.parse_count(budget)


@pytest.mark.parametrize("hidden", ["1:1e40", "1:99999999999999", "1:" + "9" * 5000])
def test_huge_ranges(hidden):
    line = one_line(cli("sweep", "-d", "28", "-H", hidden))
    assert len(line) < 500


def test_a_5000_digit_size_and_seed():
    line = one_line(cli("count", "lstm", "-d", "5", "-H", "9" * 5000))
    assert len(line) < 500
    seed = one_line(cli("bench", "lstm", "-d", "5", "-H", "5", "--seed", "1180591620717411303424"))
    assert "seed" in seed


def test_sizes_torch_cannot_allocate():
    line = one_line(cli("check", "lstm", "-d", "2147483647", "-H", "2147483647", "--no-torchinfo"))
    assert "more than torch can index" in line


# --- structures ---------------------------------------------------------------------------------


FACTORIES = """
import sys
import torch
from torch import nn

def lazy():
    return nn.Sequential(nn.LSTM(4, 8), nn.LazyLinear(3))

def deep():
    m = nn.LSTM(4, 8)
    for _ in range(3000):
        m = nn.Sequential(m)
    return m

def exits():
    sys.exit(0)
"""


def test_structures(tmp_path):
    (tmp_path / "hostile_models.py").write_text(textwrap.dedent(FACTORIES))
    assert "not initialised" in one_line(cli("inspect", "hostile_models:lazy", cwd=tmp_path))
    deep = cli("inspect", "hostile_models:deep", cwd=tmp_path)
    assert deep.returncode == 0 and "Traceback" not in deep.stderr, deep.stderr[-300:]
    assert "sys.exit(0)" in one_line(cli("inspect", "hostile_models:exits", cwd=tmp_path))
    nested = tmp_path / "nested.toml"
    nested.write_text("x = " + "[" * 3000 + "]" * 3000 + "\n")
    assert "nested too deeply" in one_line(cli("report", str(nested)))


def test_special_files_are_refused_without_hanging(tmp_path):
    assert "only regular files are read" in one_line(cli("report", "/dev/zero", timeout=20))
    assert "only regular files are read" in one_line(cli("inspect", "/dev/zero", timeout=20))
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    assert "only regular files are read" in one_line(cli("report", str(fifo), timeout=20))
    fifo_pt = tmp_path / "fifo.pt"
    os.mkfifo(fifo_pt)
    assert "only regular files are read" in one_line(cli("inspect", str(fifo_pt), timeout=20))


def test_full_and_closed_stdout():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with open("/dev/full", "w") as full:
        res = subprocess.run(
            [sys.executable, "-m", "paramcalc", "count", "lstm", "-d", "5", "-H", "5"],
            stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=60,
        )  # fmt: skip
    assert res.returncode == 2 and "No space left" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run(
        f"{sys.executable} -m paramcalc count lstm -d 5 -H 5 >&-",
        shell=True,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert res.returncode == 2 and "standard output is closed" in res.stderr


# --- unbounded work -------------------------------------------------------------------------------


# The timeouts below only guard against a hang; what is asserted is the work done, never a time.


def test_flop_check_on_cpu_is_bounded_and_refused_before_allocating():
    res = cli("cost", "lstm", "-d", "1024", "-H", "1024", "--batch", "10000", "--seq-len", "1000",
              "--flop-check", "--flop-device", "cpu", timeout=600)  # fmt: skip
    assert res.returncode == 0 and "extrapolated exactly" in res.stdout, res.stderr[-300:]
    line = one_line(cli("cost", "lstm", "-d", "65536", "-H", "65536", "--batch", "2", "--seq-len", "2",
                        "--flop-check", "--flop-device", "cpu", timeout=600))  # fmt: skip
    assert "not enough memory" in line


def test_flop_check_on_meta_of_a_long_sequence_is_extrapolated():
    res = cli("cost", "lstm", "-d", "28", "-H", "64", "--batch", "100000", "--seq-len", "100000", "--train",
              "--flop-check", "--no-elementwise", timeout=600)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "extrapolated" in res.stdout
    assert res.stdout.count(" ok") >= 2  # forward and forward+backward match the cost model exactly


def test_a_deep_bench_runs_its_module_only_as_often_as_min_time_needs(monkeypatch):
    """2,000 layers: however long one call takes, bench runs the whole module twice (the first
    call is also a timed one) and each probe once, on one step; counted, not timed."""
    import paramcalc.bridge.driver as driver
    import paramcalc.timing.benchmark as B

    clock = [0.0]
    full = []
    forward = driver.Case.forward

    def counted(self):
        if self.spec.num_layers == 2000 and len(self.step_batches) == self.workload.steps:
            clock[0] += 1.0  # a call "takes" a second on the fake clock: longer than --min-time
            full.append(1)
        return forward(self)

    monkeypatch.setattr(driver.Case, "forward", counted)
    monkeypatch.setattr(B, "timer_for", lambda dev: lambda: clock[0])
    spec = pc.RecurrentSpec("lstm", 8, 8, num_layers=2000)
    r = pc.bench(spec, pc.Workload(1, 2), min_run_time=0.1, threads=1, predict=False)
    assert len(full) == 2 and r.times == pytest.approx((1.0, 1.0))


# --- checks done too late ---------------------------------------------------------------------------


def test_output_targets_are_checked_before_any_work(tmp_path, monkeypatch):
    import paramcalc.timing.benchmark as B
    from tests.helpers import invoke, one_line_error

    monkeypatch.setattr(B, "bench", lambda *a, **k: pytest.fail("timed before checking the output"))
    line = one_line_error(
        invoke("bench", "lstm", "-d", "28", "-H", "16", "--min-time", "30", "--output", "/proc/b.json")
    )
    assert "cannot create a file" in line
    ok = tmp_path / "ok.csv"
    line = one_line_error(invoke("sweep", "-d", "28", "-H", "16", "--output", ok, "--plot", "/proc/p.png"))
    assert "cannot create a file" in line and not ok.exists()


# --- injection --------------------------------------------------------------------------------------


def test_escape_sequences_in_an_argument_are_shown_escaped():
    res = cli("count", "\x1b[2J\x1b]0;title\x07", "-d", "5", "-H", "5")
    line = one_line(res)
    assert "\x1b" not in res.stderr and "\\x1b" in line


# --- leftovers and silence ----------------------------------------------------------------------------


def test_sigterm_while_a_temporary_file_exists_removes_it(tmp_path):
    from paramcalc.core.writes import Terminated, atomic_write

    target = tmp_path / "r.csv"
    target.write_text("old\n")

    def write(tmp: str) -> None:
        Path(tmp).write_text("partial")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)

    with pytest.raises(Terminated):
        atomic_write(target, write)
    assert target.read_text() == "old\n"
    no_temp_files(tmp_path)


def test_options_that_would_be_ignored_are_errors():
    root = Path(__file__).resolve().parents[2]
    toml = "data/architectures/mnist_rows_lstm.toml"
    assert "--device only applies with --check" in one_line(cli("report", toml, "--device", "cpu", cwd=root))
    assert "--multiple-of only applies" in one_line(
        cli("compare", "-d", "28", "-H", "64", "--multiple-of", "8")
    )


def test_an_output_symlink_is_written_through(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    res = cli("count", "lstm", "-d", "5", "-H", "5", "--output", str(link))
    assert res.returncode == 0, res.stderr
    assert link.is_symlink() and "weight_ih_l0" in real.read_text()


# --- the Python API ----------------------------------------------------------------------------------


def test_the_api_never_leaks_raw_errors():
    """Each bad call is refused before it expands anything: under 32 MiB of Python allocations
    (a measure of the work done that does not depend on the machine's load)."""
    import tracemalloc

    spec = pc.RecurrentSpec("lstm", 28, 256)
    for name in ("total_params", "check", "sweep", "parse_count", "bench"):
        getattr(pc, name)  # the lazy imports happen before the measurement
    tracemalloc.start()
    for call in (
        lambda: pc.total_params({}),
        lambda: pc.check(spec, device=None),
        lambda: pc.sweep(spec, hidden_sizes=range(1, 10**12)),
        lambda: pc.sweep(spec, hidden_sizes="1:" + "9" * 5000),
        lambda: pc.parse_count("1e1000000"),
        lambda: pc.bench(spec, threads=10**6),
    ):
        with pytest.raises(pc.ParamcalcError):
            call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 32 * 2**20, peak
