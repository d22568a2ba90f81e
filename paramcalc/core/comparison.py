"""Side-by-side comparison of cell types, and sweeps over ranges of configurations.

Both are pure Python (count, cost model, solve) unless asked to time: then each configuration
is handed to :func:`paramcalc.bench.bench`, which imports torch. Results carry their specs and
workloads (like torch.utils.benchmark's ``Measurement``) and turn into tables with
``records()`` / ``to_frame()``.

``compare(..., equal="params")`` keeps the first cell (the reference) as given and gives every
other cell the hidden size whose parameter count is closest to the reference's
(:func:`paramcalc.solve.closest_hidden`), so the comparison is at equal model size.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING, Any

from .cells import FAMILIES, get_cell
from .count import total_params
from .errors import ParamcalcError
from .solve import _retarget, closest_hidden
from .spec import MAX_LAYERS, MAX_SIZE, RecurrentSpec

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import pandas as pd

    from .bench import BenchResult
    from .cost import CostResult, Workload

#: Most configurations a sweep may have (analytic only), and when every one is timed.
MAX_CONFIGS = 10_000
MAX_TIMED_CONFIGS = 500
#: Default seconds of timing per measurement in compare and sweep (module, then GEMM).
DEFAULT_MIN_RUN_TIME = 0.2

EQUAL_MODES = ("hidden", "params")


def _sig(x: float) -> float:
    from .bench import sig

    return sig(x)


def _rate(x: float) -> float:
    from .bench import rate

    return rate(x)


def _cost_columns(c: CostResult) -> dict[str, Any]:
    return {
        "macs_per_step": c.macs_per_step,
        "flops_per_seq": c.flops_per_sequence,
        "param_bytes": c.param_bytes,
        "train_bytes": c.training_bytes,
    }


def _bench_columns(b: BenchResult) -> dict[str, Any]:
    return {
        "time_ms": _sig(b.median_s * 1e3),
        "iqr_ms": _sig(b.iqr_s * 1e3),
        "tokens_per_s": _rate(b.tokens_per_s),
        "gflop_per_s": _sig(b.flop_per_s / 1e9),
        "kernel": b.kernel_path,
    }


# --- compare -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompareRow:
    """One cell type: its spec, parameter count, cost for the workload and (optionally) timing."""

    spec: RecurrentSpec
    params: int
    cost: CostResult
    bench: BenchResult | None = None


class _Table:
    """What compare and sweep results share: a frame and a plot of their ``records()``."""

    def records(self) -> list[dict[str, Any]]:  # pragma: no cover - overridden
        raise NotImplementedError

    def title(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.records())

    def plot(self, path: str | Path, *, title: str | None = None) -> Path:
        """Draw parameters, FLOPs and (if timed) throughput against hidden size per cell."""
        from .plot import plot_records

        return plot_records(self.records(), path, title=title or self.title())


@dataclass(frozen=True)
class CompareResult(_Table):
    """A row per cell type for one workload. ``reference`` is the first row's spec."""

    rows: tuple[CompareRow, ...]
    workload: Workload
    equal: str
    device: str | None = None

    @property
    def reference(self) -> RecurrentSpec:
        return self.rows[0].spec

    @property
    def specs(self) -> tuple[RecurrentSpec, ...]:
        return tuple(r.spec for r in self.rows)

    @property
    def benched(self) -> bool:
        return all(r.bench is not None for r in self.rows)

    def records(self) -> list[dict[str, Any]]:
        """Plain rows: counts and bytes are exact ints; measured values have 4 significant digits.

        ``time_vs_first`` is this row's median time over the first row's.
        """
        first = self.rows[0]
        out = []
        for r in self.rows:
            rec: dict[str, Any] = {"cell": r.spec.cell, "hidden_size": r.spec.hidden_size, "params": r.params}
            if self.equal == "params":
                rec["params_vs_first_%"] = round(100 * (r.params - first.params) / first.params, 3)
            rec.update(_cost_columns(r.cost))
            if r.bench is not None and first.bench is not None:
                rec.update(_bench_columns(r.bench))
                rec["time_vs_first"] = _sig(r.bench.median_s / first.bench.median_s)
            out.append(rec)
        return out

    def meta(self) -> dict[str, Any]:
        """What the table was computed for (the JSON export's header)."""
        w = self.workload
        meta: dict[str, Any] = {
            "equal": self.equal,
            "reference": self.reference.to_dict(),
            "workload": {"batch": w.batch, "seq_len": w.seq_len, "dtype": w.dtype, "mode": w.mode},
            "cost_convention": self.rows[0].cost.convention,
        }
        b = self.rows[0].bench
        if b is not None:
            meta.update(b.environment())
        return meta

    def title(self) -> str:
        """What the rows share: input size, layers, workload, and where they were timed."""
        spec, w = self.reference, self.workload
        parts = [f"d={spec.input_size}", f"L={spec.num_layers}"]
        if spec.bidirectional:
            parts.append("bidirectional")
        parts += [f"batch {w.batch}", f"seq_len {w.seq_len}", str(w.dtype), str(w.mode)]
        parts += _timed_on(self.rows[0].bench)
        return ", ".join(parts)


def _timed_on(b: BenchResult | None) -> list[str]:
    return [] if b is None else [f"timed on {b.device} ({b.threads} threads)"]


def _specs_for(
    spec: RecurrentSpec | Sequence[RecurrentSpec], cells: Sequence[str] | None
) -> list[RecurrentSpec]:
    if isinstance(spec, RecurrentSpec):
        names = list(cells) if cells is not None else list(FAMILIES)
        if not names:
            raise ParamcalcError("name at least one cell to compare, e.g. rnn,lstm,gru")
        specs = []
        for name in names:
            ct = get_cell(name)
            specs.append(spec if ct.name == spec.cell else _retarget(spec, ct.name))
        return specs
    if cells is not None:
        raise ParamcalcError("give cells only with a single template spec, not with a list of specs")
    specs = list(spec)
    if not specs or not all(isinstance(s, RecurrentSpec) for s in specs):
        raise ParamcalcError("compare needs a RecurrentSpec or a non-empty list of them")
    return specs


def _equalise(specs: list[RecurrentSpec], equal: str, multiple_of: int) -> list[RecurrentSpec]:
    if equal not in EQUAL_MODES:
        raise ParamcalcError(f"equal must be one of {', '.join(EQUAL_MODES)}, got {equal!r}")
    if equal == "hidden" or len(specs) < 2:
        return specs
    if isinstance(multiple_of, bool) or not isinstance(multiple_of, int) or multiple_of < 1:
        raise ParamcalcError(f"multiple_of must be a positive integer, got {multiple_of!r}")
    target = total_params(specs[0])
    return [specs[0], *(s.replace(hidden_size=closest_hidden(s, target, multiple_of)) for s in specs[1:])]


def _workload(workload: Workload | None) -> Workload:
    from .cost import Workload

    return workload if workload is not None else Workload()


def compare(
    spec: RecurrentSpec | Sequence[RecurrentSpec],
    cells: Sequence[str] | None = None,
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
) -> CompareResult:
    """Compare cell types (default RNN, LSTM, GRU) built like ``spec``, for one workload.

    ``spec`` is a template (its input size, layers, directions, bias and convention are kept;
    a projection only for LSTM) or an explicit list of specs. ``equal="params"`` resizes every
    cell after the first to the first one's parameter budget. With ``bench=True`` each row is
    timed on ``device`` (see :func:`paramcalc.bench.bench`); memory is checked for every row
    before the first is timed.

    >>> import paramcalc as pc
    >>> r = pc.compare(pc.RecurrentSpec("lstm", 28, 256, num_layers=2), equal="params")
    >>> [(row.spec.cell, row.spec.hidden_size) for row in r.rows]
    [('rnn', 256), ('lstm', 125), ('gru', 146)]
    """
    from .cost import cost

    specs = _equalise(_specs_for(spec, cells), equal, multiple_of)
    w = _workload(workload)
    costs = [cost(s, w) for s in specs]
    if bench:
        from .bench import check_memory

        for s, c in zip(specs, costs, strict=True):
            check_memory(s, w, device, c)
    rows = []
    for s, c in zip(specs, costs, strict=True):
        b = None
        if bench:
            from .bench import bench as bench_

            b = bench_(s, w, device=device, threads=threads, min_run_time=min_run_time, seed=seed)
        row = CompareRow(s, total_params(s), c, b)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return CompareResult(tuple(rows), w, equal, device if bench else None)


# --- ranges --------------------------------------------------------------------------------

_RANGE_RE = re.compile(r"^\s*(-?\d+)\s*(?::\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?)?$")


def parse_range(text: str | int | Sequence[int], what: str, *, maximum: int = MAX_SIZE) -> tuple[int, ...]:
    """Parse ``64:1024:64`` (start:stop:step, stop inclusive), ``1:4``, ``32,64,128`` or ``256``.

    Comma-separated items may themselves be ranges; duplicates are dropped, order is kept. The
    size is checked before anything is expanded, so a typo cannot allocate a billion values.
    """
    if isinstance(text, int) and not isinstance(text, bool):
        items: list[range | int] = [text]
    elif isinstance(text, str):
        items = [_parse_item(part, what) for part in text.split(",")]
    else:
        items = list(text)
    total = sum(len(i) if isinstance(i, range) else 1 for i in items)
    if total > MAX_CONFIGS:
        raise ParamcalcError(f"{what} {text!r} has {total:,} values, more than {MAX_CONFIGS:,}")
    values: list[int] = []
    for item in items:
        for v in item if isinstance(item, range) else [item]:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ParamcalcError(f"{what} must be integers, got {v!r}")
            if v < 1:
                raise ParamcalcError(f"{what} must be positive, got {v} in {text!r}")
            if v > maximum:
                raise ParamcalcError(f"{what} must be at most {maximum:,}, got {v:,}")
            if v not in values:
                values.append(v)
    return tuple(values)


def _parse_item(part: str, what: str) -> range | int:
    m = _RANGE_RE.match(part)
    if not m:
        raise ParamcalcError(
            f"cannot parse {what} {part.strip()!r}: use start:stop:step (stop inclusive), "
            "start:stop, a comma list like 64,128,256, or a single number"
        )
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
    if text is None:
        return None
    names = [c.strip() for c in text.split(",")] if isinstance(text, str) else [str(c) for c in text]
    names = [n for n in names if n]
    if not names:
        raise ParamcalcError("--cells is empty: name at least one cell, e.g. --cells rnn,lstm,gru")
    out: list[str] = []
    for n in names:
        name = get_cell(n).name
        if name not in out:
            out.append(name)
    return out


# --- sweep ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepRow:
    """One configuration of a sweep: spec, workload, parameter count, cost, optional timing."""

    spec: RecurrentSpec
    workload: Workload
    params: int
    cost: CostResult
    bench: BenchResult | None = None

    def record(self) -> dict[str, Any]:
        s, w = self.spec, self.workload
        rec: dict[str, Any] = {
            "cell": s.cell,
            "input_size": s.input_size,
            "hidden_size": s.hidden_size,
            "num_layers": s.num_layers,
            "batch": w.batch,
            "seq_len": w.seq_len,
            "params": self.params,
        }
        rec.update(_cost_columns(self.cost))
        rec["flops"] = self.cost.flops
        if self.bench is not None:
            rec.update(_bench_columns(self.bench))
        return rec


@dataclass(frozen=True)
class SweepResult(_Table):
    """A tidy table: one row per configuration (cell x hidden x layers x batch x seq_len)."""

    rows: tuple[SweepRow, ...]
    template: RecurrentSpec
    device: str | None = None

    @property
    def specs(self) -> tuple[RecurrentSpec, ...]:
        return tuple(r.spec for r in self.rows)

    @property
    def workloads(self) -> tuple[Workload, ...]:
        return tuple(r.workload for r in self.rows)

    def records(self) -> list[dict[str, Any]]:
        return [r.record() for r in self.rows]

    def meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"template": self.template.to_dict(), "configurations": len(self.rows)}
        if self.rows:
            meta["cost_convention"] = self.rows[0].cost.convention
            w = self.rows[0].workload
            meta["dtype"], meta["mode"] = w.dtype, w.mode
            b = self.rows[0].bench
            if b is not None:
                meta.update(b.environment())
        return meta

    def title(self) -> str:
        """What the rows share: input size, and layers, batch, seq_len when they do not vary."""
        t = self.template
        parts = [f"d={t.input_size}"]
        for key, fmt in (("num_layers", "L={}"), ("batch", "batch {}"), ("seq_len", "seq_len {}")):
            values = {r.record()[key] for r in self.rows}
            if len(values) == 1:
                parts.append(fmt.format(values.pop()))
        if t.bidirectional:
            parts.append("bidirectional")
        if self.rows:
            w = self.rows[0].workload
            parts += [w.dtype, w.mode]
            parts += _timed_on(self.rows[0].bench)
        return ", ".join(parts)


def sweep_configs(
    spec: RecurrentSpec,
    *,
    cells: Sequence[str] | str | None = None,
    hidden_sizes: Sequence[int] | str | int | None = None,
    num_layers: Sequence[int] | str | int | None = None,
    batches: Sequence[int] | str | int = (1,),
    seq_lens: Sequence[int] | str | int = (1,),
    dtype: str = "fp32",
    mode: str = "inference",
    timed: bool = False,
) -> list[tuple[RecurrentSpec, Workload]]:
    """The validated (spec, workload) pairs of a sweep, in row order (see :func:`sweep`)."""
    from .cost import Workload

    if not isinstance(spec, RecurrentSpec):
        raise ParamcalcError(f"sweep needs a template RecurrentSpec, got {type(spec).__name__}")
    cell_list = parse_cells(cells) or [spec.cell]
    hs = parse_range(hidden_sizes if hidden_sizes is not None else spec.hidden_size, "hidden sizes")
    ls = parse_range(num_layers if num_layers is not None else spec.num_layers, "layers", maximum=MAX_LAYERS)
    bs = parse_range(batches, "batch sizes")
    ts = parse_range(seq_lens, "sequence lengths")
    n = prod((len(cell_list), len(hs), len(ls), len(bs), len(ts)))
    cap = MAX_TIMED_CONFIGS if timed else MAX_CONFIGS
    if n > cap:
        raise ParamcalcError(
            f"the sweep has {n:,} configurations ({len(cell_list)} cells x {len(hs)} hidden x {len(ls)} "
            f"layers x {len(bs)} batch x {len(ts)} seq_len), more than the {cap:,} allowed"
            f"{' when timing' if timed else ''}: use fewer values or larger steps"
        )
    Workload(dtype=dtype, mode=mode)  # a bad dtype or mode fails here, once
    configs: list[tuple[RecurrentSpec, Workload]] = []
    for name in cell_list:
        base = spec if name == spec.cell else _retarget(spec, name)
        # A single-step cell (lstm_cell, ...) has exactly one layer: the layers range does not apply.
        layers = (1,) if base.cell_type.single_step else ls
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
    hidden_sizes: Sequence[int] | str | int | None = None,
    num_layers: Sequence[int] | str | int | None = None,
    batches: Sequence[int] | str | int = (1,),
    seq_lens: Sequence[int] | str | int = (1,),
    dtype: str = "fp32",
    mode: str = "inference",
    bench: bool = False,
    device: str = "cpu",
    threads: int | None = None,
    min_run_time: float = DEFAULT_MIN_RUN_TIME,
    seed: int = 0,
    on_row: Callable[[SweepRow], None] | None = None,
) -> SweepResult:
    """Every combination of cells, hidden sizes, layers, batch sizes and sequence lengths.

    ``spec`` is the template (input size, directions, bias, convention; a projection only for
    LSTM rows); ``cells``, ``hidden_sizes`` and ``num_layers`` default to the template's own.
    Ranges may be strings (``"64:1024:64"``, ``"1:4"``, ``"32,64"``) or sequences of ints. At
    most :data:`MAX_CONFIGS` configurations (:data:`MAX_TIMED_CONFIGS` when timing); ``on_row``
    is called after each one (a progress bar). When timing, the memory of every configuration
    is checked before the first is timed.

    >>> import paramcalc as pc
    >>> r = pc.sweep(pc.RecurrentSpec("lstm", 28, 256), cells="rnn,lstm", hidden_sizes="64:128:64")
    >>> [(row.spec.cell, row.spec.hidden_size, row.params) for row in r.rows]
    [('rnn', 64, 6016), ('rnn', 128, 20224), ('lstm', 64, 24064), ('lstm', 128, 80896)]
    """
    from .cost import cost

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
    costs = [cost(s, w) for s, w in configs]
    if bench:
        from .bench import check_memory

        for (s, w), c in zip(configs, costs, strict=True):
            check_memory(s, w, device, c)
    rows = []
    for (s, w), c in zip(configs, costs, strict=True):
        b_res = None
        if bench:
            from .bench import bench as bench_

            b_res = bench_(s, w, device=device, threads=threads, min_run_time=min_run_time, seed=seed)
        row = SweepRow(s, w, total_params(s), c, b_res)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return SweepResult(tuple(rows), spec, device if bench else None)
