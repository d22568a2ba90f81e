"""Side-by-side comparison of cell types, and sweeps over ranges of configurations.

Both are pure Python (count, cost model, solve) unless asked to time: then each configuration
is handed to :func:`paramcalc.timing.benchmark.bench`, which imports torch. Asked to predict
(``predict=True``), the configurations go to :func:`paramcalc.timing.predict.predict_many`,
which times each distinct GEMM shape of all of them once (cached on disk) and builds no model.
Results carry their specs and workloads (like torch.utils.benchmark's ``Measurement``) and follow
the result protocol (``table``/``to_frame``/``render``/``export``/``plot``).

``compare(spec, ..., equal="params")`` keeps the given spec (the reference, first row) as it
is and gives every other cell the hidden size whose parameter count is closest to the
reference's (:func:`paramcalc.core.solver.closest_hidden`), so the comparison is at equal size.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from math import prod
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..errors import Interrupted, ParamcalcError
from ..results.base import Result
from ..results.render import plural
from ..results.table import Column, Table
from .cells import CLASSIC_CELLS, cell_names
from .coerce import as_spec
from .costmodel import CostResult, cost
from .params import total_params
from .solver import check_multiple_of, closest_hidden, retarget
from .spec import MAX_LAYERS, MAX_SIZE, RecurrentSpec
from .workload import Workload

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from ..timing.benchmark import BenchResult
    from ..timing.predict import PredictResult

#: Most configurations a sweep may have (analytic only), and when every one is timed.
MAX_CONFIGS = 10_000
MAX_TIMED_CONFIGS = 500
#: Default seconds of timing per measurement in compare and sweep.
DEFAULT_MIN_RUN_TIME = 0.2
#: Longest range text accepted (``64:1024:64,2048``) and most digits of one number in it.
MAX_RANGE_TEXT = 200
MAX_RANGE_DIGITS = 12

EQUAL_MODES = ("hidden", "params")

#: The columns every comparison starts with (``doc`` defines them in report.md).
CELL_COLUMN = Column("cell", "str", doc="the recurrent cell (paramcalc explain CELL shows its equations)")
HIDDEN_COLUMN = Column("hidden_size", doc="hidden size Dh of each layer", fold=True)
PARAMS_COLUMN = Column("params", doc="parameters of the recurrent stack (exact, from the formulas)")
DIFF_COLUMN = Column(
    "params_diff_pct", "float", unit="%", doc="params relative to the first row's (with --equal params)"
)
COST_COLUMNS = (
    Column("macs_per_step", doc="GEMM multiply-adds per time step of one sequence (cost model)"),
    Column("flops_per_seq", doc="FLOPs of one sequence: 2·MACs + bias and elementwise ops (cost model)"),
    Column("param_bytes", unit="B", wide=True, doc="memory of the parameters in the dtype"),
    Column(
        "train_bytes", unit="B", wide=True, doc="peak memory of one training step with Adam (memory model)"
    ),
)
BENCH_COLUMNS = (
    Column("time_ms", "float", unit="ms", doc="measured time per batch: the median of the timed runs"),
    Column("iqr_ms", "float", unit="ms", doc="interquartile range of the timed runs; empty: one slow call"),
    Column("tokens_per_s", "float", unit="1/s", doc="time steps of the batch (B·T, real steps) per second"),
    Column(
        "gflop_per_s",
        "float",
        unit="GFLOP/s",
        wide=True,
        doc="achieved: the cost model's FLOPs of one call / time_ms",
    ),
    Column(
        "kernel",
        "str",
        doc="the kernel path that ran: cuDNN, oneDNN (mkldnn), native (ATen's loop) or reference",
    ),
)
TIME_VS_FIRST_COLUMN = Column("time_vs_first", "float", doc="time_ms / the first row's time_ms")
PREDICT_COLUMNS = (
    Column("predicted_ms", "float", unit="ms", doc="the GEMM-sequence bound (paramcalc predict)"),
    Column("predicted_tokens_per_s", "float", unit="1/s", doc="tokens_per_s at predicted_ms"),
)
RATIO_COLUMN = Column(
    "measured_over_predicted", "float", doc="time_ms / predicted_ms; empty where the bound does not apply"
)


def _hidden(cols: list[Column], names: set[str]) -> list[Column]:
    """``cols`` with those named left to ``--wide`` (a default table fits 120 columns)."""
    return [replace(c, wide=True) if c.name in names else c for c in cols]


def _cost_values(c: CostResult) -> tuple[Any, ...]:
    return (c.macs_per_step, c.flops_per_sequence, c.param_bytes, c.training_bytes)


def _bench_values(b: BenchResult | None) -> tuple[Any, ...]:
    if b is None:
        return (None, None, None, None, None)
    iqr = b.iqr_s * 1e3 if b.spread_known else None
    return (b.median_s * 1e3, iqr, b.tokens_per_s, b.flop_per_s / 1e9, b.kernel_path)


def _predict_values(p: PredictResult | None) -> tuple[Any, ...]:
    if p is None:
        return (None, None)
    return (p.seconds * 1e3, p.tokens_per_s)


def _ratio(b: BenchResult | None, p: PredictResult | None) -> float | None:
    """Measured / predicted time, ``None`` where either is missing or the bound does not apply."""
    if b is None or p is None or not p.bound_applies:
        return None
    return b.median_s / p.seconds


def _environment(b: BenchResult | PredictResult | None) -> list[tuple[str, str]]:
    if b is None:
        return []
    return [
        ("device", f"{b.device} ({b.device_name})"),
        ("threads", str(b.threads)),
        ("torch", b.torch_version),
    ]


def _runs_meta(
    kind: str, rows: Sequence[Any], every_row: bool, workload_of: Callable[[Any], Workload]
) -> dict[str, Any]:
    """A table's JSON header entries for its timed or predicted rows: the first row's environment,
    and, when ``every_row`` was timed or predicted, the ``runs`` that ``compare --from`` reads."""
    first = (rows[0].bench or rows[0].prediction) if rows else None
    out: dict[str, Any] = first.environment() if first is not None else {}
    if every_row:
        from ..timing.merge import RUNS_SCHEMA

        runs = [_run_record(r.spec, workload_of(r), r.bench, r.prediction) for r in rows]
        out.update(result=kind, runs_schema=RUNS_SCHEMA, runs=runs)
    return out


def _run_record(spec: RecurrentSpec, w: Workload, b: BenchResult | None, p: PredictResult | None) -> Any:
    """One entry of the JSON export's ``runs`` (what ``compare --from`` reads back)."""
    from ..timing.predict import run_record

    env = b.environment() if b is not None else p.environment()  # type: ignore[union-attr]
    return run_record(
        spec,
        w,
        env,
        measured=None if b is None else b.times,
        iqr_s=None if b is None else b.iqr_s,
        predicted_s=None if p is None else p.seconds,
        kernel=None if b is None else b.kernel_path,
        bound_applies=None if p is None else p.bound_applies,
    )


def _predict_notes(preds: Sequence[PredictResult]) -> list[str]:
    if not preds:
        return []
    from ..timing.predict import MODEL_NOTE

    out = [MODEL_NOTE]
    out += sorted({p.fused + "; no measured/predicted ratio" for p in preds if p.fused})
    tiled = sum(1 for p in preds if any(g.tiles for g in p.gemms))
    if tiled:
        out.append(
            f"{plural(tiled, 'prediction')} timed GEMMs too large to allocate as tiles with the same MACs"
        )
    out += sorted({n for p in preds for n in p.cache_notes})
    return out


def _noise_notes(benches: Sequence[BenchResult]) -> list[str]:
    """The noise verdict of a set of timings, one sentence."""
    if not benches:
        return []
    out = []
    unknown = [b for b in benches if not b.spread_known]
    if unknown:
        out.append(
            f"{len(unknown)} of {plural(len(benches), 'timing')} "
            f"{'is a single slow call' if len(unknown) == 1 else 'are single slow calls'}: "
            "no spread was measured (raise --min-time)"
        )
    known = [b for b in benches if b.spread_known]
    noisy = [b for b in known if b.noisy]
    if known and not noisy:
        worst = max(b.iqr_s / b.median_s for b in known)
        out.append(f"timings are steady: every IQR is within {max(1, round(100 * worst))}% of its median")
    elif noisy:
        worst = max(b.iqr_s / b.median_s for b in noisy)
        gross = sum(1 for b in noisy if b.noise == "gross")
        out.append(
            f"noisy: {len(noisy)} of {plural(len(benches), 'timing')} "
            f"{'has' if len(noisy) == 1 else 'have'} an IQR of 10% of the median or more "
            f"(torch.utils.benchmark's warning; {gross} at its gross level, 25% or more; up to "
            f"{100 * worst:.0f}%): is something else running? try --min-time 1 or --threads 1"
        )
    return out + _machine_notes(benches)


def _machine_notes(benches: Sequence[BenchResult]) -> list[str]:
    """The oversubscription verdict of a set of timings (the first row's sentence, with a count)."""
    busy = [b for b in benches if b.oversubscribed]
    if not busy:
        return []
    first = next(w for w in busy[0].warnings() if "oversubscribed" in w)
    return [f"{len(busy)} of {len(benches)} timings: {first}"]


# --- long runs: rows kept as they are timed ------------------------------------------------------


def _is_partial(rows: Sequence[Any], planned: int | None) -> bool:
    return planned is not None and len(rows) < planned


def _partial_notes(rows: Sequence[Any], planned: int | None, what: str) -> list[str]:
    if not _is_partial(rows, planned):
        return []
    return [
        f"partial: the run was interrupted after {len(rows):,} of {planned:,} {what}; "
        "these are the ones finished, the others were not timed"
    ]


def _partial_meta(rows: Sequence[Any], planned: int | None) -> dict[str, Any]:
    """``partial`` and ``rows_planned`` in the JSON header of an interrupted run (absent otherwise)."""
    return {"partial": True, "rows_planned": planned} if _is_partial(rows, planned) else {}


Row = TypeVar("Row", "CompareRow", "SweepRow")


def _rows(
    items: Sequence[tuple[RecurrentSpec, Workload, CostResult, PredictResult | None]],
    make: Callable[[RecurrentSpec, Workload, CostResult, BenchResult | None, PredictResult | None], Row],
    result_of: Callable[[list[Row], int], Result],
    *,
    timing: dict[str, Any] | None,
    on_row: Callable[[Row], None] | None,
    output: str | os.PathLike[str] | None,
) -> list[Row]:
    """The rows of a compare or sweep, timed one by one when ``timing`` (bench's arguments).

    When timing with an ``output``, the result so far is written there after each row (marked
    partial until the last), so a run stopped at any point leaves a valid file. A
    ``KeyboardInterrupt`` once some rows are finished becomes :class:`~paramcalc.errors.Interrupted`
    carrying their result (``planned`` says how many there were to be), saved to ``output``.
    """
    rows: list[Row] = []
    try:
        for s, w, c, p in items:
            b = None
            if timing is not None:
                from ..timing.benchmark import bench as run_bench

                b = run_bench(s, w, predict=False, cost_result=c, **timing)
            rows.append(make(s, w, c, b, p))
            if on_row is not None:
                on_row(rows[-1])
            if timing is not None and output is not None:
                result_of(rows, len(items)).export(output)
    except KeyboardInterrupt as exc:
        if not rows or isinstance(exc, Interrupted):
            raise
        partial = result_of(rows, len(items))
        if output is not None:
            partial.export(output)
        raise Interrupted(partial) from None
    return rows


def _before_timing(output: str | os.PathLike[str] | None, rows: int, timed: bool) -> None:
    """Check the output target, and when timing the free space its table needs, before any work."""
    if output is None:
        return
    from ..results.export import check_export_target, check_free_space

    check_export_target(output)
    if timed:
        check_free_space(output, rows)


# --- compare -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompareRow:
    """One cell type: its spec, parameter count, cost for the workload and (optionally) timing."""

    spec: RecurrentSpec
    params: int
    cost: CostResult
    bench: BenchResult | None = None
    prediction: PredictResult | None = None


class _Plotted(Result):
    """What compare and sweep results share: a plot of their table."""

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        from ..results.plot import plot_result

        return plot_result(self, path, title=title)


@dataclass(frozen=True, repr=False)
class CompareResult(_Plotted):
    """A row per cell type for one workload; the first row is the reference. View: ``rows``."""

    VIEWS = ("rows",)

    rows: tuple[CompareRow, ...]
    workload: Workload
    equal: str
    device: str | None = None
    #: Rows the run was to have; more than ``len(rows)``: an interrupted run (see :attr:`partial`).
    planned: int | None = None

    @property
    def partial(self) -> bool:
        """Whether the run was interrupted before every row was timed (the rows are those finished)."""
        return _is_partial(self.rows, self.planned)

    @property
    def reference(self) -> RecurrentSpec:
        return self.rows[0].spec

    @property
    def specs(self) -> tuple[RecurrentSpec, ...]:
        return tuple(r.spec for r in self.rows)

    @property
    def benched(self) -> bool:
        return all(r.bench is not None for r in self.rows)

    @property
    def predicted(self) -> bool:
        return all(r.prediction is not None for r in self.rows)

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
            cols = _hidden(cols, {HIDDEN_COLUMN.name})
        if self.benched or self.predicted:  # timings first; the cost model's numbers with --wide
            cols = _hidden(cols, {c.name for c in COST_COLUMNS})
        if self.benched and self.predicted:  # the notes give the noise verdict
            hide = {DIFF_COLUMN.name, TIME_VS_FIRST_COLUMN.name, "iqr_ms", "predicted_tokens_per_s"}
            cols = _hidden(cols, hide)
        return tuple(cols)

    def _table(self, view: str) -> Table:
        first = self.rows[0]
        out = []
        for r in self.rows:
            row: list[Any] = [r.spec.cell, r.spec.hidden_size, r.params]
            if self.equal == "params":
                row.append(100 * (r.params - first.params) / first.params)
            row += _cost_values(r.cost)
            if self.benched:
                assert r.bench is not None and first.bench is not None
                row += [*_bench_values(r.bench), r.bench.median_s / first.bench.median_s]
            if self.predicted:
                row += _predict_values(r.prediction)
            if self.benched and self.predicted:
                row.append(_ratio(r.bench, r.prediction))
            out.append(tuple(row))
        return Table(self._columns(), tuple(out))

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
        out = _partial_notes(self.rows, self.planned, "rows")
        out.append(f"FLOPs: {self.rows[0].cost.convention}")
        if self.benched:
            b = self.rows[0].bench
            assert b is not None
            out.append(
                f"timed on {b.device} ({b.device_name}), {plural(b.threads, 'thread')}, torch "
                f"{b.torch_version}; "
                "time_ms = median per batch, iqr_ms = its interquartile range, "
                "time_vs_first = time / first row's time"
            )
            out += _noise_notes([r.bench for r in self.rows if r.bench is not None])
            out += sorted({r.bench.timed_as for r in self.rows if r.bench is not None and r.bench.timed_as})
        if self.predicted:
            p = self.rows[0].prediction
            assert p is not None
            if not self.benched:
                out.append(
                    f"predicted for {p.device} ({p.device_name}), {plural(p.threads, 'thread')}, "
                    f"torch {p.torch_version}"
                )
            out += _predict_notes([r.prediction for r in self.rows if r.prediction is not None])
        return out

    def meta(self) -> dict[str, Any]:
        """What the table was computed for (the JSON export's header)."""
        meta: dict[str, Any] = {
            "equal": self.equal,
            "reference": self.reference.to_dict(),
            "cells": [r.spec.cell for r in self.rows],
            "workload": self.workload.to_dict(),
            "cost_convention": self.rows[0].cost.convention,
        }
        meta.update(_runs_meta("compare", self.rows, self.benched or self.predicted, lambda r: self.workload))
        meta.update(_partial_meta(self.rows, self.planned))
        return meta

    def context(self) -> list[tuple[str, str]]:
        spec, w = self.reference, self.workload
        ctx = [
            ("cells", ", ".join(r.spec.describe() for r in self.rows)),
            ("input size d", str(spec.input_size)),
            ("layers L", str(spec.num_layers) + (", bidirectional" if spec.bidirectional else "")),
            (
                "batch B, sequence length T",
                f"{w.batch}, {w.seq_len}" + (f" (lengths {w.lengths})" if w.lengths else ""),
            ),
            ("dtype, mode", f"{w.dtype}, {w.mode}"),
            (
                "compared at",
                "equal hidden size"
                if self.equal == "hidden"
                else f"equal parameters ({self.rows[0].params:,}, {spec.cell})",
            ),
            (
                "units",
                "params: parameters; macs_per_step: multiply-adds per time step of one sequence; "
                "flops_per_seq: FLOPs per sequence; bytes in B; time_ms: milliseconds per batch; "
                "tokens_per_s: "
                "time steps per second",
            ),
        ]
        return ctx + _environment(self.rows[0].bench or self.rows[0].prediction)


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


def _memory_checked(pairs: Iterable[tuple[RecurrentSpec, Workload]], device: str) -> None:
    """Refuse before the first timing if any configuration cannot fit (one line)."""
    from ..bridge.devices import check_run_memory, timing_device
    from ..timing.benchmark import timing_spec

    dev = timing_device(device)
    for s, w in pairs:
        check_run_memory(timing_spec(s)[0], w, dev, "the timed run")


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
    on_row: Callable[[CompareRow], None] | None = None,
    predict: bool = False,
    cache: bool = True,
    cache_dir: str | None = None,
    on_gemm: Callable[[int, int], None] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> CompareResult:
    """Compare cell types built like ``spec``, for one workload; ``spec`` itself is the first row.

    ``spec`` is a :class:`RecurrentSpec` or a recurrent ``nn.Module`` (a template: its input
    size, layers, directions, bias layout and convention are kept; a projection only where the
    cell has one) or an explicit list of specs. ``cells`` defaults to the spec's own cell and
    the classic RNN, LSTM, GRU. ``equal="params"`` resizes every cell after the first to the
    first one's parameter count. With ``bench=True`` each row is timed on ``device`` (see
    :func:`paramcalc.timing.benchmark.bench`); memory is checked for every row first. With
    ``predict=True`` each row is also predicted by the GEMM-sequence bound (only the distinct
    GEMM shapes of all rows are timed, once, cached unless ``cache=False``; ``on_gemm(done,
    total)`` after each: a progress bar); with both, the table has measured/predicted.
    ``output``: a file the result is exported to; when timing, its free space is checked first
    and it is written after each timed row (``partial`` in its header until the last), and a
    ``KeyboardInterrupt`` after the first row raises :class:`~paramcalc.errors.Interrupted`
    carrying the rows finished (see ``docs/bench.md``).

    >>> import paramcalc as pc
    >>> r = pc.compare(pc.RecurrentSpec("lstm", 28, 256, num_layers=2), equal="params")
    >>> [(row.spec.cell, row.spec.hidden_size) for row in r.rows]
    [('lstm', 256), ('rnn', 517), ('gru', 296)]
    """
    specs = _equalise(_specs_for(spec, cells), equal, multiple_of)
    w = _workload(workload)
    _before_timing(output, len(specs), bench)
    costs = [cost(s, w) for s in specs]
    if bench:
        from ..timing.benchmark import check_min_run_time, check_threads

        check_threads(threads)
        check_min_run_time(min_run_time)
        _memory_checked(((s, w) for s in specs), device)
    preds: list[Any] = [None] * len(specs)
    if predict:
        from ..timing.predict import predict_many

        preds = list(
            predict_many(
                [(s, w) for s in specs],
                device,
                threads=threads,
                cache=cache,
                cache_dir=cache_dir,
                on_timed=on_gemm,
                costs=costs,
            )
        )
    rows = _rows(
        [(s, w, c, p) for s, c, p in zip(specs, costs, preds, strict=True)],
        lambda s, w, c, b, p: CompareRow(s, total_params(s), c, b, p),
        lambda done, planned: CompareResult(tuple(done), w, equal, device, planned),
        timing=_bench_kwargs(bench, device, threads, min_run_time, seed),
        on_row=on_row,
        output=output,
    )
    result = CompareResult(tuple(rows), w, equal, device if bench or predict else None)
    if output is not None and not bench:
        result.export(output)
    return result


def _bench_kwargs(
    bench: bool, device: str, threads: int | None, min_run_time: float, seed: int
) -> dict[str, Any] | None:
    if not bench:
        return None
    return {"device": device, "threads": threads, "min_run_time": min_run_time, "seed": seed}


# --- ranges --------------------------------------------------------------------------------

_RANGE_RE = re.compile(r"^\s*(-?\d+)\s*(?::\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?)?$")


def parse_range(text: Any, what: str, *, maximum: int = MAX_SIZE) -> tuple[int, ...]:
    """Parse ``64:1024:64`` (start:stop:step, stop inclusive), ``1:4``, ``32,64,128`` or ``256``.

    Comma-separated items may themselves be ranges; duplicates are dropped, order is kept. The
    text, each number's digits and the number of values are checked before anything is
    expanded, so a typo cannot allocate a billion values. Python ``range`` objects and
    sequences of ints are accepted too (their length is checked first).
    """
    if isinstance(text, bool):
        raise ParamcalcError(f"{what} must be integers, got {text!r}")
    if isinstance(text, int):
        items: list[range | int] = [text]
    elif isinstance(text, str):
        if len(text) > MAX_RANGE_TEXT:
            raise ParamcalcError(f"{what}: {len(text):,} characters is too long for a range")
        items = [_parse_item(part, what) for part in text.split(",")]
    elif isinstance(text, range):
        items = [text]
    elif isinstance(text, Iterable):
        items = []
        for v in text:
            items.append(v)
            if len(items) > MAX_CONFIGS:
                raise ParamcalcError(f"{what} has more than {MAX_CONFIGS:,} values")
    else:
        raise ParamcalcError(
            f"{what} must be a range text like 64:512:64, a number or a list, got {type(text).__name__}"
        )
    total = sum(len(i) if isinstance(i, range) else 1 for i in items)
    if total > MAX_CONFIGS:
        raise ParamcalcError(f"{what} has {total:,} values, more than {MAX_CONFIGS:,}")
    values: list[int] = []
    seen: set[int] = set()
    for item in items:
        for v in item if isinstance(item, range) else [item]:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ParamcalcError(f"{what} must be integers, got {v!r}")
            if v < 1:
                raise ParamcalcError(f"{what} must be positive, got {v}")
            if v > maximum:
                raise ParamcalcError(f"{what} must be at most {maximum:,}, got {v:,}")
            if v not in seen:
                seen.add(v)
                values.append(v)
    return tuple(values)


def _parse_item(part: str, what: str) -> range | int:
    m = _RANGE_RE.match(part)
    if not m:
        shown = part.strip() if len(part) <= 40 else part.strip()[:37] + "..."
        raise ParamcalcError(
            f"cannot parse {what} {shown!r}: use start:stop:step (stop inclusive), "
            "start:stop, a comma list like 64,128,256, or a single number"
        )
    numbers = [g for g in m.groups() if g is not None]
    if any(len(g.lstrip("-")) > MAX_RANGE_DIGITS for g in numbers):
        raise ParamcalcError(f"{what}: a number of more than {MAX_RANGE_DIGITS} digits is out of range")
    start, stop, step = m.group(1), m.group(2), m.group(3)
    if stop is None:
        return int(start)
    a, b, s = int(start), int(stop), int(step) if step is not None else 1
    if s <= 0:
        raise ParamcalcError(f"{what} range {part.strip()!r}: the step must be positive, got {s}")
    if a > b:
        raise ParamcalcError(f"{what} range {part.strip()!r}: start {a} is larger than stop {b}")
    return range(a, b + 1, s)


def parse_cells(text: str | Sequence[str] | None) -> list[str] | None:
    """``rnn,lstm,gru`` -> canonical cell names (one-line error for an unknown or empty list)."""
    return cell_names(text, "--cells")


# --- sweep ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepRow:
    """One configuration of a sweep: spec, workload, parameter count, cost, optional timing."""

    spec: RecurrentSpec
    workload: Workload
    params: int
    cost: CostResult
    bench: BenchResult | None = None
    prediction: PredictResult | None = None


SWEEP_COLUMNS = (
    replace(CELL_COLUMN, fold=True),
    Column("input_size", wide=True, doc="input features d"),
    HIDDEN_COLUMN,
    Column("num_layers", doc="stacked layers L"),
    Column("batch", doc="sequences per batch B"),
    Column("seq_len", doc="time steps T"),
    PARAMS_COLUMN,
    *COST_COLUMNS,
    Column("flops", doc="FLOPs of the batch (cost model)"),
)


@dataclass(frozen=True, repr=False)
class SweepResult(_Plotted):
    """A tidy table: one row per configuration (cell x hidden x layers x batch x seq_len)."""

    VIEWS = ("rows",)

    rows: tuple[SweepRow, ...]
    template: RecurrentSpec
    device: str | None = None
    #: Configurations the run was to have; more than ``len(rows)``: an interrupted run.
    planned: int | None = None

    @property
    def partial(self) -> bool:
        """Whether the run was interrupted before every configuration was timed."""
        return _is_partial(self.rows, self.planned)

    @property
    def specs(self) -> tuple[RecurrentSpec, ...]:
        return tuple(r.spec for r in self.rows)

    @property
    def workloads(self) -> tuple[Workload, ...]:
        return tuple(r.workload for r in self.rows)

    @property
    def benched(self) -> bool:
        return bool(self.rows) and all(r.bench is not None for r in self.rows)

    @property
    def predicted(self) -> bool:
        return bool(self.rows) and all(r.prediction is not None for r in self.rows)

    def _table(self, view: str) -> Table:
        cols = SWEEP_COLUMNS + (BENCH_COLUMNS if self.benched else ())
        cols += PREDICT_COLUMNS if self.predicted else ()
        cols += (RATIO_COLUMN,) if self.benched and self.predicted else ()
        if self.benched or self.predicted:  # timings first; the cost model's numbers with --wide
            cols = tuple(_hidden(list(cols), {c.name for c in COST_COLUMNS} | {"flops"}))
        if self.benched and self.predicted:  # the ratio; the rest with --wide
            hide = {"iqr_ms", "kernel", "predicted_ms", "predicted_tokens_per_s"}
            cols = tuple(_hidden(list(cols), hide))
        cols = tuple(_hidden(list(cols), {*self._shared(), "flops_per_seq"}))  # title; flops / batch
        out = []
        for r in self.rows:
            s, w = r.spec, r.workload
            row: tuple[Any, ...] = (
                s.cell,
                s.input_size,
                s.hidden_size,
                s.num_layers,
                w.batch,
                w.seq_len,
                r.params,
            )
            row += (*_cost_values(r.cost), r.cost.flops)
            if self.benched:
                row += _bench_values(r.bench)
            if self.predicted:
                row += _predict_values(r.prediction)
            if self.benched and self.predicted:
                row += (_ratio(r.bench, r.prediction),)
            out.append(row)
        return Table(cols, tuple(out))

    #: Columns the title states when every row shares their value: (column, title text, value).
    SHARED: ClassVar[tuple[tuple[str, str, Callable[[SweepRow], int]], ...]] = (
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
        out = _partial_notes(self.rows, self.planned, "configurations")
        out.append(f"FLOPs: {self.rows[0].cost.convention}")
        out += _noise_notes([r.bench for r in self.rows if r.bench is not None])
        out += _predict_notes([r.prediction for r in self.rows if r.prediction is not None])
        return out

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"template": self.template.to_dict(), "configurations": len(self.rows)}
        if self.rows:
            meta["cost_convention"] = self.rows[0].cost.convention
            w = self.rows[0].workload
            meta["dtype"], meta["mode"] = w.dtype, w.mode
        meta.update(_runs_meta("sweep", self.rows, self.benched or self.predicted, lambda r: r.workload))
        meta.update(_partial_meta(self.rows, self.planned))
        return meta

    def context(self) -> list[tuple[str, str]]:
        env = _environment(self.rows[0].bench or self.rows[0].prediction) if self.rows else []
        return [("sweep", self.title()), *env]


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
    cell_list = parse_cells(cells) or [spec.cell]
    hs = parse_range(hidden_sizes if hidden_sizes is not None else spec.hidden_size, "hidden sizes")
    ls = parse_range(num_layers if num_layers is not None else spec.num_layers, "layers", maximum=MAX_LAYERS)
    bs = parse_range(batches, "batch sizes")
    ts = parse_range(seq_lens, "sequence lengths")
    n = prod((len(cell_list), len(hs), len(ls), len(bs), len(ts)))
    cap = MAX_TIMED_CONFIGS if timed else MAX_CONFIGS
    if n > cap:
        raise ParamcalcError(
            f"the sweep has {n:,} configurations ({plural(len(cell_list), 'cell')} x {len(hs)} hidden x "
            f"{plural(len(ls), 'layer count')} x {len(bs)} batch x {len(ts)} seq_len), more than the "
            f"{cap:,} allowed"
            f"{' when timing' if timed else ''}: use fewer values or larger steps"
        )
    Workload(dtype=dtype, mode=mode)  # a bad dtype or mode fails here, once
    configs: list[tuple[RecurrentSpec, Workload]] = []
    for name in cell_list:
        base = retarget(spec, name)
        # A single-step cell (lstm_cell, ...) has exactly one layer: the layers range does not apply.
        layers = (1,) if base.cell_type.single_step else ls
        if base.proj_size and min(hs) <= base.proj_size:
            raise ParamcalcError(
                f"hidden size {min(hs)} is not larger than proj_size {base.proj_size} "
                f"(an LSTM's projection must be smaller than its hidden size): start the range above it"
            )
        for h in hs:
            for n_layers in layers:
                s = base.replace(hidden_size=h, num_layers=n_layers)
                for b in bs:
                    for t in ts:
                        configs.append((s, Workload(batch=b, seq_len=t, dtype=dtype, mode=mode)))
    return configs


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
    on_row: Callable[[SweepRow], None] | None = None,
    predict: bool = False,
    cache: bool = True,
    cache_dir: str | None = None,
    on_gemm: Callable[[int, int], None] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> SweepResult:
    """Every combination of cells, hidden sizes, layers, batch sizes and sequence lengths.

    ``spec`` is the template (input size, directions, bias layout, convention; a projection only
    for cells that have one); ``cells``, ``hidden_sizes`` and ``num_layers`` default to the
    template's own. Ranges may be strings (``"64:1024:64"``, ``"1:4"``, ``"32,64"``), ``range``
    objects or sequences of ints. At most :data:`MAX_CONFIGS` configurations
    (:data:`MAX_TIMED_CONFIGS` when timing); ``on_row`` is called after each one (a progress
    bar). When timing, the memory of every configuration is checked before the first is timed.
    With ``predict=True`` every configuration is predicted by the GEMM-sequence bound: the
    distinct GEMM shapes of the whole sweep are timed once (``on_gemm(done, total)`` after
    each), so a 1,000-configuration sweep times only the shapes it has, not 1,000 models.
    ``output`` is written as :func:`compare` writes it (rows kept as they are timed).

    >>> import paramcalc as pc
    >>> r = pc.sweep(pc.RecurrentSpec("lstm", 28, 256), cells="rnn,lstm", hidden_sizes="64:128:64")
    >>> [(row.spec.cell, row.spec.hidden_size, row.params) for row in r.rows]
    [('rnn', 64, 6016), ('rnn', 128, 20224), ('lstm', 64, 24064), ('lstm', 128, 80896)]
    """
    configs = sweep_configs(
        spec,
        cells=cells,
        hidden_sizes=hidden_sizes,
        num_layers=num_layers,
        batches=batches,
        seq_lens=seq_lens,
        dtype=dtype,
        mode=mode,
        timed=bench,
    )
    _before_timing(output, len(configs), bench)
    costs = [cost(s, w) for s, w in configs]
    if bench:
        from ..timing.benchmark import check_min_run_time, check_threads

        check_threads(threads)
        check_min_run_time(min_run_time)
        _memory_checked(configs, device)
    preds: list[Any] = [None] * len(configs)
    if predict:
        from ..timing.predict import predict_many

        preds = list(
            predict_many(
                configs,
                device,
                threads=threads,
                cache=cache,
                cache_dir=cache_dir,
                on_timed=on_gemm,
                costs=costs,
            )
        )
    template = as_spec(spec, "sweep")
    rows = _rows(
        [(s, w, c, p) for (s, w), c, p in zip(configs, costs, preds, strict=True)],
        lambda s, w, c, b, p: SweepRow(s, w, total_params(s), c, b, p),
        lambda done, planned: SweepResult(tuple(done), template, device, planned),
        timing=_bench_kwargs(bench, device, threads, min_run_time, seed),
        on_row=on_row,
        output=output,
    )
    result = SweepResult(tuple(rows), template, device if bench or predict else None)
    if output is not None and not bench:
        result.export(output)
    return result
