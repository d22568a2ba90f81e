"""Devices side by side: JSON exports of bench, predict, compare and sweep merged into one table.

The exports' ``runs`` are read back through :mod:`paramcalc.timing.runs` (the schema, its
reader and validator: every file is untrusted input). :func:`merge_files` puts the runs of
several files (several machines) into one :class:`MergedResult`, rows labelled by device name,
plotted as bars per configuration and device. Pure Python: no torch, no pandas.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ParamcalcError
from ..results.base import Result
from ..results.table import Column, Table
from ..results.text import plural
from .runs import MAX_RUNS, RUNS_SCHEMA, Run, key_columns, key_values, load_runs

#: Most files merged at once.
MAX_FILES = 1_000


# --- the merged table ------------------------------------------------------------------------

#: The configuration a merged row is of: folded under the table when every row shares it.
_CONFIG = ("cell", "input_size", "hidden_size", "num_layers", "batch", "seq_len", "dtype", "mode")
MERGE_COLUMNS = (
    *key_columns(("device_name", "device"), shown={"device_name"}),
    *key_columns(_CONFIG, shown=set(_CONFIG) - {"input_size"}, fold=True),
    Column("time_ms", "float", unit="ms", doc="measured median per call"),
    Column("iqr_ms", "float", unit="ms", wide=True),
    Column("predicted_ms", "float", unit="ms", doc="the GEMM-sequence bound"),
    Column("measured_over_predicted", "float"),
    Column("tokens_per_s", "float", unit="1/s", doc="from time_ms, else from predicted_ms"),
    Column("kernel", "str", wide=True),
    *key_columns(("threads", "torch", "spec")),
    Column("file", "str", wide=True),
)


@dataclass(frozen=True, repr=False)
class MergedResult(Result):
    """Runs from several exports (machines), grouped by configuration, labelled by device name."""

    VIEWS = ("rows",)
    KIND = "devices"  # plotted as bars per device (paramcalc.render.plot)

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
        return Table.from_records(MERGE_COLUMNS, (_record(r) for r in self.ordered()))

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
            "runs": [r.to_json() for r in self.ordered()],
        }

    def context(self) -> list[tuple[str, str]]:
        return [("files", ", ".join(self.files)), ("devices", ", ".join(self.devices))]


def _record(r: Run) -> dict[str, Any]:
    """One merged row by column name."""
    return {
        **key_values(r.spec, r.workload, r.environment()),
        "time_ms": None if r.measured_s is None else r.measured_s * 1e3,
        "iqr_ms": None if r.iqr_s is None else r.iqr_s * 1e3,
        "predicted_ms": None if r.predicted_s is None else r.predicted_s * 1e3,
        "measured_over_predicted": r.measured_over_predicted,
        "tokens_per_s": r.tokens_per_s,
        "kernel": r.kernel,
        "file": os.path.basename(r.source),
    }


def merge_files(paths: Sequence[str | os.PathLike[str]]) -> MergedResult:
    """Read every export in ``paths`` and merge their runs (see the module docstring)."""
    if not paths:
        raise ParamcalcError(
            "name at least one JSON export to merge, e.g. `merge_files(['a.json', 'b.json'])`"
        )
    if len(paths) > MAX_FILES:
        raise ParamcalcError(f"at most {MAX_FILES:,} files can be merged, got {len(paths):,}")
    runs: list[Run] = []
    for p in paths:
        runs += load_runs(p)
        if len(runs) > MAX_RUNS:
            raise ParamcalcError(f"the files hold more than {MAX_RUNS:,} runs")
    return MergedResult(tuple(runs), tuple(str(p) for p in paths))
