"""Devices side by side: JSON exports of bench, predict, compare and sweep merged into one table.

Every timed or predicted result's JSON export (``--output x.json``) carries a ``runs`` list
(``runs_schema`` 1), one entry per configuration::

    {"spec": {...RecurrentSpec fields...}, "workload": {...Workload fields...},
     "device": "cuda:0", "device_name": "NVIDIA H200", "threads": 16, "torch": "2.13.0",
     "kernel": "cuDNN" | null, "measured_s": median | null, "iqr_s": ... | null,
     "times_s": [per-call times] | null, "predicted_s": ... | null, "bound_applies": true | false | null}

:func:`load_runs` reads one file back and checks all of it (a regular file of at most
:data:`MAX_EXPORT_BYTES`, UTF-8 JSON, the schema number, every spec and workload validated as
if typed by hand, times within :data:`MIN_SECONDS` .. :data:`MAX_SECONDS`, thread counts up to
:data:`MAX_THREADS`): anything else is one :class:`ParamcalcError` line naming the file, the
run and the field. The file is untrusted: its device names, torch versions and kernels are kept
as text (at most :data:`MAX_LABEL` characters), never interpreted; each renderer escapes them
for the format it writes.
:func:`merge_files` puts the runs of several files (several machines) into one
:class:`MergedResult`, rows labelled by device name, plotted as bars per configuration and
device. Pure Python: no torch, no pandas.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..core.files import read_text
from ..core.spec import RecurrentSpec
from ..core.workload import Workload
from ..errors import ParamcalcError
from ..results.base import Result
from ..results.render import plural, safe_text
from ..results.table import Column, Table

#: The ``runs`` schema this version writes and reads.
RUNS_SCHEMA = 1
#: Largest export read back, and most runs in one file.
MAX_EXPORT_BYTES = 64 * 2**20
MAX_RUNS = 100_000
#: Longest device name, device or torch version string accepted.
MAX_LABEL = 200
#: Most files merged at once.
MAX_FILES = 1_000
#: Physical bounds of a time per call in a run (a nanosecond to about 31 years).
MIN_SECONDS = 1e-9
MAX_SECONDS = 1e9
#: Most threads a run may name.
MAX_THREADS = 2**20

_SPEC_KEYS = frozenset(f.name for f in fields(RecurrentSpec) if f.init)
_WORKLOAD_KEYS = frozenset(Workload.__dataclass_fields__)


@dataclass(frozen=True)
class Run:
    """One configuration timed or predicted on one device (one entry of ``runs``)."""

    spec: RecurrentSpec
    workload: Workload
    device: str
    device_name: str
    threads: int | None
    torch: str
    kernel: str | None
    measured_s: float | None
    iqr_s: float | None
    predicted_s: float | None
    bound_applies: bool | None
    source: str

    @property
    def seconds(self) -> float:
        """The measured median where there is one, else the prediction."""
        value = self.measured_s if self.measured_s is not None else self.predicted_s
        assert value is not None  # checked when read
        return value

    @property
    def tokens_per_s(self) -> float:
        return self.workload.tokens / self.seconds

    @property
    def measured_over_predicted(self) -> float | None:
        if self.measured_s is None or self.predicted_s is None or self.bound_applies is False:
            return None
        return self.measured_s / self.predicted_s

    def config_key(self) -> tuple[str, str]:
        return (self.spec.describe(), self.workload.describe())


# --- reading ---------------------------------------------------------------------------------


def _bad(path: Path, what: str) -> ParamcalcError:
    return ParamcalcError(f"{safe_text(str(path))}: {what}")


def _label(path: Path, i: int, rec: dict[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = rec.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_LABEL:
        raise _bad(path, f"run {i}: {key!r} must be a non-empty text of at most {MAX_LABEL} characters")
    return value


def _seconds(path: Path, i: int, rec: dict[str, Any], key: str) -> float | None:
    value = rec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(path, f"run {i}: {key!r} must be a finite number of seconds")
    try:
        seconds = float(value)  # an integer of hundreds of digits overflows
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise _bad(path, f"run {i}: {key!r} must be a finite number of seconds")
    if key == "iqr_s" and 0 <= seconds <= MAX_SECONDS:
        return seconds
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        within = f"a positive number of seconds from {MIN_SECONDS:g} to {MAX_SECONDS:g}"
        raise _bad(path, f"run {i}: {key!r} must be {within}, got {seconds:.3g}")
    return seconds


def _run(path: Path, i: int, rec: Any) -> Run:
    if not isinstance(rec, dict):
        raise _bad(path, f"run {i} is not an object")
    spec_d, wl_d = rec.get("spec"), rec.get("workload")
    if not isinstance(spec_d, dict) or not isinstance(wl_d, dict):
        raise _bad(path, f"run {i}: 'spec' and 'workload' must be objects")
    unknown = sorted(set(spec_d) - _SPEC_KEYS) + sorted(set(wl_d) - _WORKLOAD_KEYS)
    if unknown:
        raise _bad(
            path,
            f"run {i}: unknown {'field' if len(unknown) == 1 else 'fields'} "
            f"{', '.join(map(repr, unknown[:5]))}",
        )
    try:
        spec = RecurrentSpec(**spec_d)
        wl = dict(wl_d)
        if isinstance(wl.get("lengths"), list):
            wl["lengths"] = tuple(wl["lengths"])
        workload = Workload(**wl)
    except ParamcalcError as exc:
        raise _bad(path, f"run {i}: {exc}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise _bad(path, f"run {i}: malformed spec or workload ({str(exc)[:120]})") from None
    threads = rec.get("threads")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or not 0 <= threads <= MAX_THREADS
    ):
        raise _bad(path, f"run {i}: 'threads' must be an integer from 0 to {MAX_THREADS:,}")
    bound = rec.get("bound_applies")
    if bound is not None and not isinstance(bound, bool):
        raise _bad(path, f"run {i}: 'bound_applies' must be true, false or null")
    measured, predicted = _seconds(path, i, rec, "measured_s"), _seconds(path, i, rec, "predicted_s")
    if measured is None and predicted is None:
        raise _bad(path, f"run {i} has neither a measured nor a predicted time")
    return Run(
        spec=spec,
        workload=workload,
        device=_label(path, i, rec, "device") or "",
        device_name=_label(path, i, rec, "device_name") or "",
        threads=threads,
        torch=_label(path, i, rec, "torch") or "",
        kernel=_label(path, i, rec, "kernel", optional=True),
        measured_s=measured,
        iqr_s=_seconds(path, i, rec, "iqr_s"),
        predicted_s=predicted,
        bound_applies=bound,
        source=str(path),
    )


def load_runs(path: str | os.PathLike[str]) -> list[Run]:
    """The runs of one JSON export (see the module docstring); one-line errors otherwise."""
    p = Path(path)
    if p.suffix.lower() != ".json":
        raise _bad(p, "not a .json file: export results with --output FILE.json")
    text = read_text(p, MAX_EXPORT_BYTES, "paramcalc JSON export")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(p, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise _bad(p, "not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise _bad(p, f"not valid JSON ({str(exc).splitlines()[0][:80]})") from None
    if not isinstance(doc, dict) or "runs" not in doc:
        raise _bad(
            p,
            "not a paramcalc timing export: no 'runs' list (write one with bench, predict, "
            "compare --bench/--predict or sweep --bench/--predict and --output FILE.json)",
        )
    schema = doc.get("runs_schema")
    if schema != RUNS_SCHEMA:
        raise _bad(p, f"runs schema {str(schema)[:20]!r} is not {RUNS_SCHEMA}: written by another version?")
    runs = doc["runs"]
    if not isinstance(runs, list):
        raise _bad(p, "'runs' must be a list")
    if not runs:
        raise _bad(p, "has no runs: export results that were timed (--bench) or predicted (--predict)")
    if len(runs) > MAX_RUNS:
        raise _bad(p, f"has {len(runs):,} runs, more than {MAX_RUNS:,}")
    return [_run(p, i, rec) for i, rec in enumerate(runs)]


# --- the merged table ------------------------------------------------------------------------

MERGE_COLUMNS = (
    Column("device_name", "str"),
    Column("device", "str", wide=True),
    Column("cell", "str", fold=True),
    Column("input_size", wide=True),
    Column("hidden_size", fold=True),
    Column("num_layers", fold=True),
    Column("batch", fold=True),
    Column("seq_len", fold=True),
    Column("dtype", "str", fold=True),
    Column("mode", "str", fold=True),
    Column("time_ms", "float", unit="ms", doc="measured median per call"),
    Column("iqr_ms", "float", unit="ms", wide=True),
    Column("predicted_ms", "float", unit="ms", doc="the GEMM-sequence bound"),
    Column("measured_over_predicted", "float"),
    Column("tokens_per_s", "float", unit="1/s", doc="from time_ms, else from predicted_ms"),
    Column("kernel", "str", wide=True),
    Column("threads", wide=True),
    Column("torch", "str", wide=True),
    Column("spec", "str", wide=True),
    Column("file", "str", wide=True),
)


@dataclass(frozen=True, repr=False)
class MergedResult(Result):
    """Runs from several exports (machines), grouped by configuration, labelled by device name."""

    VIEWS = ("rows",)

    runs: tuple[Run, ...]
    files: tuple[str, ...]

    @property
    def devices(self) -> list[str]:
        return list(dict.fromkeys(r.device_name for r in self.runs))

    def configs(self) -> list[tuple[str, str]]:
        return list(dict.fromkeys(r.config_key() for r in self.runs))

    def ordered(self) -> list[Run]:
        """Runs grouped by configuration (first-seen order), files in the order given."""
        order = {k: i for i, k in enumerate(self.configs())}
        return sorted(self.runs, key=lambda r: order[r.config_key()])

    def _table(self, view: str) -> Table:
        rows = []
        for r in self.ordered():
            s, w = r.spec, r.workload
            rows.append(
                (
                    r.device_name,
                    r.device,
                    s.cell,
                    s.input_size,
                    s.hidden_size,
                    s.num_layers,
                    w.batch,
                    w.seq_len,
                    w.dtype,
                    w.mode,
                    None if r.measured_s is None else r.measured_s * 1e3,
                    None if r.iqr_s is None else r.iqr_s * 1e3,
                    None if r.predicted_s is None else r.predicted_s * 1e3,
                    r.measured_over_predicted,
                    r.tokens_per_s,
                    r.kernel,
                    r.threads,
                    r.torch,
                    s.describe(),
                    os.path.basename(r.source),
                )
            )
        return Table(MERGE_COLUMNS, tuple(rows))

    def title(self) -> str:
        devices = self.devices
        return (
            f"{plural(len(self.runs), 'run')} of {plural(len(self.configs()), 'configuration')} on "
            f"{plural(len(devices), 'device')} ({', '.join(devices)}) from {plural(len(self.files), 'file')}"
        )

    def headline(self) -> str:
        return self.title()

    def notes(self) -> list[str]:
        out = [
            "time_ms: measured median per call; predicted_ms: the GEMM-sequence bound (paramcalc predict); "
            "tokens_per_s from time_ms where measured, else from predicted_ms"
        ]
        if any(r.bound_applies is False for r in self.runs):
            out.append("measured_over_predicted is empty where the bound does not apply (a fused kernel)")
        versions = sorted({r.torch for r in self.runs})
        if len(versions) > 1:
            out.append(f"the runs come from different torch versions: {', '.join(versions)}")
        return out

    def meta(self) -> dict[str, Any]:
        return {
            "result": "merge",
            "files": list(self.files),
            "devices": self.devices,
            "runs_schema": RUNS_SCHEMA,
            "runs": [run_to_json(r) for r in self.ordered()],
        }

    def context(self) -> list[tuple[str, str]]:
        return [("files", ", ".join(self.files)), ("devices", ", ".join(self.devices))]

    def plot(self, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
        from ..results.plot import plot_devices

        return plot_devices(self, path, title=title)


def run_to_json(r: Run) -> dict[str, Any]:
    """A run as written in ``runs`` (a merged export can be merged again)."""
    return {
        "spec": r.spec.to_dict(),
        "workload": r.workload.to_dict(),
        "device": r.device,
        "device_name": r.device_name,
        "threads": r.threads,
        "torch": r.torch,
        "kernel": r.kernel,
        "measured_s": r.measured_s,
        "iqr_s": r.iqr_s,
        "times_s": None,
        "predicted_s": r.predicted_s,
        "bound_applies": r.bound_applies,
    }


def merge_files(paths: Sequence[str | os.PathLike[str]]) -> MergedResult:
    """Read every export in ``paths`` and merge their runs (see the module docstring)."""
    if not paths:
        raise ParamcalcError("name at least one JSON export to merge, e.g. compare --from a.json b.json")
    if len(paths) > MAX_FILES:
        raise ParamcalcError(f"at most {MAX_FILES:,} files can be merged, got {len(paths):,}")
    runs: list[Run] = []
    for p in paths:
        runs += load_runs(p)
        if len(runs) > MAX_RUNS:
            raise ParamcalcError(f"the files hold more than {MAX_RUNS:,} runs")
    return MergedResult(tuple(runs), tuple(str(p) for p in paths))
