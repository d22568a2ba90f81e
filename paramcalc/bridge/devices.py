"""Devices, dtypes and memory: the one place paramcalc asks torch what a device is and can hold.

* :func:`resolve_device` maps what the user typed (``cpu``, ``meta``, ``cuda``, ``cuda:N``,
  ``mps``) onto an available ``torch.device``, or a one-line error.
* :func:`torch_dtype` maps paramcalc's dtype names (``fp32``, ``fp16``, ``bf16``) onto torch's.
* :func:`available_bytes` is the one free-memory reader (``MemAvailable`` on Linux CPUs,
  ``mem_get_info`` on CUDA, the recommended working set on MPS).
* :func:`oom_as_error` is the one translation of an allocation failure into a one-line
  :class:`~paramcalc.errors.ParamcalcError`.
* :func:`check_run_memory` refuses a run the memory model (:mod:`paramcalc.core.memory`) says
  the device cannot hold; :func:`peak_memory` measures the peak a block of work really held.
* :func:`cuda_setup` gives the CUDA memory model the device's facts and the cuDNN calibration
  cached for it (:mod:`paramcalc.bridge.calibration`); :func:`run_memory_model` is the model of a
  run on a device with them.

torch is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ParamcalcError
from ..results.text import plural

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..core.memory import CudaSetup, MemoryModel

_DEVICE_RE = re.compile(r"^(cpu|meta|mps|cuda)(?::(\d{1,4}))?$")

#: paramcalc dtype name -> torch attribute name.
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "int8"}


def resolve_device(name: str | torch.device) -> torch.device:
    """Map ``cpu``, ``meta``, ``cuda``, ``cuda:N`` or ``mps`` onto an available ``torch.device``.

    Raises :class:`ParamcalcError` (one line) when the name is unknown or the device is absent.
    """
    import torch

    if isinstance(name, torch.device):
        return name
    if not isinstance(name, str):
        raise ParamcalcError(
            f"device must be a name like cpu, meta, cuda:0 or mps, got {type(name).__name__}"
        )
    text = name.strip().lower()
    m = _DEVICE_RE.match(text)
    if not m:
        shown = name if len(name) <= 40 else name[:37] + "..."
        raise ParamcalcError(f"unknown device {shown!r}: expected cpu, meta, cuda, cuda:N or mps")
    kind, index = m.group(1), m.group(2)
    if kind in ("cpu", "meta"):
        if index not in (None, "0"):
            raise ParamcalcError(f"device {name!r} does not exist: {kind} has no index {index}")
        return torch.device(kind)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ParamcalcError(f"device {name!r} is not available: this torch sees no CUDA device")
        count = torch.cuda.device_count()
        i = int(index or 0)
        if i >= count:
            raise ParamcalcError(
                f"device {name!r} is not available: only {plural(count, 'CUDA device')} "
                f"(cuda:0..cuda:{count - 1})"
            )
        return torch.device("cuda", i)
    if index not in (None, "0"):
        raise ParamcalcError(f"device {name!r} does not exist: mps has only index 0")
    if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ParamcalcError(f"device {name!r} is not available: MPS needs Apple silicon with macOS 12.3+")
    return torch.device("mps")


def timing_device(device: str | torch.device) -> torch.device:
    """Resolve ``device`` and refuse ``meta``, which holds no data and cannot be timed."""
    dev = resolve_device(device)
    if dev.type == "meta":
        raise ParamcalcError("the meta device holds no data and cannot be timed: use cpu, cuda or mps")
    return dev


def torch_dtype(name: str) -> torch.dtype:
    """The ``torch.dtype`` of ``fp32``, ``fp16`` or ``bf16``; ``int8`` is refused (no int8 RNN kernels)."""
    import torch

    key = str(name).strip().lower()
    if key not in DTYPES:
        raise ParamcalcError(f"unknown dtype {name!r}: expected one of {', '.join(DTYPES)}")
    if key == "int8":
        raise ParamcalcError(
            "dtype int8 cannot be run: torch.nn recurrent modules have only floating-point kernels "
            "(int8 needs a quantized model, e.g. torch.ao.quantization); use fp32, fp16 or bf16"
        )
    return getattr(torch, DTYPES[key])  # type: ignore[no-any-return]


def element_size(dtype: torch.dtype | None) -> int:
    import torch

    return torch.empty((), dtype=dtype or torch.get_default_dtype(), device="meta").element_size()


def device_name(dev: torch.device) -> str:
    """A human name: the CPU model, the CUDA device's name, or Apple's MPS."""
    import torch

    if dev.type == "cuda":
        return str(torch.cuda.get_device_name(dev))
    if dev.type == "mps":
        return "Apple GPU (MPS)"
    with contextlib.suppress(OSError, UnicodeDecodeError):
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "CPU"


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def other_load(samples: int = 3, gap_s: float = 0.001) -> float | None:
    """Tasks of other processes ready to run on the CPUs right now, or ``None`` when it cannot be told.

    Linux: the running-task count of ``/proc/loadavg`` (its fourth field, ``running/total``,
    which counts the reader too) minus this process's own running threads
    (``/proc/self/task/*/stat``), the low median of ``samples`` reads ``gap_s`` apart (a count,
    never a mean of two): a CPU-bound process is always running, a passing task rarely.
    Elsewhere: the one-minute load average less one for this process.
    """
    import statistics
    import time

    reads = []
    for i in range(samples):
        if i:
            time.sleep(gap_s)
        n = _running_elsewhere()
        if n is None:
            break
        reads.append(n)
    if reads:
        return float(statistics.median_low(reads))
    try:
        return max(0.0, os.getloadavg()[0] - 1)
    except (AttributeError, OSError):  # pragma: no cover - no load average at all
        return None


def _running_elsewhere() -> int | None:
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            running = int(fh.read().split()[3].split("/")[0])
        own = 0
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/stat", encoding="ascii") as fh:
                own += fh.read().rpartition(")")[2].split()[0] == "R"
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - own)


def available_bytes(dev: torch.device) -> int | None:
    """Bytes the device can still allocate, or ``None`` when it cannot be told.

    CPU: ``MemAvailable`` from ``/proc/meminfo``, else ``os.sysconf`` available pages. CUDA: the
    free memory from ``torch.cuda.mem_get_info``. MPS: the recommended working set minus what
    the driver already holds. Meta: ``None`` (it allocates nothing).
    """
    import torch

    if dev.type == "meta":
        return None
    if dev.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(dev)[0])
        except RuntimeError:  # pragma: no cover - driver quirks
            return None
    if dev.type == "mps":
        mps = getattr(torch, "mps", None)
        try:
            return int(mps.recommended_max_memory() - mps.driver_allocated_memory())  # type: ignore[union-attr]
        except (AttributeError, RuntimeError):
            return None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def ensure_fits(numel: int, dev: torch.device, dtype: torch.dtype | None, what: str) -> None:
    """Refuse (one line) to allocate ``numel`` parameters that cannot fit on ``dev``."""
    if dev.type == "meta":
        return
    need = numel * element_size(dtype)
    free = available_bytes(dev)
    if free is not None and need > free:
        raise ParamcalcError(
            f"{what} needs {human_bytes(need)} of parameters but {dev} has {human_bytes(free)} free; "
            "use `device='meta'`, which allocates no memory"
        )


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (any device, any allocator's wording)."""
    if isinstance(exc, MemoryError):
        return True
    torch = __import__("sys").modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        s in text
        for s in (
            "out of memory",
            "can't allocate memory",
            "not enough memory",
            "alloc_cpu",
            "storage size calculation overflowed",
            "numel: integer multiplication overflow",
        )
    )


@contextlib.contextmanager
def oom_as_error(
    what: str, dev: Any, hint: str = "use a smaller batch, sequence length or hidden size"
) -> Iterator[None]:
    """Turn an allocation failure inside the block into a one-line :class:`ParamcalcError`."""
    try:
        yield
    except ParamcalcError:
        raise
    except Exception as exc:
        if not is_oom(exc):
            raise
        torch = __import__("sys").modules.get("torch")
        if torch is not None and getattr(dev, "type", "") == "cuda":
            torch.cuda.empty_cache()
        raise ParamcalcError(f"out of memory {what} on {dev}: {hint}") from None


#: The memory model's peak is multiplied by this before it is compared with what is free: what
#: the model leaves out (the allocator's rounding and retention, library caches, the first
#: call's one-time buffers) stays within it on the runs measured in docs/memory.md.
MEMORY_HEADROOM = 1.2


def run_memory_needed(spec: Any, workload: Any, dev: Any = None, *, fused: bool = True) -> int:
    """Bytes a run of ``spec`` on ``workload`` needs on ``dev`` (the memory model's peak).

    The kernel path is predicted from the spec, workload and device type without running
    anything (:func:`paramcalc.core.memory.predict_path`); ``fused=False`` is a run with oneDNN
    and cuDNN disabled (the flop check).
    """
    return run_memory_model(spec, workload, predicted_path(spec, workload, dev, fused=fused), dev).peak_bytes


def run_memory_model(spec: Any, workload: Any, path: str, dev: Any = None) -> MemoryModel:
    """The memory model of a run on ``dev`` by ``path``, with the device's facts and cuDNN
    calibration on CUDA (:func:`cuda_setup`)."""
    from ..core.memory import memory_model

    kind = getattr(dev, "type", None) or str(dev or "cpu").split(":")[0]
    return memory_model(
        spec, workload, path, device_type=kind, cuda=cuda_setup(dev) if kind == "cuda" else None
    )


def _cublas_config_bytes(text: str) -> int | None:
    """Bytes per cuBLAS handle that ``CUBLAS_WORKSPACE_CONFIG`` (``:SIZE_KIB:COUNT...``) sets."""
    pairs = re.findall(r":(\d{1,9}):(\d{1,6})", text)
    return sum(int(size) * 1024 * int(count) for size, count in pairs) or None


def cuda_setup(dev: Any = None, *, folder: Any = None) -> CudaSetup:
    """What the CUDA memory model needs to know about ``dev`` and this torch
    (:class:`paramcalc.core.memory.CudaSetup`): the device, its compute capability and SMs, the
    versions, ``CUBLAS_WORKSPACE_CONFIG``, and the cuDNN calibration cached for exactly this
    device and stack (:mod:`paramcalc.bridge.calibration`), if one was measured or installed.
    bf16 weights are flat: the driver flattens them (:func:`paramcalc.bridge.driver.flatten_weights`).
    """
    import torch

    from ..core.memory import CudaSetup
    from .calibration import device_key, load_calibration

    dev = torch.device(dev) if not isinstance(dev, torch.device) else dev
    props = torch.cuda.get_device_properties(dev)
    key = device_key(dev)
    calibration, _ = load_calibration(key, folder)
    return CudaSetup(
        name=str(props.name),
        capability=(int(props.major), int(props.minor)),
        multiprocessors=int(props.multi_processor_count),
        versions={k: key[k] for k in ("driver", "cuda", "cudnn", "torch")},
        cublas_workspace=_cublas_config_bytes(os.environ.get("CUBLAS_WORKSPACE_CONFIG", "")),
        bf16_weights_flat=True,
        calibration=calibration,
    )


def predicted_path(spec: Any, workload: Any, dev: Any = None, *, fused: bool = True) -> str:
    """The kernel path a run of ``spec`` on ``workload`` is expected to take on ``dev``, without
    running anything (:func:`paramcalc.core.memory.predict_path` with what this torch can do)."""
    from ..core.memory import predict_path

    return predict_path(spec, workload, **kernel_capabilities(dev, fused=fused))


def kernel_capabilities(dev: Any = None, *, fused: bool = True) -> dict[str, Any]:
    """What :func:`paramcalc.core.memory.predict_path` needs to know about ``dev`` and this torch.

    ``device_type``; ``onednn``: oneDNN compiled in and enabled (``torch.backends.mkldnn``);
    ``onednn_bf16``/``onednn_fp16``: oneDNN's reduced-precision RNN kernels run on this CPU
    (``torch.ops.mkldnn._is_mkldnn_bf16_supported``); ``cudnn``: cuDNN present and enabled.
    """
    import torch

    kind = getattr(dev, "type", None) or str(dev or "cpu").split(":")[0]
    caps: dict[str, Any] = {"device_type": kind}
    if kind == "cpu":
        mkldnn = torch.backends.mkldnn
        on = fused and bool(mkldnn.is_available() and mkldnn.enabled)  # type: ignore[no-untyped-call]
        caps["onednn"] = on
        ops = getattr(torch.ops, "mkldnn", None)
        for key, probe in (
            ("onednn_bf16", "_is_mkldnn_bf16_supported"),
            ("onednn_fp16", "_is_mkldnn_fp16_supported"),
        ):
            try:
                caps[key] = on and bool(getattr(ops, probe)())
            except (AttributeError, RuntimeError):
                caps[key] = False
    elif kind == "cuda":
        cudnn = torch.backends.cudnn
        caps["cudnn"] = fused and bool(cudnn.is_available() and cudnn.enabled)  # type: ignore[no-untyped-call]
    return caps


def check_run_memory(
    spec: Any,
    workload: Any,
    dev: torch.device,
    what: str = "the run",
    *,
    fused: bool = True,
    need: int | None = None,
) -> int:
    """Refuse (one line) a run the device cannot hold; return the estimated bytes it needs.

    The need is the memory model's peak for the kernel path the run will take (``need``: the
    caller evaluated it already); it is refused when ``need × MEMORY_HEADROOM`` exceeds what
    :func:`available_bytes` says is free.
    """
    if need is None:
        need = run_memory_needed(spec, workload, dev, fused=fused)
    free = available_bytes(dev)
    if free is not None and need * MEMORY_HEADROOM > free:
        raise ParamcalcError(
            f"not enough memory on {dev} for {what} of {spec.describe()} with batch {workload.batch}, "
            f"seq_len {workload.seq_len}: it needs about {human_bytes(need)} "
            f"(+{round(100 * (MEMORY_HEADROOM - 1))}% headroom: {human_bytes(need * MEMORY_HEADROOM)}), "
            f"{human_bytes(free)} is available; use a smaller batch, sequence length or hidden size"
        )
    return need


# --- measuring the peak -----------------------------------------------------------------------

#: Seconds between two reads of the resident set where the kernel's peak cannot be reset.
RSS_SAMPLE_S = 0.0005


@dataclass
class PeakMemory:
    """The peak a block held: ``bytes`` (``None`` when it cannot be told) and how it was measured."""

    bytes: int | None = None
    method: str = ""


def _proc_status(*keys: str) -> dict[str, int]:
    """Fields of ``/proc/self/status`` in bytes (``VmRSS``, ``VmHWM``); empty where there is none."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key = line.split(":", 1)[0]
                if key in keys:
                    out[key] = int(line.split()[1]) * 1024
    return out


def _reset_hwm() -> bool:
    """Reset the kernel's resident-set peak (``VmHWM``) to the current resident set (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _statm_rss() -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return None


@contextlib.contextmanager
def _cpu_peak(resident: int) -> Iterator[PeakMemory]:
    """The resident-set growth of this process over the block's start, plus ``resident``.

    Linux keeps the peak resident set (``VmHWM``); writing ``5`` to ``/proc/self/clear_refs``
    resets it to the current resident set, so the peak of exactly this block is read back, with
    no sampling gap. ``getrusage``'s ``ru_maxrss`` cannot be reset (a process that once held more
    hides every later peak) and ``tracemalloc`` sees only Python's allocator, not torch's. Where
    the peak cannot be reset (no ``clear_refs``) a thread samples ``/proc/self/statm`` every
    :data:`RSS_SAMPLE_S` seconds, which can miss a peak shorter than that.
    """
    peak = PeakMemory()
    start = _proc_status("VmRSS").get("VmRSS")
    if start is not None and _reset_hwm():
        start = _proc_status("VmRSS").get("VmRSS", start)
        yield peak
        hwm = _proc_status("VmHWM").get("VmHWM")
        if hwm is not None:
            peak.bytes, peak.method = max(0, hwm - start) + resident, "VmHWM growth (Linux clear_refs)"
        return
    first = _statm_rss()
    if first is None:  # no /proc: not measured
        yield peak
        return
    top = [first]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(RSS_SAMPLE_S):
            rss = _statm_rss()
            if rss is not None and rss > top[0]:
                top[0] = rss

    thread = threading.Thread(target=sample, name="paramcalc-rss", daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()
    last = _statm_rss()
    top[0] = max(top[0], last or 0)
    peak.bytes, peak.method = (
        top[0] - first + resident,
        f"sampled RSS growth (every {RSS_SAMPLE_S * 1e3:g} ms)",
    )


@contextlib.contextmanager
def peak_memory(dev: Any, resident: int = 0) -> Iterator[PeakMemory]:
    """Measure the peak bytes the block holds on ``dev``; read ``.bytes`` after the block.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (the device
    synchronised before and after): every tensor allocated at the peak, those that were already
    there included. CPU: the growth of this process's resident set over its state at the start
    (see :func:`_cpu_peak`) plus ``resident``, the bytes of the tensors the block found already
    allocated (parameters, input), so both devices count the same thing. MPS and meta: ``None``.
    """
    kind = getattr(dev, "type", str(dev))
    if kind == "cuda":
        import torch

        peak = PeakMemory()
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        yield peak
        torch.cuda.synchronize(dev)
        peak.bytes, peak.method = int(torch.cuda.max_memory_allocated(dev)), "torch.cuda.max_memory_allocated"
        return
    if kind == "cpu":
        with _cpu_peak(resident) as peak:
            yield peak
        return
    yield PeakMemory(None, f"not measured on {kind}")
