"""pc.analyze on a 1,000-module model against torch's own ``sum(p.numel())``.

Builds (on the meta device, so no memory) a model of 1,000 small modules (LSTMs, GRUs,
Linears, LayerNorms and Embeddings in nested Sequentials), then times ``pc.analyze(model)``
and ``sum(p.numel() for p in model.parameters())`` with ``torch.utils.benchmark`` in
alternating rounds and prints the median ratio (issue 13's target: at most 3x). Also shown:
the analysis with its verdict read, and with every per-tensor row built (rows are built
when first read).

    python benchmarks/bench_analyze.py [--modules 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from torch import nn
from torch.utils.benchmark import Timer

import paramcalc as pc

TARGET = 3.0


def model(n: int) -> nn.Module:
    kinds = [
        lambda: nn.LSTM(16, 16),
        lambda: nn.GRU(16, 16, 2),
        lambda: nn.Linear(16, 16),
        lambda: nn.LayerNorm(16),
        lambda: nn.Embedding(32, 16),
    ]
    with torch.device("meta"):
        blocks = [nn.Sequential(*(kinds[(i + j) % len(kinds)]() for j in range(10))) for i in range(n // 10)]
        return nn.Sequential(*blocks)


def _median(stmt: str, glob: dict[str, object], min_run_time: float) -> float:
    return Timer(stmt, globals=glob).blocked_autorange(min_run_time=min_run_time).median


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--modules", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (the ratio is their median)")
    args = ap.parse_args()
    m = model(args.modules)
    leaves = sum(1 for x in m.modules() if not list(x.children()))
    a = pc.analyze(m)
    assert a.actual_total == sum(p.numel() for p in m.parameters())
    assert a.ok and len(a.tensors) == sum(1 for _ in m.parameters())
    glob = {"pc": pc, "m": m}
    stmts = {
        "pc.analyze(m)": "pc.analyze(m)",
        "+ the verdict": "pc.analyze(m).status",
        "+ every tensor row": "len(pc.analyze(m).tensors)",
    }
    # Each ratio pairs a torch measurement with the paramcalc one right after it, so that a
    # shared machine's load, which drifts over seconds, weighs on both sides alike.
    times: dict[str, list[float]] = {k: [] for k in [*stmts, "torch"]}
    ratios: dict[str, list[float]] = {k: [] for k in stmts}
    for _ in range(args.rounds):
        for label, stmt in stmts.items():
            t_torch = _median("sum(p.numel() for p in m.parameters())", glob, 0.2)
            t = _median(stmt, glob, 0.2)
            times["torch"].append(t_torch)
            times[label].append(t)
            ratios[label].append(t / t_torch)
    med = statistics.median
    print(f"model: {leaves} leaf modules, {a.actual_total:,} parameters (meta); {args.rounds} rounds")
    print(f"sum(p.numel()) (torch):    {med(times['torch']) * 1e3:8.2f} ms")
    for label in stmts:
        print(f"{label:<26} {med(times[label]) * 1e3:8.2f} ms  ratio {med(ratios[label]):.2f}x")
    ratio = med(ratios["pc.analyze(m)"])
    print(f"ratio: {ratio:.2f}x (target <= {TARGET}x) -> {'MET' if ratio <= TARGET else 'MISSED'}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
