"""``paramcalc explain mamba``: a block's equations and which tensor implements each term, with
each tensor's shape rule, its role in the cost model and what it is. Pure Python, from the
block's registry entry (symbolic: no sizes needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...results.base import Result
from ...results.table import Column, Table
from .base import BlockType
from .registry import get_block

BLOCK_COLUMNS = (
    Column("tensor", "str"),
    Column("shape", "str", doc="the shape rule over the block's sizes"),
    Column("role", "str", doc="how it is priced: gemm (2 FLOPs a weight a token), conv, vector, norm"),
    Column("terms", "str", doc="the equations whose terms it implements"),
    Column("what", "str"),
)


@dataclass(frozen=True, repr=False)
class BlockExplanation(Result):
    """A block's equations (above the table) and its tensors with the terms they implement."""

    VIEWS = ("tensor",)
    KIND = "block"

    block: BlockType

    def _table(self, view: str) -> Table:
        b = self.block
        rows = []
        for t in b.tensors:
            terms = [str(i + 1) for i, (_eq, parts) in enumerate(b.equations) if t.name in parts]
            shape = "(" + ", ".join(t.rule) + ")"
            what = t.note + (f" (only when {t.when} is set)" if t.when else "")
            rows.append((t.name, shape, t.role, ", ".join(terms) or "-", what))
        return Table(BLOCK_COLUMNS, tuple(rows))

    def title(self) -> str:
        return f"{self.block.name}: {self.block.title}"

    def headline(self) -> str:
        return f"{self.block.name}: {len(self.block.equations)} equations"

    def header(self) -> list[str]:
        eqs = [f"  ({i + 1}) {eq}" for i, (eq, _parts) in enumerate(self.block.equations)]
        return [self.title(), "", *eqs, ""]

    def summary(self, view: str | None = None) -> list[str]:
        b = self.block
        state = ", ".join(f"{s.name} ({', '.join(s.rule)})" for s in b.state) or "none"
        return [
            f"sizes: {', '.join(b.sizes)}",
            f"recurrence: {b.form}; state per layer and sequence: {state}",
            f"FLOPs per token beyond the GEMMs and convolutions: scan {b.scan_flops}, other {b.extra_flops}",
            *([f"layout: {b.reference}"] if b.reference else []),
        ]

    def meta(self) -> dict[str, Any]:
        b = self.block
        return {
            "block": b.name,
            "equations": [eq for eq, _parts in b.equations],
            "sizes": list(b.sizes),
            "form": b.form,
            "state": {s.name: list(s.rule) for s in b.state},
            "scan_flops": b.scan_flops,
            "extra_flops": b.extra_flops,
        }


def explain_block(name: str | BlockType) -> BlockExplanation:
    """The equations of the registered block ``name`` and the tensor behind each term."""
    return BlockExplanation(name if isinstance(name, BlockType) else get_block(name))
