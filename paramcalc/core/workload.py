"""``Workload``: what a recurrent stack is run on (batch, sequence lengths, dtype, mode).

Pure Python; shared by the cost model, the speed model, ``bench`` and the flop check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ParamcalcError
from ..results.text import plural
from .spec import check_size

#: Bytes per element of each workload dtype.
DTYPE_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
_DTYPE_ALIASES = {
    "float32": "fp32",
    "float": "fp32",
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
}
MODES = ("inference", "training")
_MODE_ALIASES = {"train": "training", "eval": "inference", "infer": "inference"}


@dataclass(frozen=True)
class Workload:
    """What the stack is run on: batch, sequence length (or real lengths), dtype and mode.

    ``lengths`` are the real per-sequence lengths of a packed batch. For cost they are a
    multiset, so any order is accepted (PyTorch's ``pack_padded_sequence`` needs them in
    descending order unless ``enforce_sorted=False``); there must be one per sequence
    (``len(lengths) == batch``), each in ``1..seq_len``. ``int8`` is inference-only.
    """

    batch: int = 1
    seq_len: int = 1
    lengths: tuple[int, ...] | None = None
    dtype: str = "fp32"
    mode: str = "inference"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "batch", check_size("batch", self.batch))
        set_(self, "seq_len", check_size("seq_len", self.seq_len))
        if self.lengths is not None:
            set_(self, "lengths", _check_lengths(self.lengths, self.batch, self.seq_len))
        dtype = str(self.dtype).strip().lower()
        dtype = _DTYPE_ALIASES.get(dtype, dtype)
        if dtype not in DTYPE_BYTES:
            raise ParamcalcError(f"unknown dtype {self.dtype!r}: expected one of {', '.join(DTYPE_BYTES)}")
        set_(self, "dtype", dtype)
        mode = str(self.mode).strip().lower()
        mode = _MODE_ALIASES.get(mode, mode)
        if mode not in MODES:
            raise ParamcalcError(f"unknown mode {self.mode!r}: expected inference or training")
        set_(self, "mode", mode)
        if dtype == "int8" and mode == "training":
            raise ParamcalcError("int8 is an inference format: train in fp32, fp16 or bf16")

    @classmethod
    def packed(
        cls,
        lengths: Iterable[int],
        *,
        seq_len: int | None = None,
        dtype: str = "fp32",
        mode: str = "inference",
    ) -> Workload:
        """A packed batch: ``batch = len(lengths)``, ``seq_len`` defaults to the longest."""
        lens = _check_lengths(lengths, None, None)
        return cls(len(lens), seq_len or max(lens), lens, dtype, mode)

    @property
    def training(self) -> bool:
        return self.mode == "training"

    @property
    def tokens(self) -> int:
        """Real time steps summed over the batch (``B·T`` without lengths)."""
        return sum(self.lengths) if self.lengths is not None else self.batch * self.seq_len

    @property
    def steps(self) -> int:
        """Sequential steps of the longest real sequence (``max(lengths)`` or ``seq_len``)."""
        return max(self.lengths) if self.lengths is not None else self.seq_len

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def step_batch(self, t: int) -> int:
        """Sequences still running at step ``t`` (the rows of that step's recurrent GEMM)."""
        if self.lengths is None:
            return self.batch
        return sum(1 for n in self.lengths if n > t)

    @property
    def longest(self) -> int:
        """How many sequences have the longest length (``batch`` without lengths)."""
        return self.step_batch(self.steps - 1)

    def describe(self) -> str:
        if self.lengths is None:
            shape = f"B={self.batch} T={self.seq_len}"
        else:
            lens = (
                ",".join(map(str, self.lengths)) if len(self.lengths) <= 8 else f"{len(self.lengths)} lengths"
            )
            shape = f"B={self.batch} lengths={lens} ({plural(self.tokens, 'real step')})"
        return f"{shape} {self.dtype} {self.mode}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "seq_len": self.seq_len,
            "lengths": list(self.lengths) if self.lengths is not None else None,
            "dtype": self.dtype,
            "mode": self.mode,
        }


def _check_lengths(lengths: Any, batch: int | None, seq_len: int | None) -> tuple[int, ...]:
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, Iterable):
        raise ParamcalcError(f"lengths must be a sequence of integers, got {lengths!r}")
    lens = tuple(check_size(f"lengths[{i}]", n) for i, n in enumerate(lengths))
    if not lens:
        raise ParamcalcError("lengths is empty: give one length per sequence")
    if batch is not None and len(lens) != batch:
        raise ParamcalcError(
            f"lengths has {len(lens)} entries but batch is {batch}: give one length per sequence"
        )
    if seq_len is not None and max(lens) > seq_len:
        i = lens.index(max(lens))
        raise ParamcalcError(f"lengths[{i}]={lens[i]} is longer than seq_len={seq_len}")
    return lens
