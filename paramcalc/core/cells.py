"""The registry of recurrent cell types: one entry owns everything paramcalc knows about a cell.

A :class:`CellType` holds the cell's gate blocks, its tensor templates (role, kind, shape rule
over the sizes, the gate blocks it covers, PyTorch and Keras names, whether the tensor is a GEMM
operand), its capability flags (projection, peepholes, reset-before form, bias vectors allowed,
nonlinearity), its equations, its cost rules (elementwise ops per unit, vectors kept for
backward, sequential or parallel-scan recurrence), its ONNX and Keras facts (operator, gate
order, layer classes) and its torch binding (which ``torch.nn`` class and mode it is, the module
a plugin builds, or the step function paramcalc's reference module runs). ``count``, ``cost``,
``solve``, the architectures, the torch bridge, the readers, ``bench``, the flop check and the
CLI read the entry; no code outside this module asks which cell it is looking at, and no table
elsewhere is keyed by a cell's name. A new cell is one :func:`register_cell` call; registering,
replacing or removing one clears every memoised result (:mod:`paramcalc.core.memo`).

Shape rules are expressions over ``G``, ``Dh``, ``d``, ``P``, ``R`` (:mod:`paramcalc.core.shapes`),
parsed when a template is made; :mod:`paramcalc.core.params` compiles an entry's templates once
per layout into plain arithmetic.

Counting conventions (stated here, where they are decided):

* **bias vectors per gate block**: 0, 1 or 2 (``RecurrentSpec.bias_vectors``). The presets:
  ``torch`` names and PyTorch's layout for the ``torch.nn`` cells (two: ``b_ih`` and ``b_hh``);
  ``keras`` names and Keras' layout (one, except ``GRU(reset_after=True)``: two, stored as one
  ``(2, 3u)`` tensor). Cells outside ``torch.nn`` default to their paper's layout.
* **peepholes** (Gers & Schmidhuber 2000): one diagonal vector of ``Dh`` per peephole gate,
  layer and direction; ``p ⊙ c`` costs one multiply and one add per unit and step.
* **GEMM operands**: ``weight_ih``, ``weight_hh`` and ``weight_hr`` are multiplied as matrices;
  a diagonal recurrent weight (IndRNN's ``u``), peepholes and biases are elementwise.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from ..errors import ParamcalcError, ParamcalcWarning
from . import memo, shapes
from .memrules import CudaCell, CudnnRule, MemoryRules, Saved

#: Naming presets: whose tensor names (and default bias layout) a spec uses. ``onnx`` names the
#: inputs of ONNX's LSTM/GRU/RNN operators: ``W``, ``R``, ``B`` (both bias vectors), ``P``
#: (peepholes), each holding both directions (leading dimension).
CONVENTIONS = ("torch", "keras", "onnx")
#: ONNX input name of each tensor kind (same-kind tensors are concatenated along the last axis).
ONNX_NAMES = {"input": "W", "recurrent": "R", "recurrent_diag": "R", "bias": "B", "peephole": "P"}
#: How a bidirectional layer hands its two directions on (Keras' ``Bidirectional(merge_mode=)``).
MERGE_MODES = ("concat", "sum", "ave", "mul")

TensorKind = Literal["input", "recurrent", "recurrent_diag", "bias", "peephole", "projection"]
Recurrence = Literal["sequential", "scan"]
Runner = Literal["stack", "cell"]
#: The tensor kinds a template may have (:class:`TensorTemplate`), the recurrences and runners.
TENSOR_KINDS: tuple[str, ...] = ("input", "recurrent", "recurrent_diag", "bias", "peephole", "projection")
RECURRENCES: tuple[str, ...] = ("sequential", "scan")
RUNNERS: tuple[str, ...] = ("stack", "cell")
#: Largest op count, saved-vector count or gate count a registry entry may declare (sanity bound).
MAX_RULE = 1000

#: Tensor kinds whose elements are multiplied as a matrix by every token (they make the MACs).
GEMM_KINDS = frozenset({"input", "recurrent", "projection"})
#: Kinds stacked over the gate blocks (first dimension G·Dh in PyTorch's storage).
BLOCK_KINDS = frozenset({"input", "recurrent", "bias"})
#: The shape rule of each kind when a template gives none (PyTorch's storage). A
#: ``recurrent_diag`` template that names its ``blocks`` holds one vector per block (``G·Dh``).
DEFAULT_RULES: dict[str, tuple[str, ...]] = {
    "input": ("G·Dh", "d"),
    "recurrent": ("G·Dh", "R"),
    "recurrent_diag": ("Dh",),
    "bias": ("G·Dh",),
    "peephole": ("Dh",),
    "projection": ("P", "Dh"),
}


@functools.lru_cache(maxsize=256)
def _parsed(rule: tuple[str, ...]) -> tuple[ast.expr, ...]:
    """A rule's checked nodes, shared by the templates of the same rule (nothing mutates them)."""
    return shapes.parse_rule(rule)


class Layout(Protocol):
    """What the registry reads of a spec (``RecurrentSpec`` has it; cells.py never imports spec)."""

    @property
    def convention(self) -> str: ...
    @property
    def bias_vectors(self) -> int | None: ...
    @property
    def peephole(self) -> bool | None: ...
    @property
    def proj_size(self) -> int: ...
    @property
    def reset_after(self) -> bool: ...
    @property
    def merge_mode(self) -> str: ...
    @property
    def num_layers(self) -> int: ...
    @property
    def bias(self) -> bool: ...


@dataclass(frozen=True)
class Dims:
    """The sizes a tensor's shape depends on: gate blocks, hidden, layer input, projection."""

    g: int
    h: int
    d: int
    p: int

    @property
    def r(self) -> int:
        """Width of the recurrent input: ``P`` with a projection, else ``Dh``."""
        return self.p or self.h

    def env(self, g: int | None = None) -> dict[str, int]:
        """The sizes by the names a shape rule uses (``G`` = ``g`` when given)."""
        return {"G": self.g if g is None else g, "Dh": self.h, "d": self.d, "P": self.p, "R": self.r}


@dataclass(frozen=True)
class TensorTemplate:
    """One parameter tensor of a layer and direction, as a rule over :class:`Dims`.

    ``kind`` says what the tensor does (``input``, ``recurrent`` and ``projection`` are GEMM
    operands; ``recurrent_diag``, ``bias`` and ``peephole`` are elementwise) and gives its
    default shape (:data:`DEFAULT_RULES`, PyTorch's storage; Keras stores weight matrices
    transposed). ``shape_rule`` replaces it: one expression per dimension over ``G``, ``Dh``,
    ``d``, ``P`` and ``R`` (:mod:`paramcalc.core.shapes`), e.g. ``("d", "(3 if d == Dh else 4)·Dh")``.
    ``blocks`` names the gate blocks the tensor stacks when it covers only some of them (a bias
    of the ``f`` and ``r`` blocks only: ``G`` is then 2 in its rule). ``index`` numbers repeated
    bias kinds: the second bias vector (``b_hh``) is present only with two bias vectors per
    block; a peephole template names its ``gate``. ``term`` is the product it enters, for
    :func:`explain`.
    """

    role: str
    kind: TensorKind
    torch_name: str
    keras_name: str
    term: str
    index: int = 0
    gate: str = ""
    blocks: tuple[str, ...] = ()
    shape_rule: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"tensor template {self.role!r}"
        for attr in ("role", "torch_name", "keras_name"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr):
                raise ParamcalcError(f"{where}: {attr} must be a non-empty string")
        if not isinstance(self.term, str) or not isinstance(self.gate, str):
            raise ParamcalcError(f"{where}: term and gate must be strings")
        if self.kind not in TENSOR_KINDS:
            raise ParamcalcError(
                f"{where}: unknown kind {self.kind!r}: expected one of {', '.join(TENSOR_KINDS)}"
            )
        if type(self.index) is not int or not 0 <= self.index <= 1:
            raise ParamcalcError(f"{where}: index must be 0 or 1 (a second bias vector), got {self.index!r}")
        if self.kind == "peephole" and not self.gate:
            raise ParamcalcError(f"{where}: a peephole template names its gate")
        self._check_rule(where)

    def _check_rule(self, where: str) -> None:
        for attr in ("blocks", "shape_rule"):
            value = getattr(self, attr)
            if isinstance(value, str) or not isinstance(value, (tuple, list)):
                raise ParamcalcError(f"{where}: {attr} must be a tuple, got {type(value).__name__}")
            object.__setattr__(self, attr, tuple(value))
        if not all(isinstance(b, str) and b for b in self.blocks) or len(set(self.blocks)) != len(
            self.blocks
        ):
            raise ParamcalcError(f"{where}: blocks must be distinct gate names")
        if self.blocks and self.kind in ("peephole", "projection"):
            raise ParamcalcError(f"{where}: a {self.kind} template covers no gate blocks")
        rule = self.shape_rule or DEFAULT_RULES[self.kind]
        if self.kind == "recurrent_diag" and self.blocks and not self.shape_rule:
            rule = ("G·Dh",)
        try:
            nodes = _parsed(tuple(rule))
        except ParamcalcError as exc:
            raise ParamcalcError(f"{where}: {exc}") from None
        object.__setattr__(self, "_rule", rule)
        object.__setattr__(self, "_nodes", nodes)

    @property
    def rule(self) -> tuple[str, ...]:
        """The shape rule in force: ``shape_rule``, or the kind's default."""
        return self._rule  # type: ignore[attr-defined, no-any-return]

    @property
    def nodes(self) -> tuple[ast.expr, ...]:
        """The parsed dimension expressions of :attr:`rule`."""
        return self._nodes  # type: ignore[attr-defined, no-any-return]

    @property
    def gemm(self) -> bool:
        """Whether the tensor is a GEMM operand (its elements are multiply-adds per token)."""
        return self.kind in GEMM_KINDS

    @property
    def block(self) -> bool:
        return self.kind in BLOCK_KINDS

    def gates_of(self, cell_gates: int) -> int:
        """``G`` in this template's rule: the blocks it names, else every gate block of the cell."""
        return len(self.blocks) if self.blocks else cell_gates

    def spans_blocks(self) -> bool:
        """Whether the tensor stacks every gate block, ``G`` a factor of its elements: its
        layer formula term is then written per block, inside ``G(...)``."""
        if self.blocks or self.kind not in BLOCK_KINDS:
            return False
        return any(
            isinstance(f, ast.Name) and f.id == "G" for f in shapes.factors(shapes.product(self.nodes))
        )

    def present(self, spec: Layout) -> bool:
        if self.kind == "bias":
            return (spec.bias_vectors or 0) > self.index
        if self.kind == "peephole":
            return bool(spec.peephole)
        if self.kind == "projection":
            return spec.proj_size > 0
        return True

    def shape(self, dims: Dims, keras: bool = False) -> tuple[int, ...]:
        env = dims.env(self.gates_of(dims.g))
        shape = tuple(shapes.evaluate(n, env) for n in self.nodes)
        if keras and len(shape) == 2:
            return (shape[1], shape[0])
        return shape


# --- template sets (helpers for the built-in entries and for extensions) ----------------------


def gated_templates(
    *,
    recurrent: Literal["gemm", "diagonal", "none"] = "gemm",
    bias_vectors: int = 2,
    peephole_gates: tuple[str, ...] = (),
    projection: bool = False,
) -> tuple[TensorTemplate, ...]:
    """The usual tensors of a gated cell: ``weight_ih``, ``weight_hh``, biases, peepholes, ``weight_hr``.

    ``recurrent`` is ``gemm`` (a ``(G·Dh, R)`` matrix), ``diagonal`` (IndRNN's ``u``, a
    ``(Dh,)`` vector) or ``none`` (gates from the input only, as in minGRU).
    """
    ts = [TensorTemplate("weight_ih", "input", "weight_ih", "kernel", "x_t·W_ihᵀ")]
    if recurrent == "gemm":
        ts.append(TensorTemplate("weight_hh", "recurrent", "weight_hh", "recurrent_kernel", "h_{t-1}·W_hhᵀ"))
    elif recurrent == "diagonal":
        ts.append(
            TensorTemplate("weight_hh", "recurrent_diag", "weight_hh", "recurrent_kernel", "u ⊙ h_{t-1}")
        )
    names = (("bias_ih", "b_ih (added)"), ("bias_hh", "b_hh (added)"))
    for i in range(bias_vectors):
        role, term = names[i]
        ts.append(TensorTemplate(role, "bias", role, "bias", term, index=i))
    for gate in peephole_gates:
        ts.append(
            TensorTemplate(
                f"weight_c{gate}", "peephole", f"weight_c{gate}", f"w_{gate}_diag", f"p_{gate} ⊙ c", gate=gate
            )
        )
    if projection:
        ts.append(TensorTemplate("weight_hr", "projection", "weight_hr", "projection_kernel", "h_t·W_hrᵀ"))
    return tuple(ts)


# --- the torch binding (pure data; the bridge acts on it) --------------------------------------


@dataclass(frozen=True)
class TorchBinding:
    """How the torch edge builds, recognises and runs a cell.

    ``nn_class`` and ``mode`` name the ``torch.nn`` module of the cell's PyTorch layout (two bias
    vectors or none, no peepholes, concatenated directions, reset after the matmul), recognised by
    class name (cells) or ``nn.RNNBase.mode`` (stacks); ``nonlinearity`` is its constructor
    argument. Every other layout is built as ``reference``: a callable ``(spec, device, dtype) ->
    nn.Module`` or ``"package.module:attr"``; ``None`` means paramcalc's own reference module
    (``paramcalc.bridge.modules``), which builds the tensors from the templates and runs the
    cell's ``step`` function (``"package.module:attr"`` or a callable, see
    ``paramcalc.bridge.modules``) step by step. ``runner`` says how the driver runs the module:
    ``stack`` (``module(x)[0]`` on a ``(T, B, d)`` tensor) or ``cell`` (one call per step, the
    state carried by the driver). With per-sequence lengths a stack gets ``module(x, lengths)``:
    ``x`` padded, its sequences sorted longest first, ``lengths`` a CPU int64 tensor; with
    ``packed_input`` (``torch.nn`` and paramcalc's own modules) it gets a ``PackedSequence``.
    ``scan``: for a recurrence linear in ``h`` (``h_t = a_t ⊙ h_{t-1} + b_t``), a function that
    runs a whole layer and direction at once as a parallel scan (``"package.module:attr"`` or a
    callable, see ``paramcalc.bridge.modules``); paramcalc's reference module then runs it
    instead of stepping ``step``, which still defines the cell (and runs its single-step form).
    """

    nn_class: str | None = None
    mode: str | None = None
    nonlinearity: str | None = None
    reference: str | Callable[..., Any] | None = None
    runner: Runner = "stack"
    step: str | Callable[..., Any] | None = None
    packed_input: bool = False
    scan: str | Callable[..., Any] | None = None


@dataclass(frozen=True)
class CellType:
    """Everything about one recurrent cell type (see the module docstring)."""

    name: str
    gate_names: tuple[str, ...]
    templates: tuple[TensorTemplate, ...]
    equations: tuple[str, ...]
    display_name: str
    #: The torch module family the layout maps to (``lstm`` for LSTM and LSTMCell); a label
    #: only: everything paramcalc computes reads the entry's other fields.
    family: str = ""
    single_step: bool = False
    keras_class: str | None = None
    #: The ONNX operator of the cell (``LSTM``, ``GRU``, ``RNN``), if ONNX has one.
    onnx_op: str | None = None
    #: The gate blocks in the order ONNX stacks them (LSTM ``iofc``, GRU ``zrh``); () = ``gate_names``.
    onnx_gate_names: tuple[str, ...] = ()
    torch: TorchBinding = field(default_factory=TorchBinding)
    # --- capabilities -------------------------------------------------------------------
    nonlinearity: str = ""
    projection: bool = False
    peephole_gates: tuple[str, ...] = ()
    default_peephole: bool = False
    #: Bias vectors per gate block a spec may ask for; () means 0 up to the bias templates given.
    bias_vectors_allowed: tuple[int, ...] = ()
    default_bias_vectors: int = 2
    #: Blocks whose recurrent matmul waits for the reset gate in the reset-before form.
    reset_before_blocks: int = 0
    #: ``True``: the reset-before form is an option (Keras GRU ``reset_after=False``);
    #: the cell is then reset-after by default. ``False`` with ``reset_before_blocks``: always.
    reset_after_option: bool = False
    recurrence: Recurrence = "sequential"
    # --- equations and layout notes ----------------------------------------------------------
    peephole_equations: tuple[str, ...] = ()
    reset_before_equations: tuple[str, ...] = ()
    #: What the default layout follows, for the convention note ("" for torch.nn cells).
    source: str = ""
    aliases: tuple[str, ...] = ()
    # --- cost rules --------------------------------------------------------------------------
    #: Elementwise ops per hidden unit and step as (op, count): one per element for each sum,
    #: difference, division, Hadamard product (⊙) and activation. Bias additions apart.
    elementwise_ops: tuple[tuple[str, int], ...] = ()
    #: A cell without ``memory`` rules: Dh-wide vectors autograd keeps per step for backward
    #: besides the step's input and h_{t-1} (the memory model's guess adds the gate blocks).
    saved_per_unit: int = 0
    #: What each kernel path keeps, per token (:class:`paramcalc.core.memrules.MemoryRules`);
    #: ``None``: the memory model guesses from ``saved_per_unit`` and says so.
    memory: MemoryRules | None = None
    #: Recurrent state carried from step to step (h is P or Dh wide, c is Dh wide).
    state_names: tuple[str, ...] = ("h",)

    def __post_init__(self) -> None:
        validate_cell(self)

    # -- derived facts --------------------------------------------------------------------
    @property
    def gates(self) -> int:
        """Gate blocks stacked along the rows of ``weight_ih`` (and ``weight_hh``)."""
        return len(self.gate_names)

    @property
    def recurrent_gemm(self) -> bool:
        """Whether the recurrence multiplies ``h_{t-1}`` by a matrix (else elementwise or none)."""
        return any(t.kind == "recurrent" for t in self.templates)

    @property
    def recurrent_kind(self) -> str:
        """``gemm`` (a recurrent matrix), ``diagonal`` (only diagonal vectors) or ``none``."""
        kinds = {t.kind for t in self.templates}
        return "gemm" if "recurrent" in kinds else "diagonal" if "recurrent_diag" in kinds else "none"

    @property
    def supports_proj(self) -> bool:
        return self.projection

    @property
    def elementwise_per_unit(self) -> int:
        return sum(n for _, n in self.elementwise_ops)

    @property
    def stack_name(self) -> str:
        """The multi-layer counterpart's name (``lstm`` for ``lstm_cell``)."""
        return self.name.removesuffix("_cell") if self.single_step else self.name

    @property
    def torch_class(self) -> str:
        """The ``torch.nn`` class name, or the display name of a cell outside ``torch.nn``."""
        return self.torch.nn_class or self.display_name

    def reset_before(self, spec: Layout) -> int:
        """Blocks whose recurrent matmul waits for the reset gate under ``spec`` (0: none)."""
        if not self.reset_before_blocks:
            return 0
        if self.reset_after_option:
            return 0 if spec.reset_after else self.reset_before_blocks
        return self.reset_before_blocks

    def templates_for(self, spec: Layout) -> tuple[TensorTemplate, ...]:
        return tuple(t for t in self.templates if t.present(spec))

    def equations_for(self, spec: Layout) -> tuple[str, ...]:
        """The update equations ``spec`` computes (peephole or reset-before forms where they apply)."""
        if spec.peephole and self.peephole_equations:
            return self.peephole_equations
        if self.reset_after_option and not spec.reset_after and self.reset_before_equations:
            return self.reset_before_equations
        return self.equations

    def ops_for(self, spec: Layout) -> tuple[tuple[str, int], ...]:
        """Elementwise ops per unit and step under ``spec`` (peepholes add a ⊙ and a + each)."""
        ops = dict(self.elementwise_ops)
        if spec.peephole:
            n = len(self.peephole_gates)
            ops["mul"] = ops.get("mul", 0) + n
            ops["add"] = ops.get("add", 0) + n
        return tuple(ops.items())

    def torch_native(self, spec: Layout) -> bool:
        """Whether ``spec``'s layout is exactly the ``torch.nn`` module's (PyTorch names aside)."""
        return (
            self.torch.nn_class is not None
            and spec.bias_vectors == (2 if spec.bias else 0)
            and not spec.peephole
            # a one-layer stack's merge is an op on its output (DeepSpeech2 sums nn.LSTM's directions)
            and (spec.merge_mode == "concat" or spec.num_layers == 1)
            and spec.reset_after
        )

    def layout_note(self, spec: Layout) -> str:
        """One sentence naming the convention and bias layout of ``spec`` (shown with every count)."""
        b = spec.bias_vectors or 0
        if spec.convention == "onnx":
            text = (
                "ONNX convention: W, R, B (Wb and Rb), P per node, both directions stacked"
                if b
                else ("ONNX convention: no B (no biases)")
            )
        elif spec.convention == "keras":
            if not b:
                text = "Keras convention: no biases"
            elif b == 2 and self.reset_after_option and spec.reset_after:
                text = "Keras convention: GRU with reset_after=True keeps an input and a recurrent bias"
            elif b == 2:
                text = "Keras names, two bias vectors per gate block"
            else:
                text = "Keras convention: one bias vector per gate block"
        elif self.source and b == self.default_bias_vectors and spec.peephole == self.default_peephole:
            text = f"{self.source}; PyTorch-style names"
        elif b == 2 and self.torch.nn_class:
            text = "PyTorch/cuDNN convention: two bias vectors (b_ih, b_hh) per gate block"
        else:
            bias = {
                0: "no biases",
                1: "one bias vector (b_ih) per gate block",
                2: "two bias vectors (b_ih, b_hh) per gate block",
            }[b]
            text = f"PyTorch-style names, {bias}"
        extras = []
        if spec.peephole and not (self.source and self.default_peephole):
            extras.append(f"peepholes on {', '.join(self.peephole_gates)} (Gers & Schmidhuber 2000)")
        if spec.merge_mode != "concat":
            extras.append(f"directions merged by {spec.merge_mode} (the next layer's input is Dh, not 2Dh)")
        if self.recurrence == "scan":
            extras.append("linear recurrence: a parallel scan can run it in ⌈log₂ T⌉ levels")
        return "; ".join([text, *extras])


# --- validation of an entry (built-in or registered) ---------------------------------------------

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def _key(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def validate_cell(cell: CellType) -> None:
    """Check a registry entry once, when it is made: one line naming the cell and the field.

    Sequences become tuples; ``bias_vectors_allowed`` left empty becomes 0 up to the bias
    templates given. Every count and size paramcalc derives from an entry rests on these rules
    (a cell without gate blocks would make every hidden size fit any budget; a negative op
    count, negative FLOPs).
    """
    where = f"cell {cell.name!r}" if isinstance(cell.name, str) else "a cell"
    try:
        _tuples(cell)
        _check_names(cell)
        _check_templates(cell)
        _check_layout(cell)
        _check_rules(cell)
        _check_binding(cell)
    except ParamcalcError as exc:
        raise ParamcalcError(f"{where}: {exc}") from None


def _tuples(cell: CellType) -> None:
    for attr in (
        "gate_names",
        "templates",
        "equations",
        "onnx_gate_names",
        "peephole_gates",
        "bias_vectors_allowed",
        "peephole_equations",
        "reset_before_equations",
        "aliases",
        "elementwise_ops",
        "state_names",
    ):
        value = getattr(cell, attr)
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
            raise ParamcalcError(f"{attr} must be a tuple, got {type(value).__name__}")
        object.__setattr__(cell, attr, tuple(value))
    ops = tuple(tuple(op) if isinstance(op, (tuple, list)) else op for op in cell.elementwise_ops)
    object.__setattr__(cell, "elementwise_ops", ops)


def _strings(attr: str, values: tuple[Any, ...], *, distinct: bool = True) -> None:
    if not all(isinstance(v, str) and v for v in values):
        raise ParamcalcError(f"{attr} must be non-empty strings")
    if distinct and len(set(values)) != len(values):
        raise ParamcalcError(f"{attr} must be distinct, got {', '.join(values)}")


def _check_names(cell: CellType) -> None:
    for attr in ("name", "display_name"):
        if not isinstance(getattr(cell, attr), str) or not getattr(cell, attr).strip():
            raise ParamcalcError(f"{attr} must be a non-empty string")
    if not isinstance(cell.family, str):
        raise ParamcalcError("family must be a string")
    for name in (cell.name, *cell.aliases):
        if not isinstance(name, str) or not _NAME_RE.match(_key(name)):
            raise ParamcalcError(
                f"{name!r} is not a cell name: a letter, then letters, digits, '_' or '-' (as in gru_cell)"
            )
    for attr in ("keras_class", "onnx_op"):
        if getattr(cell, attr) is not None and not isinstance(getattr(cell, attr), str):
            raise ParamcalcError(f"{attr} must be a string or None")
    for attr in ("nonlinearity", "source"):
        if not isinstance(getattr(cell, attr), str):
            raise ParamcalcError(f"{attr} must be a string")
    _strings("gate_names", cell.gate_names)
    if not cell.gate_names:
        raise ParamcalcError("at least one gate block is needed (gate_names is empty)")
    _strings("onnx_gate_names", cell.onnx_gate_names)
    if cell.onnx_gate_names and len(cell.onnx_gate_names) != len(cell.gate_names):
        raise ParamcalcError("onnx_gate_names must name every gate block, in ONNX's order")
    _strings("aliases", cell.aliases)
    _strings("state_names", cell.state_names)
    if not cell.state_names:
        raise ParamcalcError("state_names must name at least the state h")
    for attr in ("equations", "peephole_equations", "reset_before_equations"):
        _strings(attr, getattr(cell, attr), distinct=False)


def _check_templates(cell: CellType) -> None:
    ts = cell.templates
    if not all(isinstance(t, TensorTemplate) for t in ts):
        raise ParamcalcError("templates must be TensorTemplate objects (see gated_templates)")
    if not ts or ts[0].kind != "input":
        raise ParamcalcError("the first tensor template must be the input weight")
    kinds = [t.kind for t in ts]
    for kind in ("input", "projection"):
        if kinds.count(kind) > 1:
            raise ParamcalcError(f"one {kind} template at most, got {kinds.count(kind)}")
    if kinds.count("recurrent") > 1:
        raise ParamcalcError("one recurrent matrix template at most")
    _check_blocks(cell)
    biases = sorted(t.index for t in ts if t.kind == "bias")
    if biases != list(range(len(biases))):
        raise ParamcalcError(f"bias templates must have indexes 0, 1 in turn, got {biases}")
    _strings("torch names", tuple(t.torch_name for t in ts))
    peep = tuple(t.gate for t in ts if t.kind == "peephole")
    if sorted(peep) != sorted(cell.peephole_gates):
        raise ParamcalcError(
            f"peephole templates ({', '.join(peep) or 'none'}) must match peephole_gates "
            f"({', '.join(cell.peephole_gates) or 'none'})"
        )
    if cell.projection != ("projection" in kinds):
        raise ParamcalcError("projection=True needs a projection template, and a projection template it")


def _check_blocks(cell: CellType) -> None:
    """The gate blocks a template names are the cell's."""
    for t in cell.templates:
        unknown = [b for b in t.blocks if b not in cell.gate_names]
        if unknown:
            raise ParamcalcError(f"template {t.role!r} names blocks not in gate_names: {', '.join(unknown)}")


def _check_layout(cell: CellType) -> None:
    for attr in ("single_step", "projection", "default_peephole", "reset_after_option"):
        if not isinstance(getattr(cell, attr), bool):
            raise ParamcalcError(f"{attr} must be True or False")
    unknown = [g for g in cell.peephole_gates if g not in cell.gate_names]
    if unknown:
        raise ParamcalcError(f"peephole_gates name gates not in gate_names: {', '.join(unknown)}")
    if cell.default_peephole and not cell.peephole_gates:
        raise ParamcalcError("default_peephole=True needs peephole_gates")
    held = sum(1 for t in cell.templates if t.kind == "bias")
    if not cell.bias_vectors_allowed:
        object.__setattr__(cell, "bias_vectors_allowed", tuple(range(held + 1)))
    allowed = cell.bias_vectors_allowed
    if any(type(b) is not int or not 0 <= b <= held for b in allowed):
        raise ParamcalcError(
            f"bias_vectors_allowed {allowed} must be within 0..{held}: the bias templates hold {held}"
        )
    if cell.default_bias_vectors not in allowed:
        raise ParamcalcError("default_bias_vectors not in bias_vectors_allowed")
    blocks = cell.reset_before_blocks
    if type(blocks) is not int or not 0 <= blocks < cell.gates:
        raise ParamcalcError(
            f"reset_before_blocks must be in 0..{cell.gates - 1} (fewer than the gate blocks)"
        )
    if blocks and not cell.recurrent_gemm:
        raise ParamcalcError("reset_before_blocks needs a recurrent matrix (a 'recurrent' template)")
    if cell.recurrence not in RECURRENCES:
        raise ParamcalcError(f"recurrence must be one of {', '.join(RECURRENCES)}, got {cell.recurrence!r}")


def _rule(attr: str, value: Any) -> None:
    if type(value) is not int or not 0 <= value <= MAX_RULE:
        raise ParamcalcError(f"{attr} must be an integer in 0..{MAX_RULE}, got {value!r}")


def _check_rules(cell: CellType) -> None:
    if len(cell.gate_names) > MAX_RULE:
        raise ParamcalcError(f"at most {MAX_RULE} gate blocks, got {len(cell.gate_names)}")
    for op in cell.elementwise_ops:
        if not (isinstance(op, tuple) and len(op) == 2 and isinstance(op[0], str) and op[0]):
            raise ParamcalcError(f"elementwise_ops must be (op name, count) pairs, got {op!r}")
        _rule(f"the count of elementwise op {op[0]!r}", op[1])
    _rule("saved_per_unit", cell.saved_per_unit)
    if cell.memory is not None and not isinstance(cell.memory, MemoryRules):
        raise ParamcalcError(f"memory must be a MemoryRules or None, got {type(cell.memory).__name__}")


def _check_binding(cell: CellType) -> None:
    b = cell.torch
    if not isinstance(b, TorchBinding):
        raise ParamcalcError(f"torch must be a TorchBinding, got {type(b).__name__}")
    if b.runner not in RUNNERS:
        raise ParamcalcError(f"torch.runner must be one of {', '.join(RUNNERS)}, got {b.runner!r}")
    for attr in ("nn_class", "mode", "nonlinearity"):
        if getattr(b, attr) is not None and not isinstance(getattr(b, attr), str):
            raise ParamcalcError(f"torch.{attr} must be a string or None")
    for attr in ("reference", "step", "scan"):
        ref = getattr(b, attr)
        if isinstance(ref, str):
            mod, colon, name = ref.partition(":")
            if not (colon and mod and name):
                raise ParamcalcError(f"torch.{attr} {ref!r} must read 'package.module:attribute'")
        elif ref is not None and not callable(ref):
            raise ParamcalcError(f"torch.{attr} must be None, 'package.module:attribute' or a callable")
    if not isinstance(b.packed_input, bool):
        raise ParamcalcError("torch.packed_input must be True or False")


# --- equations ---------------------------------------------------------------------------------

_RNN_EQ = "h_t = {act}(x_t·W_ihᵀ + b_ih + h_{{t-1}}·W_hhᵀ + b_hh)"
_LSTM_EQ = (
    "i_t = σ(x_t·W_iiᵀ + b_ii + h_{t-1}·W_hiᵀ + b_hi)",
    "f_t = σ(x_t·W_ifᵀ + b_if + h_{t-1}·W_hfᵀ + b_hf)",
    "g_t = tanh(x_t·W_igᵀ + b_ig + h_{t-1}·W_hgᵀ + b_hg)",
    "o_t = σ(x_t·W_ioᵀ + b_io + h_{t-1}·W_hoᵀ + b_ho)",
    "c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t",
    "h_t = o_t ⊙ tanh(c_t)            (with proj_size: h_t = (o_t ⊙ tanh(c_t))·W_hrᵀ)",
)
_LSTM_PEEPHOLE_EQ = (
    "i_t = σ(x_t·W_iiᵀ + h_{t-1}·W_hiᵀ + p_i ⊙ c_{t-1} + b_i)",
    "f_t = σ(x_t·W_ifᵀ + h_{t-1}·W_hfᵀ + p_f ⊙ c_{t-1} + b_f)",
    "g_t = tanh(x_t·W_igᵀ + h_{t-1}·W_hgᵀ + b_g)",
    "c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t",
    "o_t = σ(x_t·W_ioᵀ + h_{t-1}·W_hoᵀ + p_o ⊙ c_t + b_o)",
    "h_t = o_t ⊙ tanh(c_t)            (with proj_size: h_t = (o_t ⊙ tanh(c_t))·W_hrᵀ)",
)
_GRU_EQ = (
    "r_t = σ(x_t·W_irᵀ + b_ir + h_{t-1}·W_hrᵀ + b_hr)",
    "z_t = σ(x_t·W_izᵀ + b_iz + h_{t-1}·W_hzᵀ + b_hz)",
    "n_t = tanh(x_t·W_inᵀ + b_in + r_t ⊙ (h_{t-1}·W_hnᵀ + b_hn))   (reset after the matmul)",
    "h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}",
)
_GRU_RESET_BEFORE_EQ = (
    "r_t = σ(x_t·W_irᵀ + h_{t-1}·W_hrᵀ + b_r)",
    "z_t = σ(x_t·W_izᵀ + h_{t-1}·W_hzᵀ + b_z)",
    "n_t = tanh(x_t·W_inᵀ + b_n + (r_t ⊙ h_{t-1})·W_hnᵀ)   (reset before the matmul)",
    "h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}",
)
_CIFG_EQ = (
    "i_t = σ(x_t·W_iᵀ + h_{t-1}·R_iᵀ + p_i ⊙ c_{t-1} + b_i)",
    "g_t = tanh(x_t·W_gᵀ + h_{t-1}·R_gᵀ + b_g)              (block input z_t in Greff et al.)",
    "f_t = 1 - i_t                                        (coupled input and forget gate)",
    "c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t",
    "o_t = σ(x_t·W_oᵀ + h_{t-1}·R_oᵀ + p_o ⊙ c_t + b_o)",
    "h_t = o_t ⊙ tanh(c_t)            (peephole terms p_i, p_o only with peepholes on)",
)
_MGU_EQ = (
    "f_t = σ(x_t·W_fᵀ + h_{t-1}·U_fᵀ + b_f)",
    "n_t = tanh(x_t·W_nᵀ + (f_t ⊙ h_{t-1})·U_nᵀ + b_n)      (the candidate h̃_t; waits for f_t)",
    "h_t = (1 - f_t) ⊙ h_{t-1} + f_t ⊙ n_t",
)
_INDRNN_EQ = (
    "h_t = ReLU(x_t·W_ihᵀ + u ⊙ h_{t-1} + b)      (u: one recurrent weight per unit; "
    "b = b_ih, or b_ih + b_hh with two bias vectors)",
)
_MINGRU_EQ = (
    "z_t = σ(x_t·W_zᵀ + b_z)                   (gates from x_t only)",
    "n_t = x_t·W_nᵀ + b_n                      (the candidate h̃_t)",
    "h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ n_t     (linear in h: a parallel scan)",
)
_MINLSTM_EQ = (
    "f_t = σ(x_t·W_fᵀ + b_f),  i_t = σ(x_t·W_iᵀ + b_i)   (gates from x_t only)",
    "n_t = x_t·W_nᵀ + b_n                              (the candidate h̃_t)",
    "f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)",
    "h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ n_t                  (linear in h: a parallel scan)",
)

# Elementwise ops per unit and step, counted from the equations (bias additions apart):
# RNN: 1 sum joining the matmuls + 1 activation. LSTM: 4 joining sums, 3 σ, tanh(g),
# c_t = f⊙c + i⊙g (2 ⊙, 1 +), h_t = o⊙tanh(c_t) (1 tanh, 1 ⊙). GRU (either form): 3 joining
# sums, 2 σ, 1 tanh, r⊙(...) (1 ⊙), (1 - z)⊙n + z⊙h (1 -, 2 ⊙, 1 +). CIFG: 3 joining sums,
# 2 σ, tanh(g), f = 1 - i (1 -), c (2 ⊙, 1 +), h (1 tanh, 1 ⊙). MGU: 2 joining sums, 1 σ,
# f⊙h (1 ⊙), 1 tanh, (1 - f)⊙h + f⊙n (1 -, 2 ⊙, 1 +). IndRNN: u⊙h (1 ⊙), 1 joining sum, ReLU.
# minGRU: 1 σ, (1 - z)⊙h + z⊙n (1 -, 2 ⊙, 1 +). minLSTM: 2 σ, f + i (1 +), 2 divisions,
# f'⊙h + i'⊙n (2 ⊙, 1 +).
_LSTM_OPS = (("add", 5), ("mul", 3), ("sigmoid", 3), ("tanh", 2))
_GRU_OPS = (("add", 4), ("sub", 1), ("mul", 3), ("sigmoid", 2), ("tanh", 1))


def _rnn(name: str, act: str, single: bool) -> CellType:
    mode = "RNN_TANH" if act == "tanh" else "RNN_RELU"
    return CellType(
        name=name,
        family="rnn",
        gate_names=("h",),
        templates=gated_templates(),
        equations=(_RNN_EQ.format(act=act),),
        display_name="RNNCell" if single else "RNN",
        single_step=single,
        keras_class="SimpleRNNCell" if single else "SimpleRNN",
        onnx_op=None if single else "RNN",
        torch=TorchBinding(
            nn_class="RNNCell" if single else "RNN",
            mode=None if single else mode,
            nonlinearity=act,
            runner="cell" if single else "stack",
            step=_step("rnn"),
            packed_input=True,
        ),
        nonlinearity=act,
        elementwise_ops=(("add", 1), (act, 1)),
        memory=MemoryRules(
            native=Saved(0, 1, "tanh/ReLU's output is h_t itself"),
            reference=Saved(0, 1, "act(...) is h_t itself"),
            cuda_cell=CudaCell(1, (1, 1, 1), lt=True, what="the activation's output h_t") if single else None,
            cudnn=None if single else CudnnRule("rnn", reserve=1, standard=3, persistent=4),
        ),
        aliases=("rnn_tanh",) if name == "rnn" else ("rnn_tanh_cell",) if name == "rnn_cell" else (),
    )


def _lstm(name: str, single: bool) -> CellType:
    return CellType(
        name=name,
        family="lstm",
        gate_names=("i", "f", "g", "o"),
        templates=gated_templates(peephole_gates=("i", "f", "o"), projection=not single),
        equations=_LSTM_EQ,
        peephole_equations=_LSTM_PEEPHOLE_EQ,
        display_name="LSTMCell" if single else "LSTM",
        single_step=single,
        keras_class="LSTMCell" if single else "LSTM",
        onnx_op=None if single else "LSTM",
        onnx_gate_names=("i", "o", "f", "c"),
        torch=TorchBinding(
            nn_class="LSTMCell" if single else "LSTM",
            mode=None if single else "LSTM",
            runner="cell" if single else "stack",
            step=_step("lstm"),
            packed_input=True,
        ),
        projection=not single,
        peephole_gates=("i", "f", "o"),
        elementwise_ops=_LSTM_OPS,
        memory=MemoryRules(
            native=Saved(6, 0, "the gates i, f, g, o after σ/tanh (4·Dh, one tensor), c_{t-1}, tanh(c_t)"),
            reference=Saved(6, 0, "i, f, g, o, c_{t-1}, tanh(c_t) (peepholes: c_0 as well)"),
            cuda_cell=CudaCell(14, (4, 4, 4, 1, 1), what="igates, hgates, the kernel's workspace, c_t, h_t")
            if single
            else None,
            cudnn=None if single else CudnnRule("lstm", reserve=5, standard=10, persistent=8),
        ),
        state_names=("h", "c"),
    )


def _gru(name: str, single: bool) -> CellType:
    return CellType(
        name=name,
        family="gru",
        gate_names=("r", "z", "n"),
        templates=gated_templates(),
        equations=_GRU_EQ,
        reset_before_equations=_GRU_RESET_BEFORE_EQ,
        display_name="GRUCell" if single else "GRU",
        single_step=single,
        keras_class="GRUCell" if single else "GRU",
        onnx_op=None if single else "GRU",
        onnx_gate_names=("z", "r", "h"),
        torch=TorchBinding(
            nn_class="GRUCell" if single else "GRU",
            mode=None if single else "GRU",
            runner="cell" if single else "stack",
            step=_step("gru"),
            packed_input=True,
        ),
        reset_before_blocks=1,  # n waits for r_t ⊙ h_{t-1}
        reset_after_option=True,
        elementwise_ops=_GRU_OPS,
        memory=MemoryRules(
            native=Saved(6, 0, "h·W_hhᵀ + b_hh (3·Dh, kept whole for its n block), r_t, z_t, n_t"),
            reference=Saved(7, 0, "h·W_hhᵀ + b_hh (3·Dh), r_t, z_t, n_t, 1 - z_t"),
            reference_reset_before=Saved(
                5, -1, "r_t, z_t, n_t, r_t ⊙ h_{t-1}, 1 - z_t (none of it on the zero first state)"
            ),
            cuda_cell=CudaCell(
                12, (3, 3, 5), what="igates, hgates (3·Dh each), the kernel's workspace (5·Dh), h_t"
            )
            if single
            else None,
            cudnn=None if single else CudnnRule("gru", reserve=6, standard=5, persistent=4),
        ),
    )


def _step(name: str) -> str:
    """Where paramcalc's reference module finds the step function of a built-in cell."""
    return f"paramcalc.bridge.modules:{name}_step"


def _scan(name: str) -> str:
    """Where paramcalc's reference module finds the parallel scan of a built-in linear recurrence."""
    return f"paramcalc.bridge.modules:{name}_scan"


def _builtin() -> tuple[CellType, ...]:
    return (*_torch_cells(), *_paper_cells(), *_scan_cells())


def _torch_cells() -> tuple[CellType, ...]:
    """The cells ``torch.nn`` builds (in their PyTorch layout), stacks first."""
    return (
        _rnn("rnn", "tanh", False),
        _rnn("rnn_relu", "relu", False),
        _lstm("lstm", False),
        _gru("gru", False),
        _rnn("rnn_cell", "tanh", True),
        _rnn("rnn_relu_cell", "relu", True),
        _lstm("lstm_cell", True),
        _gru("gru_cell", True),
    )


def _paper_cells() -> tuple[CellType, ...]:
    """Gated cells outside ``torch.nn``, each in its paper's layout (paramcalc's reference modules)."""
    return (
        CellType(
            name="cifg",
            family="cifg",
            gate_names=("i", "g", "o"),
            templates=gated_templates(peephole_gates=("i", "o")),
            equations=_CIFG_EQ,
            display_name="CIFG",
            torch=TorchBinding(step=_step("cifg"), packed_input=True),
            peephole_gates=("i", "o"),
            default_peephole=True,
            default_bias_vectors=1,
            source="Greff et al. 2017 (CIFG: f = 1 - i): one bias per gate block, peepholes on i and o",
            elementwise_ops=(("add", 4), ("sub", 1), ("mul", 3), ("sigmoid", 2), ("tanh", 2)),
            memory=MemoryRules(reference=Saved(6, 0, "i, g, o, 1 - i, c_{t-1}, tanh(c_t)")),
            state_names=("h", "c"),
        ),
        CellType(
            name="mgu",
            family="mgu",
            gate_names=("f", "n"),
            templates=gated_templates(),
            equations=_MGU_EQ,
            display_name="MGU",
            torch=TorchBinding(step=_step("mgu"), packed_input=True),
            default_bias_vectors=1,
            reset_before_blocks=1,  # n's recurrent matmul waits for f_t ⊙ h_{t-1}
            source="Zhou et al. 2016 (MGU): one bias per gate block",
            elementwise_ops=(("add", 3), ("sub", 1), ("mul", 3), ("sigmoid", 1), ("tanh", 1)),
            memory=MemoryRules(reference=Saved(4, -2, "f_t, f_t ⊙ h_{t-1}, n_t, 1 - f_t")),
        ),
        CellType(
            name="indrnn",
            family="indrnn",
            gate_names=("h",),
            templates=gated_templates(recurrent="diagonal"),
            equations=_INDRNN_EQ,
            display_name="IndRNN",
            torch=TorchBinding(step=_step("indrnn"), packed_input=True),
            nonlinearity="relu",
            # two (b_ih and a recurrent b_hh, as nn.Linear(d, Dh) plus a recurrent bias store it)
            # is the layout of several third-party modules; the paper's is one
            default_bias_vectors=1,
            source="Li et al. 2018 (IndRNN): W·x + u ⊙ h + b, one bias",
            elementwise_ops=(("add", 1), ("mul", 1), ("relu", 1)),
            memory=MemoryRules(reference=Saved(0, 1, "u ⊙ h_{t-1} keeps h_{t-1}; ReLU keeps h_t")),
        ),
    )


def _scan_cells() -> tuple[CellType, ...]:
    """The linear recurrences (a parallel scan can run them), in their paper's layout."""
    return (
        CellType(
            name="mingru",
            family="mingru",
            gate_names=("z", "n"),
            templates=gated_templates(recurrent="none"),
            equations=_MINGRU_EQ,
            display_name="minGRU",
            torch=TorchBinding(step=_step("mingru"), packed_input=True, scan=_scan("mingru")),
            bias_vectors_allowed=(0, 1),
            default_bias_vectors=1,
            recurrence="scan",
            source="Feng et al. 2024 (minGRU): one nn.Linear(d, Dh) per block (z, h̃), stored stacked",
            elementwise_ops=(("add", 1), ("sub", 1), ("mul", 2), ("sigmoid", 1)),
            memory=MemoryRules(
                reference=Saved(
                    14,
                    0,
                    "the log-space scan's intermediates (the projection, the gates, log a, A, log|b|, and "
                    "per sign of b its mask, log-cumsum-exp and exp)",
                )
            ),
        ),
        CellType(
            name="minlstm",
            family="minlstm",
            gate_names=("f", "i", "n"),
            templates=gated_templates(recurrent="none"),
            equations=_MINLSTM_EQ,
            display_name="minLSTM",
            torch=TorchBinding(step=_step("minlstm"), packed_input=True, scan=_scan("minlstm")),
            bias_vectors_allowed=(0, 1),
            default_bias_vectors=1,
            recurrence="scan",
            source="Feng et al. 2024 (minLSTM): one nn.Linear(d, Dh) per block (f, i, h̃), stored stacked",
            elementwise_ops=(("add", 2), ("div", 2), ("mul", 2), ("sigmoid", 2)),
            memory=MemoryRules(
                reference=Saved(
                    17,
                    0,
                    "the log-space scan's intermediates (the projection, log f, log i, their log-sum, "
                    "log a, A, i', b, log|b|, and per sign of b its mask, log-cumsum-exp and exp)",
                )
            ),
        ),
    )


#: Every registered cell type, by canonical name (built-ins first, in this order).
CELLS: dict[str, CellType] = {c.name: c for c in _builtin()}
#: Alternative names -> canonical names.
ALIASES: dict[str, str] = {a: c.name for c in CELLS.values() for a in c.aliases}
#: The three classic cells compared side by side (``compare``, ``solve`` with a reference).
CLASSIC_CELLS: tuple[str, ...] = ("rnn", "lstm", "gru")


_PLUGINS_LOADED = False
#: The entry-point group a package registers its cells under (see docs/extending.md).
ENTRY_POINT_GROUP = "paramcalc.cells"
#: Plugins that failed, by entry point: ``"name (package.module:attr)"`` -> the reason (one line).
PLUGIN_FAILURES: dict[str, str] = {}


class PluginWarning(ParamcalcWarning):
    """A ``paramcalc.cells`` plugin failed to load or gave something paramcalc cannot use."""


def load_plugins() -> None:
    """Register the cells other installed packages declare under :data:`ENTRY_POINT_GROUP`.

    Each entry point names a :class:`CellType`, or a callable returning one or a list of them.
    Loaded once, on the first lookup of a name the registry does not know. A plugin that fails
    (raises, calls ``sys.exit``, gives no :class:`CellType`, an entry the registry refuses, or a
    name already taken) is never silent: it is kept in :data:`PLUGIN_FAILURES` with the reason;
    the error of a name still unknown names it (:func:`plugin_note`), and when the name is found
    (another plugin's cell) a :class:`PluginWarning` does, once. The other plugins load.
    """
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points

    try:
        found = list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception as exc:  # unreadable metadata of some installed distribution
        _plugin_failed(f"group {ENTRY_POINT_GROUP!r}", f"cannot list the entry points: {_reason(exc)}")
        return
    for ep in found:
        _load_plugin(ep)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_REPORTED: set[str] = set()


def _plugin_failed(label: str, reason: str) -> None:
    PLUGIN_FAILURES[label] = reason


def _unreported() -> list[str]:
    """The plugin failures not yet told to the user, as text, now marked told."""
    out = [
        f"plugin {label} failed: {why}" for label, why in PLUGIN_FAILURES.items() if label not in _REPORTED
    ]
    _REPORTED.update(PLUGIN_FAILURES)
    return out


def plugin_note() -> str:
    """`` (plugin 'x' (pkg.mod:attr) failed: reason)`` for an error about an unknown name, or ""."""
    failed = _unreported()
    return f" ({'; '.join(failed)})" if failed else ""


def _warn_plugin_failures() -> None:
    import warnings

    for text in _unreported():
        warnings.warn(f"paramcalc {text}; its cells are not available", PluginWarning, stacklevel=3)


def _load_plugin(ep: Any) -> None:
    """Register one entry point's cells (see :func:`load_plugins`)."""
    label = f"{ep.name!r} ({ep.value})"
    try:
        obj = ep.load()
        cells = obj() if callable(obj) and not isinstance(obj, CellType) else obj
    except (Exception, SystemExit) as exc:  # a plugin's bug, or its sys.exit(): name it, go on
        _plugin_failed(label, _reason(exc))
        return
    for cell in cells if isinstance(cells, (list, tuple)) else [cells]:
        if not isinstance(cell, CellType):
            _plugin_failed(label, f"it gave a {type(cell).__name__}, not a paramcalc.CellType")
            continue
        try:
            register_cell(cell)
        except ParamcalcError as exc:
            _plugin_failed(label, str(exc))


def reference_label(ref: Any) -> str:
    """How a ``TorchBinding.reference`` is named in messages (``package.module:attr``)."""
    return ref if isinstance(ref, str) else str(getattr(ref, "__qualname__", None) or repr(ref))


def module_failure(cell: CellType, what: str, exc: BaseException) -> str:
    """One line saying that ``cell``'s own torch module failed, and whose problem that is."""
    return (
        f"cell {cell.name}: its module {reference_label(cell.torch.reference)} failed {what}: "
        f"{_reason(exc)} (a problem of the package that registered the cell, not of paramcalc)"
    )


def _owner_packages() -> dict[str, CellType]:
    """Top-level package of each registered cell's own torch module (paramcalc's excluded)."""
    owners: dict[str, CellType] = {}
    for c in CELLS.values():
        ref = c.torch.reference
        module = ref.partition(":")[0] if isinstance(ref, str) else getattr(ref, "__module__", None)
        top = str(module or "").partition(".")[0]
        if top and top != "paramcalc":
            owners.setdefault(top, c)
    return owners


def plugin_culprit(exc: BaseException) -> str | None:
    """If ``exc`` was raised in a registered cell's own module (a frame of its traceback runs in
    that module's package, a forward for instance), one line naming the cell; else ``None``."""
    owners = _owner_packages()
    culprit = None
    tb = exc.__traceback__
    while tb is not None:  # the innermost frame in a cell's package decides
        top = str(tb.tb_frame.f_globals.get("__name__", "")).partition(".")[0]
        culprit = owners.get(top, culprit)
        tb = tb.tb_next
    return None if culprit is None else module_failure(culprit, "while running", exc)


def registered_cells() -> tuple[CellType, ...]:
    """Every registered cell, the installed plugins' included (loaded on the first call)."""
    load_plugins()
    _warn_plugin_failures()
    return tuple(CELLS.values())


def find_cell(name: Any) -> CellType | None:
    """The registered cell ``name`` names (installed plugins are looked in), or ``None``."""
    if isinstance(name, CellType):
        return name
    key = _key(name)
    key = ALIASES.get(key, key)
    if key not in CELLS:
        load_plugins()
        key = ALIASES.get(key, key)
        if key in CELLS:
            _warn_plugin_failures()  # found (another plugin's cell): still say what failed
    return CELLS.get(key)


def get_cell(name: str | CellType) -> CellType:
    """Look a cell type up by name or alias (case-insensitive); one-line error if unknown."""
    found = find_cell(name)
    if found is not None:
        return found
    known = ", ".join([*CELLS, *ALIASES])
    shown = name if len(str(name)) <= 40 else str(name)[:37] + "..."
    raise ParamcalcError(f"unknown cell {shown!r}{plugin_note()}: expected one of {known}")


def cell_names(cells: Any, what: str = "cells") -> list[str] | None:
    """Canonical names of ``cells``, each looked up (a one-line error for an unknown one).

    ``cells`` is ``None`` (returned as is), one name or a comma-separated list (``"gru"``,
    ``"rnn,lstm"``: a string is never taken apart into characters), a :class:`CellType`, or a
    sequence of names and cell types. A name given twice is kept once, where it first appears.
    """
    if cells is None:
        return None
    if isinstance(cells, str):
        items: list[Any] = [c.strip() for c in cells.split(",")]
        items = [c for c in items if c]
    elif isinstance(cells, CellType):
        items = [cells]
    elif isinstance(cells, (bytes, bytearray, Mapping)) or not isinstance(cells, Iterable):
        raise ParamcalcError(
            f"{what} must be a cell name, a comma-separated list or a list of names, "
            f"got {type(cells).__name__}"
        )
    else:
        items = list(cells)
    if not items:
        raise ParamcalcError(f"{what} is empty: name at least one cell, e.g. rnn,lstm,gru")
    out: list[str] = []
    for item in items:
        if not isinstance(item, (str, CellType)):
            raise ParamcalcError(f"{what}: a cell is named by a string, got {type(item).__name__} {item!r}")
        name = get_cell(item).name
        if name not in out:
            out.append(name)
    return out


def register_cell(cell: CellType, *, replace_existing: bool = False) -> CellType:
    """Add a cell type to the registry: ``count``, ``cost``, ``solve``, ``compare`` and the CLI see it.

    ``check``, ``bench`` and ``cost --flop-check`` need a torch module: give ``cell.torch`` a
    :class:`TorchBinding` whose ``reference`` builds it (see ``docs/extending.md``).
    """
    if not isinstance(cell, CellType):
        raise ParamcalcError(f"register_cell needs a CellType, got {type(cell).__name__}")
    key = _key(cell.name)
    if key != cell.name:
        cell = replace(cell, name=key)
    if not replace_existing and (key in CELLS or key in ALIASES):
        raise ParamcalcError(f"cell {key!r} is already registered (pass replace_existing=True)")
    for alias in map(_key, cell.aliases):
        taken = alias in CELLS or (alias in ALIASES and ALIASES[alias] != key)
        if taken:
            raise ParamcalcError(
                f"cell {key!r}: the alias {alias!r} already names cell {get_cell(alias).name!r}"
            )
    CELLS[key] = cell
    for alias in cell.aliases:
        ALIASES[_key(alias)] = key
    memo.clear()  # a name registered again may have other tensors: forget what was computed
    return cell


def unregister_cell(name: str) -> None:
    """Remove a registered cell (and its aliases); built-in cells can be removed too."""
    key = get_cell(name).name
    del CELLS[key]
    for alias in [a for a, c in ALIASES.items() if c == key]:
        del ALIASES[alias]
    memo.clear()


def cell_for(framework: str, class_name: str, activation: str | None = None) -> CellType | None:
    """The registered stack a framework's layer class is (``keras``: ``LSTM``, ``SimpleRNN``, ...;
    ``onnx``: ``LSTM``, ``GRU``, ``RNN``), the one with that ``activation`` where several share the
    class (``SimpleRNN(activation="relu")`` is ``rnn_relu``); ``None`` if none is."""
    attr = {"keras": "keras_class", "onnx": "onnx_op"}[framework]
    found = [c for c in registered_cells() if not c.single_step and getattr(c, attr) == class_name]
    if activation:
        exact = [c for c in found if c.nonlinearity == activation]
        if exact:
            return exact[0]
    return found[0] if found else None


def keras_stack_class(cell_class: str) -> str | None:
    """The Keras layer a Keras cell class runs in (``LSTMCell`` -> ``LSTM``, inside ``keras.layers.RNN``),
    from the registry: the single-step cell of that Keras class and its stack's Keras class."""
    for c in registered_cells():
        if c.single_step and c.keras_class == cell_class:
            stack = find_cell(c.stack_name)
            return stack.keras_class if stack is not None else None
    return None
