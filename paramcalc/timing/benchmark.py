"""Timed throughput of a real recurrent module on a device (the torch edge of paramcalc).

:func:`bench` builds the ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (or cell) of a spec on a device, seeded,
and times it with :class:`torch.utils.benchmark.Timer`:

* **what is timed**: inference is one forward pass in ``eval()`` mode under
  ``torch.inference_mode()``; training (``Workload(mode="training")``) is
  ``zero_grad(set_to_none=True)`` + forward + ``sum().backward()`` in ``train()`` mode. A
  single-step cell (``nn.LSTMCell`` ...) is stepped ``seq_len`` times in a Python loop, as it is
  used.
* **how**: a warm-up (at least :data:`WARMUP_CALLS` calls and :data:`WARMUP_SECONDS`), then
  ``Timer.blocked_autorange`` (block size chosen so timer overhead is negligible) for at least
  ``min_run_time`` seconds and :data:`MIN_RUNS` blocks. The timer synchronises the device (CUDA,
  MPS) before reading the clock, so queued kernels are counted. Median and interquartile range
  are over the per-call times of the blocks.
* **the practical roofline**: a plain GEMM of the recurrent shape, ``h @ W_hhᵀ`` with ``h``
  ``(B, R)`` and ``W_hh`` stored ``(G·Dh, R)`` as PyTorch stores it (``R`` = ``proj_size`` or
  ``Dh``), in the same dtype, timed on the same device in the same run. ``efficiency`` is the
  recurrent module's achieved FLOP/s over that GEMM's FLOP/s; the GEMM's FLOPs are
  ``2·B·R·G·Dh`` (one multiply-add = two FLOPs). The module's FLOPs come from the cost model
  (:func:`paramcalc.cost.cost`), under its stated convention. Efficiency can exceed 100%: fused
  kernels (oneDNN, cuDNN) run the input projection of all steps as one large GEMM, faster
  per FLOP than the small per-step GEMM, and may use faster GEMM code than ``torch.mm``.
* **safety**: before anything is allocated the memory the run needs is estimated from the cost
  model (times :data:`MEMORY_HEADROOM`) and compared with what the device has free; an
  out-of-memory error during the run becomes a one-line :class:`ParamcalcError`.

``import paramcalc`` does not import this module; ``paramcalc.bench`` is loaded on first use.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ParamcalcError
from .spec import RecurrentSpec
from .torch_bridge import DTYPES, build_module, resolve_device, torch_equivalent

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch
    from torch.utils.benchmark import Measurement

    from .cost import CostResult, Workload

#: Smallest number of timed blocks behind a median and an IQR.
MIN_RUNS = 5
#: Default seconds of timing per measurement (module, then GEMM).
DEFAULT_MIN_RUN_TIME = 0.5
#: Warm-up: at least this many calls and this many seconds before timing starts.
WARMUP_CALLS = 3
WARMUP_SECONDS = 0.05
#: An IQR above this fraction of the median marks a measurement as noisy.
NOISY_IQR = 0.1
#: The memory estimate is multiplied by this before it is compared with what is free
#: (allocator rounding, library workspaces, the framework's own buffers).
MEMORY_HEADROOM = 1.2

#: aten operator seen during a forward -> the kernel path it belongs to (first match wins).
KERNEL_PATHS: dict[str, str] = {
    "_cudnn_rnn": "cuDNN",
    "miopen_rnn": "MIOpen",
    "mkldnn_rnn_layer": "oneDNN",
    "mkldnn_rnn": "oneDNN",
    "_lstm_mps": "MPS",
    "_thnn_fused_lstm_cell": "native (fused CUDA cell)",
    "_thnn_fused_gru_cell": "native (fused CUDA cell)",
}
NATIVE_PATH = "native (ATen matmul + pointwise)"


# --- dtypes, devices, memory -------------------------------------------------------------


def torch_dtype(name: str) -> torch.dtype:
    """The ``torch.dtype`` of a paramcalc dtype name (``fp32``, ``fp16``, ``bf16``); int8 is refused."""
    import torch

    key = str(name).strip().lower()
    if key not in DTYPES:
        raise ParamcalcError(f"unknown dtype {name!r}: expected one of {', '.join(DTYPES)}")
    if key == "int8":
        raise ParamcalcError(
            "dtype int8 cannot be timed: torch.nn recurrent modules have only floating-point kernels "
            "(int8 needs a quantized model, e.g. torch.ao.quantization); use fp32, fp16 or bf16"
        )
    return getattr(torch, DTYPES[key])


def timing_device(device: str | torch.device) -> torch.device:
    """Resolve ``device`` (one-line error if absent) and refuse ``meta``, which cannot be timed."""
    dev = resolve_device(device) if isinstance(device, str) else device
    if dev.type == "meta":
        raise ParamcalcError("the meta device holds no data and cannot be timed: use cpu, cuda or mps")
    return dev


def device_name(dev: torch.device) -> str:
    """A human name for the device: the CPU model, the CUDA device name, or Apple's MPS."""
    import torch

    if dev.type == "cuda":
        return str(torch.cuda.get_device_name(dev))
    if dev.type == "mps":
        return "Apple GPU (MPS)"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def available_bytes(dev: torch.device) -> int | None:
    """Bytes the device can still allocate, or ``None`` when it cannot be told.

    CPU: ``MemAvailable`` from ``/proc/meminfo``, else ``os.sysconf`` available pages. CUDA: the
    free memory from ``torch.cuda.mem_get_info``. MPS: the recommended working set minus what the
    driver already holds.
    """
    import torch

    if dev.type == "cuda":
        return int(torch.cuda.mem_get_info(dev)[0])
    if dev.type == "mps":
        mps = getattr(torch, "mps", None)
        try:
            return int(mps.recommended_max_memory() - mps.driver_allocated_memory())  # type: ignore[union-attr]
        except (AttributeError, RuntimeError):
            return None
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def gemm_shape(spec: RecurrentSpec, batch: int) -> tuple[int, int, int]:
    """``(M, K, N)`` of the recurrent GEMM ``h_{t-1} @ W_hhᵀ``: ``(B, R, G·Dh)``."""
    return batch, spec.proj_size or spec.hidden_size, spec.gates * spec.hidden_size


def memory_needed(spec: RecurrentSpec, workload: Workload, cost_result: CostResult | None = None) -> int:
    """Bytes a timed run needs: the cost model's inference or training bytes plus the GEMM operands."""
    from .cost import cost

    c = cost_result or cost(spec, workload)
    base = c.training_bytes if workload.training else c.inference_bytes
    nb = workload.dtype_bytes
    m, k, n = gemm_shape(spec, workload.batch)
    extra = m * k + k * n + m * n
    if spec.cell_type.single_step:  # the cost model holds one step's input; the run holds all
        extra += workload.seq_len * workload.batch * spec.input_size
    return int(base + extra * nb)


def check_memory(
    spec: RecurrentSpec, workload: Workload, device: str | torch.device, cost_result: CostResult | None = None
) -> int:
    """Refuse (one line) if ``device`` cannot hold the run; return the estimated bytes needed."""
    dev = timing_device(device)
    need = memory_needed(spec, workload, cost_result)
    free = available_bytes(dev)
    if free is not None and need * MEMORY_HEADROOM > free:
        raise ParamcalcError(
            f"not enough memory on {dev} for {spec.describe()} with batch {workload.batch}, "
            f"seq_len {workload.seq_len}: the run needs about {_human_bytes(need)} "
            f"(+{round(100 * (MEMORY_HEADROOM - 1))}% headroom), {_human_bytes(free)} is available; "
            "use a smaller batch, sequence length or hidden size"
        )
    return need


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


# --- building the case ---------------------------------------------------------------------


def make_case(
    spec: RecurrentSpec,
    workload: Workload,
    device: str | torch.device = "cpu",
    *,
    seed: int = 0,
) -> tuple[torch.nn.Module, Any]:
    """The seeded module and input a run times: the same seed gives the same weights and data.

    Stacks get a ``(seq_len, batch, input_size)`` tensor (PyTorch's default layout), or a
    ``PackedSequence`` when the workload has per-sequence ``lengths``; cells get the same tensor
    and are stepped over its first dimension. The caller's global RNG state is left untouched.
    """
    import torch

    dev = timing_device(device)
    dtype = torch_dtype(workload.dtype)
    lengths, steps, batch = workload.lengths, workload.seq_len, workload.batch
    fork_devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices, device_type="cuda" if dev.type == "cuda" else "cpu"):
        torch.manual_seed(seed)
        module = build_module(spec, dev, dtype)
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(steps, batch, spec.input_size, generator=gen, dtype=torch.float32)
        x = x.to(device=dev, dtype=dtype)
    if lengths and not spec.cell_type.single_step:
        from torch.nn.utils.rnn import pack_padded_sequence

        x = pack_padded_sequence(x, torch.tensor(lengths, dtype=torch.int64), enforce_sorted=False)
    return module, x


def _statement(
    spec: RecurrentSpec, module: torch.nn.Module, x: Any, train: bool
) -> tuple[str, dict[str, Any], Callable[[], Any]]:
    """The timed statement (as Timer source and as a callable for the warm-up)."""
    if spec.cell_type.single_step:

        def step_cell() -> Any:
            h = None
            for t in range(x.shape[0]):
                h = module(x[t], h)
            return h

        if not train:
            return "step()", {"step": step_cell}, step_cell

        def train_cell() -> None:
            module.zero_grad(set_to_none=True)
            h = step_cell()
            (h[0] if isinstance(h, tuple) else h).float().sum().backward()

        return "step()", {"step": train_cell}, train_cell

    if not train:
        # The bare statement: nothing but the module's own forward is inside the timed loop.
        return "module(x)", {"module": module, "x": x}, lambda: module(x)

    def train_stack() -> None:
        module.zero_grad(set_to_none=True)
        out = module(x)[0]
        (out.data if hasattr(out, "batch_sizes") else out).float().sum().backward()

    return "step()", {"step": train_stack}, train_stack


def kernel_ops(spec: RecurrentSpec, module: torch.nn.Module, x: Any, train: bool) -> tuple[str, ...]:
    """The aten operators one (one-step) forward dispatches to, recorded with a dispatch mode.

    Recorded outside ``inference_mode`` (which hides the decomposition of ``aten::lstm``) but
    with the same module, device, dtype and batch, so the same kernel is chosen.
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Record(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            name = str(func.overloadpacket).split(".", 1)[-1]
            if name not in self.ops:
                self.ops.append(name)
            return func(*args, **(kwargs or {}))

    probe = x if hasattr(x, "batch_sizes") else x[:1]
    grad = torch.enable_grad() if train else torch.no_grad()
    with grad, _Record() as rec:
        if spec.cell_type.single_step:
            module(probe[0])
        else:
            module(probe)
    return tuple(rec.ops)


def kernel_path(ops: tuple[str, ...] | list[str]) -> str:
    """Name the kernel path from the recorded operators (see :data:`KERNEL_PATHS`)."""
    for op, path in KERNEL_PATHS.items():
        if op in ops:
            return path
    return NATIVE_PATH


# --- timing --------------------------------------------------------------------------------


def _timer_for(dev: torch.device) -> Callable[[], float]:
    """A clock that first waits for the device's queued work (CUDA, MPS)."""
    import torch

    if dev.type == "cuda":

        def cuda_timer() -> float:
            torch.cuda.synchronize(dev)
            return time.perf_counter()

        return cuda_timer
    if dev.type == "mps":

        def mps_timer() -> float:
            torch.mps.synchronize()
            return time.perf_counter()

        return mps_timer
    return time.perf_counter


@contextlib.contextmanager
def _num_threads(n: int) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _warmup(fn: Callable[[], Any], clock: Callable[[], float]) -> int:
    calls, start = 0, clock()
    while calls < WARMUP_CALLS or clock() - start < WARMUP_SECONDS:
        fn()
        calls += 1
    return calls


def measure(
    stmt: str,
    globals_: dict[str, Any],
    dev: torch.device,
    *,
    threads: int,
    min_run_time: float,
    label: str = "",
    sub_label: str = "",
    description: str = "",
) -> Measurement:
    """``Timer(stmt).blocked_autorange(min_run_time)``, topped up to :data:`MIN_RUNS` blocks."""
    from torch.utils.benchmark import Measurement, Timer

    timer = Timer(
        stmt,
        globals=globals_,
        timer=_timer_for(dev),
        num_threads=threads,
        label=label,
        sub_label=sub_label,
        description=description,
    )
    m = timer.blocked_autorange(min_run_time=min_run_time)
    raw = list(m.raw_times)
    while len(raw) < MIN_RUNS:
        raw.extend(timer.timeit(m.number_per_run).raw_times)
    if len(raw) == len(m.raw_times):
        return m
    return Measurement(m.number_per_run, raw, m.task_spec, m.metadata)


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("out of memory", "can't allocate memory", "not enough memory", "alloc_cpu")
    )


def _probe_dtype(spec: RecurrentSpec, dev: torch.device, dtype: torch.dtype, name: str, train: bool) -> None:
    """Run a tiny module of the same type in ``dtype`` on ``dev``; a missing kernel is one line."""
    import torch

    tiny = torch_equivalent(spec).replace(input_size=2, hidden_size=2, num_layers=1, proj_size=0)
    try:
        m = build_module(tiny, dev, dtype)
        x = torch.zeros(1, 1, 2, device=dev, dtype=dtype)
        with torch.enable_grad() if train else torch.no_grad():
            out = m(x[0]) if tiny.cell_type.single_step else m(x)[0]
            if train:
                (out[0] if isinstance(out, tuple) else out).float().sum().backward()
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ParamcalcError(
            f"dtype {name} is not supported for {spec.cell_type.torch_class} on {dev} by torch "
            f"{torch.__version__}: {detail}"
        ) from None


# --- the result ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchResult:
    """A timed run; like torch.utils.benchmark's ``Measurement`` it carries what was measured.

    Times are seconds per call (one forward, or forward+backward when ``train``).
    """

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
    gemm_shape: tuple[int, int, int]
    gemm_median_s: float
    gemm_iqr_s: float
    measurement: Measurement | None = field(default=None, repr=False, compare=False)
    gemm_measurement: Measurement | None = field(default=None, repr=False, compare=False)

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
    def gemm_flops(self) -> int:
        m, k, n = self.gemm_shape
        return 2 * m * k * n

    @property
    def gemm_flop_per_s(self) -> float:
        return self.gemm_flops / self.gemm_median_s

    @property
    def efficiency(self) -> float:
        """Achieved FLOP/s over the recurrent-shape GEMM's FLOP/s (the practical roofline)."""
        return self.flop_per_s / self.gemm_flop_per_s

    @property
    def noisy(self) -> bool:
        """True when the IQR exceeds :data:`NOISY_IQR` of the median (a busy machine?)."""
        return self.iqr_s > NOISY_IQR * self.median_s

    @property
    def mode(self) -> str:
        return "training" if self.train else "inference"

    # -- rendering ----------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """One wide row (seconds as ms, rates per second; measured floats to 4 significant digits)."""
        m, k, n = self.gemm_shape
        return {
            "spec": self.spec.describe(),
            "cell": self.spec.cell,
            "hidden_size": self.spec.hidden_size,
            "batch": self.batch,
            "seq_len": self.workload.seq_len,
            "dtype": self.dtype,
            "mode": self.mode,
            "device": self.device,
            "device_name": self.device_name,
            "threads": self.threads,
            "kernel": self.kernel_path,
            "torch": self.torch_version,
            "runs": len(self.times),
            "calls_per_run": self.number_per_run,
            "time_ms": sig(self.median_s * 1e3),
            "iqr_ms": sig(self.iqr_s * 1e3),
            "tokens_per_s": rate(self.tokens_per_s),
            "sequences_per_s": rate(self.sequences_per_s),
            "flops": self.flops,
            "gflop_per_s": sig(self.flop_per_s / 1e9),
            "gemm": f"({m}x{k})@({k}x{n})",
            "gemm_gflop_per_s": sig(self.gemm_flop_per_s / 1e9),
            "efficiency_%": sig(100 * self.efficiency),
            "memory_estimate_bytes": self.memory_estimate,
        }

    def records(self) -> list[dict[str, Any]]:
        return [self.record()]

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.records())

    def environment(self) -> dict[str, Any]:
        """Where the run happened (for a table's header or a JSON export's meta)."""
        return {
            "device": self.device,
            "device_name": self.device_name,
            "threads": self.threads,
            "torch": self.torch_version,
        }

    def summary(self) -> list[dict[str, str]]:
        """Quantity/value rows for a terminal."""
        m, k, n = self.gemm_shape
        what = "forward + backward" if self.train else "forward (eval, inference_mode)"
        runs = f"{len(self.times)} runs x {self.number_per_run} calls"
        gemm = f"(({m}x{k})@({k}x{n}), {_ms(self.gemm_median_s)})"
        rows = [
            ("timed call", f"{what}, batch {self.batch}, seq_len {self.workload.seq_len}"),
            ("time per batch (median ± IQR)", f"{_ms(self.median_s)} ± {_ms(self.iqr_s)}  ({runs})"),
            ("tokens/s", f"{self.tokens_per_s:,.0f}"),
            ("sequences/s", f"{self.sequences_per_s:,.1f}"),
            ("FLOPs per call (cost model)", f"{self.flops:,}"),
            ("achieved", f"{self.flop_per_s / 1e9:,.2f} GFLOP/s"),
            ("GEMM roofline", f"{self.gemm_flop_per_s / 1e9:,.2f} GFLOP/s  {gemm}"),
            ("efficiency vs GEMM", f"{100 * self.efficiency:.1f} %"),
            ("kernel path", self.kernel_path),
            ("memory estimate", _human_bytes(self.memory_estimate)),
            ("device", f"{self.device} ({self.device_name}), {self.dtype}"),
            ("threads", str(self.threads)),
            ("torch", self.torch_version),
        ]
        return [{"quantity": q, "value": v} for q, v in rows]


def rate(x: float) -> float | int:
    """A measured rate for a table: 4 significant digits, an int from 1,000 up (for readability)."""
    r = sig(x)
    return int(r) if abs(r) >= 1000 else r


def sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (measured values carry no more)."""
    if x == 0 or x != x:
        return x
    from math import floor, log10

    return round(x, digits - 1 - floor(log10(abs(x))))


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.4g} ms" if ms >= 0.01 else f"{seconds * 1e6:.4g} µs"


# --- the entry point -----------------------------------------------------------------------


def bench(
    spec: RecurrentSpec,
    workload: Workload | None = None,
    *,
    device: str | torch.device = "cpu",
    threads: int | None = None,
    min_run_time: float = DEFAULT_MIN_RUN_TIME,
    seed: int = 0,
) -> BenchResult:
    """Time ``spec``'s real module on ``device`` for ``workload`` (batch, seq_len, dtype, mode).

    >>> from paramcalc.cost import Workload
    >>> spec = RecurrentSpec("lstm", 28, 256, num_layers=2)
    >>> r = bench(spec, Workload(batch=64, seq_len=28))  # doctest: +SKIP
    >>> r.kernel_path, r.tokens == 64 * 28  # doctest: +SKIP
    ('oneDNN', True)

    Raises :class:`ParamcalcError` (one line) for an absent device, a dtype the device cannot
    run, a run that does not fit in memory, or an out-of-memory error during the run.
    """
    import torch

    from .cost import Workload, cost

    if not isinstance(spec, RecurrentSpec):
        raise ParamcalcError(f"bench needs a RecurrentSpec, got {type(spec).__name__}")
    workload = workload if workload is not None else Workload()
    if not (isinstance(min_run_time, (int, float)) and 0 < min_run_time <= 600):
        raise ParamcalcError(f"min_run_time must be in (0, 600] seconds, got {min_run_time!r}")
    dev = timing_device(device)
    dtype = torch_dtype(workload.dtype)
    train = workload.training
    if threads is None:
        threads = torch.get_num_threads()
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ParamcalcError(f"threads must be a positive integer, got {threads!r}")
    c = cost(spec, workload)
    need = check_memory(spec, workload, dev, c)  # before anything is allocated
    _probe_dtype(spec, dev, dtype, str(workload.dtype), train)

    label = f"{spec.describe()} {workload.dtype} {'train' if train else 'inference'}"
    sub = f"B={workload.batch} T={workload.seq_len}"
    module = x = a = b = out = None
    try:
        with _num_threads(threads), warnings.catch_warnings():
            # e.g. "LSTM with projections is not supported with oneDNN": kernel_path says so
            warnings.filterwarnings(
                "ignore", message=".*not supported with (oneDNN|cuDNN)", category=UserWarning
            )
            module, x = make_case(spec, workload, dev, seed=seed)
            module.train(train)
            ops = kernel_ops(spec, module, x, train)
            stmt, globals_, fn = _statement(spec, module, x, train)
            clock = _timer_for(dev)
            ctx = contextlib.nullcontext() if train else torch.inference_mode()
            with ctx:
                _warmup(fn, clock)
                meas = measure(
                    stmt,
                    globals_,
                    dev,
                    threads=threads,
                    min_run_time=min_run_time,
                    label=label,
                    sub_label=sub,
                    description=spec.cell,
                )
            # The practical roofline: the recurrent GEMM, same dtype, device and run.
            m, k, n = gemm_shape(spec, workload.batch)
            gen = torch.Generator().manual_seed(seed + 1)
            a = torch.randn(m, k, generator=gen).to(dev, dtype)
            # W_hh as PyTorch stores it, (G·Dh, R), used transposed: h @ W_hhᵀ, as the module does
            b = torch.randn(n, k, generator=gen).to(dev, dtype).t()
            out = torch.empty(m, n, device=dev, dtype=dtype)
            gemm_globals = {"torch": torch, "a": a, "b": b, "out": out}
            with torch.inference_mode():
                _warmup(lambda: torch.mm(a, b, out=out), clock)
                gmeas = measure(
                    "torch.mm(a, b, out=out)",
                    gemm_globals,
                    dev,
                    threads=threads,
                    min_run_time=min_run_time,
                    label=label,
                    sub_label=sub,
                    description="gemm",
                )
    except ParamcalcError:
        raise
    except Exception as exc:
        if not _is_oom(exc):
            raise
        del module, x, a, b, out
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        raise ParamcalcError(
            f"out of memory timing {spec.describe()} with batch {workload.batch}, seq_len "
            f"{workload.seq_len} on {dev}: use a smaller batch, sequence length or hidden size"
        ) from None

    return BenchResult(
        spec=spec,
        workload=workload,
        cost=c,
        device=str(dev),
        device_name=device_name(dev),
        dtype=str(workload.dtype),
        train=train,
        threads=threads,
        kernel_path=kernel_path(ops),
        kernel_ops=ops,
        torch_version=str(torch.__version__),
        seed=seed,
        memory_estimate=need,
        times=tuple(meas.times),
        median_s=float(meas.median),
        iqr_s=float(meas.iqr),
        number_per_run=int(meas.number_per_run),
        gemm_shape=(m, k, n),
        gemm_median_s=float(gmeas.median),
        gemm_iqr_s=float(gmeas.iqr),
        measurement=meas,
        gemm_measurement=gmeas,
    )
