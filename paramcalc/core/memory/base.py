"""What every kernel path's term table is made of: the result types, the sizes, the shared terms.

A path's table is a tuple of small term rules, each ``(ctx, layer) -> MemoryTerm | None``
(:data:`Rule`); :func:`phase` evaluates one for a layer. A phase that holds what the layers
below keep refers to a prefix of a :class:`Kept` instead of copying it, so choosing the peak
among the ``L`` phases of an ``L``-layer stack is linear in ``L`` (:func:`best`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...results.table import Column, Table
from ..memrules import Saved
from ..params import layer_params, total_params
from ..spec import RecurrentSpec
from ..workload import Workload

if TYPE_CHECKING:  # pragma: no cover
    from .setup import CudaSetup

ONEDNN = "oneDNN"
CUDNN = "cuDNN"
NATIVE = "native"
FUSED_CELL = "native fused cell"
REFERENCE = "reference"
#: The kernel paths the model knows (the names ``paramcalc.bridge.driver.kernel_path`` gives).
PATHS = (ONEDNN, CUDNN, NATIVE, FUSED_CELL, REFERENCE)
#: Paths of other names (``MPS``, ``MIOpen``) are modelled as this one.
FALLBACK_PATH = NATIVE

#: Term kinds: ``resident`` (held before the call), ``kept`` (kept from forward to backward, or a
#: layer output), ``peak`` (the buffers of the phase at the peak), ``library`` (a library's
#: workspace, kept once its first call ran: cuBLAS), ``allocator`` (resident but not live),
#: ``optimizer`` (not part of one call's peak: shown by the cost view only).
KINDS = ("resident", "kept", "peak", "library", "allocator", "optimizer")

MEMORY_COLUMNS = (
    Column("item", "str"),
    Column("elements"),
    Column("bytes", unit="B"),
    Column("assumption", "str", wide=True),
)


@dataclass(frozen=True)
class MemoryTerm:
    """One named amount of memory: ``bytes``, its ``kind`` (:data:`KINDS`) and the assumption."""

    item: str
    bytes: int
    kind: str
    assumption: str
    elements: int | None = None


@dataclass(frozen=True)
class MemoryModel:
    """The terms held at the peak of one call of ``spec`` on ``workload`` by ``path``.

    ``phase`` names the moment of the peak (e.g. ``end of forward`` or ``backward of layer 1``);
    ``terms`` also hold the ``optimizer`` term when one was asked for, which is not in
    :attr:`peak_bytes` (the bench peak has no optimizer). ``notes`` say what the figures rest on
    where that is not a rule checked against measurements: a guess for a cell without memory
    rules, a path modelled as another, and on CUDA the sources, calibration and versions.
    """

    spec: RecurrentSpec
    workload: Workload
    path: str
    device_type: str
    phase: str
    terms: tuple[MemoryTerm, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def peak_bytes(self) -> int:
        return sum(t.bytes for t in self.terms if t.kind != "optimizer")

    @property
    def optimizer_bytes(self) -> int:
        return sum(t.bytes for t in self.terms if t.kind == "optimizer")

    def bytes_of(self, *kinds: str) -> int:
        return sum(t.bytes for t in self.terms if t.kind in kinds)

    def table(self) -> Table:
        """``item``, ``elements``, ``bytes``, ``assumption``: the terms, then the peak (and with Adam)."""
        rows: list[tuple[Any, ...]] = [(t.item, t.elements, t.bytes, t.assumption) for t in self.terms]
        where = f"{self.path} on {self.device_type}, {self.phase}"
        rows.append(
            ("peak of one call", None, self.peak_bytes, f"sum of the above but the optimizer; {where}")
        )
        if self.optimizer_bytes:
            rows.append(
                (
                    "training with Adam",
                    None,
                    self.peak_bytes + self.optimizer_bytes,
                    "the peak plus Adam's moments (an optimizer step's own temporaries not counted)",
                )
            )
        return Table(MEMORY_COLUMNS, tuple(rows))


@dataclass
class Ctx:
    """The sizes every term is made of, the CUDA setup (on CUDA) and the notes gathered."""

    spec: RecurrentSpec
    wl: Workload
    nb: int
    n: int  # real tokens
    b: int
    t: int  # steps
    h: int
    r: int  # width of h
    g: int
    dirs: int
    layers: int
    out: int  # the stack's output width per token
    cuda: CudaSetup | None = None
    notes: list[str] = field(default_factory=list)

    def d(self, layer: int) -> int:
        return self.spec.layer_input_size(layer)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def make_ctx(spec: RecurrentSpec, wl: Workload, cuda: CudaSetup | None = None) -> Ctx:
    return Ctx(
        spec=spec,
        wl=wl,
        nb=wl.dtype_bytes,
        n=wl.tokens,
        b=wl.batch,
        t=wl.steps,
        h=spec.hidden_size,
        r=spec.output_size,
        g=spec.gates,
        dirs=spec.num_directions,
        layers=spec.num_layers,
        out=spec.stack_output_size,
        cuda=cuda,
    )


def term(item: str, elements: int, nb: int, kind: str, assumption: str) -> MemoryTerm:
    return MemoryTerm(item, elements * nb, kind, assumption, elements)


#: A term rule of a path's table: the term for ``(ctx, layer)``, or ``None`` where it has none.
Rule = Callable[[Ctx, int], "MemoryTerm | None"]


def phase(c: Ctx, layer: int, rules: Iterable[Rule]) -> list[MemoryTerm]:
    """The terms ``rules`` give for ``layer``, in order (rules with no term left out)."""
    return [t for rule in rules if (t := rule(c, layer)) is not None]


def resident(c: Ctx, states_saved: bool = False) -> list[MemoryTerm]:
    """Parameters, input and the zero initial states (training counts those as saved activations)."""
    s, nb = c.spec, c.nb
    terms = [
        term(
            "parameters",
            total_params(s),
            nb,
            "resident",
            f"every parameter in {c.wl.dtype}, already allocated",
        ),
        term(
            "input",
            c.t * c.b * s.input_size if c.wl.lengths is None else c.n * s.input_size,
            nb,
            "resident",
            "the (T, B, d) input (a packed batch: its real tokens), already allocated",
        ),
    ]
    if not states_saved:
        extra = (len(s.cell_type.state_names) - 1) * c.h
        terms.append(
            term(
                "initial states",
                c.layers * c.dirs * c.b * (c.r + extra),
                nb,
                "kept",
                "h_0 (and c_0) zeros the module makes, (L·D, B, R) each",
            )
        )
    return terms


def grads(c: Ctx, from_layer: int, grad_bytes: int) -> MemoryTerm:
    """Parameter gradients of layers ``from_layer..L-1`` (set_to_none: none before backward)."""
    if from_layer >= c.layers:
        return MemoryTerm("parameter gradients", 0, "peak", "none yet", 0)
    # every layer above the first has the same tensors (its input is the stack's output width)
    first = layer_params(c.spec, 0) if from_layer == 0 else 0
    upper = c.layers - max(from_layer, 1)
    elements = c.dirs * (first + (upper * layer_params(c.spec, 1) if upper else 0))
    which = "every layer" if from_layer == 0 else f"layers {from_layer}..{c.layers - 1}"
    return MemoryTerm(
        "parameter gradients",
        elements * grad_bytes,
        "peak",
        f".grad of {which} (accumulated by then; zero_grad(set_to_none=True) frees them between calls)",
        elements,
    )


def optimizer_term(c: Ctx) -> MemoryTerm:
    return term(
        "Adam moments",
        2 * total_params(c.spec),
        c.nb,
        "optimizer",
        "exp_avg + exp_avg_sq (torch.optim.Adam), no fp32 master copy; not part of one call",
    )


# --- what a step-by-step path keeps: the registry entry's rule ---------------------------------


def _rule_for(c: Ctx, path: str) -> Saved | None:
    """The entry's saved-tensor rule for ``path`` (the other step-by-step path's when it has none)."""
    ct, rules = c.spec.cell_type, c.spec.cell_type.memory
    if rules is None:
        return None
    if path == REFERENCE and ct.reset_after_option and not c.spec.reset_after:
        return rules.reference_reset_before  # Keras' reset_after=False
    own, other = (rules.reference, rules.native) if path == REFERENCE else (rules.native, rules.reference)
    if own is None and other is not None:
        c.note(
            f"{ct.display_name} has no {path} rule in its registry entry: its other step-by-step rule is used"
        )
    return own or other


def saved(c: Ctx, path: str) -> tuple[int, int, str]:
    """Elements kept for backward per token, and per layer and direction, besides the layer input."""
    s, h, r = c.spec, c.h, c.r
    rule = _rule_for(c, path)
    if rule is None:
        k = s.cell_type.saved_per_unit + c.g
        c.note(
            f"memory is a guess: {s.cell_type.display_name} has no memory rule for the {path} path in its "
            f"registry entry (CellType.memory), so autograd is assumed to keep {k}·Dh per token "
            "(saved_per_unit plus the gate blocks); bench measures the real peak"
        )
        return (
            k * h + r,
            0,
            f"h_(t-1) and {k}·Dh per token (a guess: no memory rule; the registry's saved vectors plus the "
            "gate blocks)",
        )
    first = rule.per_layer
    if path == REFERENCE and s.peephole and "f" in s.cell_type.peephole_gates:
        first += 1  # p_i ⊙ c_0 and p_f ⊙ c_0 keep c_0 apart (a forget-gate peephole: LSTM's)
    proj = h if s.proj_size else 0
    more = " + o ⊙ tanh(c_t) before the projection" if s.proj_size else ""
    return (
        rule.per_token * h + proj + r,
        first * c.b * r,
        f"h_(t-1) and {rule.per_token}·Dh per token: {rule.what}{more}",
    )


# --- phases and the peak ------------------------------------------------------------------------


class Kept:
    """Terms the layers keep, in layer order, that every later phase holds a prefix of.

    A phase refers to a prefix (:meth:`layers_upto`) instead of copying it, and the prefix's
    bytes are summed once here, so choosing the peak among the ``L`` phases of an ``L``-layer
    stack is linear in ``L``; only the winning phase's terms are listed (:func:`best`).
    """

    def __init__(self) -> None:
        self.terms: list[MemoryTerm] = []
        self.layer_end: list[int] = []  # layer_end[l]: how many terms layers 0..l keep
        self._cum = [0]  # _cum[i]: bytes of the positive terms among terms[:i]

    def add(self, t: MemoryTerm) -> None:
        self.terms.append(t)
        self._cum.append(self._cum[-1] + max(t.bytes, 0))

    def end_layer(self) -> None:
        self.layer_end.append(len(self.terms))

    def layers_upto(self, layer: int) -> Prefix:
        """The terms of layers ``0..layer`` (none for ``layer = -1``)."""
        return Prefix(self, self.layer_end[layer] if layer >= 0 else 0)


@dataclass(frozen=True)
class Prefix:
    """The first ``stop`` terms of a :class:`Kept`, standing in a phase's list of terms."""

    kept: Kept
    stop: int

    @property
    def bytes(self) -> int:
        return self.kept._cum[self.stop]

    def expand(self) -> list[MemoryTerm]:
        return self.kept.terms[: self.stop]


Part = MemoryTerm | Prefix
Phase = tuple[str, Sequence[Part]]


def best(phases: Iterable[Phase]) -> tuple[str, list[MemoryTerm]]:
    """The phase holding the most bytes (the first of equals), its terms of positive size listed."""
    chosen: Phase | None = None
    chosen_total = 0
    for name, parts in phases:
        total = sum(p.bytes for p in parts if p.bytes > 0)
        if chosen is None or total > chosen_total:
            chosen, chosen_total = (name, parts), total
    assert chosen is not None
    name, parts = chosen
    listed = [t for p in parts for t in (p.expand() if isinstance(p, Prefix) else (p,))]
    return name, [t for t in listed if t.bytes > 0]
