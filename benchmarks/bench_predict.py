"""Validation of the speed model: measured time vs the GEMM-sequence prediction over a grid.

For every cell, hidden size, layer count, batch, sequence length and dtype of the grid, runs
``paramcalc.bench`` (the real module, timed) with its prediction (each distinct GEMM shape
timed alone, shared by the whole grid and cached), and prints per row the measured and the
predicted time and their ratios, then the median absolute error ``|measured/predicted - 1|``
over the rows where the bound applies (a cuDNN persistent kernel is reported, not scored),
with the device, its name, the dtypes and the torch version. A row marked ``noisy`` has a
measurement or a GEMM timing whose IQR exceeds 10% of its median. The same command runs on a CPU
and on CUDA (``--device cuda``); the default grid takes 20-30 seconds on two CPU cores.

    python benchmarks/bench_predict.py [--device cpu|cuda] [--dtypes fp32,bf16] [--cells rnn,lstm,gru]
        [--hidden 64,256] [--layers 1,2] [--batch 16,64] [--seq-len 32] [--train]
        [--min-time 0.1] [--threads N] [--fresh] [--output validation.json]

``--fresh`` times every GEMM now and writes the new timings over the cached ones (do it on a
quiet machine); ``--output`` writes the runs as a JSON export that ``paramcalc compare --from`` merges
with the same file from another machine. Exit status 0 when at least one row was scored.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import paramcalc as pc
from paramcalc.core.writes import atomic_write
from paramcalc.timing.predict import make_timer

DEFAULT_DTYPES = {"cpu": "fp32,bf16", "cuda": "fp16,bf16,fp32"}


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    ap.add_argument("--dtypes", default=None, help="default: fp32,bf16 on CPU, fp16,bf16,fp32 on CUDA")
    ap.add_argument("--cells", default="rnn,lstm,gru")
    ap.add_argument("--hidden", type=ints, default=[64, 256])
    ap.add_argument("--layers", type=ints, default=[1, 2])
    ap.add_argument("--batch", type=ints, default=[16, 64])
    ap.add_argument("--seq-len", type=ints, default=[32])
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--train", action="store_true", help="time forward + backward")
    ap.add_argument("--min-time", type=float, default=0.1, help="seconds of timing per configuration")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--fresh", action="store_true", help="time every GEMM now and replace its cached timing")
    ap.add_argument("--output", default=None, help="write the runs as a JSON export (.json)")
    return ap.parse_args()


def grid(args: argparse.Namespace, dtypes: list[str]) -> list[tuple[pc.RecurrentSpec, pc.Workload]]:
    mode = "training" if args.train else "inference"
    out = []
    for dtype in dtypes:
        for cell in args.cells.split(","):
            for h in args.hidden:
                for layers in args.layers:
                    spec = pc.RecurrentSpec(cell.strip(), args.input_size, h, num_layers=layers)
                    for b in args.batch:
                        for t in args.seq_len:
                            out.append((spec, pc.Workload(b, t, dtype=dtype, mode=mode)))
    return out


def main() -> int:
    args = parse()
    kind = args.device.split(":")[0]
    dtypes = (args.dtypes or DEFAULT_DTYPES.get(kind, "fp32")).split(",")
    timer = make_timer(args.device, threads=args.threads, refresh=args.fresh)
    configs = grid(args, dtypes)
    print(
        f"device {timer.dev} ({timer.device_name}), torch {torch.__version__}, "
        f"{timer.threads or torch.get_num_threads()} threads, dtypes {', '.join(dtypes)}, "
        f"{'training' if args.train else 'inference'}, {len(configs)} configurations, "
        f"GEMM cache: {timer.path}{' (--fresh: timed again)' if args.fresh else ''}"
    )
    header = (
        f"{'cell':<5} {'H':>5} {'L':>2} {'B':>4} {'T':>4} {'dtype':<5} {'kernel':<8} "
        f"{'measured_ms':>12} {'predicted_ms':>12} {'pred/meas':>9} {'meas/pred':>9}"
    )
    print(header)
    print("-" * len(header))
    t0 = time.perf_counter()
    results: list[pc.BenchResult] = []
    for spec, wl in configs:
        try:
            r = pc.bench(
                spec, wl, device=args.device, threads=args.threads, min_run_time=args.min_time, timer=timer
            )
        except pc.ParamcalcError as exc:
            print(f"{spec.cell:<5} {spec.hidden_size:>5} {spec.num_layers:>2} {wl.batch:>4} {wl.seq_len:>4} "
                  f"{wl.dtype:<5} skipped: {exc}")  # fmt: skip
            continue
        results.append(r)
        p = r.prediction
        assert p is not None
        ratio = r.measured_over_predicted
        print(
            f"{spec.cell:<5} {spec.hidden_size:>5} {spec.num_layers:>2} {wl.batch:>4} {wl.seq_len:>4} "
            f"{wl.dtype:<5} {r.kernel_path:<8} {r.median_s * 1e3:>12.4g} {p.seconds * 1e3:>12.4g} "
            f"{p.seconds / r.median_s:>9.3f} "
            + (f"{ratio:>9.3f}" if ratio is not None else f"{'n/a':>9}  (bound does not apply: fused kernel)")
            + ("  noisy" if r.noisy or any(g.noisy for g in p.gemms) else "")
        )
    wall = time.perf_counter() - t0
    scored = [r for r in results if r.measured_over_predicted is not None]
    print()
    print(f"{len(results)} rows timed in {wall:.0f} s, {timer.timed} GEMM/copy timings taken now")
    noisy = sum(1 for r in results if r.noisy)
    if noisy:
        print(f"noisy: {noisy} measurement(s) have an IQR over 10% of the median: is something else running?")
    if not scored:
        print("no row to score (every bound was fused or every configuration was skipped)")
        return 1
    errors = [abs(r.measured_over_predicted - 1) for r in scored]  # type: ignore[operator]
    print(
        f"median |measured/predicted - 1| = {statistics.median(errors):.3f} over {len(scored)} rows "
        f"(device {timer.device_name}, torch {torch.__version__}, dtypes {', '.join(dtypes)})"
    )
    for key, label in (("cell", "cell"), ("dtype", "dtype")):
        groups: dict[str, list[float]] = {}
        for r in scored:
            name = r.spec.cell if key == "cell" else r.dtype
            groups.setdefault(name, []).append(r.measured_over_predicted)  # type: ignore[arg-type]
        parts = [
            f"{k}: median ratio {_median(v):.3f}, error {_median([abs(x - 1) for x in v]):.3f}"
            for k, v in groups.items()
        ]
        print(f"by {label}: " + "; ".join(parts))
    fused = len(results) - len(scored)
    if fused:
        print(f"{fused} row(s) ran a fused (persistent) kernel: the bound does not apply, not scored")
    if args.output:
        write(Path(args.output), results, timer.device_name)
        print(f"wrote {args.output}")
    return 0


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def write(path: Path, results: list[pc.BenchResult], device_name: str) -> None:
    doc: dict[str, Any] = {
        "result": "bench_predict",
        "device_name": device_name,
        "torch": torch.__version__,
        "runs_schema": 1,
        "runs": [r.run_record() for r in results],
    }

    def dump(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
            fh.write("\n")

    atomic_write(Path(os.path.abspath(path)), dump)


if __name__ == "__main__":
    sys.exit(main())
