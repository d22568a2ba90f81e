"""Measuring cuDNN's training-workspace calibration on a CUDA device.

:func:`measure_calibration` runs :data:`CALLS` training calls of random shapes spread over the
cells, algorithms and dtypes cuDNN sizes differently (:func:`calibration_shapes`), traces each
once (:func:`trace_training_call`: the workspaces cuDNN requests, read off the call's
allocations by :func:`workspaces_of`), fits the training form's coefficients by least squares
per phase, algorithm and cell (:func:`fit_calibration`, numpy) and stores the result under the
device's key (:mod:`paramcalc.bridge.calibration`). torch is imported inside the functions that
run on the device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.memory import CudnnCalibration
from ..errors import ParamcalcError
from .calibration import device_key, store_calibration

if TYPE_CHECKING:  # pragma: no cover
    import torch

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

    from ..core.memory.cudnn import training_form
    from ..core.memory.setup import TRAIN_BASIS

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
