"""Read an ONNX model: its initializers (shapes only) and its LSTM/GRU/RNN nodes as specs.

The model is parsed with ``onnx.load(..., load_external_data=False)``: external data files are
never opened, and shapes come from the initializers' ``dims``. Each recurrent node (the ops the
cell registry names: ``LSTM``, ``GRU``, ``RNN``; in the main graph and in ``If``/``Loop``/``Scan``
bodies) is one layer (``num_layers=1``; PyTorch exports one node per layer), described by its
attributes and its input tensors:

* ``W [dirs, G·H, input]``, ``R [dirs, G·H, H]``, ``B [dirs, 2·G·H]`` (two bias vectors, ``Wb``
  and ``Rb``: ``bias_vectors=2``; no ``B``: no biases), ``P [dirs, 3H]`` (LSTM peepholes, order
  i, o, f: ``peephole=True``);
* ``direction`` forward / reverse / bidirectional, ``hidden_size``, GRU ``linear_before_reset``
  (1 is PyTorch's reset-after form; ONNX's default 0 is ``reset_after=False``), RNN
  ``activations`` (Relu -> ``rnn_relu``).

An input need not be an initializer: torch's default (dynamo) exporter builds ``R`` from the
stored ``weight_hh_l0`` with ``Slice``/``Concat``/``Unsqueeze`` (the gate blocks reordered) and
stores folded constants such as ``val_41`` for the rest. Each input is traced back through
operators that only move, reshape, cast or select values (:data:`MOVE_OPS`) to the stored tensors
it is built from; their elements must add up to the input's, each stored tensor feeding one
input of the node. A node whose input is computed (a ``MatMul``), a graph input, or built from
part of a larger tensor is not identified, and the file's verdict is *unverified*. Stored tensors
that only reach shape or index inputs (``Slice`` starts, ``Reshape`` shapes) or a recurrent
node's initial state are graph constants: listed, not counted as parameters. A torch recurrent
module that the exporter unrolled into elementary operators (its node metadata says so) is
named as unverified too.

ONNX orders the gate blocks differently from PyTorch (LSTM ``iofc``, GRU ``zrh``); the counts do
not depend on the order. Specs use the ``torch`` convention (two bias vectors per block when
``B`` is present); the model's convention is ``onnx``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from math import isqrt
from typing import Any, NamedTuple

from ...core.cells import CELLS, CellType, cell_for
from ...core.spec import RecurrentSpec
from ...errors import ParamcalcError
from ...results.text import plural
from . import (
    FoundLayer,
    Part,
    StoredModel,
    StoredTensor,
    missing_extra,
    one_line_errors,
    refuse,
    regular_file,
    short_reason,
)

#: A protobuf message cannot exceed 2 GiB; larger models keep their weights as external data.
MAX_PROTOBUF_BYTES = 2**31
DIRECTIONS = ("forward", "reverse", "bidirectional")
#: Nested graphs deeper than this are not searched.
MAX_DEPTH = 64
#: Values visited at most when tracing one input back to stored tensors.
MAX_TRACE = 10_000
STANDARD_DOMAINS = ("", "ai.onnx")
#: A recurrent node's weight inputs (name, input slot), in the order of the analytic tensors.
ROLES = (("W", 1), ("R", 2), ("B", 3), ("P", 7))
#: A recurrent node's inputs that are state, not weights.
STATE_SLOTS = {4: "sequence lengths", 5: "initial hidden state", 6: "initial cell state"}
#: Operators that only move, reshape, cast or select values: their data inputs (``None``: all).
MOVE_OPS: dict[str, tuple[int, ...] | None] = {
    "Identity": (0,),
    "Cast": (0,),
    "CastLike": (0,),
    "Reshape": (0,),
    "Unsqueeze": (0,),
    "Squeeze": (0,),
    "Transpose": (0,),
    "Flatten": (0,),
    "Slice": (0,),
    "Split": (0,),
    "Gather": (0,),
    "Concat": None,
    "DequantizeLinear": (0,),
}
#: Moves that may drop elements: a traced input through them says nothing of the input size.
SELECTING = frozenset({"Slice", "Gather", "Split"})
#: Operators that spread a value without making it a weight (a zero state broadcast to a batch).
SPREAD_OPS: dict[str, tuple[int, ...] | None] = {**MOVE_OPS, "Expand": (0,), "Tile": (0,)}
#: Inputs that hold shapes, axes, indices or sizes: a stored tensor used only there is no weight.
INDEX_SLOTS: dict[str, frozenset[int]] = {
    "Reshape": frozenset({1}),
    "Unsqueeze": frozenset({1}),
    "Squeeze": frozenset({1}),
    "Slice": frozenset({1, 2, 3, 4}),
    "Expand": frozenset({1}),
    "Tile": frozenset({1}),
    "Gather": frozenset({1}),
    "GatherElements": frozenset({1}),
    "GatherND": frozenset({1}),
    "Split": frozenset({1}),
    "Pad": frozenset({1, 3}),
    "ConstantOfShape": frozenset({0}),
    "Range": frozenset({0, 1, 2}),
    "TopK": frozenset({1}),
    "OneHot": frozenset({1}),
    "CumSum": frozenset({1}),
    "Resize": frozenset({1, 2, 3}),
    "Trilu": frozenset({1}),
    "ScatterND": frozenset({1}),
    "ScatterElements": frozenset({1}),
    **{op: frozenset({1}) for op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd")},
}
#: torch's exporter records each node's module path and class in its metadata.
TORCH_CLASSES = "pkg.torch.onnx.class_hierarchy"
TORCH_SCOPES = "pkg.torch.onnx.name_scopes"
TORCH_RECURRENT = "torch.nn.modules.rnn."
MAX_METADATA = 4096

#: ONNX TensorProto data types -> the names paramcalc reports.
DTYPES: dict[str, str] = {
    "FLOAT": "float32",
    "DOUBLE": "float64",
    "FLOAT16": "float16",
    "BFLOAT16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT16": "int16",
    "UINT16": "uint16",
    "INT32": "int32",
    "UINT32": "uint32",
    "INT64": "int64",
    "UINT64": "uint64",
    "BOOL": "bool",
    "STRING": "string",
    "COMPLEX64": "complex64",
    "COMPLEX128": "complex128",
    "FLOAT8E4M3FN": "float8_e4m3fn",
    "FLOAT8E4M3FNUZ": "float8_e4m3fnuz",
    "FLOAT8E5M2": "float8_e5m2",
    "FLOAT8E5M2FNUZ": "float8_e5m2fnuz",
    "FLOAT8E8M0": "float8_e8m0fnu",
    "FLOAT4E2M1": "float4_e2m1fn",
    "INT4": "int4",
    "UINT4": "uint4",
    "INT2": "int2",
    "UINT2": "uint2",
}


def _dtype(onnx: Any, code: int) -> str:
    try:
        name = onnx.TensorProto.DataType.Name(code)
    except ValueError:
        return f"onnx_type_{code}"
    return str(DTYPES.get(name, name.lower()))


def recurrent_ops() -> frozenset[str]:
    """The ONNX operators the cell registry names (``LSTM``, ``GRU``, ``RNN``)."""
    return frozenset(c.onnx_op for c in CELLS.values() if c.onnx_op)


def _standard(node: Any) -> bool:
    return node.domain in STANDARD_DOMAINS


@dataclass
class _Scan:
    """What a walk over the graphs collects."""

    onnx: Any
    path: os.PathLike[str]
    ops: frozenset[str]
    #: Every node input in the model: value name -> (node, input slot) (subgraphs included).
    uses: dict[str, list[tuple[Any, int]]] = field(default_factory=dict)
    tensors: list[StoredTensor] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    layers: list[FoundLayer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    external: int = 0

    def add(self, t: StoredTensor) -> None:
        if t.name not in self.index:
            self.index[t.name] = len(self.tensors)
            self.tensors.append(t)

    def mark(self, name: str, why: str) -> None:
        """The stored tensor ``name`` is not a parameter, for the reason ``why``."""
        i = self.index[name]
        self.tensors[i] = replace(self.tensors[i], not_parameter=why)


def _stored(scan: _Scan, proto: Any, name: str) -> StoredTensor:
    """A TensorProto as a StoredTensor (dims and type only; raw data is not touched)."""
    onnx = scan.onnx
    key: object = ("onnx", name)
    if proto.data_location == onnx.TensorProto.EXTERNAL:
        scan.external += 1
        ext = {e.key: e.value for e in proto.external_data}
        try:
            offset = int(ext.get("offset", "0") or 0)
            length = int(ext["length"]) if ext.get("length") else None
        except ValueError:
            offset, length = 0, None
        if ext.get("location"):
            key = ("onnx-external", ext["location"], offset, length)
    return StoredTensor(name, tuple(int(d) for d in proto.dims), _dtype(onnx, proto.data_type), key)


def _input_shape(value_info: Any) -> tuple[int, ...] | None:
    """The static shape of a graph input, or ``None`` if any dimension is symbolic."""
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in t.tensor_type.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(int(d.dim_value))
    return tuple(dims)


def _attrs(onnx: Any, node: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            continue
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        out[a.name] = value
    return out


def _bad(
    path: os.PathLike[str], where: str, what: str, shape: tuple[int, ...], expected: str
) -> ParamcalcError:
    return refuse(path, f"{where}: {what} has shape {list(shape)}, expected {expected}")


#: A value name in scope -> (its static shape, the StoredTensor name if the file stores it).
Shapes = dict[str, tuple[tuple[int, ...], str | None]]


@dataclass
class _Graph:
    """One graph's scope: the values it can see and the nodes that produce them."""

    shapes: Shapes
    producer: dict[str, Any]
    prefix: str
    #: Static shapes the file declares for values (``value_info``, inputs, outputs).
    declared: dict[str, tuple[int, ...]]


class _Source(NamedTuple):
    """The stored tensors one input of a node is built from."""

    names: tuple[str, ...] = ()
    #: Operators passed on the way (empty: the input is a stored tensor itself).
    via: tuple[str, ...] = ()
    #: Non-empty: why the input cannot be traced to stored tensors.
    why: str = ""


def _constant(scan: _Scan, graph: _Graph, node: Any) -> StoredTensor | None:
    """The tensor a ``Constant`` node holds, listed as stored (a weight folded into the graph)."""
    out = node.output[0] if node.output else ""
    for a in node.attribute:
        if out and a.name == "value" and a.type == scan.onnx.AttributeProto.TENSOR:
            t = _stored(scan, a.t, graph.prefix + out)
            scan.add(t)
            graph.shapes[out] = (t.shape, t.name)
            return t
    return None


def _trace(scan: _Scan, graph: _Graph, value: str) -> _Source:
    """The stored tensors ``value`` is built from through :data:`MOVE_OPS`, in input order."""
    names: list[str] = []
    via: list[str] = []
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        if len(seen) > MAX_TRACE:
            return _Source(why=f"built by more than {MAX_TRACE:,} operations")
        known = graph.shapes.get(v)
        node = graph.producer.get(v) if known is None else None
        if known is not None and known[1] is None:
            return _Source(why=f"{v} is a graph input (not stored in the file)")
        if known is not None:
            names.append(str(known[1]))
        elif node is None:
            return _Source(why=f"{v} comes from outside the graph")
        elif node.op_type == "Constant" and _standard(node):
            t = _constant(scan, graph, node)
            if t is None:
                return _Source(why=f"{v} is a Constant without a tensor")
            names.append(t.name)
        elif node.op_type in MOVE_OPS and _standard(node):
            if node.op_type not in via:
                via.append(node.op_type)
            slots = MOVE_OPS[node.op_type]
            inputs = (
                list(node.input) if slots is None else [node.input[i] for i in slots if i < len(node.input)]
            )
            stack.extend(reversed([x for x in inputs if x]))
        else:
            return _Source(why=f"{v} is computed at run time ({node.op_type})")
    return _Source(tuple(dict.fromkeys(names)), tuple(reversed(via)))


@dataclass
class _Node:
    """One recurrent node, read: its operator, attributes and where each weight input comes from."""

    op: str
    where: str
    ct: CellType
    attrs: dict[str, Any]
    dirs: int
    acts: list[str]
    sources: dict[str, _Source]
    #: Element counts of the stored tensors each input is built from.
    numel: dict[str, int]
    #: Shapes of the inputs: stored as they are, or as the file declares the built value.
    direct: dict[str, tuple[int, ...]]
    #: The input features of ``X`` where the file declares its shape.
    x_dim: int | None = None


def _read_node(scan: _Scan, graph: _Graph, node: Any, where: str) -> _Node | None:
    """The node's attributes and the stored tensors behind its inputs (``None``: not traceable)."""
    op = node.op_type
    attrs = _attrs(scan.onnx, node)
    ct, dirs, acts = _cell(scan, op, attrs, where)
    inputs = [*node.input, *([""] * 8)]
    if not inputs[1] or not inputs[2]:
        raise refuse(scan.path, f"{where}: an {op} node needs inputs W and R")
    roles = [(r, inputs[i]) for r, i in ROLES if inputs[i] and (r != "P" or ct.peephole_gates)]
    sources = {r: _trace(scan, graph, name) for r, name in roles}
    for role, src in sources.items():
        if src.why:
            scan.unverified.append(f"{where}: {op} input {role}: {src.why}; the layer is not identified")
            return None
    numel, direct = _sizes(scan, graph, sources, dict(roles))
    x = graph.declared.get(inputs[0]) or graph.shapes.get(inputs[0], ((),))[0]
    x_dim = x[-1] if x and x[-1] > 0 else None
    return _Node(op, where, ct, attrs, dirs, acts, sources, numel, direct, x_dim)


def _sizes(
    scan: _Scan, graph: _Graph, sources: dict[str, _Source], inputs: dict[str, str]
) -> tuple[dict[str, int], dict[str, tuple[int, ...]]]:
    """Per weight input: the elements of the stored tensors it is built from, and its shape
    where it is known (stored as it is, or declared by the file for a built value)."""
    stored = {t.name: t for t in scan.tensors}
    numel = {r: sum(stored[n].numel for n in src.names) for r, src in sources.items()}
    direct = {r: stored[src.names[0]].shape for r, src in sources.items() if not src.via}
    for r, name in inputs.items():
        if sources[r].via and name in graph.declared:
            direct[r] = graph.declared[name]
    return numel, direct


def _cell(scan: _Scan, op: str, attrs: dict[str, Any], where: str) -> tuple[CellType, int, list[str]]:
    """The registered cell of a recurrent node, its number of directions and its activations."""
    direction = str(attrs.get("direction", "forward")).lower()
    if direction not in DIRECTIONS:
        raise refuse(scan.path, f"{where}: unknown direction {direction!r}")
    dirs = 2 if direction == "bidirectional" else 1
    acts = [str(a).lower() for a in attrs.get("activations", ["Tanh"] * dirs)] or ["tanh"]
    ct = cell_for("onnx", op, acts[0] if len(set(acts)) == 1 else None)
    if ct is None:  # pragma: no cover - the caller passes only the registry's operators
        raise refuse(scan.path, f"{where}: {op} is not a recurrent operator paramcalc models")
    return ct, dirs, acts


def _hidden(scan: _Scan, n: _Node) -> int | None:
    """``hidden_size``: the attribute, else from a stored ``R`` or ``W`` (``None``: not knowable)."""
    g = n.ct.gates
    hidden = n.attrs.get("hidden_size")
    if hidden is None:
        r, w = n.direct.get("R"), n.direct.get("W")
        if r is not None and len(r) == 3:
            hidden = r[2]
        elif w is not None and len(w) == 3:
            hidden = w[1] // g
        else:
            h = isqrt(n.numel["R"] // max(1, n.dirs * g))
            hidden = h if n.dirs * g * h * h == n.numel["R"] else None
            if hidden is None:
                return None
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden <= 0:
        raise refuse(scan.path, f"{n.where}: hidden_size must be a positive integer, got {hidden!r}")
    return hidden


def _check_direct(scan: _Scan, n: _Node, hidden: int) -> None:
    """The inputs stored as they are have the operator's shapes (else one line: a broken file)."""
    g, dirs, path, where = n.ct.gates, n.dirs, scan.path, n.where
    gh = g * hidden
    w, r, b, p = (n.direct.get(k) for k in ("W", "R", "B", "P"))
    if w is not None and (len(w) != 3 or w[0] != dirs or w[1] != gh or not w[2]):
        raise _bad(path, where, "W", w, f"[{dirs}, {gh}, input_size] (hidden_size={hidden})")
    if r is not None and r != (dirs, gh, hidden):
        raise _bad(path, where, "R", r, f"[{dirs}, {gh}, {hidden}]")
    if b is not None and b != (dirs, 2 * gh):
        raise _bad(path, where, "B", b, f"[{dirs}, {2 * gh}] (Wb and Rb)")
    if p is not None and p != (dirs, 3 * hidden):
        raise _bad(path, where, "P", p, f"[{dirs}, {3 * hidden}] (peepholes i, o, f)")


def _traced_sizes(scan: _Scan, n: _Node, hidden: int) -> int | None:
    """``input_size``, after checking that the traced inputs hold the operator's element counts
    (``None`` with an unverified reason where they do not)."""
    g, dirs = n.ct.gates, n.dirs
    gh = g * hidden
    w = n.direct.get("W")
    if w is not None:
        d = w[2]
    elif n.x_dim is not None:
        d = n.x_dim
    elif not SELECTING & set(n.sources["W"].via):  # every stored element reaches W
        d = n.numel["W"] // (dirs * gh)
    else:
        scan.unverified.append(
            f"{n.where}: input W is built ({', '.join(n.sources['W'].via)}) and the input size is not "
            "declared; the layer is not identified"
        )
        return None
    need = {"W": dirs * gh * d, "R": dirs * gh * hidden, "B": dirs * 2 * gh, "P": dirs * 3 * hidden}
    owner: dict[str, str] = {}
    for role, src in n.sources.items():
        for name in src.names:
            if owner.setdefault(name, role) != role:
                scan.unverified.append(
                    f"{n.where}: inputs {owner[name]} and {role} are both built from {name}; "
                    "the layer is not identified"
                )
                return None
        if src.via and (n.numel[role] != need[role] or d <= 0):
            scan.unverified.append(
                f"{n.where}: input {role} is built ({', '.join(src.via)}) from {', '.join(src.names)}, "
                f"{n.numel[role]:,} elements where {n.op} needs {need[role]:,}; the layer is not identified"
            )
            return None
    return d


def _peephole_note(ct: CellType) -> str:
    """What ONNX's ``P`` holds, from the registry's gate facts: the peepholes in ONNX's block order."""
    order = ct.onnx_gate_names or ct.gate_names
    peep = sorted(ct.peephole_gates, key=lambda g: order.index(g) if g in order else len(order))
    return f"ONNX P holds {len(peep)} peephole vectors ({', '.join(peep)})"


def _notes(n: _Node, spec: RecurrentSpec, torch_path: str | None) -> list[str]:
    notes = ["ONNX B holds two bias vectors (Wb, Rb)" if "B" in n.sources else "no B: no biases"]
    ct = n.ct
    if ct.peephole_gates and "P" in n.sources:
        notes.append(_peephole_note(ct))
    if ct.peephole_gates and n.attrs.get("input_forget"):
        notes.append("input_forget=1 couples the input and forget gates (all four blocks are stored)")
    if ct.reset_after_option:
        notes.append(
            "linear_before_reset=1: PyTorch's reset-after form"
            if spec.reset_after
            else "linear_before_reset=0: reset before the matmul (reset_after=False)"
        )
    if ct.nonlinearity and any(a != ct.nonlinearity for a in n.acts):
        notes.append(f"activations {n.acts}: counted as {ct.name} (the activation does not change the count)")
    if ct.onnx_gate_names and ct.onnx_gate_names != ct.gate_names:
        notes.append(f"gate order {''.join(ct.onnx_gate_names)} (PyTorch: {''.join(ct.gate_names)})")
    if str(n.attrs.get("direction", "")).lower() == "reverse":
        notes.append("direction='reverse': one direction, run backwards")
    built = [r for r, src in n.sources.items() if src.via]
    if built:
        notes.append(f"{', '.join(built)} built by the graph from stored tensors")
    if torch_path is not None:
        notes.append(f"torch module {torch_path or '(root)'}")
    return notes


def _layer(scan: _Scan, graph: _Graph, node: Any, where: str) -> FoundLayer | None:
    """One recurrent node as a FoundLayer (``None``, with an unverified reason, if not identified)."""
    n = _read_node(scan, graph, node, where)
    if n is None:
        return None
    hidden = _hidden(scan, n)
    if hidden is None:
        scan.unverified.append(f"{where}: hidden_size unknown (no attribute, R built by the graph)")
        return None
    _check_direct(scan, n, hidden)
    d = _traced_sizes(scan, n, hidden)
    if d is None:
        return None
    kwargs: dict[str, Any] = {}
    if n.ct.peephole_gates:
        kwargs["peephole"] = "P" in n.sources
    if n.ct.reset_after_option:
        kwargs["reset_after"] = int(n.attrs.get("linear_before_reset", 0)) != 0
    try:
        spec = RecurrentSpec(
            n.ct.name,
            d,
            hidden,
            bidirectional=n.dirs == 2,
            bias_vectors=2 if "B" in n.sources else 0,
            convention="torch",
            **kwargs,
        )
    except ParamcalcError as e:
        raise refuse(scan.path, f"{where}: {e}") from None
    note = "; ".join(_notes(n, spec, _torch_module(node)))
    names = tuple(name for src in n.sources.values() for name in src.names)
    traced = any(src.via or len(src.names) != 1 for src in n.sources.values())
    parts = tuple(Part(src.names, src.via) for src in n.sources.values()) if traced else ()
    return FoundLayer(where, spec, names, note, parts)


# --- what is not a parameter, and what torch unrolled ------------------------------------------------


def _collect_uses(scan: _Scan, graph: Any, depth: int = 0) -> None:
    """Every node input of ``graph`` and its subgraphs, by value name."""
    if depth > MAX_DEPTH:
        return
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name:
                scan.uses.setdefault(name, []).append((node, i))
        for a in node.attribute:
            if a.type == scan.onnx.AttributeProto.GRAPH:
                _collect_uses(scan, a.g, depth + 1)
            elif a.type == scan.onnx.AttributeProto.GRAPHS:
                for sub in a.graphs:
                    _collect_uses(scan, sub, depth + 1)


def _constant_use(scan: _Scan, value: str, memo: dict[str, str | None], depth: int = 0) -> str | None:
    """Why a stored value is no weight: every path from it ends in a shape/index input or a
    recurrent node's state input. ``None`` if any use may take it as a weight."""
    if value in memo:
        return memo[value]
    memo[value] = None  # a cycle (impossible in a valid graph) ends as "may be a weight"
    uses = scan.uses.get(value)
    if not uses or depth > MAX_DEPTH:
        return None
    reasons: list[str] = []
    for node, i in uses:
        op = node.op_type if _standard(node) else ""
        if op in scan.ops and i in STATE_SLOTS:
            reasons.append(f"the {STATE_SLOTS[i]} of {node.name or op}")
        elif i in INDEX_SLOTS.get(op, ()):
            reasons.append(f"a shape or index input of {op}")
        elif op in SPREAD_OPS and (SPREAD_OPS[op] is None or i in (SPREAD_OPS[op] or ())):
            for out in node.output:
                why = _constant_use(scan, out, memo, depth + 1)
                if why is None:
                    return None
                reasons.append(why)
        else:
            return None
    kept = list(dict.fromkeys(reasons))
    memo[value] = "; ".join(kept[:2]) + ("; ..." if len(kept) > 2 else "")
    return memo[value]


def _mark_constants(scan: _Scan, graph: Any, prefix: str) -> None:
    """Initializers that only feed shapes, indices or a recurrent state: not parameters."""
    memo: dict[str, str | None] = {}
    for init in graph.initializer:
        why = _constant_use(scan, init.name, memo)
        if why and prefix + init.name in scan.index:
            scan.mark(prefix + init.name, f"graph constant, not a parameter: {why}")


def _metadata_list(node: Any, key: str) -> list[str]:
    for prop in node.metadata_props:
        if prop.key == key:
            return re.findall(r"'([^']*)'", prop.value[:MAX_METADATA])
    return []


def _torch_modules(node: Any) -> list[tuple[str, str]]:
    """``(module path, class)`` of the torch recurrent modules a node was exported from."""
    classes, scopes = _metadata_list(node, TORCH_CLASSES), _metadata_list(node, TORCH_SCOPES)
    out = []
    for i, cls in enumerate(classes):
        if cls.startswith(TORCH_RECURRENT):
            path = ".".join(s for s in scopes[1 : i + 1] if s) if len(scopes) == len(classes) else "?"
            out.append((path, cls[len(TORCH_RECURRENT) :]))
    return out


def _torch_module(node: Any) -> str | None:
    found = _torch_modules(node)
    return found[-1][0] if found else None


def _unrolled(scan: _Scan, graph: Any) -> None:
    """torch recurrent modules exported as elementary operators: nothing identifies them."""
    with_node: set[str] = set()
    without: dict[str, str] = {}
    for node in graph.node:
        for path, cls in _torch_modules(node):
            if node.op_type in scan.ops and _standard(node):
                with_node.add(path)
            else:
                without.setdefault(path, cls)
    for path, cls in without.items():
        if path not in with_node:
            scan.unverified.append(
                f"torch module {path or '(root)'} ({cls}) was exported as elementary operators "
                "(MatMul, Add, ...), not as an ONNX recurrent node: its tensors are counted, not identified"
            )


# --- the walk -------------------------------------------------------------------------------------


def _scope(
    scan: _Scan, graph: Any, prefix: str, outer: Shapes, outer_declared: dict[str, tuple[int, ...]]
) -> _Graph:
    """A graph's stored tensors (listed) and the values it can see."""
    onnx = scan.onnx
    shapes: Shapes = dict(outer)
    for vi in graph.input:
        s = _input_shape(vi)
        if s is not None:
            shapes[vi.name] = (s, None)
    for init in graph.initializer:
        t = _stored(scan, init, prefix + init.name)
        scan.add(t)
        shapes[init.name] = (t.shape, t.name)
    for sp in graph.sparse_initializer:
        name = sp.values.name
        t = StoredTensor(
            prefix + name, tuple(int(d) for d in sp.dims), _dtype(onnx, sp.values.data_type), None
        )
        scan.add(t)
        shapes[name] = (t.shape, t.name)
    producer = {out: node for node in graph.node for out in node.output if out}
    declared = dict(outer_declared)
    for vi in (*graph.input, *graph.value_info, *graph.output):
        s = _input_shape(vi)
        if s is not None:
            declared[vi.name] = s
    return _Graph(shapes, producer, prefix, declared)


def _walk(scan: _Scan, graph: Any, prefix: str, outer: _Graph | None, depth: int) -> None:
    """Collect initializers and recurrent nodes of ``graph`` and its subgraphs."""
    onnx = scan.onnx
    if depth > MAX_DEPTH:
        scan.unverified.append(f"graphs nested deeper than {MAX_DEPTH} levels were not searched")
        return
    g = _scope(scan, graph, prefix, outer.shapes if outer else {}, outer.declared if outer else {})
    for index, node in enumerate(graph.node):
        where = prefix + (node.name or f"{node.op_type}_{index}")
        if node.op_type in scan.ops and _standard(node):
            layer = _layer(scan, g, node, where)
            if layer is not None:
                scan.layers.append(layer)
        elif any(k in node.op_type.upper() for k in ("LSTM", "GRU", "RNN")):
            domain = node.domain or "ai.onnx"
            scan.unverified.append(
                f"{where}: {domain} {node.op_type} is not a standard ONNX recurrent op; not identified"
            )
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _walk(scan, a.g, f"{where}/{a.name}/", g, depth + 1)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for i, sub in enumerate(a.graphs):
                    _walk(scan, sub, f"{where}/{a.name}[{i}]/", g, depth + 1)
    _mark_constants(scan, graph, prefix)


def _load(p: Any, size: int) -> Any:
    import onnx

    if size > MAX_PROTOBUF_BYTES:
        raise refuse(
            p, f"{size:,} bytes: an ONNX protobuf is at most 2 GiB (larger models use external data)"
        )
    try:
        model = onnx.load(os.fspath(p), load_external_data=False)
    except OSError as e:
        raise refuse(p, e.strerror or short_reason(e)) from None
    except Exception as e:  # google.protobuf.message.DecodeError and friends
        raise refuse(p, f"not a valid ONNX protobuf ({type(e).__name__}: {short_reason(e)})") from None
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise refuse(p, "the protobuf holds no ONNX graph (not an ONNX model)")
    return model


@one_line_errors
def read_onnx(path: str | os.PathLike[str]) -> StoredModel:
    """Initializers and LSTM/GRU/RNN nodes of an ONNX model (external data is never loaded)."""
    p, size = regular_file(path)
    try:
        import onnx
    except ImportError:
        raise missing_extra(".onnx", "onnx", "onnx") from None
    model = _load(p, size)
    scan = _Scan(onnx, p, recurrent_ops())
    _collect_uses(scan, model.graph)
    _walk(scan, model.graph, "", None, 0)
    _unrolled(scan, model.graph)
    for fn in model.functions:
        ops = sorted({n.op_type for n in fn.node if n.op_type in scan.ops})
        if ops:
            scan.unverified.append(
                f"function {fn.domain}.{fn.name} contains {', '.join(ops)} nodes: their weights are "
                "function inputs; not identified"
            )
    if scan.external:
        scan.notes.append(
            f"{plural(scan.external, 'initializer')} "
            f"{'keeps its' if scan.external == 1 else 'keep their'} data in external files (not read)"
        )
    constants = sum(1 for t in scan.tensors if t.not_parameter)
    if constants:
        scan.notes.append(
            f"{plural(constants, 'stored tensor')} "
            f"{'is a graph constant' if constants == 1 else 'are graph constants'} "
            "(shapes, indices, initial states)"
        )
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    producer = " ".join(x for x in (model.producer_name, model.producer_version) if x)
    scan.notes.insert(
        0,
        f"ONNX ir_version {model.ir_version}, opset {opsets or '?'}" + (f", {producer}" if producer else ""),
    )
    return StoredModel(
        source=f"ONNX file {p}",
        format="onnx",
        tensors=tuple(scan.tensors),
        layers=tuple(scan.layers),
        convention="onnx",
        notes=tuple(scan.notes),
        unverified=tuple(dict.fromkeys(scan.unverified)),
    )
