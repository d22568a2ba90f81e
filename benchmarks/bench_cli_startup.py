"""Start-up of an analytic query against the floor of importing click and tabulate.

Runs ``paramcalc count lstm -d 28 -H 256 -L 2`` and ``python -c "import click, tabulate"`` (what
any click + tabulate tool pays before doing anything) N times each, interleaved, after a warm-up
that writes the package's bytecode (as an installed package has it), and prints both medians and
their ratio. Issue 13's target: the ratio at most 1.25. It also prints ``import torch`` for scale.

    python benchmarks/bench_cli_startup.py [--runs 30]

Exit status 0 when the target is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_RATIO = 1.25
ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    compileall.compile_dir(str(ROOT / "paramcalc"), quiet=1)
    exe = Path(sys.executable).with_name("paramcalc")  # the console script of this environment
    query = [str(exe)] if exe.exists() else [sys.executable, "-m", "paramcalc"]
    query += ["count", "lstm", "-d", "28", "-H", "256", "-L", "2"]
    floor = [sys.executable, "-c", "import click, tabulate"]
    torch_cmd = [sys.executable, "-c", "import torch"]
    for cmd in (query, floor, torch_cmd):
        timed(cmd, env)  # warm the file cache
    q_ms, f_ms = [], []
    for _ in range(max(args.runs, 10)):
        q_ms.append(timed(query, env))
        f_ms.append(timed(floor, env))
    t_ms = [timed(torch_cmd, env) for _ in range(5)]
    q, f, t = statistics.median(q_ms), statistics.median(f_ms), statistics.median(t_ms)
    ratio = q / f
    print(f"command:                        {' '.join(query)}")
    print(f"runs:                           {len(q_ms)} each, interleaved")
    print(f"paramcalc count:                median {q:7.1f} ms  (min {min(q_ms):.1f})")
    print(f"import click, tabulate (floor): median {f:7.1f} ms  (min {min(f_ms):.1f})")
    print(f"import torch (for scale):       median {t:7.1f} ms")
    print(f"ratio count / floor:            {ratio:.2f}x (min/min {min(q_ms) / min(f_ms):.2f}x)")
    ok = ratio <= TARGET_RATIO
    print(f"target: ratio <= {TARGET_RATIO} -> {'MET' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
