"""``paramcalc inspect config.json``: a language model read from a Hugging Face ``config.json``,
its tensors with their formulas (symbolic, substituted, value), its totals, FLOPs per token and
inference state; with ``check``, every tensor against the ``transformers`` model built on the meta
device (names and shapes; :mod:`paramcalc.checks.hfcheck`).

Pure Python: the result is made from a :class:`~.base.LanguageModel`; the comparison's actual
shapes are handed in (a mapping name -> shape), so nothing here imports torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...results.base import Result, Status
from ...results.table import Column, Table
from ...results.text import fmt_bytes, plural
from .. import shapes
from .base import LanguageModel

#: A layer index in a tensor name (``backbone.layers.3.`` -> ``backbone.layers.{i}.``).
_INDEX = re.compile(r"\.(\d+)\.")

FORMULA_COLUMNS = (
    Column("tensor", "str", doc="the tensor's name; {i} stands for the layer index"),
    Column("layers", doc="how many layers hold it"),
    Column("formula", "str", doc="its element count over the block's sizes"),
    Column("substituted", "str", doc="the formula with the configuration's values"),
    Column("numel", doc="elements of one such tensor"),
    Column("total", doc="numel × layers", wide=True),
)
TENSOR_COLUMNS = (
    Column("tensor", "str"),
    Column("block", "str", doc="the registry entry it belongs to"),
    Column("shape", "shape"),
    Column("numel"),
)
CHECK_COLUMNS = (
    Column("hf shape", "shape", doc="the shape in transformers' model built on the meta device"),
    Column("status", "str"),
)


@dataclass(frozen=True)
class FormulaRow:
    tensor: str
    layers: int
    formula: str
    substituted: str
    numel: int


@dataclass(frozen=True, repr=False)
class ModelReport(Result):
    """A language model's tensors and formulas (view ``formula``: one row per tensor of a layer,
    with how many layers hold it; view ``tensor``: every tensor), totals, FLOPs and state; with
    ``actual`` (names -> shapes of the reference implementation) a tensor-by-tensor check."""

    VIEWS = ("formula", "tensor")
    KIND = "model"

    model: LanguageModel
    actual: Mapping[str, tuple[int, ...]] | None = None
    reference: str = ""
    extra_notes: tuple[str, ...] = field(default=())

    # -- rows -------------------------------------------------------------------------------
    def formula_rows(self) -> list[FormulaRow]:
        m = self.model
        d = m.d_model
        vocab = "vocab" if m.vocab == m.vocab_padded else "vocab_padded"
        rows: dict[tuple[str, str, str, int], int] = {}
        first: dict[tuple[str, str, str, int], str] = {}
        rows[(m.embedding, f"{vocab}·d_model", f"{m.vocab_padded}·{d}", m.vocab_padded * d)] = 1
        for b in m.blocks:
            for name, sym, num, value in b.formulas():
                key = (_INDEX.sub(".{i}.", name), sym, num, value)
                rows[key] = rows.get(key, 0) + 1
                first.setdefault(key, name)
        for t in m.final:
            rows[(t.name, "·".join(["d_model"] * len(t.shape)), str(t.numel), t.numel)] = 1
        if m.head is not None:
            rows[(m.head, f"{vocab}·d_model", f"{m.vocab_padded}·{d}", m.vocab_padded * d)] = 1
        # a tensor of one layer only (RWKV's pre_ln on block 0) keeps its own name
        return [
            FormulaRow(first[k] if n == 1 and k in first else k[0], n, k[1], k[2], k[3])
            for k, n in rows.items()
        ]

    def check_rows(self) -> list[tuple[str, tuple[int, ...] | None, tuple[int, ...] | None, str]]:
        """``(name, paramcalc shape, actual shape, status)`` for every tensor of either side."""
        if self.actual is None:
            return []
        ours = {t.name: t.shape for t in self.model.tensors()}
        out: list[tuple[str, tuple[int, ...] | None, tuple[int, ...] | None, str]] = []
        for name, shape in ours.items():
            got = self.actual.get(name)
            status = "ok" if got == shape else ("missing" if got is None else "mismatch")
            out.append((name, shape, got, status))
        out.extend((name, None, shape, "extra") for name, shape in self.actual.items() if name not in ours)
        return out

    @property
    def status(self) -> Status:
        if self.actual is None:
            return Status.OK
        return Status.OK if all(r[3] == "ok" for r in self.check_rows()) else Status.MISMATCH

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    def _table(self, view: str) -> Table:
        checked = self.actual is not None
        if view == "formula":
            status: dict[str, list[str]] = {}
            for name, _s, _a, st in self.check_rows():
                status.setdefault(_INDEX.sub(".{i}.", name), []).append(st)
                status.setdefault(name, []).append(st)
            cols = FORMULA_COLUMNS + ((CHECK_COLUMNS[1],) if checked else ())
            rows = []
            for r in self.formula_rows():
                row: tuple[Any, ...] = (
                    r.tensor,
                    r.layers,
                    r.formula,
                    r.substituted,
                    r.numel,
                    r.numel * r.layers,
                )
                if checked:
                    sts = status.get(r.tensor, ["missing"])
                    bad = sorted({s for s in sts if s != "ok"})
                    row += ("ok" if not bad else "/".join(bad),)
                rows.append(row)
            extra = [
                (n, 1, "", "", shapes.numel(a or ()), 0, "extra")
                for n, _s, a, st in self.check_rows()
                if st == "extra"
            ]
            return Table(cols, tuple(rows) + tuple(extra))
        if checked:
            blocks = {t.name: t.block for t in self.model.tensors()}
            return Table(
                TENSOR_COLUMNS + CHECK_COLUMNS,
                tuple(
                    (n, blocks.get(n, ""), s, shapes.numel(s) if s is not None else None, a, st)
                    for n, s, a, st in self.check_rows()
                ),
            )
        return Table(TENSOR_COLUMNS, tuple((t.name, t.block, t.shape, t.numel) for t in self.model.tensors()))

    # -- lines around the table ---------------------------------------------------------------
    def title(self) -> str:
        m = self.model
        src = f" ({m.source})" if m.source else ""
        return f"{m.name}: {m.model_type}, {plural(len(m.blocks), 'block')}, d_model {m.d_model}{src}"

    def headline(self) -> str:
        return f"{self.model.name}: {plural(self.model.params, 'parameter')}"

    def summary(self, view: str | None = None) -> list[str]:
        m = self.model
        emb = m.vocab_padded * m.d_model
        tie = "tied with the head" if m.tied else f"untied head {emb:,}"
        blocks = sum(b.params for b in m.blocks)
        lines = [
            f"total {plural(m.params, 'parameter')}: embedding {emb:,} ({tie}), blocks {blocks:,}, "
            f"final {sum(t.numel for t in m.final):,}",
            f"forward {m.flops_per_token():,} FLOPs per token (head included); "
            f"state {fmt_bytes(m.state_bytes())} per sequence in float32",
        ]
        if self.actual is not None:
            bad = [r for r in self.check_rows() if r[3] != "ok"]
            ref = self.reference or "the reference"
            lines.append(
                f"check against {ref}: {plural(len(self.check_rows()) - len(bad), 'tensor')} agree"
                + (f", {len(bad)} disagree" if bad else "")
                + f" -> {self.status}"
            )
        return lines

    def notes(self) -> list[str]:
        return [*self.model.notes, *self.extra_notes]

    def meta(self) -> dict[str, Any]:
        m = self.model
        out: dict[str, Any] = {
            "name": m.name,
            "model_type": m.model_type,
            "source": m.source,
            "params": m.params,
            "d_model": m.d_model,
            "vocab": m.vocab,
            "vocab_padded": m.vocab_padded,
            "tied": m.tied,
            "flops_per_token": m.flops_per_token(),
            "state_elements": m.state_elements(),
        }
        if self.actual is not None:
            out["check"] = {"reference": self.reference, "status": str(self.status)}
        return out


def report(model: LanguageModel) -> ModelReport:
    """The report of ``model`` (no check)."""
    return ModelReport(model)
