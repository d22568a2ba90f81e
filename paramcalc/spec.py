"""``RecurrentSpec``: a frozen, validated description of a recurrent stack or cell.

Validation follows PyTorch's own rules (``nn.RNNBase.__init__``) and names the bad field and the
rule, so a mistake reads the same whether PyTorch or paramcalc catches it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .cells import CONVENTIONS, CellType, bias_vectors, get_cell
from .errors import ParamcalcError

#: Largest accepted size. PyTorch indexes tensors with int64, but no real layer is wider than
#: 2**31 - 1; anything larger is a typo, and rejecting it keeps every table finite.
MAX_SIZE = 2**31 - 1
#: Largest accepted number of layers (keeps per-tensor tables bounded).
MAX_LAYERS = 10_000


def check_size(name: str, value: Any, *, minimum: int = 1, maximum: int = MAX_SIZE) -> int:
    """Return ``value`` if it is an int in ``[minimum, maximum]``, else raise a one-line error."""
    if isinstance(value, bool) or not isinstance(value, int):
        # Accept integral floats such as 256.0 only if they are exact.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ParamcalcError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        rule = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ParamcalcError(f"{name} must be {rule}, got {value}")
    if value > maximum:
        raise ParamcalcError(f"{name} must be at most {maximum:,}, got {value:,}")
    return value


@dataclass(frozen=True)
class RecurrentSpec:
    """A recurrent stack (``nn.RNN``/``nn.LSTM``/``nn.GRU``) or single-step cell.

    ``cell`` is one of ``rnn`` (alias ``rnn_tanh``), ``rnn_relu``, ``lstm``, ``gru``, ``rnn_cell``,
    ``lstm_cell``, ``gru_cell``. ``convention`` is ``torch`` (two bias vectors per gate block) or
    ``keras`` (one, except a GRU with ``reset_after=True``). ``reset_after`` only matters for
    Keras GRUs; PyTorch's GRU always applies the reset gate after the recurrent matmul.
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
    cell_type: CellType = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ct = get_cell(self.cell)
        set_ = object.__setattr__
        set_(self, "cell", ct.name)
        set_(self, "cell_type", ct)
        set_(self, "input_size", check_size("input_size", self.input_size))
        set_(self, "hidden_size", check_size("hidden_size", self.hidden_size))
        set_(self, "num_layers", check_size("num_layers", self.num_layers, maximum=MAX_LAYERS))
        set_(self, "proj_size", check_size("proj_size", self.proj_size, minimum=0))
        for flag in ("bidirectional", "bias", "reset_after"):
            if not isinstance(getattr(self, flag), bool):
                raise ParamcalcError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        conv = str(self.convention).strip().lower()
        if conv not in CONVENTIONS:
            raise ParamcalcError(
                f"convention must be one of {', '.join(CONVENTIONS)}, got {self.convention!r}"
            )
        set_(self, "convention", conv)

        if ct.single_step:
            if self.num_layers != 1:
                raise ParamcalcError(
                    f"{ct.name} is a single-step cell: num_layers must be 1, got {self.num_layers}"
                )
            if self.bidirectional:
                raise ParamcalcError(f"{ct.name} is a single-step cell: it has no bidirectional form")
        if self.proj_size:
            if not ct.supports_proj:
                raise ParamcalcError(f"proj_size is only supported for LSTM (nn.LSTM), not {ct.name}")
            if conv == "keras":
                raise ParamcalcError("proj_size has no Keras equivalent: Keras' LSTM has no projection")
            if self.proj_size >= self.hidden_size:
                raise ParamcalcError(
                    f"proj_size has to be smaller than hidden_size "
                    f"(got proj_size={self.proj_size}, hidden_size={self.hidden_size})"
                )
        if not self.reset_after:
            if ct.family != "gru":
                raise ParamcalcError(f"reset_after applies only to GRU cells, not {ct.name}")
            if conv != "keras":
                raise ParamcalcError(
                    "reset_after=False exists only under the keras convention: "
                    "PyTorch's GRU always applies the reset gate after the recurrent matmul"
                )

    # -- derived quantities -------------------------------------------------------------
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
    def bias_vectors(self) -> int:
        """Bias vectors per gate block under this spec's convention (0, 1 or 2)."""
        return bias_vectors(self.cell_type, self.convention, self.bias, self.reset_after)

    def layer_input_size(self, layer: int) -> int:
        """Input features of layer ``layer``: ``d`` for layer 0, else ``D·(P or Dh)``."""
        return self.input_size if layer == 0 else self.num_directions * self.output_size

    def replace(self, **changes: Any) -> RecurrentSpec:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("cell_type", None)
        return d

    def describe(self) -> str:
        """A short human label, e.g. ``LSTM(28, 256, num_layers=2)``."""
        ct = self.cell_type
        cls = ct.keras_class if self.convention == "keras" else ct.torch_class
        args = [str(self.input_size), str(self.hidden_size)]
        if self.num_layers != 1:
            args.append(f"num_layers={self.num_layers}")
        if self.bidirectional:
            args.append("bidirectional=True")
        if not self.bias:
            args.append("bias=False")
        if self.proj_size:
            args.append(f"proj_size={self.proj_size}")
        if ct.family == "rnn" and ct.nonlinearity == "relu":
            args.append("nonlinearity='relu'")
        if self.convention == "keras" and ct.family == "gru":
            args.append(f"reset_after={self.reset_after}")
        label = f"{cls}({', '.join(args)})"
        return f"keras {label}" if self.convention == "keras" else label
