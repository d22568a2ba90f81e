"""Benchmark of the benchmark: what ``paramcalc bench`` costs beyond the time it times.

For ``LSTM(28, 256, 2)``, batch 64, T 28, fp32 inference on CPU, in one process:

* **cost of a bench call**: the wall time of each ``paramcalc.bench(...)`` call divided by its
  timed time (the seconds spent inside the timed calls, ``BenchResult.timed_s``). The first
  call runs on an empty GEMM cache (a temporary folder), so it also times the prediction's GEMM
  shapes and the copy bandwidth; every later call reads them from the cache. Target: the warm
  ratio at most :data:`RATIO_TARGET` (set-up, warm-up, kernel-path probe and a cached
  prediction cost less than half the timed time; the GEMM of the old efficiency column doubled
  it).
* **accuracy of its median**: ``paramcalc.bench`` alternated with a bare
  ``torch.utils.benchmark.Timer("m(x)")`` loop of the same forward (eval mode,
  ``torch.inference_mode()``, the same thread count, a short warm-up), round after round with
  the order flipped each round. Target from issue 5: paramcalc's median at most
  :data:`TARGET` times the bare loop's.

    python benchmarks/bench_overhead.py [--rounds 6] [--min-time 0.5] [--threads N]

Exit status 0 when both targets are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch
from torch import nn
from torch.utils.benchmark import Timer

import paramcalc as pc

TARGET = 1.03
RATIO_TARGET = 1.5
D, H, L, BATCH, T = 28, 256, 2, 64, 28


def bare_median(module: nn.Module, x: torch.Tensor, threads: int, min_time: float) -> float:
    """The textbook loop: warm up, then Timer.blocked_autorange on the bare forward."""
    with torch.inference_mode():
        for _ in range(3):
            module(x)
        timer = Timer("m(x)", globals={"m": module, "x": x}, num_threads=threads)
        return float(timer.blocked_autorange(min_run_time=min_time).median)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds of timing per measurement")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()

    spec = pc.RecurrentSpec("lstm", D, H, num_layers=L)
    workload = pc.Workload(batch=BATCH, seq_len=T)
    torch.manual_seed(0)
    module = nn.LSTM(D, H, L).eval()
    x = torch.randn(T, BATCH, D)

    ours, bare, walls, timed, kernel, ratio_pred = [], [], [], [], "", []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="paramcalc-cache-") as cache:
        os.environ["PARAMCALC_CACHE_DIR"] = cache  # the first call meets an empty cache
        for i in range(max(args.rounds, 2)):
            order = ("paramcalc", "bare") if i % 2 == 0 else ("bare", "paramcalc")
            for who in order:
                if who == "bare":
                    bare.append(bare_median(module, x, args.threads, args.min_time))
                    continue
                start = time.perf_counter()
                r = pc.bench(spec, workload, device="cpu", threads=args.threads, min_run_time=args.min_time)
                walls.append(time.perf_counter() - start)
                timed.append(r.timed_s)
                ours.append(r.median_s)
                kernel = r.kernel_path
                if r.measured_over_predicted is not None:
                    ratio_pred.append(r.measured_over_predicted)
    wall = time.perf_counter() - t0

    ratios = [a / b for a, b in zip(ours, bare, strict=True)]
    ratio = statistics.median(ours) / statistics.median(bare)
    cost = [w / t for w, t in zip(walls, timed, strict=True)]
    warm = statistics.median(cost[1:])
    print(f"case:                 {spec.describe()}, batch {BATCH}, seq_len {T}, fp32 inference, cpu")
    print(f"torch {torch.__version__}, {args.threads} threads, kernel path {kernel}")
    print(
        f"rounds:               {len(ours)} (order alternating), --min-time {args.min_time} s, {wall:.1f} s"
    )
    print(
        "bench wall / timed:   "
        + ", ".join(f"{c:.2f}" for c in cost)
        + f"  (first: empty GEMM cache {cost[0]:.2f}; later, cached: median {warm:.2f})"
    )
    print("bench wall per call:  " + ", ".join(f"{w:.2f} s" for w in walls))
    if ratio_pred:
        print(f"measured/predicted:   median {statistics.median(ratio_pred):.3f} (GEMM-sequence bound)")
    print("paramcalc bench:      median " + _ms(ours))
    print("bare Timer loop:      median " + _ms(bare))
    print(f"per-round ratios:     {', '.join(f'{q:.3f}' for q in ratios)}")
    print(f"ratio paramcalc/bare: {ratio:.3f}  (median of per-round ratios {statistics.median(ratios):.3f})")
    ok_cost = warm <= RATIO_TARGET
    ok = ratio <= TARGET
    print(f"target: cached bench wall / timed <= {RATIO_TARGET:.2f} -> {'MET' if ok_cost else 'MISSED'}")
    print(f"target: ratio paramcalc/bare <= {TARGET:.2f} -> {'MET' if ok else 'MISSED'}")
    return 0 if ok and ok_cost else 1


def _ms(times: list[float]) -> str:
    med = statistics.median(times) * 1e3
    return f"{med:7.3f} ms  (min {min(times) * 1e3:.3f}, max {max(times) * 1e3:.3f})"


if __name__ == "__main__":
    sys.exit(main())
