"""pc.analyze on a 1,000-module model against torch's own ``sum(p.numel())``.

Builds (on the meta device, so no memory) a model of 1,000 small modules (LSTMs, GRUs,
Linears, LayerNorms and Embeddings in nested Sequentials), then times ``pc.analyze(model)``
and ``sum(p.numel() for p in model.parameters())`` with ``torch.utils.benchmark`` and prints the
ratio. Issue 13's target: at most 3x.

    python benchmarks/bench_analyze.py [--modules 1000]
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--modules", type=int, default=1000)
    args = ap.parse_args()
    m = model(args.modules)
    leaves = sum(1 for x in m.modules() if not list(x.children()))
    a = pc.analyze(m)
    assert a.actual_total == sum(p.numel() for p in m.parameters())
    t_pc = Timer("pc.analyze(m)", globals={"pc": pc, "m": m}).blocked_autorange(min_run_time=1.0)
    t_torch = Timer("sum(p.numel() for p in m.parameters())", globals={"m": m}).blocked_autorange(
        min_run_time=1.0
    )
    ratio = t_pc.median / t_torch.median
    print(f"model: {leaves} leaf modules, {a.actual_total:,} parameters (meta)")
    print(f"pc.analyze:                 {t_pc.median * 1e3:8.2f} ms")
    print(f"sum(p.numel()) (torch):     {t_torch.median * 1e3:8.2f} ms")
    print(f"ratio: {ratio:.2f}x (target <= {TARGET}x) -> {'MET' if ratio <= TARGET else 'MISSED'}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
