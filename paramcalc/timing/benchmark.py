"""Timed throughput of a real recurrent module on a device (the torch edge of paramcalc).

:func:`bench` builds the module of a spec on a device, seeded, and times it with
:class:`torch.utils.benchmark.Timer`:

* **what is timed**: inference is one forward pass in ``eval()`` mode under
  ``torch.inference_mode()``; training (``Workload(mode="training")``) is
  ``zero_grad(set_to_none=True)`` + forward + backward of the summed output in ``train()``
  mode. The one driver (:mod:`paramcalc.bridge.driver`) runs the module: a stack takes the whole
  ``(T, B, d)`` input (or a ``PackedSequence``); a single-step cell is stepped ``seq_len`` times
  in a Python loop, as it is used, over exactly the real tokens of a packed batch.
* **which module**: the ``torch.nn`` module where the layout is PyTorch's. A layout that differs
  from a ``torch.nn`` module only in its bias vectors (Keras' one bias per block) is timed as
  that module with two (the extra vector is a fused add: a note says so); any other layout runs
  the cell's reference module (paramcalc's step-by-step implementation: a correctness
  reference, not an optimised kernel; its kernel path says so).
* **how** (:func:`measure`): a fast call gets a warm-up (at least :data:`WARMUP_CALLS` calls
  and :data:`WARMUP_SECONDS`), then ``Timer.blocked_autorange`` (block size chosen so timer
  overhead is negligible) for at least ``min_run_time`` seconds and :data:`MIN_RUNS` blocks. A
  slow call (:data:`SINGLE_CALL_S` or more, or over ``min_run_time / MIN_RUNS``, judged on the
  faster of the first two calls) is timed call by call, as many calls as fit in
  ``min_run_time``, and the first two calls count as timed runs (the first unless it was cold),
  so a call longer than ``min_run_time`` runs twice in all, whatever the depth. The timer
  synchronises the device (CUDA, MPS) before reading the clock. Median and interquartile range
  are over the per-call times; torch.utils.benchmark's ``Measurement`` gives the noise verdict
  (:attr:`BenchResult.noise`) and the significant figures.
* **the machine** (CPU): the tasks of other processes ready to run are counted before timing;
  when they and the run's threads outnumber the CPUs the result says so, with the fix
  (``threads=1``). torch's own thread count stays the default: it is what a program runs with.
* **the prediction**: :func:`bench` measures only. The caller attaches a prediction of the
  GEMM-sequence bound (:mod:`paramcalc.timing.predict`) for the kernel path that ran, after the
  module is freed: ``pc.bench`` does by default (:func:`paramcalc.studies.timed.bench`), and
  compare and sweep predict all their rows at once. A result with a prediction reports
  ``predicted_ms`` and ``measured_over_predicted`` (measured / predicted); where the kernel
  fuses the whole recurrence (a cuDNN persistent kernel) the bound does not apply: the ratio is
  ``None`` and a note says why.
* **safety**: before anything is allocated the memory the run needs is estimated
  (:mod:`paramcalc.core.memory`, times a headroom; :func:`plan_run`, once per run) and compared
  with what the device has free;
  an out-of-memory error during the run becomes a one-line :class:`ParamcalcError`.
* **memory**: the peak the timed calls held is measured (:func:`~paramcalc.bridge.devices.peak_memory`:
  CUDA's ``max_memory_allocated``; on a CPU the resident-set growth over the state just before
  the first call, plus the parameters and input already resident) and shown beside the memory
  model's peak for the kernel path that ran (``peak_bytes``, ``predicted_peak_bytes``,
  ``peak_ratio``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..bridge.build import is_torch_native, kernel_label
from ..bridge.devices import (
    PeakMemory,
    check_run_memory,
    cpu_count,
    device_name,
    oom_as_error,
    other_load,
    peak_memory,
    predicted_path,
    run_memory_model,
    timing_device,
    torch_dtype,
)
from ..bridge.driver import NATIVE_PATH, REFERENCE_PATH, Case, kernel_ops, kernel_path, make_case
from ..core.coerce import as_spec
from ..core.costmodel import CostResult, cost
from ..core.memory import MemoryModel
from ..core.spec import RecurrentSpec
from ..core.workload import Workload
from ..errors import ParamcalcError
from ..results.base import Result
from ..results.table import Column, Table
from ..results.text import fmt_bytes, fmt_seconds, plural
from .base import (
    check_min_run_time,
    check_threads,
    environment,
    noise_thresholds,
    num_threads,
    timed_context,
    timer_for,
    timing_spec,
)
from .runs import key_columns, key_values, record, runs_meta

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch.utils.benchmark import Measurement

    from .predict import PredictResult

#: Smallest number of timed runs behind a median and an IQR.
MIN_RUNS = 5
#: Default seconds of timing per measurement.
DEFAULT_MIN_RUN_TIME = 0.5
#: Warm-up of a fast call: at least this many calls and this many seconds before timing starts.
WARMUP_CALLS = 3
WARMUP_SECONDS = 0.05
#: A call at least this long (or longer than ``min_run_time / MIN_RUNS``) is timed call by call:
#: the clock's own cost is under 1e-5 of it, and its warm-up is a timed call (see :func:`measure`).
SINGLE_CALL_S = 0.01
#: measured/predicted beyond this factor either way is flagged: the speed model's own errors per
#: cell stay within it on the grids of docs/bench.md, so a larger one means a suspect timing.
FAR_RATIO = 2.0


BENCH_COLUMNS = (
    *key_columns(),  # the workload and the device are in the title
    Column("kernel", "str"),
    Column("runs", wide=True),
    Column("calls_per_run", wide=True),
    Column("time_ms", "float", unit="ms"),
    Column("iqr_ms", "float", unit="ms"),
    Column("tokens_per_s", "float", unit="1/s"),
    Column("sequences_per_s", "float", unit="1/s", wide=True),
    Column("flops", wide=True),
    Column("gflop_per_s", "float", unit="GFLOP/s", wide=True),  # in the summary line
    Column("predicted_ms", "float", unit="ms", doc="the GEMM-sequence bound (paramcalc predict)"),
    Column(
        "measured_over_predicted",
        "float",
        doc="measured time / predicted time; empty where the bound does not apply (a fused kernel)",
    ),
    Column("memory_estimate_bytes", unit="B", wide=True),
    # -- memory: measured peak beside the memory model's (paramcalc.core.memory) --
    Column("peak_bytes", unit="B", wide=True, doc="peak the timed calls held (see peak_method)"),
    Column("predicted_peak_bytes", unit="B", wide=True, doc="the memory model's peak for the path that ran"),
    Column("peak_ratio", "float", wide=True, doc="peak_bytes / predicted_peak_bytes"),
)


def measure(
    fn: Callable[[], Any],
    dev: torch.device,
    *,
    threads: int,
    min_run_time: float,
    label: str = "",
    sub_label: str = "",
    description: str = "",
    clock: Callable[[], float] | None = None,
) -> Measurement:
    """Time ``fn``: a ``torch.utils.benchmark.Measurement`` of at least ``min_run_time`` seconds.

    ``clock`` defaults to :func:`timer_for` (tests pass a fake one). The first call is timed;
    then, by the faster of the first two calls (the first is often cold):

    * **a fast call** (under :data:`SINGLE_CALL_S` and ``min_run_time / MIN_RUNS``): a warm-up of
      :data:`WARMUP_CALLS` calls and :data:`WARMUP_SECONDS`, then ``Timer.blocked_autorange``
      (blocks of calls long enough that the clock's cost is negligible) for ``min_run_time``,
      topped up to :data:`MIN_RUNS` blocks.
    * **a slow call**: single calls, as many as fit in ``min_run_time`` (at least one). The two
      calls already made are the warm-up *and* the first timed calls: the first one counts
      unless it was slower than the second by more than torch's gross noise threshold (25%: a
      cold call, its library set-up and first-touch allocations, not the fluctuation a busy
      machine shows between any two calls), so a call longer than ``min_run_time`` is run twice
      in all, not five times. ``Timer.timeit`` is not used: it runs two warm-up calls before
      every timed one.
    """
    from torch.utils.benchmark import Measurement, TaskSpec, Timer

    tick = clock if clock is not None else timer_for(dev)
    task = TaskSpec(
        "step()", "pass", label=label, sub_label=sub_label, description=description, num_threads=threads
    )

    def once() -> float:
        start = tick()
        fn()
        return tick() - start

    def slow(seconds: float) -> bool:
        return seconds >= SINGLE_CALL_S or seconds * MIN_RUNS > min_run_time

    with num_threads(threads):
        first = once()
        warm = [first]
        if slow(first):
            warm.append(once())
            if slow(min(warm)):
                return Measurement(1, _single_calls(once, first, warm[1], min_run_time), task)
        calls, t0 = len(warm), tick()
        while calls < WARMUP_CALLS or tick() - t0 < WARMUP_SECONDS:
            fn()
            calls += 1
        timer = Timer(
            "step()",
            globals={"step": fn},
            timer=tick,
            num_threads=threads,
            label=label,
            sub_label=sub_label,
            description=description,
        )
        m = timer.blocked_autorange(min_run_time=min_run_time)
        raw = list(m.raw_times)
        while len(raw) < MIN_RUNS:  # one more block, timed here (no Timer.timeit warm-up)
            start = tick()
            for _ in range(m.number_per_run):
                fn()
            raw.append(tick() - start)
    if len(raw) == len(m.raw_times):
        return m
    return Measurement(m.number_per_run, raw, m.task_spec, m.metadata)


def _single_calls(once: Callable[[], float], first: float, second: float, min_run_time: float) -> list[float]:
    """The runs of a slow call (see :func:`measure`): the two calls made, the first dropped when
    it was cold, then single calls up to as many as fit in ``min_run_time``."""
    _, gross = noise_thresholds()
    runs = [first, second] if first <= (1 + gross) * second else [second]
    wanted = max(1, int(min_run_time / min(first, second)))
    while len(runs) < wanted:
        runs.append(once())
    return runs


def probe_dtype(spec: RecurrentSpec, dev: torch.device, dtype: torch.dtype, name: str, train: bool) -> None:
    """Run a tiny module of the same kind in ``dtype`` on ``dev``; a missing kernel is one line."""
    tiny = spec.replace(input_size=2, hidden_size=2, num_layers=1, proj_size=0)
    try:
        case = make_case(tiny, Workload(1, 1, dtype="fp32"), dev, dtype=dtype)
        case.train_step() if train else case.forward()
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        import torch

        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not _is_dtype_error(detail, dtype):
            raise  # a bug, not a missing kernel: the CLI reports it as an internal error
        raise ParamcalcError(
            f"dtype {name} is not supported for {spec.display_class} on {dev} by torch "
            f"{torch.__version__}: {detail}"
        ) from None


def _is_dtype_error(message: str, dtype: torch.dtype) -> bool:
    """Whether torch's message says a kernel is missing for ``dtype`` (not some other failure)."""
    text = message.lower()
    names = {
        str(dtype).removeprefix("torch."),
        {"float16": "half", "bfloat16": "bfloat16"}.get(str(dtype).removeprefix("torch."), ""),
    } - {""}
    missing = ("not implemented", "not supported", "unsupported", "no kernel", "does not support")
    return any(m in text for m in missing) or any(n in text for n in names)


# --- the result ----------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class BenchResult(Result):
    """A timed run; like torch.utils.benchmark's ``Measurement`` it carries what was measured.

    Times are seconds per call (one forward, or forward+backward when ``train``). View: ``run``.
    """

    VIEWS = ("run",)

    spec: RecurrentSpec
    workload: Workload
    cost: CostResult
    device: str
    device_name: str
    dtype: str
    train: bool
    threads: int
    kernel_path: str
    kernel_ops: tuple[str, ...]
    torch_version: str
    seed: int
    memory_estimate: int
    times: tuple[float, ...]
    median_s: float
    iqr_s: float
    number_per_run: int
    timed_as: str = ""
    measurement: Measurement | None = field(default=None, compare=False)
    prediction: PredictResult | None = field(default=None, compare=False)
    # -- memory: measured peak and the memory model's for the kernel path that ran --
    peak_bytes: int | None = None
    predicted_peak_bytes: int | None = None
    #: What the memory model's figure rests on where not on checked rules (a guess for a cell
    #: without memory rules; on CUDA the sources, device, versions and calibration).
    memory_notes: tuple[str, ...] = ()
    peak_method: str = ""
    # -- the machine while it ran: other runnable tasks and this process's CPUs --
    other_load: float | None = None
    cpus: int = 0

    @property
    def peak_ratio(self) -> float | None:
        """Measured over predicted peak (``None`` when either is unknown)."""
        if not self.peak_bytes or not self.predicted_peak_bytes:
            return None
        return self.peak_bytes / self.predicted_peak_bytes

    # -- derived quantities -------------------------------------------------------------
    @property
    def batch(self) -> int:
        return self.workload.batch

    @property
    def tokens(self) -> int:
        """Time steps processed per call: ``B·T`` (or the sum of the sequence lengths)."""
        return self.workload.tokens

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.median_s

    @property
    def sequences_per_s(self) -> float:
        return self.batch / self.median_s

    @property
    def flops(self) -> int:
        """FLOPs of one timed call, from the cost model."""
        return int(self.cost.flops)

    @property
    def flop_per_s(self) -> float:
        return self.flops / self.median_s

    @property
    def spread_known(self) -> bool:
        """Whether enough runs were timed for an interquartile range (:data:`MIN_RUNS`)."""
        return len(self.times) >= MIN_RUNS

    @property
    def timed_s(self) -> float:
        """Seconds spent inside the timed calls (every run's calls, warm-up excluded)."""
        return sum(self.times) * self.number_per_run

    @property
    def predicted_s(self) -> float | None:
        return self.prediction.seconds if self.prediction is not None else None

    @property
    def measured_over_predicted(self) -> float | None:
        """Measured / predicted time; ``None`` without a prediction or where the bound does not apply."""
        p = self.prediction
        if p is None or not p.bound_applies:
            return None
        return self.median_s / p.seconds

    def timing(self) -> Measurement:
        """The ``torch.utils.benchmark.Measurement`` of the runs (rebuilt from ``times`` when the
        result was made without one)."""
        if self.measurement is not None:
            return self.measurement
        from torch.utils.benchmark import Measurement, TaskSpec

        raw = [t * self.number_per_run for t in self.times]
        return Measurement(self.number_per_run, raw, TaskSpec("step()", "pass", num_threads=self.threads))

    @property
    def noise(self) -> str:
        """torch.utils.benchmark's verdict on the spread of the runs (``Measurement.has_warnings``
        and its levels): ``""`` steady (or too few runs for an IQR), ``"noisy"`` (the IQR is at
        least 10% of the median: "could indicate system fluctuation") or ``"gross"`` (at least
        25%: "suggests significant environmental influence")."""
        if not self.spread_known:
            return ""
        m = self.timing()
        if not m.has_warnings:
            return ""
        return "noisy" if m.meets_confidence(noise_thresholds()[1]) else "gross"

    @property
    def noisy(self) -> bool:
        """Whether torch.utils.benchmark warns about the spread (see :attr:`noise`)."""
        return self.noise != ""

    @property
    def significant_figures(self) -> int | None:
        """Digits of the median the spread supports (``Measurement.significant_figures``);
        ``None`` when too few runs were timed for a spread."""
        return int(self.timing().significant_figures) if self.spread_known else None

    @property
    def oversubscribed(self) -> bool:
        """Whether this run's threads and the other runnable tasks outnumbered the CPUs."""
        return self.threads > 1 and self.other_load is not None and self.other_load + self.threads > self.cpus

    @property
    def far_from_prediction(self) -> float | None:
        """How many times measured/predicted is away from 1 when that exceeds :data:`FAR_RATIO`
        (``None`` otherwise): 57 for a ratio of 0.0175 or of 57."""
        ratio = self.measured_over_predicted
        if ratio is None or ratio <= 0:
            return None
        factor = max(ratio, 1 / ratio)
        return factor if factor > FAR_RATIO else None

    def warnings(self) -> list[str]:
        """What makes this timing suspect, one sentence each (the CLI prints them on stderr)."""
        out = []
        if self.oversubscribed:
            out.append(
                f"the CPUs are oversubscribed: {plural(round(self.other_load or 0), 'runnable task')} "
                f"of other processes + {plural(self.threads, 'torch thread')} on {plural(self.cpus, 'CPU')}; "
                "torch's threads wait for each other on a busy machine, which can make a call many times "
                "slower: use `threads=1`"
            )
        noise = self.noise
        if noise:
            gross = noise == "gross"
            what = "suggests significant environmental influence"
            if not gross:
                what = "could indicate system fluctuation"
            fix = "try `min_run_time=1`" + (" or `threads=1`" if self.device == "cpu" else "")
            if self.threads > 1 and gross and self.device == "cpu":
                fix = "use `threads=1`"
            m = self.timing()
            share = 100 * m.iqr / m.median
            out.append(
                f"{'very ' if gross else ''}noisy: the IQR is {share:.0f}% of the median, which {what} "
                f"(torch.utils.benchmark); is something else running? {fix}"
            )
        far = self.far_from_prediction
        if far is not None:
            ratio = self.measured_over_predicted
            assert ratio is not None
            side = "faster" if ratio < 1 else "slower"
            out.append(
                f"measured/predicted is {ratio:.3g}: the run was {far:.3g}x {side} than predicted (more than "
                f"{FAR_RATIO:g}x from 1); a GEMM timing taken on a busy machine (`predict(refresh=True)` "
                "times them again) or a busy machine now could explain it"
            )
        return out

    @property
    def mode(self) -> str:
        return "training" if self.train else "inference"

    def environment(self) -> dict[str, Any]:
        """Where the run happened."""
        return environment(self)

    def _table(self, view: str) -> Table:
        values = {
            **key_values(self.spec, self.workload, self.environment()),
            "kernel": kernel_label(self.kernel_path, self.spec),
            "runs": len(self.times),
            "calls_per_run": self.number_per_run,
            "time_ms": self.median_s * 1e3,
            "iqr_ms": self.iqr_s * 1e3 if self.spread_known else None,
            "tokens_per_s": self.tokens_per_s,
            "sequences_per_s": self.sequences_per_s,
            "flops": self.flops,
            "gflop_per_s": self.flop_per_s / 1e9,
            "predicted_ms": None if self.predicted_s is None else self.predicted_s * 1e3,
            "measured_over_predicted": self.measured_over_predicted,
            "memory_estimate_bytes": self.memory_estimate,
            "peak_bytes": self.peak_bytes,
            "predicted_peak_bytes": self.predicted_peak_bytes,
            "peak_ratio": self.peak_ratio,
        }
        return Table.from_records(BENCH_COLUMNS, [values])

    def title(self) -> str:
        what = "forward + backward" if self.train else "forward (eval, inference_mode)"
        return (
            f"{self.spec.describe()}  [{self.workload.describe()}]: {what} on {self.device} "
            f"({self.device_name}), {plural(self.threads, 'thread')}, torch {self.torch_version}"
        )

    def headline(self) -> str:
        return f"{self.spec.describe()} on {self.device}: {fmt_seconds(self.median_s)} per call"

    def notes(self) -> list[str]:
        out = []
        if self.timed_as:
            out.append(self.timed_as)
        out += self.warnings()
        out += self.memory_notes
        if not self.spread_known:
            out.append(
                f"one call is slow: {plural(len(self.times), 'single call')} timed within `min_run_time`, "
                "too few for an IQR; raise `min_run_time` for a spread"
            )
        p = self.prediction
        if p is not None:
            if p.fused:
                out.append(p.fused + ": no measured/predicted ratio")
            out.append(
                "predicted_ms: the GEMM-sequence bound (paramcalc predict: each distinct GEMM shape timed "
                "alone, cached; elementwise at the copy bandwidth; operator calls at the per-call overhead); "
                "measured_over_predicted = time_ms / "
                "predicted_ms"
            )
            out += [n for n in p.notes() if n.startswith(("the cache", "no GEMM cache"))]
        return out

    def summary(self, view: str | None = None) -> list[str]:
        lines = [
            f"time per call: {self._median_text()} ± {fmt_seconds(self.iqr_s)} (IQR) over "
            f"{plural(len(self.times), 'run')} x {plural(self.number_per_run, 'call')}; kernel path: "
            f"{self.kernel_path}",
            f"FLOPs per call (cost model): {self.flops:,}; {self.flop_per_s / 1e9:,.2f} GFLOP/s achieved",
        ]
        p = self.prediction
        if p is not None:
            ratio = self.measured_over_predicted
            lines.append(
                f"predicted (GEMM-sequence bound): {fmt_seconds(p.seconds)} = GEMMs {fmt_seconds(p.gemm_s)} "
                f"({plural(p.gemm_call_count, 'call')}, {plural(len(p.gemms), 'shape')}) + elementwise "
                f"{fmt_seconds(p.elementwise_s)} + dispatch {fmt_seconds(p.dispatch_s)}; measured/predicted: "
                + (f"{ratio:.3g}" if ratio is not None else "n/a (the bound does not apply)")
            )
        lines.append(f"memory estimate: {fmt_bytes(self.memory_estimate)}; FLOPs: {self.cost.convention}")
        return lines + self._peak_lines()

    def _median_text(self) -> str:
        """The median to the digits its spread supports (torch.utils.benchmark's estimate)."""
        digits = self.significant_figures
        if digits is None:
            return f"{fmt_seconds(self.median_s)} (median)"
        from torch.utils.benchmark import trim_sigfig

        figures = "figure" if digits == 1 else "figures"
        return f"{fmt_seconds(trim_sigfig(self.median_s, digits))} (median, {digits} significant {figures})"

    def _peak_lines(self) -> list[str]:
        if self.predicted_peak_bytes is None:
            return []
        measured = f"{fmt_bytes(self.peak_bytes)} ({self.peak_method})" if self.peak_bytes else "not measured"
        ratio = f", ratio {self.peak_ratio:.2f}" if self.peak_ratio is not None else ""
        return [
            f"peak memory: {measured}; memory model ({self.kernel_path}): "
            f"{fmt_bytes(self.predicted_peak_bytes)}{ratio}"
        ]

    def run_record(self) -> dict[str, Any]:
        """This run as one entry of a JSON export's ``runs`` (see :mod:`paramcalc.timing.runs`)."""
        return record(self.spec, self.workload, self, self.prediction)

    def meta(self) -> dict[str, Any]:
        return {
            "result": "bench",
            "spec": self.spec.to_dict(),
            "workload": self.workload.to_dict(),
            **self.environment(),
            "kernel": self.kernel_path,
            "kernel_ops": list(self.kernel_ops),
            "seed": self.seed,
            "times_s": list(self.times),
            "median_s": self.median_s,
            "predicted_s": self.predicted_s,
            "measured_over_predicted": self.measured_over_predicted,
            "cost_convention": self.cost.convention,
            **runs_meta("bench", [self.run_record()]),
            "peak_method": self.peak_method,
        }

    def context(self) -> list[tuple[str, str]]:
        return timed_context(self)


# --- the entry point -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunPlan:
    """What a timed run will be, known before anything is built: the spec whose module is timed
    (:func:`~paramcalc.timing.base.timing_spec`), the kernel path it is expected to take and the
    memory model's peak for that path."""

    spec: RecurrentSpec
    timed_as: str
    path: str
    memory: MemoryModel

    @property
    def peak(self) -> int:
        return self.memory.peak_bytes


def plan_run(spec: RecurrentSpec, workload: Workload, dev: torch.device) -> RunPlan:
    """The :class:`RunPlan` of timing ``spec`` on ``workload`` on ``dev`` (the memory model, once)."""
    run_spec, timed_as = timing_spec(spec)
    path = predicted_path(run_spec, workload, dev)
    return RunPlan(run_spec, timed_as, path, run_memory_model(run_spec, workload, path, dev))


def check_plan(plan: RunPlan, workload: Workload, dev: torch.device) -> int:
    """Refuse (one line) a run the device cannot hold; the bytes it needs."""
    return check_run_memory(plan.spec, workload, dev, "the timed run", need=plan.peak)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ParamcalcError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return seed


def bench(
    spec: RecurrentSpec,
    workload: Workload | None = None,
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    min_run_time: float = DEFAULT_MIN_RUN_TIME,
    seed: int = 0,
    cost_result: CostResult | None = None,
    plan: RunPlan | None = None,
) -> BenchResult:
    """Time ``spec``'s module on ``device`` for ``workload`` (batch, seq_len, dtype, mode).

    ``spec`` may be a :class:`RecurrentSpec` or a recurrent ``torch.nn`` module (its spec is
    timed, on a fresh seeded module). This measures only: ``pc.bench``
    (:func:`paramcalc.studies.timed.bench`) attaches the GEMM-sequence prediction.
    ``cost_result``: the cost model's result for ``spec`` and ``workload`` when the caller has
    it; ``plan``: the :func:`plan_run` of this run when the caller made it (compare and sweep
    check every row's memory first), so neither is computed again. The spec is coerced once and
    the memory model evaluated once (again only when the kernel path that ran is not the one
    expected).

    >>> from paramcalc import RecurrentSpec, Workload
    >>> spec = RecurrentSpec("lstm", 28, 256, num_layers=2)
    >>> r = bench(spec, Workload(batch=4, seq_len=7), min_run_time=0.05)
    >>> r.device, r.tokens, r.median_s > 0
    ('cpu', 28, True)

    Raises :class:`ParamcalcError` (one line) for an absent device, a dtype the device cannot
    run, a run that does not fit in memory, or an out-of-memory error during the run.
    """
    import torch

    spec = as_spec(spec, "bench")
    workload = workload if workload is not None else Workload()
    if not isinstance(workload, Workload):
        raise ParamcalcError(f"bench needs a Workload, got {type(workload).__name__}")
    min_run_time = check_min_run_time(min_run_time)
    seed = _check_seed(seed)
    dev = timing_device(device)
    torch_dtype(workload.dtype)  # int8 and unknown dtypes: one line
    threads = check_threads(threads) or torch.get_num_threads()
    c = cost_result if cost_result is not None else cost(spec, workload)
    plan = plan if plan is not None else plan_run(spec, workload, dev)
    need = check_plan(plan, workload, dev)  # before any allocation
    meas, ops, others, peak = _timed(spec, workload, plan.spec, dev, threads, min_run_time, seed)
    path = kernel_path(ops, native=is_torch_native(plan.spec))
    if path == NATIVE_PATH and not is_torch_native(plan.spec):  # pragma: no cover - defensive
        path = REFERENCE_PATH
    memory = plan.memory if path == plan.path else run_memory_model(plan.spec, workload, path, dev)
    return BenchResult(
        spec=spec,
        workload=workload,
        cost=c,
        device=str(dev),
        device_name=device_name(dev),
        dtype=str(workload.dtype),
        train=workload.training,
        threads=threads,
        kernel_path=path,
        kernel_ops=ops,
        torch_version=str(torch.__version__),
        seed=seed,
        memory_estimate=need,
        times=tuple(meas.times),
        median_s=float(meas.median),
        iqr_s=float(meas.iqr),
        number_per_run=int(meas.number_per_run),
        timed_as=plan.timed_as,
        measurement=meas,
        peak_bytes=peak.bytes,
        predicted_peak_bytes=memory.peak_bytes,
        memory_notes=memory.notes,
        peak_method=peak.method,
        other_load=others,
        cpus=cpu_count(),
    )


def _timed(
    spec: RecurrentSpec,
    workload: Workload,
    run_spec: RecurrentSpec,
    dev: torch.device,
    threads: int,
    min_run_time: float,
    seed: int,
) -> tuple[Measurement, tuple[str, ...], float | None, PeakMemory]:
    """Build ``run_spec``'s module and time it: the measurement, the kernel ops seen, the other
    runnable tasks before timing (CPU) and the peak memory the timed calls held. The module is
    freed on return."""
    import torch

    train = workload.training
    label = f"{spec.describe()} {workload.dtype} {'train' if train else 'inference'}"
    what = f"timing {spec.describe()} with batch {workload.batch}, seq_len {workload.seq_len}"
    with num_threads(threads), warnings.catch_warnings(), oom_as_error(what, dev):
        # e.g. "LSTM with projections is not supported with oneDNN": kernel_path says so
        warnings.filterwarnings("ignore", message=".*not supported with (oneDNN|cuDNN)", category=UserWarning)
        probe_dtype(run_spec, dev, torch_dtype(workload.dtype), str(workload.dtype), train)
        case: Case = make_case(run_spec, workload, dev, seed=seed)
        case.module.train(train)
        ops = kernel_ops(case, train)
        others = other_load() if dev.type == "cpu" else None
        ctx = contextlib.nullcontext() if train else torch.inference_mode()
        with ctx, peak_memory(dev, case.resident_bytes()) as peak:
            meas = measure(
                case.callable(train),
                dev,
                threads=threads,
                min_run_time=min_run_time,
                label=label,
                sub_label=f"B={workload.batch} T={workload.seq_len}",
                description=spec.cell,
            )
    return meas, ops, others, peak
