"""``pc.bench``: a timed run of one spec with its prediction attached.

:func:`paramcalc.timing.benchmark.bench` measures only; this is the caller that adds the
GEMM-sequence prediction (:func:`paramcalc.timing.predict.predict`) for the kernel path that
ran, after the module is freed, from the cost model's result the measurement already holds
(so one ``bench`` coerces the spec, evaluates the cost model and the memory model once).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..core.costmodel import CostResult
from ..core.spec import RecurrentSpec
from ..core.workload import Workload
from ..timing import benchmark
from ..timing.benchmark import DEFAULT_MIN_RUN_TIME, BenchResult

if TYPE_CHECKING:  # pragma: no cover
    import os

    import torch

    from ..timing.gemm import DeviceTimer


def bench(
    spec: RecurrentSpec,
    workload: Workload | None = None,
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    min_run_time: float = DEFAULT_MIN_RUN_TIME,
    seed: int = 0,
    predict: bool = True,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    timer: DeviceTimer | None = None,
    cost_result: CostResult | None = None,
) -> BenchResult:
    """Time ``spec``'s module on ``device`` for ``workload`` (batch, seq_len, dtype, mode).

    ``spec`` may be a :class:`RecurrentSpec` or a recurrent ``torch.nn`` module (its spec is
    timed, on a fresh seeded module); see :func:`paramcalc.timing.benchmark.bench` for what is
    timed and how. With ``predict`` (default) the result also carries the GEMM-sequence
    prediction of the kernel path that ran (:func:`paramcalc.timing.predict.predict`), its GEMM
    timings from the cache (``cache``, ``cache_dir``) or a shared ``timer``. ``cost_result``:
    the cost model's result for ``spec`` and ``workload`` when the caller has it.

    >>> import paramcalc as pc
    >>> r = pc.bench(pc.RecurrentSpec("lstm", 28, 256, num_layers=2), pc.Workload(4, 7), min_run_time=0.05)
    >>> r.tokens, r.prediction is not None
    (28, True)

    Raises :class:`~paramcalc.errors.ParamcalcError` (one line) for an absent device, a dtype
    the device cannot run, a run that does not fit in memory, or an out-of-memory error.
    """
    measured = benchmark.bench(
        spec,
        workload,
        device=device,
        threads=threads,
        min_run_time=min_run_time,
        seed=seed,
        cost_result=cost_result,
    )
    if not predict:
        return measured
    return with_prediction(measured, cache=cache, cache_dir=cache_dir, timer=timer)


def with_prediction(
    r: BenchResult,
    *,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    timer: DeviceTimer | None = None,
) -> BenchResult:
    """``r`` with the GEMM-sequence prediction of the run it measured (same device, threads,
    kernel path and cost) attached."""
    from ..timing.predict import predict

    prediction = predict(
        r.spec,
        r.workload,
        device=r.device,
        threads=r.threads,
        cache=cache,
        cache_dir=cache_dir,
        timer=timer,
        kernel=r.kernel_path,
        cost_result=r.cost,
    )
    return replace(r, prediction=prediction)
