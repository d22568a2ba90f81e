"""The memory rules a cell's registry entry carries, per kernel path (pure data).

:class:`MemoryRules` is the ``memory`` field of :class:`paramcalc.core.cells.CellType`: what
each kernel path keeps for backward, per token, for that cell. :mod:`paramcalc.core.memory`
applies the rules; nothing there asks which cell it is looking at. A cell without rules (an
extension's, unless it gives them) gets a guess from ``CellType.saved_per_unit``, and the memory
model says so in its notes.

* :class:`Saved`: a step-by-step path (ATen's ``native`` loop, paramcalc's ``reference``
  module): ``per_token`` Dh-wide vectors autograd keeps per token and direction besides the
  step's input and ``h_(t-1)``, and ``per_layer`` more ``(B, R)`` states per layer and direction
  (negative: fewer, when nothing is kept on the zero first state).
* :class:`CudaCell`: a single-step cell stepped by the driver on CUDA (torch's
  ``_thnn_fused_lstm_cell``/``_thnn_fused_gru_cell``, or ``nn.RNNCell``'s ``addmm`` and
  activation): the Dh-wide vectors kept per token, one step's temporaries in inference, and
  whether the bias GEMM goes through cuBLASLt (its own workspace).
* :class:`CudnnRule`: the cell as cuDNN runs it: its ``cudnnRNNMode_t`` (``rnn``, ``lstm``,
  ``gru``: the key of torch's algorithm heuristics and of a calibration's coefficients), the
  Dh-wide vectors per token and layer-direction in the reserve space, and the ``(B, Dh)``
  buffers per layer-direction of the inference workspace (STANDARD and persistent algorithms).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import ParamcalcError

#: Largest count a rule may declare (the registry's sanity bound).
MAX_COUNT = 1000
#: cuDNN's cell modes (``CUDNN_RNN_RELU``/``CUDNN_RNN_TANH`` share ``rnn``).
CUDNN_MODES = ("rnn", "lstm", "gru")


def _count(owner: object, name: str, lo: int = 0) -> None:
    value = getattr(owner, name)
    if type(value) is not int or not lo <= value <= MAX_COUNT:
        raise ParamcalcError(
            f"{type(owner).__name__}.{name} must be an integer in {lo}..{MAX_COUNT}, got {value!r}"
        )


def _text(owner: object, name: str) -> None:
    if not isinstance(getattr(owner, name), str):
        raise ParamcalcError(f"{type(owner).__name__}.{name} must be a string")


@dataclass(frozen=True)
class Saved:
    """What a step-by-step path keeps for backward (see the module docstring)."""

    per_token: int
    per_layer: int = 0
    what: str = ""

    def __post_init__(self) -> None:
        _count(self, "per_token")
        _count(self, "per_layer", -MAX_COUNT)
        _text(self, "what")


@dataclass(frozen=True)
class CudaCell:
    """A single-step cell on CUDA: ``saved`` Dh-wide vectors per token, ``step`` the widths (in
    Dh) of one step's temporaries in inference, ``lt``: the bias GEMM goes through cuBLASLt."""

    saved: int
    step: tuple[int, ...]
    lt: bool = False
    what: str = ""

    def __post_init__(self) -> None:
        _count(self, "saved")
        if not isinstance(self.step, tuple) or not all(
            type(k) is int and 0 < k <= MAX_COUNT for k in self.step
        ):
            raise ParamcalcError(f"CudaCell.step must be a tuple of positive integers, got {self.step!r}")
        if not isinstance(self.lt, bool):
            raise ParamcalcError("CudaCell.lt must be True or False")
        _text(self, "what")


@dataclass(frozen=True)
class CudnnRule:
    """The cell as cuDNN runs it (see the module docstring)."""

    mode: str
    reserve: int
    standard: int
    persistent: int

    def __post_init__(self) -> None:
        if self.mode not in CUDNN_MODES:
            raise ParamcalcError(f"CudnnRule.mode must be one of {', '.join(CUDNN_MODES)}, got {self.mode!r}")
        for name in ("reserve", "standard", "persistent"):
            _count(self, name)


@dataclass(frozen=True)
class MemoryRules:
    """A cell's memory rules, per kernel path; ``None``: the path's memory is guessed."""

    native: Saved | None = None
    reference: Saved | None = None
    #: The reference module in the reset-before form (Keras' GRU ``reset_after=False``).
    reference_reset_before: Saved | None = None
    cuda_cell: CudaCell | None = None
    cudnn: CudnnRule | None = None

    def __post_init__(self) -> None:
        kinds = {"cuda_cell": CudaCell, "cudnn": CudnnRule}
        for f in fields(self):
            value, kind = getattr(self, f.name), kinds.get(f.name, Saved)
            if value is not None and not isinstance(value, kind):
                raise ParamcalcError(f"MemoryRules.{f.name} must be a {kind.__name__} or None")


__all__ = ["CUDNN_MODES", "CudaCell", "CudnnRule", "MemoryRules", "Saved"]
