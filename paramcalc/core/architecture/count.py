"""The analytic count of an architecture: every tensor with its formula, tied weights once.

A **tied** weight (``tie = "encoder"`` on a decoder ``linear``) is one tensor held by two
modules: it is listed under both, counted once, at its first appearance in component order,
exactly as ``nn.Module.parameters()`` deduplicates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import ParamcalcError
from ...results.base import Result
from ...results.table import Column, Table
from ...results.text import plural
from .graph import Architecture
from .toml import bundled_architectures, load_architecture

ARCH_TENSOR_COLUMNS = (
    Column("component", "str"),
    Column("name", "str"),
    Column("shape", "shape"),
    Column("numel"),
    Column("counted"),
    Column("formula", "str"),
    Column("tied_to", "str", doc="the tensor this one is, when it is counted there"),
)
ARCH_COMPONENT_COLUMNS = (
    Column("component", "str"),
    Column("kind", "str"),
    Column("module", "str"),
    Column("tensors"),
    Column("params"),
    Column("formula", "str", wide=True),
    Column("note", "str", wide=True),  # ties also show in the total line, buffers in the tensor view
)
ARCH_TOTAL_COLUMNS = (Column("architecture", "str"), Column("components"), Column("params"))


@dataclass(frozen=True)
class ArchTensorRow:
    """One tensor of an architecture; ``counted`` is 0 for the second holder of a tied weight."""

    component: str
    name: str  # full name, as named_parameters() gives it: "<component>.<tensor>"
    shape: tuple[int, ...]
    numel: int
    counted: int
    formula: str
    tied_to: str | None = None  # full name of the tensor this one is (when counted elsewhere)


@dataclass(frozen=True)
class ArchComponentRow:
    component: str
    kind: str
    module: str
    tensors: int
    params: int  # counted (tied weights once)
    formula: str
    note: str
    all_params: int = 0  # every tensor of the component, a tied weight included


@dataclass(frozen=True, repr=False)
class ArchitectureCount(Result):
    """The analytic count of an architecture. Views: ``tensor`` (default), ``component``, ``total``."""

    VIEWS = ("tensor", "component", "total")

    arch: Architecture
    rows: tuple[ArchTensorRow, ...]
    components: tuple[ArchComponentRow, ...]
    total: int
    source: str = ""

    @property
    def tied(self) -> tuple[ArchTensorRow, ...]:
        return tuple(r for r in self.rows if r.tied_to)

    @property
    def unique_rows(self) -> tuple[ArchTensorRow, ...]:
        """The tensors ``named_parameters()`` yields: tied weights once, at first appearance."""
        return tuple(r for r in self.rows if not r.tied_to)

    def _table(self, view: str) -> Table:
        if view == "tensor":
            return Table(
                ARCH_TENSOR_COLUMNS,
                tuple(
                    (r.component, r.name, r.shape, r.numel, r.counted, r.formula, r.tied_to)
                    for r in self.rows
                ),
            )
        if view == "component":
            return Table(
                ARCH_COMPONENT_COLUMNS,
                tuple(
                    (c.component, c.kind, c.module, c.tensors, c.params, c.formula, c.note or None)
                    for c in self.components
                ),
            )
        return Table(ARCH_TOTAL_COLUMNS, ((self.arch.name, len(self.components), self.total),))

    def title(self) -> str:
        where = f" ({self.source})" if self.source else ""
        desc = f": {self.arch.description}" if self.arch.description else ""
        return f"architecture {self.arch.name!r}{where}{desc}"

    def headline(self) -> str:
        return f"architecture {self.arch.name!r}: {plural(self.total, 'parameter')}"

    def summary(self, view: str | None = None) -> list[str]:
        lines = []
        for c in self.components if view in (None, "tensor") else ():
            counted_as = f"{c.formula} = {c.all_params:,}" if c.tensors else "no parameters"
            line = f"{c.component}: {c.module}: {counted_as}"
            if c.all_params != c.params:
                line += f"; counted here {c.params:,}"
            lines.append(line + (f"  [{c.note}]" if c.note else ""))
        tied = f" ({plural(len(self.tied), 'tied tensor')} counted once)" if self.tied else ""
        lines.append(f"total: {plural(self.total, 'parameter')}{tied}")
        return lines

    def meta(self) -> dict[str, Any]:
        return {"architecture": self.arch.name, "file": self.source or None, "total": self.total}

    def context(self) -> list[tuple[str, str]]:
        return [("architecture", self.arch.name), ("total", f"{self.total:,}")]


def count_architecture(arch: Architecture, source: str = "") -> ArchitectureCount:
    """Every tensor of ``arch`` with its formula; tied weights counted once (first appearance)."""
    if not isinstance(arch, Architecture):
        raise ParamcalcError(f"count_architecture needs an Architecture, got {type(arch).__name__}")
    # A tie makes two (component, "weight") names one tensor; its key is the target's name.
    key_of: dict[str, str] = {}
    for c in arch.components:
        if c.tie:
            key_of[f"{c.name}.weight"] = f"{c.tie}.weight"
    targets = set(key_of.values())
    first: dict[str, str] = {}
    rows: list[ArchTensorRow] = []
    comps: list[ArchComponentRow] = []
    for c in arch.components:
        counted_here = 0
        notes = []
        ts = c.tensors()
        for i, t in enumerate(ts):
            full = f"{c.name}.{t.name}"
            # only a tie makes two tensors one; Keras' names repeat per layer and direction
            key = key_of.get(full) or (full if full in targets else f"{full}#{i}")
            if key in first:
                rows.append(ArchTensorRow(c.name, full, t.shape, t.numel, 0, t.formula, first[key]))
                notes.append(f"{t.name} tied to {first[key]} (counted once)")
                continue
            first[key] = full
            rows.append(ArchTensorRow(c.name, full, t.shape, t.numel, t.numel, t.formula))
            counted_here += t.numel
        if c.tie and not notes:
            notes.append(f"weight shared with {c.tie}.weight (counted here, first appearance)")
        if c.remark():
            notes.append(c.remark())
        comps.append(
            ArchComponentRow(
                c.name,
                c.kind,
                c.describe(),
                len(ts),
                counted_here,
                c.formula(),
                "; ".join(notes),
                sum(t.numel for t in ts),
            )
        )
    total = sum(r.counted for r in rows)
    return ArchitectureCount(arch, tuple(rows), tuple(comps), total, source)


BUNDLED_COLUMNS = (
    Column("name", "str", doc="what paramcalc report takes"),
    Column("architecture", "str", wide=True, doc="the name the file gives"),
    Column("components"),
    Column("params"),
    Column("description", "str"),
)


class BundledArchitectures(Result):
    """The example architectures shipped with paramcalc (``paramcalc report --list``)."""

    VIEWS = ("rows",)

    def __init__(self) -> None:
        self.counts = {
            name: count_architecture(load_architecture(p)) for name, p in bundled_architectures().items()
        }

    def _table(self, view: str) -> Table:
        rows = [
            (name, c.arch.name, len(c.arch.components), c.total, c.arch.description)
            for name, c in self.counts.items()
        ]
        return Table(BUNDLED_COLUMNS, tuple(rows))

    def title(self) -> str:
        return "architectures bundled with paramcalc: paramcalc report NAME"
