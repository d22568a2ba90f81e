"""The memory model against measured peaks: one fresh process per row (issue 14).

Each row of the grid (cells, sizes, batches, sequence lengths, dtypes, inference and training,
one reference-module cell) runs ``paramcalc.bench`` in a fresh Python process, so no row
inherits another's allocator state. ``bench`` measures the peak its timed calls held (CPU: the
resident-set growth over the state just before the first call, read from the kernel's reset
``VmHWM``, plus the parameters and input already resident; CUDA: ``max_memory_allocated``) and
predicts it with the memory model for the kernel path that ran. The table gives predicted,
measured and their ratio per row, then per mode the median and worst ``|measured/predicted - 1|``.

    python benchmarks/bench_memory.py [--device cpu|cuda] [--quick] [--threads 1]
        [--json results.json] [--markdown table.md] [--replay results.json] [--only lstm]
        [--calibration cudnn.json] [--calibrate]

``--replay`` recomputes the predictions of a saved ``--json`` run with the current model (no
measuring). On CUDA the model takes the device's facts from the file (capability, SMs, versions,
whether bf16 weights were flat: files written before paramcalc flattened them were not) and
cuDNN's training-workspace coefficients from ``--calibration`` (a replay) or the cache (a run;
:mod:`paramcalc.bridge.calibration`); the table's header says which. ``--calibrate`` with
``--device cuda`` measures them (about 400 traced training calls) and caches them for the
device. Rows whose predicted peak is above ``--max-gib`` (default 3.5) are skipped, so a run
stays within what a shared machine can spare. Exit status 0 when the median errors are within
:data:`TARGET` (on CUDA also no ratio outside :data:`RANGE`), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paramcalc import RecurrentSpec, Workload
from paramcalc.core.memory import CudaSetup, CudnnCalibration, memory_model

#: Median |measured/predicted - 1| the model must meet, per mode.
TARGET = 0.15
#: On CUDA every row's measured/predicted must lie within this range.
RANGE = (0.7, 1.5)
MIB = 1 << 20
#: Calls each row runs at least: the resident set of a native run keeps growing over the first
#: calls (the allocator's retention) before it levels off, and a planned run makes many calls.
MIN_CALLS = 6


@dataclass(frozen=True)
class Row:
    """One configuration: a spec (cell, sizes, layout keywords) and a workload."""

    cell: str
    d: int
    h: int
    layers: int
    batch: int
    seq_len: int
    dtype: str
    mode: str
    kw: dict[str, Any] = field(default_factory=dict)
    lengths: tuple[int, ...] | None = None
    holdout: bool = False  # not among the rows the model's allocator terms were fitted to

    def spec(self) -> RecurrentSpec:
        return RecurrentSpec(self.cell, self.d, self.h, num_layers=self.layers, **self.kw)

    def workload(self) -> Workload:
        return Workload(self.batch, self.seq_len, lengths=self.lengths, dtype=self.dtype, mode=self.mode)

    def label(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.kw.items())
        shape = f"B{self.batch} T{self.seq_len}" + (" packed" if self.lengths else "")
        return f"{self.cell} {self.d}/{self.h}/{self.layers}{extra} {shape} {self.dtype}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "d": self.d,
            "h": self.h,
            "layers": self.layers,
            "batch": self.batch,
            "seq_len": self.seq_len,
            "dtype": self.dtype,
            "mode": self.mode,
            "kw": self.kw,
            "lengths": list(self.lengths) if self.lengths else None,
            "holdout": self.holdout,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        lengths = d.get("lengths")
        return cls(
            d["cell"],
            d["d"],
            d["h"],
            d["layers"],
            d["batch"],
            d["seq_len"],
            d["dtype"],
            d["mode"],
            dict(d.get("kw") or {}),
            tuple(lengths) if lengths else None,
            bool(d.get("holdout", False)),
        )


def _lengths(batch: int, seq_len: int) -> tuple[int, ...]:
    """A packed batch: lengths falling evenly from seq_len to seq_len / 4."""
    return tuple(max(1, seq_len - (3 * seq_len * i) // (4 * max(1, batch - 1))) for i in range(batch))


def grid(quick: bool = False) -> list[Row]:
    """The configurations measured in docs/memory.md (``quick``: a small subset for a smoke run).

    Four shapes per cell: small (N·Dh·4 = 6.25 MiB blocks), two layers of 512, one layer of 1024
    with B·Dh·4 = 128 KiB step tensors (glibc's mmap threshold), and a long batch whose blocks
    (50 MiB) are above glibc's largest dynamic mmap threshold (32 MiB).
    """
    shapes = ((128, 256, 1, 32, 200), (256, 512, 2, 32, 200), (256, 1024, 1, 32, 100), (64, 256, 1, 128, 400))
    rows: list[Row] = []
    for mode in ("inference", "training"):
        for cell in ("rnn", "gru", "lstm"):
            for d, h, layers, b, t in shapes:
                rows.append(Row(cell, d, h, layers, b, t, "fp32", mode))
            rows.append(Row(cell, 128, 256, 1, 32, 200, "bf16", mode))
        d, h, layers, b, t = shapes[0]
        rows.append(Row("lstm", d, h, layers, b, t, "fp32", mode, {"bidirectional": True}))
        rows.append(Row("gru", d, h, 2, b, t, "fp32", mode, {"bidirectional": True}))
        rows.append(Row("lstm", d, 512, layers, b, t, "fp32", mode, {"proj_size": 256}))
        rows.append(Row("lstm", d, h, 2, 64, t, "fp32", mode, lengths=_lengths(64, t)))
        rows.append(Row("gru_cell", d, h, 1, b, t, "fp32", mode))
        rows.append(Row("lstm", d, h, 2, b, t, "fp32", mode, {"peephole": True}))
        rows.append(Row("gru", d, h, 2, b, 100, "fp32", mode, {"convention": "keras", "reset_after": False}))
        # held out: shapes added after the allocator terms were fitted
        for cell in ("rnn", "gru", "lstm"):
            rows.append(Row(cell, 96, 384, 3, 16, 300, "fp32", mode, holdout=True))
        rows.append(Row("lstm", 64, 512, 1, 48, 150, "fp32", mode, {"bidirectional": True}, holdout=True))
        rows.append(Row("mgu", 64, 384, 1, 24, 250, "fp32", mode, holdout=True))
    if quick:
        keep = {
            "rnn 128/256/1 B32 T200 fp32",
            "lstm 128/256/1 B32 T200 fp32",
            "gru_cell 128/256/1 B32 T200 fp32",
        }
        rows = [r for r in rows if r.label() in keep]
    return rows


def issue_rows() -> list[Row]:
    """The five runs issue 14 reported (2-core CPU, torch 2.13, oneDNN, one thread)."""
    return [
        Row("lstm", 256, 512, 3, 32, 500, "fp32", "training"),
        Row("gru", 256, 512, 3, 32, 500, "fp32", "training"),
        Row("lstm", 512, 1024, 2, 64, 200, "fp32", "training"),
        Row("lstm", 512, 1024, 2, 64, 200, "fp32", "inference"),
        Row("rnn", 256, 1024, 2, 64, 500, "fp32", "training"),
    ]


# --- the child: one row, one fresh process ----------------------------------------------------


def child(spec_json: str, device: str, threads: int, min_calls: int = MIN_CALLS) -> int:
    import paramcalc as pc

    row = Row.from_dict(json.loads(spec_json))
    # enough timing for MIN_CALLS calls (bench times single calls when one call is slow)
    rate = 2e10 if row.dtype == "fp32" else 4e9
    guess = pc.cost(row.spec(), row.workload()).flops / rate / threads
    min_time = min(60.0, max(0.5, min_calls * guess))
    t0 = time.perf_counter()
    r = pc.bench(row.spec(), row.workload(), device=device, threads=threads, min_run_time=min_time)
    print(
        json.dumps(
            {
                "path": r.kernel_path,
                "peak_bytes": r.peak_bytes,
                "predicted_peak_bytes": r.predicted_peak_bytes,
                "memory_estimate": r.memory_estimate,
                "method": r.peak_method,
                "calls": len(r.times) * r.number_per_run,
                "median_s": r.median_s,
                "seconds": time.perf_counter() - t0,
                "device_name": r.device_name,
                "torch": r.torch_version,
                **_cuda_facts(device),
            }
        )
    )
    return 0


def _cuda_facts(device: str) -> dict[str, Any]:
    """What the CUDA model needs to replay a row (a CUDA run only)."""
    if not device.startswith("cuda"):
        return {}
    import torch

    from paramcalc.bridge.calibration import device_key

    key = device_key(torch.device(device))
    return {"cuda_key": key, "bf16_weights_flat": True}  # bridge.driver.flatten_weights flattens bf16


def measure(
    row: Row,
    device: str,
    threads: int,
    timeout: float,
    env: dict[str, str] | None = None,
    min_calls: int = MIN_CALLS,
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", json.dumps(row.to_dict()), "--device", device]
    cmd += ["--threads", str(threads), "--min-calls", str(min_calls)]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:200]}
    return dict(json.loads(lines[-1]))


# --- the report -----------------------------------------------------------------------------------


def predicted(
    row: Row, path: str, device: str, live_only: bool = False, cuda: CudaSetup | None = None
) -> int:
    """The model's peak for ``row`` on ``path`` (``live_only``: without the allocator terms)."""
    m = memory_model(row.spec(), row.workload(), path, device_type=device.split(":")[0], cuda=cuda)
    return m.peak_bytes - (m.bytes_of("allocator") if live_only else 0)


def cuda_setup(saved: dict[str, Any], calibration: CudnnCalibration | None) -> CudaSetup:
    """The CUDA model's facts for a saved run: from its rows' ``cuda_key`` (new files), else from
    the calibration's key, else an assumed H100/H200-class device; bf16 weights flat only where
    the file says so (files written before paramcalc flattened them)."""
    rows = [r for r in saved["rows"] if "error" not in r]
    key = dict(rows[0].get("cuda_key") or {}) if rows else {}
    key = key or (dict(calibration.key) if calibration else {})
    sm = str(key.get("sm", ""))
    major, _, minor = sm.partition(".")
    capability = (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None
    sms = str(key.get("multiprocessors", ""))
    return CudaSetup(
        name=str(saved.get("device_name") or key.get("device") or ""),
        capability=capability,
        multiprocessors=int(sms) if sms.isdigit() else None,
        versions={k: str(v) for k, v in key.items() if k in ("driver", "cuda", "cudnn", "torch")},
        bf16_weights_flat=bool(rows and rows[0].get("bf16_weights_flat", False)),
        calibration=calibration,
    )


def header(saved: dict[str, Any], cuda: CudaSetup | None) -> list[str]:
    """What the predictions rest on: the device and versions, the calibration (CUDA)."""
    where = f"measured on {saved.get('device_name') or saved['device']}, torch {saved.get('torch') or '?'}"
    if cuda is None:
        return [f"{where}; predicted by the CPU memory model (docs/memory.md)", ""]
    cal = cuda.calibration
    lines = [
        f"{where}; predicted by the CUDA memory model for {cuda.describe()}",
        "cuDNN training workspace: "
        + (f"calibration {cal.describe()}" if cal else "no calibration (the inference form: a floor)"),
        f"bf16 weights: {'flat (one buffer)' if cuda.bf16_weights_flat else 'copied every call (not flat)'}",
    ]
    file_torch, cal_torch = str(saved.get("torch") or ""), dict(cal.key).get("torch", "") if cal else ""
    if file_torch and cal_torch and cal_torch != file_torch:
        lines.append(f"warning: the calibration is for torch {cal_torch}, the run used {file_torch}")
    return [*lines, ""]


def report(
    results: list[dict[str, Any]], device: str, live_only: bool = False, cuda: CudaSetup | None = None
) -> tuple[str, dict[str, tuple[float, float]]]:
    """A markdown table of every row and the median and worst error per mode (and the rows
    outside :data:`RANGE`, under the key ``outside``)."""
    lines = [
        "| mode | configuration | path | predicted MiB | measured MiB | ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    outside: list[str] = []
    errors: dict[str, list[tuple[float, str]]] = {"inference": [], "training": []}
    held: list[float] = []
    for res in results:
        row = Row.from_dict(res["row"])
        if "error" in res:
            lines.append(f"| {row.mode} | {row.label()} | - | - | - | {res['error']} |")
            continue
        pred = predicted(row, res["path"], device, live_only, cuda)
        ratio = res["peak_bytes"] / pred
        if not RANGE[0] <= ratio <= RANGE[1]:
            outside.append(f"{row.mode} {row.label()} ({ratio:.3f})")
        errors[row.mode].append((abs(ratio - 1), row.label()))
        if row.holdout:
            held.append(abs(ratio - 1))
        mark = " (held out)" if row.holdout else ""
        lines.append(
            f"| {row.mode} | {row.label()}{mark} | {res['path']} | {pred / MIB:,.1f} | "
            f"{res['peak_bytes'] / MIB:,.1f} | {ratio:.3f} |"
        )
    summary: dict[str, tuple[float, float]] = {}
    lines.append("")
    for mode, errs in errors.items():
        if not errs:
            continue
        med = statistics.median(e for e, _ in errs)
        worst, label = max(errs)
        summary[mode] = (med, worst)
        lines.append(
            f"{mode}: median |measured/predicted - 1| = {100 * med:.1f}% over {len(errs)} rows; "
            f"worst {100 * worst:.1f}% ({label})"
        )
    if held:
        lines.append(
            f"held-out rows: median |measured/predicted - 1| = {100 * statistics.median(held):.1f}% over "
            f"{len(held)} rows; worst {100 * max(held):.1f}%"
        )
    which = f" ({'; '.join(outside)})" if outside else ""
    lines.append(f"rows outside {RANGE[0]}-{RANGE[1]}: {len(outside)}{which}")
    summary["outside"] = (float(len(outside)), 0.0)
    return "\n".join(lines), summary


def _arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="three rows, for a smoke run")
    ap.add_argument("--issue", action="store_true", help="the five runs of issue 14 instead of the grid")
    ap.add_argument("--min-calls", type=int, default=MIN_CALLS, help="calls each row runs at least")
    ap.add_argument("--only", default="", help="run only rows whose label contains this text")
    ap.add_argument("--max-gib", type=float, default=3.5, help="skip rows predicted above this peak")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per row")
    ap.add_argument("--json", default="", help="write the measured rows here")
    ap.add_argument("--markdown", default="", help="write the table here")
    ap.add_argument("--replay", default="", help="recompute the predictions of a saved --json run")
    ap.add_argument(
        "--calibration",
        default="",
        help="a cuDNN calibration file for the CUDA model (default: a run uses the cache's, a replay none)",
    )
    ap.add_argument(
        "--fixed-mmap-threshold",
        action="store_true",
        help="run the children with MALLOC_MMAP_THRESHOLD_=131072 (glibc: no dynamic threshold, so freed "
        "blocks above 128 KiB go back to the OS and the resident set follows the live tensors)",
    )
    ap.add_argument(
        "--live-only",
        action="store_true",
        help="compare with the model's live tensors only (no allocator terms), for --fixed-mmap-threshold",
    )
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="measure cuDNN's training workspaces on --device (CUDA), fit and cache a calibration, stop",
    )
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    return ap.parse_args()


def _measure_grid(args: argparse.Namespace) -> dict[str, Any]:
    """Every row of the grid in a fresh process; the saved run (also written to ``--json``)."""
    device, results = args.device, []
    rows = [r for r in (issue_rows() if args.issue else grid(args.quick)) if args.only in r.label()]
    for i, row in enumerate(rows, 1):
        guess = memory_model(row.spec(), row.workload(), device_type=device.split(":")[0]).peak_bytes
        if guess > args.max_gib * (1 << 30):
            print(f"[{i}/{len(rows)}] {row.mode} {row.label()}: skipped (predicted {guess / MIB:,.0f} MiB)")
            continue
        env = {"MALLOC_MMAP_THRESHOLD_": str(128 << 10)} if args.fixed_mmap_threshold else None
        res = measure(row, device, args.threads, args.timeout, env, args.min_calls)
        res["row"] = row.to_dict()
        results.append(res)
        if "error" in res:
            print(f"[{i}/{len(rows)}] {row.mode} {row.label()}: {res['error']}", flush=True)
        else:
            print(
                f"[{i}/{len(rows)}] {row.mode} {row.label()}: {res['path']}, measured "
                f"{res['peak_bytes'] / MIB:,.1f} MiB, predicted "
                f"{res['predicted_peak_bytes'] / MIB:,.1f} MiB ({res['seconds']:.0f} s)",
                flush=True,
            )
    meta = next((r for r in results if "error" not in r), {})
    saved = {
        "device": device,
        "device_name": meta.get("device_name"),
        "torch": meta.get("torch"),
        "threads": args.threads,
        "fixed_mmap_threshold": args.fixed_mmap_threshold,
        "rows": results,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(saved, indent=1))
    return saved


def _calibration(args: argparse.Namespace, saved: dict[str, Any]) -> CudnnCalibration | None:
    """``--calibration``, else (a run, not a replay) the cache's for the device the rows ran on."""
    from paramcalc.bridge.calibration import load_calibration, read_calibration

    if args.calibration:
        return read_calibration(args.calibration)
    key = next((r.get("cuda_key") for r in saved["rows"] if r.get("cuda_key")), None)
    return None if args.replay or key is None else load_calibration(key)[0]


def main() -> int:
    args = _arguments()
    if args.child:
        return child(args.child, args.device, args.threads, args.min_calls)
    if args.calibrate:
        import torch

        from paramcalc.bridge.calibrate import measure_calibration
        from paramcalc.bridge.calibration import calibration_file

        cal = measure_calibration(torch.device(args.device))
        where = calibration_file(dict(cal.key))
        print(f"calibration {cal.describe()}: {len(cal.coef)} coefficient sets, saved to {where}")
        return 0
    saved = json.loads(Path(args.replay).read_text()) if args.replay else _measure_grid(args)
    device = saved["device"]
    cuda = cuda_setup(saved, _calibration(args, saved)) if device.startswith("cuda") else None
    table, summary = report(saved["rows"], device, args.live_only, cuda)
    table = "\n".join(header(saved, cuda)) + table
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    outside = summary.pop("outside", (0.0, 0.0))[0]
    ok = summary and all(med <= TARGET for med, _ in summary.values()) and (cuda is None or not outside)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
