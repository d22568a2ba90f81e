"""``paramcalc explain CELL``: the cell's equations and what every tensor multiplies.

The seed note's "weight_ih is (1024, 28) because four gate blocks" as a command: for the given
sizes, each tensor with its shape, the term of the equations it enters, its gate blocks and the
reason for its shape. Pure Python, from the cell's registry entry.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from ..results.base import Result
from ..results.table import Column, Table
from ..results.text import plural
from .cells import ONNX_NAMES, TensorTemplate
from .coerce import as_spec
from .params import count, dims
from .spec import RecurrentSpec

EXPLAIN_COLUMNS = (
    Column("tensor", "str"),
    Column("shape", "shape"),
    Column("numel"),
    Column("term", "str", doc="the product or sum of the equations the tensor enters"),
    Column("why", "str"),
)


def _rule_why(spec: RecurrentSpec, t: TensorTemplate) -> str:
    """Why a tensor with its own shape rule, or of some gate blocks only, has its shape."""
    ct, dm = spec.cell_type, dims(spec, 0)
    env = dm.env(t.gates_of(ct.gates))
    named = {n.id for node in t.nodes for n in ast.walk(node) if isinstance(n, ast.Name)}
    sizes = ", ".join(f"{k}={v}" for k, v in env.items() if k in named and k != "G")
    rule = f"shape rule ({', '.join(t.rule)})" + (f" with {sizes}" if sizes else "")
    if not t.blocks:
        return rule
    g = len(t.blocks)
    return f"{g} of {ct.gates} gate blocks ({', '.join(t.blocks)}), G={g}: {rule}"


def _why(spec: RecurrentSpec, kind: str, layer: int, shape: tuple[int, ...]) -> str:
    ct = spec.cell_type
    dm = dims(spec, layer)
    g, h = ct.gates, spec.hidden_size
    blocks = f"{g} gate block{'s' if g > 1 else ''} ({', '.join(ct.gate_names)}) of Dh={h} rows"
    d_what = "input features d" if layer == 0 else "features from the layer below"
    keras = spec.convention == "keras"
    rows_cols = "columns" if keras else "rows"
    if kind == "input":
        return f"{blocks.replace('rows', rows_cols)} x {dm.d} {d_what}"
    if kind == "recurrent":
        width = f"P={spec.proj_size} projected" if spec.proj_size else f"Dh={h}"
        return f"{blocks.replace('rows', rows_cols)} x {width} recurrent features"
    if kind == "recurrent_diag":
        return f"one recurrent weight per hidden unit (Dh={h}): u ⊙ h, no matrix"
    if kind == "bias":
        lead = f"{shape[0]} vectors x " if len(shape) == 2 else ""
        return f"{lead}{blocks.replace(' rows', '')}"
    if kind == "peephole":
        return f"one diagonal weight per cell unit (Dh={h}) on c"
    return f"projects Dh={h} down to P={spec.proj_size}"


@dataclass(frozen=True)
class ExplainRow:
    tensor: str
    shape: tuple[int, ...]
    numel: int
    term: str
    why: str


@dataclass(frozen=True, repr=False)
class Explanation(Result):
    """A cell's equations and its tensors (first layer and direction) for the given sizes."""

    VIEWS = ("tensor",)

    spec: RecurrentSpec
    equations: tuple[str, ...]
    rows: tuple[ExplainRow, ...]

    def _table(self, view: str) -> Table:
        return Table(EXPLAIN_COLUMNS, tuple((r.tensor, r.shape, r.numel, r.term, r.why) for r in self.rows))

    def title(self) -> str:
        ct = self.spec.cell_type
        return f"{self.spec.describe()}  [{ct.layout_note(self.spec)}]"

    def headline(self) -> str:
        return f"{self.spec.describe()}: {len(self.equations)} equations"

    def header(self) -> list[str]:
        return [self.title(), "", *(f"  {e}" for e in self.equations), ""]

    def summary(self, view: str | None = None) -> list[str]:
        s = self.spec
        if s.cell_type.single_step or (s.num_layers == 1 and not s.bidirectional):
            return []
        if s.convention == "onnx":
            if s.num_layers == 1:
                return []
            return [
                f"layer 0 shown (W, R, B, P hold both directions); {plural(s.num_layers, 'layer')} in all; "
                f"layers above the first take {s.stack_output_size} features"
            ]
        return [
            f"layer 0, forward direction shown; {plural(s.num_layers, 'layer')} x "
            f"{plural(s.num_directions, 'direction')} in all; "
            f"layers above the first take {s.stack_output_size} features"
        ]

    def meta(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "equations": list(self.equations)}


def _onnx_why(spec: RecurrentSpec, kind: str, shape: tuple[int, ...]) -> str:
    """Why an ONNX input (``W``, ``R``, ``B``, ``P``, leading dimension: directions) has its shape."""
    ct = spec.cell_type
    gates = ct.onnx_gate_names or ct.gate_names
    g, h = ct.gates, spec.hidden_size
    nd = shape[0]
    lead = f"{nd} direction{'s' if nd > 1 else ''} x "
    order = ", ONNX's order" if g > 1 else ""
    blocks = f"{g} gate block{'s' if g > 1 else ''} ({', '.join(gates)}{order}) of Dh={h}"
    if kind == "input":
        return f"{lead}{blocks} rows x {spec.input_size} input features d"
    if kind in ("recurrent", "recurrent_diag"):
        return f"{lead}{blocks} rows x Dh={h} recurrent features"
    if kind == "bias":
        return f"{lead}Wb and Rb concatenated: 2 x {blocks}"
    peep = sorted(ct.peephole_gates, key=lambda gate: _onnx_position(spec, gate))
    return f"{lead}{len(peep)} diagonal weights ({', '.join(peep)}) of Dh={h} on c"


def _onnx_position(spec: RecurrentSpec, gate: str) -> int:
    """Where ONNX puts ``gate`` among the gate blocks (its ``P`` follows that order: ``iof``)."""
    gates = spec.cell_type.onnx_gate_names or spec.cell_type.gate_names
    return gates.index(gate) if gate in gates else len(gates)


def _onnx_rows(spec: RecurrentSpec) -> tuple[ExplainRow, ...]:
    """ONNX's operator inputs of the first layer: each holds both directions (its first axis)."""
    templates = spec.cell_type.templates_for(spec)
    first = spec.replace(num_layers=1, merge_mode="concat")
    rows = []
    for r in count(first).rows:
        kinds = [kind for kind, name in ONNX_NAMES.items() if name == r.name]
        same = sorted((t for t in templates if t.kind in kinds), key=lambda t: _onnx_position(spec, t.gate))
        term = " and ".join(t.term for t in same)
        rows.append(ExplainRow(r.name, r.shape, r.numel, term, _onnx_why(spec, same[0].kind, r.shape)))
    return tuple(rows)


def explain(spec: RecurrentSpec) -> Explanation:
    """The equations of ``spec``'s cell and what each tensor of its first layer multiplies."""
    spec = as_spec(spec, "explain")
    ct = spec.cell_type
    if spec.convention == "onnx":
        return Explanation(spec, ct.equations_for(spec), _onnx_rows(spec))
    templates = ct.templates_for(spec)
    by_name: dict[str, Any] = {}
    for t in templates:
        by_name.setdefault(t.keras_name if spec.convention == "keras" else t.torch_name, t)
    first = spec.replace(num_layers=1, bidirectional=False, merge_mode="concat")
    rows = []
    for r in count(first).rows:
        base = r.name if spec.convention == "keras" else r.name.removesuffix("_l0")
        t = by_name[base]
        same = [u for u in templates if u.keras_name == t.keras_name] if spec.convention == "keras" else [t]
        term = " and ".join(u.term for u in same)
        custom = t.shape_rule or t.blocks
        why = _rule_why(spec, t) if custom else _why(spec, t.kind, 0, r.shape)
        rows.append(ExplainRow(r.name, r.shape, r.numel, term, why))
    return Explanation(spec, ct.equations_for(spec), tuple(rows))
