"""What a registry entry is: :class:`CellType`, its tensor templates and torch binding, and the
checks an entry passes when it is made (the registry itself is :mod:`paramcalc.core.cells`;
the built-in entries are :mod:`paramcalc.core.builtin_cells`).

One entry owns everything paramcalc knows about a cell.

A :class:`CellType` holds the cell's gate blocks, its tensor templates (role, kind, shape rule
over the sizes, the gate blocks it covers, PyTorch and Keras names, whether the tensor is a GEMM
operand), its capability flags (projection, peepholes, reset-before form, bias vectors allowed,
nonlinearity), its equations, its cost rules (elementwise ops per unit, vectors kept for
backward, sequential or parallel-scan recurrence), its ONNX and Keras facts (operator, gate
order, layer classes) and its torch binding (which ``torch.nn`` class and mode it is, the module
a plugin builds, or the step function paramcalc's reference module runs). ``count``, ``cost``,
``solve``, the architectures, the torch bridge, the readers, ``bench``, the flop check and the
CLI read the entry; no code outside the registry asks which cell it is looking at, and no table
elsewhere is keyed by a cell's name. A new cell is one
:func:`~paramcalc.core.cells.register_cell` call.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..errors import ParamcalcError
from . import shapes
from .memrules import MemoryRules

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
