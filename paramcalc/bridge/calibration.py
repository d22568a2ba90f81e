"""cuDNN's training-workspace calibration on disk, keyed by the device and software stack.

The memory model (pure, :mod:`paramcalc.core.memory.cudnn`) takes the coefficients as data: a
:class:`~paramcalc.core.memory.CudnnCalibration`. This module keeps them beside the GEMM timings
in :func:`paramcalc.core.files.cache_dir`, one JSON file per key (GPU name, SM count, compute
capability, driver, CUDA, cuDNN and torch versions: :func:`device_key`), with the same care as
the timing cache: a file is read without following a link or blocking on a FIFO and within
:data:`MAX_FILE` bytes, a file for another key or of another schema is ignored with a reason,
and a save replaces the entry atomically under a :mod:`filelock` lock with a bounded wait.

:func:`measure_calibration` makes one on a CUDA device: :data:`CALLS` training calls of random
shapes (:func:`calibration_shapes`), each traced once (:func:`trace_training_call`: cuDNN's
requested workspaces), fitted by least squares per phase, algorithm and cell
(:func:`fit_calibration`, numpy), and stored. torch is imported inside the functions that run
on the device.
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
    from ..results.export import atomic_write

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


# --- measuring a calibration on the device ----------------------------------------------------------

#: Traced training calls a calibration measures by default (60 per coefficient set already give a
#: held-out median error of 0.5% on the H200; the sweep takes seconds).
CALLS = 400
#: A workspace this far above the inference form counts as the training form's (bytes).
SLACK = 4096


def fit_calibration(
    samples: list[tuple[Any, Any, int, int]], key: dict[str, str], source: str, cuda: Any = None
) -> CudnnCalibration:
    """Fit the training form's coefficients by least squares, per ``phase/algorithm/mode``, from
    ``(spec, workload, forward workspace, backward workspace)`` of traced training calls.

    A set is fitted on the calls whose workspace is above its floor (the inference form), then
    again on those whose fitted form is above the floor or which are above it (three rounds);
    a set with fewer calls than coefficients is left out (its workspace is then the floor).
    """
    import numpy as np

    from ..core.memory.cudnn import TRAIN_BASIS, training_form

    groups: dict[str, list[tuple[list[float], float, int]]] = {}
    for spec, workload, ws_fwd, ws_bwd in samples:
        form = training_form(spec, workload, cuda)
        for phase, measured in (("fwd", ws_fwd), ("bwd", ws_bwd)):
            name, features, floor = form[phase]
            groups.setdefault(name, []).append((features, float(measured), floor))
    coef: dict[str, list[float]] = {}
    for name, rows in sorted(groups.items()):
        sel = [r for r in rows if r[1] > r[2] + SLACK]
        fitted = None
        for _ in range(3):
            if len(sel) < len(TRAIN_BASIS):
                break
            x = np.array([f for f, _, _ in sel], dtype=float)
            scale = np.maximum(np.abs(x).max(axis=0), 1.0)
            sol = np.linalg.lstsq(x / scale, np.array([y for _, y, _ in sel]), rcond=None)[0]
            fitted = sol / scale
            sel = [r for r in rows if float(np.dot(r[0], fitted)) >= r[2] - SLACK or r[1] > r[2] + SLACK]
        if fitted is not None:
            coef[name] = [float(v) for v in fitted]
    if not coef:
        raise ParamcalcError("too few traced calls to fit any of cuDNN's training workspaces")
    doc = {"key": key, "basis": list(TRAIN_BASIS), "source": source, "n_fit_runs": len(samples), "coef": coef}
    return CudnnCalibration.from_dict(doc)


def trace_training_call(spec: Any, workload: Any, dev: torch.device) -> tuple[int, int]:
    """cuDNN's forward and backward workspaces (requested bytes) in one traced training call.

    The call runs twice untraced, then once under ``torch.cuda.memory._record_memory_history``;
    the forward's workspace is the block freed right after the reserve space is allocated, a
    backward's the larger of the blocks freed by the very next event.
    """
    import torch

    from .driver import make_case

    case = make_case(spec, workload, dev)
    case.module.train(True)
    for _ in range(2):
        case.train_step()
    torch.cuda.synchronize(dev)
    history = torch.cuda.memory._record_memory_history
    history(enabled="all", context=None, stacks="python", max_entries=1 << 17)
    try:
        case.train_step()
        torch.cuda.synchronize(dev)
        snap = torch.cuda.memory._snapshot()
    finally:
        history(enabled=None)
    events = [
        int(e["size"]) * (1 if e["action"] == "alloc" else -1)
        for trace in snap["device_traces"]
        for e in trace
        if e["action"] in ("alloc", "free_requested")
    ]
    return workspaces_of(events)


def workspaces_of(events: list[int]) -> tuple[int, int]:
    """The forward's and the first backward call's workspace in a training call's allocations."""
    temps: list[tuple[int, int, int | None]] = []
    for i, e in enumerate(events[:-1]):
        if e > 16 and events[i + 1] == -e:
            temps.append((i, e, None))
        elif e > 16 and i + 2 < len(events) and events[i + 2] == -e and events[i + 1] > 0:
            temps.append((i, e, events[i + 1]))
    fwd = next((t for t in temps if t[2] is not None), None)
    rest = [t for t in temps if fwd is not None and t[0] > fwd[0] + 2]
    if fwd is None or len(rest) < 2:
        raise ParamcalcError("no cuDNN workspace found in the traced call (is cuDNN enabled?)")
    big = max(t[1] for t in rest)
    rest = [t for t in rest if t[1] >= big // 2]
    return fwd[1], rest[-2][1]


def calibration_shapes(calls: int = CALLS, seed: int = 0) -> list[tuple[Any, Any]]:
    """Random training calls spread over the cells, algorithms and dtypes cuDNN sizes differently:
    RNN/LSTM/GRU, fp32/bf16/fp16, Dh on both sides of the small-H limits, up to three layers,
    bidirectional, projected LSTMs and packed batches."""
    import random

    from ..core.spec import RecurrentSpec
    from ..core.workload import Workload

    rnd = random.Random(seed)
    out = []
    for _ in range(calls):
        cell = rnd.choice(("rnn", "lstm", "gru"))
        d, h = (
            rnd.choice((16, 64, 128, 256, 512, 1024)),
            rnd.choice((48, 100, 128, 192, 256, 384, 512, 768, 1024)),
        )
        kw: dict[str, Any] = {"num_layers": rnd.choice((1, 1, 2, 3)), "bidirectional": rnd.random() < 0.3}
        if cell == "lstm" and rnd.random() < 0.15:
            kw["proj_size"] = h // 2
        b, t = rnd.choice((1, 8, 16, 32, 64, 128)), rnd.choice((10, 40, 100, 300, 700))
        lengths = (
            tuple(max(1, t - (3 * t * i) // (4 * max(1, b - 1))) for i in range(b))
            if rnd.random() < 0.1
            else None
        )
        dtype = rnd.choice(("fp32", "bf16", "fp16"))
        out.append(
            (RecurrentSpec(cell, d, h, **kw), Workload(b, t, lengths=lengths, dtype=dtype, mode="training"))
        )
    return out


def measure_calibration(
    dev: torch.device, calls: int = CALLS, seed: int = 0, store: bool = True
) -> CudnnCalibration:
    """Trace ``calls`` training calls on ``dev``, fit cuDNN's training workspaces, and (``store``)
    save the calibration in the cache under the device's key. The calls whose model peak is above
    a quarter of the free memory are skipped."""
    from datetime import date

    from .devices import available_bytes, cuda_setup, run_memory_model

    setup = cuda_setup(dev)
    free = available_bytes(dev) or 0
    samples = []
    for spec, wl in calibration_shapes(calls, seed):
        if free and run_memory_model(spec, wl, "cuDNN", dev).peak_bytes > free // 4:
            continue
        samples.append((spec, wl, *trace_training_call(spec, wl, dev)))
    key = device_key(dev)
    source = f"measured on the device: the workspaces of {len(samples)} traced training calls, {date.today()}"
    cal = fit_calibration(samples, key, source, setup)
    if store:
        store_calibration(cal)
    return cal
