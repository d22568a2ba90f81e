"""minGRU and minLSTM's reference modules: the parallel log-space scan against the step loop.

Both run the same module (the same weights; the loop is the module with its scan switched off,
``module.scan = None``) on the same input, forward (inference) and forward + backward (training),
timed with torch.utils.benchmark (``blocked_autorange``). The outputs are compared first. On a CPU
the scan does more work per element (logarithms, exponentials, a log-cumsum-exp per sign of b)
and has little parallelism to gain; on a GPU the loop's kernel launches per step are what the
scan removes. Run it on both:

    python benchmarks/bench_scan.py [--device cpu|cuda] [--threads N] [--min-time 0.5]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch.utils.benchmark import Timer

import paramcalc as pc
from paramcalc.bridge.modules import ReferenceRecurrent

CASES = (
    ("mingru", 256, 32, 200),
    ("mingru", 1024, 32, 200),
    ("minlstm", 256, 32, 200),
    ("mingru", 256, 8, 2000),
)


def timed(fn, threads: int, min_time: float, device: torch.device) -> float:
    def call() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return float(
        Timer("call()", globals={"call": call}, num_threads=threads)
        .blocked_autorange(min_run_time=min_time)
        .median
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-time", type=float, default=0.5)
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.set_num_threads(args.threads)
    print(f"device {dev}, {args.threads} thread(s), torch {torch.__version__}, load {os.getloadavg()[0]:.2f}")
    print(
        f"{'cell':<8} {'Dh':>5} {'B':>4} {'T':>5}  {'mode':<9} {'scan ms':>9} {'loop ms':>9} {'loop/scan':>9}"
    )
    for cell, h, b, t in CASES:
        spec = pc.RecurrentSpec(cell, 64, h)
        torch.manual_seed(0)
        scan = ReferenceRecurrent(spec, device=dev)
        loop = ReferenceRecurrent(spec, device=dev)
        loop.load_state_dict(scan.state_dict())
        loop.scan = None
        x = torch.randn(t, b, 64, device=dev)
        with torch.no_grad():
            torch.testing.assert_close(scan(x)[0], loop(x)[0], rtol=1e-3, atol=1e-4)
        for mode in ("inference", "training"):
            times = []
            for m in (scan, loop):
                if mode == "inference":

                    def fn(m=m, x=x) -> None:
                        with torch.no_grad():
                            m(x)
                else:

                    def fn(m=m, x=x) -> None:
                        m.zero_grad(set_to_none=True)
                        m(x)[0].sum().backward()

                times.append(timed(fn, args.threads, args.min_time, dev))
            s, lp = times
            print(
                f"{cell:<8} {h:>5} {b:>4} {t:>5}  {mode:<9} {s * 1e3:>9.2f} {lp * 1e3:>9.2f} {lp / s:>9.2f}"
            )
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
