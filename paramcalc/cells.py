"""The registry of recurrent cell types.

One entry per cell type: how many gate blocks its weight matrices stack, whether it is a
single-step cell (``nn.LSTMCell``) or a stack (``nn.LSTM``), the PyTorch and Keras class names,
and its update equations. Adding a cell type is one entry in :data:`CELLS`, not a new ``elif``.

Counting conventions (stated here, where they are used):

* ``torch`` (PyTorch, and the cuDNN and ONNX layouts): every gate block has **two** bias vectors,
  ``b_ih`` and ``b_hh``.
* ``keras``: every gate block has **one** bias vector, except Keras' GRU with
  ``reset_after=True`` (its default since TF 2), which keeps an input and a recurrent bias
  (stored as a ``(2, 3u)`` matrix). Keras has no LSTM projection.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ParamcalcError

CONVENTIONS = ("torch", "keras")


@dataclass(frozen=True)
class CellType:
    """Static facts about one recurrent cell type."""

    name: str
    family: str  # "rnn", "lstm" or "gru"
    gates: int  # gate blocks stacked along the rows of weight_ih / weight_hh
    single_step: bool  # nn.RNNCell / nn.LSTMCell / nn.GRUCell
    torch_class: str
    keras_class: str
    nonlinearity: str  # activation of the vanilla RNN ("tanh"/"relu"); "" for gated cells
    gate_names: tuple[str, ...]  # PyTorch's order of the gate blocks
    supports_proj: bool
    equations: tuple[str, ...]
    # --- cost-model facts (read by paramcalc.cost), counted from ``equations`` ---------------
    #: Elementwise ops per hidden unit and time step as (op, count) pairs: one op per element
    #: for each sum, difference, Hadamard product (⊙) and activation (σ, tanh, ReLU). The sum
    #: that joins the input and recurrent matmuls counts; bias additions are counted apart.
    elementwise_ops: tuple[tuple[str, int], ...] = ()
    #: Dh-wide vectors autograd keeps per step for backward besides the step's input and
    #: h_{t-1} (gate activations and intermediates such as c_t and tanh(c_t)).
    saved_per_unit: int = 0
    #: Recurrent state vectors carried from step to step (h is P or Dh wide, c is Dh wide).
    state_names: tuple[str, ...] = ("h",)
    #: Gate blocks whose recurrent matmul must wait for the reset gate when the reset is applied
    #: before the matmul (Keras GRU ``reset_after=False``): a second sequential GEMM per step.
    reset_before_blocks: int = 0
    #: The update equations of that reset-before form (empty if the cell has none).
    reset_before_equations: tuple[str, ...] = ()

    @property
    def elementwise_per_unit(self) -> int:
        """Elementwise ops per hidden unit and step (the sum of :attr:`elementwise_ops`)."""
        return sum(n for _, n in self.elementwise_ops)

    @property
    def stack_name(self) -> str:
        """The name of the multi-layer counterpart (``lstm`` for ``lstm_cell``)."""
        return self.name.removesuffix("_cell") if self.single_step else self.name


_RNN_EQ = ("h_t = {act}(x_t·W_ihᵀ + b_ih + h_{{t-1}}·W_hhᵀ + b_hh)",)
_LSTM_EQ = (
    "i_t = σ(x_t·W_iiᵀ + b_ii + h_{t-1}·W_hiᵀ + b_hi)",
    "f_t = σ(x_t·W_ifᵀ + b_if + h_{t-1}·W_hfᵀ + b_hf)",
    "g_t = tanh(x_t·W_igᵀ + b_ig + h_{t-1}·W_hgᵀ + b_hg)",
    "o_t = σ(x_t·W_ioᵀ + b_io + h_{t-1}·W_hoᵀ + b_ho)",
    "c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t",
    "h_t = o_t ⊙ tanh(c_t)            (with proj_size: h_t = (o_t ⊙ tanh(c_t))·W_hrᵀ)",
)
_GRU_EQ = (
    "r_t = σ(x_t·W_irᵀ + b_ir + h_{t-1}·W_hrᵀ + b_hr)",
    "z_t = σ(x_t·W_izᵀ + b_iz + h_{t-1}·W_hzᵀ + b_hz)",
    "n_t = tanh(x_t·W_inᵀ + b_in + r_t ⊙ (h_{t-1}·W_hnᵀ + b_hn))   (reset after the matmul)",
    "h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}",
)
#: Keras' GRU with ``reset_after=False`` (one bias vector per gate block): the reset gate
#: multiplies h_{t-1} *before* the recurrent matmul of n, so that matmul waits for r_t.
_GRU_RESET_BEFORE_EQ = (
    "r_t = σ(x_t·W_irᵀ + h_{t-1}·W_hrᵀ + b_r)",
    "z_t = σ(x_t·W_izᵀ + h_{t-1}·W_hzᵀ + b_z)",
    "n_t = tanh(x_t·W_inᵀ + b_n + (r_t ⊙ h_{t-1})·W_hnᵀ)   (reset before the matmul)",
    "h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}",
)

# Elementwise ops per hidden unit and step, counted from the equations above (bias additions
# apart). RNN: 1 sum (x·W + h·W) + 1 activation. LSTM: 4 sums joining the matmuls, 3 σ,
# tanh(g), c_t = f⊙c + i⊙g (2 ⊙, 1 +), h_t = o⊙tanh(c_t) (1 tanh, 1 ⊙). GRU (either form):
# 3 sums joining the matmuls, 2 σ, 1 tanh, r⊙(...) (1 ⊙), (1 - z)⊙n + z⊙h (1 -, 2 ⊙, 1 +).
_LSTM_OPS = (("add", 5), ("mul", 3), ("sigmoid", 3), ("tanh", 2))
_GRU_OPS = (("add", 4), ("sub", 1), ("mul", 3), ("sigmoid", 2), ("tanh", 1))


def _rnn(name: str, act: str, single: bool) -> CellType:
    return CellType(
        name=name,
        family="rnn",
        gates=1,
        single_step=single,
        torch_class="RNNCell" if single else "RNN",
        keras_class="SimpleRNNCell" if single else "SimpleRNN",
        nonlinearity=act,
        gate_names=("h",),
        supports_proj=False,
        equations=tuple(e.format(act=act) for e in _RNN_EQ),
        elementwise_ops=(("add", 1), (act, 1)),
        saved_per_unit=1,  # the activation's output, for its derivative
    )


def _lstm(name: str, single: bool) -> CellType:
    return CellType(
        name=name,
        family="lstm",
        gates=4,
        single_step=single,
        torch_class="LSTMCell" if single else "LSTM",
        keras_class="LSTMCell" if single else "LSTM",
        nonlinearity="",
        gate_names=("i", "f", "g", "o"),
        supports_proj=not single,
        equations=_LSTM_EQ,
        elementwise_ops=_LSTM_OPS,
        saved_per_unit=6,  # i, f, g, o, c_t, tanh(c_t)
        state_names=("h", "c"),
    )


def _gru(name: str, single: bool) -> CellType:
    return CellType(
        name=name,
        family="gru",
        gates=3,
        single_step=single,
        torch_class="GRUCell" if single else "GRU",
        keras_class="GRUCell" if single else "GRU",
        nonlinearity="",
        gate_names=("r", "z", "n"),
        supports_proj=False,
        equations=_GRU_EQ,
        elementwise_ops=_GRU_OPS,
        saved_per_unit=4,  # r, z, n and h_{t-1}·W_hnᵀ + b_hn (or r ⊙ h_{t-1})
        reset_before_blocks=1,  # n
        reset_before_equations=_GRU_RESET_BEFORE_EQ,
    )


CELLS: dict[str, CellType] = {
    c.name: c
    for c in (
        _rnn("rnn", "tanh", False),
        _rnn("rnn_relu", "relu", False),
        _lstm("lstm", False),
        _gru("gru", False),
        _rnn("rnn_cell", "tanh", True),
        _lstm("lstm_cell", True),
        _gru("gru_cell", True),
    )
}

ALIASES: dict[str, str] = {"rnn_tanh": "rnn"}

#: The three families compared side by side (``compare``, ``solve --match``).
FAMILIES: tuple[str, ...] = ("rnn", "lstm", "gru")


def get_cell(name: str) -> CellType:
    """Look a cell type up by name or alias (case-insensitive)."""
    key = str(name).strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    try:
        return CELLS[key]
    except KeyError:
        known = ", ".join([*CELLS, *ALIASES])
        raise ParamcalcError(f"unknown cell {name!r}: expected one of {known}") from None


def bias_vectors(cell: CellType, convention: str, bias: bool, reset_after: bool = True) -> int:
    """How many bias vectors each gate block carries under a counting convention."""
    if not bias:
        return 0
    if convention == "torch":
        return 2
    if cell.family == "gru" and reset_after:
        return 2
    return 1
