"""Devices, dtypes and memory: the one place paramcalc asks torch what a device is and can hold.

* :func:`resolve_device` maps what the user typed (``cpu``, ``meta``, ``cuda``, ``cuda:N``,
  ``mps``) onto an available ``torch.device``, or a one-line error.
* :func:`torch_dtype` maps paramcalc's dtype names (``fp32``, ``fp16``, ``bf16``) onto torch's.
* :func:`available_bytes` is the one free-memory reader (``MemAvailable`` on Linux CPUs,
  ``mem_get_info`` on CUDA, the recommended working set on MPS).
* :func:`oom_as_error` is the one translation of an allocation failure into a one-line
  :class:`~paramcalc.errors.ParamcalcError`.

torch is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import ParamcalcError

if TYPE_CHECKING:  # pragma: no cover
    import torch

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
                f"device {name!r} is not available: only {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
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
            "use --device meta, which allocates no memory"
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


#: The memory estimate is multiplied by this before it is compared with what is free
#: (allocator rounding, library workspaces, the framework's own buffers).
MEMORY_HEADROOM = 1.2


def run_memory_needed(spec: Any, workload: Any) -> int:
    """Bytes a run of ``spec`` on ``workload`` needs on its device (the memory model's peak)."""
    from ..core.memory import peak_bytes

    return peak_bytes(spec, workload)


def check_run_memory(spec: Any, workload: Any, dev: torch.device, what: str = "the run") -> int:
    """Refuse (one line) a run the device cannot hold; return the estimated bytes it needs."""
    need = run_memory_needed(spec, workload)
    free = available_bytes(dev)
    if free is not None and need * MEMORY_HEADROOM > free:
        raise ParamcalcError(
            f"not enough memory on {dev} for {what} of {spec.describe()} with batch {workload.batch}, "
            f"seq_len {workload.seq_len}: it needs about {human_bytes(need)} "
            f"(+{round(100 * (MEMORY_HEADROOM - 1))}% headroom), {human_bytes(free)} is available; "
            "use a smaller batch, sequence length or hidden size"
        )
    return need
