"""``RecurrentSpec``: a frozen, validated description of a recurrent stack or cell and its layout.

Validation follows PyTorch's own rules (``nn.RNNBase.__init__``) and the cell's registry entry,
and names the bad field and the rule, so a mistake reads the same whether PyTorch or paramcalc
catches it. The layout knobs (bias vectors per gate block, peepholes, the merge of two
directions, the reset-before GRU form) are data checked against the cell's capabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..errors import ParamcalcError
from .cells import CONVENTIONS, MERGE_MODES, CellType, get_cell

#: Largest accepted size. PyTorch indexes tensors with int64, but no real layer is wider than
#: 2**31 - 1; anything larger is a typo, and rejecting it keeps every table finite.
MAX_SIZE = 2**31 - 1
#: Largest accepted number of layers (keeps per-tensor tables bounded).
MAX_LAYERS = 10_000


def check_size(name: str, value: Any, *, minimum: int = 1, maximum: int = MAX_SIZE) -> int:
    """Return ``value`` if it is an int in ``[minimum, maximum]``, else raise a one-line error."""
    if type(value) is int and minimum <= value <= maximum:
        return value  # the common case, first
    if isinstance(value, bool) or not isinstance(value, int):
        # Accept integral floats such as 256.0 only if they are exact.
        if isinstance(value, float) and value.is_integer() and abs(value) <= 2**63:
            value = int(value)
        else:
            shown = repr(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise ParamcalcError(f"{name} must be an integer, got {shown}")
    if value < minimum:
        rule = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ParamcalcError(f"{name} must be {rule}, got {_short(value)}")
    if value > maximum:
        raise ParamcalcError(f"{name} must be at most {maximum:,}, got {_short(value)}")
    return int(value)


def _short(value: int) -> str:
    """An int for an error message: digits, or a digit count for a huge one."""
    if abs(value) < 10**30:
        return f"{value:,}"
    return f"a {len(str(abs(value)))}-digit number"


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ParamcalcError(f"{name} must be True or False, got {value!r}")
    return value


@dataclass(frozen=True)
class RecurrentSpec:
    """A recurrent stack (``nn.LSTM``, ...) or single-step cell (``nn.LSTMCell``, ...) and its layout.

    ``cell`` is a registered cell name (``paramcalc.CELLS``). ``convention`` chooses the tensor
    names and the default bias layout: ``torch`` (PyTorch's names; two bias vectors per gate
    block for the ``torch.nn`` cells, the paper's layout for the others) or ``keras`` (Keras'
    names; one bias vector, two for a GRU with ``reset_after=True``). ``bias_vectors`` (0, 1 or
    2 per gate block) overrides the preset; ``bias=False`` is the same as ``bias_vectors=0``.
    ``peephole`` adds the cell's diagonal peephole vectors; ``merge_mode`` (``concat``, ``sum``,
    ``ave``, ``mul``) says how a bidirectional layer hands its directions on; ``reset_after``
    picks the GRU form.
    """

    cell: str
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    bias: bool = True
    proj_size: int = 0
    convention: str = "torch"
    reset_after: bool = True
    bias_vectors: int | None = None
    peephole: bool | None = None
    merge_mode: str = "concat"
    cell_type: CellType = field(init=False, repr=False, compare=False)
    #: The identity of the registry entry the spec was made with: two specs of the same fields
    #: made before and after ``register_cell(..., replace_existing=True)`` are different keys.
    _entry: int = field(init=False, repr=False, compare=True)

    def __post_init__(self) -> None:
        ct = get_cell(self.cell)
        set_ = object.__setattr__
        set_(self, "cell", ct.name)
        set_(self, "cell_type", ct)
        set_(self, "_entry", id(ct))  # the spec holds ct, so the id is not reused while it lives
        self._check_sizes()
        set_(self, "convention", _choice("convention", self.convention, CONVENTIONS))
        set_(self, "merge_mode", _choice("merge_mode", self.merge_mode, MERGE_MODES))
        self._check_form(ct)
        peep = ct.default_peephole if self.peephole is None else check_flag("peephole", self.peephole)
        if peep and not ct.peephole_gates:
            with_peep = ", ".join(c.name for c in _cells_with("peephole_gates"))
            raise ParamcalcError(f"peephole connections exist only for {with_peep}, not {ct.name}")
        set_(self, "peephole", peep)
        b = self._bias_vectors(ct)
        set_(self, "bias_vectors", b)
        set_(self, "bias", b > 0)
        if self.convention == "onnx":
            _check_onnx(ct, b)
        if self.proj_size:
            self._check_projection(ct)

    def _check_sizes(self) -> None:
        set_ = object.__setattr__
        set_(self, "input_size", check_size("input_size", self.input_size))
        set_(self, "hidden_size", check_size("hidden_size", self.hidden_size))
        set_(self, "num_layers", check_size("num_layers", self.num_layers, maximum=MAX_LAYERS))
        set_(self, "proj_size", check_size("proj_size", self.proj_size, minimum=0))
        for flag in ("bidirectional", "bias", "reset_after"):
            check_flag(flag, getattr(self, flag))

    def _check_form(self, ct: CellType) -> None:
        """Single-step cells, the merge of two directions and the GRU's reset form."""
        if ct.single_step:
            if self.num_layers != 1:
                raise ParamcalcError(
                    f"{ct.name} is a single-step cell: num_layers must be 1, got {self.num_layers}"
                )
            if self.bidirectional:
                raise ParamcalcError(f"{ct.name} is a single-step cell: it has no bidirectional form")
        if self.merge_mode != "concat" and not self.bidirectional:
            raise ParamcalcError(
                f"`merge_mode={self.merge_mode!r}` applies only to bidirectional stacks: "
                "add `bidirectional=True`"
            )
        if not self.reset_after and not ct.reset_after_option:
            raise ParamcalcError(f"reset_after applies only to GRU cells, not {ct.name}")

    def _bias_vectors(self, ct: CellType) -> int:
        """Bias vectors per gate block: asked for, or the convention's preset; checked."""
        if self.bias_vectors is None:
            b = default_bias_vectors(ct, self.convention, self.bias, self.reset_after)
        else:
            b = check_size("bias_vectors", self.bias_vectors, minimum=0, maximum=2)
            if not self.bias and b:
                raise ParamcalcError(f"bias=False contradicts bias_vectors={b}: use bias_vectors=0")
        if b not in ct.bias_vectors_allowed:
            allowed = ", ".join(map(str, ct.bias_vectors_allowed))
            raise ParamcalcError(f"{ct.name} takes {allowed} bias vectors per gate block, not {b}")
        return b

    def _check_projection(self, ct: CellType) -> None:
        if not ct.projection:
            with_proj = ", ".join(c.name for c in _cells_with("projection"))
            raise ParamcalcError(f"proj_size is only supported for {with_proj}, not {ct.name}")
        if self.convention == "onnx":
            raise ParamcalcError("proj_size has no ONNX equivalent: ONNX's LSTM has no projection")
        if self.convention == "keras":
            raise ParamcalcError(
                "proj_size has no Keras equivalent: Keras' LSTM has no projection "
                "(a one-bias LSTM with projection is bias_vectors=1 under the torch convention)"
            )
        if self.proj_size >= self.hidden_size:
            raise ParamcalcError(
                f"proj_size has to be smaller than hidden_size "
                f"(got proj_size={self.proj_size}, hidden_size={self.hidden_size})"
            )

    # -- derived quantities -------------------------------------------------------------
    @property
    def default_bias_vectors(self) -> int:
        """Bias vectors per gate block the convention gives this cell when none is asked for."""
        return default_bias_vectors(self.cell_type, self.convention, self.bias, self.reset_after)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def gates(self) -> int:
        return self.cell_type.gates

    @property
    def output_size(self) -> int:
        """Features per direction of each layer's output (``proj_size`` or ``hidden_size``)."""
        return self.proj_size or self.hidden_size

    @property
    def stack_output_size(self) -> int:
        """Features of the stack's output: both directions concatenated, or merged into one."""
        if self.merge_mode != "concat":
            return self.output_size
        return self.num_directions * self.output_size

    def layer_input_size(self, layer: int) -> int:
        """Input features of layer ``layer``: ``d`` for layer 0, else the previous layer's output."""
        return self.input_size if layer == 0 else self.stack_output_size

    def replace(self, **changes: Any) -> RecurrentSpec:
        """A copy with some fields changed (validated again). Layout knobs follow a new cell."""
        if "cell" in changes and get_cell(changes["cell"]).name != self.cell:
            changes.setdefault("bias_vectors", None)
            changes.setdefault("peephole", None)
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The constructor's arguments (the resolved layout included)."""
        return {name: getattr(self, name) for name in _INIT_FIELDS}

    @property
    def display_class(self) -> str:
        ct = self.cell_type
        if self.convention == "keras" and ct.keras_class:
            return ct.keras_class
        return ct.torch_class

    def describe(self) -> str:
        """A short human label, e.g. ``LSTM(28, 256, num_layers=2)``."""
        ct = self.cell_type
        args = [str(self.input_size), str(self.hidden_size)]
        if self.num_layers != 1:
            args.append(f"num_layers={self.num_layers}")
        if self.bidirectional:
            args.append("bidirectional=True")
        default_b = self.default_bias_vectors
        if not self.bias:
            args.append("bias=False")
        elif self.bias_vectors != default_b:
            args.append(f"bias_vectors={self.bias_vectors}")
        if self.proj_size:
            args.append(f"proj_size={self.proj_size}")
        if ct.torch.nonlinearity == "relu":
            args.append("nonlinearity='relu'")
        if self.peephole != ct.default_peephole:
            args.append(f"peephole={self.peephole}")
        if self.merge_mode != "concat":
            args.append(f"merge_mode={self.merge_mode!r}")
        if ct.reset_after_option and (self.convention == "keras" or not self.reset_after):
            args.append(f"reset_after={self.reset_after}")
        label = f"{self.display_class}({', '.join(args)})"
        return label if self.convention == "torch" else f"{self.convention} {label}"


def default_bias_vectors(ct: CellType, convention: str, bias: bool, reset_after: bool) -> int:
    """The preset: PyTorch's layout (the cell's default), Keras' (one; two for a reset-after GRU)
    or ONNX's (two, Wb and Rb); none without bias."""
    if not bias:
        return 0
    if convention == "keras":
        return 2 if (ct.reset_after_option and reset_after) else 1
    if convention == "onnx":
        return 2
    return ct.default_bias_vectors


_INIT_FIELDS = tuple(f.name for f in fields(RecurrentSpec) if f.init)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """``value`` normalised (stripped, lower case) if it is one of ``allowed``; else one line."""
    chosen = str(value).strip().lower()
    if chosen not in allowed:
        raise ParamcalcError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return chosen


def _check_onnx(ct: CellType, b: int) -> None:
    if ct.single_step or not ct.onnx_op:
        raise ParamcalcError(f"the onnx convention names ONNX's LSTM/GRU/RNN operators: {ct.name} has none")
    if b == 1:
        raise ParamcalcError("ONNX's B holds both bias vectors (Wb and Rb): use 0 or 2 bias vectors")


def _cells_with(attr: str) -> list[CellType]:
    from .cells import CELLS

    return [c for c in CELLS.values() if getattr(c, attr)]
