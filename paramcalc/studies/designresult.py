"""``DesignResult``: the front of a design search as a result like every other (see
:mod:`paramcalc.studies.design`): a table per view, a frame, exports, a notebook display, a plot.

Views: ``front`` (default: the Pareto front, one row per configuration, with measured over
predicted where a point was verified), ``excluded`` (the excluded regions: per cell, reason,
layers and directions, how many configurations and which hidden sizes), ``surface`` (the GEMM
shapes timed for the throughput surface, their timings and what the fitted model alone gives).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from ..results.base import Result
from ..results.table import Column, Table
from ..results.text import plural
from ..timing.surface import GemmSurface
from .designspace import OBJECTIVES, Point, Region, Request
from .runner import Row

FRONT_COLUMNS = (
    Column("cell", "str", doc="the recurrent cell (paramcalc explain CELL shows its equations)"),
    Column("hidden_size", doc="hidden size Dh of each layer"),
    Column("num_layers", doc="stacked layers L"),
    Column("directions", doc="1, or 2 for a bidirectional stack (directions concatenated)"),
    Column("proj_size", doc="LSTM projection size P (0: none)"),
    Column("dtype", "str", doc="parameters and activations"),
    Column("params", doc="parameters of the stack (exact, from the formulas)"),
    Column(
        "memory_bytes",
        unit="B",
        doc="training: the peak of one step plus Adam's moments; inference: the peak",
    ),
    Column(
        "state_bytes", unit="B", wide=True, doc="the recurrent state of the batch (every layer, direction)"
    ),
    Column("flops", wide=True, doc="FLOPs of one call on the batch (cost model)"),
    Column(
        "predicted_ms", "float", unit="ms", doc="the speed model with GEMM times off the throughput surface"
    ),
    Column(
        "tokens_per_s", "float", unit="1/s", wide=True, doc="time steps of the batch per predicted second"
    ),
    Column("kernel", "str", doc="the kernel path that would run (reference: how paramcalc's module runs)"),
    Column("measured_ms", "float", unit="ms", doc="the measured median (verified points only)"),
    Column("measured_over_predicted", "float", doc="measured_ms / predicted_ms (verified points only)"),
    Column(
        "exact_ms",
        "float",
        unit="ms",
        wide=True,
        doc="the speed model with every GEMM timed at its own shape (paramcalc predict; verified points)",
    ),
)
EXCLUDED_COLUMNS = (
    Column("cell", "str"),
    Column("reason", "str", doc="the first budget or rule the configurations break"),
    Column("num_layers"),
    Column("directions"),
    Column("configs", doc="configurations excluded"),
    Column("hidden_sizes", "str", doc="the hidden sizes excluded (≥ x: every size from x up)"),
)
SURFACE_COLUMNS = (
    Column("dtype", "str"),
    Column("M"),
    Column("K"),
    Column("N"),
    Column("timed_us", "float", unit="µs", doc="the timing of one call (cached or measured now)"),
    Column("model_us", "float", unit="µs", doc="the fitted model alone, before the correction"),
)


@dataclass(frozen=True, repr=False)
class DesignResult(Result):
    """The Pareto front of a design search, the exclusions and the surfaces (see the module
    docstring). ``rows``: the verified points as the studies runner timed them; ``planned``: how
    many were to be timed (more than ``len(rows)``: an interrupted run, see :attr:`partial`)."""

    KIND = "design"
    VIEWS = ("front", "excluded", "surface")

    request: Request
    points: tuple[Point, ...]
    total: int
    feasible: int
    dominated: int
    excluded: tuple[Region, ...]
    surfaces: tuple[GemmSurface, ...]
    timed: int
    environment: tuple[str, str, int, str]
    source_notes: tuple[str, ...] = ()
    cloud: tuple[tuple[Any, ...], ...] = field(default=(), compare=False)
    rows: tuple[Row, ...] = ()
    planned: int | None = None
    #: Front rows the ``front`` view shows (spread by parameters, verified points kept); ``None``: all.
    shown: int | None = None

    # -- what it holds ------------------------------------------------------------------------
    @property
    def partial(self) -> bool:
        """Whether a verification was interrupted before every chosen point was timed."""
        return self.planned is not None and len(self.rows) < self.planned

    @property
    def training(self) -> bool:
        return self.request.workload.training

    def spread(self, count: int) -> list[Point]:
        """``count`` front points spread evenly from the fewest parameters to the most."""
        n = len(self.points)
        if count >= n:
            return list(self.points)
        if count == 1:
            return [self.points[-1]]
        return [self.points[round(i * (n - 1) / (count - 1))] for i in range(count)]

    def showing(self, count: int) -> DesignResult:
        """This result with its ``front`` view cut to ``count`` points spread by parameters (every
        verified point kept; 0: every point); the counts, the other views and :attr:`points` stay whole."""
        from dataclasses import replace

        return replace(self, shown=count if 0 < count < len(self.points) else None)

    def shown_points(self) -> list[Point]:
        """The points the ``front`` view shows (see :meth:`showing`)."""
        if self.shown is None:
            return list(self.points)
        found = self.measured()
        keep = {id(p) for p in self.spread(self.shown)}
        return [p for p in self.points if id(p) in keep or (p.spec, p.dtype) in found]

    def measured(self) -> dict[tuple[Any, str], Row]:
        """The verified rows by (spec, dtype)."""
        return {(r.spec, r.workload.dtype): r for r in self.rows if r.bench is not None}

    def ratios(self, exact: bool = False) -> list[float]:
        """measured / predicted of every verified point (``exact``: predicted / its prediction
        with every GEMM timed at its own shape, where the verification made one)."""
        found = self.measured()
        out = []
        for p in self.points:
            row = found.get((p.spec, p.dtype))
            if row is None or row.bench is None:
                continue
            if not exact:
                out.append(row.bench.median_s / p.seconds)
            elif row.prediction is not None:
                out.append(p.seconds / row.prediction.seconds)
        return out

    # -- the tables ---------------------------------------------------------------------------
    def _columns(self) -> tuple[Column, ...]:
        from dataclasses import replace

        hide = {"measured_ms", "measured_over_predicted", "exact_ms"} if not self.rows else set()
        if all(p.spec.proj_size == 0 for p in self.points):
            hide.add("proj_size")
        if len(self.request.space.dtypes) == 1:
            hide.add("dtype")
        return tuple(replace(c, wide=True) if c.name in hide else c for c in FRONT_COLUMNS)

    def _table(self, view: str) -> Table:
        if view == "excluded":
            rows = [(r.cell, r.reason, r.layers, r.directions, r.configs, r.hidden) for r in self.excluded]
            return Table(EXCLUDED_COLUMNS, tuple(rows))
        if view == "surface":
            return Table(SURFACE_COLUMNS, tuple(_surface_rows(self.surfaces)))
        found = self.measured()
        records = []
        for p in self.shown_points():
            s = p.spec
            row = found.get((s, p.dtype))
            b = row.bench if row is not None else None
            records.append(
                {
                    "cell": s.cell,
                    "hidden_size": s.hidden_size,
                    "num_layers": s.num_layers,
                    "directions": s.num_directions,
                    "proj_size": s.proj_size,
                    "dtype": p.dtype,
                    "params": p.params,
                    "memory_bytes": p.memory,
                    "state_bytes": p.state,
                    "flops": p.flops,
                    "predicted_ms": p.seconds * 1e3,
                    "tokens_per_s": p.tokens_per_s,
                    "kernel": p.kernel,
                    "measured_ms": None if b is None else b.median_s * 1e3,
                    "measured_over_predicted": None if b is None else b.median_s / p.seconds,
                    "exact_ms": None
                    if row is None or row.prediction is None
                    else row.prediction.seconds * 1e3,
                }
            )
        return Table.from_records(self._columns(), records)

    # -- the words around them ----------------------------------------------------------------
    def title(self) -> str:
        r = self.request
        what = (
            f"design: {plural(len(self.points), 'configuration')} on the front of "
            f"{self.feasible:,} feasible of {self.total:,}"
        )
        if self.partial:
            what += f" (partial: {len(self.rows)} of {self.planned} verified)"
        return f"{what}: d={r.input_size}, {r.workload.describe()} on {self.environment[0]}"

    def headline(self) -> str:
        return self.title()

    def summary(self, view: str | None = None) -> list[str]:
        r = self.request
        lines = [
            "budgets: " + ("; ".join(r.budgets.lines()) or "none"),
            f"searched: {r.space.describe()}",
            f"feasible: {self.feasible:,} of {self.total:,}; on the front: {len(self.points):,}; "
            f"dominated: {self.dominated:,}",
        ]
        lines += self._excluded_lines()
        lines.append(self._time_line())
        ratios, exact = self.ratios(), self.ratios(exact=True)
        if ratios:
            lines.append(
                f"verified: {plural(len(ratios), 'front point')} timed on the device; measured/predicted "
                f"median {statistics.median(ratios):.3g} (range {min(ratios):.3g} to {max(ratios):.3g})"
            )
        if exact:
            lines.append(
                f"the surface against each point's own GEMMs timed (exact_ms, wide): predicted/exact median "
                f"{statistics.median(exact):.3g} (range {min(exact):.3g} to {max(exact):.3g})"
            )
        return lines

    def _excluded_lines(self) -> list[str]:
        by_reason: dict[str, int] = {}
        for reg in self.excluded:
            by_reason[reg.reason] = by_reason.get(reg.reason, 0) + (reg.configs or 0)
        parts = [f"{n:,} for {reason}" for reason, n in by_reason.items() if n]
        out = ["excluded: " + "; ".join(parts) + " (view 'excluded' gives every region)"] if parts else []
        by_why: dict[str, list[str]] = {}
        for cell, why in self.request.space.skipped:
            by_why.setdefault(why, []).append(cell)
        for why, cells in by_why.items():
            out.append(f"not searched: {', '.join(cells)}: {why}")
        return out

    def _time_line(self) -> str:
        if not self.surfaces:
            return "time: nothing left to predict"
        now = f"{plural(self.timed, 'timing')} measured now" if self.timed else "every timing from the cache"
        shapes = sum(len(s.shapes) for s in self.surfaces)
        return (
            f"time: GEMMs off a throughput surface fitted to {plural(shapes, 'timed shape')} ({now}); "
            + "; ".join(s.describe() for s in self.surfaces)
        )

    def notes(self) -> list[str]:
        from .views import reference_notes

        wanted = ", ".join(OBJECTIVES[o][2] for o in self.request.objectives)
        out = []
        if self.partial:
            out.append(
                f"partial: the verification was interrupted after {len(self.rows):,} of {self.planned:,}"
            )
        out.append(f"the front: the feasible configurations no other one beats in every objective ({wanted})")
        if self.shown is not None:
            out.append(
                f"showing {len(self.shown_points())} of the {len(self.points):,} front points, spread "
                "from the fewest parameters to the most (showing(0) shows them all)"
            )
        out.append(
            "memory_bytes: "
            + (
                "the training peak of one step (forward and backward) plus Adam's two moments"
                if self.training
                else "the peak of one forward"
            )
            + f", by the memory model of the kernel path that would run on {self.environment[0]}"
        )
        out.append(
            "predicted_ms: the GEMM-sequence speed model (paramcalc predict) with every GEMM's time read off "
            "a surface fitted to timed shapes, elementwise work at the copy bandwidth, operator calls at the "
            "per-call overhead (recorded on the cell's module at one and two layers)"
        )
        out += reference_notes([p.spec for p in self.points], "predicted for")
        return out + list(self.source_notes)

    def meta(self) -> dict[str, Any]:
        from ..timing.runs import record, runs_meta

        r = self.request
        device, name, threads, torch_version = self.environment
        out: dict[str, Any] = {
            "result": "design",
            "input_size": r.input_size,
            "workload": r.workload.to_dict(),
            "space": {
                "cells": list(r.space.cells),
                "hidden_sizes": list(r.space.hidden),
                "num_layers": list(r.space.layers),
                "proj_sizes": list(r.space.proj),
                "directions": list(r.space.directions),
                "dtypes": list(r.space.dtypes),
                "not_searched": dict(r.space.skipped),
            },
            "budgets": {k: v for k, v in vars(r.budgets).items()},
            "objectives": list(r.objectives),
            "configurations": self.total,
            "feasible": self.feasible,
            "front": len(self.points),
            "dominated": self.dominated,
            "device": device,
            "device_name": name,
            "threads": threads,
            "torch": torch_version,
            "surfaces": [s.describe() for s in self.surfaces],
            "timed_now": self.timed,
        }
        timed = [row for row in self.rows if row.bench is not None]
        if timed:
            out.update(
                runs_meta("design", [record(row.spec, row.workload, row.bench, None) for row in timed])
            )
        if self.partial:
            out.update(
                partial=True, rows_planned=self.planned, rows_done=len(self.rows), rows_what="verified points"
            )
        return out

    def context(self) -> list[tuple[str, str]]:
        r = self.request
        device, name, threads, torch_version = self.environment
        return [
            ("input size d", str(r.input_size)),
            ("workload", r.workload.describe()),
            ("budgets", "; ".join(r.budgets.lines()) or "none"),
            ("searched", r.space.describe()),
            ("objectives", ", ".join(OBJECTIVES[o][2] for o in r.objectives)),
            ("device", f"{device} ({name}), {plural(threads, 'thread')}, torch {torch_version}"),
        ]


def _surface_rows(surfaces: tuple[GemmSurface, ...]) -> list[tuple[Any, ...]]:
    out = []
    for s in surfaces:
        for (m, k, n), t in zip(s.shapes, s.timings, strict=True):
            out.append((s.dtype, m, k, n, t * 1e6, float(s.base(m, k, n)) * 1e6))
    return out
