"""The GEMM-sequence speed model: a recurrent stack's time from GEMMs timed alone on the device.

No module is built: only the operands of one GEMM shape at a time are allocated (large shapes
as tiles, see :mod:`paramcalc.timing.gemm`), so a model that does not fit in memory can still
be estimated. The model, stated here and in every :class:`PredictResult`'s notes:

* **the work** is the cost model's own GEMM list (:meth:`paramcalc.core.costmodel.CostResult.gemms`):
  per layer and direction, a stack's input GEMM once over all real tokens (a single-step cell's
  once per step), then the recurrent (and projection) GEMMs once per step with the sequences
  still running: a packed batch gives one entry per distinct row count, its rows shrinking as
  sequences end.
* **training** adds, for every forward GEMM ``(M, K, N)``, the input gradient
  ``dX = (M×N)·(N×K)``, timed as the shape ``(M, N, K)``, and the weight gradient
  ``dW = (K×M)·(M×N)``, timed as ``(K, M, N)``, with the forward GEMM's calls; as autograd
  runs them on data input and a zero initial state (the cost model's ``autograd`` rule): no dX
  for the layer-0 input GEMM, nor for the recurrent GEMMs of each sequence's first step
  (a packed reverse direction: of the longest sequences only).
* **time** = Σ over distinct GEMM shapes of calls × (median time of one call, timed alone)
  + elementwise bytes / the device's copy bandwidth + operator calls × the per-call overhead.
  GEMMs are taken to run one after another at the speed each has alone: no overlap of
  directions or layers, no fusion of steps.
* **elementwise and bias work**: every op reads and writes its elements once in the dtype:
  bytes = (bias additions + elementwise ops) × 2 × element size, at the measured ``copy_``
  bandwidth; training: 3 × (backward = 2 × forward, the cost model's rule).
* **dispatch overhead**: every operator call that is not a GEMM (pointwise ops, views, splits,
  a fused layer's kernel) costs a few microseconds however small its tensors: the calls one
  forward makes (:func:`paramcalc.bridge.driver.dispatched_ops`, counted on a 4-unit copy of
  the module on the device: oneDNN's and cuDNN's fused layers make none per step, ATen's native
  GRU layer 12) × the kernel path's overhead per call
  (:meth:`~paramcalc.timing.gemm.DeviceTimer.op_seconds`: the 4-unit copy's extra time per
  step over its calls per step, which also holds a reference module's Python); training: 3 ×
  forward. It dominates small shapes on ATen's native path, where the GEMMs and the bytes
  alone predicted half the time.
* **left out**: allocations, layout copies, the layer's output ``stack``, the objective's sum
  in training; transcendental ops (``tanh``, ``sigmoid``) are priced at the copy bandwidth,
  which on a CPU is optimistic.
* **many distinct lengths**: a packed batch gives one recurrent GEMM shape per distinct row
  count, times three in training. Where a prediction would need more than
  :data:`MAX_EXACT_GEMMS` distinct shapes, the rows of every per-step GEMM below the full batch
  are rounded up to a grid of :data:`ROW_STEPS` sizes per doubling (exact up to
  :data:`EXACT_ROWS`; :func:`row_bucket`): at most 9.1% more rows per call, so the
  prediction errs high, and a batch of 3,000 distinct lengths times about 80 row counts per
  GEMM role instead of 3,000. A note says so.
* **where it does not apply**: a kernel that fuses the whole recurrence into one persistent
  kernel keeps the weights on chip and launches nothing per step, so the sum of isolated GEMMs
  overestimates it. :func:`cudnn_persistent` repeats PyTorch's own choice of cuDNN algorithm
  (``get_algo`` in ``aten/src/ATen/native/cudnn/RNN.cpp``): the small-hidden persistent
  kernel for RNN Dh ≤ 384 and LSTM/GRU Dh ≤ 192 forward (≤ 256 and ≤ 128 backward), and the
  fp16 persistent kernel for one unidirectional layer with Dh ≤ 1024, Dh and d multiples of
  128 and the device and batch rules PyTorch checks; never with a projection or a packed
  batch. oneDNN on CPUs is not persistent: the bound applies there.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ..core.coerce import as_spec
from ..core.costmodel import CostResult, cost, gemm_stages
from ..core.spec import RecurrentSpec
from ..core.workload import Workload
from ..errors import ParamcalcError
from ..results.base import Result
from ..results.table import Column, Table
from ..results.text import fmt_bytes, fmt_seconds, plural
from .base import environment, timed_context, timing_spec
from .gemm import DEFAULT_GEMM_MIN_RUN_TIME, GemmRequest
from .runs import key_columns, key_values, record, runs_meta

if TYPE_CHECKING:  # pragma: no cover
    import os

    import torch

    from .gemm import DeviceTimer

MODEL_NOTE = (
    "model: GEMM-sequence bound = Σ calls × time of one call of each distinct GEMM shape, timed alone "
    "on this device (torch.mm(A, Bᵀ, out=C), median of torch.utils.benchmark runs), run one after "
    "another without overlap or fusion, + elementwise and bias bytes (read + write of each element per "
    "op) / measured copy bandwidth, + the non-GEMM operator calls one forward dispatches × the kernel "
    "path's measured overhead per call; the GEMMs are the cost model's (listed by its `view='gemm'`)"
)


#: More distinct GEMM shapes than this in one prediction: per-step rows are bucketed (:func:`row_bucket`).
MAX_EXACT_GEMMS = 256
#: Row counts up to this are kept exact; above, ROW_STEPS grid sizes per doubling.
EXACT_ROWS = 16
ROW_STEPS = 8


# --- the GEMM list -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GemmCall:
    """One GEMM of the model: pass (``forward``, ``dX``, ``dW``), role, shape and calls."""

    phase: str
    name: str
    layer: int
    direction: str
    m: int
    k: int
    n: int
    calls: int

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.calls

    @property
    def role(self) -> str:
        return self.name if self.phase == "forward" else f"{self.phase} {self.name}"


def gemm_calls(spec: RecurrentSpec, workload: Workload, c: CostResult | None = None) -> list[GemmCall]:
    """Every GEMM the model times for ``spec`` on ``workload``: forward, and backward in training.

    Pure Python (see the module docstring for the backward shapes and the autograd rule).
    """
    c = c if c is not None else cost(spec, workload)
    fwd = [GemmCall("forward", g.name, g.layer, g.direction, g.m, g.k, g.n, g.calls) for g in c.gemms()]
    if not workload.training:
        return fwd
    recurrent = {name for name, _, _ in gemm_stages(spec) if name.startswith("recurrent")}
    first_rows = {"forward": workload.step_batch(0), "reverse": workload.longest}
    out = list(fwd)
    for g in fwd:
        dx_calls = g.calls
        if g.name == "input" and g.layer == 0:
            dx_calls = 0  # the data input needs no gradient
        elif g.name in recurrent and g.m == first_rows[g.direction]:
            dx_calls -= 1  # the zero initial state needs no gradient
        if dx_calls:
            out.append(GemmCall("dX", g.name, g.layer, g.direction, g.m, g.n, g.k, dx_calls))
        out.append(GemmCall("dW", g.name, g.layer, g.direction, g.k, g.m, g.n, g.calls))
    return out


def row_grid(batch: int) -> list[int]:
    """The row counts a bucketed prediction times: 1 .. :data:`EXACT_ROWS`, then
    ``ceil(EXACT_ROWS · 2^(j / ROW_STEPS))`` below ``batch``, then ``batch`` itself."""
    grid = list(range(1, min(EXACT_ROWS, batch) + 1))
    j = 1
    while grid[-1] < batch:
        grid.append(min(batch, max(grid[-1] + 1, math.ceil(EXACT_ROWS * 2 ** (j / ROW_STEPS)))))
        j += 1
    return grid


def row_bucket(rows: int, grid: Sequence[int]) -> int:
    """The smallest grid row count at least ``rows`` (``rows`` itself beyond the grid)."""
    i = bisect.bisect_left(grid, rows)
    return grid[i] if i < len(grid) else rows


def bucket_rows(calls: list[GemmCall], workload: Workload) -> tuple[list[GemmCall], str]:
    """``calls`` with the rows of every per-step GEMM rounded up to :func:`row_grid` when they
    have more than :data:`MAX_EXACT_GEMMS` distinct shapes, and a note; else as they are."""
    shapes = {(g.m, g.k, g.n) for g in calls}
    if len(shapes) <= MAX_EXACT_GEMMS:
        return calls, ""
    grid = row_grid(workload.batch)
    out = []
    for g in calls:
        if g.phase == "dW" and g.k < workload.batch:  # dW = (K, rows, N)
            g = replace(g, k=row_bucket(g.k, grid))
        elif g.phase != "dW" and g.m < workload.batch:  # forward and dX: (rows, ., .)
            g = replace(g, m=row_bucket(g.m, grid))
        out.append(g)
    after = len({(g.m, g.k, g.n) for g in out})
    lengths = len(set(workload.lengths or ()))
    note = (
        f"{len(shapes):,} distinct GEMM shapes ({lengths:,} distinct lengths) are more than "
        f"{MAX_EXACT_GEMMS}: the per-step GEMMs' rows were rounded up to {ROW_STEPS} sizes per doubling "
        f"(at most 9.1% more rows), so {plural(after, 'shape')} "
        f"{'was' if after == 1 else 'were'} timed and the prediction errs high"
    )
    return out, note


# --- where the bound does not apply --------------------------------------------------------------


def cudnn_persistent(
    spec: RecurrentSpec,
    workload: Workload,
    props: tuple[int, int, int],
    *,
    forward: bool = True,
) -> str:
    """The cuDNN persistent algorithm PyTorch picks for ``spec`` on a GPU, or ``""`` for the standard one.

    ``props`` = (compute capability major, minor, multiprocessor count). Mirrors PyTorch's
    choice in ``aten/src/ATen/native/cudnn/RNN.cpp`` (``get_algo``): see the module docstring.
    """
    mode = spec.cell_type.torch.mode
    if mode is None or spec.proj_size or workload.lengths is not None:
        return ""
    small_h = {True: (384, 192), False: (256, 128)}[forward]
    limit = small_h[0] if mode in ("RNN_TANH", "RNN_RELU") else small_h[1]
    if props[0] >= 6 and spec.hidden_size <= limit:
        return "persistent small-hidden kernel (CUDNN_RNN_ALGO_PERSIST_STATIC_SMALL_H)"
    if _fp16_persistent(spec, workload, mode, props):
        return "persistent fp16 kernel (CUDNN_RNN_ALGO_PERSIST_STATIC)"
    return ""


def _fp16_persistent(spec: RecurrentSpec, workload: Workload, mode: str, props: tuple[int, int, int]) -> bool:
    """``get_algo``'s fp16 rule: one unidirectional layer, Dh ≤ 1024, Dh and d multiples of 128,
    then the batch (and sequence length) rule of the device generation."""
    h = spec.hidden_size
    if workload.dtype != "fp16" or spec.num_layers != 1 or spec.bidirectional or h > 1024:
        return False
    if h % 128 or spec.input_size % 128:
        return False
    major, minor, sms = props
    if major == 7 and minor != 5:
        return _volta_batch(workload.batch, workload.seq_len)
    return major >= 8 and sms >= 98 and minor != 6 and _ampere_batch(mode, workload.batch, h)


def _volta_batch(b: int, t: int) -> bool:
    """The fp16 persistent kernel's batch and length rule on compute capability 7.0/7.2."""
    if not ((b % 16 == 0 and b not in (80, 112)) or b == 8):
        return False
    return (t >= 40 and b <= 128) or (t >= 20 and b <= 96) or (t >= 10 and b <= 32)


def _ampere_batch(mode: str, b: int, h: int) -> bool:
    """The fp16 persistent kernel's batch rule from compute capability 8.0 with 98 or more SMs."""
    if b % 8 or b > 128:
        return False
    if mode == "LSTM":
        return True
    return mode in ("RNN_TANH", "RNN_RELU") and (b < 96 or h < 896)


def fused_reason(
    spec: RecurrentSpec, workload: Workload, kernel: str, props: tuple[int, int, int] | None
) -> str:
    """Why the GEMM-sequence bound does not apply to this run (``""`` when it does)."""
    if kernel != "cuDNN" or props is None:
        return ""
    algo = cudnn_persistent(spec, workload, props, forward=True)
    if not algo and workload.training:
        algo = cudnn_persistent(spec, workload, props, forward=False)
        algo = f"{algo} in backward" if algo else ""
    if not algo:
        return ""
    return (
        f"the GEMM-sequence bound does not apply: cuDNN runs {spec.describe()} as a {algo}, which keeps "
        "the weights on chip for the whole recurrence instead of one GEMM per step"
    )


# --- the result -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GemmShare:
    """One distinct GEMM shape of a prediction: its calls, time per call and what uses it."""

    m: int
    k: int
    n: int
    calls: int
    roles: tuple[str, ...]
    seconds_per_call: float
    tiles: str
    noisy: bool

    @property
    def seconds(self) -> float:
        return self.calls * self.seconds_per_call


TOTAL_COLUMNS = (
    *key_columns(),  # the workload and the device are in the title
    Column("predicted_ms", "float", unit="ms", doc="the GEMM-sequence bound: GEMMs + elementwise + dispatch"),
    Column("gemm_ms", "float", unit="ms"),
    Column("elementwise_ms", "float", unit="ms"),
    Column("dispatch_ms", "float", unit="ms", doc="non-GEMM operator calls × the per-op overhead"),
    Column("tokens_per_s", "float", unit="1/s"),
    Column("gemm_calls", wide=True),  # in the summary line
    Column("distinct_gemms", wide=True),
    Column("bound_applies", "bool"),
)
GEMM_COLUMNS = (
    Column("gemm", "str", doc="pass and role: input, recurrent, projection; dX, dW in training"),
    Column("M"),
    Column("K"),
    Column("N"),
    Column("calls"),
    Column("time_per_call_us", "float", unit="µs"),
    Column("total_ms", "float", unit="ms"),
    Column("share_pct", "float", unit="%"),
    Column("timed_as", "str", wide=True, doc="tiles timed for a shape too large to allocate"),
    Column("noisy", "bool", wide=True),
)


@dataclass(frozen=True, repr=False)
class PredictResult(Result):
    """The predicted time of one call (forward, or forward + backward in training).

    ``seconds`` = ``gemm_s`` + ``elementwise_s`` + ``dispatch_s`` (see the module docstring for
    the model).
    ``fused`` says why the bound does not apply (``""`` when it does). Views: ``total``
    (one row) and ``gemm`` (each distinct GEMM shape, its calls, time per call and share).
    """

    VIEWS = ("total", "gemm")

    spec: RecurrentSpec
    workload: Workload
    device: str
    device_name: str
    threads: int
    torch_version: str
    gemms: tuple[GemmShare, ...]
    gemm_s: float
    elementwise_bytes: int
    copy_bandwidth: float
    elementwise_s: float
    gemm_call_count: int
    kernel: str = ""
    fused: str = ""
    math: str = "ieee"
    dispatch_ops: int = 0
    op_s: float = 0.0
    cache_path: str = ""
    cache_notes: tuple[str, ...] = ()
    timed_now: int = 0
    cost: CostResult | None = field(default=None, compare=False)
    #: Seconds per hidden unit and step of a module that runs its recurrence as one scan, measured
    #: on its module (:meth:`~paramcalc.timing.gemm.DeviceTimer.scan_seconds`): the elementwise
    #: term is then that times the unit-steps; 0 for every other module.
    scan_s: float = 0.0

    @property
    def dispatch_s(self) -> float:
        """Seconds of per-operator overhead: ``dispatch_ops`` × ``op_s``."""
        return self.dispatch_ops * self.op_s

    @property
    def seconds(self) -> float:
        return self.gemm_s + self.elementwise_s + self.dispatch_s

    @property
    def bound_applies(self) -> bool:
        return not self.fused

    @property
    def tokens_per_s(self) -> float:
        return self.workload.tokens / self.seconds

    @property
    def mode(self) -> str:
        return self.workload.mode

    def run_record(self) -> dict[str, Any]:
        """This prediction as one entry of a JSON export's ``runs`` (see :mod:`paramcalc.timing.runs`)."""
        return record(self.spec, self.workload, None, self)

    def environment(self) -> dict[str, Any]:
        return environment(self)

    # -- the protocol ------------------------------------------------------------------------
    def _table(self, view: str) -> Table:
        if view == "gemm":
            total = self.seconds
            rows = [
                (
                    ", ".join(g.roles),
                    g.m,
                    g.k,
                    g.n,
                    g.calls,
                    g.seconds_per_call * 1e6,
                    g.seconds * 1e3,
                    100 * g.seconds / total,
                    g.tiles or None,
                    g.noisy,
                )
                for g in self.gemms
            ]
            return Table(GEMM_COLUMNS, tuple(rows))
        values = {
            **key_values(self.spec, self.workload, self.environment()),
            "predicted_ms": self.seconds * 1e3,
            "gemm_ms": self.gemm_s * 1e3,
            "elementwise_ms": self.elementwise_s * 1e3,
            "dispatch_ms": self.dispatch_s * 1e3,
            "tokens_per_s": self.tokens_per_s,
            "gemm_calls": self.gemm_call_count,
            "distinct_gemms": len(self.gemms),
            "bound_applies": self.bound_applies,
        }
        return Table.from_records(TOTAL_COLUMNS, [values])

    def title(self) -> str:
        what = "forward + backward" if self.workload.training else "forward"
        return (
            f"{self.spec.describe()}  [{self.workload.describe()}]: predicted {what} on {self.device} "
            f"({self.device_name}), {plural(self.threads, 'thread')}, torch {self.torch_version}"
        )

    def headline(self) -> str:
        return f"{self.spec.describe()} on {self.device}: {fmt_seconds(self.seconds)} predicted per call"

    def summary(self, view: str | None = None) -> list[str]:
        lines = [
            f"predicted time per call: {fmt_seconds(self.seconds)} = GEMMs {fmt_seconds(self.gemm_s)} "
            f"({plural(self.gemm_call_count, 'call')} of {plural(len(self.gemms), 'distinct shape')}) + "
            "elementwise "
            f"{fmt_seconds(self.elementwise_s)} ({self._elementwise_basis()}) + dispatch "
            f"{fmt_seconds(self.dispatch_s)} "
            f"({plural(self.dispatch_ops, 'operator call')} at {self.op_s * 1e6:.2f} µs); "
            f"{self.tokens_per_s:,.0f} tokens/s",
        ]
        if view != "gemm" and self.gemms:
            top = sorted(self.gemms, key=lambda g: -g.seconds)[:3]
            lines.append(
                "largest shares: "
                + "; ".join(
                    f"{', '.join(g.roles)} ({g.m}, {g.k}, {g.n}) × {g.calls:,}: "
                    f"{100 * g.seconds / self.seconds:.0f}%"
                    for g in top
                )
                + " (`view='gemm'` lists every shape)"
            )
        return lines

    def _elementwise_basis(self) -> str:
        if self.scan_s:
            return f"the scan, {self.scan_s * 1e9:.3g} ns per unit-step measured on its module"
        return f"{fmt_bytes(self.elementwise_bytes)} at {self.copy_bandwidth / 1e9:,.1f} GB/s"

    def notes(self) -> list[str]:
        out = [MODEL_NOTE]
        ran = timing_spec(self.spec)[1]
        if ran:
            out.append(ran.replace("timed as", "predicted for", 1))
        if self.workload.training:
            out.append(
                "training: forward GEMMs + backward dX (M, N, K) and dW (K, M, N) per forward GEMM "
                "(M, K, N), no dX for the layer-0 input nor the first step's recurrent GEMM; "
                "elementwise and dispatch 3 × forward"
            )
        if self.scan_s:
            out.append(
                f"elementwise: the module runs the recurrence as one scan, whose work is measured on its "
                f"module: {self.scan_s * 1e9:.3g} ns per hidden unit and step of a layer and direction, "
                f"{unit_steps(self.spec, self.workload):,} of them (the equations' op count at the copy "
                "bandwidth is not used)"
            )
        if self.fused:
            out.append(self.fused + "; the prediction overestimates it")
        tiled = [g for g in self.gemms if g.tiles]
        if tiled:
            out.append(
                f"{plural(len(tiled), 'shape')} too large to allocate at once "
                f"{'was' if len(tiled) == 1 else 'were'} timed as tiles with the same "
                "MACs (timed_as, `wide=True`): the sum of the tiles' times stands in for one call"
            )
        if self.math == "tf32":
            out.append("fp32 GEMMs timed with TF32 tensor cores, as the kernel is allowed to run them")
        noisy = [g for g in self.gemms if g.noisy]
        if noisy:
            out.append(
                f"{plural(len(noisy), 'GEMM timing')} {'is' if len(noisy) == 1 else 'are'} noisy (IQR "
                "over 10% of the median): is something else "
                "running? a later prediction that needs them times them once more"
            )
        out += list(self.cache_notes)
        return out

    def meta(self) -> dict[str, Any]:
        return {
            "result": "predict",
            "spec": self.spec.to_dict(),
            "workload": self.workload.to_dict(),
            **self.environment(),
            "kernel": self.kernel or None,
            "predicted_s": self.seconds,
            "gemm_s": self.gemm_s,
            "elementwise_s": self.elementwise_s,
            "elementwise_bytes": self.elementwise_bytes,
            "dispatch_s": self.dispatch_s,
            "dispatch_ops": self.dispatch_ops,
            "op_overhead_s": self.op_s,
            "copy_bandwidth_bytes_per_s": self.copy_bandwidth,
            "bound_applies": self.bound_applies,
            "gemm_cache": self.cache_path or None,
            **runs_meta("predict", [self.run_record()]),
        }

    def context(self) -> list[tuple[str, str]]:
        return timed_context(self)


# --- the entry points ------------------------------------------------------------------------


def _props(dev: torch.device) -> tuple[int, int, int] | None:
    import torch

    if dev.type != "cuda":
        return None
    p = torch.cuda.get_device_properties(dev)
    return (int(p.major), int(p.minor), int(p.multi_processor_count))


def expected_kernel(spec: RecurrentSpec, dev: torch.device) -> str:
    """The kernel path a run of ``spec`` is expected to take on ``dev`` without building it.

    ``cuDNN`` for a torch.nn stack on CUDA with cuDNN enabled; ``""`` otherwise (not needed
    by the model: only a cuDNN persistent kernel changes whether the bound applies).
    """
    import torch

    from ..bridge.build import is_torch_native

    if dev.type != "cuda" or spec.cell_type.torch.nn_class is None:
        return ""
    run_spec = timing_spec(spec)[0]
    if (
        is_torch_native(run_spec)
        and spec.cell_type.torch.runner == "stack"
        and torch.backends.cudnn.is_available()  # type: ignore[no-untyped-call]
        and torch.backends.cudnn.enabled
    ):
        return "cuDNN"
    return ""


def math_mode(dtype: str, dev: torch.device, kernel: str) -> str:
    """``tf32`` when fp32 GEMMs of this run may use TF32 tensor cores (CUDA), else ``ieee``."""
    import torch

    if dtype != "fp32" or dev.type != "cuda":
        return "ieee"
    allowed = torch.backends.cudnn.allow_tf32 if kernel == "cuDNN" else torch.backends.cuda.matmul.allow_tf32
    return "tf32" if allowed else "ieee"


@dataclass
class _Plan:
    spec: RecurrentSpec
    workload: Workload
    cost: CostResult
    calls: list[GemmCall]
    requests: dict[tuple[int, int, int], GemmRequest]
    kernel: str
    math: str
    ops: tuple[int, int, int] = (0, 0, 0)
    ops_note: str = ""
    probe: RecurrentSpec | None = None
    bucket_note: str = ""


def _plan(
    spec: RecurrentSpec,
    workload: Workload,
    dev: torch.device,
    kernel: str | None,
    c: CostResult | None = None,
) -> _Plan:
    from ..bridge.devices import torch_dtype

    torch_dtype(workload.dtype)  # int8 and unknown dtypes: one line
    c = c if c is not None else cost(spec, workload)
    calls, bucket_note = bucket_rows(gemm_calls(spec, workload, c), workload)
    k = expected_kernel(spec, dev) if kernel is None else kernel
    mm = math_mode(workload.dtype, dev, k)
    requests = {(g.m, g.k, g.n): GemmRequest(g.m, g.k, g.n, workload.dtype, mm) for g in calls}
    from ..bridge.driver import dispatched_ops

    probe = timing_spec(spec)[0]
    try:
        ops, note = dispatched_ops(probe, workload.dtype, dev), ""
    except Exception as exc:  # a tiny module that cannot run here: the term is left out, said so
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        ops = (0, 0, 0)
        note = f"dispatch overhead left out: the operator calls could not be counted ({first[:120]})"
    from .gemm import runs_once

    timed_probe = probe if ops[2] or (ops[0] and runs_once(probe)) else None
    return _Plan(spec, workload, c, calls, requests, k, mm, ops, note, timed_probe, bucket_note)


def _result(plan: _Plan, timer: DeviceTimer, fused: str) -> PredictResult:
    by_shape: dict[tuple[int, int, int], list[GemmCall]] = {}
    for g in plan.calls:
        by_shape.setdefault((g.m, g.k, g.n), []).append(g)
    shares = []
    for shape, uses in by_shape.items():
        gt = timer.gemm_time(plan.requests[shape])
        roles = tuple(dict.fromkeys(u.role for u in uses))
        shares.append(
            GemmShare(*shape, sum(u.calls for u in uses), roles, gt.seconds, gt.describe_tiles(), gt.noisy)
        )
    c, w = plan.cost, plan.workload
    passes = 3 if w.training else 1
    ew_bytes = passes * (c.bias_ops + c.elementwise_ops) * 2 * w.dtype_bytes
    bw = timer.copy_bandwidth()
    scan_s = _scan_seconds(plan, timer)
    once, per_step, _ = plan.ops
    dispatch_ops = passes * (once + w.steps * per_step)
    notes = [n for n in (timer.cache_problem, timer.write_problem, plan.ops_note, plan.bucket_note) if n]
    keys = [timer.gemm_key(r, t) for r in plan.requests.values() for t in timer.tiles(r)]
    op_s = timer.op_seconds(plan.probe, w.dtype)
    if scan_s and plan.probe is not None:
        keys.append(timer.scan_key(plan.probe, w.dtype, w.training))
    notes += timer.suspect_notes([*keys, timer.copy_key, timer.op_key(plan.probe, w.dtype)[0]])
    if not timer.use_cache:
        notes.append("no GEMM cache: every shape was timed for this prediction")
    return PredictResult(
        spec=plan.spec,
        workload=w,
        device=str(timer.dev),
        device_name=timer.device_name,
        threads=timer.host_threads(),
        torch_version=timer.torch_version,
        gemms=tuple(shares),
        gemm_s=sum(s.seconds for s in shares),
        elementwise_bytes=ew_bytes,
        copy_bandwidth=bw,
        elementwise_s=scan_s * unit_steps(plan.spec, w) if scan_s else ew_bytes / bw,
        gemm_call_count=sum(g.calls for g in plan.calls),
        kernel=plan.kernel,
        fused=fused,
        math=plan.math,
        dispatch_ops=dispatch_ops,
        op_s=op_s,
        cache_path=str(timer.path) if timer.use_cache else "",
        cache_notes=tuple(notes),
        timed_now=timer.timed,
        cost=c,
        scan_s=scan_s,
    )


def unit_steps(spec: RecurrentSpec, workload: Workload) -> int:
    """Hidden units × real steps × layers × directions: what a scan's elementwise work scales with."""
    return spec.hidden_size * workload.tokens * spec.num_layers * spec.num_directions


def _scan_seconds(plan: _Plan, timer: DeviceTimer) -> float:
    """Seconds per unit-step of a module that runs its recurrence as one scan (0: not one)."""
    from .gemm import runs_once

    probe = plan.probe
    if probe is None or not runs_once(probe):
        return 0.0
    w = plan.workload
    return timer.scan_seconds(probe, w.dtype, w.training)


def make_timer(
    device: str | torch.device = "cpu",
    *,
    threads: int | None = None,
    min_run_time: float = DEFAULT_GEMM_MIN_RUN_TIME,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    refresh: bool = False,
    verify: bool = True,
) -> DeviceTimer:
    """A :class:`~paramcalc.timing.gemm.DeviceTimer` to share between predictions (``verify``:
    check the cached timings it uses against the device now, see :mod:`paramcalc.timing.gemm`)."""
    from .gemm import DeviceTimer

    return DeviceTimer(
        device,
        threads=threads,
        min_run_time=min_run_time,
        folder=cache_dir,
        cache=cache,
        refresh=refresh,
        verify=verify,
    )


def predict_many(
    pairs: Iterable[tuple[RecurrentSpec, Workload]],
    device: str | torch.device = "cpu",
    *,
    threads: int | None = None,
    min_run_time: float = DEFAULT_GEMM_MIN_RUN_TIME,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    timer: DeviceTimer | None = None,
    kernels: Sequence[str | None] | None = None,
    on_timed: Callable[[int, int], None] | None = None,
    refresh: bool = False,
    costs: Sequence[CostResult | None] | None = None,
) -> list[PredictResult]:
    """Predict every ``(spec, workload)``, timing each distinct GEMM shape once for all of them.

    The union of the shapes is timed first (``on_timed(done, total)`` after each: a progress
    bar), then every prediction is read from the timings. ``kernels``: the measured kernel
    path of each pair (``None``: expected from the spec and device). ``costs``: the cost
    model's result of each pair where the caller has it (not computed again).
    """
    timer = timer or make_timer(
        device, threads=threads, min_run_time=min_run_time, cache=cache, cache_dir=cache_dir, refresh=refresh
    )
    pairs = list(pairs)
    ks = list(kernels) if kernels is not None else [None] * len(pairs)
    cs = list(costs) if costs is not None else [None] * len(pairs)
    if len(ks) != len(pairs) or len(cs) != len(pairs):
        raise ParamcalcError("give one kernel path and one cost per configuration")
    plans = [
        _plan(as_spec(s, "predict"), _workload(w), timer.dev, k, c)
        for (s, w), k, c in zip(pairs, ks, cs, strict=True)
    ]
    timer.ensure((r for p in plans for r in p.requests.values()), on_timed)
    timer.copy_bandwidth()
    props = _props(timer.dev)
    return [_result(p, timer, fused_reason(p.spec, p.workload, p.kernel, props)) for p in plans]


def predict(
    spec: RecurrentSpec,
    workload: Workload | None = None,
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    min_run_time: float = DEFAULT_GEMM_MIN_RUN_TIME,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    timer: DeviceTimer | None = None,
    kernel: str | None = None,
    on_timed: Callable[[int, int], None] | None = None,
    refresh: bool = False,
    cost_result: CostResult | None = None,
) -> PredictResult:
    """Predict the time of one call of ``spec`` on ``workload`` without building the model.

    Each distinct GEMM shape of the cost model's list is timed alone on ``device`` (once per
    device, dtype, thread count and torch version: the timings are cached in
    :func:`paramcalc.timing.gemm.cache_dir` unless ``cache=False``; ``refresh=True`` times
    every shape again and replaces its cached timing); ``min_run_time`` is the seconds of timing
    per shape; ``cost_result``: the cost model's result for ``spec`` and ``workload`` when the
    caller has it. See the module docstring for the model.

    >>> import paramcalc as pc
    >>> r = pc.predict(pc.RecurrentSpec("lstm", 28, 256, num_layers=2), pc.Workload(64, 28))
    >>> r.seconds > 0, r.VIEWS
    (True, ('total', 'gemm'))
    """
    return predict_many(
        [(spec, workload if workload is not None else Workload())],
        device,
        threads=threads,
        min_run_time=min_run_time,
        cache=cache,
        cache_dir=cache_dir,
        timer=timer,
        kernels=[kernel],
        on_timed=on_timed,
        refresh=refresh,
        costs=[cost_result],
    )[0]


def _workload(w: Any) -> Workload:
    if not isinstance(w, Workload):
        raise ParamcalcError(f"predict needs a Workload, got {type(w).__name__}")
    return w
