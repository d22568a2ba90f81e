"""Plots of compare/sweep tables: parameters, FLOPs and measured throughput against hidden size.

matplotlib is an optional extra (``pip install 'paramcalc[plot]'``), imported only here and
only when a plot is drawn. No pyplot and no global backend switch: the figure is drawn on an
Agg canvas (SVG and PDF use matplotlib's own vector canvases) and written atomically through
:func:`paramcalc.report.atomic_write`.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ParamcalcError
from .report import check_target

PLOT_SUFFIXES = (".png", ".svg", ".pdf")

#: (column, panel title, y-axis label) in drawing order; a panel is drawn when its column exists.
PANELS = (
    ("params", "Parameters", "parameters"),
    ("flops_per_seq", "FLOPs per sequence", "FLOP / sequence"),
    ("tokens_per_s", "Measured throughput", "tokens / s"),
)
#: Columns that identify a line besides the cell (only those that vary get into the legend).
SERIES_KEYS = (("num_layers", "L"), ("batch", "B"), ("seq_len", "T"), ("input_size", "d"))


def _need_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise ParamcalcError("plotting needs matplotlib: pip install 'paramcalc[plot]'")


def check_plot_target(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """Check a plot path and that matplotlib is installed; return the path and its format."""
    target, suffix = check_target(path, PLOT_SUFFIXES, "plot to")
    _need_matplotlib()
    return target, suffix[1:]


def series(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Group rows into lines: by cell plus every other configuration column that varies."""
    varying = [(k, short) for k, short in SERIES_KEYS if len({r.get(k) for r in records}) > 1]
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        label = " ".join([str(r["cell"]).upper(), *(f"{short}={r[k]}" for k, short in varying)])
        out.setdefault(label, []).append(r)
    for rows in out.values():
        rows.sort(key=lambda r: r["hidden_size"])
    return out


def plot_records(
    records: Sequence[dict[str, Any]], path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Draw one panel per quantity against hidden size, a line per cell; write ``path`` atomically."""
    target, fmt = check_plot_target(path)
    if not records:
        raise ParamcalcError("nothing to plot: the table is empty")
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter, MaxNLocator

    from .report import atomic_write

    panels = [p for p in PANELS if any(r.get(p[0]) is not None for r in records)]
    lines = series(records)
    fig = Figure(figsize=(4.6 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (col, panel_title, ylabel) in zip(axes, panels, strict=True):
        for label, rows in lines.items():
            pts = [(r["hidden_size"], r[col]) for r in rows if r.get(col) is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", markersize=4, linewidth=1.6, label=label)
        values = [r[col] for r in records if r.get(col)]
        if values and min(values) > 0 and max(values) / min(values) > 30:
            ax.set_yscale("log")
        ax.yaxis.set_major_formatter(EngFormatter(sep=" "))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel_title)
        ax.set_xlabel("hidden size Dh")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(title="cell", fontsize="small")
    if title:
        fig.suptitle(title)
    if fmt == "png":
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    atomic_write(target, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120))
    return target
