"""Cost model: MACs, FLOPs, critical path and memory of a recurrent stack on a workload.

Pure Python ints; no torch, no pandas at import. The per-cell facts (elementwise ops per hidden
unit, vectors kept for backward, state vectors, reset-before GEMM stages, sequential or scan
recurrence) come from the cells registry (:class:`paramcalc.core.cells.CellType`), so a new cell
type is one registry entry.

Counting conventions, stated here where they are computed and in every result's ``convention``:

* **MAC**: one multiply-add of a matrix product (GEMM). Per token (one time step of one
  sequence), layer and direction, with ``G`` gate blocks, hidden size ``Dh``, layer input
  ``d``, projection ``P`` and recurrent width ``R = P or Dh``:

  - input projection ``x·W_ihᵀ``: ``G·Dh·d`` (independent across steps: one large GEMM),
  - recurrent ``h·W_hhᵀ``: ``G·Dh·R`` (sequential: step t needs step t-1),
  - projection ``h·W_hrᵀ``: ``P·Dh`` (sequential too: h_t feeds the next recurrent GEMM).

  So GEMM MACs per token = the elements of the GEMM operands (``weight_ih``, ``weight_hh``,
  ``weight_hr``); biases, peepholes and a diagonal recurrent weight (IndRNN) are elementwise.
  Every step does the same work, the first one too (``h_0 = 0`` is multiplied).
* **Bias additions**: one op per bias element per token (``bias_vectors·G·Dh``).
* **Elementwise**: ``CellType.elementwise_ops`` per hidden unit per token (sums, differences,
  divisions, Hadamard products, σ, tanh, ReLU: one op per element each); peepholes add a ⊙ and
  a + per gate; merging two directions by sum/ave/mul adds 1 (ave: 2) ops per output element.
* **FLOPs** = 2·MACs + bias additions + elementwise ops; each part can be left out.
* **Training** adds the backward pass, by one of two rules (``backward=``):

  - ``"2x"`` (default): backward = 2 × forward, for every included part (a GEMM's backward
    is one GEMM for the input gradient dX and one for the weight gradient dW);
  - ``"autograd"``: the GEMMs PyTorch's autograd actually runs when the stack's input is data
    and the initial state is zero: dW for every GEMM; dX for every GEMM except the layer-0
    input projection and the recurrent GEMM of each sequence's first step (for a packed
    batch's reverse direction, only of the longest sequences: PyTorch concatenates the zero
    state of shorter ones onto a state that needs a gradient). In the reset-before form (Keras'
    GRU with ``reset_after=False``, MGU) the first step's second matmul multiplies ``r ⊙ h_0 =
    0``: its input gradient is zero and is not counted (paramcalc's reference module skips it
    too). Bias and elementwise: 2 ×.

Packed batches cost their real steps (``Workload.lengths``), not the padded rectangle. A cell
whose recurrence is linear in ``h`` (minGRU, minLSTM) can run as a parallel scan: its result
gives ``scan_levels`` (``⌈log₂ T⌉`` per layer) beside the sequential critical path, which is what
paramcalc's reference module runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil, log2
from typing import Any, NamedTuple

from ..errors import ParamcalcError
from ..results.base import Result
from ..results.table import Column, Table
from ..results.text import fmt_bytes, plural
from .memory import memory_model
from .params import DIRECTIONS, layer_kinds, total_params
from .spec import RecurrentSpec
from .workload import Workload

BACKWARD_RULES = ("2x", "autograd")
#: The views of :class:`CostResult`.
VIEWS = ("layer", "part", "gemm", "memory", "total")


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


def merge_ops(spec: RecurrentSpec) -> int:
    """Ops per output element to merge two directions (0 for concat): sum 1, mul 1, ave 2."""
    if not spec.bidirectional:
        return 0
    return {"concat": 0, "sum": 1, "mul": 1, "ave": 2}[spec.merge_mode]


def layer_costs(spec: RecurrentSpec) -> tuple[LayerCost, ...]:
    """Per-token forward work of every layer and direction, from the cell's templates and rules."""
    ct = spec.cell_type
    per_unit = sum(n for _, n in ct.ops_for(spec)) * spec.hidden_size
    merge = merge_ops(spec) * spec.output_size
    rows = []
    for layer in range(spec.num_layers):
        input_macs, recurrent_macs, projection_macs, bias_ops = layer_kinds(spec, layer)
        for direction in range(spec.num_directions):
            rows.append(
                LayerCost(
                    layer=layer,
                    direction=DIRECTIONS[direction],
                    input_size=spec.layer_input_size(layer),
                    input_macs=input_macs,
                    recurrent_macs=recurrent_macs,
                    projection_macs=projection_macs,
                    bias_ops=bias_ops,
                    # the merge of the two directions is booked on the reverse direction's row
                    elementwise_ops=per_unit + (merge if direction else 0),
                )
            )
    return tuple(rows)


def cell_equations(spec: RecurrentSpec) -> tuple[str, ...]:
    """The update equations ``spec`` computes (peephole or reset-before forms where they apply)."""
    return spec.cell_type.equations_for(spec)


def gemm_stages(spec: RecurrentSpec) -> list[tuple[str, int, int]]:
    """The sequential GEMMs of one step: ``(name, K, N)`` in dependency order."""
    ct = spec.cell_type
    g, h, p = spec.gates, spec.hidden_size, spec.proj_size
    stages: list[tuple[str, int, int]] = []
    if ct.recurrent_gemm:
        k = ct.reset_before(spec)
        if k:
            # the blocks before the reset-gated ones run first; those wait for r_t ⊙ h_{t-1}
            first, second = ", ".join(ct.gate_names[: g - k]), ", ".join(ct.gate_names[g - k :])
            stages = [(f"recurrent ({first})", h, (g - k) * h), (f"recurrent ({second})", h, k * h)]
        else:
            stages = [("recurrent", p or h, g * h)]
    if p:
        stages.append(("projection", h, p))
    return stages


@dataclass(frozen=True)
class Gemm:
    """One GEMM shape of a layer and direction, and how often a workload runs it.

    ``m`` rows (sequences, or every token for the input GEMM of a stack), ``k`` by ``n``;
    ``calls`` of that shape; ``sequential``: on the recurrence's critical path.
    """

    layer: int
    direction: str
    name: str
    m: int
    k: int
    n: int
    calls: int
    sequential: bool

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.calls


# --- the result -----------------------------------------------------------------------------

LAYER_COLUMNS = (
    Column("layer"),
    Column("direction", "str"),
    Column("input_size", wide=True),
    Column("input_macs"),
    Column("recurrent_macs"),
    Column("proj_macs", wide=True),
    Column("bias_ops", wide=True),
    Column("elementwise_ops", wide=True),
    Column("macs_per_step"),
    Column("macs_per_seq", wide=True),
    Column("macs"),
    Column("flops"),
)
PART_COLUMNS = (
    Column("part", "str"),
    Column("unit", "str"),
    Column("per_step"),
    Column("per_sequence"),
    Column("per_batch"),
    Column("flops"),
    Column("counted", "bool", wide=True),  # the convention note names the parts left out
    Column("runs", "str"),
)
GEMM_COLUMNS = (
    Column("layer"),
    Column("direction", "str"),
    Column("gemm", "str"),
    Column("M", doc="rows of the first call (sequences, or every token for a stack's input GEMM)"),
    Column("M_last", doc="rows of the last call: a packed batch shrinks as sequences end"),
    Column("K"),
    Column("N"),
    Column("calls"),
    Column("macs"),
    Column("runs", "str"),
)
MEMORY_COLUMNS = (
    Column("item", "str"),
    Column("elements"),
    Column("bytes", unit="B"),
    Column("assumption", "str", wide=True),
)
TOTAL_COLUMNS = (
    Column("spec", "str", wide=True),
    Column("workload", "str", wide=True),
    Column("macs_per_step"),
    Column("macs"),
    Column("flops"),
    Column("critical_path"),
    Column("param_bytes", unit="B", wide=True),  # the memory line under the table states them
    Column("inference_bytes", unit="B", wide=True),
    Column("training_bytes", unit="B", wide=True),
)


@dataclass(frozen=True, repr=False)
class CostResult(Result):
    """MACs, FLOPs, critical path and memory of ``spec`` on ``workload``; exact ints.

    ``macs_per_step``: GEMM MACs of one time step of one sequence (all layers, directions).
    ``macs``: forward GEMM MACs of the whole workload (real steps). ``flops_per_sequence``:
    FLOPs of one sequence of length ``seq_len`` (with backward in training mode). ``flops``:
    the whole workload, with backward in training mode. ``critical_path_steps``: the longest
    chain of dependent recurrent steps (``T + L - 1`` for a unidirectional stack, whose layer
    l+1 can take step t once layer l has; ``L·T`` for a bidirectional one, whose reverse
    direction reaches t = 0 last; the two directions of a layer run side by side);
    ``layerwise_steps``: ``L·T``, run layer by layer; ``scan_levels``: for a cell whose
    recurrence is a linear scan, the dependent levels of a parallel scan (``L·⌈log₂ T⌉``),
    else ``None``. Views: ``layer`` (default), ``part``, ``gemm``, ``memory``, ``total``.
    """

    VIEWS = VIEWS

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
    critical_path_steps: int
    layerwise_steps: int
    gemms_per_step: int
    layer_flops: tuple[int, ...]
    scan_levels: int | None = None

    @property
    def convention(self) -> str:
        """A sentence saying what was counted."""
        return self.switches.describe(self.workload.training)

    # -- memory (the memory model runs on first use: a count of FLOPs does not pay for it) ------
    @property
    def param_bytes(self) -> int:
        return total_params(self.spec) * self.workload.dtype_bytes

    @property
    def grad_bytes(self) -> int:
        return self.param_bytes

    @property
    def optimizer_bytes(self) -> int:
        """Adam's two moments."""
        return 2 * self.param_bytes

    @property
    def state_bytes(self) -> int:
        """The recurrent state of the batch (every layer and direction)."""
        s = self.spec
        width = {"h": s.proj_size or s.hidden_size, "c": s.hidden_size}
        per_seq = (
            s.num_layers
            * s.num_directions
            * sum(width.get(n, s.hidden_size) for n in s.cell_type.state_names)
        )
        return per_seq * self.workload.batch * self.workload.dtype_bytes

    @property
    def activation_bytes(self) -> int:
        """What training keeps for backward (the memory model's ``kept`` terms)."""
        return self._memory().activation_bytes

    @property
    def training_bytes(self) -> int:
        """The training peak of one call with Adam's state."""
        return self._memory().training_bytes

    @property
    def inference_bytes(self) -> int:
        """The inference peak of one call."""
        return self._memory().inference_bytes

    @property
    def memory_notes(self) -> tuple[str, ...]:
        """The memory model's notes (a guess for a cell without memory rules), shown under the table."""
        return self._memory().notes

    def _memory(self) -> _MemoryFigures:
        found: _MemoryFigures | None = self.__dict__.get("_memory_figures")
        if found is None:
            found = _memory(self.spec, self.workload)
            object.__setattr__(self, "_memory_figures", found)
        return found

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
    def _forward_per_token(self) -> int:
        return self.forward_flops // self.workload.tokens

    # -- the GEMM list (the speed model rests on it) -----------------------------------------
    def gemms(self) -> list[Gemm]:
        """Every GEMM the workload runs, by layer, direction and shape, with its call count.

        A stack runs its input GEMM once over all real tokens; a single-step cell once per step.
        The recurrent (and projection) GEMMs run once per step with the sequences still running:
        a packed batch gives one entry per distinct row count.
        """
        wl, s = self.workload, self.spec
        single = s.cell_type.single_step
        steps = wl.steps
        per_m: dict[int, int] = {}
        for t in range(steps) if wl.lengths is not None else ():
            b = wl.step_batch(t)
            per_m[b] = per_m.get(b, 0) + 1
        if wl.lengths is None:
            per_m = {wl.batch: steps}
        out = []
        n_in = s.gates * s.hidden_size
        stages = gemm_stages(s)
        for lc in self.layers:
            if single:
                for m, calls in per_m.items():
                    out.append(Gemm(lc.layer, lc.direction, "input", m, lc.input_size, n_in, calls, False))
            else:
                out.append(Gemm(lc.layer, lc.direction, "input", wl.tokens, lc.input_size, n_in, 1, False))
            for name, k, n in stages:
                for m, calls in per_m.items():
                    out.append(Gemm(lc.layer, lc.direction, name, m, k, n, calls, True))
        return out

    # -- the protocol ------------------------------------------------------------------------
    def _table(self, view: str) -> Table:
        return {
            "layer": self._by_layer,
            "part": self._by_part,
            "gemm": self._by_gemm,
            "memory": self._by_memory,
            "total": self._by_total,
        }[view]()

    def title(self) -> str:
        return f"{self.spec.describe()}  [{self.workload.describe()}]"

    def headline(self) -> str:
        return f"{self.spec.describe()}, {self.workload.describe()}: {self.flops:,} FLOPs"

    def notes(self) -> list[str]:
        out = [f"convention: {self.convention}"]
        if self.scan_levels is not None:
            runs = "a parallel scan" if self.spec.cell_type.torch.scan else "the sequential form"
            out.append(
                f"{self.spec.cell_type.display_name}'s recurrence is linear in h: a parallel scan takes "
                f"{plural(self.scan_levels, 'dependent level')} (L·⌈log₂ T⌉) instead of "
                f"{plural(self.critical_path_steps, 'step')}; paramcalc's reference module runs {runs}"
            )
        return out + list(self.memory_notes)

    def summary(self, view: str | None = None) -> list[str]:
        """Lines under the table: per step / sequence / batch, critical path, memory."""
        wl, s = self.workload, self.spec
        stages = gemm_stages(s)
        b = wl.batch
        shapes = ", then ".join(f"[{b}×{k}]·[{k}×{n}]" for _, k, n in stages)
        chain = "T" if s.cell_type.single_step else ("L·T" if s.bidirectional else "T + L - 1")
        if stages:
            each = f"each {len(stages)} sequential GEMM{'s' if len(stages) > 1 else ''} {shapes}"
        else:
            each = "each elementwise only (no recurrent GEMM)"
        lines = [
            f"GEMM MACs: {self.macs_per_step:,} per step, "
            f"{self.macs_per_step * wl.seq_len:,} per sequence (T={wl.seq_len}), "
            f"{self.macs:,} per batch ({plural(wl.tokens, 'real step')})",
            f"FLOPs: {self.flops_per_sequence:,} per sequence, {self.flops:,} per batch"
            + (
                f" (forward {self.forward_flops:,} + backward {self.backward_flops:,})" if wl.training else ""
            ),
            f"critical path: {plural(self.critical_path_steps, 'dependent step')} ({chain}), {each}"
            + (
                ""
                if s.cell_type.single_step
                else f"; {plural(self.layerwise_steps, 'step')} run layer by layer"
            ),
            f"memory ({wl.dtype}, peak of one call on a CPU): parameters {_bytes(self.param_bytes)}, "
            f"inference {_bytes(self.inference_bytes)}, training with Adam {_bytes(self.training_bytes)}",
        ]
        return lines

    def meta(self) -> dict[str, Any]:
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
            "scan_levels",
        )
        return {
            "spec": self.spec.to_dict(),
            "workload": self.workload.to_dict(),
            "convention": self.convention,
            **{k: getattr(self, k) for k in keys},
        }

    def context(self) -> list[tuple[str, str]]:
        return [("spec", self.spec.describe()), ("workload", self.workload.describe())]

    # -- views -------------------------------------------------------------------------------
    def _by_layer(self) -> Table:
        tok, t = self.workload.tokens, self.workload.seq_len
        rows = []
        for lc, fl in zip(self.layers, self.layer_flops, strict=True):
            rows.append(
                (
                    lc.layer,
                    lc.direction,
                    lc.input_size,
                    lc.input_macs * tok,
                    lc.recurrent_macs * tok,
                    lc.projection_macs * tok,
                    lc.bias_ops * tok,
                    lc.elementwise_ops * tok,
                    lc.gemm_macs,
                    lc.gemm_macs * t,
                    lc.gemm_macs * tok,
                    fl,
                )
            )
        return Table(LAYER_COLUMNS, tuple(rows))

    def _by_part(self) -> Table:
        wl, sw, s = self.workload, self.switches, self.spec
        t, tok = wl.seq_len, wl.tokens

        def total(attr: str) -> int:
            return sum(getattr(lc, attr) for lc in self.layers)

        parts: list[tuple[str, str, int, bool, int, str]] = [
            ("input projection x·W_ihᵀ", "MAC", total("input_macs"), sw.input_proj, 2, "parallel over steps"),
        ]
        if s.cell_type.recurrent_gemm:
            parts.append(("recurrent h·W_hhᵀ", "MAC", total("recurrent_macs"), sw.recurrent, 2, "sequential"))
        if s.proj_size:
            parts.append(
                ("projection h·W_hrᵀ", "MAC", total("projection_macs"), sw.projection, 2, "sequential")
            )
        if s.bias:
            parts.append(("bias additions", "op", total("bias_ops"), sw.bias_ops, 1, "elementwise"))
        parts.append(
            ("elementwise (cell update)", "op", total("elementwise_ops"), sw.elementwise, 1, "elementwise")
        )
        rows: list[tuple[Any, ...]] = [
            (name, unit, n, n * t, n * tok, factor * n * tok if on else 0, on, runs)
            for name, unit, n, on, factor, runs in parts
        ]
        fwd_seq = self._forward_per_token * t
        if wl.training:
            rows.append(
                (
                    f"backward ({sw.backward} rule)",
                    "FLOP",
                    None,
                    self.flops_per_sequence - fwd_seq,
                    self.backward_flops,
                    self.backward_flops,
                    True,
                    "after forward",
                )
            )
        rows.append(
            (
                "total",
                "FLOP",
                self._forward_per_token,
                self.flops_per_sequence,
                self.flops,
                self.flops,
                None,
                None,
            )
        )
        return Table(PART_COLUMNS, tuple(rows))

    def _by_gemm(self) -> Table:
        wl = self.workload
        steps = wl.steps
        first, last = wl.step_batch(0), wl.step_batch(steps - 1)
        rows = []
        # packed batches: one row per GEMM (its first shape), its rows shrinking from M to M_last
        firsts: dict[tuple[int, str, str], Gemm] = {}
        total: dict[tuple[int, str, str], int] = {}
        for g in self.gemms():
            key = (g.layer, g.direction, g.name)
            firsts.setdefault(key, g)
            total[key] = total.get(key, 0) + g.macs
        for key, g in firsts.items():
            macs = total[key]
            if not g.sequential and g.calls == 1 and g.m == wl.tokens and not self.spec.cell_type.single_step:
                rows.append(
                    (g.layer, g.direction, g.name, g.m, g.m, g.k, g.n, 1, macs, "once, all steps in one GEMM")
                )
            else:
                runs = "every step, sequential" if g.sequential else "every step, off the critical path"
                rows.append((g.layer, g.direction, g.name, first, last, g.k, g.n, steps, macs, runs))
        return Table(GEMM_COLUMNS, tuple(rows))

    def _by_memory(self) -> Table:
        """The memory model's terms at the peak of one call (``paramcalc.core.memory``), with Adam."""
        return memory_model(self.spec, self.workload, optimizer="adam").table()

    def _by_total(self) -> Table:
        return Table(
            TOTAL_COLUMNS,
            (
                (
                    self.spec.describe(),
                    self.workload.describe(),
                    self.macs_per_step,
                    self.macs,
                    self.flops,
                    self.critical_path_steps,
                    self.param_bytes,
                    self.inference_bytes,
                    self.training_bytes,
                ),
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """Scalars, spec, workload and convention (the same as :meth:`meta`)."""
        return self.meta()


def _bytes(n: int) -> str:
    """``3,276,800 B (3.12 MiB)``: exact bytes with a binary unit, for text lines only."""
    return f"{n:,} B" if n < 1024 else f"{n:,} B ({fmt_bytes(n)})"


# --- the engine -----------------------------------------------------------------------------


def _flops(
    lc: LayerCost, sw: CostConvention, tokens: int, first_skip: int, training: bool
) -> tuple[int, int]:
    """Forward and backward FLOPs of one layer and direction over ``tokens`` real steps.

    ``first_skip`` = recurrent rows without a dh in backward (autograd rule).
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

    ``spec`` may be a :class:`RecurrentSpec` or a recurrent ``torch.nn`` module. The switches
    choose which parts count towards FLOPs (``macs`` always counts every GEMM) and the
    backward rule of training (``"2x"`` or ``"autograd"``; see the module docstring).

    >>> from paramcalc import RecurrentSpec
    >>> r = cost(RecurrentSpec("rnn", 5, 7), Workload(batch=2, seq_len=4))
    >>> r.macs_per_step, r.macs     # 7·5 + 7·7 weights; 8 real steps
    (84, 672)
    """
    from .coerce import as_spec

    spec = as_spec(spec, "cost")
    if workload is not None and not isinstance(workload, Workload):
        raise ParamcalcError(f"cost needs a Workload, got {type(workload).__name__}")
    wl = workload if workload is not None else Workload()
    sw = CostConvention(input_proj, recurrent, projection, bias_ops, elementwise, backward)
    ct = spec.cell_type
    layers = layer_costs(spec)
    per_layer = [_flops(lc, sw, wl.tokens, _first_skip(lc, wl), wl.training) for lc in layers]
    forward = sum(f for f, _ in per_layer)
    back = sum(bw for _, bw in per_layer)
    macs_per_step = sum(lc.gemm_macs for lc in layers)
    steps, nl = wl.steps, spec.num_layers
    critical = steps if ct.single_step else nl * steps if spec.bidirectional else steps + nl - 1
    return CostResult(
        spec=spec,
        workload=wl,
        switches=sw,
        layers=layers,
        macs_per_step=macs_per_step,
        macs=macs_per_step * wl.tokens,
        forward_flops=forward,
        backward_flops=back,
        flops=forward + back,
        flops_per_sequence=sum(sum(_flops(lc, sw, wl.seq_len, 1, wl.training)) for lc in layers),
        critical_path_steps=critical,
        layerwise_steps=nl * steps,
        gemms_per_step=len(gemm_stages(spec)),
        layer_flops=tuple(f + bw for f, bw in per_layer),
        scan_levels=nl * max(1, ceil(log2(steps))) if ct.recurrence == "scan" else None,
    )


def _first_skip(lc: LayerCost, wl: Workload) -> int:
    """Sequences whose first recurrent step has no dh in backward (see the module docstring)."""
    if lc.direction == "reverse" and wl.lengths is not None:
        return wl.longest
    return wl.batch


class _MemoryFigures(NamedTuple):
    activation_bytes: int
    training_bytes: int
    inference_bytes: int
    notes: tuple[str, ...]


def _memory(spec: RecurrentSpec, wl: Workload) -> _MemoryFigures:
    """The memory model's figures of a cost (:mod:`paramcalc.core.memory`): the peaks of the
    kernel path predicted for a CPU, and what training keeps for backward."""
    inference = memory_model(spec, replace(wl, mode="inference"))
    if wl.dtype == "int8":
        # int8 is inference-only: the training figures are the fp16 model's at one byte an element
        training = memory_model(spec, replace(wl, mode="training", dtype="fp16"), optimizer="adam")
        activation_bytes = training.bytes_of("kept") // 2
        training_bytes = (training.peak_bytes + training.optimizer_bytes) // 2
    else:
        training = memory_model(spec, replace(wl, mode="training"), optimizer="adam")
        activation_bytes = training.bytes_of("kept")
        training_bytes = training.peak_bytes + training.optimizer_bytes
    return _MemoryFigures(
        activation_bytes,
        training_bytes,
        inference.peak_bytes,
        tuple(dict.fromkeys((*inference.notes, *training.notes))),
    )
