"""Plots of compare and sweep results (matplotlib, an optional extra: ``paramcalc[plot]``).

* a **comparison** (one configuration, a row per cell) is drawn as bars per cell: parameters,
  FLOPs per sequence and, when timed, tokens/s with error bars from the interquartile range
  of the per-call times; every y axis starts at 0;
* a **sweep** keeps lines over the swept axis (hidden size), one line per cell (and per
  layers/batch/seq_len when those vary);
* **devices side by side** (``compare --from``) are bars of tokens/s grouped by configuration,
  one colour per device name; a bar from a prediction only is hatched.

No pyplot and no global backend switch: the figure is drawn on an Agg canvas (SVG and PDF use
matplotlib's own vector canvases) and written atomically through
:func:`paramcalc.results.export.atomic_write`.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ParamcalcError
from .export import atomic_write, check_target

if TYPE_CHECKING:  # pragma: no cover
    from ..studies.compare import CompareResult
    from ..studies.sweep import SweepResult
    from ..timing.merge import MergedResult

PLOT_SUFFIXES = (".png", ".svg", ".pdf")

#: (column, panel title, y-axis label) in drawing order; a panel is drawn when its column exists.
PANELS = (
    ("params", "Parameters", "parameters"),
    ("flops_per_seq", "FLOPs per sequence", "FLOP / sequence"),
    ("tokens_per_s", "Measured throughput", "tokens / s"),
    ("predicted_tokens_per_s", "Predicted throughput (GEMM-sequence bound)", "tokens / s"),
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
        label = " ".join([str(r["cell"]), *(f"{short}={r[k]}" for k, short in varying)])
        out.setdefault(label, []).append(r)
    for rows in out.values():
        rows.sort(key=lambda r: r["hidden_size"])
    return out


def _figure(n: int, bars: int = 0) -> Any:
    """``n`` panels side by side; each wide enough for ``bars`` labelled bars."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.6, 0.7 * bars + 1.4) * n, 4.2), layout="constrained")
    return fig, fig.subplots(1, n, squeeze=False)[0]


def _save(fig: Any, target: Path, fmt: str) -> Path:
    if fmt == "png":
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    atomic_write(target, lambda tmp: fig.savefig(tmp, format=fmt, dpi=120))
    return target


def throughput_errors(result: CompareResult) -> list[tuple[float, float] | None]:
    """(below, above) the median tokens/s, from the quartiles of each row's per-call times;
    None for a row whose spread was not measured (one slow call timed: no quartiles)."""
    out: list[tuple[float, float] | None] = []
    for r in result.rows:
        b = r.bench
        assert b is not None
        if not b.spread_known:
            out.append(None)
            continue
        q1, _, q3 = statistics.quantiles(sorted(b.times), n=4, method="inclusive")
        mid = b.tokens_per_s
        out.append((max(0.0, mid - b.tokens / q3), max(0.0, b.tokens / q1 - mid)))
    return out


#: More bars than this in one panel get their labels turned (they would collide level).
LEVEL_LABELS = 4


def draw_bars(
    ax: Any, labels: Sequence[str], values: Sequence[float], errors: Sequence[tuple[float, float] | None] = ()
) -> None:
    """Bars from 0 with one colour each; an IQR error bar only where a spread was measured;
    labels turned to stay apart when there are many."""
    x = range(len(labels))
    ax.bar(x, values, color=[f"C{i}" for i in x], edgecolor="black", linewidth=0.6)
    spread = [(i, e) for i, e in zip(x, errors, strict=False) if e is not None]
    if spread:
        ax.errorbar(
            [i for i, _ in spread],
            [values[i] for i, _ in spread],
            yerr=[[e[0] for _, e in spread], [e[1] for _, e in spread]],
            fmt="none",
            ecolor="black",
            capsize=6,
            linewidth=1,
        )
    turn = len(labels) > LEVEL_LABELS
    ax.set_xticks(list(x), labels, rotation=35 if turn else 0, ha="right" if turn else "center")
    if turn:  # anchor each turned label at its bar
        for label in ax.get_xticklabels():
            label.set_rotation_mode("anchor")
    ax.set_ylim(bottom=0)


def compare_figure(result: CompareResult, *, title: str | None = None) -> Any:
    """The figure of a comparison: bars per cell (see :func:`plot_compare`)."""
    from matplotlib.ticker import EngFormatter

    records = result.table().records()
    panels = [p for p in PANELS if any(r.get(p[0]) is not None for r in records)]
    fig, axes = _figure(len(panels), bars=len(result.rows))
    turn = len(result.rows) > LEVEL_LABELS
    labels = [
        r.spec.cell_type.display_name + (" " if turn else "\n") + f"Dh={r.spec.hidden_size}"
        for r in result.rows
    ]
    for ax, (col, panel_title, ylabel) in zip(axes, panels, strict=True):
        values = [float(r[col]) for r in records]
        errors: list[tuple[float, float] | None] = []
        suffix = ""
        if col == "tokens_per_s":
            errors = throughput_errors(result)
            measured = sum(e is not None for e in errors)
            if measured == len(errors):
                suffix = " (median, IQR)"
            elif measured:
                suffix = " (median; IQR where measured)"
            else:
                suffix = " (median; no spread measured)"
        draw_bars(ax, labels, values, errors)
        ax.yaxis.set_major_formatter(EngFormatter(sep=" "))
        ax.set_title(panel_title + suffix)
        ax.set_ylabel(ylabel)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(title or result.configuration(), fontsize="medium")
    return fig


def plot_compare(result: CompareResult, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Bars per cell: parameters, FLOPs per sequence, tokens/s with IQR error bars where a
    spread was measured; y from 0; many cells get turned labels and a wider figure."""
    target, fmt = check_plot_target(path)
    return _save(compare_figure(result, title=title), target, fmt)


def plot_sweep(result: SweepResult, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """One panel per quantity against hidden size, a line per cell; y from 0 (log if it spans 30x)."""
    from matplotlib.ticker import EngFormatter, MaxNLocator

    target, fmt = check_plot_target(path)
    records = result.table().records()
    if not records:
        raise ParamcalcError("nothing to plot: the table is empty")
    panels = [p for p in PANELS if any(r.get(p[0]) is not None for r in records)]
    lines = series(records)
    fig, axes = _figure(len(panels))
    for ax, (col, panel_title, ylabel) in zip(axes, panels, strict=True):
        for label, rows in lines.items():
            pts = [(r["hidden_size"], r[col]) for r in rows if r.get(col) is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, marker="o", markersize=4, linewidth=1.6, label=label)
        values = [r[col] for r in records if r.get(col)]
        if values and min(values) > 0 and max(values) / min(values) > 30:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(EngFormatter(sep=" "))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel_title)
        ax.set_xlabel("hidden size Dh")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(title="cell", fontsize="small")
    fig.suptitle(title or result.title(), fontsize="medium")
    return _save(fig, target, fmt)


def plot_devices(result: MergedResult, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Bars of tokens/s per configuration, one per device name (hatched: predicted only); y from 0."""
    from matplotlib.patches import Patch
    from matplotlib.ticker import EngFormatter

    target, fmt = check_plot_target(path)
    configs, devices = result.configs(), result.devices
    if not configs:
        raise ParamcalcError("nothing to plot: no runs")
    width = 0.8 / len(devices)
    fig, axes = _figure(1)
    ax = axes[0]
    fig.set_size_inches(max(4.6, 1.1 * len(configs) * max(1, len(devices)) ** 0.5 + 2), 4.6)
    for j, dev in enumerate(devices):
        for i, key in enumerate(configs):
            runs = [r for r in result.runs if r.device_name == dev and r.config_key() == key]
            if not runs:
                continue
            r = next((x for x in runs if x.measured_s is not None), runs[0])  # measured first
            ax.bar(
                i - 0.4 + width * (j + 0.5),
                r.tokens_per_s,
                width=width,
                color=f"C{j}",
                hatch="//" if r.measured_s is None else None,
                edgecolor="black",
                linewidth=0.6,
            )
    labels = [f"{spec}\n{wl}" for spec, wl in configs]
    rotate = len(configs) > 3
    ax.set_xticks(
        range(len(configs)),
        labels,
        fontsize="small",
        rotation=20 if rotate else 0,
        ha="right" if rotate else "center",
    )
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(EngFormatter(sep=" "))
    ax.set_ylabel("tokens / s")
    ax.grid(True, axis="y", alpha=0.3)
    handles = [Patch(facecolor=f"C{j}", edgecolor="black", label=d) for j, d in enumerate(devices)]
    if any(r.measured_s is None for r in result.runs):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="predicted only"))
    ax.legend(handles=handles, title="device", fontsize="small")
    ax.set_title("Throughput by device (measured median; hatched: predicted)")
    fig.suptitle(title or result.title(), fontsize="medium")
    return _save(fig, target, fmt)


def plot_result(result: Any, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Draw a compare result as bars, a sweep as lines, merged devices as grouped bars, a design's
    front against its feasible configurations."""
    from ..studies.compare import CompareResult
    from ..studies.sweep import SweepResult
    from ..timing.merge import MergedResult

    if isinstance(result, CompareResult):
        return plot_compare(result, path, title=title)
    if isinstance(result, SweepResult):
        return plot_sweep(result, path, title=title)
    if isinstance(result, MergedResult):
        return plot_devices(result, path, title=title)
    if getattr(result, "KIND", None) == "design":
        from .designplot import plot_design

        return plot_design(result, path, title=title)
    raise ParamcalcError(f"nothing to plot for a {type(result).__name__}")
