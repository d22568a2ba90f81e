"""``paramcalc design``: the Pareto front of the designs that fit a task under budgets."""

from __future__ import annotations

from typing import Any

import click

from ..errors import Interrupted, ParamcalcError
from .options import check_targets, command_line, emit, gemm_progress, output_options, plot_options, progress
from .ranges import parse_cells, parse_range

#: Front rows printed by default (spread from the fewest parameters to the most; files hold all).
DEFAULT_ROWS = 40


def _proj_sizes(text: str) -> tuple[int, ...]:
    """``0,64,128`` or ``0,64:256:64``: projection sizes, 0 (none) allowed."""
    items = [t for t in text.split(",") if t.strip()]
    rest = [t for t in items if t.strip() != "0"]
    values = parse_range(",".join(rest), "projection sizes") if rest else ()
    return (0, *values) if len(rest) < len(items) else values


def _dtypes(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


@click.command()
@click.option("-d", "--input-size", type=int, required=True, help="Input features d.")
@click.option("--batch", type=int, default=1, show_default=True, help="Sequences per batch B.")
@click.option("--seq-len", type=int, default=1, show_default=True, help="Time steps T.")
@click.option("--train", is_flag=True, help="Training: forward + backward, memory with Adam's moments.")
@click.option(
    "--dtype", "dtypes", default="fp32", show_default=True, help="fp32, fp16, bf16 or a list: fp32,bf16."
)
@click.option("--cells", default=None, help="Comma-separated cells (default: every registered stack).")
@click.option("-H", "--hidden-size", "hidden", default="32:2048:32", show_default=True, help="Hidden sizes.")
@click.option("-L", "--num-layers", "layers", default="1:4", show_default=True, help="Layer counts.")
@click.option(
    "--proj-size", "proj", default="0,64,128,256,512", show_default=True, help="Projection sizes (0: none)."
)
@click.option("--directions", default="1,2", show_default=True, help="1, 2 or 1,2 (bidirectional).")
@click.option("--max-params", default=None, help="Most parameters: 5M, 250k, 2e6.")
@click.option("--max-memory", default=None, help="Most memory: 1GiB, 512MiB (training: with Adam).")
@click.option("--max-time", default=None, help="Most predicted time per call: 50ms, 0.2s.")
@click.option("--min-tokens-per-s", default=None, help="Fewest tokens per second: 1M, 250k.")
@click.option("--max-state", default=None, help="Most recurrent state of the batch: 64KiB.")
@click.option(
    "--objectives",
    default="params,time,memory",
    show_default=True,
    help="Of params, time, memory, state, flops.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or mps.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's setting).")
@click.option("--verify", type=int, default=0, help="Time K front points on the device: measured/predicted.")
@click.option("--bench", is_flag=True, help="Time every front point (as --verify with all of them).")
@click.option(
    "--min-time", "min_run_time", type=float, default=0.2, show_default=True, help="Seconds per timing."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights and data.")
@click.option(
    "--rows", type=int, default=DEFAULT_ROWS, show_default=True, help="Front rows printed (0: all)."
)
@click.option(
    "--by",
    "view",
    type=click.Choice(["front", "excluded", "surface"]),
    default="front",
    show_default=True,
    help="The front, the excluded regions (and why), or the GEMM shapes timed for the surface.",
)
@plot_options
@output_options
def design(
    input_size: int,
    batch: int,
    seq_len: int,
    train: bool,
    rows: int,
    view: str,
    plot: str | None,
    quiet: bool,
    fmt: str,
    wide: bool,
    output: str | None,
    **kw: Any,
) -> None:
    """Search cells, layers, hidden and projection sizes, directions and dtypes
    for the Pareto front under budgets.

    Every registered stack in its default layout is tried at every size, for
    the workload; budgets on parameters, memory (the training peak with Adam's
    moments with --train, else the inference peak, by the memory model of the
    kernel path that would run), predicted time, tokens/s and recurrent state
    exclude configurations; the front keeps those no other beats in every
    objective (default: most parameters, least predicted time, least memory).
    Counts, FLOPs and memory are evaluated for all configurations at once
    (exact); time comes from the speed model with GEMM times off a surface
    fitted to a few dozen timed shapes (cached: a warm cache times nothing).
    --by excluded says, region by region, why the rest was excluded; --plot
    draws parameters against time and memory. --verify K times K front points
    on the device and reports measured/predicted, with progress and the time
    left on stderr; --output is rewritten after each (marked partial until the
    last), and Ctrl-C keeps the points already timed.

    \b
    Examples:
      paramcalc design -d 80 --batch 32 --seq-len 200 --train --max-params 5M --max-memory 1GiB
      paramcalc design -d 80 --batch 32 --seq-len 200 --train --max-params 5M --max-time 50ms --plot front.png
      paramcalc design -d 28 --batch 64 --seq-len 28 --cells lstm,gru,mingru -H 64:1024:64 --verify 5
      paramcalc design -d 80 --batch 32 --seq-len 200 --max-params 5M --by excluded
    """
    from ..core.workload import Workload
    from ..studies.design import design as run_design
    from ..studies.design import verify_count

    check_targets(output, plot)
    if rows < 0:
        raise ParamcalcError(f"--rows must be 0 (all) or a positive number, got {rows}")
    workload = Workload(batch, seq_len, mode="training" if train else "inference")
    args = _library_args(kw)
    timing = {k: args.pop(k) for k in ("verify", "bench", "min_run_time", "seed")}
    verify_count(timing["verify"], timing["bench"])  # a mistake is told before the search
    if timing["verify"] or timing["bench"]:
        from ..timing.base import check_min_run_time

        check_min_run_time(timing["min_run_time"])
    with gemm_progress(quiet) as on_gemm:
        result = run_design(input_size, workload, on_gemm=on_gemm, **args)
    if timing["verify"] or timing["bench"]:
        result = _verify(result, timing, args, quiet, fmt, wide, output)
    _show(result, fmt, view, wide, rows, output, plot)


def _verify(
    result: Any,
    timing: dict[str, Any],
    args: dict[str, Any],
    quiet: bool,
    fmt: str,
    wide: bool,
    output: str | None,
) -> Any:
    """Time the front points asked for, with progress and the time left; keep them when interrupted."""
    from ..studies.design import verify_count, verify_front
    from ..studies.runner import TimingOptions
    from .timingcmds import keep_partial, warn_timings

    count = min(verify_count(timing["verify"], timing["bench"]), len(result.points))
    if not count:
        return result
    options = TimingOptions(
        True, True, args["device"], args["threads"], timing["min_run_time"], timing["seed"]
    )
    try:
        with progress(count, "verifying", quiet) as on_row:
            result = verify_front(result, count, options, on_row=on_row, output=output)
    except Interrupted as stop:
        keep_partial(stop, fmt, wide, output)
        raise
    warn_timings([r.bench for r in result.rows if r.bench is not None])
    return result


def _library_args(kw: dict[str, Any]) -> dict[str, Any]:
    """The flags as :func:`paramcalc.studies.design.design`'s keyword arguments."""
    from ..core.spec import MAX_LAYERS

    return {
        "cells": parse_cells(kw.pop("cells")) if kw["cells"] else kw.pop("cells"),
        "hidden_sizes": parse_range(kw.pop("hidden"), "hidden sizes"),
        "num_layers": parse_range(kw.pop("layers"), "layers", maximum=MAX_LAYERS),
        "proj_sizes": _proj_sizes(kw.pop("proj")),
        "directions": parse_range(kw.pop("directions"), "directions", maximum=2),
        "dtypes": _dtypes(kw.pop("dtypes")),
        "objectives": tuple(o.strip() for o in kw.pop("objectives").split(",") if o.strip()),
        **kw,
    }


def _show(
    result: Any, fmt: str, view: str, wide: bool, rows: int, output: str | None, plot: str | None
) -> None:
    """Print the view (the front thinned to ``rows`` in a text format), export and plot it whole."""
    from ..render.draw import MACHINE_FORMATS

    shown = result.showing(rows) if rows and fmt not in MACHINE_FORMATS and view == "front" else result
    emit(shown, fmt, None, view=view, wide=wide)
    if output:
        from pathlib import Path

        from ..render.export import lossless_notes
        from .timingcmds import _link

        links = _link(plot, output)
        result.export(output, view, links=links, command=command_line())
        for note in lossless_notes(result.table(view), Path(output).suffix.lower()):
            click.echo(f"note: {note}", err=True)
        click.echo(f"wrote {output}", err=True)
    if plot:
        result.plot(plot)
        click.echo(f"wrote {plot}", err=True)
