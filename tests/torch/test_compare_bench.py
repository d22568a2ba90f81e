"""compare and sweep with ``--bench``: the timing columns, the memory check before any timing,
the progress bar and the README's main job. Timing values are checked for consistency only.
"""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import pytest
import torch

import paramcalc as pc
import paramcalc.bridge.devices as devices
import paramcalc.cli.options as options
import paramcalc.timing.benchmark as B
from paramcalc import ParamcalcError, RecurrentSpec, Workload
from tests.helpers import invoke, one_line_error

FAST = "0.01"


@pytest.mark.slow
def test_compare_bench_columns_are_consistent():
    w = Workload(batch=3, seq_len=4)
    r = pc.compare(RecurrentSpec("lstm", 4, 8), workload=w, bench=True, min_run_time=0.01, threads=1)
    assert r.benched and r.device == "cpu"
    first = r.rows[0].bench.median_s
    t = r.table()
    assert t.names[-6:] == ["time_ms", "iqr_ms", "tokens_per_s", "gflop_per_s", "kernel", "time_vs_first"]
    for row, rec in zip(r.rows, t.records(), strict=True):
        b = row.bench
        assert b.spec == row.spec and b.workload == w
        assert rec["time_ms"] == pytest.approx(b.median_s * 1e3)
        assert rec["tokens_per_s"] == pytest.approx(12 / b.median_s)
        assert rec["time_vs_first"] == pytest.approx(b.median_s / first)
        assert rec["kernel"] == b.kernel_path
    assert t.records()[0]["time_vs_first"] == 1
    assert r.meta()["threads"] == 1 and r.meta()["torch"] == torch.__version__
    assert any(n.startswith("timed on cpu") for n in r.notes())


@pytest.mark.slow
def test_sweep_bench_rows_carry_their_timings():
    r = pc.sweep(
        RecurrentSpec("gru", 4, 8),
        hidden_sizes=[4, 8],
        batches=2,
        seq_lens=3,
        bench=True,
        min_run_time=0.01,
        threads=1,
    )
    assert r.benched and [row.bench.spec.hidden_size for row in r.rows] == [4, 8]
    for rec in r.table().records():
        assert rec["tokens_per_s"] == pytest.approx(6 / (rec["time_ms"] / 1e3))
    assert "timed on cpu (1 thread)" in r.title()


def test_compare_checks_memory_of_every_row_before_timing(monkeypatch):
    from paramcalc.core.memory import peak_bytes

    timed = []
    w = Workload(64, 28)
    rnn, lstm = (peak_bytes(RecurrentSpec(c, 28, 64), w) * devices.MEMORY_HEADROOM for c in ("rnn", "lstm"))
    assert rnn < lstm
    monkeypatch.setattr(devices, "available_bytes", lambda dev: int((rnn + lstm) / 2))
    monkeypatch.setattr(B, "bench", lambda *a, **k: timed.append(a))
    with pytest.raises(ParamcalcError, match="not enough memory on cpu for the timed run of LSTM"):
        # the RNN fits in 1 MB, the LSTM does not: nothing may be timed
        pc.compare(RecurrentSpec("rnn", 28, 64), ["rnn", "lstm"], workload=w, bench=True)
    assert timed == []


def test_sweep_checks_memory_of_every_row_before_timing(monkeypatch):
    timed = []
    monkeypatch.setattr(devices, "available_bytes", lambda dev: 10**6)
    monkeypatch.setattr(B, "bench", lambda *a, **k: timed.append(a))
    with pytest.raises(ParamcalcError, match="not enough memory"):
        pc.sweep(RecurrentSpec("rnn", 28, 8), hidden_sizes=[8, 512], batches=64, seq_lens=28, bench=True)
    assert timed == []


def test_bad_output_fails_before_anything_is_timed(monkeypatch):
    monkeypatch.setattr(B, "bench", lambda *a, **k: pytest.fail("timed before checking --output"))
    line = one_line_error(invoke("compare", "-d", "4", "-H", "8", "--bench", "--output", "table.txt"))
    assert "unknown suffix '.txt'" in line


def test_meta_device_cannot_be_timed():
    line = one_line_error(invoke("compare", "-d", "4", "-H", "8", "--bench", "--device", "meta"))
    assert line == "Error: the meta device holds no data and cannot be timed: use cpu, cuda or mps"


@pytest.mark.slow
def test_main_job_command(tmp_path, monkeypatch):
    """The README's main job, verbatim: RNN vs LSTM vs GRU, measured on CPU, exported."""
    monkeypatch.chdir(tmp_path)
    args = "compare -d 28 -H 256 -L 2 --batch 64 --seq-len 28 --bench --device cpu --output report.md"
    r = invoke(*args.split(), "--min-time", FAST, "--threads", "1")
    assert r.exit_code == 0, r.output
    text = Path("report.md").read_text()
    assert text.startswith("# RNN vs LSTM vs GRU: d=28, L=2, B=64 T=28 fp32 inference, equal hidden size 256")
    table = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert len(table) == 2 + 3
    for col in (
        "params",
        "macs_per_step",
        "flops_per_seq",
        "param_bytes",
        "train_bytes",
        "time_ms",
        "tokens_per_s",
        "time_vs_first",
    ):
        assert col in table[0]
    assert [ln.split("|")[1].strip() for ln in table[2:]] == ["rnn", "lstm", "gru"]
    assert "819,200" in table[3]  # LSTM(28, 256, 2)
    assert r.stdout.startswith(
        "RNN vs LSTM vs GRU: d=28, L=2, B=64 T=28 fp32 inference, equal hidden size 256"
    )
    assert "timed on cpu" in r.stdout and r.stderr.endswith("wrote report.md\n")


@pytest.mark.slow
def test_sweep_bench_progress_bar(monkeypatch):
    updates: list[int] = []

    class Bar:
        def __init__(self, length, **kwargs):
            updates.append(-length)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            updates.append(n)

    monkeypatch.setattr(options.click, "progressbar", Bar)
    args = ["sweep", "-d", "4", "-H", "4,8", "--cells", "rnn", "--batch", "2", "--seq-len", "3"]
    timed = [*args, "--bench", "--min-time", FAST, "--threads", "1"]
    # stderr is not a terminal here: no bar
    assert invoke(*timed).exit_code == 0 and updates == []

    class TTY:
        def isatty(self):
            return True

    monkeypatch.setattr(options, "sys", types.SimpleNamespace(stderr=TTY()))
    r = invoke(*timed)
    assert r.exit_code == 0, r.output
    assert updates == [-2, 1, 1]  # a bar of 2 configurations, advanced after each
    updates.clear()
    assert invoke(*timed, "--quiet").exit_code == 0 and updates == []
    assert invoke(*args).exit_code == 0 and updates == []  # nothing timed: no bar


@pytest.mark.slow
def test_compare_bench_plot_png_has_a_throughput_panel(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")
    svg = tmp_path / "compare.svg"
    r = invoke(
        "compare", "-d", "4", "-H", "8", "--bench", "--min-time", FAST, "--threads", "1", "--plot", svg, "-q"
    )
    assert r.exit_code == 0, r.output
    text = svg.read_text()
    assert "tokens / s" in text and "Measured throughput (median, IQR)" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compare.svg"]  # no temporary file left


@pytest.mark.slow
def test_one_bias_rows_are_timed_as_the_torch_module_with_a_note():
    r = pc.compare(
        RecurrentSpec("lstm", 4, 8, convention="keras"),
        ["lstm"],
        workload=Workload(2, 3),
        bench=True,
        min_run_time=0.01,
        threads=1,
    )
    assert any(n.startswith("timed as torch.nn.LSTM with two bias vectors") for n in r.notes())


# --- long runs keep what they did ---------------------------------------------------------------


def fake_bench(stop_at: int, seen_files: list | None = None, output: Path | None = None):
    """A bench that 'times' rows in no time (each 1 ms, five runs) and is interrupted (Ctrl-C, a
    KeyboardInterrupt) when asked for row ``stop_at``; before each row it reads ``output``."""
    calls: list[RecurrentSpec] = []

    def bench(spec, workload, **kw):
        calls.append(spec)
        if seen_files is not None and output is not None:
            seen_files.append(output.read_text() if output.exists() else None)
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        c = kw.get("cost_result") or pc.cost(spec, workload)
        return B.BenchResult(
            spec=spec,
            workload=workload,
            cost=c,
            device="cpu",
            device_name="test CPU",
            dtype=workload.dtype,
            train=workload.training,
            threads=1,
            kernel_path="native",
            kernel_ops=(),
            torch_version=torch.__version__,
            seed=0,
            memory_estimate=0,
            times=(1e-3,) * 5,
            median_s=1e-3,
            iqr_s=0.0,
            number_per_run=1,
        )

    return bench, calls


def test_an_interrupted_compare_keeps_a_readable_partial_csv(tmp_path, monkeypatch):
    import pandas as pd

    out = tmp_path / "x.csv"
    seen: list = []
    bench, calls = fake_bench(stop_at=3, seen_files=seen, output=out)
    monkeypatch.setattr(B, "bench", bench)
    r = invoke("compare", "-d", "4", "-H", "8", "--cells", "rnn,lstm,gru", "--bench", "--output", out)
    assert r.exit_code == 130, r.output
    assert len(calls) == 3  # interrupted while timing the third row
    # the file was written after each row, marked partial: valid whenever the run stops
    assert seen[0] is None and seen[1].splitlines()[-1] == "# partial: 1 of 3 rows (the run was interrupted)"
    text = out.read_text()
    assert text.splitlines()[-1] == "# partial: 2 of 3 rows (the run was interrupted)"
    frame = pd.read_csv(out, comment="#")
    assert list(frame["cell"]) == ["rnn", "lstm"] and list(frame["time_ms"]) == [1.0, 1.0]
    # the rows already timed are printed, the interruption said, exit 130 as for any Ctrl-C
    assert r.stdout.startswith("RNN vs LSTM (partial: 2 of 3 rows): d=4")
    assert "\nrnn " in r.stdout and "\ngru " not in r.stdout
    assert "note: partial: the run was interrupted after 2 of 3 rows" in r.stdout
    assert [ln for ln in r.stderr.splitlines() if ln][-2:] == [
        f"interrupted: 2 of 3 rows were timed; kept in {out} (marked partial)",
        "Aborted.",
    ]


def test_an_interrupted_sweep_keeps_a_partial_json(tmp_path, monkeypatch):
    out = tmp_path / "s.json"
    bench, _ = fake_bench(stop_at=4)
    monkeypatch.setattr(B, "bench", bench)
    with pytest.raises(pc.Interrupted) as info:
        pc.sweep(RecurrentSpec("gru", 4, 8), hidden_sizes=[4, 8, 12, 16], bench=True, output=out)
    partial = info.value.partial
    assert isinstance(info.value, KeyboardInterrupt)
    assert partial.partial and partial.planned == 4
    assert [r.spec.hidden_size for r in partial.rows] == [4, 8, 12]
    data = json.loads(out.read_text())
    assert data["partial"] is True and data["rows_planned"] == 4 and len(data["rows"]) == 3
    assert len(data["runs"]) == 3
    assert data["notes"][0].startswith("partial: the run was interrupted after 3 of 4")


def test_a_finished_timed_run_is_not_partial(tmp_path, monkeypatch):
    out = tmp_path / "c.json"
    bench, _ = fake_bench(stop_at=0)
    monkeypatch.setattr(B, "bench", bench)
    r = pc.compare(RecurrentSpec("lstm", 4, 8), ["rnn", "lstm"], bench=True, output=out)
    assert not r.partial
    data = json.loads(out.read_text())
    assert "partial" not in data and len(data["rows"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]


def test_an_interrupt_before_the_first_row_keeps_nothing(tmp_path, monkeypatch):
    out = tmp_path / "x.csv"
    out.write_text("old\n")
    bench, _ = fake_bench(stop_at=1)
    monkeypatch.setattr(B, "bench", bench)
    with pytest.raises(KeyboardInterrupt) as info:
        pc.compare(RecurrentSpec("lstm", 4, 8), ["rnn", "lstm"], bench=True, output=out)
    assert not isinstance(info.value, pc.Interrupted) and out.read_text() == "old\n"


def test_too_little_disk_space_is_one_line_before_timing(tmp_path, monkeypatch):
    monkeypatch.setattr(B, "bench", lambda *a, **k: pytest.fail("timed before checking the free space"))
    # 1.5 MiB: enough for any output (1 MiB), too little for a timed table (2 × (1 MiB + 4 KiB a row))
    usage = types.SimpleNamespace(f_bavail=384, f_frsize=4096)
    monkeypatch.setattr(os, "statvfs", lambda path: usage)
    out = tmp_path / "x.csv"
    for args in (
        ["compare", "-d", "4", "-H", "8", "--bench"],
        ["sweep", "-d", "4", "-H", "4:64:4", "--bench"],
        ["bench", "lstm", "-d", "4", "-H", "8"],
    ):
        line = one_line_error(invoke(*args, "--output", out))
        assert f"cannot export to '{out}': 1.50 MiB free in '{tmp_path}'" in line
        assert line.endswith("free some space or write elsewhere")
    assert not out.exists()
    # without timing the table is small and written at once: no check
    assert invoke("compare", "-d", "4", "-H", "8", "--output", out).exit_code == 0


def test_progress_lines_estimate_the_time_left(capsys):
    now = [100.0]
    with options.progress(3, "timing", False, clock=lambda: now[0]) as advance:
        for _ in range(3):
            now[0] += 10
            advance(None)
    assert capsys.readouterr().err.splitlines() == [
        "timing: 1 of 3 done, 10 s elapsed, about 20 s left",
        "timing: 2 of 3 done, 20 s elapsed, about 10 s left",
        "timing: 3 of 3 done, 30 s elapsed",
    ]
    with options.progress(3, "timing", True) as advance:  # --quiet
        assert advance is None
