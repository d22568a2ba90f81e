"""Closed-form parameter counts, tensor by tensor, named as PyTorch (or Keras) names them.

Every tensor comes from the cell's templates (:class:`paramcalc.core.cells.TensorTemplate`).
Per layer and direction, with ``G`` gate blocks, hidden size ``Dh``, layer input ``d``,
projection ``P`` (0 for none), ``R = P or Dh`` and ``B`` bias vectors per gate block, the
classic cells give::

    params = G(Dh·d + Dh·R + B·Dh) + P·Dh

plus ``k·Dh`` for ``k`` peephole vectors; IndRNN's recurrent weight is ``Dh`` (a vector), and
minGRU/minLSTM have no recurrent weight. PyTorch stores ``weight_ih (G·Dh, d)``,
``weight_hh (G·Dh, R)``, ``bias_ih``/``bias_hh (G·Dh)``, ``weight_c{i,f,o} (Dh)``,
``weight_hr (P, Dh)``; Keras stores ``kernel (d, G·u)``, ``recurrent_kernel (u, G·u)`` and one
``bias`` of ``(G·u)`` or ``(2, G·u)``. Layer ``k > 0`` takes the previous layer's output:
``num_directions·(P or Dh)``, or ``P or Dh`` when the directions are merged (sum, ave, mul).
Everything is exact Python ``int`` arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from math import prod
from typing import Any

from ..results.base import Result
from ..results.table import Column, Table
from ..results.text import plural
from .cells import ONNX_NAMES, Dims, TensorTemplate
from .spec import RecurrentSpec

DIRECTIONS = ("forward", "reverse")

TENSOR_COLUMNS = (
    Column("name", "str"),
    Column("shape", "shape"),
    Column("numel"),
    Column("layer"),
    Column("direction", "str"),
    Column("role", "str"),
    Column("gemm", "bool", wide=True, doc="a GEMM operand (its elements are MACs per token)"),
    Column("formula", "str", wide=True),
)
LAYER_COLUMNS = (
    Column("layer"),
    Column("direction", "str"),
    Column("input_size", wide=True),
    Column("formula", "str"),
    Column("substituted", "str"),
    Column("params"),
)
TOTAL_COLUMNS = (Column("spec", "str"), Column("tensors"), Column("params"))


@dataclass(frozen=True)
class TensorRow:
    """One parameter tensor: its name, stored shape and element count."""

    name: str
    shape: tuple[int, ...]
    numel: int
    layer: int
    direction: str
    role: str  # weight_ih, weight_hh, bias_ih, bias_hh, weight_hr, weight_ci, ... (or Keras' names)
    gemm: bool = False
    formula: str = ""  # e.g. "4Dh·d = 4·256·28"


@dataclass(frozen=True)
class LayerFormula:
    """The closed form of one layer and direction, symbolic and with numbers substituted."""

    layer: int
    direction: str
    input_size: int
    symbolic: str
    substituted: str
    params: int

    def __str__(self) -> str:
        return f"{self.symbolic} = {self.substituted} = {self.params:,}"


def dims(spec: RecurrentSpec, layer: int) -> Dims:
    return Dims(spec.gates, spec.hidden_size, spec.layer_input_size(layer), spec.proj_size)


def layer_params(spec: RecurrentSpec, layer: int) -> int:
    """Parameters of one direction of one layer (the sum over the cell's present templates)."""
    dm = dims(spec, layer)
    total = 0
    for t in spec.cell_type.templates_for(spec):
        total += prod(t.shape(dm))
    return total


def total_params(spec: RecurrentSpec) -> int:
    """Total parameters of the spec, without building the per-tensor rows (fast path)."""
    if not isinstance(spec, RecurrentSpec):
        from .coerce import as_spec

        spec = as_spec(spec, "total_params")
    first = layer_params(spec, 0)
    rest = layer_params(spec, 1) if spec.num_layers > 1 else 0
    return spec.num_directions * (first + (spec.num_layers - 1) * rest)


def _d_symbol(spec: RecurrentSpec, layer: int) -> str:
    if layer == 0:
        return "d"
    width = "P" if spec.proj_size else "Dh"
    n = spec.num_directions if spec.merge_mode == "concat" else 1
    return f"{n}{width}" if n > 1 else width


def _coef(n: int, sym: str) -> str:
    return sym if n == 1 else f"{n}{sym}"


def formula(spec: RecurrentSpec, layer: int) -> tuple[str, str]:
    """The layer's count as ``(symbolic, substituted)``, e.g. ``4(Dh·d + Dh·Dh + 2Dh)``."""
    dm = dims(spec, layer)
    d_sym, r_sym = _d_symbol(spec, layer), ("P" if spec.proj_size else "Dh")
    inner: list[tuple[str, str]] = []
    outer: list[tuple[str, str]] = []
    templates = spec.cell_type.templates_for(spec)
    done: set[str] = set()
    for t in templates:
        if t.kind in done:
            continue
        same = sum(1 for u in templates if u.kind == t.kind)
        sym, num, _ = t.per_block(dm)
        sym = sym.format(d=d_sym, R=r_sym)
        if same > 1:  # b_ih and b_hh: "2Dh"; three peepholes: "3Dh"
            sym, num = _coef(same, sym), f"{same}·{num}"
        (inner if t.block else outer).append((sym, num))
        done.add(t.kind)
    s, n = " + ".join(x for x, _ in inner), " + ".join(y for _, y in inner)
    g = spec.gates
    if g > 1:
        s, n = f"{g}({s})", f"{g}({n})"
    for x, y in outer:
        s, n = f"{s} + {x}", f"{n} + {y}"
    return s, n


def _tensor_formula(spec: RecurrentSpec, layer: int, t: TensorTemplate, dm: Dims, stacked: int = 1) -> str:
    sym, num, _ = t.per_block(dm)
    sym = sym.format(d=_d_symbol(spec, layer), R="P" if spec.proj_size else "Dh")
    factors = [n for n in (stacked, dm.g if t.block else 1) if n > 1]
    coef = prod(factors)
    if coef > 1:
        sym, num = f"{coef}{sym}", "·".join([*map(str, factors), num])
    return f"{sym} = {num}"


def _names(spec: RecurrentSpec, layer: int, direction: int, keras: bool) -> str:
    if keras or spec.cell_type.single_step:
        return ""
    return f"_l{layer}" + ("_reverse" if direction else "")


def _onnx_tensors(spec: RecurrentSpec, layer: int, direction: int) -> Iterator[TensorRow]:
    """ONNX's operator inputs: one ``W``, ``R``, ``B``, ``P`` per layer holding both directions."""
    if direction:
        return  # the reverse direction is the second row of each tensor
    dm = dims(spec, layer)
    nd = spec.num_directions
    suffix = f"_l{layer}" if spec.num_layers > 1 else ""
    templates = spec.cell_type.templates_for(spec)
    for kind, name in ONNX_NAMES.items():
        same = [t for t in templates if t.kind == kind]
        if not same:
            continue
        first = same[0].shape(dm)
        last = sum(t.shape(dm)[-1] if len(first) == 1 else 0 for t in same) if len(first) == 1 else None
        shape = (nd, last) if last is not None else (nd, *first)
        formula = _tensor_formula(spec, layer, same[0], dm, len(same) * nd)
        yield TensorRow(name + suffix, shape, prod(shape), layer, "both", name, same[0].gemm, formula)


def layer_tensors(spec: RecurrentSpec, layer: int, direction: int) -> Iterator[TensorRow]:
    """The tensors of one layer and direction, in the order the module registers them."""
    if spec.convention == "onnx":
        yield from _onnx_tensors(spec, layer, direction)
        return
    keras = spec.convention == "keras"
    dm = dims(spec, layer)
    suffix = _names(spec, layer, direction, keras)
    templates = spec.cell_type.templates_for(spec)
    if not keras:
        for t in templates:
            shape = t.shape(dm)
            yield TensorRow(
                t.torch_name + suffix,
                shape,
                prod(shape),
                layer,
                DIRECTIONS[direction],
                t.role,
                t.gemm,
                _tensor_formula(spec, layer, t, dm),
            )
        return
    # Keras stores the bias vectors of a block as one tensor: (G·u,) or (2, G·u).
    seen: dict[str, int] = {}
    for t in templates:
        seen[t.keras_name] = seen.get(t.keras_name, 0) + 1
    emitted: set[str] = set()
    for t in templates:
        if t.keras_name in emitted:
            continue
        emitted.add(t.keras_name)
        n = seen[t.keras_name]
        shape = t.shape(dm, keras=True)
        if n > 1:
            shape = (n, *shape)
        formula = _tensor_formula(spec, layer, t, dm, n)
        yield TensorRow(
            t.keras_name, shape, prod(shape), layer, DIRECTIONS[direction], t.keras_name, t.gemm, formula
        )


class CountResult(Result):
    """Parameter count of a spec: per-tensor rows, per-layer formulas and the exact total.

    Views: ``tensor`` (default), ``layer``, ``total``.
    """

    VIEWS = ("tensor", "layer", "total")

    def __init__(
        self,
        spec: RecurrentSpec,
        rows: tuple[TensorRow, ...],
        formulas: tuple[LayerFormula, ...],
        total: int,
    ) -> None:
        self.spec, self.rows, self.formulas, self.total = spec, rows, formulas, total

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CountResult) and (self.spec, self.rows, self.total) == (
            other.spec,
            other.rows,
            other.total,
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def convention_note(self) -> str:
        return self.spec.cell_type.layout_note(self.spec)

    def _table(self, view: str) -> Table:
        if view == "tensor":
            return Table(
                TENSOR_COLUMNS,
                tuple(
                    (r.name, r.shape, r.numel, r.layer, r.direction, r.role, r.gemm, r.formula)
                    for r in self.rows
                ),
            )
        if view == "layer":
            return Table(
                LAYER_COLUMNS,
                tuple(
                    (f.layer, f.direction, f.input_size, f.symbolic, f.substituted, f.params)
                    for f in self.formulas
                ),
            )
        return Table(TOTAL_COLUMNS, ((self.spec.describe(), len(self.rows), self.total),))

    def title(self) -> str:
        return f"{self.spec.describe()}  [{self.convention_note}]"

    def headline(self) -> str:
        return f"{self.spec.describe()}: {plural(self.total, 'parameter')}"

    def summary(self, view: str | None = None) -> list[str]:
        lines = []
        if view in (None, "tensor"):
            lines = [f"layer {f.layer} {f.direction}: {f}" for f in self.formulas]
        return [*lines, f"total: {plural(self.total, 'parameter')}"]

    def meta(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "total": self.total, "convention": self.convention_note}

    def context(self) -> list[tuple[str, str]]:
        return [
            ("spec", self.spec.describe()),
            ("convention", self.convention_note),
            ("total", f"{self.total:,}"),
        ]


def count(spec: Any, *args: Any, **options: Any) -> CountResult:
    """Count every parameter tensor of ``spec`` with its closed-form formula.

    ``spec`` is a :class:`RecurrentSpec` or a recurrent ``torch.nn`` module; a cell name with
    ``RecurrentSpec``'s arguments builds one: ``count("lstm", 28, 256, 2)`` is
    ``count(RecurrentSpec("lstm", 28, 256, num_layers=2))``. (``paramcalc.count`` also takes
    ``head=N``: :func:`paramcalc.core.counting.count`.)

    Results are memoised by spec (they are immutable), so a model with many identical layers
    is counted once per distinct layer.
    """
    from .coerce import as_spec, spec_from_arguments

    if args or options or isinstance(spec, str):
        spec = spec_from_arguments(spec, args, options, "count")
    return _count(as_spec(spec, "count"))


@lru_cache(maxsize=4096)
def _count(spec: RecurrentSpec) -> CountResult:
    rows: list[TensorRow] = []
    formulas: list[LayerFormula] = []
    for layer in range(spec.num_layers):
        sym, num = formula(spec, layer)
        n = layer_params(spec, layer)
        layer_rows: list[TensorRow] = []
        for direction in range(spec.num_directions):
            layer_rows += layer_tensors(spec, layer, direction)
            formulas.append(
                LayerFormula(layer, DIRECTIONS[direction], spec.layer_input_size(layer), sym, num, n)
            )
        assert sum(r.numel for r in layer_rows) == n * spec.num_directions  # formula and tensors agree
        rows.extend(layer_rows)
    total = sum(f.params for f in formulas)
    return CountResult(spec, tuple(rows), tuple(formulas), total)
