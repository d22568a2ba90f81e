"""``sweep``: a tidy table over ranges of configurations, a row each (a view of a study).

Every combination of cells, hidden sizes, layers, batch sizes and sequence lengths is a row of
the one runner (:func:`paramcalc.studies.runner.run`). The library takes each axis as Python
values (a number, a ``range`` or a sequence of numbers: :func:`axis_values` checks them);
range text such as ``64:1024:64`` is the command line's (:mod:`paramcalc.cli.ranges`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from math import prod
from typing import Any, ClassVar

from ..core.cells import cell_names
from ..core.coerce import as_spec
from ..core.solver import retarget
from ..core.spec import MAX_LAYERS, MAX_SIZE, RecurrentSpec
from ..core.workload import Workload
from ..errors import ParamcalcError
from ..results.table import Column, Table
from ..results.text import plural
from ..timing.runs import key_columns, key_values
from .runner import DEFAULT_MIN_RUN_TIME, Row, TimingOptions, run
from .views import (
    BENCH_COLUMNS,
    COST_COLUMNS,
    PARAMS_COLUMN,
    PREDICT_COLUMNS,
    RATIO_COLUMN,
    RowsView,
    hidden,
    noise_notes,
    predict_notes,
    row_values,
)

#: Most configurations a sweep may have (analytic only), and when every one is timed.
MAX_CONFIGS = 10_000
MAX_TIMED_CONFIGS = 500

SWEEP_COLUMNS = (
    *key_columns(
        ("cell", "input_size", "hidden_size", "num_layers", "batch", "seq_len"),
        shown={"num_layers", "batch", "seq_len"},
        fold=True,
    ),
    PARAMS_COLUMN,
    *COST_COLUMNS,
    Column("flops", doc="FLOPs of the batch (cost model)"),
)


# --- the axes ------------------------------------------------------------------------------------


def axis_values(values: Any, what: str, *, maximum: int = MAX_SIZE) -> tuple[int, ...]:
    """The values of one sweep axis: a number, a ``range`` or a sequence of numbers, in order with
    duplicates dropped, each a positive integer up to ``maximum``. How many there are is checked
    before anything is expanded (``range(1, 10**12)`` is refused at once)."""
    if isinstance(values, (str, bytes)):
        text = values.decode(errors="replace") if isinstance(values, bytes) else values
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ParamcalcError(
            f"{what} must be a number, a range or a sequence of numbers, got the text {shown!r} "
            "(range text such as 64:1024:64 is the command line's: pass range(64, 1025, 64))"
        )
    if isinstance(values, bool) or not isinstance(values, (int, range, Iterable)):
        raise ParamcalcError(
            f"{what} must be a number, a range or a sequence of numbers, got {type(values).__name__}"
        )
    if isinstance(values, (int, range)):
        return expand([values], what, maximum=maximum)
    items: list[Any] = []
    for v in values:
        items.append(v)
        if len(items) > MAX_CONFIGS:
            raise ParamcalcError(f"{what} has more than {MAX_CONFIGS:,} values")
    return expand(items, what, maximum=maximum)


def expand(items: Sequence[range | int], what: str, *, maximum: int = MAX_SIZE) -> tuple[int, ...]:
    """The values of ``items`` (numbers and ranges) in order, duplicates dropped, each checked;
    their count is checked before they are expanded."""
    total = sum(len(i) if isinstance(i, range) else 1 for i in items)
    if total > MAX_CONFIGS:
        raise ParamcalcError(f"{what} has {total:,} values, more than {MAX_CONFIGS:,}")
    values: dict[int, None] = {}
    for item in items:
        for v in item if isinstance(item, range) else [item]:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ParamcalcError(f"{what} must be integers, got {v!r}")
            if v < 1:
                raise ParamcalcError(f"{what} must be positive, got {v}")
            if v > maximum:
                raise ParamcalcError(f"{what} must be at most {maximum:,}, got {v:,}")
            values[v] = None
    return tuple(values)


def _check_count(cells: list[str], axes: Sequence[tuple[int, ...]], timed: bool) -> None:
    hs, ls, bs, ts = axes
    n = prod((len(cells), len(hs), len(ls), len(bs), len(ts)))
    cap = MAX_TIMED_CONFIGS if timed else MAX_CONFIGS
    if n > cap:
        raise ParamcalcError(
            f"the sweep has {n:,} configurations ({plural(len(cells), 'cell')} x {len(hs)} hidden x "
            f"{plural(len(ls), 'layer count')} x {len(bs)} batch x {len(ts)} seq_len), more than the "
            f"{cap:,} allowed"
            f"{' when timing' if timed else ''}: use fewer values or larger steps"
        )


def _cell_configs(
    base: RecurrentSpec, axes: Sequence[tuple[int, ...]], dtype: str, mode: str
) -> list[tuple[RecurrentSpec, Workload]]:
    """The configurations of one cell, hidden size outermost and sequence length innermost."""
    hs, ls, bs, ts = axes
    # A single-step cell (lstm_cell, ...) has exactly one layer: the layers range does not apply.
    layers = (1,) if base.cell_type.single_step else ls
    if base.proj_size and min(hs) <= base.proj_size:
        raise ParamcalcError(
            f"hidden size {min(hs)} is not larger than proj_size {base.proj_size} "
            f"(an LSTM's projection must be smaller than its hidden size): start the range above it"
        )
    return [
        (base.replace(hidden_size=h, num_layers=n), Workload(batch=b, seq_len=t, dtype=dtype, mode=mode))
        for h in hs
        for n in layers
        for b in bs
        for t in ts
    ]


def sweep_configs(
    spec: RecurrentSpec,
    *,
    cells: Sequence[str] | str | None = None,
    hidden_sizes: Any = None,
    num_layers: Any = None,
    batches: Any = (1,),
    seq_lens: Any = (1,),
    dtype: str = "fp32",
    mode: str = "inference",
    timed: bool = False,
) -> list[tuple[RecurrentSpec, Workload]]:
    """The validated (spec, workload) pairs of a sweep, in row order (see :func:`sweep`)."""
    spec = as_spec(spec, "sweep")
    cell_list = cell_names(cells, "cells") or [spec.cell]
    axes = (
        axis_values(hidden_sizes if hidden_sizes is not None else spec.hidden_size, "hidden sizes"),
        axis_values(num_layers if num_layers is not None else spec.num_layers, "layers", maximum=MAX_LAYERS),
        axis_values(batches, "batch sizes"),
        axis_values(seq_lens, "sequence lengths"),
    )
    _check_count(cell_list, axes, timed)
    Workload(dtype=dtype, mode=mode)  # a bad dtype or mode fails here, once
    return [pair for name in cell_list for pair in _cell_configs(retarget(spec, name), axes, dtype, mode)]


# --- the view ------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class SweepResult(RowsView):
    """A tidy table: one row per configuration (cell x hidden x layers x batch x seq_len)."""

    KIND = "sweep"  # plotted as lines over hidden size (paramcalc.render.plot)

    rows: tuple[Row, ...]
    template: RecurrentSpec
    device: str | None = None
    #: Configurations the run was to have; more than ``len(rows)``: an interrupted run.
    planned: int | None = None

    @property
    def workloads(self) -> tuple[Workload, ...]:
        return tuple(r.workload for r in self.rows)

    def _columns(self) -> list[Column]:
        cols = list(SWEEP_COLUMNS) + list(BENCH_COLUMNS if self.benched else ())
        cols += PREDICT_COLUMNS if self.predicted else ()
        cols += (RATIO_COLUMN,) if self.benched and self.predicted else ()
        if self.benched or self.predicted:  # timings first; the cost model's numbers in the wide table
            cols = hidden(cols, {c.name for c in COST_COLUMNS} | {"flops"})
        if self.benched and self.predicted:  # the ratio; the rest in the wide table
            cols = hidden(cols, {"iqr_ms", "kernel", "predicted_ms", "predicted_tokens_per_s"})
        return hidden(cols, {*self._shared(), "flops_per_seq"})  # in the title; flops of the batch

    def _table(self, view: str) -> Table:
        records = [
            {**key_values(r.spec, r.workload), **row_values(r, self.benched, self.predicted)}
            for r in self.rows
        ]
        return Table.from_records(self._columns(), records)

    #: Columns the title states when every row shares their value: (column, title text, value).
    SHARED: ClassVar[tuple[tuple[str, str, Callable[[Row], int]], ...]] = (
        ("num_layers", "L={}", lambda r: r.spec.num_layers),
        ("batch", "batch {}", lambda r: r.workload.batch),
        ("seq_len", "seq_len {}", lambda r: r.workload.seq_len),
    )

    def _shared(self) -> dict[str, str]:
        """The columns every row shares a value of, with their text in the title."""
        out = {}
        for name, fmt, get in self.SHARED:
            values = {get(r) for r in self.rows}
            if len(values) == 1:
                out[name] = fmt.format(values.pop())
        return out

    def title(self) -> str:
        """What the rows share: input size, and layers, batch, seq_len when they do not vary."""
        t = self.template
        parts = [f"sweep: {plural(len(self.rows), 'configuration')}", f"d={t.input_size}"]
        parts += self._shared().values()
        if t.bidirectional:
            parts.append("bidirectional")
        if self.rows:
            w = self.rows[0].workload
            parts += [w.dtype, w.mode]
            b = self.rows[0].bench
            if b is not None:
                parts.append(f"timed on {b.device} ({plural(b.threads, 'thread')})")
            p = self.rows[0].prediction
            if p is not None:
                parts.append(f"predicted for {p.device} ({plural(p.threads, 'thread')})")
        return ", ".join(parts)

    def headline(self) -> str:
        return self.title()

    def notes(self) -> list[str]:
        if not self.rows:
            return []
        out = self.partial_notes("configurations")
        out.append(f"FLOPs: {self.rows[0].cost.convention}")
        out += noise_notes([r.bench for r in self.rows if r.bench is not None])
        out += predict_notes([r.prediction for r in self.rows if r.prediction is not None])
        return out

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"template": self.template.to_dict(), "configurations": len(self.rows)}
        if self.rows:
            meta["cost_convention"] = self.rows[0].cost.convention
            w = self.rows[0].workload
            meta["dtype"], meta["mode"] = w.dtype, w.mode
        return {**meta, **self.runs_meta("sweep")}

    def context(self) -> list[tuple[str, str]]:
        return [("sweep", self.title()), *self.environment_lines()]


def sweep(
    spec: RecurrentSpec,
    *,
    cells: Sequence[str] | str | None = None,
    hidden_sizes: Any = None,
    num_layers: Any = None,
    batches: Any = (1,),
    seq_lens: Any = (1,),
    dtype: str = "fp32",
    mode: str = "inference",
    bench: bool = False,
    device: str = "cpu",
    threads: int | None = None,
    min_run_time: float = DEFAULT_MIN_RUN_TIME,
    seed: int = 0,
    on_row: Callable[[Row], None] | None = None,
    predict: bool = False,
    cache: bool = True,
    cache_dir: str | None = None,
    on_gemm: Callable[[int, int], None] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> SweepResult:
    """Every combination of cells, hidden sizes, layers, batch sizes and sequence lengths.

    ``spec`` is the template (input size, directions, bias layout, convention; a projection only
    for cells that have one); ``cells``, ``hidden_sizes`` and ``num_layers`` default to the
    template's own. Each axis is a number, a ``range`` or a sequence of numbers
    (:func:`axis_values`); ``cells`` names, or one comma-separated text. At most
    :data:`MAX_CONFIGS` configurations (:data:`MAX_TIMED_CONFIGS` when timing); ``on_row`` is
    called after each one (a progress bar). When timing, the memory of every configuration is
    checked before the first is timed. With ``predict=True`` every configuration is predicted
    by the GEMM-sequence bound: the distinct GEMM shapes of the whole sweep are timed once
    (``on_gemm(done, total)`` after each), so a 1,000-configuration sweep times only the shapes
    it has, not 1,000 models. ``output`` is written as :func:`~paramcalc.studies.compare.compare`
    writes it (rows kept as they are timed).

    >>> import paramcalc as pc
    >>> lstm = pc.RecurrentSpec("lstm", 28, 256)
    >>> r = pc.sweep(lstm, cells=["rnn", "lstm"], hidden_sizes=range(64, 129, 64))
    >>> [(row.spec.cell, row.spec.hidden_size, row.params) for row in r.rows]
    [('rnn', 64, 6016), ('rnn', 128, 20224), ('lstm', 64, 24064), ('lstm', 128, 80896)]
    """
    axes = {"hidden_sizes": hidden_sizes, "num_layers": num_layers, "batches": batches, "seq_lens": seq_lens}
    template = as_spec(spec, "sweep")
    configs = sweep_configs(template, cells=cells, **axes, dtype=dtype, mode=mode, timed=bench)
    timing = TimingOptions(bench, predict, device, threads, min_run_time, seed, cache, cache_dir)
    return run(
        configs,
        lambda rows, planned: SweepResult(rows, template, timing.device_shown, planned),
        timing,
        on_row=on_row,
        on_gemm=on_gemm,
        output=output,
    )
