"""The commands that time real modules: bench, compare, sweep (and their --predict options)."""

from __future__ import annotations

import functools
import os
from typing import Any

import click

from ..core.cells import CLASSIC_CELLS
from ..errors import Interrupted, ParamcalcError
from ..results.text import plural
from .flags import say
from .options import (
    build_spec,
    check_targets,
    emit,
    gemm_progress,
    output_options,
    plot_options,
    progress,
    shown,
    spec_options,
    template_spec,
    timing_from_flags,
    timing_options,
    workload_from_flags,
    workload_options,
)
from .ranges import parse_cells, parse_range


def warn_timings(results: list[Any]) -> None:
    """What makes timings suspect, on stderr, one line each: noise (torch.utils.benchmark's
    verdict), an oversubscribed machine, a measured/predicted ratio far from 1."""
    timed = [r for r in results if r is not None]
    lines = [*_noise_warning(timed), *_busy_warning(timed)]
    for r in timed:
        far = [w for w in r.warnings() if w.startswith("measured/predicted")]
        lines += [f"{r.spec.describe()}: {far[0]}"] if far else []
    for line in lines:
        click.echo(f"warning: {say(line)}", err=True)


def _noise_warning(timed: list[Any]) -> list[str]:
    """One line for the noisy timings among ``timed`` (none when none is)."""
    noisy = [r for r in timed if r.noisy]
    if not noisy:
        return []
    worst = max(r.iqr_s / r.median_s for r in noisy)
    gross = any(r.noise == "gross" for r in noisy)
    fix = "try `min_run_time=1`" + (" or `threads=1`" if any(r.device == "cpu" for r in noisy) else "")
    if gross and any(r.threads > 1 and r.device == "cpu" for r in noisy):
        fix = "use `threads=1`"
    return [
        f"{len(noisy)} of {plural(len(timed), 'timing')} {'is' if len(noisy) == 1 else 'are'} "
        f"{'very ' if gross else ''}noisy (IQR up to {100 * worst:.0f}% of the median): "
        f"is something else running? {fix}"
    ]


def _busy_warning(timed: list[Any]) -> list[str]:
    """The first oversubscribed timing's sentence (none when the machine was not)."""
    busy = [r for r in timed if r.oversubscribed]
    return [next(w for w in busy[0].warnings() if "oversubscribed" in w)] if busy else []


def keep_partial(stop: Any, fmt: str, wide: bool, output: str | None) -> None:
    """An interrupted compare/sweep: print the rows already timed, and say where they were kept."""
    partial = stop.partial
    click.echo(shown(partial, fmt, wide=wide))
    where = f"; kept in {output} (marked partial)" if output else ""
    click.echo(f"interrupted: {len(partial.rows):,} of {partial.planned:,} rows were timed{where}", err=True)


def predict_option(f: Any) -> Any:
    """``--predict``: also predict every row by the GEMM-sequence bound (compare, sweep)."""
    return click.option(
        "--predict",
        "predict",
        is_flag=True,
        help="Also predict every row by the GEMM-sequence bound (each distinct GEMM shape timed "
        "once, cached; no model built). With --bench: measured/predicted.",
    )(f)


@click.command()
@spec_options()
@workload_options(defaults=True)
@timing_options(bench_flag=False)
@click.option(
    "--predict/--no-predict",
    "predict",
    default=True,
    show_default=True,
    help="Also give the GEMM-sequence prediction and measured/predicted (GEMM times from the cache).",
)
@output_options
def bench(cell: str, predict: bool, fmt: str, wide: bool, output: str | None, **kw: Any) -> None:
    """Time the real torch module of CELL: time per batch, tokens/s and FLOP/s.

    Inference is one forward pass in eval mode under torch.inference_mode();
    --train times zero_grad + forward + backward. A fast call is warmed up,
    then torch.utils.benchmark's blocked_autorange repeats it (device
    synchronised) for --min-time seconds; a slow one is timed call by call, its
    first calls serving as warm-up too, so a call longer than --min-time runs
    twice. The table gives the median time per batch and its IQR, tokens/s,
    the achieved FLOP/s (FLOPs from the cost model) and the kernel path (cuDNN,
    oneDNN, native, reference); the header names the device, threads and torch
    version. Warnings on stderr: noisy timings (torch.utils.benchmark's
    verdict), CPUs oversubscribed by other work (use --threads 1), and a
    measured/predicted ratio more than 2x from 1. --batch and --seq-len default
    to 1. The memory the run needs is estimated first: a run the device cannot
    hold is refused. The table also gives the prediction of the GEMM-sequence
    bound (paramcalc predict; GEMM timings from the cache) and
    measured_over_predicted, left empty where the kernel fuses the whole
    recurrence (a cuDNN persistent kernel) and the bound does not apply.

    \b
    Examples:
      paramcalc bench lstm -d 28 -H 256 -L 2 --batch 64 --seq-len 28
      paramcalc bench gru -d 28 -H 256 -L 2 --batch 64 --seq-len 28 --train
      paramcalc bench lstm -d 28 -H 256 --batch 64 --seq-len 28 --dtype bf16 --threads 1
      paramcalc bench lstm -d 512 -H 1024 -L 4 --batch 128 --seq-len 100 --device cuda --dtype fp16
      paramcalc bench gru -d 64 -H 256 --lengths 50,41,12,3 --min-time 1
      paramcalc bench lstm -d 28 -H 256 -L 2 --batch 64 --seq-len 28 --output bench.json
    """
    from ..studies.timed import bench as run_bench

    check_targets(output)
    workload = workload_from_flags(kw, always=True)
    timing = timing_from_flags(kw, timed=True, default_min_time=0.5)
    spec = build_spec(cell, kw)
    if output:
        from ..render.export import check_free_space

        check_free_space(output, 1)
    result = run_bench(spec, workload, predict=predict, **timing)
    warn_timings([result])
    emit(result, fmt, output, wide=wide)


def _timing(kw: dict[str, Any], bench: bool, predict: bool) -> dict[str, Any]:
    """The timing flags of compare/sweep: all with --bench; --device and --threads with --predict."""
    if predict and not bench:
        given = [
            f
            for f, v in (("--min-time", kw["min_run_time"]), ("--seed", kw["seed"] or None))
            if v is not None
        ]
        if given:
            verb = "only applies" if len(given) == 1 else "only apply"
            raise ParamcalcError(f"{', '.join(given)} {verb} when timing the modules: add --bench")
    timing = timing_from_flags(
        kw, timed=bench or predict, default_min_time=0.2, hint="add --bench or --predict"
    )
    if not bench:
        timing.pop("min_run_time", None)
        timing.pop("seed", None)
    return timing


def _link(plot: str | None, output: str | None) -> list[tuple[str, str]]:
    if not plot or not output:
        return []
    rel = os.path.relpath(os.path.abspath(plot), os.path.dirname(os.path.abspath(output)))
    return [("plot", rel)]


def _run_study(
    run: Any,
    rows: int,
    bench: bool,
    quiet: bool,
    fmt: str,
    wide: bool,
    output: str | None,
    plot: str | None,
) -> None:
    """Run a compare or sweep (``run(on_row, on_gemm, output)``) with progress on stderr, keep the
    rows finished when interrupted, warn about suspect timings, print, export and plot."""
    try:
        with gemm_progress(quiet) as on_gemm, progress(rows if bench else 0, "timing", quiet) as advance:
            result = run(on_row=advance, on_gemm=on_gemm, output=output if bench else None)
    except Interrupted as stop:
        keep_partial(stop, fmt, wide, output)
        raise
    warn_timings([r.bench for r in result.rows if r.bench is not None])
    emit(result, fmt, output, wide=wide, links=_link(plot, output))
    if plot:
        result.plot(plot)
        click.echo(f"wrote {plot}", err=True)


@click.command()
@spec_options(cell_argument=False, input_required=False, hidden_required=False)
@click.option(
    "--cells",
    default=",".join(CLASSIC_CELLS),
    show_default=True,
    help="Comma-separated cells, one row each; the first is the reference.",
)
@click.option(
    "--equal",
    type=click.Choice(["hidden", "params"]),
    default="hidden",
    show_default=True,
    help="hidden: every cell gets -H; params: cells after the first get the hidden size "
    "matching the first one's parameter count.",
)
@click.option(
    "--multiple-of", type=int, default=None, help="With --equal params: hidden sizes of N·k (default 1)."
)
@workload_options(defaults=True)
@timing_options(bench_flag=True)
@predict_option
@click.option(
    "--from",
    "from_files",
    is_flag=True,
    help="Merge the JSON exports FILES (bench, predict, compare, sweep --output x.json, from any "
    "machine) into one table, rows labelled by device name.",
)
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@plot_options
@output_options
@click.pass_context
def compare(
    ctx: click.Context,
    /,
    cells: str,
    equal: str,
    multiple_of: int | None,
    bench: bool,
    predict: bool,
    from_files: bool,
    files: tuple[str, ...],
    plot: str | None,
    quiet: bool,
    fmt: str,
    wide: bool,
    output: str | None,
    **kw: Any,
) -> None:
    """Cells side by side (default RNN vs LSTM vs GRU): one row per cell type.

    Parameters, GEMM MACs per step, FLOPs per sequence, parameter and training
    memory (cost model, for --batch/--seq-len/--dtype/--train); with --bench also
    the measured time per batch (median, IQR), tokens/s, achieved GFLOP/s, the
    kernel path and the time relative to the first row. --equal params sizes
    every cell after the first (the reference) to the reference's parameter
    count, so the comparison is fair. --predict adds the GEMM-sequence
    prediction of every row (and measured/predicted with --bench). --output
    report.md writes a document (configuration, device, conventions, the
    table, a link to --plot). With --bench, progress and the time left go to
    stderr, and --output is rewritten after each timed row (marked partial
    until the last): Ctrl-C prints and keeps the rows already timed.

    --from FILES merges JSON exports written with --output x.json by bench,
    predict, compare or sweep (--bench or --predict), on any machine, into one
    table with a row per run labelled by device name, and --plot draws
    tokens/s per configuration and device as bars.

    \b
    Examples:
      paramcalc compare -d 28 -H 256 -L 2 --batch 64 --seq-len 28
      paramcalc compare -d 28 -H 256 -L 2 --equal params
      paramcalc compare -d 28 -H 256 --cells lstm,cifg,mgu,mingru,minlstm,indrnn --equal params
      paramcalc compare -d 28 -H 256 -L 2 --batch 64 --seq-len 28 --bench --output report.md --plot report.png
      paramcalc compare -d 28 -H 256 --cells lstm,gru --equal params --batch 32 --seq-len 50 --bench
      paramcalc compare -d 512 -H 1024 -L 4 --batch 64 --seq-len 100 --predict --device cuda
      paramcalc compare --from cpu.json h200.json --plot devices.png
    """
    from ..studies.compare import compare as run_compare

    check_targets(output, plot)
    if from_files:
        _merge(ctx, files, fmt, wide, output, plot)
        return
    _check_compare(ctx, files, kw, equal, multiple_of)
    cell_list = parse_cells(cells) or []
    workload = workload_from_flags(kw, always=True)
    timing = _timing(kw, bench, predict)
    spec = template_spec(cell_list, kw)
    run = functools.partial(
        run_compare,
        spec,
        cell_list,
        equal=equal,
        workload=workload,
        bench=bench,
        predict=predict,
        multiple_of=1 if multiple_of is None else multiple_of,
        **timing,
    )
    _run_study(run, len(cell_list), bench, quiet, fmt, wide, output, plot)


def _check_compare(
    ctx: click.Context, files: tuple[str, ...], kw: dict[str, Any], equal: str, multiple_of: int | None
) -> None:
    """compare's flags that need each other (files only with --from; -d and -H without it)."""
    if files:
        raise ParamcalcError(f"unexpected argument {files[0]!r}: to merge JSON exports, add --from")
    for key, flag in (("input_size", "'-d' / '--input-size'"), ("hidden_size", "'-H' / '--hidden-size'")):
        if kw.get(key) is None:
            raise click.UsageError(f"Missing option {flag}.", ctx)
    if multiple_of is not None and equal != "params":
        raise ParamcalcError("--multiple-of only applies with --equal params")


@click.command()
@spec_options(cell_argument=False, ranges=True)
@click.option("--cells", default=",".join(CLASSIC_CELLS), show_default=True, help="Comma-separated cells.")
@click.option("--batch", "batches", default="1", show_default=True, help="Batch sizes: 32,64 or 16:128:16.")
@click.option(
    "--seq-len", "seq_lens", default="1", show_default=True, help="Sequence lengths: 28 or 10:100:10."
)
@click.option("--dtype", default="fp32", show_default=True, help="fp32, fp16, bf16 or int8.")
@click.option("--train", is_flag=True, help="Training: backward in FLOPs (and timed with --bench).")
@timing_options(bench_flag=True)
@predict_option
@plot_options
@output_options
def sweep(
    cells: str,
    batches: str,
    seq_lens: str,
    dtype: str,
    train: bool,
    bench: bool,
    predict: bool,
    plot: str | None,
    quiet: bool,
    fmt: str,
    wide: bool,
    output: str | None,
    **kw: Any,
) -> None:
    """A tidy table over ranges: one row per cell x hidden x layers x batch x seq_len.

    Ranges are start:stop:step with stop included (64:1024:64), start:stop (1:4)
    or comma lists (32,64,128); items can be mixed (16,32:128:32). Each row has
    parameters, MACs per step, FLOPs (per sequence and for the batch), parameter
    and training memory; with --bench also the measured time, tokens/s, GFLOP/s
    and kernel path, with progress and the time left on stderr (a bar on a
    terminal, a line per row otherwise; none with --quiet), and --output is
    rewritten after each timed row (marked partial until the last), so Ctrl-C
    prints and keeps the rows already timed. At most 10,000 configurations, 500
    when timing.
    --predict adds the GEMM-sequence prediction of every row: only the distinct
    GEMM shapes of the whole sweep are timed (once, cached), with a progress
    bar, so even 10,000 configurations cost a few dozen GEMM timings.

    \b
    Examples:
      paramcalc sweep -d 28 -H 64:1024:64 -L 1:4 --cells lstm,gru
      paramcalc sweep -d 28 -H 128,256,512 --batch 64 --seq-len 28 --format github
      paramcalc sweep -d 28 -H 64:512:64 -L 2 --batch 64 --seq-len 28 --bench --plot sweep.png
      paramcalc sweep -d 28 -H 256 --cells lstm --batch 1,8,64 --seq-len 28 --bench --output sweep.csv
      paramcalc sweep -d 28 -H 64:1024:64 -L 1:4 --batch 64 --seq-len 28 --predict --output sweep.json
    """
    from ..core.spec import MAX_LAYERS
    from ..studies.sweep import sweep as run_sweep
    from ..studies.sweep import sweep_configs

    check_targets(output, plot)
    cell_list = parse_cells(cells) or []
    hs = parse_range(kw.pop("hidden_size"), "hidden sizes")
    layers = kw.pop("num_layers")
    timing = _timing(kw, bench, predict)
    kw.update(hidden_size=max(hs), num_layers=1)
    spec = template_spec(cell_list, kw)
    ranges: dict[str, Any] = {
        "cells": cell_list,
        "hidden_sizes": hs,
        "num_layers": parse_range(layers, "layers", maximum=MAX_LAYERS) if layers is not None else None,
        "batches": parse_range(batches, "batch sizes"),
        "seq_lens": parse_range(seq_lens, "sequence lengths"),
        "dtype": dtype,
        "mode": "training" if train else "inference",
    }
    n = len(sweep_configs(spec, **ranges, timed=bench))
    run = functools.partial(run_sweep, spec, **ranges, bench=bench, predict=predict, **timing)
    _run_study(run, n, bench, quiet, fmt, wide, output, plot)


#: compare's parameters that --from leaves alone (the output and plot options).
_FROM_KEEPS = frozenset({"from_files", "files", "plot", "quiet", "fmt", "wide", "output"})


def _merge(
    ctx: click.Context, files: tuple[str, ...], fmt: str, wide: bool, output: str | None, plot: str | None
) -> None:
    """``compare --from FILES``: merge JSON exports into one table (and a bar plot)."""
    from click.core import ParameterSource

    from ..timing.merge import merge_files

    given = [
        p.opts[0] if p.opts else p.name
        for p in ctx.command.params
        if p.name not in _FROM_KEEPS
        and ctx.get_parameter_source(p.name or "")
        in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    ]
    if given:
        raise ParamcalcError(f"--from merges saved results: {', '.join(given)} do not apply")
    if not files:
        raise ParamcalcError("--from needs at least one JSON export, e.g. compare --from a.json b.json")
    result = merge_files(files)
    emit(result, fmt, output, wide=wide, links=_link(plot, output))
    if plot:
        result.plot(plot)
        click.echo(f"wrote {plot}", err=True)
