"""Cost model: MACs, FLOPs, critical path and memory of a recurrent stack on a workload.

Pure Python ints; no torch, no pandas at import. The per-cell facts (elementwise ops per hidden
unit, vectors kept for backward, state vectors, the reset-before form of the GRU) come from the
cells registry (:class:`paramcalc.cells.CellType`), so a new cell type is one registry entry.

Counting conventions, stated here where they are computed and in every result's ``convention``:

* **MAC**: one multiply-add of a matrix product (GEMM). Per token (one time step of one
  sequence), layer and direction, with ``G`` gate blocks, hidden size ``Dh``, layer input
  ``d``, projection ``P`` and recurrent width ``R = P or Dh``:

  - input projection ``x·W_ihᵀ``: ``G·Dh·d`` (independent across steps: one large GEMM),
  - recurrent ``h·W_hhᵀ``: ``G·Dh·R`` (sequential: step t needs step t-1),
  - projection ``h·W_hrᵀ``: ``P·Dh`` (sequential too: h_t feeds the next recurrent GEMM).

  So GEMM MACs per token = the number of weight elements, biases excluded, ``weight_hr``
  included. Every step does the same work, the first one too (``h_0 = 0`` is multiplied).
* **Bias additions**: one op per bias element per token (``bias_vectors·G·Dh``).
* **Elementwise**: ``CellType.elementwise_ops`` per hidden unit per token (sums, differences,
  Hadamard products, σ, tanh, ReLU: one op per element each).
* **FLOPs** = 2·MACs + bias additions + elementwise ops; each part can be left out.
* **Training** adds the backward pass, by one of two rules (``backward=``):

  - ``"2x"`` (default): backward = 2 × forward, for every included part (a GEMM's backward
    is one GEMM for the input gradient dX and one for the weight gradient dW);
  - ``"autograd"``: the GEMMs PyTorch's autograd actually runs when the stack's input is data
    and the initial state is zero: dW for every GEMM; dX for every GEMM except the layer-0
    input projection and the recurrent GEMM of each sequence's first step (for a packed
    batch's reverse direction, only of the longest sequences: PyTorch concatenates the zero
    state of shorter ones onto a state that needs a gradient). Bias and elementwise: 2 ×.

Packed batches cost their real steps (``Workload.lengths``), not the padded rectangle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .count import DIRECTIONS, total_params
from .errors import ParamcalcError
from .spec import RecurrentSpec, check_size

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

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
BACKWARD_RULES = ("2x", "autograd")
#: The views of :meth:`CostResult.records`.
VIEWS = ("layer", "part", "gemm", "memory", "total")


# --- workload -------------------------------------------------------------------------------


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
            shape = f"B={self.batch} lengths={lens} ({self.tokens} real steps)"
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


# --- convention -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CostConvention:
    """Which parts count towards FLOPs, and the backward rule of training."""

    input_proj: bool = True
    recurrent: bool = True
    projection: bool = True
    bias_ops: bool = True
    elementwise: bool = True
    backward: str = "2x"

    def __post_init__(self) -> None:
        if self.backward not in BACKWARD_RULES:
            raise ParamcalcError(
                f"unknown backward rule {self.backward!r}: expected one of {', '.join(BACKWARD_RULES)}"
            )

    def describe(self, training: bool) -> str:
        """One sentence saying what was counted."""
        gemms = [
            n
            for n, on in (
                ("input", self.input_proj),
                ("recurrent", self.recurrent),
                ("projection", self.projection),
            )
            if on
        ]
        terms = [f"2·MACs ({', '.join(gemms)} GEMMs)"] if gemms else []
        if self.bias_ops:
            terms.append("1 per bias addition")
        if self.elementwise:
            terms.append("1 per elementwise op (σ, tanh, ReLU, ⊙, +, −)")
        left = [
            n
            for n, on in (
                ("input-projection GEMM", self.input_proj),
                ("recurrent GEMM", self.recurrent),
                ("projection GEMM", self.projection),
                ("bias additions", self.bias_ops),
                ("elementwise ops", self.elementwise),
            )
            if not on
        ]
        text = (
            "1 MAC = one multiply-add of a GEMM (x·W_ihᵀ, h·W_hhᵀ, h·W_hrᵀ), biases excluded; "
            f"FLOPs = {' + '.join(terms) if terms else '0'}"
        )
        if left:
            text += f"; left out of FLOPs: {', '.join(left)}"
        if not training:
            return text + "; inference: forward pass only"
        if self.backward == "2x":
            return text + "; training adds backward = 2 × forward (dX and dW per GEMM)"
        return text + (
            "; training adds backward as autograd runs it on data input and a zero initial "
            "state: dW for every GEMM, dX except the layer-0 input and each sequence's first "
            "recurrent step; 2 × forward for bias and elementwise ops"
        )


# --- per layer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerCost:
    """Forward work of one layer and direction for one token (one step of one sequence)."""

    layer: int
    direction: str
    input_size: int
    input_macs: int
    recurrent_macs: int
    projection_macs: int
    bias_ops: int
    elementwise_ops: int

    @property
    def gemm_macs(self) -> int:
        return self.input_macs + self.recurrent_macs + self.projection_macs


def layer_costs(spec: RecurrentSpec) -> tuple[LayerCost, ...]:
    """Per-token forward work of every layer and direction of ``spec``."""
    ct = spec.cell_type
    g, h, p = spec.gates, spec.hidden_size, spec.proj_size
    r = p or h
    rows = []
    for layer in range(spec.num_layers):
        d = spec.layer_input_size(layer)
        for direction in range(spec.num_directions):
            rows.append(
                LayerCost(
                    layer=layer,
                    direction=DIRECTIONS[direction],
                    input_size=d,
                    input_macs=g * h * d,
                    recurrent_macs=g * h * r,
                    projection_macs=p * h,
                    bias_ops=spec.bias_vectors * g * h,
                    elementwise_ops=ct.elementwise_per_unit * h,
                )
            )
    return tuple(rows)


def cell_equations(spec: RecurrentSpec) -> tuple[str, ...]:
    """The update equations ``spec`` computes (Keras' reset-before GRU where it applies)."""
    ct = spec.cell_type
    if not spec.reset_after and ct.reset_before_equations:
        return ct.reset_before_equations
    return ct.equations


def _gemm_stages(spec: RecurrentSpec) -> list[tuple[str, int, int]]:
    """The sequential GEMMs of one step: (name, K, N) in dependency order."""
    ct = spec.cell_type
    g, h, p = spec.gates, spec.hidden_size, spec.proj_size
    k = ct.reset_before_blocks if not spec.reset_after else 0
    if k:
        # the blocks before the reset-gated ones run first; those wait for r_t ⊙ h_{t-1}
        first, second = ", ".join(ct.gate_names[: g - k]), ", ".join(ct.gate_names[g - k :])
        stages = [(f"recurrent ({first})", h, (g - k) * h), (f"recurrent ({second})", h, k * h)]
    else:
        stages = [("recurrent", p or h, g * h)]
    if p:
        stages.append(("projection", h, p))
    return stages


# --- result ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostResult:
    """MACs, FLOPs, critical path and memory of ``spec`` on ``workload``; exact ints.

    ``macs_per_step``: GEMM MACs of one time step of one sequence (all layers, directions).
    ``macs``: forward GEMM MACs of the whole workload (real steps). ``flops_per_sequence``:
    FLOPs of one sequence of length ``seq_len`` (with backward in training mode). ``flops``:
    the whole workload, with backward in training mode. ``critical_path_steps``: the longest
    chain of dependent recurrent steps (``T + L - 1`` for a unidirectional stack, whose layer
    l+1 can take step t once layer l has; ``L·T`` for a bidirectional one, whose reverse
    direction reaches t = 0 last; the two directions of a layer run side by side);
    ``layerwise_steps``: ``L·T``, run layer by layer.
    """

    spec: RecurrentSpec
    workload: Workload
    switches: CostConvention
    layers: tuple[LayerCost, ...]
    macs_per_step: int
    macs: int
    forward_flops: int
    backward_flops: int
    flops: int
    flops_per_sequence: int
    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    state_bytes: int
    activation_bytes: int
    training_bytes: int
    inference_bytes: int
    critical_path_steps: int
    layerwise_steps: int
    gemms_per_step: int
    layer_flops: tuple[int, ...] = field(repr=False)

    @property
    def convention(self) -> str:
        """A sentence saying what was counted."""
        return self.switches.describe(self.workload.training)

    @property
    def critical_path_gemms(self) -> int:
        """Sequential GEMMs on the critical path (steps × GEMMs per step)."""
        return self.critical_path_steps * self.gemms_per_step

    @property
    def bias_ops(self) -> int:
        return sum(lc.bias_ops for lc in self.layers) * self.workload.tokens

    @property
    def elementwise_ops(self) -> int:
        return sum(lc.elementwise_ops for lc in self.layers) * self.workload.tokens

    @property
    def param_count(self) -> int:
        return total_params(self.spec)

    # -- views ---------------------------------------------------------------------------
    def records(self, by: str = "layer") -> list[dict[str, Any]]:
        """Plain rows for rendering: ``by`` is ``layer``, ``part``, ``gemm``, ``memory`` or ``total``."""
        views = {
            "layer": self._by_layer,
            "part": self._by_part,
            "gemm": self._by_gemm,
            "memory": self._by_memory,
            "total": self._by_total,
        }
        if by not in views:
            raise ValueError(f"by must be one of {', '.join(VIEWS)}, got {by!r}")
        return views[by]()

    def to_frame(self, by: str = "layer") -> pd.DataFrame:
        """The rows as a pandas DataFrame (pandas is imported only here)."""
        import pandas as pd

        return pd.DataFrame(self.records(by))

    def summary(self) -> list[str]:
        """Human lines: per step / sequence / batch, critical path, memory, convention."""
        wl, s = self.workload, self.spec
        stages = _gemm_stages(s)
        b = wl.batch
        shapes = ", then ".join(f"[{b}×{k}]·[{k}×{n}]" for _, k, n in stages)
        chain = "T" if s.cell_type.single_step else ("L·T" if s.bidirectional else "T + L - 1")
        lines = [
            f"GEMM MACs: {self.macs_per_step:,} per step, "
            f"{self.macs_per_step * wl.seq_len:,} per sequence (T={wl.seq_len}), "
            f"{self.macs:,} per batch ({wl.tokens:,} real steps)",
            f"FLOPs: {self.flops_per_sequence:,} per sequence, {self.flops:,} per batch"
            + (
                f" (forward {self.forward_flops:,} + backward {self.backward_flops:,})" if wl.training else ""
            ),
            f"critical path: {self.critical_path_steps:,} dependent steps ({chain}), "
            f"each {len(stages)} sequential GEMM{'s' if len(stages) > 1 else ''} {shapes}"
            + ("" if s.cell_type.single_step else f"; {self.layerwise_steps:,} steps run layer by layer"),
            f"memory ({wl.dtype}): parameters {_bytes(self.param_bytes)}, "
            f"inference working set {_bytes(self.inference_bytes)}, "
            f"training with Adam {_bytes(self.training_bytes)}",
            f"convention: {self.convention}",
        ]
        return lines

    def _by_layer(self) -> list[dict[str, Any]]:
        tok, sw, s = self.workload.tokens, self.switches, self.spec
        rows = []
        for lc, fl in zip(self.layers, self.layer_flops, strict=True):
            row: dict[str, Any] = {
                "layer": lc.layer,
                "direction": lc.direction,
                "input_size": lc.input_size,
            }
            if sw.input_proj:
                row["input_macs"] = lc.input_macs * tok
            if sw.recurrent:
                row["recurrent_macs"] = lc.recurrent_macs * tok
            if sw.projection and s.proj_size:
                row["proj_macs"] = lc.projection_macs * tok
            if sw.bias_ops and s.bias:
                row["bias_ops"] = lc.bias_ops * tok
            if sw.elementwise:
                row["elementwise_ops"] = lc.elementwise_ops * tok
            row["macs_per_step"] = lc.gemm_macs
            row["macs_per_seq"] = lc.gemm_macs * self.workload.seq_len
            row["macs"] = lc.gemm_macs * tok
            row["flops"] = fl
            rows.append(row)
        return rows

    def _by_part(self) -> list[dict[str, Any]]:
        wl, sw, s = self.workload, self.switches, self.spec
        t, tok = wl.seq_len, wl.tokens

        def total(attr: str) -> int:
            return sum(getattr(lc, attr) for lc in self.layers)

        parts = [
            ("input projection x·W_ihᵀ", "MAC", total("input_macs"), sw.input_proj, 2, "parallel over steps"),
            ("recurrent h·W_hhᵀ", "MAC", total("recurrent_macs"), sw.recurrent, 2, "sequential"),
        ]
        if s.proj_size:
            parts.append(
                ("projection h·W_hrᵀ", "MAC", total("projection_macs"), sw.projection, 2, "sequential")
            )
        if s.bias:
            parts.append(("bias additions", "op", total("bias_ops"), sw.bias_ops, 1, "elementwise"))
        parts.append(
            ("elementwise (cell update)", "op", total("elementwise_ops"), sw.elementwise, 1, "elementwise")
        )
        rows = [
            {
                "part": name,
                "unit": unit,
                "per_step": n,
                "per_sequence": n * t,
                "per_batch": n * tok,
                "flops": factor * n * tok if on else 0,
                "counted": "yes" if on else "no",
                "runs": runs,
            }
            for name, unit, n, on, factor, runs in parts
        ]
        fwd_seq = self._forward_per_token * t
        if wl.training:
            rows.append(
                {
                    "part": f"backward ({sw.backward} rule)",
                    "unit": "FLOP",
                    "per_step": None,
                    "per_sequence": self.flops_per_sequence - fwd_seq,
                    "per_batch": self.backward_flops,
                    "flops": self.backward_flops,
                    "counted": "yes",
                    "runs": "after forward",
                }
            )
        rows.append(
            {
                "part": "total",
                "unit": "FLOP",
                "per_step": self._forward_per_token,
                "per_sequence": self.flops_per_sequence,
                "per_batch": self.flops,
                "flops": self.flops,
                "counted": "",
                "runs": "",
            }
        )
        return rows

    @property
    def _forward_per_token(self) -> int:
        return self.forward_flops // self.workload.tokens

    def _by_gemm(self) -> list[dict[str, Any]]:
        wl, s = self.workload, self.spec
        single = s.cell_type.single_step
        tok, steps, b = wl.tokens, wl.steps, wl.batch
        m_step: int | str = b if wl.lengths is None else f"{b}→{wl.step_batch(steps - 1)}"
        rows = []
        for lc in self.layers:
            base = {"layer": lc.layer, "direction": lc.direction}
            n = s.gates * s.hidden_size
            if single:
                rows.append(
                    {
                        **base,
                        "gemm": "input",
                        "M": m_step,
                        "K": lc.input_size,
                        "N": n,
                        "calls": steps,
                        "macs": lc.input_macs * tok,
                        "runs": "every step, off the critical path",
                    }
                )
            else:
                rows.append(
                    {
                        **base,
                        "gemm": "input",
                        "M": tok,
                        "K": lc.input_size,
                        "N": n,
                        "calls": 1,
                        "macs": lc.input_macs * tok,
                        "runs": "once, all steps in one GEMM",
                    }
                )
            for name, k, nn in _gemm_stages(s):
                rows.append(
                    {
                        **base,
                        "gemm": name,
                        "M": m_step,
                        "K": k,
                        "N": nn,
                        "calls": steps,
                        "macs": k * nn * tok,
                        "runs": "every step, sequential",
                    }
                )
        return rows

    def _by_memory(self) -> list[dict[str, Any]]:
        wl, s = self.workload, self.spec
        nb = wl.dtype_bytes

        def row(item: str, nbytes: int, assumption: str) -> dict[str, Any]:
            return {"item": item, "elements": nbytes // nb, "bytes": nbytes, "assumption": assumption}

        ct = s.cell_type
        states = " and ".join(ct.state_names)
        extra = " + Dh (pre-projection h)" if s.proj_size else ""
        return [
            row("parameters", self.param_bytes, f"all parameters in {wl.dtype}"),
            row("gradients", self.grad_bytes, "training: one per parameter"),
            row("Adam moments", self.optimizer_bytes, "training: exp_avg + exp_avg_sq, no fp32 master copy"),
            row(f"state ({states})", self.state_bytes, "per sequence, layer, direction; h: P or Dh, c: Dh"),
            row(
                "activations kept for backward",
                self.activation_bytes,
                f"training, per real step and layer: input, h_(t-1), "
                f"{ct.saved_per_unit}·Dh{extra} per direction",
            ),
            row(
                "inference working set",
                self.inference_bytes,
                "params + state + largest layer's input, gates (all steps) and output"
                if not ct.single_step
                else "params + state + one step's input, gates and output",
            ),
            row("training total", self.training_bytes, "params + gradients + Adam moments + activations"),
        ]

    def _by_total(self) -> list[dict[str, Any]]:
        return [
            {
                "spec": self.spec.describe(),
                "workload": self.workload.describe(),
                "macs_per_step": self.macs_per_step,
                "macs": self.macs,
                "flops": self.flops,
                "critical_path": self.critical_path_steps,
                "param_bytes": self.param_bytes,
                "inference_bytes": self.inference_bytes,
                "training_bytes": self.training_bytes,
            }
        ]

    def to_dict(self) -> dict[str, Any]:
        """Scalars, spec, workload and convention, for JSON output."""
        keys = (
            "macs_per_step",
            "macs",
            "forward_flops",
            "backward_flops",
            "flops",
            "flops_per_sequence",
            "param_bytes",
            "grad_bytes",
            "optimizer_bytes",
            "state_bytes",
            "activation_bytes",
            "training_bytes",
            "inference_bytes",
            "critical_path_steps",
            "layerwise_steps",
            "gemms_per_step",
        )
        return {
            "spec": self.spec.to_dict(),
            "workload": self.workload.to_dict(),
            "convention": self.convention,
            **{k: getattr(self, k) for k in keys},
        }


def _bytes(n: int) -> str:
    """``3,276,800 B (3.12 MiB)``: exact bytes with a binary unit, for rendering only."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n:,} B ({n / size:.2f} {unit})"
    return f"{n:,} B"


# --- the engine -----------------------------------------------------------------------------


def _flops(
    lc: LayerCost, sw: CostConvention, tokens: int, seqs: int, first_skip: int, training: bool
) -> tuple[int, int]:
    """Forward and backward FLOPs of one layer and direction over ``tokens`` real steps.

    ``seqs`` sequences; ``first_skip`` = recurrent rows without a dh in backward (autograd rule).
    """
    gi = lc.input_macs if sw.input_proj else 0
    gr = lc.recurrent_macs if sw.recurrent else 0
    gp = lc.projection_macs if sw.projection else 0
    other = (lc.bias_ops if sw.bias_ops else 0) + (lc.elementwise_ops if sw.elementwise else 0)
    fwd = (2 * (gi + gr + gp) + other) * tokens
    if not training:
        return fwd, 0
    if sw.backward == "2x":
        return fwd, 2 * fwd
    dw = (gi + gr + gp) * tokens
    dx = (gi * tokens if lc.layer else 0) + gr * (tokens - first_skip) + gp * tokens
    return fwd, 2 * (dw + dx) + 2 * other * tokens


def cost(
    spec: RecurrentSpec,
    workload: Workload | None = None,
    *,
    input_proj: bool = True,
    recurrent: bool = True,
    projection: bool = True,
    bias_ops: bool = True,
    elementwise: bool = True,
    backward: str = "2x",
) -> CostResult:
    """MACs, FLOPs, critical path and memory of ``spec`` running ``workload``.

    The switches choose which parts count towards FLOPs (``macs`` always counts every GEMM)
    and the backward rule of training (``"2x"`` or ``"autograd"``; see the module docstring).

    >>> from paramcalc import RecurrentSpec
    >>> r = cost(RecurrentSpec("rnn", 5, 7), Workload(batch=2, seq_len=4))
    >>> r.macs_per_step, r.macs     # 7·5 + 7·7 weights; 8 real steps
    (84, 672)
    """
    wl = workload if workload is not None else Workload()
    sw = CostConvention(input_proj, recurrent, projection, bias_ops, elementwise, backward)
    ct = spec.cell_type
    layers = layer_costs(spec)
    tok, b, t = wl.tokens, wl.batch, wl.seq_len

    def skip(lc: LayerCost, seqs: int) -> int:
        # sequences whose first recurrent step has no dh (see the module docstring)
        if lc.direction == "reverse" and wl.lengths is not None and seqs == b:
            return wl.longest
        return seqs

    per_layer = [_flops(lc, sw, tok, b, skip(lc, b), wl.training) for lc in layers]
    forward = sum(f for f, _ in per_layer)
    back = sum(bw for _, bw in per_layer)
    per_seq = sum(sum(_flops(lc, sw, t, 1, 1, wl.training)) for lc in layers)

    # memory, in elements, then bytes
    nb = wl.dtype_bytes
    h, p, nd = spec.hidden_size, spec.proj_size, spec.num_directions
    r = p or h
    width = {"h": r, "c": h}
    state_per_seq = spec.num_layers * nd * sum(width[n] for n in ct.state_names)
    saved_per_token = sum(
        spec.layer_input_size(layer) + nd * (r + ct.saved_per_unit * h + (h if p else 0))
        for layer in range(spec.num_layers)
    )
    live_rows = b if ct.single_step else tok
    live = max(
        live_rows * (spec.layer_input_size(layer) + nd * spec.gates * h + nd * r)
        for layer in range(spec.num_layers)
    )
    params = total_params(spec)
    param_bytes = params * nb
    activation_bytes = saved_per_token * tok * nb
    steps, nl = wl.steps, spec.num_layers
    critical = nl * steps if spec.bidirectional else steps + nl - 1
    return CostResult(
        spec=spec,
        workload=wl,
        switches=sw,
        layers=layers,
        macs_per_step=sum(lc.gemm_macs for lc in layers),
        macs=sum(lc.gemm_macs for lc in layers) * tok,
        forward_flops=forward,
        backward_flops=back,
        flops=forward + back,
        flops_per_sequence=per_seq,
        param_bytes=param_bytes,
        grad_bytes=param_bytes,
        optimizer_bytes=2 * param_bytes,
        state_bytes=state_per_seq * b * nb,
        activation_bytes=activation_bytes,
        training_bytes=4 * param_bytes + activation_bytes,
        inference_bytes=param_bytes + state_per_seq * b * nb + live * nb,
        critical_path_steps=critical,
        layerwise_steps=nl * steps,
        gemms_per_step=len(_gemm_stages(spec)),
        layer_flops=tuple(f + bw for f, bw in per_layer),
    )
