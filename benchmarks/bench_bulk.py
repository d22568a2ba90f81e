"""Configurations per second of the bulk evaluator (``paramcalc.core.bulk``), the engine of ``design``.

A design space of 1,048,576 configurations (the eight built-in stacks; Dh 2..8192 in steps of 2;
1 to 16 layers; one or two directions; d = 80; batch 32, 200 steps, training), held as one
:class:`~paramcalc.core.bulk.Grid` per cell, is evaluated in bulk:

* **counts**: ``bulk.params`` (the parameters of every configuration, exact);
* **counts, FLOPs and memory**: ``params``, ``costs`` and ``training_bytes`` (the memory model
  of the kernel path that would run, with Adam), the analytic terms a search needs.

Each figure is the median of several passes (configurations per second; making the grids is
outside the timed passes), with the spread and the load average before and after, since the
machine is shared. A sample of configurations is checked against the per-spec engine first.
Issue 20's target: at least 1,000,000 configurations per second for the counts.

    python benchmarks/bench_bulk.py [--runs 7]

Exit status 0 when the target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import paramcalc as pc
from paramcalc.core import bulk
from paramcalc.core.costmodel import cost

TARGET_RATE = 1_000_000
CELLS = ("rnn", "lstm", "gru", "cifg", "mgu", "indrnn", "mingru", "minlstm")
WORKLOAD = pc.Workload(batch=32, seq_len=200, mode="training")


def grids() -> list[bulk.Grid]:
    h, layers, dirs = np.meshgrid(np.arange(2, 8193, 2), np.arange(1, 17), (1, 2), indexing="ij")
    return [bulk.grid(c, 80, WORKLOAD, h, layers, 0, dirs) for c in CELLS]


def counts(gs: list[bulk.Grid]) -> int:
    return sum(int(bulk.params(g)[-1]) for g in gs)


def analytic(gs: list[bulk.Grid]) -> int:
    out = 0
    for g in gs:
        out += int(bulk.params(g)[-1]) + int(bulk.costs(g).flops[-1]) + int(bulk.training_bytes(g)[-1])
    return out


def rates(fn: Callable[[Any], Any], gs: list[bulk.Grid], runs: int) -> list[float]:
    """Configurations per second of ``runs`` passes (after one warm-up pass)."""
    n = sum(len(g) for g in gs)
    fn(gs)
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(gs)
        out.append(n / (time.perf_counter() - start))
    return out


def check(gs: list[bulk.Grid]) -> int:
    """Every 9973rd configuration against the per-spec engine (exact); how many were checked."""
    checked = 0
    for g in gs:
        params, flops, memory = bulk.params(g), bulk.costs(g).flops, bulk.training_bytes(g)
        for i in range(0, len(g), 9973):
            spec = g.spec(i)
            c = cost(spec, WORKLOAD)
            assert (int(params[i]), int(flops[i]), int(memory[i])) == (
                pc.total_params(spec),
                c.flops,
                c.training_bytes,
            ), spec
            checked += 1
    return checked


def line(label: str, values: list[float]) -> str:
    return (
        f"{label:<44} {statistics.median(values):>12,.0f} /s  "
        f"(median of {len(values)}; {min(values):,.0f}..{max(values):,.0f})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="passes of each figure")
    args = ap.parse_args()
    gs = grids()
    n = sum(len(g) for g in gs)
    checked = check(gs)
    load_before = os.getloadavg()[0]
    count_rates = rates(counts, gs, args.runs)
    analytic_rates = rates(analytic, gs, args.runs)
    load_after = os.getloadavg()[0]
    rate = statistics.median(count_rates)
    print(f"grid: {n:,} configurations ({', '.join(CELLS)}; d 80; Dh 2..8192 step 2; 1-16 layers; uni/bi),")
    print(f"      {WORKLOAD.describe()}; {checked:,} sampled configurations equal the per-spec engine")
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after, on {os.cpu_count()} CPUs")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, paramcalc {pc.__version__}")
    print(line("counts (bulk.params)", count_rates))
    print(line("counts + FLOPs + training memory", analytic_rates))
    ok = rate >= TARGET_RATE
    print(f"counts: {rate:,.0f} configurations/s (target >= {TARGET_RATE:,}) -> {'MET' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
