"""``paramcalc predict``: a recurrent stack's time from timed GEMMs, without building the model."""

from __future__ import annotations

from typing import Any

import click

from .options import (
    build_spec,
    check_targets,
    emit,
    gemm_progress,
    output_options,
    spec_options,
    workload_from_flags,
    workload_options,
)


@click.command("predict")
@spec_options()
@workload_options(defaults=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or mps.")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's setting).")
@click.option(
    "--min-time",
    "min_run_time",
    type=float,
    default=None,
    help="Seconds of timing per GEMM shape not yet in the cache (default 0.02).",
)
@click.option(
    "--no-cache",
    "no_cache",
    is_flag=True,
    help="Time every GEMM shape now; read and write no cache file.",
)
@click.option(
    "--refresh",
    is_flag=True,
    help="Time every GEMM shape again and replace its cached timing (after a busy moment).",
)
@click.option(
    "--by",
    "view",
    type=click.Choice(["total", "gemm"]),
    default="total",
    show_default=True,
    help="One row in total, or one row per distinct GEMM shape (calls, time per call, share).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@output_options
def predict(
    cell: str,
    device: str,
    threads: int | None,
    min_run_time: float | None,
    no_cache: bool,
    refresh: bool,
    view: str,
    quiet: bool,
    fmt: str,
    wide: bool,
    output: str | None,
    **kw: Any,
) -> None:
    """Predict the time of CELL per batch from GEMMs timed alone, without building it.

    The cost model's GEMM list (paramcalc cost --by gemm) is timed shape by
    shape on --device: each distinct (M, K, N) once per device, dtype, thread
    count and torch version, kept in the cache ($PARAMCALC_CACHE_DIR, else
    $XDG_CACHE_HOME/paramcalc or ~/.cache/paramcalc). The prediction is the
    GEMM-sequence bound: the sum of calls x time per call, plus the
    elementwise and bias bytes at the measured copy bandwidth, plus the
    operator calls a forward dispatches (counted on a 4-unit copy of the
    module) at the measured per-call overhead; --train adds the backward GEMMs
    (dX, dW). Only one GEMM's operands are allocated at a time, and a shape
    too large for memory is timed as tiles with the same MACs, so a model that
    does not fit can still be estimated. Where a cuDNN
    persistent kernel runs the whole recurrence (small hidden sizes on CUDA)
    a note says the bound does not apply. --by gemm lists every shape.

    \b
    Examples:
      paramcalc predict lstm -d 28 -H 256 -L 2 --batch 64 --seq-len 28
      paramcalc predict gru -d 28 -H 256 -L 2 --batch 64 --seq-len 28 --train --by gemm
      paramcalc predict lstm -d 16384 -H 16384 -L 8 --batch 64 --seq-len 100 --device cpu
      paramcalc predict lstm -d 512 -H 1024 -L 4 --batch 128 --seq-len 100 --device cuda --dtype fp16
      paramcalc predict lstm -d 28 -H 256 --batch 64 --seq-len 28 --output predict.json
    """
    from ..timing.base import check_min_run_time, check_threads
    from ..timing.gemm import DEFAULT_GEMM_MIN_RUN_TIME
    from ..timing.predict import predict as run_predict

    check_targets(output)
    workload = workload_from_flags(kw, always=True)
    spec = build_spec(cell, kw)
    check_threads(threads)
    min_run_time = check_min_run_time(min_run_time) if min_run_time is not None else DEFAULT_GEMM_MIN_RUN_TIME
    with gemm_progress(quiet) as on_gemm:
        result = run_predict(
            spec,
            workload,
            device=device,
            threads=threads,
            min_run_time=min_run_time,
            cache=not no_cache,
            refresh=refresh,
            on_timed=on_gemm,
        )
    emit(result, fmt, output, view=view, wide=wide)
