"""cuDNN's training-workspace calibration on disk, keyed by the device and software stack.

The memory model (pure, :mod:`paramcalc.core.memory.cudnn`) takes the coefficients as data: a
:class:`~paramcalc.core.memory.CudnnCalibration`. This module keeps them beside the GEMM timings
in :func:`paramcalc.core.files.cache_dir`, one JSON file per key (GPU name, SM count, compute
capability, driver, CUDA, cuDNN and torch versions: :func:`device_key`), with the same care as
the timing cache: a file is read without following a link or blocking on a FIFO and within
:data:`MAX_FILE` bytes, a file for another key or of another schema is ignored with a reason,
and a save replaces the entry atomically under a :mod:`filelock` lock with a bounded wait.

:func:`paramcalc.bridge.calibrate.measure_calibration` makes one on a CUDA device. torch is
imported inside :func:`device_key` only.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.files import CacheBusy, cache_dir, cache_lock, read_cache_file, read_text
from ..core.memory import CudnnCalibration
from ..errors import ParamcalcError

if TYPE_CHECKING:  # pragma: no cover
    import torch

SCHEMA = "paramcalc.cudnn-calibration/1"
#: The fields a calibration's key holds, in order.
KEY_FIELDS = ("device", "multiprocessors", "sm", "driver", "cuda", "cudnn", "torch")
#: The largest calibration file read (a calibration is a few kilobytes).
MAX_FILE = 1 << 20
LOCK_TIMEOUT_S = 10.0


def driver_version() -> str:
    """The NVIDIA driver's version (``/proc/driver/nvidia/version``), else the CUDA driver API's."""
    try:
        with open("/proc/driver/nvidia/version", encoding="utf-8", errors="replace") as fh:
            words = fh.read(4096).split()
        if "Module" in words:
            return words[words.index("Module") + 1]
    except (OSError, IndexError):
        pass
    import torch

    get = getattr(torch._C, "_cuda_getDriverVersion", None)
    return f"CUDA driver API {get()}" if callable(get) else ""


def device_key(dev: torch.device) -> dict[str, str]:
    """What cuDNN's workspace sizes depend on, for ``dev`` and this torch."""
    import torch

    props = torch.cuda.get_device_properties(dev)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None  # type: ignore[no-untyped-call]
    return {
        "device": str(props.name),
        "multiprocessors": str(props.multi_processor_count),
        "sm": f"{props.major}.{props.minor}",
        "driver": driver_version(),
        "cuda": str(torch.version.cuda or ""),
        "cudnn": str(cudnn or ""),
        "torch": str(torch.__version__),
    }


def normal_key(key: Any) -> dict[str, str]:
    """A key's fields as strings, in :data:`KEY_FIELDS` order (missing ones empty)."""
    given = dict(key) if isinstance(key, (dict, tuple, list)) else {}
    return {k: str(given.get(k, "")) for k in KEY_FIELDS}


def calibration_file(key: Any, folder: Path | None = None) -> Path:
    """The cache file of one key inside ``folder`` (default :func:`~paramcalc.core.files.cache_dir`)."""
    text = json.dumps(normal_key(key), sort_keys=True)
    return (folder or cache_dir()) / f"cudnn-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json"


def parse(data: bytes | str, where: str, origin: str = "") -> CudnnCalibration:
    """A calibration document's text; one-line :class:`ParamcalcError` when it is not one."""
    try:
        doc = json.loads(data)
    except RecursionError:
        raise ParamcalcError(f"{where} is not valid JSON (nested too deeply)") from None
    except (UnicodeDecodeError, ValueError):
        raise ParamcalcError(f"{where} is not valid JSON") from None
    if isinstance(doc, dict) and doc.get("schema", SCHEMA) != SCHEMA:
        raise ParamcalcError(f"{where} is not a {SCHEMA} file")
    try:
        return CudnnCalibration.from_dict(doc, origin)
    except ParamcalcError as exc:
        raise ParamcalcError(f"{where}: {exc}") from None


def read_calibration(path: str | os.PathLike[str]) -> CudnnCalibration:
    """A calibration file given by the user (one line when it is missing or not one)."""
    return parse(read_text(path, MAX_FILE, "cuDNN calibration"), repr(os.fspath(path)), Path(path).name)


def load_calibration(key: Any, folder: Path | None = None) -> tuple[CudnnCalibration | None, str]:
    """The cached calibration for ``key``, or ``None`` and why not ("" when there is none)."""
    path = calibration_file(key, folder)
    where = f"the calibration {str(path)!r}"
    data, problem = read_cache_file(path, MAX_FILE, where)
    if data is None:
        return None, problem
    if len(data) > MAX_FILE:
        return None, f"{where} is larger than {MAX_FILE:,} bytes: ignored"
    try:
        cal = parse(data, where, path.name)
    except ParamcalcError as exc:
        return None, f"{exc}: ignored"
    if normal_key(dict(cal.key)) != normal_key(key):
        return None, f"{where} is for another device or versions: ignored"
    return cal, ""


def store_calibration(cal: CudnnCalibration, folder: Path | None = None) -> Path:
    """Save ``cal`` in the cache under its own key (atomically, under the lock); its path.

    One-line :class:`ParamcalcError` when the folder cannot be written or the lock is held."""
    from ..core.writes import atomic_write

    path = calibration_file(dict(cal.key), folder)
    text = json.dumps({"schema": SCHEMA, **cal.to_dict()}, indent=1) + "\n"

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with cache_lock(path.with_name(path.name + ".lock"), LOCK_TIMEOUT_S):
            atomic_write(path, write, follow_links=False)
    except CacheBusy as exc:
        raise ParamcalcError(f"the calibration {str(path)!r} was not saved: {exc}") from None
    except OSError as exc:
        raise ParamcalcError(f"the calibration {str(path)!r} could not be written: {exc.strerror}") from None
    return path
