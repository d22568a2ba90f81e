"""What the views of a study share: the row sequence, its columns, its notes and its JSON header.

A view (:class:`~paramcalc.studies.compare.CompareResult`,
:class:`~paramcalc.studies.sweep.SweepResult`) holds the runner's rows and arranges them; the
values of a row's cost, measurement and prediction are read here once for both (like
``torch.utils.benchmark.Compare`` reading every ``Measurement`` the same way whatever the table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..results.base import Result
from ..results.table import Column
from ..results.text import plural
from ..timing.runs import key_columns, record, runs_meta
from .runner import Row

if TYPE_CHECKING:  # pragma: no cover
    from ..timing.benchmark import BenchResult
    from ..timing.predict import PredictResult

#: The columns every comparison starts with (``doc`` defines them in report.md).
CELL_COLUMN, HIDDEN_COLUMN = key_columns(("cell", "hidden_size"))
HIDDEN_COLUMN = replace(HIDDEN_COLUMN, fold=True)
PARAMS_COLUMN = Column("params", doc="parameters of the recurrent stack (exact, from the formulas)")
DIFF_COLUMN = Column(
    "params_diff_pct", "float", unit="%", doc="params relative to the first row's (with equal parameters)"
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


def hidden(cols: Sequence[Column], names: set[str]) -> list[Column]:
    """``cols`` with those named left to the wide table (a default table fits 120 columns)."""
    return [replace(c, wide=True) if c.name in names else c for c in cols]


def row_values(r: Row, benched: bool, predicted: bool) -> dict[str, Any]:
    """A row's cost, and as asked its measurement, prediction and their ratio, by column name."""
    c = r.cost
    out: dict[str, Any] = {
        "params": r.params,
        "macs_per_step": c.macs_per_step,
        "flops_per_seq": c.flops_per_sequence,
        "param_bytes": c.param_bytes,
        "train_bytes": c.training_bytes,
        "flops": c.flops,
    }
    b, p = r.bench, r.prediction
    if benched and b is not None:
        out.update(
            time_ms=b.median_s * 1e3,
            iqr_ms=b.iqr_s * 1e3 if b.spread_known else None,
            tokens_per_s=b.tokens_per_s,
            gflop_per_s=b.flop_per_s / 1e9,
            kernel=_kernel(b),
        )
    if predicted and p is not None:
        out.update(predicted_ms=p.seconds * 1e3, predicted_tokens_per_s=p.tokens_per_s)
    if benched and predicted:
        out["measured_over_predicted"] = _ratio(b, p)
    return out


def _kernel(b: BenchResult) -> str:
    """The kernel path that ran; a reference module's says how it runs (step loop or scan)."""
    from ..bridge.build import kernel_label

    return kernel_label(b.kernel_path, b.spec)


def _ratio(b: BenchResult | None, p: PredictResult | None) -> float | None:
    """Measured / predicted time, ``None`` where either is missing or the bound does not apply."""
    if b is None or p is None or not p.bound_applies:
        return None
    return b.median_s / p.seconds


def environment_lines(b: BenchResult | PredictResult | None) -> list[tuple[str, str]]:
    """The document context of where the rows were timed or predicted."""
    if b is None:
        return []
    return [
        ("device", f"{b.device} ({b.device_name})"),
        ("threads", str(b.threads)),
        ("torch", b.torch_version),
    ]


def predict_notes(preds: Sequence[PredictResult]) -> list[str]:
    """What a set of predictions says: the model, where the bound does not apply, tiles, the cache."""
    if not preds:
        return []
    from ..timing.predict import MODEL_NOTE

    out = [MODEL_NOTE]
    out += reference_notes([p.spec for p in preds], "predicted for")
    out += sorted({p.fused + "; no measured/predicted ratio" for p in preds if p.fused})
    tiled = sum(1 for p in preds if any(g.tiles for g in p.gemms))
    if tiled:
        out.append(
            f"{plural(tiled, 'prediction')} timed GEMMs too large to allocate as tiles with the same MACs"
        )
    out += sorted({n for p in preds for n in p.cache_notes})
    return out


def reference_notes(specs: Sequence[Any], verb: str) -> list[str]:
    """One line per way of running among ``specs`` that is not a ``torch.nn`` module, naming the
    cells run that way: ``MGU, CIFG: predicted for paramcalc's reference module (a Python step
    loop): a correctness reference, not an optimised kernel``."""
    from ..timing.base import timing_spec

    by_note: dict[str, list[str]] = {}
    for spec in specs:
        note = timing_spec(spec)[1]
        if "correctness reference" in note:
            names = by_note.setdefault(note.replace("timed as", verb, 1), [])
            if spec.cell_type.display_name not in names:
                names.append(spec.cell_type.display_name)
    return [f"{', '.join(names)}: {note}" for note, names in by_note.items()]


def noise_notes(benches: Sequence[BenchResult]) -> list[str]:
    """The noise verdict of a set of timings, one sentence, and the machine's."""
    if not benches:
        return []
    out = []
    unknown = [b for b in benches if not b.spread_known]
    if unknown:
        out.append(
            f"{len(unknown)} of {plural(len(benches), 'timing')} "
            f"{'is a single slow call' if len(unknown) == 1 else 'are single slow calls'}: "
            "no spread was measured (raise `min_run_time`)"
        )
    known = [b for b in benches if b.spread_known]
    noisy = [b for b in known if b.noisy]
    if known and not noisy:
        worst = max(b.iqr_s / b.median_s for b in known)
        out.append(f"timings are steady: every IQR is within {max(1, round(100 * worst))}% of its median")
    elif noisy:
        out.append(_noisy_note(noisy, len(benches)))
    return out + machine_notes(benches)


def _noisy_note(noisy: Sequence[BenchResult], total: int) -> str:
    worst = max(b.iqr_s / b.median_s for b in noisy)
    gross = sum(1 for b in noisy if b.noise == "gross")
    return (
        f"noisy: {len(noisy)} of {plural(total, 'timing')} "
        f"{'has' if len(noisy) == 1 else 'have'} an IQR of 10% of the median or more "
        f"(torch.utils.benchmark's warning; {gross} at its gross level, 25% or more; up to "
        f"{100 * worst:.0f}%): is something else running? try `min_run_time=1` or `threads=1`"
    )


def machine_notes(benches: Sequence[BenchResult]) -> list[str]:
    """The oversubscription verdict of a set of timings (the first row's sentence, with a count)."""
    busy = [b for b in benches if b.oversubscribed]
    if not busy:
        return []
    first = next(w for w in busy[0].warnings() if "oversubscribed" in w)
    return [f"{len(busy)} of {len(benches)} timings: {first}"]


class RowsView(Result):
    """A view of a study's rows: what compare's and sweep's results share (each is a frozen
    dataclass that declares these fields).

    ``device``: where the rows were timed or predicted (``None``: neither). ``planned``: rows the
    run was to have; more than ``len(rows)``: an interrupted run (see :attr:`partial`).
    """

    VIEWS = ("rows",)

    rows: tuple[Row, ...]
    device: str | None
    planned: int | None

    @property
    def partial(self) -> bool:
        """Whether the run was interrupted before every row was timed (the rows are those finished)."""
        return self.planned is not None and len(self.rows) < self.planned

    @property
    def specs(self) -> tuple[Any, ...]:
        return tuple(r.spec for r in self.rows)

    @property
    def benched(self) -> bool:
        return bool(self.rows) and all(r.bench is not None for r in self.rows)

    @property
    def predicted(self) -> bool:
        return bool(self.rows) and all(r.prediction is not None for r in self.rows)

    def partial_notes(self, what: str) -> list[str]:
        if not self.partial:
            return []
        return [
            f"partial: the run was interrupted after {len(self.rows):,} of {self.planned:,} {what}; "
            "these are the ones finished, the others were not timed"
        ]

    def runs_meta(self, kind: str) -> dict[str, Any]:
        """The JSON header entries of the timed or predicted rows: the first row's environment,
        and, when every row was timed or predicted, the ``runs`` that ``compare --from`` reads;
        ``partial`` and ``rows_planned`` for an interrupted run."""
        first = (self.rows[0].bench or self.rows[0].prediction) if self.rows else None
        out: dict[str, Any] = first.environment() if first is not None else {}
        if self.benched or self.predicted:
            out.update(
                runs_meta(kind, [record(r.spec, r.workload, r.bench, r.prediction) for r in self.rows])
            )
        if self.partial:
            out.update(partial=True, rows_planned=self.planned)
        return out

    def environment_lines(self) -> list[tuple[str, str]]:
        return environment_lines(self.rows[0].bench or self.rows[0].prediction) if self.rows else []
