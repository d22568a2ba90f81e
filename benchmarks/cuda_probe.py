"""Raw CUDA facts for the memory and speed models: allocation traces and step latencies.

Standalone (torch only, no paramcalc): run once on a CUDA machine, keep the JSON, and fit and
check the models' terms against it on any machine. For each configuration it records what the
caching allocator saw during one call, the way ``paramcalc bench`` runs it (inference: ``eval``
under ``inference_mode``; training: ``zero_grad(set_to_none=True)`` + forward +
``out.float().sum().backward()``):

* ``base``: bytes allocated just before the call (parameters, input, persistent workspaces);
* ``peak``: ``max_memory_allocated`` during the call (after ``reset_peak_memory_stats``);
* ``events``: the call's allocations and frees as ``[+size]`` / ``[-size]`` (block sizes as
  the caching allocator rounds them), from ``torch.cuda.memory._record_memory_history``.

It also records, in a fresh state, what the first GEMM (cuBLAS workspace) and the first cuDNN
RNN call leave allocated, and times forward and training calls over a grid of sizes (CUDA
events, median of several calls) plus per-step cell loops and a bare kernel launch.

    python benchmarks/cuda_probe.py --out probe.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import torch
from torch import nn

DT = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
CELL_CLS = {"rnn_cell": nn.RNNCell, "lstm_cell": nn.LSTMCell, "gru_cell": nn.GRUCell}
dev = torch.device("cuda")


def env() -> dict[str, Any]:
    p = torch.cuda.get_device_properties(dev)
    try:
        drv = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except Exception as exc:
        drv = f"unknown ({exc})"
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "device": p.name,
        "sm": f"{p.major}.{p.minor}",
        "multiprocessors": p.multi_processor_count,
        "total_memory": p.total_memory,
        "driver": drv,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }


def first_use() -> dict[str, Any]:
    """What the first GEMM of each dtype and the first cuDNN RNN leave allocated."""
    out: dict[str, Any] = {}
    torch.cuda.synchronize()
    a0 = torch.cuda.memory_allocated()
    for name, dt in DT.items():
        a = torch.randn(64, 64, device=dev, dtype=dt)
        before = torch.cuda.memory_allocated()
        c = a @ a
        torch.cuda.synchronize()
        out[f"after_first_{name}_matmul"] = (
            torch.cuda.memory_allocated() - before - c.untyped_storage().nbytes()
        )
        del a, c
    # addmm with bias (cuBLASLt path) in bf16 and fp32
    for name in ("fp32", "bf16"):
        dt = DT[name]
        lin = nn.Linear(256, 256, device=dev, dtype=dt)
        x = torch.randn(32, 256, device=dev, dtype=dt)
        before = torch.cuda.memory_allocated()
        y = lin(x)
        torch.cuda.synchronize()
        out[f"after_first_{name}_linear"] = (
            torch.cuda.memory_allocated() - before - y.untyped_storage().nbytes()
        )
        del lin, x, y
    out["allocated_after_gemms"] = torch.cuda.memory_allocated() - a0
    m = nn.LSTM(32, 32).to(dev)
    x = torch.randn(4, 2, 32, device=dev)
    before = torch.cuda.memory_allocated()
    with torch.inference_mode():
        y = m(x)[0]
    torch.cuda.synchronize()
    out["after_first_cudnn_rnn"] = torch.cuda.memory_allocated() - before - y.untyped_storage().nbytes()
    del m, x, y
    return out


def trace_call(fn: Any, record: bool) -> tuple[int, int, list[int]]:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    if record:
        torch.cuda.memory._record_memory_history(enabled=None)
        try:
            torch.cuda.memory._record_memory_history(
                enabled="all", context=None, stacks="python", max_entries=200000, clear_history=True
            )
        except TypeError:
            torch.cuda.memory._record_memory_history(
                enabled="all", context=None, stacks="python", max_entries=200000
            )
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    events: list[int] = []
    if record:
        snap = torch.cuda.memory._snapshot()
        torch.cuda.memory._record_memory_history(enabled=None)
        for tr in snap.get("device_traces", []):
            for e in tr:
                if e["action"] == "alloc":
                    events.append(int(e["size"]))
                elif e["action"] in ("free_requested",):
                    events.append(-int(e["size"]))
    return base, peak, events


def stack_case(
    cell: str,
    d: int,
    h: int,
    layers: int,
    b: int,
    t: int,
    dtype: str,
    train: bool,
    bidir: bool = False,
    proj: int = 0,
    packed: bool = False,
) -> tuple[Any, Any, int, int]:
    dt = DT[dtype]
    kw: dict[str, Any] = {"num_layers": layers, "bidirectional": bidir}
    if proj:
        kw["proj_size"] = proj
    m = CLS[cell](d, h, **kw, device=dev, dtype=dt)
    m.flatten_parameters()
    x = torch.randn(t, b, d, device=dev, dtype=dt)
    inp: Any = x
    if packed:
        lengths = torch.tensor([max(1, t - (3 * t * i) // (4 * max(1, b - 1))) for i in range(b)])
        inp = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    params = sum(p.numel() * p.element_size() for p in m.parameters())
    if train:
        m.train()

        def fn() -> None:
            m.zero_grad(set_to_none=True)
            out = m(inp)[0]
            out = out.data if hasattr(out, "batch_sizes") else out
            out.float().sum().backward()
    else:
        m.eval()

        def fn() -> None:
            with torch.inference_mode():
                m(inp)

    return m, fn, params, x.untyped_storage().nbytes()


def cell_case(
    cell: str, d: int, h: int, b: int, t: int, dtype: str, train: bool
) -> tuple[Any, Any, int, int]:
    dt = DT[dtype]
    m = CELL_CLS[cell](d, h, device=dev, dtype=dt)
    x = torch.randn(t, b, d, device=dev, dtype=dt)
    params = sum(p.numel() * p.element_size() for p in m.parameters())

    def forward() -> list[Any]:
        state: Any = None
        outs = []
        for i in range(t):
            state = m(x[i], state)
            outs.append(state[0] if isinstance(state, tuple) else state)
        return outs

    if train:

        def fn() -> None:
            m.zero_grad(set_to_none=True)
            outs = forward()
            total = outs[0].float().sum()
            for o in outs[1:]:
                total = total + o.float().sum()
            total.backward()
    else:
        m.eval()

        def fn() -> None:
            with torch.inference_mode():
                forward()

    return m, fn, params, x.untyped_storage().nbytes()


def memory_grid(quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cfgs: list[dict[str, Any]] = []
    shapes = [
        (128, 256, 1, 32, 200),
        (256, 512, 2, 32, 200),
        (256, 1024, 1, 32, 100),
        (64, 256, 1, 128, 400),
        (96, 384, 3, 16, 300),
        (64, 64, 1, 1, 16),
        (512, 2048, 1, 64, 500),
        (1024, 1024, 2, 8, 1000),
        (32, 128, 1, 256, 50),
        (128, 512, 4, 16, 64),
    ]
    if quick:
        shapes = shapes[:3]
    for train in (False, True):
        for dtype in ("fp32", "bf16", "fp16"):
            for cell in ("rnn", "lstm", "gru"):
                for d, h, L, b, t in shapes:
                    cfgs.append(
                        dict(kind="stack", cell=cell, d=d, h=h, layers=L, b=b, t=t, dtype=dtype, train=train)
                    )
        for cell in ("rnn", "lstm", "gru"):
            cfgs.append(
                dict(
                    kind="stack",
                    cell=cell,
                    d=128,
                    h=256,
                    layers=2,
                    b=32,
                    t=200,
                    dtype="fp32",
                    train=train,
                    bidir=True,
                )
            )
            cfgs.append(
                dict(
                    kind="stack",
                    cell=cell,
                    d=128,
                    h=256,
                    layers=2,
                    b=64,
                    t=200,
                    dtype="fp32",
                    train=train,
                    packed=True,
                )
            )
            cfgs.append(
                dict(
                    kind="stack",
                    cell=cell,
                    d=64,
                    h=512,
                    layers=1,
                    b=48,
                    t=150,
                    dtype="bf16",
                    train=train,
                    bidir=True,
                )
            )
        cfgs.append(
            dict(
                kind="stack",
                cell="lstm",
                d=128,
                h=512,
                layers=1,
                b=32,
                t=200,
                dtype="fp32",
                train=train,
                proj=256,
            )
        )
        cfgs.append(
            dict(
                kind="stack",
                cell="lstm",
                d=128,
                h=1024,
                layers=2,
                b=32,
                t=200,
                dtype="bf16",
                train=train,
                proj=256,
            )
        )
        for cell in ("rnn_cell", "lstm_cell", "gru_cell"):
            for d, h, b, t in ((128, 256, 32, 200), (64, 1024, 8, 100), (256, 512, 128, 50)):
                cfgs.append(
                    dict(kind="cell", cell=cell, d=d, h=h, layers=1, b=b, t=t, dtype="fp32", train=train)
                )
            cfgs.append(
                dict(kind="cell", cell=cell, d=128, h=256, layers=1, b=32, t=200, dtype="bf16", train=train)
            )
    # TF32 off for a few fp32 rows (cuDNN's math type may change its workspace)
    for train in (False, True):
        for cell in ("rnn", "lstm", "gru"):
            cfgs.append(
                dict(
                    kind="stack",
                    cell=cell,
                    d=128,
                    h=256,
                    layers=1,
                    b=32,
                    t=200,
                    dtype="fp32",
                    train=train,
                    tf32=False,
                )
            )
            cfgs.append(
                dict(
                    kind="stack",
                    cell=cell,
                    d=64,
                    h=256,
                    layers=1,
                    b=128,
                    t=400,
                    dtype="fp32",
                    train=train,
                    tf32=False,
                )
            )
    for i, c in enumerate(cfgs):
        t0 = time.perf_counter()
        torch.backends.cudnn.allow_tf32 = c.get("tf32", True)
        try:
            if c["kind"] == "stack":
                _m, fn, params, xin = stack_case(
                    c["cell"],
                    c["d"],
                    c["h"],
                    c["layers"],
                    c["b"],
                    c["t"],
                    c["dtype"],
                    c["train"],
                    c.get("bidir", False),
                    c.get("proj", 0),
                    c.get("packed", False),
                )
            else:
                _m, fn, params, xin = cell_case(
                    c["cell"], c["d"], c["h"], c["b"], c["t"], c["dtype"], c["train"]
                )
            fn()
            fn()  # warm: handles, persistent workspaces, plans
            base, peak, events = trace_call(fn, record=True)
            base2, peak2, _ = trace_call(fn, record=False)
            row = dict(
                c,
                params_bytes=params,
                input_bytes=xin,
                base=base,
                peak=peak,
                base2=base2,
                peak2=peak2,
                n_events=len(events),
                events=events if len(events) <= 4000 else events[:4000],
                seconds=time.perf_counter() - t0,
            )
        except Exception as exc:
            row = dict(c, error=f"{type(exc).__name__}: {str(exc)[:300]}")
        rows.append(row)
        del_all()
        if i % 20 == 0:
            print(f"memory {i}/{len(cfgs)}", flush=True)
    torch.backends.cudnn.allow_tf32 = True
    return rows


def del_all() -> None:
    import gc

    gc.collect()
    torch.cuda.empty_cache()


def time_fn(fn: Any, reps: int = 7, warm: int = 2) -> list[float]:
    for _ in range(warm):
        fn()
    out = []
    for _ in range(reps):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        out.append(s.elapsed_time(e) / 1e3)
    return out


DEADLINE = [float("inf")]


def speed_grid(quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    hs = (64, 256, 1024, 2048) if not quick else (256,)
    bs = (1, 16, 128) if not quick else (16,)
    ts = (1, 16, 128, 512) if not quick else (16,)
    for dtype in ("fp32", "bf16"):
        for cell in ("rnn", "lstm", "gru"):
            for h in hs:
                for b in bs:
                    for t in ts:
                        for L in (1, 2):
                            trains = (False, True) if (t in (16, 128) and L == 1) else (False,)
                            for train in trains:
                                if time.perf_counter() > DEADLINE[0]:
                                    return rows
                                d = h
                                try:
                                    _m, fn, _, _ = stack_case(cell, d, h, L, b, t, dtype, train)
                                    ts_ = time_fn(fn, reps=5 if h * b * t < 2**24 else 3)
                                    rows.append(
                                        dict(
                                            cell=cell,
                                            d=d,
                                            h=h,
                                            layers=L,
                                            b=b,
                                            t=t,
                                            dtype=dtype,
                                            train=train,
                                            median_s=statistics.median(ts_),
                                            times=ts_,
                                        )
                                    )
                                except Exception as exc:
                                    rows.append(
                                        dict(
                                            cell=cell,
                                            d=d,
                                            h=h,
                                            layers=L,
                                            b=b,
                                            t=t,
                                            dtype=dtype,
                                            train=train,
                                            error=str(exc)[:200],
                                        )
                                    )
                                del_all()
        print(f"speed {dtype} done", flush=True)
    # per-step cell loops
    for cell in ("rnn_cell", "lstm_cell", "gru_cell"):
        for h in (64, 256, 1024):
            for t in (16, 128):
                for train in (False, True):
                    _m, fn, _, _ = cell_case(cell, h, h, 16, t, "fp32", train)
                    ts_ = time_fn(fn, reps=5)
                    rows.append(
                        dict(
                            cell=cell,
                            d=h,
                            h=h,
                            layers=1,
                            b=16,
                            t=t,
                            dtype="fp32",
                            train=train,
                            median_s=statistics.median(ts_),
                            times=ts_,
                        )
                    )
                    del_all()
    return rows


def launch_floor() -> dict[str, Any]:
    """Per-kernel launch cost seen from Python (a chain of tiny adds) and a tiny GEMM chain."""
    x = torch.zeros(16, device=dev)
    out: dict[str, Any] = {}

    def adds() -> None:
        y = x
        for _ in range(1000):
            y = y + 1

    out["add_x1000_s"] = statistics.median(time_fn(adds, reps=5))
    a = torch.randn(16, 64, device=dev)
    w = torch.randn(64, 64, device=dev)

    def mms() -> None:
        y = a
        for _ in range(1000):
            y = y @ w

    out["mm16x64x64_x1000_s"] = statistics.median(time_fn(mms, reps=5))
    aw = torch.randn(16, 1024, device=dev)
    ww = torch.randn(1024, 1024, device=dev)

    def mmb() -> None:
        y = aw
        for _ in range(1000):
            y = y @ ww

    out["mm16x1024x1024_x1000_s"] = statistics.median(time_fn(mmb, reps=5))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="cuda_probe.json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--budget", type=float, default=240.0, help="seconds; the speed grid stops after it")
    args = ap.parse_args()
    t0 = time.perf_counter()
    DEADLINE[0] = t0 + args.budget
    res: dict[str, Any] = {"env": env(), "first_use": first_use()}
    print(json.dumps(res), flush=True)
    res["memory"] = memory_grid(args.quick)
    print(f"memory grid {time.perf_counter() - t0:.1f}s", flush=True)
    with open(args.out, "w") as f:
        json.dump(res, f)
    res["launch"] = launch_floor()
    if not args.skip_speed:
        res["speed"] = speed_grid(args.quick)
    res["seconds"] = time.perf_counter() - t0
    with open(args.out, "w") as f:
        json.dump(res, f)
    print(f"done in {res['seconds']:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
