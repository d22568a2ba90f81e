"""Read an ONNX model: its initializers (shapes only) and its LSTM/GRU/RNN nodes as specs.

The model is parsed with ``onnx.load(..., load_external_data=False)``: external data files are
never opened, and shapes come from the initializers' ``dims``. Each ``LSTM``, ``GRU`` and ``RNN``
node (in the main graph and in ``If``/``Loop``/``Scan`` bodies) is one layer (``num_layers=1``;
PyTorch exports one node per layer), described by its attributes and its input tensors:

* ``W [dirs, G·H, input]``, ``R [dirs, G·H, H]``, ``B [dirs, 2·G·H]`` (two bias vectors, ``Wb``
  and ``Rb``: ``bias_vectors=2``; no ``B``: no biases), ``P [dirs, 3H]`` (LSTM peepholes, order
  i, o, f: ``peephole=True``);
* ``direction`` forward / reverse / bidirectional, ``hidden_size``, GRU ``linear_before_reset``
  (1 is PyTorch's reset-after form; ONNX's default 0 is ``reset_after=False``), RNN
  ``activations`` (Relu -> ``rnn_relu``).

ONNX orders the gate blocks differently from PyTorch (LSTM ``iofc``, GRU ``zrh``); the counts do
not depend on the order. Specs use the ``torch`` convention (two bias vectors per block when
``B`` is present); the model's convention is ``onnx``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ...core.cells import cell_for
from ...core.spec import RecurrentSpec
from ...errors import ParamcalcError
from ...results.render import plural
from . import (
    FoundLayer,
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
#: Gate blocks per recurrent op.
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
GATE_ORDER = {"LSTM": "iofc (PyTorch: ifgo)", "GRU": "zrh (PyTorch: rzn)"}
DIRECTIONS = ("forward", "reverse", "bidirectional")
#: Nested graphs deeper than this are not searched.
MAX_DEPTH = 64

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


@dataclass
class _Scan:
    """What a walk over the graphs collects."""

    onnx: Any
    path: os.PathLike[str]
    tensors: list[StoredTensor] = field(default_factory=list)
    listed: set[str] = field(default_factory=set)
    layers: list[FoundLayer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    external: int = 0

    def add(self, t: StoredTensor) -> None:
        if t.name not in self.listed:
            self.listed.add(t.name)
            self.tensors.append(t)


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


def _layer(scan: _Scan, node: Any, where: str, shapes: Shapes) -> FoundLayer | None:
    """One recurrent node as a FoundLayer (``None`` with a note if its weights are not static)."""
    op = node.op_type
    g = GATES[op]
    attrs = _attrs(scan.onnx, node)
    inputs = [*node.input, *([""] * 8)]
    w_name, r_name, b_name = inputs[1], inputs[2], inputs[3]
    p_name = inputs[7] if op == "LSTM" else ""
    direction = str(attrs.get("direction", "forward")).lower()
    if direction not in DIRECTIONS:
        raise refuse(scan.path, f"{where}: unknown direction {direction!r}")
    dirs = 2 if direction == "bidirectional" else 1

    def shape(name: str, role: str) -> tuple[int, ...] | None:
        if not name:
            return None
        if name not in shapes:
            scan.notes.append(f"{where}: {role} ({name}) is computed at run time; layer not identified")
            raise LookupError
        return shapes[name][0]

    try:
        w = shape(w_name, "W")
        r = shape(r_name, "R")
        b = shape(b_name, "B")
        p = shape(p_name, "P")
    except LookupError:
        return None
    if w is None or r is None:
        raise refuse(scan.path, f"{where}: an {op} node needs inputs W and R")
    if len(w) != 3 or w[0] != dirs or w[1] % g or not w[1] or not w[2]:
        raise _bad(scan.path, where, "W", w, f"[{dirs}, {g}·hidden_size, input_size]")
    hidden = attrs.get("hidden_size") or (r[2] if len(r) == 3 else w[1] // g)
    if not isinstance(hidden, int) or hidden <= 0:
        raise refuse(scan.path, f"{where}: hidden_size must be a positive integer, got {hidden!r}")
    gh = g * hidden
    if w[1] != gh:
        raise _bad(scan.path, where, "W", w, f"[{dirs}, {gh}, input_size] (hidden_size={hidden})")
    if r != (dirs, gh, hidden):
        raise _bad(scan.path, where, "R", r, f"[{dirs}, {gh}, {hidden}]")
    if b is not None and b != (dirs, 2 * gh):
        raise _bad(scan.path, where, "B", b, f"[{dirs}, {2 * gh}] (Wb and Rb)")
    if p is not None and p != (dirs, 3 * hidden):
        raise _bad(scan.path, where, "P", p, f"[{dirs}, {3 * hidden}] (peepholes i, o, f)")

    notes = []
    if b is not None:
        notes.append("ONNX B holds two bias vectors (Wb, Rb)")
    else:
        notes.append("no B: no biases")
    kwargs: dict[str, Any] = {}
    acts = [str(a).lower() for a in attrs.get("activations", ["Tanh"] * dirs)] or ["tanh"]
    ct = cell_for("onnx", op, acts[0] if len(set(acts)) == 1 else None)
    if ct is None:  # pragma: no cover - the caller passes only LSTM, GRU, RNN nodes
        raise _bad(scan.path, where, "op", (), "an ONNX recurrent operator")
    cell = ct.name
    if ct.peephole_gates:
        kwargs["peephole"] = p is not None
        if p is not None:
            notes.append("ONNX P holds three peephole vectors (i, o, f)")
        if attrs.get("input_forget"):
            notes.append("input_forget=1 couples the input and forget gates (all four blocks are stored)")
    if ct.reset_after_option:
        lbr = int(attrs.get("linear_before_reset", 0))
        kwargs["reset_after"] = lbr != 0
        notes.append(
            "linear_before_reset=1: PyTorch's reset-after form"
            if lbr
            else "linear_before_reset=0: reset before the matmul (reset_after=False)"
        )
    if ct.nonlinearity and any(a != ct.nonlinearity for a in acts):
        notes.append(f"activations {acts}: counted as {cell} (the activation does not change the count)")
    if op in GATE_ORDER:
        notes.append(f"gate order {GATE_ORDER[op]}")
    if direction == "reverse":
        notes.append("direction='reverse': one direction, run backwards")
    for name, role in ((w_name, "W"), (r_name, "R"), (b_name, "B"), (p_name, "P")):
        if name and shapes[name][1] is None:
            notes.append(f"{role} is a graph input (not stored in the file)")
    try:
        spec = RecurrentSpec(
            cell,
            w[2],
            hidden,
            bidirectional=dirs == 2,
            bias_vectors=2 if b is not None else 0,
            convention="torch",
            **kwargs,
        )
    except ParamcalcError as e:
        raise refuse(scan.path, f"{where}: {e}") from None
    stored = (shapes[n][1] for n in (w_name, r_name, b_name, p_name) if n)
    return FoundLayer(where, spec, tuple(n for n in stored if n), "; ".join(notes))


def _walk(scan: _Scan, graph: Any, prefix: str, outer: Shapes, depth: int) -> None:
    """Collect initializers and recurrent nodes of ``graph`` and its subgraphs."""
    onnx = scan.onnx
    if depth > MAX_DEPTH:
        scan.notes.append(f"graphs nested deeper than {MAX_DEPTH} levels were not searched")
        return
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
    recurrent_inputs = {
        n
        for node in graph.node
        if node.op_type in GATES and node.domain in ("", "ai.onnx")
        for n in node.input
    }
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
            for a in node.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    out = node.output[0]
                    t = _stored(scan, a.t, prefix + out)
                    if out in recurrent_inputs:
                        scan.add(t)  # weights held by a Constant node are stored tensors too
                        shapes[out] = (t.shape, t.name)
    for index, node in enumerate(graph.node):
        where = prefix + (node.name or f"{node.op_type}_{index}")
        if node.op_type in GATES and node.domain in ("", "ai.onnx"):
            layer = _layer(scan, node, where, shapes)
            if layer is not None:
                scan.layers.append(layer)
        elif any(k in node.op_type.upper() for k in ("LSTM", "GRU", "RNN")):
            domain = node.domain or "ai.onnx"
            scan.notes.append(
                f"{where}: {domain} {node.op_type} is not a standard ONNX recurrent op; not identified"
            )
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                _walk(scan, a.g, f"{where}/{a.name}/", shapes, depth + 1)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for i, sub in enumerate(a.graphs):
                    _walk(scan, sub, f"{where}/{a.name}[{i}]/", shapes, depth + 1)


@one_line_errors
def read_onnx(path: str | os.PathLike[str]) -> StoredModel:
    """Initializers and LSTM/GRU/RNN nodes of an ONNX model (external data is never loaded)."""
    p, size = regular_file(path)
    try:
        import onnx
    except ImportError:
        raise missing_extra(".onnx", "onnx", "onnx") from None
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
    scan = _Scan(onnx, p)
    _walk(scan, model.graph, "", {}, 0)
    for fn in model.functions:
        ops = sorted({n.op_type for n in fn.node if n.op_type in GATES})
        if ops:
            scan.notes.append(
                f"function {fn.domain}.{fn.name} contains {', '.join(ops)} nodes: their weights are "
                "function inputs; not identified"
            )
    if scan.external:
        scan.notes.append(
            f"{plural(scan.external, 'initializer')} "
            f"{'keeps its' if scan.external == 1 else 'keep their'} data in external files (not read)"
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
    )
