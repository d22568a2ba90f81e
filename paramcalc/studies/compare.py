"""``compare``: cell types side by side for one workload, a row per cell (a view of a study).

``compare(spec, ..., equal="params")`` keeps the given spec (the reference, first row) as it
is and gives every other cell the hidden size whose parameter count is closest to the
reference's (:func:`paramcalc.core.solver.closest_hidden`), so the comparison is at equal size.
The rows come from the one runner (:func:`paramcalc.studies.runner.run`): pure Python unless
asked to time (``bench=True``) or predict (``predict=True``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.cells import CLASSIC_CELLS, cell_names
from ..core.coerce import as_spec
from ..core.params import total_params
from ..core.solver import check_multiple_of, closest_hidden, retarget
from ..core.spec import RecurrentSpec
from ..core.workload import Workload
from ..errors import ParamcalcError
from ..results.table import Column, Table
from ..results.text import plural
from .runner import DEFAULT_MIN_RUN_TIME, Row, TimingOptions, run
from .views import (
    BENCH_COLUMNS,
    CELL_COLUMN,
    COST_COLUMNS,
    DIFF_COLUMN,
    HIDDEN_COLUMN,
    PARAMS_COLUMN,
    PREDICT_COLUMNS,
    RATIO_COLUMN,
    TIME_VS_FIRST_COLUMN,
    RowsView,
    hidden,
    noise_notes,
    predict_notes,
    row_values,
)

EQUAL_MODES = ("hidden", "params")


@dataclass(frozen=True, repr=False)
class CompareResult(RowsView):
    """A row per cell type for one workload; the first row is the reference. View: ``rows``."""

    KIND = "compare"  # plotted as bars per cell (paramcalc.render.plot)

    rows: tuple[Row, ...]
    workload: Workload
    equal: str
    device: str | None = None
    #: Rows the run was to have; more than ``len(rows)``: an interrupted run (see :attr:`partial`).
    planned: int | None = None

    @property
    def reference(self) -> RecurrentSpec:
        return self.rows[0].spec

    def _columns(self) -> tuple[Column, ...]:
        cols = [CELL_COLUMN, HIDDEN_COLUMN, PARAMS_COLUMN]
        if self.equal == "params":
            cols.append(DIFF_COLUMN)
        cols += COST_COLUMNS
        if self.benched:
            cols += [*BENCH_COLUMNS, TIME_VS_FIRST_COLUMN]
        if self.predicted:
            cols += PREDICT_COLUMNS
        if self.benched and self.predicted:
            cols.append(RATIO_COLUMN)
        if self.equal == "hidden":  # the title states it
            cols = hidden(cols, {HIDDEN_COLUMN.name})
        if self.benched or self.predicted:  # timings first; the cost model's numbers in the wide table
            cols = hidden(cols, {c.name for c in COST_COLUMNS})
        if self.benched and self.predicted:  # the notes give the noise verdict
            cols = hidden(
                cols, {DIFF_COLUMN.name, TIME_VS_FIRST_COLUMN.name, "iqr_ms", "predicted_tokens_per_s"}
            )
        return tuple(cols)

    def _table(self, view: str) -> Table:
        first = self.rows[0]
        records = []
        for r in self.rows:
            rec = row_values(r, self.benched, self.predicted)
            rec.update(cell=r.spec.cell, hidden_size=r.spec.hidden_size)
            rec["params_diff_pct"] = 100 * (r.params - first.params) / first.params
            if self.benched:
                assert r.bench is not None and first.bench is not None
                rec["time_vs_first"] = r.bench.median_s / first.bench.median_s
            records.append(rec)
        return Table.from_records(self._columns(), records)

    def title(self) -> str:
        names = " vs ".join(r.spec.cell_type.display_name for r in self.rows)
        if self.partial:
            names += f" (partial: {len(self.rows)} of {self.planned} rows)"
        return f"{names}: {self.configuration()}"

    def configuration(self) -> str:
        """What the rows share: input size, layers, workload, equal hidden size or parameters."""
        spec, w = self.reference, self.workload
        parts = [f"d={spec.input_size}", f"L={spec.num_layers}"]
        if spec.bidirectional:
            parts.append("bidirectional")
        parts.append(w.describe())
        if self.equal == "hidden" and len({r.spec.hidden_size for r in self.rows}) > 1:
            parts.append("hidden sizes as given")
        elif self.equal == "hidden":
            parts.append(f"equal hidden size {spec.hidden_size}")
        else:
            parts.append(f"equal parameters: {self.rows[0].params:,} ({spec.cell})")
        return ", ".join(parts)

    def headline(self) -> str:
        return self.title()

    def notes(self) -> list[str]:
        out = self.partial_notes("rows")
        out.append(f"FLOPs: {self.rows[0].cost.convention}")
        benches = [r.bench for r in self.rows if r.bench is not None]
        if self.benched:
            b = benches[0]
            out.append(
                f"timed on {b.device} ({b.device_name}), {plural(b.threads, 'thread')}, "
                f"torch {b.torch_version}; time_ms = median per batch, iqr_ms = its interquartile range, "
                "time_vs_first = time / first row's time"
            )
            out += noise_notes(benches)
            out += sorted({b.timed_as for b in benches if b.timed_as})
        preds = [r.prediction for r in self.rows if r.prediction is not None]
        if self.predicted and not self.benched:
            p = preds[0]
            out.append(
                f"predicted for {p.device} ({p.device_name}), {plural(p.threads, 'thread')}, "
                f"torch {p.torch_version}"
            )
        return out + (predict_notes(preds) if self.predicted else [])

    def meta(self) -> dict[str, Any]:
        """What the table was computed for (the JSON export's header)."""
        return {
            "equal": self.equal,
            "reference": self.reference.to_dict(),
            "cells": [r.spec.cell for r in self.rows],
            "workload": self.workload.to_dict(),
            "cost_convention": self.rows[0].cost.convention,
            **self.runs_meta("compare"),
        }

    def context(self) -> list[tuple[str, str]]:
        spec, w = self.reference, self.workload
        lengths = f" (lengths {w.lengths})" if w.lengths else ""
        at = "equal hidden size"
        if self.equal != "hidden":
            at = f"equal parameters ({self.rows[0].params:,}, {spec.cell})"
        ctx = [
            ("cells", ", ".join(r.spec.describe() for r in self.rows)),
            ("input size d", str(spec.input_size)),
            ("layers L", str(spec.num_layers) + (", bidirectional" if spec.bidirectional else "")),
            ("batch B, sequence length T", f"{w.batch}, {w.seq_len}{lengths}"),
            ("dtype, mode", f"{w.dtype}, {w.mode}"),
            ("compared at", at),
            (
                "units",
                "params: parameters; macs_per_step: multiply-adds per time step of one sequence; "
                "flops_per_seq: FLOPs per sequence; bytes in B; time_ms: milliseconds per batch; "
                "tokens_per_s: time steps per second",
            ),
        ]
        return ctx + self.environment_lines()


def _specs_for(spec: Any, cells: Sequence[str] | str | None) -> list[RecurrentSpec]:
    if isinstance(spec, (list, tuple)):
        if cells is not None:
            raise ParamcalcError("give cells only with a single template spec, not with a list of specs")
        specs = [as_spec(s, "compare") for s in spec]
        if not specs:
            raise ParamcalcError("compare needs a RecurrentSpec or a non-empty list of them")
        return specs
    spec = as_spec(spec, "compare")
    # by default the given cell first (the reference), then the classic three it is not
    names = cell_names(cells) or [spec.cell, *(c for c in CLASSIC_CELLS if c != spec.cell)]
    return [retarget(spec, n) for n in names]


def _equalise(specs: list[RecurrentSpec], equal: str, multiple_of: int) -> list[RecurrentSpec]:
    if equal not in EQUAL_MODES:
        raise ParamcalcError(f"equal must be one of {', '.join(EQUAL_MODES)}, got {equal!r}")
    check_multiple_of(multiple_of)
    if equal == "hidden" or len(specs) < 2:
        return specs
    target = total_params(specs[0])
    return [specs[0], *(s.replace(hidden_size=closest_hidden(s, target, multiple_of)) for s in specs[1:])]


def _workload(workload: Workload | None) -> Workload:
    if workload is None:
        return Workload()
    if not isinstance(workload, Workload):
        raise ParamcalcError(f"workload must be a Workload, got {type(workload).__name__}")
    return workload


def compare(
    spec: RecurrentSpec | Sequence[RecurrentSpec],
    cells: Sequence[str] | str | None = None,
    *,
    equal: str = "hidden",
    workload: Workload | None = None,
    bench: bool = False,
    device: str = "cpu",
    threads: int | None = None,
    min_run_time: float = DEFAULT_MIN_RUN_TIME,
    seed: int = 0,
    multiple_of: int = 1,
    on_row: Callable[[Row], None] | None = None,
    predict: bool = False,
    cache: bool = True,
    cache_dir: str | None = None,
    on_gemm: Callable[[int, int], None] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> CompareResult:
    """Compare cell types built like ``spec``, for one workload; ``spec`` itself is the first row.

    ``spec`` is a :class:`RecurrentSpec` or a recurrent ``nn.Module`` (a template: its input
    size, layers, directions, bias layout and convention are kept; a projection only where the
    cell has one) or an explicit list of specs. ``cells`` (names, or one comma-separated text)
    defaults to the spec's own cell and the classic RNN, LSTM, GRU. ``equal="params"`` resizes
    every cell after the first to the first one's parameter count. With ``bench=True`` each row
    is timed on ``device`` (see :func:`paramcalc.timing.benchmark.bench`); memory is checked
    for every row first. With ``predict=True`` each row is also predicted by the GEMM-sequence
    bound (only the distinct GEMM shapes of all rows are timed, once, cached unless
    ``cache=False``; ``on_gemm(done, total)`` after each: a progress bar); with both, the table
    has measured/predicted. ``output``: a file the result is exported to; when timing, its free
    space is checked first and it is written after each timed row (``partial`` in its header
    until the last), and a ``KeyboardInterrupt`` after the first row raises
    :class:`~paramcalc.errors.Interrupted` carrying the rows finished (see ``docs/bench.md``).

    >>> import paramcalc as pc
    >>> r = pc.compare(pc.RecurrentSpec("lstm", 28, 256, num_layers=2), equal="params")
    >>> [(row.spec.cell, row.spec.hidden_size) for row in r.rows]
    [('lstm', 256), ('rnn', 517), ('gru', 296)]
    """
    specs = _equalise(_specs_for(spec, cells), equal, multiple_of)
    w = _workload(workload)
    timing = TimingOptions(bench, predict, device, threads, min_run_time, seed, cache, cache_dir)
    return run(
        [(s, w) for s in specs],
        lambda rows, planned: CompareResult(rows, w, equal, timing.device_shown, planned),
        timing,
        on_row=on_row,
        on_gemm=on_gemm,
        output=output,
    )
