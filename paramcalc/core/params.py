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

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from math import prod
from typing import Any

from ..results.base import Result
from ..results.table import Column, Table
from ..results.text import plural
from . import memo, shapes
from .cells import ONNX_NAMES, CellType, Dims, TensorTemplate
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
#: The kinds whose elements :attr:`Compiled.kinds` sums, in this order (the cost model's parts).
COST_KINDS = ("input", "recurrent", "projection", "bias")


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


# --- an entry's templates, compiled once per layout into plain arithmetic -------------------------


@dataclass(frozen=True)
class Compiled:
    """The tensors a layout of an entry has, as functions of a layer's ``(Dh, d, P, R)``.

    ``total``: the parameters of one layer and direction; ``kinds``: the elements of each of
    :data:`COST_KINDS`; ``shapes``: every tensor's stored shape (PyTorch's), in template order.
    Built from the templates' shape rules by :func:`compiled`, once per entry and layout (bias
    vectors, peepholes, projection): a count is then one call of generated arithmetic per layer,
    not a walk over the templates.
    """

    templates: tuple[TensorTemplate, ...]
    total: Callable[..., int]
    kinds: Callable[..., tuple[int, ...]]
    shapes: Callable[..., tuple[tuple[int, ...], ...]]


def compiled(spec: RecurrentSpec) -> Compiled:
    """The compiled templates of ``spec``'s entry and layout (made on first use, kept on the entry)."""
    ct = spec.cell_type
    key = (spec.bias_vectors, spec.peephole, spec.proj_size > 0)
    table: dict[Any, Compiled] | None = ct.__dict__.get("_compiled")
    if table is None:
        table = {}
        object.__setattr__(ct, "_compiled", table)
    found = table.get(key)
    if found is None:
        found = table[key] = _compile(ct, ct.templates_for(spec))
    return found


def _compile(ct: CellType, templates: tuple[TensorTemplate, ...]) -> Compiled:
    label = f"cell {ct.name}"

    def folded(t: TensorTemplate) -> tuple[ast.expr, ...]:
        return tuple(shapes.fold(n, {"G": t.gates_of(ct.gates)}) for n in t.nodes)

    dims_of = [folded(t) for t in templates]
    numels = [shapes.product(list(dims)) for dims in dims_of]
    by_kind = [
        shapes.sum_node([shapes.fold(n, {}) for t, n in zip(templates, numels, strict=True) if t.kind == k])
        for k in COST_KINDS
    ]
    return Compiled(
        templates=templates,
        total=shapes.compile_sum([shapes.fold(n, {}) for n in numels], shapes.LAYER_ARGS, label),
        kinds=shapes.compile_tuple(by_kind, shapes.LAYER_ARGS, label),
        shapes=shapes.compile_tuple(
            [ast.Tuple(elts=[shapes.fold(d, {}) for d in dims], ctx=ast.Load()) for dims in dims_of],
            shapes.LAYER_ARGS,
            label,
        ),
    )


def dims(spec: RecurrentSpec, layer: int) -> Dims:
    return Dims(spec.gates, spec.hidden_size, spec.layer_input_size(layer), spec.proj_size)


def layer_params(spec: RecurrentSpec, layer: int) -> int:
    """Parameters of one direction of one layer (the compiled sum of the present templates)."""
    h, p = spec.hidden_size, spec.proj_size
    return compiled(spec).total(h, spec.layer_input_size(layer), p, p or h)


def layer_kinds(spec: RecurrentSpec, layer: int) -> tuple[int, ...]:
    """Elements of one layer and direction's tensors of each kind in :data:`COST_KINDS`."""
    h, p = spec.hidden_size, spec.proj_size
    return compiled(spec).kinds(h, spec.layer_input_size(layer), p, p or h)


def total_params(spec: RecurrentSpec) -> int:
    """Total parameters of the spec, without building the per-tensor rows (fast path)."""
    if not isinstance(spec, RecurrentSpec):
        from .coerce import as_spec

        spec = as_spec(spec, "total_params")
    total = compiled(spec).total
    h, p = spec.hidden_size, spec.proj_size
    r = p or h
    first = total(h, spec.input_size, p, r)
    if spec.num_layers == 1:
        return spec.num_directions * first
    rest = total(h, spec.stack_output_size, p, r)
    return spec.num_directions * (first + (spec.num_layers - 1) * rest)


# --- formulas ------------------------------------------------------------------------------------


def _d_symbol(spec: RecurrentSpec, layer: int) -> str:
    if layer == 0:
        return "d"
    width = "P" if spec.proj_size else "Dh"
    n = spec.num_directions if spec.merge_mode == "concat" else 1
    return f"{n}{width}" if n > 1 else width


def _symbols(spec: RecurrentSpec, layer: int) -> dict[str, str]:
    """How each size is written in the formulas of ``layer`` (its input ``d`` may be ``2Dh``)."""
    return {"Dh": "Dh", "d": _d_symbol(spec, layer), "P": "P", "R": "P" if spec.proj_size else "Dh"}


def _per_block(t: TensorTemplate) -> ast.expr:
    """A block-stacked template's elements per gate block: its product without one ``G``."""
    fs = shapes.factors(shapes.product(t.nodes))
    i = next(i for i, f in enumerate(fs) if isinstance(f, ast.Name) and f.id == "G")
    rest = fs[:i] + fs[i + 1 :]
    return shapes.product(rest) if rest else ast.Constant(1)


def formula(spec: RecurrentSpec, layer: int) -> tuple[str, str]:
    """The layer's count as ``(symbolic, substituted)``, e.g. ``4(Dh·d + Dh·Dh + 2Dh)``.

    Templates stacking every gate block are written per block inside ``G(...)``; the others
    (peepholes, a projection, tensors of some blocks or with their own shape rule) follow.
    Same-kind tensors of the same form are collected (``2Dh`` for ``b_ih`` and ``b_hh``).
    """
    dm, sym = dims(spec, layer), _symbols(spec, layer)
    groups: dict[tuple[bool, str, str], list[Any]] = {}
    for t in compiled(spec).templates:
        inner = t.spans_blocks()
        node = _per_block(t) if inner else shapes.product(t.nodes)
        env = dm.env(t.gates_of(dm.g))
        key = (inner, t.kind, shapes.render(node, sym, env)[0])
        groups.setdefault(key, [node, env, 0])[2] += 1
    parts = {True: [], False: []}  # type: dict[bool, list[tuple[str, str]]]
    for (inner, _, _), (node, env, n) in groups.items():
        parts[inner].append(shapes.render(node, sym, env, lead=n))
    s, num = " + ".join(x for x, _ in parts[True]), " + ".join(y for _, y in parts[True])
    if dm.g > 1 and parts[True]:
        s, num = f"{dm.g}({s})", f"{dm.g}({num})"
    for x, y in parts[False]:
        s, num = (f"{s} + {x}", f"{num} + {y}") if s else (x, y)
    return s, num


def _tensor_formula(spec: RecurrentSpec, layer: int, t: TensorTemplate, dm: Dims, stacked: int = 1) -> str:
    env = dm.env(t.gates_of(dm.g))
    sym, num = shapes.render(shapes.product(t.nodes), _symbols(spec, layer), env, lead=stacked)
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
    templates = compiled(spec).templates
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
    c = compiled(spec)
    if not keras:
        for t, shape in zip(c.templates, c.shapes(dm.h, dm.d, dm.p, dm.r), strict=True):
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
    for t in c.templates:
        seen[t.keras_name] = seen.get(t.keras_name, 0) + 1
    emitted: set[str] = set()
    for t in c.templates:
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
        rows: tuple[TensorRow, ...] | None = None,
        formulas: tuple[LayerFormula, ...] | None = None,
        total: int | None = None,
    ) -> None:
        """``rows`` and ``formulas`` left out are built on first use (``total`` needs neither)."""
        self.spec = spec
        self._rows, self._formulas = rows, formulas
        self.total = total_params(spec) if total is None else total

    @property
    def rows(self) -> tuple[TensorRow, ...]:
        """Every tensor, layer by layer and direction by direction, as the module names it."""
        if self._rows is None:
            self._rows, self._formulas = _tables(self.spec)
        return self._rows

    @property
    def formulas(self) -> tuple[LayerFormula, ...]:
        """The closed form of each layer and direction."""
        if self._formulas is None:
            self._rows, self._formulas = _tables(self.spec)
        return self._formulas

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


@memo.memoise()
def _count(spec: RecurrentSpec) -> CountResult:
    return CountResult(spec)


def _tables(spec: RecurrentSpec) -> tuple[tuple[TensorRow, ...], tuple[LayerFormula, ...]]:
    """The rows and formulas of a count (the total is the compiled sum: they must agree)."""
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
    return tuple(rows), tuple(formulas)
