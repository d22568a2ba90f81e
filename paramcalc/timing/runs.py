"""The cross-machine ``runs`` JSON: its one home (schema, key columns, writer, reader).

Every timed or predicted result's JSON export (``bench``, ``predict``, ``compare`` and ``sweep``
with ``output="x.json"``) carries ``runs_schema`` (:data:`RUNS_SCHEMA`) and a ``runs`` list, one
entry per configuration, written by :func:`record` alone::

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

:data:`KEY_COLUMNS` are the columns that say which configuration ran where, declared once for
every table of runs (bench, predict, the merged table) and the configuration columns of a
sweep; :func:`key_values` gives their values. Pure Python: no torch, no pandas.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Protocol

from ..core.files import read_text
from ..core.spec import RecurrentSpec
from ..core.workload import Workload
from ..errors import ParamcalcError
from ..results.table import Column
from ..results.text import safe_text

#: The ``runs`` schema this version writes and reads.
RUNS_SCHEMA = 1
#: Largest export read back, and most runs in one file.
MAX_EXPORT_BYTES = 64 * 2**20
MAX_RUNS = 100_000
#: Longest device name, device or torch version string accepted.
MAX_LABEL = 200
#: Physical bounds of a time per call in a run (a nanosecond to about 31 years).
MIN_SECONDS = 1e-9
MAX_SECONDS = 1e9
#: Most threads a run may name.
MAX_THREADS = 2**20

_SPEC_KEYS = frozenset(f.name for f in fields(RecurrentSpec) if f.init)
_WORKLOAD_KEYS = frozenset(Workload.__dataclass_fields__)


# --- the key columns ----------------------------------------------------------------------------

#: Which configuration ran where, in this order in every table of runs. Shown: the cell and its
#: hidden size; the rest is in the title and with ``wide`` (a table's view may fold or show more).
KEY_COLUMNS: tuple[Column, ...] = (
    Column("spec", "str", wide=True, doc="the spec in one line"),
    Column("cell", "str", doc="the recurrent cell (paramcalc explain CELL shows its equations)"),
    Column("input_size", wide=True, doc="input features d"),
    Column("hidden_size", doc="hidden size Dh of each layer"),
    Column("num_layers", wide=True, doc="stacked layers L"),
    Column("batch", wide=True, doc="sequences per batch B"),
    Column("seq_len", wide=True, doc="time steps T"),
    Column("dtype", "str", wide=True, doc="the dtype of parameters and activations"),
    Column("mode", "str", wide=True, doc="inference (forward) or training (forward + backward)"),
    Column("device", "str", wide=True, doc="the device it ran or was predicted on"),
    Column("device_name", "str", wide=True, doc="the device's name (a CPU's model, a GPU's name)"),
    Column("threads", wide=True, doc="torch's CPU threads"),
    Column("torch", "str", wide=True, doc="torch's version"),
)
_KEYS = {c.name: c for c in KEY_COLUMNS}


def key_columns(
    names: Iterable[str] | None = None,
    *,
    shown: Iterable[str] = (),
    wide: Iterable[str] = (),
    fold: bool = False,
) -> tuple[Column, ...]:
    """The key columns ``names`` (all, in :data:`KEY_COLUMNS` order, by default) for one table:
    those in ``shown`` out of ``wide``, those in ``wide`` into it, every one a ``fold`` column
    with ``fold`` (stated once under a table whose rows share its value)."""
    show, hide = set(shown), set(wide)
    out = []
    for name in names if names is not None else _KEYS:
        c = _KEYS[name]
        out.append(replace(c, wide=(c.wide or name in hide) and name not in show, fold=fold or c.fold))
    return tuple(out)


def key_values(spec: RecurrentSpec, workload: Workload, env: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values of :data:`KEY_COLUMNS` for one run (``env``: :func:`~paramcalc.timing.base.environment`;
    without one the device columns are ``None``)."""
    env = env or {}
    return {
        "spec": spec.describe(),
        "cell": spec.cell,
        "input_size": spec.input_size,
        "hidden_size": spec.hidden_size,
        "num_layers": spec.num_layers,
        "batch": workload.batch,
        "seq_len": workload.seq_len,
        "dtype": workload.dtype,
        "mode": workload.mode,
        "device": env.get("device"),
        "device_name": env.get("device_name"),
        "threads": env.get("threads"),
        "torch": env.get("torch"),
    }


# --- writing ------------------------------------------------------------------------------------


class Measured(Protocol):
    """What :func:`record` reads of a timed run (a ``BenchResult``)."""

    @property
    def times(self) -> tuple[float, ...]: ...
    @property
    def iqr_s(self) -> float: ...
    @property
    def kernel_path(self) -> str: ...
    def environment(self) -> dict[str, Any]: ...


class Predicted(Protocol):
    """What :func:`record` reads of a prediction (a ``PredictResult``)."""

    @property
    def seconds(self) -> float: ...
    @property
    def bound_applies(self) -> bool: ...
    def environment(self) -> dict[str, Any]: ...


def record(
    spec: RecurrentSpec, workload: Workload, measured: Measured | None, predicted: Predicted | None
) -> dict[str, Any]:
    """One entry of ``runs``: a configuration timed (``measured``), predicted, or both."""
    source = measured if measured is not None else predicted
    if source is None:
        raise ValueError("a run is timed, predicted or both")
    times = list(measured.times) if measured is not None and measured.times else None
    env = source.environment()
    return {
        "spec": spec.to_dict(),
        "workload": workload.to_dict(),
        "device": env["device"],
        "device_name": env["device_name"],
        "threads": env["threads"],
        "torch": env["torch"],
        "kernel": None if measured is None else measured.kernel_path,
        "measured_s": statistics.median(times) if times else None,
        "iqr_s": None if measured is None else measured.iqr_s,
        "times_s": times,
        "predicted_s": None if predicted is None else predicted.seconds,
        "bound_applies": None if predicted is None else predicted.bound_applies,
    }


def runs_meta(kind: str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The JSON header entries that carry ``records`` (what ``compare --from`` reads back)."""
    return {"result": kind, "runs_schema": RUNS_SCHEMA, "runs": list(records)}


# --- reading ------------------------------------------------------------------------------------


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

    def environment(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "device_name": self.device_name,
            "threads": self.threads,
            "torch": self.torch,
        }

    def to_json(self) -> dict[str, Any]:
        """This run as written in ``runs`` (a merged export can be merged again)."""
        env = self.environment()
        return {
            "spec": self.spec.to_dict(),
            "workload": self.workload.to_dict(),
            **env,
            "kernel": self.kernel,
            "measured_s": self.measured_s,
            "iqr_s": self.iqr_s,
            "times_s": None,
            "predicted_s": self.predicted_s,
            "bound_applies": self.bound_applies,
        }


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


def _configuration(path: Path, i: int, rec: dict[str, Any]) -> tuple[RecurrentSpec, Workload]:
    """The spec and workload of run ``i``, validated as if typed by hand."""
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
        wl = dict(wl_d)
        if isinstance(wl.get("lengths"), list):
            wl["lengths"] = tuple(wl["lengths"])
        return RecurrentSpec(**spec_d), Workload(**wl)
    except ParamcalcError as exc:
        raise _bad(path, f"run {i}: {exc}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise _bad(path, f"run {i}: malformed spec or workload ({str(exc)[:120]})") from None


def _run(path: Path, i: int, rec: Any) -> Run:
    if not isinstance(rec, dict):
        raise _bad(path, f"run {i} is not an object")
    spec, workload = _configuration(path, i, rec)
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


def _document(p: Path) -> Any:
    """The parsed JSON of export ``p`` (one line for a file that is not JSON)."""
    text = read_text(p, MAX_EXPORT_BYTES, "paramcalc JSON export")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(p, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise _bad(p, "not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # an integer beyond Python's digit limit
        raise _bad(p, f"not valid JSON ({str(exc).splitlines()[0][:80]})") from None


def load_runs(path: str | os.PathLike[str]) -> list[Run]:
    """The runs of one JSON export (see the module docstring); one-line errors otherwise."""
    p = Path(path)
    if p.suffix.lower() != ".json":
        raise _bad(p, "not a .json file: export results with `output='FILE.json'`")
    doc = _document(p)
    if not isinstance(doc, dict) or "runs" not in doc:
        raise _bad(
            p,
            "not a paramcalc timing export: no 'runs' list (write one with bench, predict, or compare "
            "or sweep with `bench=True` or `predict=True`, and `output='FILE.json'`)",
        )
    schema = doc.get("runs_schema")
    if schema != RUNS_SCHEMA:
        raise _bad(p, f"runs schema {str(schema)[:20]!r} is not {RUNS_SCHEMA}: written by another version?")
    runs = doc["runs"]
    if not isinstance(runs, list):
        raise _bad(p, "'runs' must be a list")
    if not runs:
        raise _bad(
            p, "has no runs: export results that were timed (`bench=True`) or predicted (`predict=True`)"
        )
    if len(runs) > MAX_RUNS:
        raise _bad(p, f"has {len(runs):,} runs, more than {MAX_RUNS:,}")
    return [_run(p, i, rec) for i, rec in enumerate(runs)]
