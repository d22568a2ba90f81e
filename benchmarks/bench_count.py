"""The cost of one analytic question: a fresh spec's count and cost against torch on ``meta``.

On a grid of 1,536 configurations (rnn, lstm, gru; d 8..1024; Dh 32..2048; 1 to 4 layers;
unidirectional or bidirectional; with or without biases), each pass builds a new
``RecurrentSpec`` for every configuration and asks for

* ``count(spec).total``, with memoisation off (:func:`paramcalc.core.memo.disabled`: nothing is
  served from a cache; an entry's templates are compiled once per layout, which is the design);
* ``cost(spec, workload).flops`` (batch 32, 50 steps), the same way;
* the same stack built as the ``torch.nn`` module on the ``meta`` device and
  ``sum(p.numel() for p in module.parameters())``: what a user without paramcalc would run.

Each figure is the median of several passes (configurations per second), with the spread and
the machine's load average, since a shared machine is noisy. Issue 17's targets: count at least
25,000 configurations per second, and at least 10x the torch-on-meta rate.

    python benchmarks/bench_count.py [--runs 7] [--torch-runs 3]

Exit status 0 when both targets are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import paramcalc as pc
from paramcalc.core import memo

TARGET_RATE = 25_000
TARGET_RATIO = 10.0
CELLS = ("rnn", "lstm", "gru")
GRID = list(
    itertools.product(
        CELLS,
        (8, 16, 32, 64, 128, 256, 512, 1024),  # d
        (32, 128, 512, 2048),  # Dh
        (1, 2, 3, 4),  # layers
        (False, True),  # bidirectional
        (True, False),  # bias
    )
)
WORKLOAD = pc.Workload(batch=32, seq_len=50)


def count_pass() -> int:
    total = 0
    for cell, d, h, layers, bidirectional, bias in GRID:
        spec = pc.RecurrentSpec(cell, d, h, num_layers=layers, bidirectional=bidirectional, bias=bias)
        total += pc.count(spec).total
    return total


def cost_pass() -> int:
    total = 0
    for cell, d, h, layers, bidirectional, bias in GRID:
        spec = pc.RecurrentSpec(cell, d, h, num_layers=layers, bidirectional=bidirectional, bias=bias)
        total += pc.cost(spec, WORKLOAD).flops
    return total


def torch_pass() -> int:
    import torch
    from torch import nn

    classes = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
    total = 0
    with torch.device("meta"):
        for cell, d, h, layers, bidirectional, bias in GRID:
            module = classes[cell](d, h, num_layers=layers, bidirectional=bidirectional, bias=bias)
            total += sum(p.numel() for p in module.parameters())
    return total


def rates(fn: Callable[[], Any], runs: int) -> list[float]:
    """Configurations per second of ``runs`` passes over the grid (after one warm-up pass)."""
    fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(len(GRID) / (time.perf_counter() - start))
    return out


def line(label: str, values: list[float]) -> str:
    return (
        f"{label:<44} {statistics.median(values):>9,.0f} /s  "
        f"(median of {len(values)}; {min(values):,.0f}..{max(values):,.0f})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="passes for count and cost")
    ap.add_argument("--torch-runs", type=int, default=3, help="passes for torch on meta")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    with memo.disabled():
        count_rates = rates(count_pass, args.runs)
        cost_rates = rates(cost_pass, args.runs)
    import torch  # imported outside the timed passes

    torch_rates = rates(torch_pass, args.torch_runs)
    assert count_pass() == torch_pass()  # the same parameters, configuration by configuration
    load_after = os.getloadavg()[0]
    count_rate, torch_rate = statistics.median(count_rates), statistics.median(torch_rates)
    ratio = count_rate / torch_rate
    ok = count_rate >= TARGET_RATE and ratio >= TARGET_RATIO
    print(f"grid: {len(GRID):,} configurations ({', '.join(CELLS)}; d 8..1024; Dh 32..2048; 1-4 layers;")
    print("      uni/bidirectional; bias or not), a fresh RecurrentSpec per configuration")
    print(f"load average (1 min): {load_before:.2f} before, {load_after:.2f} after, on {os.cpu_count()} CPUs")
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, paramcalc {pc.__version__}")
    print(line("count(spec).total, memoisation off", count_rates))
    print(line(f"cost(spec, {WORKLOAD.describe()}).flops, same", cost_rates))
    print(line("torch.nn module on meta + sum(numel)", torch_rates))
    print(
        f"count: {count_rate:,.0f}/s (target >= {TARGET_RATE:,}), {ratio:.1f}x torch on meta "
        f"(target >= {TARGET_RATIO:.0f}x) -> {'MET' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
