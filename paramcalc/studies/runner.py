"""The one runner of studies: configurations in, finished rows out.

:func:`run` takes ``(spec, workload)`` pairs and gives every one a :class:`Row`: its parameter
count and cost (pure Python), and when asked the memory model's peak of its timed run (checked
against the device for every row before the first is timed), its prediction (every distinct
GEMM shape of all rows timed once: :func:`paramcalc.timing.predict.predict_many`) and its
measurement (:func:`paramcalc.timing.benchmark.bench`, one row after another). A study's view
(compare's table, sweep's table) is built from the rows by a ``view(rows, planned)`` callable.

Long runs keep what they finished: with an ``output`` the view of the rows so far is written
there after each timed row (marked partial until the last), so a run stopped at any point
leaves a valid file; a ``KeyboardInterrupt`` once some rows are finished becomes
:class:`~paramcalc.errors.Interrupted` carrying their view. The output's target and, when
timing, the free space its table needs are checked before any work.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..core.costmodel import CostResult, cost
from ..core.params import total_params
from ..core.spec import RecurrentSpec
from ..core.workload import Workload
from ..errors import Interrupted

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from ..timing.benchmark import BenchResult, RunPlan
    from ..timing.predict import PredictResult

#: Default seconds of timing per measurement in compare and sweep.
DEFAULT_MIN_RUN_TIME = 0.2


@dataclass(frozen=True)
class Row:
    """One configuration of a study: what it is, what it costs, and what was predicted and measured.

    ``memory``: the memory model's peak of its timed run in bytes (checked against the device
    before timing; ``None`` when not timed). ``prediction``: the GEMM-sequence bound
    (``predict=True``); ``bench``: the measurement (``bench=True``).
    """

    spec: RecurrentSpec
    workload: Workload
    params: int
    cost: CostResult
    memory: int | None = None
    prediction: PredictResult | None = None
    bench: BenchResult | None = None


@dataclass(frozen=True)
class TimingOptions:
    """What a study does beyond the cost model: time its rows (``bench``), predict them
    (``predict``), where and how (compare's and sweep's keyword arguments of the same names)."""

    bench: bool = False
    predict: bool = False
    device: str = "cpu"
    threads: int | None = None
    min_run_time: float = DEFAULT_MIN_RUN_TIME
    seed: int = 0
    cache: bool = True
    cache_dir: str | os.PathLike[str] | None = None

    @property
    def device_shown(self) -> str | None:
        """The device a result names: the one timed or predicted on, ``None`` for a pure study."""
        return self.device if self.bench or self.predict else None


class View(Protocol):
    """What a study's result is to the runner: something it can export."""

    def export(self, path: str | os.PathLike[str]) -> Path: ...


V = TypeVar("V", bound=View)


def run(
    pairs: Sequence[tuple[RecurrentSpec, Workload]],
    view: Callable[[tuple[Row, ...], int | None], V],
    timing: TimingOptions,
    *,
    on_row: Callable[[Row], None] | None = None,
    on_gemm: Callable[[int, int], None] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> V:
    """The rows of ``pairs``, finished as ``timing`` asks, as ``view(rows, None)`` (see the module
    docstring). ``on_row(row)`` after each row (a progress bar); ``on_gemm(done, total)`` after
    each GEMM shape a prediction times."""
    _before_timing(output, len(pairs), timing.bench)
    rows = [Row(s, w, total_params(s), cost(s, w)) for s, w in pairs]
    plans: list[RunPlan | None] = [None] * len(rows)
    if timing.bench:
        rows, plans = _planned(rows, timing)
    if timing.predict:
        rows = _predicted(rows, timing, on_gemm)
    done = _measured(rows, plans, view, timing, on_row, output)
    result = view(tuple(done), None)
    if output is not None and not timing.bench:
        result.export(output)
    return result


def _before_timing(output: str | os.PathLike[str] | None, rows: int, timed: bool) -> None:
    """Check the output target, and when timing the free space its table needs, before any work."""
    if output is None:
        return
    from ..results.renderers import check_export

    check_export(output, rows if timed else None)


def _planned(rows: list[Row], timing: TimingOptions) -> tuple[list[Row], list[RunPlan | None]]:
    """The timing arguments checked, and every row's run planned and its memory checked against
    the device: a configuration that cannot fit is refused before the first is timed."""
    from ..bridge.devices import timing_device
    from ..timing.base import check_min_run_time, check_threads
    from ..timing.benchmark import check_plan, plan_run

    check_threads(timing.threads)
    check_min_run_time(timing.min_run_time)
    dev = timing_device(timing.device)
    plans: list[RunPlan | None] = []
    out = []
    for r in rows:
        plan = plan_run(r.spec, r.workload, dev)
        check_plan(plan, r.workload, dev)
        plans.append(plan)
        out.append(replace(r, memory=plan.peak))
    return out, plans


def _predicted(
    rows: list[Row], timing: TimingOptions, on_gemm: Callable[[int, int], None] | None
) -> list[Row]:
    """Every row with its prediction: the distinct GEMM shapes of all rows timed once."""
    from ..timing.predict import predict_many

    preds = predict_many(
        [(r.spec, r.workload) for r in rows],
        timing.device,
        threads=timing.threads,
        cache=timing.cache,
        cache_dir=timing.cache_dir,
        on_timed=on_gemm,
        costs=[r.cost for r in rows],
    )
    return [replace(r, prediction=p) for r, p in zip(rows, preds, strict=True)]


def _measured(
    rows: list[Row],
    plans: list[RunPlan | None],
    view: Callable[[tuple[Row, ...], int | None], V],
    timing: TimingOptions,
    on_row: Callable[[Row], None] | None,
    output: str | os.PathLike[str] | None,
) -> list[Row]:
    """The rows, timed one by one with ``timing.bench``, each handed to ``on_row`` when finished
    and, when timing with an ``output``, the view so far written there (see the module docstring)."""
    done: list[Row] = []
    try:
        for row, plan in zip(rows, plans, strict=True):
            if timing.bench:
                row = replace(row, bench=_bench(row, plan, timing))
            done.append(row)
            if on_row is not None:
                on_row(row)
            if timing.bench and output is not None:
                view(tuple(done), len(rows)).export(output)
    except KeyboardInterrupt as exc:
        if not done or isinstance(exc, Interrupted):
            raise
        partial = view(tuple(done), len(rows))
        if output is not None:
            partial.export(output)
        raise Interrupted(partial) from None
    return done


def _bench(row: Row, plan: RunPlan | None, timing: TimingOptions) -> BenchResult:
    from ..timing import benchmark

    kw: dict[str, Any] = {"device": timing.device, "threads": timing.threads}
    kw.update(min_run_time=timing.min_run_time, seed=timing.seed, cost_result=row.cost, plan=plan)
    return benchmark.bench(row.spec, row.workload, **kw)
