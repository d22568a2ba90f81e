"""The analytic terms over arrays of configurations: counts, FLOPs, memory, state, the GEMM list.

What :mod:`~paramcalc.core.params`, :mod:`~paramcalc.core.costmodel` and
:mod:`~paramcalc.core.memory` compute for one spec, computed here for a whole :class:`Grid` of
configurations of one registry entry at once, with numpy arrays instead of one Python object per
configuration: a design search (:mod:`paramcalc.studies.design`) evaluates a million
configurations a second this way (``benchmarks/bench_bulk.py``). The results are the per-spec
engine's, exactly (a property test compares them on random configurations,
``tests/core/test_bulk.py``):

* **counts**: the entry's shape rules, compiled once per layout into numpy arithmetic from the
  same checked expressions :mod:`~paramcalc.core.shapes` compiles into Python (a condition
  becomes ``where``, ``min``/``max`` become ``minimum``/``maximum``);
* **FLOPs** by the cost model's conventions and backward rules (``2x`` or ``autograd``);
* **memory**: the CPU term tables of :mod:`paramcalc.core.memory` (oneDNN, ATen's native loop,
  paramcalc's reference modules), their phases' peak, the CPU allocator's terms and Adam's
  moments, for the kernel path :func:`paths` predicts;
* **the GEMM list** of the speed model (:func:`gemm_terms`): each role's shape and calls, for
  the forward pass and, in training, autograd's dX and dW.

A grid holds stacks in their entry's default layout under the torch convention (the cell's bias
vectors and peepholes, directions concatenated): the layouts a design compares. Integers are
``int64`` where every value provably fits, Python ints (``object`` arrays) otherwise: exact
either way. This module imports numpy; the analytic commands never import it.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import ParamcalcError
from . import memo, shapes
from .cells import CellType, TensorTemplate
from .memory import ALLOCATOR_RETENTION, BLAS_BUFFERS, GLIBC_MMAP_THRESHOLD_MAX, ONEDNN, REFERENCE
from .memory.base import NATIVE
from .spec import MAX_LAYERS, MAX_SIZE, RecurrentSpec
from .workload import Workload

Array = Any  # a numpy array (numpy's own stubs are not required by the type check)

#: The kinds the compiled ``kinds`` sum, in this order (:data:`paramcalc.core.params.COST_KINDS`).
COST_KINDS = ("input", "recurrent", "projection", "bias")
#: Values above this make a grid compute in Python ints (``object`` arrays) instead of int64.
INT64_SAFE = 2**62


# --- the grid -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """What the registry reads of a layout (:class:`paramcalc.core.cells.Layout`), for a grid's
    rows with or without a projection: the entry's defaults under the torch convention."""

    bias_vectors: int
    peephole: bool
    proj_size: int
    convention: str = "torch"
    reset_after: bool = True
    merge_mode: str = "concat"
    num_layers: int = 1

    @property
    def bias(self) -> bool:
        return self.bias_vectors > 0


@dataclass(frozen=True, eq=False)
class Grid:
    """Configurations of one registry entry for one input size and workload, as parallel arrays.

    ``hidden``, ``layers``, ``proj`` (0: none) and ``dirs`` (1 or 2) hold one value per
    configuration; every configuration is the stack ``RecurrentSpec(cell, input_size, hidden,
    num_layers=layers, bidirectional=dirs == 2, proj_size=proj)`` (:meth:`spec`). Made by
    :func:`grid`, which checks every value as ``RecurrentSpec`` would.
    """

    cell: CellType
    input_size: int
    workload: Workload
    hidden: Array
    layers: Array
    proj: Array
    dirs: Array
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.hidden.shape[0])

    def spec(self, i: int) -> RecurrentSpec:
        """The spec of configuration ``i``."""
        return RecurrentSpec(
            self.cell.name,
            self.input_size,
            int(self.hidden[i]),
            num_layers=int(self.layers[i]),
            bidirectional=bool(self.dirs[i] == 2),
            proj_size=int(self.proj[i]),
        )

    def take(self, index: Array) -> Grid:
        """The configurations ``index`` selects (a boolean mask or positions)."""
        return Grid(
            self.cell,
            self.input_size,
            self.workload,
            self.hidden[index],
            self.layers[index],
            self.proj[index],
            self.dirs[index],
        )

    @property
    def dtype(self) -> Any:
        """``int64``, or ``object`` (Python ints) where a product could leave int64 (see :func:`grid`)."""
        found = self._cache.get("dtype")
        if found is None:
            found = self._cache["dtype"] = _int_dtype(self)
        return found


def grid(
    cell: str | CellType,
    input_size: int,
    workload: Workload,
    hidden: Sequence[int] | Array,
    layers: Sequence[int] | Array,
    proj: Sequence[int] | Array,
    dirs: Sequence[int] | Array,
) -> Grid:
    """A :class:`Grid`: the arrays (broadcast against each other) checked as a spec checks them."""
    from .cells import get_cell
    from .spec import check_size

    ct = get_cell(cell) if not isinstance(cell, CellType) else cell
    if ct.single_step:
        raise ParamcalcError(f"{ct.name} is a single-step cell: a grid holds stacks")
    if not isinstance(workload, Workload):
        raise ParamcalcError(f"a grid needs a Workload, got {type(workload).__name__}")
    if workload.lengths is not None:
        raise ParamcalcError("a grid's workload is a batch and a sequence length, without lengths")
    check_size("input_size", input_size)
    arrays = [np.asarray(a) for a in (hidden, layers, proj, dirs)]
    h, nl, p, nd = (np.array(a, dtype=np.int64).reshape(-1) for a in np.broadcast_arrays(*arrays))
    _check(ct, h, nl, p, nd)
    return Grid(ct, input_size, workload, h, nl, p, nd)


def _check(ct: CellType, h: Array, nl: Array, p: Array, nd: Array) -> None:
    """The rules ``RecurrentSpec`` checks, over whole arrays (one line naming the first failure)."""
    checks = [
        (h >= 1, "hidden sizes must be positive"),
        (h <= MAX_SIZE, f"hidden sizes must be at most {MAX_SIZE:,}"),
        (nl >= 1, "layer counts must be positive"),
        (nl <= MAX_LAYERS, f"layer counts must be at most {MAX_LAYERS:,}"),
        ((nd == 1) | (nd == 2), "directions must be 1 or 2"),
        (p >= 0, "projection sizes must be 0 or positive"),
        ((p == 0) | (p < h), "proj_size has to be smaller than hidden_size"),
    ]
    if not ct.projection:
        checks.append((p == 0, f"proj_size is only supported for cells with a projection, not {ct.name}"))
    for ok, why in checks:
        if not bool(np.all(ok)):
            raise ParamcalcError(f"grid of {ct.name}: {why}")


def _int_dtype(g: Grid) -> Any:
    """int64 when the largest figure (FLOPs of a training batch, bytes) provably fits, else object."""
    if not len(g):
        return np.int64
    h, nl = float(g.hidden.max()), float(g.layers.max())
    d, gates = float(max(g.input_size, 2 * h)), float(g.cell.gates)
    wl = g.workload
    bound = 64.0 * gates * h * (d + 2 * h + 64) * nl * wl.batch * wl.seq_len * 8
    bound += 64.0 * (wl.seq_len + 2) * wl.batch * (d + 8 * gates * h) * nl * 8
    return np.int64 if bound < INT64_SAFE else object


def _ints(g: Grid, a: Array) -> Array:
    return a.astype(g.dtype) if g.dtype is object else a


# --- the entry's shape rules, compiled into numpy arithmetic ------------------------------------


def _minimum(*xs: Any) -> Any:
    return functools.reduce(np.minimum, xs)


def _maximum(*xs: Any) -> Any:
    return functools.reduce(np.maximum, xs)


def _all_of(*xs: Any) -> Any:
    return functools.reduce(np.logical_and, xs)


_NUMPY_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "where": np.where,
    "minimum": _minimum,
    "maximum": _maximum,
    "all_of": _all_of,
}


class _Vectorise(ast.NodeTransformer):
    """A checked shape expression made elementwise: ``a if x == y else b`` becomes
    ``where(x == y, a, b)``, a chained comparison ``all_of`` its links, ``min``/``max``
    ``minimum``/``maximum``. ``+``, ``*`` and ``//`` by a positive integer work on arrays as they are."""

    def visit_IfExp(self, node: ast.IfExp) -> ast.expr:
        args = [self.visit(node.test), self.visit(node.body), self.visit(node.orelse)]
        return ast.Call(func=ast.Name(id="where", ctx=ast.Load()), args=args, keywords=[])

    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        left = self.visit(node.left)
        rights = [self.visit(c) for c in node.comparators]
        links: list[ast.expr] = []
        for op, right in zip(node.ops, rights, strict=True):
            links.append(ast.Compare(left=left, ops=[op], comparators=[right]))
            left = right
        if len(links) == 1:
            return links[0]
        return ast.Call(func=ast.Name(id="all_of", ctx=ast.Load()), args=links, keywords=[])

    def visit_Call(self, node: ast.Call) -> ast.expr:
        assert isinstance(node.func, ast.Name)  # min or max: checked by the parser
        name = "minimum" if node.func.id == "min" else "maximum"
        args = [self.visit(a) for a in node.args]
        return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=args, keywords=[])


def _numpy_lambda(body: ast.expr, label: str) -> Callable[..., Any]:
    """``lambda Dh, d, P, R: body`` over arrays, from checked nodes (see :class:`_Vectorise`)."""
    node = _Vectorise().visit(shapes.fold(body, {}))
    fn = ast.Lambda(
        args=ast.arguments(
            posonlyargs=[],
            args=[ast.arg(arg=a) for a in shapes.LAYER_ARGS],
            kwonlyargs=[],
            kw_defaults=[],
            defaults=[],
        ),
        body=node,
    )
    code = compile(ast.fix_missing_locations(ast.Expression(body=fn)), f"<bulk rules of {label}>", "eval")
    made = eval(code, {"__builtins__": {}, **_NUMPY_FUNCTIONS})  # checked nodes only (shapes._check)
    assert callable(made)
    return made  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Kernels:
    """An entry's layout compiled for arrays: ``total(Dh, d, P, R)`` the parameters of one layer
    and direction, ``kinds(...)`` the elements of each of :data:`COST_KINDS`."""

    templates: tuple[TensorTemplate, ...]
    total: Callable[..., Any]
    kinds: tuple[Callable[..., Any], ...]


@memo.memoise(maxsize=256)
def kernels(ct: CellType, layout: Layout) -> Kernels:
    """The numpy arithmetic of ``ct``'s templates under ``layout`` (made once, cleared with the registry)."""
    templates = ct.templates_for(layout)
    numels = [
        shapes.product([shapes.fold(n, {"G": t.gates_of(ct.gates)}) for n in t.nodes]) for t in templates
    ]
    label = f"cell {ct.name}"
    total = _numpy_lambda(shapes.sum_node(numels), label)
    kinds = tuple(
        _numpy_lambda(
            shapes.sum_node([n for t, n in zip(templates, numels, strict=True) if t.kind == k]), label
        )
        for k in COST_KINDS
    )
    return Kernels(templates, total, kinds)


def layout_of(ct: CellType, projected: bool) -> Layout:
    """The default torch layout of ``ct``, with or without a projection."""
    return Layout(ct.default_bias_vectors, ct.default_peephole, 1 if projected else 0)


# --- sizes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """The sizes every term is made of, per configuration (see :class:`paramcalc.core.memory.base.Ctx`)."""

    h: Array
    p: Array
    r: Array  # width of h: P or Dh
    nl: Array
    dirs: Array
    out: Array  # the stack's output width per token (directions concatenated)
    d: int
    g: int
    b: int
    t: int
    n: int  # tokens
    nb: int  # bytes per element


def sizes(g: Grid, dtype: str | None = None) -> Sizes:
    """The grid's sizes (``dtype`` overrides the workload's element size)."""
    from .workload import DTYPE_BYTES

    h, p = _ints(g, g.hidden), _ints(g, g.proj)
    r = np.where(p > 0, p, h)
    dirs = _ints(g, g.dirs)
    wl = g.workload
    nb = DTYPE_BYTES[dtype or wl.dtype]
    return Sizes(
        h,
        p,
        r,
        _ints(g, g.layers),
        dirs,
        dirs * r,
        g.input_size,
        g.cell.gates,
        wl.batch,
        wl.seq_len,
        wl.tokens,
        nb,
    )


def _per_layout(g: Grid, s: Sizes, which: int | None, d_l: Any) -> Any:
    """``which`` (an index into :data:`COST_KINDS`, or ``None`` for the total) of one layer and
    direction whose input is ``d_l`` wide, for every configuration (rows with and without a
    projection use their own compiled layout)."""
    out = np.zeros(len(g), dtype=g.dtype)
    for projected in (False, True):
        rows = (s.p > 0) if projected else (s.p == 0)
        if not bool(np.any(rows)):
            continue
        k = kernels(g.cell, layout_of(g.cell, projected))
        fn = k.total if which is None else k.kinds[which]
        d_rows = d_l[rows] if isinstance(d_l, np.ndarray) and d_l.ndim else d_l
        value = fn(s.h[rows], d_rows, s.p[rows], s.r[rows])
        out[rows] = np.broadcast_to(np.asarray(value, dtype=g.dtype), (int(np.count_nonzero(rows)),))
    return out


def layer_params(g: Grid, s: Sizes, layer: int) -> Any:
    """Parameters of one direction of layer 0 (``layer=0``) or of any layer above (``layer=1``)."""
    return _per_layout(g, s, None, s.d if layer == 0 else s.out)


def layer_kinds(g: Grid, s: Sizes, layer: int) -> tuple[Any, ...]:
    """Elements of each of :data:`COST_KINDS` of one direction of layer 0 or of a layer above."""
    d_l = s.d if layer == 0 else s.out
    return tuple(_per_layout(g, s, i, d_l) for i in range(len(COST_KINDS)))


def params(g: Grid) -> Any:
    """Parameters of every configuration (:func:`paramcalc.core.params.total_params`)."""
    s = sizes(g)
    return s.dirs * (layer_params(g, s, 0) + (s.nl - 1) * layer_params(g, s, 1))


def state_bytes(g: Grid) -> Any:
    """The recurrent state of the batch, every layer and direction (``CostResult.state_bytes``)."""
    s = sizes(g)
    widths = sum((s.r if name == "h" else s.h) for name in g.cell.state_names)
    return s.nl * s.dirs * widths * s.b * s.nb


# --- FLOPs (the cost model's conventions) ---------------------------------------------------------


@dataclass(frozen=True)
class Costs:
    """The cost model's totals for every configuration (the attributes of ``CostResult``)."""

    macs_per_step: Any
    macs: Any
    forward_flops: Any
    backward_flops: Any
    flops: Any
    flops_per_sequence: Any


def _layer_flops(parts: tuple[Any, ...], other: Any, layer: int, tokens: int, skip: int, rule: str) -> Any:
    """Forward and backward FLOPs of one layer and direction (``costmodel._flops``, every part counted)."""
    gi, gr, gp = parts
    fwd = (2 * (gi + gr + gp) + other) * tokens
    if rule == "2x":
        return fwd, 2 * fwd
    dw = (gi + gr + gp) * tokens
    dx = (gi * tokens if layer else 0) + gr * (tokens - skip) + gp * tokens
    return fwd, 2 * (dw + dx) + 2 * other * tokens


def costs(g: Grid, backward: str = "2x") -> Costs:
    """MACs and FLOPs of every configuration on the grid's workload (:func:`paramcalc.core.costmodel.cost`
    with every part counted and the ``backward`` rule of training)."""
    if backward not in ("2x", "autograd"):
        raise ParamcalcError(f"unknown backward rule {backward!r}: expected one of 2x, autograd")
    s, wl = sizes(g), g.workload
    per_unit = sum(n for _, n in g.cell.ops_for(layout_of(g.cell, False)))
    ew = per_unit * s.h
    totals = {"fwd": 0, "bwd": 0, "seq": 0, "macs": 0}
    for layer in (0, 1):
        gi, gr, gp, bias = layer_kinds(g, s, layer)
        times = s.dirs if layer == 0 else s.dirs * (s.nl - 1)
        fwd, bwd = _layer_flops((gi, gr, gp), bias + ew, layer, wl.tokens, wl.batch, backward)
        seq_f, seq_b = _layer_flops((gi, gr, gp), bias + ew, layer, wl.seq_len, 1, backward)
        totals["fwd"] = totals["fwd"] + times * fwd
        totals["bwd"] = totals["bwd"] + (times * bwd if wl.training else 0)
        totals["seq"] = totals["seq"] + times * (seq_f + (seq_b if wl.training else 0))
        totals["macs"] = totals["macs"] + times * (gi + gr + gp)
    fwd = totals["fwd"]
    bwd = totals["bwd"] + 0 * fwd
    return Costs(totals["macs"], totals["macs"] * wl.tokens, fwd, bwd, fwd + bwd, totals["seq"])


# --- memory: the CPU term tables of paramcalc.core.memory -------------------------------------------


def is_native(ct: CellType) -> bool:
    """Whether the entry's default layout is built as its ``torch.nn`` module (else its reference module)."""
    return ct.torch_native(layout_of(ct, False))


def paths(
    g: Grid,
    mode: str | None = None,
    dtype: str | None = None,
    *,
    onednn: bool = True,
    onednn_bf16: bool = False,
    onednn_fp16: bool = False,
) -> Any:
    """The CPU kernel path of every configuration (:func:`paramcalc.core.memory.predict_path`),
    for the grid's workload or another ``mode``/``dtype``; an array of path names."""
    ct, wl = g.cell, g.workload
    mode, dtype = mode or wl.mode, dtype or wl.dtype
    out = np.full(len(g), NATIVE, dtype=object)
    if not is_native(ct):
        out[:] = REFERENCE
        return out
    if ct.torch.nn_class != "LSTM" or not onednn:
        return out
    fused = (
        dtype == "fp32"
        or (dtype == "bf16" and onednn_bf16)
        or (dtype == "fp16" and onednn_fp16 and mode != "training")
    )
    if fused:
        out[g.proj == 0] = ONEDNN  # "LSTM with projections is not supported with oneDNN"
    return out


def _resident(g: Grid, s: Sizes, total: Any, states_saved: bool) -> Any:
    """Parameters and the input, and (unless saved as activations) the zero initial states."""
    out = (total + s.t * s.b * s.d) * s.nb
    if not states_saved:
        extra = (len(g.cell.state_names) - 1) * s.h
        out = out + s.nl * s.dirs * s.b * (s.r + extra) * s.nb
    return out


def _grads(s: Sizes, p0: Any, p1: Any, from_layer: int) -> Any:
    """Bytes of the parameter gradients of layers ``from_layer..L-1`` (``base.grads``)."""
    first = p0 if from_layer == 0 else 0
    upper = s.nl - max(from_layer, 1)
    elements = s.dirs * (first + np.where(upper > 0, upper * p1, 0))
    return np.where(s.nl > from_layer, elements * s.nb, 0)


def _peak_over_layers(s: Sizes, end: Any, phase: Callable[[int], Any]) -> Any:
    """The largest of ``end`` and ``phase(l)`` for every layer ``l`` a configuration has."""
    best = end
    for layer in range(int(s.nl.max()) if s.nl.size else 0):
        value = phase(layer)
        best = np.where((s.nl > layer) & (value > best), value, best)
    return best


def _saved(g: Grid, s: Sizes, path: str) -> tuple[Any, Any]:
    """Elements kept for backward per token, and per layer and direction (``base.saved``)."""
    ct = g.cell
    rules = ct.memory
    rule = None
    if rules is not None:
        own, other = (rules.reference, rules.native) if path == REFERENCE else (rules.native, rules.reference)
        rule = own or other
    if rule is None:
        return (ct.saved_per_unit + s.g) * s.h + s.r, 0
    first = rule.per_layer
    if path == REFERENCE and ct.default_peephole and "f" in ct.peephole_gates:
        first += 1
    return rule.per_token * s.h + np.where(s.p > 0, s.h, 0) + s.r, first * s.b * s.r


def _stepwise_forward(g: Grid, s: Sizes, total: Any, path: str) -> Any:
    """Inference on ATen's native loop or a reference module: the forward of the largest layer."""
    base = _resident(g, s, total, False)
    gh = s.g * s.h
    projection = (s.dirs if path == NATIVE else 2) * s.n * gh
    stacked = s.n * s.r * np.where(s.dirs == 2, 3, 1)
    upper = np.where(s.nl > 1, s.n * s.out, 0)
    return base + (projection + s.n * s.r + stacked + upper) * s.nb


def _stepwise_training(g: Grid, s: Sizes, total: Any, path: str, p0: Any, p1: Any) -> Any:
    """Training on ATen's native loop or a reference module: the end of forward or a layer's backward."""
    base = _resident(g, s, total, True)
    per_tok, per_layer = _saved(g, s, path)
    sa = np.maximum(s.dirs * (s.n * per_tok + per_layer) * s.nb, 0)
    inp = s.n * s.out * s.nb
    gh = s.g * s.h

    def kept(layer: int) -> Any:
        return (layer + 1) * sa + layer * inp if layer >= 0 else 0

    top = s.nl - 1
    end = (
        base + top * (sa + inp) + sa + (s.dirs * s.n * gh + s.n * s.out * np.where(s.dirs == 2, 2, 1)) * s.nb
    )

    def backward(layer: int) -> Any:
        own = np.where(s.nl - 1 > layer, s.n * s.out, 0) + 2 * s.dirs * s.n * gh
        if layer:
            own = own + s.n * s.out  # dX of the layer
        held = kept(layer) if path == REFERENCE else kept(layer - 1) + (inp if layer else 0)
        return base + held + own * s.nb + _grads(s, p0, p1, layer)

    return _peak_over_layers(s, end, backward)


def _good_ld(n: Any, nb: int) -> Any:
    """oneDNN's leading dimension (``onednn.good_ld``) over arrays."""
    step = 64 // nb
    ld = -(-n // step) * step
    return np.where(ld % 256 == 0, ld + step, ld)


def _onednn_forward(g: Grid, s: Sizes, total: Any) -> Any:
    """Inference on oneDNN: the forward of the largest layer."""
    base = _resident(g, s, total, False)
    fixed = s.n * s.h * np.where(s.dirs == 2, 3, 1) * s.nb + (s.t + 1) * s.b * s.h * 4
    first = base + fixed + s.g * s.h * (s.d + s.h) * s.nb
    upper = base + fixed + s.n * s.out * s.nb + s.g * s.h * (s.out + s.h) * s.nb
    return np.where((s.nl > 1) & (upper > first), upper, first)


def _onednn_training(g: Grid, s: Sizes, total: Any, p1: Any) -> Any:
    """Training on oneDNN: the end of forward or a layer's backward."""
    base = _resident(g, s, total, False)
    gld = _good_ld(s.g * s.h, 4)
    per_layer = s.dirs * ((s.t * s.b * gld + (s.t + 1) * s.b * s.h) * 4)
    per_layer = per_layer + (s.dirs * s.n * s.h + np.where(s.dirs == 2, s.n * s.out, 0)) * s.nb
    scratch = s.t * s.b * gld * 4 if s.b < 128 else s.b * gld * 4
    end = base + s.nl * per_layer + scratch

    def backward(layer: int) -> Any:
        d_l = s.d if layer == 0 else s.out
        diff = (3 * (s.t + 1) * s.b * _good_ld(np.maximum(d_l, s.h), 4) + (s.t + 1) * s.b * s.h) * 4
        own = s.n * s.h * 4 + diff + s.t * s.b * gld * 4 + s.g * s.h * (d_l + s.h) * (2 * s.nb + 4)
        if layer:
            own = own + s.dirs * s.n * d_l * 4
        return base + (layer + 1) * per_layer + own + _grads(s, 0, p1, layer + 1)

    return _peak_over_layers(s, end, backward)


def _allocator(g: Grid, s: Sizes, path: str, mode: str) -> Any:
    """The CPU allocator's terms: the libraries' buffers and glibc's retention (``memory.CPU_ALLOCATOR``)."""
    gh = s.n * s.g * s.h
    library = np.minimum(BLAS_BUFFERS, gh * s.nb)
    blocks = Fraction(ALLOCATOR_RETENTION.get((path, mode), 0.0))
    block = np.minimum(np.maximum(gh, s.n * s.out) * s.nb, GLIBC_MMAP_THRESHOLD_MAX)
    return library + block * blocks.numerator // blocks.denominator


def peak(g: Grid, path_of: Any, mode: str, dtype: str | None = None) -> Any:
    """Bytes at the peak of one call of every configuration on its path (``path_of``, see
    :func:`paths`) in ``mode`` (the memory model's ``peak_bytes`` on a CPU, allocator terms included)."""
    s = sizes(g, dtype)
    p0, p1 = layer_params(g, s, 0), layer_params(g, s, 1)
    total = s.dirs * (p0 + (s.nl - 1) * p1)
    out = np.zeros(len(g), dtype=g.dtype)
    for path in (NATIVE, REFERENCE, ONEDNN):
        rows = path_of == path
        if not bool(np.any(rows)):
            continue
        if path == ONEDNN:
            value = _onednn_training(g, s, total, p1) if mode == "training" else _onednn_forward(g, s, total)
        elif mode == "training":
            value = _stepwise_training(g, s, total, path, p0, p1)
        else:
            value = _stepwise_forward(g, s, total, path)
        value = value + _allocator(g, s, path, mode)
        out[rows] = np.broadcast_to(value, out.shape)[rows]
    return out


def _paths(g: Grid, mode: str, dtype: str | None, caps: dict[str, bool] | None) -> Any:
    c = caps or {}
    return paths(
        g,
        mode,
        dtype,
        onednn=c.get("onednn", True),
        onednn_bf16=c.get("onednn_bf16", False),
        onednn_fp16=c.get("onednn_fp16", False),
    )


def inference_bytes(g: Grid, caps: dict[str, bool] | None = None) -> Any:
    """The inference peak of one call (``CostResult.inference_bytes``; ``caps``: the keyword
    arguments of :func:`paths`, the kernel capabilities of the CPU)."""
    return peak(g, _paths(g, "inference", None, caps), "inference")


def training_bytes(g: Grid, caps: dict[str, bool] | None = None) -> Any:
    """The training peak of one call with Adam's moments (``CostResult.training_bytes``). An int8
    workload gets the fp16 figures at one byte an element, as the cost model gives them."""
    dtype = "fp16" if g.workload.dtype == "int8" else None
    s = sizes(g, dtype)
    total = s.dirs * (layer_params(g, s, 0) + (s.nl - 1) * layer_params(g, s, 1))
    out = peak(g, _paths(g, "training", dtype, caps), "training", dtype) + 2 * total * s.nb
    return out // 2 if dtype else out


# --- the speed model's GEMM list ------------------------------------------------------------------


@dataclass(frozen=True)
class GemmTerm:
    """One GEMM role of every configuration: shapes ``(m, k, n)`` and ``count`` calls per call of
    the stack (calls per layer-direction × the layer-directions that run it; 0 where a
    configuration has no such GEMM). ``family``: the dimension every configuration shares and its
    value (``("m", B)`` for a per-step GEMM's rows, ``("k", B·T)`` for an input GEMM's dW)."""

    role: str
    family: tuple[str, int]
    m: Any
    k: Any
    n: Any
    count: Any


def _stages(g: Grid, s: Sizes) -> list[tuple[str, Any, Any]]:
    """The sequential GEMMs of one step, ``(name, K, N)`` (``costmodel.gemm_stages``)."""
    ct = g.cell
    out: list[tuple[str, Any, Any]] = []
    if ct.recurrent_gemm:
        k = ct.reset_before(layout_of(ct, False))
        if k:
            out = [("recurrent", s.h, (s.g - k) * s.h), ("recurrent (reset-gated)", s.h, k * s.h)]
        else:
            out = [("recurrent", s.r, s.g * s.h)]
    if ct.projection:
        out.append(("projection", s.h, np.maximum(s.p, 1)))
    return out


def _forward_terms(g: Grid, s: Sizes) -> list[tuple[str, Any, Any, Any, Any, Any, int]]:
    """``(role, m, k, n, calls, dX calls, layer)`` of the forward GEMMs of layer 0 and a layer above."""
    t = s.t
    out = []
    for layer in (0, 1):
        times = s.dirs if layer == 0 else s.dirs * (s.nl - 1)
        d_l = s.d if layer == 0 else s.out
        out.append(("input", s.n, d_l, s.g * s.h, times, times * layer, layer))
        for name, k, n in _stages(g, s):
            calls = times * t * (np.where(s.p > 0, 1, 0) if name == "projection" else 1)
            dx = calls if name == "projection" else times * (t - 1)
            out.append((name, s.b, k, n, calls, dx, layer))
    return out


def gemm_terms(g: Grid) -> list[GemmTerm]:
    """Every GEMM one call runs (:func:`paramcalc.timing.predict.gemm_calls`): the forward GEMMs
    and, in training, autograd's dX ``(M, N, K)`` (none for the layer-0 input, nor for the first
    step's recurrent GEMMs) and dW ``(K, M, N)`` of each."""
    s = sizes(g)
    training = g.workload.training
    out = []
    shape = (len(g),)
    for role, *sizes_, layer in _forward_terms(g, s):
        m, k, n, calls, dx = (np.broadcast_to(np.asarray(x, dtype=g.dtype), shape) for x in sizes_)
        rows = s.b if role != "input" else s.n
        label = f"{role}, layer {'0' if layer == 0 else '1+'}"
        out.append(GemmTerm(label, ("m", rows), m, k, n, calls))
        if training:
            out.append(GemmTerm(f"dX {label}", ("m", rows), m, n, k, dx))
            out.append(GemmTerm(f"dW {label}", ("k", rows), k, m, n, calls))
    return out


def elementwise_bytes(g: Grid) -> Any:
    """Bytes the speed model moves for the bias and elementwise ops of one call (read and write of
    every element per op; training: three passes), as :func:`paramcalc.timing.predict.predict`."""
    s = sizes(g)
    per_unit = sum(n for _, n in g.cell.ops_for(layout_of(g.cell, False)))
    bias0, bias1 = layer_kinds(g, s, 0)[3], layer_kinds(g, s, 1)[3]
    ops = s.dirs * (bias0 + (s.nl - 1) * bias1) + s.dirs * s.nl * per_unit * s.h
    passes = 3 if g.workload.training else 1
    return passes * ops * g.workload.tokens * 2 * s.nb


# --- the Pareto front ------------------------------------------------------------------------------

#: Points checked against the front at once (memory: CHUNK × front × objectives booleans).
CHUNK = 512


def pareto_mask(points: Any) -> Any:
    """Which rows of ``points`` (``n × k``, every column to minimise) no other row dominates.

    A row dominates another when it is no worse in every column and better in one; equal rows
    dominate neither. Rows are visited in lexicographic order (a row can only be dominated by one
    before it), a chunk at a time against the front found so far and against itself.
    """
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2:
        raise ParamcalcError("pareto_mask needs a two-dimensional array (points × objectives)")
    order = np.lexsort(pts.T[::-1])
    ranked = pts[order]
    keep = np.zeros(len(pts), dtype=bool)
    front = ranked[:0]
    for start in range(0, len(ranked), CHUNK):
        chunk = ranked[start : start + CHUNK]
        beaten = _dominated(chunk, front) | _dominated(chunk, chunk)
        keep[order[start : start + CHUNK]] = ~beaten
        front = np.concatenate([front, chunk[~beaten]])
    return keep


def _dominated(a: Any, b: Any) -> Any:
    """For each row of ``a``: whether some row of ``b`` dominates it."""
    if not len(b):
        return np.zeros(len(a), dtype=bool)
    no_worse = np.all(b[None, :, :] <= a[:, None, :], axis=2)
    better = np.any(b[None, :, :] < a[:, None, :], axis=2)
    return np.any(no_worse & better, axis=1)
