"""Scale of ``paramcalc check`` on ``meta``: a ~17-billion-parameter LSTM stack, as a whole process.

Runs ``paramcalc check lstm -d 16384 -H 16384 -L 8`` (17,180,917,760 parameters) as a
subprocess, measures its wall time and peak resident memory
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``: the largest peak of any finished child),
and prints both against the targets of issue 3: at most 5 s wall and at most 500 MB peak RSS
on a 2-core machine. On ``meta`` torch allocates no parameter memory, and torchinfo's
``summary(model, verbose=0)`` (no input data: no forward pass) only adds up parameters, so
both figures stay small whatever the model size.

    python benchmarks/bench_check_scale.py [--runs 3]

Exit status 0 when the slowest run and the peak RSS meet the targets, 1 otherwise.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 5.0
TARGET_MB = 500.0
ARGS = ["check", "lstm", "-d", "16384", "-H", "16384", "-L", "8"]
EXPECTED_TOTAL = "17,180,917,760"  # 8 · 4(h·d + h·h + 2h) with h = d = 16384


def maxrss_mb() -> float:
    """Peak RSS of the largest finished child so far (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("paramcalc")  # the console script of this environment
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "paramcalc"]
    cmd += ARGS
    walls = []
    out = None
    for _ in range(max(args.runs, 1)):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - t0)
        if out.returncode != 0:
            print(out.stdout + out.stderr)
            print(f"paramcalc check exited {out.returncode}")
            return 1
    peak = maxrss_mb()
    assert out is not None
    if EXPECTED_TOTAL not in out.stdout or "OK: all 32 tensors" not in out.stdout:
        print(out.stdout)
        print("the check did not report the expected total and agreement")
        return 1
    ok = max(walls) <= TARGET_S and peak <= TARGET_MB
    print(f"command:    {' '.join(cmd)}")
    print(f"parameters: {EXPECTED_TOTAL} (analytic, torch and torchinfo agree, on meta)")
    print(f"runs:       {len(walls)}")
    print(f"wall time:  max {max(walls):.2f} s, min {min(walls):.2f} s  (target <= {TARGET_S:.0f} s)")
    print(f"peak RSS:   {peak:.0f} MB, largest child  (target <= {TARGET_MB:.0f} MB)")
    print(f"targets:    {'MET' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
