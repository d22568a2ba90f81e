"""Hostile input and faults, driven through the CLI in subprocesses with timeouts.

Every case asserts the exit code, that stderr is one line (no traceback), that nothing hangs or
crashes (no signal death), and the state of the files. The classes follow issue 10: crashes,
tracebacks from exports, parsers, sizes and structures, unbounded work, checks done too late,
injection, leftovers and silence, and the Python API.
"""

from __future__ import annotations

import json
import os
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


def test_sigint_during_a_large_json_export_never_crashes(tmp_path):
    for delay in (0.2, 0.6, 1.0):
        target = tmp_path / "big.json"
        target.write_text("old\n")
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        proc = subprocess.Popen(
            [sys.executable, "-m", "paramcalc", "count", "lstm", "-d", "8", "-H", "8", "-L", "10000",
             "--bidirectional", "-f", "csv", "--output", str(target)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, 130), (proc.returncode, err[-500:])  # never a signal death
        assert "Traceback" not in err
        content = target.read_text()
        assert content == "old\n" or json.loads(content)["rows"]  # the old file or the whole new one
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
        cli("solve", "lstm", "-d", "28", "--budget", "1e4000", "--output", str(tmp_path / "s.xlsx"))
    )
    assert not (tmp_path / "s.xlsx").exists()


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
    for suffix in (".csv", ".json", ".xlsx", ".md", ".html"):
        out = tmp_path / f"t{suffix}"
        res = cli("inspect", str(hostile_checkpoint), "--by", "tensor", "--output", str(out))
        assert res.returncode in (0, 1) and "Traceback" not in res.stderr, (suffix, res.stderr)
        if suffix != ".xlsx":  # a zip: its compressed bytes may hold any value
            data = out.read_bytes()
            assert b"\x1b" not in data and b"\x07" not in data
    csv_text = (tmp_path / "t.csv").read_text()
    assert "'=HYPERLINK" in csv_text and "\n=HYPERLINK" not in csv_text and ",=HYPERLINK" not in csv_text
    import openpyxl

    cells = [c.value for row in openpyxl.load_workbook(tmp_path / "t.xlsx").active.iter_rows() for c in row]
    assert not any(isinstance(v, str) and ("\x1b" in v or "\x07" in v) for v in cells)
    assert not any(isinstance(v, str) and v.startswith("=") for v in cells)
    assert any(isinstance(v, str) and v.startswith("'=HYPERLINK") for v in cells)
    json.loads((tmp_path / "t.json").read_text())  # valid JSON despite the surrogate


def test_a_300_character_output_name_is_one_line(tmp_path):
    assert "longer than" in one_line(
        cli("count", "lstm", "-d", "5", "-H", "5", "--output", str(tmp_path / ("x" * 300 + ".csv")))
    )


def test_a_full_disk_during_an_xlsx_export_is_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("openpyxl")
    import errno

    from paramcalc.cli import run
    from paramcalc.results import export

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


def test_flop_check_on_cpu_is_bounded_and_refused_before_allocating():
    start = time.perf_counter()
    res = cli("cost", "lstm", "-d", "1024", "-H", "1024", "--batch", "10000", "--seq-len", "1000",
              "--flop-check", "--flop-device", "cpu", timeout=60)  # fmt: skip
    assert res.returncode == 0 and "extrapolated exactly" in res.stdout, res.stderr[-300:]
    assert time.perf_counter() - start < 45
    line = one_line(cli("cost", "lstm", "-d", "65536", "-H", "65536", "--batch", "2", "--seq-len", "2",
                        "--flop-check", "--flop-device", "cpu", timeout=30))  # fmt: skip
    assert "not enough memory" in line


def test_flop_check_on_meta_of_a_long_sequence_is_fast():
    start = time.perf_counter()
    res = cli("cost", "lstm", "-d", "28", "-H", "64", "--batch", "100000", "--seq-len", "100000", "--train",
              "--flop-check", "--no-elementwise", timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "extrapolated" in res.stdout and time.perf_counter() - start < 30
    assert res.stdout.count(" ok") >= 2  # forward and forward+backward match the cost model exactly


def test_a_deep_bench_is_bounded_by_min_time():
    start = time.perf_counter()
    res = cli("bench", "lstm", "-d", "8", "-H", "8", "-L", "2000", "--min-time", "0.1", timeout=180)
    assert res.returncode == 0, res.stderr[-500:]
    assert time.perf_counter() - start < 120


# --- checks done too late ---------------------------------------------------------------------------


def test_output_targets_are_checked_before_any_work(tmp_path):
    start = time.perf_counter()
    line = one_line(
        cli("bench", "lstm", "-d", "28", "-H", "16", "--min-time", "30", "--output", "/proc/b.json")
    )
    assert "cannot create a file" in line and time.perf_counter() - start < 20
    ok = tmp_path / "ok.csv"
    line = one_line(cli("sweep", "-d", "28", "-H", "16", "--output", str(ok), "--plot", "/proc/p.png"))
    assert not ok.exists()


# --- injection --------------------------------------------------------------------------------------


def test_escape_sequences_in_an_argument_are_shown_escaped():
    res = cli("count", "\x1b[2J\x1b]0;title\x07", "-d", "5", "-H", "5")
    line = one_line(res)
    assert "\x1b" not in res.stderr and "\\x1b" in line


# --- leftovers and silence ----------------------------------------------------------------------------


def test_sigterm_while_a_temporary_file_exists_removes_it(tmp_path):
    from paramcalc.results.export import Terminated, atomic_write

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
    spec = pc.RecurrentSpec("lstm", 28, 256)
    start = time.perf_counter()
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
    assert time.perf_counter() - start < 10
