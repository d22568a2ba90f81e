"""The studies layer: one runner, compare and sweep as views of its rows; the ``runs`` JSON's one
home; the layers import downward. Pure Python (no torch): timed studies are in
tests/torch/test_compare_bench.py.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import paramcalc as pc
from paramcalc import ParamcalcError, RecurrentSpec, Workload
from paramcalc.studies.runner import Row
from paramcalc.timing import runs
from tests.helpers import ROOT


def lstm_params(d: int, h: int) -> int:
    """One torch LSTM layer: 4 gate blocks of W_ih (h×d), W_hh (h×h) and two biases (h)."""
    return 4 * (h * d + h * h + 2 * h)


# --- one runner, two views ----------------------------------------------------------------------


def test_compare_and_sweep_are_views_of_the_same_rows():
    w = Workload(batch=4, seq_len=7)
    spec = RecurrentSpec("lstm", 12, 16)
    compared = pc.compare(spec, ["lstm", "gru"], workload=w)
    swept = pc.sweep(spec, cells=["gru", "lstm"], hidden_sizes=[16], batches=4, seq_lens=7)
    assert all(isinstance(r, Row) for r in (*compared.rows, *swept.rows))
    by_cell = {r.spec.cell: r for r in swept.rows}
    for row in compared.rows:
        assert row == by_cell[row.spec.cell]  # the same spec, workload, params and cost
        assert row.workload == w and row.memory is None and row.bench is None and row.prediction is None
    assert compared.rows[0].params == lstm_params(12, 16) == 4 * (16 * 12 + 16 * 16 + 32)


def test_the_library_takes_python_values_for_ranges():
    spec = RecurrentSpec("gru", 4, 8)
    r = pc.sweep(spec, hidden_sizes=(h for h in (8, 16, 8)), num_layers=range(1, 3), batches=[2], seq_lens=3)
    got = [(row.spec.hidden_size, row.spec.num_layers) for row in r.rows]
    assert got == [(8, 1), (8, 2), (16, 1), (16, 2)]
    with pytest.raises(ParamcalcError) as info:
        pc.sweep(spec, hidden_sizes="64:128:64")
    message = str(info.value)
    assert "hidden sizes must be a number, a range or a sequence of numbers" in message
    assert "range(64, 1025, 64)" in message and "--" not in message and "\n" not in message


def test_cell_lists_stay_names_or_one_comma_text():
    spec = RecurrentSpec("lstm", 4, 8)
    assert [r.spec.cell for r in pc.sweep(spec, cells="rnn, gru").rows] == ["rnn", "gru"]
    with pytest.raises(ParamcalcError, match=r"^cells is empty") as info:
        pc.sweep(spec, cells=" , ")
    assert "--" not in str(info.value)


# --- the runs JSON: one writer, one reader --------------------------------------------------------


def test_a_written_run_reads_back(tmp_path):
    spec, w = RecurrentSpec("gru", 4, 8, num_layers=2), Workload(3, 5, dtype="bf16")
    env = {"device": "cpu", "device_name": "Test CPU", "threads": 2, "torch": "2.13.0"}
    measured = SimpleNamespace(
        times=(3e-3, 1e-3, 2e-3), iqr_s=1e-3, kernel_path="oneDNN", environment=lambda: env
    )
    predicted = SimpleNamespace(seconds=4e-3, bound_applies=True, environment=lambda: env)
    rec = runs.record(spec, w, measured, predicted)
    assert rec["measured_s"] == 2e-3 and rec["times_s"] == [3e-3, 1e-3, 2e-3]  # the median, by hand
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({**runs.runs_meta("bench", [rec])}))
    (run,) = runs.load_runs(path)
    assert (run.spec, run.workload, run.kernel, run.device_name) == (spec, w, "oneDNN", "Test CPU")
    assert run.measured_over_predicted == pytest.approx(0.5)
    assert {k: v for k, v in run.to_json().items() if k != "times_s"} == {
        k: v for k, v in rec.items() if k != "times_s"
    }
    only_predicted = runs.record(spec, w, None, predicted)
    assert only_predicted["measured_s"] is None and only_predicted["kernel"] is None


def test_every_table_of_runs_declares_its_key_columns_once():
    from paramcalc.studies.sweep import SWEEP_COLUMNS
    from paramcalc.timing.benchmark import BENCH_COLUMNS
    from paramcalc.timing.merge import MERGE_COLUMNS
    from paramcalc.timing.predict import TOTAL_COLUMNS

    keys = {c.name: c for c in runs.KEY_COLUMNS}
    for table in (BENCH_COLUMNS, TOTAL_COLUMNS, MERGE_COLUMNS, SWEEP_COLUMNS):
        shared = [c for c in table if c.name in keys]
        assert len(shared) >= 6
        for c in shared:
            assert (c.kind, c.doc) == (keys[c.name].kind, keys[c.name].doc), c.name
    assert [c.name for c in BENCH_COLUMNS[: len(keys)]] == list(keys)  # bench and predict: in order
    assert [c.name for c in TOTAL_COLUMNS[: len(keys)]] == list(keys)


# --- the layers import downward -----------------------------------------------------------------


def imported(path: Path) -> set[str]:
    """The paramcalc modules a file imports (lazy and type-checking imports included)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            name = ".".join(p for p in (base, node.module) if p)
            out |= {name} | {f"{name}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.startswith("paramcalc")}


def test_studies_sit_between_timing_and_the_cli():
    pkg = ROOT / "paramcalc"

    def uses(path: Path, *prefixes: str) -> set[str]:
        return {m for m in imported(path) if m.startswith(prefixes)}

    assert not (pkg / "core" / "comparison.py").exists()
    for path in (pkg / "core").glob("*.py"):
        assert not uses(path, "paramcalc.studies", "paramcalc.timing"), path
    for folder in ("timing", "checks", "bridge", "core"):
        for path in (pkg / folder).rglob("*.py"):
            assert not uses(path, "paramcalc.studies", "paramcalc.cli"), path
    for path in (pkg / "studies").glob("*.py"):
        assert not uses(path, "paramcalc.cli"), path
    # the timing triangle is gone: bench measures, predict and the GEMM cache never import it
    for name in ("predict.py", "gemm.py", "base.py", "runs.py"):
        assert "paramcalc.timing.benchmark" not in imported(pkg / "timing" / name), name
