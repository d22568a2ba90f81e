"""The parts of issue 21's usability items that need torch: the ``--head`` count against real
modules, the timed and torch-built commands' tables within 120 columns, singular counts in timing
messages, and the report document of a timed comparison.

Ground truth here is torch: ``sum(p.numel())`` and ``named_parameters()`` of the model built
from ``nn`` modules by hand.
"""

from __future__ import annotations

import dataclasses
import re
from importlib.util import find_spec

import pytest
import torch
from torch import nn

import paramcalc as pc
from paramcalc import RecurrentSpec, Workload
from paramcalc.render.draw import MAX_TABLE_WIDTH
from tests.core.test_cli_usability import CELLS, table_width
from tests.helpers import DATA, invoke


class Classifier(nn.Module):
    """The seed's model: a recurrent stack and a linear head on its output."""

    def __init__(self, rnn: nn.Module, n_out: int, width: int) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(width, n_out)


@pytest.mark.parametrize(
    "rnn, width, spec",
    [
        (nn.LSTM(28, 256, 2), 256, RecurrentSpec("lstm", 28, 256, num_layers=2)),
        (nn.GRU(28, 64, 3, bidirectional=True), 128, RecurrentSpec("gru", 28, 64, 3, bidirectional=True)),
        (nn.LSTM(28, 64, 2, proj_size=16), 16, RecurrentSpec("lstm", 28, 64, 2, proj_size=16)),
        (
            nn.LSTM(28, 64, 2, bidirectional=True, proj_size=16),
            32,
            RecurrentSpec("lstm", 28, 64, 2, bidirectional=True, proj_size=16),
        ),
        (nn.RNN(28, 64, bias=False), 64, RecurrentSpec("rnn", 28, 64, bias=False)),
        (nn.LSTMCell(28, 64), 64, RecurrentSpec("lstm_cell", 28, 64)),
    ],
)
def test_head_matches_torch(rnn, width, spec):
    model = Classifier(rnn, 10, width)
    counted = pc.count(spec, head=10)
    assert counted.total == sum(p.numel() for p in model.parameters())
    assert [r.name for r in counted.unique_rows] == [n for n, _ in model.named_parameters()]
    assert [r.shape for r in counted.unique_rows] == [tuple(p.shape) for p in model.parameters()]


def test_head_checks_against_the_built_model():
    from paramcalc.checks.tensorcheck import check_architecture
    from paramcalc.core.architecture import with_head

    result = check_architecture(with_head(RecurrentSpec("lstm", 28, 256, num_layers=2), 10), "meta")
    assert result.ok


# --- timed and torch-built tables within 120 columns -------------------------------------------

TINY = ["-d", "8", "-H", "16", "--batch", "2", "--seq-len", "3"]
TIMED = ["--threads", "1", "--min-time", "0.01"]
WIDEST_TORCH = [
    ["bench", "lstm", *TINY, *TIMED],
    ["bench", "lstm", *TINY, *TIMED, "--train", "--bidirectional", "--proj-size", "4"],
    ["predict", "lstm", *TINY, "--threads", "1", "-q"],
    ["predict", "lstm", *TINY, "--threads", "1", "-q", "--by", "gemm", "--train"],
    ["compare", *TINY, "--cells", CELLS, "--equal", "params", "--bench", "--predict", *TIMED, "-q"],
    ["compare", *TINY, "--cells", CELLS, "--bench", *TIMED, "-q"],
    ["sweep", "-d", "8", "-H", "8,16", "-L", "1:2", "--cells", "lstm,gru", "--batch", "2", "--seq-len", "2,3",
     "--bench", "--predict", *TIMED, "-q"],
    ["check", "lstm", "-d", "28", "-H", "256", "-L", "2", "--bidirectional", "--proj-size", "100"],
    ["check", "cifg", "-d", "28", "-H", "256", "-L", "2"],
    ["report", "awd_lstm_lm", "--check"],
    ["cost", "lstm", "-d", "28", "-H", "256", "-L", "2", "--batch", "4", "--seq-len", "10", "--train",
     "--flop-check"],
    *(["inspect", str(DATA / "models" / f"rows_lstm.{ext}"), "--by", by]
      for ext in ("pt", "safetensors", "onnx", "keras") for by in ("module", "tensor")),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "args", WIDEST_TORCH, ids=[f"{a[0]} {a[1]} #{i}" for i, a in enumerate(WIDEST_TORCH)]
)
def test_torch_commands_default_tables_fit_120_columns(args, tmp_path, monkeypatch):
    monkeypatch.setenv("PARAMCALC_CACHE_DIR", str(tmp_path / "cache"))
    suffix = args[1].rsplit(".", 1)[-1]
    if args[0] == "inspect" and suffix in ("onnx", "keras", "safetensors") and not find_spec(suffix):
        pytest.skip(f"reading .{suffix} files needs the {suffix} extra")
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert table_width(r.stdout) <= MAX_TABLE_WIDTH, r.stdout


def test_merged_runs_fit_120_columns(tmp_path, monkeypatch):
    import paramcalc.timing.base as timing_base

    monkeypatch.setenv("PARAMCALC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(timing_base, "cpu_count", lambda: 2)  # 2 threads where the process has 1 CPU
    files = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}.json"
        args = ["sweep", "-d", "8", "-H", "8,16", "-L", "1:2", "--cells", "lstm,mingru", "--predict", "-q"]
        r = invoke(*args, "--threads", threads, "-o", out)
        assert r.exit_code == 0, r.output
        files.append(out)
    r = invoke("compare", "--from", *files)
    assert r.exit_code == 0, r.output
    assert table_width(r.stdout) <= MAX_TABLE_WIDTH
    assert "same in every row: batch 1, seq_len 1, dtype fp32, mode inference" in r.stdout


# --- singular counts in timing messages --------------------------------------------------------


def test_one_thread_one_run_one_call_read_singular():
    result = pc.bench(
        RecurrentSpec("lstm", 8, 16),
        Workload(batch=2, seq_len=3),
        threads=1,
        min_run_time=0.01,
        predict=False,
    )
    assert "cpu (" in result.title() and ", 1 thread, torch" in result.title()
    one = dataclasses.replace(result, times=(result.median_s,), number_per_run=1)
    text = "\n".join([*one.summary(), *one.notes()])
    assert "over 1 run x 1 call;" in text and "1 single call timed" in text
    assert not re.search(r"\b1 (threads|runs|calls)\b", text + result.title())

    from paramcalc.studies.views import noise_notes

    assert noise_notes([one])[0].startswith("1 of 1 timing is a single slow call: no spread was measured")


def test_one_noisy_timing_warning_reads_singular(capsys):
    from types import SimpleNamespace

    from paramcalc.cli.timingcmds import warn_timings

    timed = SimpleNamespace(noisy=True, noise="noisy", iqr_s=0.2, median_s=1.0, device="cuda", threads=1)
    timed.oversubscribed, timed.warnings = False, list
    warn_timings([timed])
    assert "warning: 1 of 1 timing is noisy (IQR up to 20% of the median)" in capsys.readouterr().err


# --- the report document of a timed comparison --------------------------------------------------


@pytest.mark.slow
def test_timed_report_defines_every_column(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="plots need the plot extra (matplotlib)")
    monkeypatch.setenv("PARAMCALC_CACHE_DIR", str(tmp_path / "cache"))
    report, png = tmp_path / "report.md", tmp_path / "report.png"
    args = ["compare", *TINY, "--cells", CELLS, "--bench", "--predict", *TIMED, "-q"]
    r = invoke(*args, "--output", report, "--plot", png)
    assert r.exit_code == 0, r.output
    text = report.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| cell"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert {"gflop_per_s", "kernel", "measured_over_predicted", "time_vs_first"} <= set(columns)
    defined = dict(re.findall(r"^- \*\*(\w+)\*\*: (.+)$", text.split("Columns:")[1], re.M))
    assert set(columns) <= set(defined)
    assert "- **command**: paramcalc compare -d 8 -H 16" in text and "- **created**: " in text
    assert "![plot](report.png)" in text and png.read_bytes()[:4] == b"\x89PNG"
    assert torch.get_num_threads() >= 1  # the run restored torch's threads
