"""Start-up time of an analytic query versus importing torch, as whole processes.

Runs ``paramcalc count lstm -d 28 -H 256 -L 2`` and ``python -c "import torch"`` N times each
(interleaved, after one warm-up run of each), prints both medians and their ratio, and checks
the targets from issue 2: median at most 150 ms, and at least 10x faster than importing torch.

    python benchmarks/bench_cli_startup.py [--runs 20]

Exit status 0 when both targets are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_MS = 150.0
TARGET_RATIO = 10.0


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("paramcalc")  # the console script of this environment
    query = [str(exe)] if exe.exists() else [sys.executable, "-m", "paramcalc"]
    query += ["count", "lstm", "-d", "28", "-H", "256", "-L", "2"]
    torch_cmd = [sys.executable, "-c", "import torch"]
    timed(query), timed(torch_cmd)  # warm the file cache
    q_ms, t_ms = [], []
    for _ in range(max(args.runs, 10)):
        q_ms.append(timed(query))
        t_ms.append(timed(torch_cmd))
    q, t = statistics.median(q_ms), statistics.median(t_ms)
    ratio = t / q
    print(f"command:               {' '.join(query)}")
    print(f"runs:                  {len(q_ms)} each, interleaved")
    print(f"paramcalc count:       median {q:7.1f} ms  (min {min(q_ms):.1f}, max {max(q_ms):.1f})")
    print(f"python -c 'import torch': median {t:7.1f} ms  (min {min(t_ms):.1f}, max {max(t_ms):.1f})")
    print(f"ratio import-torch / count: {ratio:.1f}x")
    ok = q <= TARGET_MS and ratio >= TARGET_RATIO
    verdict = "MET" if ok else "MISSED"
    print(f"targets: median <= {TARGET_MS:.0f} ms and ratio >= {TARGET_RATIO:.0f}x -> {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
