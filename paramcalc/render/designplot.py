"""The plot of a design search (:class:`paramcalc.studies.designresult.DesignResult`): two panels,
parameters against predicted time per call and against memory; every feasible configuration a
grey dot, the front's points coloured by cell (measured points, when verified, hollow beside
them), the budgets as dashed lines. matplotlib, an optional extra (``paramcalc[plot]``); drawn and
written as :mod:`paramcalc.render.plot` draws and writes its own, registered under the kind
``"design"`` in :data:`paramcalc.results.renderers.PLOT`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ParamcalcError
from ..results.renderers import PLOT
from .plot import _figure, _save, check_plot_target

#: Most feasible configurations drawn as dots (a random-free thinning keeps every n-th).
MAX_DOTS = 20_000


def plot_design(result: Any, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Draw ``result`` to ``path`` (.png, .svg or .pdf), atomically."""
    target, fmt = check_plot_target(path)
    if not result.points:
        raise ParamcalcError("nothing to plot: the front is empty (view 'excluded' says why)")
    fig, axes = _figure(2)
    fig.set_size_inches(11.5, 4.6)
    budgets = result.request.budgets
    panels = (
        ("seconds", 1e3, "time per call (ms)", budgets.max_time),
        ("memory", 2.0**-20, "memory (MiB)", budgets.max_memory),
    )
    for ax, (figure, scale, label, limit) in zip(axes, panels, strict=True):
        _panel(ax, result, figure, scale, limit)
        ax.set_ylabel(label)
        ax.set_xlabel("parameters")
        if budgets.max_params is not None:
            ax.axvline(budgets.max_params, color="black", linestyle="dashed", linewidth=0.8)
    measured = " (circles: measured)" if result.rows else ""
    axes[0].set_title(f"Predicted time{measured}")
    memory = "training with Adam" if result.training else "inference peak"
    axes[1].set_title(f"Memory ({memory})")
    axes[0].legend(fontsize="small", title="front (grey: feasible)")
    fig.suptitle(title or result.title(), fontsize="medium")
    return _save(fig, target, fmt)


def _panel(ax: Any, result: Any, figure: str, scale: float, limit: float | None) -> None:
    """One panel: the feasible dots, the front by cell, the measured points and the budget line."""
    import numpy as np

    index = {"seconds": 3, "memory": 4}[figure]
    xs = np.concatenate([c[2] for c in result.cloud]) if result.cloud else np.zeros(0)
    ys = np.concatenate([c[index] for c in result.cloud]) if result.cloud else np.zeros(0)
    step = max(1, len(xs) // MAX_DOTS)
    ax.scatter(xs[::step], ys[::step] * scale, s=3, color="0.75", linewidths=0)
    cells = list(dict.fromkeys(p.spec.cell for p in result.points))
    for i, cell in enumerate(cells):
        mine = [p for p in result.points if p.spec.cell == cell]
        ax.scatter(
            [p.params for p in mine],
            [getattr(p, figure) * scale for p in mine],
            s=22,
            color=f"C{i}",
            edgecolors="black",
            linewidths=0.4,
            label=cell,
            zorder=3,
        )
    if figure == "seconds":
        found = result.measured()
        measured = [
            (p.params, found[(p.spec, p.dtype)].bench.median_s)
            for p in result.points
            if (p.spec, p.dtype) in found
        ]
        if measured:
            mx, my = zip(*measured, strict=True)
            ax.scatter(
                mx,
                np.asarray(my) * scale,
                s=40,
                facecolors="none",
                edgecolors="black",
                linewidths=1.0,
                label="measured",
                zorder=4,
            )
    if limit is not None:
        ax.axhline(limit * scale, color="black", linestyle="dashed", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)


PLOT.register("design", plot_design)
