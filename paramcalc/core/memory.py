"""Memory a run needs, per kernel path: what each kernel really keeps, term by term.

Pure Python (no torch). :func:`memory_model` returns a :class:`MemoryModel`: the named terms
held at the peak of one call (a forward for inference, ``zero_grad`` + forward + backward for
training), each with its bytes and assumption; :func:`peak_bytes` is their sum.
``bench``, ``compare --bench``, ``sweep --bench`` and ``cost --flop-check`` refuse a run by it
(:func:`paramcalc.bridge.devices.check_run_memory`), and ``bench`` prints it beside the peak it
measured. The cost model's ``memory`` view shows the same terms, plus Adam's moments.

**Kernel paths** (the names of :data:`paramcalc.bridge.driver.KERNEL_PATHS`), predicted from the
spec, the workload and the device type by :func:`predict_path` (checked against what torch
dispatches to in ``tests/torch/test_memory.py``):

* ``reference``: any layout ``torch.nn`` cannot build (peepholes, one bias vector, merged
  directions, the reset-before GRU, cells outside ``torch.nn``): paramcalc's step-by-step module.
* CPU: ``oneDNN`` for an ``nn.LSTM`` stack without projection, on an unpacked batch, with oneDNN
  enabled, in fp32, in bf16 where the CPU has oneDNN's bf16 kernels (AVX-512 or AMX class), in fp16
  for inference only where it has fp16 kernels (``aten/src/ATen/native/RNN.cpp``: ``use_mkldnn``;
  torch 2.13 routes only ``lstm`` there). Everything else (``nn.RNN``, ``nn.GRU``, a projected
  or packed LSTM, the single-step cells) is ``native``: ATen's matmul + pointwise loop.
* CUDA: ``cuDNN`` for the ``nn.RNN``/``nn.LSTM``/``nn.GRU`` stacks when cuDNN is enabled;
  ``native fused cell`` for ``nn.LSTMCell``/``nn.GRUCell`` (``_thnn_fused_*_cell``); ``native``
  for ``nn.RNNCell`` and with cuDNN disabled.
* MPS and anything else: modelled as ``native``.

**Terms** (``N`` real tokens, ``B`` batch, ``T`` steps, ``Dh`` hidden, ``R`` the width of ``h``,
``G`` gate blocks, ``d_l`` a layer's input width, ``O`` its output width, ``D`` directions):

* resident before the call: the parameters and the input ``(T, B, d)`` (and the zero initial
  states the module makes);
* training: the activations each layer keeps for backward (per token, per path: ATen's native
  cells keep e.g. GRU ``h·W_hhᵀ + b_hh`` (3·Dh), r, z, n and ``h_{t-1}``; oneDNN keeps its
  output and a workspace of gates and cell states; see :data:`NATIVE_SAVED`,
  :data:`REFERENCE_SAVED`), the layer outputs that feed the next layer, and at the peak either
  the top layer's input projection ``x·W_ihᵀ`` of all steps (end of forward) or a layer's
  backward buffers (gradient of the gates of every step, ``dX``, oneDNN's diff states), plus the
  parameter gradients accumulated by then; no optimizer (Adam's two moments are a separate
  ``optimizer`` term that the cost view shows and the bench peak leaves out);
* inference: layer by layer, the layer's input, its input projection of all steps, the
  per-step outputs and their stacked copy (native), or the output and oneDNN's scratchpad;
* on a CPU, two allocator terms fitted to measured peaks (``docs/memory.md``): the buffers the
  GEMM and threading libraries keep (:data:`BLAS_BUFFERS`), and what glibc keeps resident once
  its mmap threshold has risen to the call's largest block, in units of that block
  (:data:`ALLOCATOR_RETENTION`, :func:`largest_block`).

CPU peaks are resident-set peaks: oneDNN allocates a workspace of which a run touches only part
(the diff states of only some iterations, no ``ht`` without projection), and untouched pages cost
no memory; the model counts the touched part (the full allocation is given by
:func:`onednn_workspace_bytes` and stated in the assumption). CUDA terms (cuDNN's reserve space and
workspace) are estimates that were not measured: ``docs/memory.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ParamcalcError
from ..results.table import Column, Table
from .params import layer_params, total_params
from .spec import RecurrentSpec
from .workload import Workload

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
#: layer output), ``peak`` (the buffers of the phase at the peak), ``allocator`` (resident but not
#: live), ``optimizer`` (not part of one call's peak: shown by the cost view only).
KINDS = ("resident", "kept", "peak", "allocator", "optimizer")

#: What ATen's native cells keep per token and direction for backward besides the step's input
#: (``aten/src/ATen/native/RNN.cpp``, read off ``grad_fn._saved_*`` in torch 2.13), as
#: ``(k, first, what)``: ``h_{t-1}`` (``R`` wide) plus ``k`` Dh-wide vectors per token, plus
#: ``first`` more ``(B, R)`` states per layer and direction (RNN keeps h_T as well as h_0); with a
#: projection the LSTM also keeps ``o ⊙ tanh(c_t)`` (Dh) before it. Checked exactly against
#: saved-tensor hooks in ``tests/torch/test_memory.py``.
NATIVE_SAVED: dict[str, tuple[int, int, str]] = {
    "rnn": (0, 1, "tanh/ReLU's output is h_t itself"),
    "gru": (6, 0, "h·W_hhᵀ + b_hh (3·Dh, kept whole for its n block), r_t, z_t, n_t"),
    "lstm": (6, 0, "the gates i, f, g, o after σ/tanh (4·Dh, one tensor), c_{t-1}, tanh(c_t)"),
}
#: The same for paramcalc's reference modules (``paramcalc.bridge.modules``), by cell family
#: (``gru_reset_before``: Keras' ``reset_after=False``), measured with saved-tensor hooks.
REFERENCE_SAVED: dict[str, tuple[int, int, str]] = {
    "rnn": (0, 1, "act(...) is h_t itself"),
    "indrnn": (0, 1, "u ⊙ h_{t-1} keeps h_{t-1}; ReLU keeps h_t"),
    "lstm": (6, 0, "i, f, g, o, c_{t-1}, tanh(c_t) (peepholes: c_0 as well)"),
    "gru": (7, 0, "h·W_hhᵀ + b_hh (3·Dh), r_t, z_t, n_t, 1 - z_t"),
    "gru_reset_before": (5, -1, "r_t, z_t, n_t, r_t ⊙ h_{t-1}, 1 - z_t (none of it on the zero first state)"),
    "cifg": (6, 0, "i, g, o, 1 - i, c_{t-1}, tanh(c_t)"),
    "mgu": (4, -2, "f_t, f_t ⊙ h_{t-1}, n_t, 1 - f_t"),
    "mingru": (4, -1, "z_t, n_t, 1 - z_t and the chunked projection"),
    "minlstm": (8, -1, "f_t, i_t, f + i, f/(f+i), i/(f+i), n_t and the chunked projection"),
}

#: Bytes the CPU libraries (MKL's GEMM packing buffers, OpenMP, oneDNN's caches) keep once a run
#: is large: on the grid of docs/memory.md the resident set exceeds the live tensors by about this
#: even with glibc's mmap threshold fixed; a tiny run shows well under 1 MiB (capped at ``N·G·Dh``).
BLAS_BUFFERS = 6 << 20

#: glibc's largest dynamic mmap threshold (``DEFAULT_MMAP_THRESHOLD_MAX`` on 64-bit Linux).
GLIBC_MMAP_THRESHOLD_MAX = 32 << 20

#: What the CPU's allocator keeps resident beyond the live tensors, in units of the call's largest
#: block (capped at :data:`GLIBC_MMAP_THRESHOLD_MAX`), by path and mode. glibc's malloc raises its
#: mmap threshold to the largest block freed (up to 32 MiB) and trims its heap only when more than
#: twice that is free at the top, so after the first call every tensor below the threshold comes
#: from a heap whose freed blocks stay resident and fragment around the per-step tensors: the
#: resident set of a run creeps up over its first calls and levels off some blocks above the live
#: tensors. Fitted to the CPU grid of docs/memory.md (torch 2.13, glibc, one thread, about 15
#: calls a row); with ``MALLOC_MMAP_THRESHOLD_=131072`` (no dynamic threshold) most of it goes.
ALLOCATOR_RETENTION: dict[tuple[str, str], float] = {
    (NATIVE, "inference"): 0.5,
    (NATIVE, "training"): 3.0,
    (REFERENCE, "inference"): 0.5,
    (REFERENCE, "training"): 6.0,
    (ONEDNN, "inference"): 0.5,
    (ONEDNN, "training"): 1.0,
}

MEMORY_COLUMNS = (
    Column("item", "str"),
    Column("elements"),
    Column("bytes", unit="B"),
    Column("assumption", "str", wide=True),
)


# --- the kernel path ---------------------------------------------------------------------------


def _torch_layout(spec: RecurrentSpec) -> RecurrentSpec:
    if spec.convention == "torch":
        return spec
    return spec.replace(convention="torch", bias_vectors=spec.bias_vectors, peephole=spec.peephole)


def is_native_layout(spec: RecurrentSpec) -> bool:
    """Whether ``spec`` is built as a ``torch.nn`` module (else as its reference module)."""
    return spec.cell_type.torch_native(_torch_layout(spec))


def predict_path(
    spec: RecurrentSpec,
    workload: Workload,
    device_type: str = "cpu",
    *,
    onednn: bool = True,
    onednn_bf16: bool = False,
    onednn_fp16: bool = False,
    cudnn: bool = True,
) -> str:
    """The kernel path torch takes for ``spec`` on ``workload`` (see the module docstring).

    ``onednn``: oneDNN compiled in and enabled; ``onednn_bf16``/``onednn_fp16``: the CPU has
    oneDNN's bf16/fp16 RNN kernels; ``cudnn``: cuDNN available and enabled. The bridge reads
    them from torch (:func:`paramcalc.bridge.devices.kernel_capabilities`).
    """
    if not is_native_layout(spec):
        return REFERENCE
    ct = spec.cell_type
    nn_class = ct.torch.nn_class
    if device_type == "cuda":
        if ct.single_step:
            return FUSED_CELL if nn_class in ("LSTMCell", "GRUCell") else NATIVE
        return CUDNN if cudnn else NATIVE
    if device_type != "cpu" or ct.single_step or nn_class != "LSTM" or not onednn:
        return NATIVE
    if spec.proj_size or workload.lengths is not None:
        return NATIVE  # "LSTM with projections is not supported with oneDNN"; no packed input
    dtype = workload.dtype
    if (
        dtype == "fp32"
        or (dtype == "bf16" and onednn_bf16)
        or (dtype == "fp16" and onednn_fp16 and not workload.training)
    ):
        return ONEDNN
    return NATIVE


# --- oneDNN's buffers (oneDNN 3.x, src/cpu/rnn/rnn_utils.hpp) ----------------------------------

_PAGE = 4096


def good_ld(n: int, dtype_bytes: int) -> int:
    """oneDNN's leading dimension: ``n`` rounded up to 64 bytes, and not a multiple of 256."""
    step = 64 // dtype_bytes
    ld = -(-n // step) * step
    return ld + step if ld % 256 == 0 else ld


def _page(n: int) -> int:
    return -(-n // _PAGE) * _PAGE


def onednn_workspace_bytes(steps: int, batch: int, input_size: int, hidden: int, dtype_bytes: int = 4) -> int:
    """The workspace ``aten::mkldnn_rnn_layer`` allocates for one LSTM layer and direction (training).

    Regions (each page aligned): gates ``T·B·ld(4Dh)`` fp32, ``ht`` ``T·B·ld(Dh)``, layer states
    ``2(T+1)·B·ld(max(d, Dh))``, c states ``2(T+1)·B·Dh`` fp32, diff layer and diff iter states
    ``2(T+1)·B·ld(max(d, Dh))`` fp32 each, diff c states ``2(T+1)·B·Dh`` fp32. Equal, byte for
    byte, to the ``uint8`` workspace torch 2.13 keeps (``tests/torch/test_memory.py``).
    """
    t, b, d, h, nb = steps, batch, input_size, hidden, dtype_bytes
    ld_state = good_ld(max(d, h), nb)
    ld_diff = good_ld(max(d, h), 4)
    regions = (
        t * b * good_ld(4 * h, 4) * 4,
        t * b * good_ld(h, nb) * nb,
        2 * (t + 1) * b * ld_state * nb,
        2 * (t + 1) * b * h * 4,
        2 * (t + 1) * b * ld_diff * 4,
        2 * (t + 1) * b * ld_diff * 4,
        2 * (t + 1) * b * h * 4,
    )
    offset = 0
    for r in regions:
        offset = _page(offset) + r
    return _page(offset)


# --- the result ---------------------------------------------------------------------------------


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
    :attr:`peak_bytes` (the bench peak has no optimizer).
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


# --- the model ------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    """The sizes every term is made of."""

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

    def d(self, layer: int) -> int:
        return self.spec.layer_input_size(layer)


def _ctx(spec: RecurrentSpec, wl: Workload) -> _Ctx:
    return _Ctx(
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
    )


def _term(item: str, elements: int, nb: int, kind: str, assumption: str) -> MemoryTerm:
    return MemoryTerm(item, elements * nb, kind, assumption, elements)


def _resident(c: _Ctx, states_saved: bool = False) -> list[MemoryTerm]:
    """Parameters, input and the zero initial states (training counts those as saved activations)."""
    s, nb = c.spec, c.nb
    terms = [
        _term(
            "parameters",
            total_params(s),
            nb,
            "resident",
            f"every parameter in {c.wl.dtype}, already allocated",
        ),
        _term(
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
            _term(
                "initial states",
                c.layers * c.dirs * c.b * (c.r + extra),
                nb,
                "kept",
                "h_0 (and c_0) zeros the module makes, (L·D, B, R) each",
            )
        )
    return terms


def _grads(c: _Ctx, from_layer: int, grad_bytes: int) -> MemoryTerm:
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


class _Kept:
    """Terms the layers keep, in layer order, that every later phase holds a prefix of.

    A phase refers to a prefix (:meth:`upto`) instead of copying it, and the prefix's bytes are
    summed once here, so choosing the peak among the ``L`` phases of an ``L``-layer stack is
    linear in ``L``; only the winning phase's terms are listed (:func:`_best`).
    """

    def __init__(self) -> None:
        self.terms: list[MemoryTerm] = []
        self.layer_end: list[int] = []  # layer_end[l]: how many terms layers 0..l keep
        self._cum = [0]  # _cum[i]: bytes of the positive terms among terms[:i]

    def add(self, term: MemoryTerm) -> None:
        self.terms.append(term)
        self._cum.append(self._cum[-1] + max(term.bytes, 0))

    def end_layer(self) -> None:
        self.layer_end.append(len(self.terms))

    def upto(self, stop: int) -> _Prefix:
        return _Prefix(self, stop)

    def layers_upto(self, layer: int) -> _Prefix:
        """The terms of layers ``0..layer`` (none for ``layer = -1``)."""
        return _Prefix(self, self.layer_end[layer] if layer >= 0 else 0)


@dataclass(frozen=True)
class _Prefix:
    """The first ``stop`` terms of a :class:`_Kept`, standing in a phase's list of terms."""

    kept: _Kept
    stop: int

    @property
    def bytes(self) -> int:
        return self.kept._cum[self.stop]

    def expand(self) -> list[MemoryTerm]:
        return self.kept.terms[: self.stop]


_Part = MemoryTerm | _Prefix


def _best(phases: Iterable[tuple[str, Sequence[_Part]]]) -> tuple[str, list[MemoryTerm]]:
    """The phase holding the most bytes (the first of equals), its terms of positive size listed."""
    best: tuple[str, Sequence[_Part]] | None = None
    best_total = 0
    for name, parts in phases:
        total = sum(p.bytes for p in parts if p.bytes > 0)
        if best is None or total > best_total:
            best, best_total = (name, parts), total
    assert best is not None
    name, parts = best
    listed = [t for p in parts for t in (p.expand() if isinstance(p, _Prefix) else (p,))]
    return name, [t for t in listed if t.bytes > 0]


def _saved(c: _Ctx, path: str) -> tuple[int, int, str]:
    """Elements kept for backward per token, and per layer and direction, besides the layer input."""
    s, h, r = c.spec, c.h, c.r
    fam = s.cell_type.family
    table = REFERENCE_SAVED if path == REFERENCE else NATIVE_SAVED
    reset_before = s.cell_type.reset_after_option and not s.reset_after  # Keras' reset_after=False
    key = f"{fam}_reset_before" if reset_before and path == REFERENCE else fam
    known = table.get(key)
    if known is None:
        k = s.cell_type.saved_per_unit + c.g
        return (
            k * h + r,
            0,
            (
                f"h_(t-1) and {k}·Dh per token (cell family {fam!r} not measured: the registry's saved "
                "vectors plus the gate blocks)"
            ),
        )
    k, first, what = known
    if path == REFERENCE and s.peephole and "f" in s.cell_type.peephole_gates:
        first += 1  # p_i ⊙ c_0 and p_f ⊙ c_0 keep c_0 apart (a forget-gate peephole: LSTM's)
    proj = h if s.proj_size else 0
    more = " + o ⊙ tanh(c_t) before the projection" if s.proj_size else ""
    return k * h + proj + r, first * c.b * r, f"h_(t-1) and {k}·Dh per token: {what}{more}"


def _stepwise(c: _Ctx, path: str) -> tuple[str, list[MemoryTerm]]:
    """ATen's native loop and paramcalc's reference modules (stacks and single-step cells)."""
    if not c.wl.training:
        base = _resident(c)
        return _best(_stepwise_forward(c, path, base, layer) for layer in range(c.layers))
    return _stepwise_training(c, path)


def _stepwise_forward(c: _Ctx, path: str, base: list[MemoryTerm], layer: int) -> tuple[str, list[MemoryTerm]]:
    """Inference: what the forward of ``layer`` holds (its input, projection and outputs)."""
    nb, n, b, gh = c.nb, c.n, c.b, c.g * c.h
    terms = list(base)
    if layer:
        terms.append(_term("layer input", n * c.out, nb, "kept", f"layer {layer - 1}'s output"))
    if c.spec.cell_type.single_step:
        terms.append(
            _term(
                "step outputs",
                n * c.r,
                nb,
                "kept",
                "the h_t of every step, kept by the driver's list until the end",
            )
        )
        terms.append(_term("one step's gates", 2 * b * gh, nb, "peak", "x_t·W_ihᵀ and h·W_hhᵀ of one step"))
        return (f"forward of layer {layer}", terms)
    who = "paramcalc's reference module" if path == REFERENCE else "ATen's native loop"
    if path == REFERENCE:
        proj, why = (
            2 * n * gh,
            "x·W_ihᵀ + b_ih of all steps of one direction (the GEMM's result and its bias sum)",
        )
    else:
        proj, why = (
            c.dirs * n * gh,
            "x·W_ihᵀ + b_ih of all steps"
            + (", both directions' (made before either runs)" if c.dirs == 2 else ""),
        )
    merged = c.spec.merge_mode != "concat" and c.dirs == 2
    terms.append(_term("input projection", proj, nb, "peak", why))
    terms.append(_term("step outputs", n * c.r, nb, "peak", f"the h_t of every step ({who})"))
    terms.append(
        _term(
            "layer output",
            n * (c.r * (3 if c.dirs == 2 and not merged else 1)),
            nb,
            "peak",
            "the steps stacked into (T, B, R)"
            + ("; with the other direction's and their concatenation" if c.dirs == 2 else ""),
        )
    )
    return (f"forward of layer {layer}", terms)


def _stepwise_kept(c: _Ctx, path: str) -> tuple[_Kept, dict[int, MemoryTerm]]:
    """What each layer keeps for backward: its saved activations and (above the first) its input.

    Also the input terms by layer (the native path's backward of a layer holds its own input but
    not its own saved activations).
    """
    per_tok, per_layer, what = _saved(c, path)
    single = c.spec.cell_type.single_step
    kept = _Kept()
    inputs: dict[int, MemoryTerm] = {}
    for layer in range(c.layers):
        kept.add(
            _term(
                f"saved activations, layer {layer}",
                c.dirs * (c.n * per_tok + per_layer),
                c.nb,
                "kept",
                f"autograd keeps per direction {what}",
            )
        )
        if layer and not single:
            inputs[layer] = _term(
                f"layer {layer} input",
                c.n * c.out,
                c.nb,
                "kept",
                f"layer {layer - 1}'s output, kept by x·W_ihᵀ",
            )
            kept.add(inputs[layer])
        kept.end_layer()
    return kept, inputs


def _stepwise_training(c: _Ctx, path: str) -> tuple[str, list[MemoryTerm]]:
    """Training: everything each layer keeps, then the top layer's forward end or a layer's backward."""
    nb, n, b, gh = c.nb, c.n, c.b, c.g * c.h
    base = _resident(c, states_saved=True)
    kept, inputs = _stepwise_kept(c, path)
    top = c.layers - 1
    if c.spec.cell_type.single_step:
        one_step = _term(
            "one step's gradients",
            2 * b * gh + gh * (c.d(0) + c.r),
            nb,
            "peak",
            "the gate gradients and dW of one step",
        )
        outputs = _term("step outputs", n * c.r, nb, "kept", "h_t of every step in the driver's list")
        return _best([("backward", [*base, kept.layers_upto(top), outputs, _grads(c, 0, nb), one_step])])
    end_of_forward: list[_Part] = [
        *base,
        kept.layers_upto(top),
        _term(
            "input projection",
            c.dirs * n * gh,
            nb,
            "peak",
            f"x·W_ihᵀ + b_ih of all steps of layer {top}, alive until the layer's output is stacked",
        ),
        _term(
            "layer output", n * c.out * (2 if c.dirs == 2 else 1), nb, "peak", f"layer {top}'s steps stacked"
        ),
    ]
    backward = (_stepwise_backward(c, path, base, kept, inputs, layer) for layer in range(top, -1, -1))
    return _best([("end of forward", end_of_forward), *backward])


def _stepwise_backward(
    c: _Ctx, path: str, base: list[MemoryTerm], kept: _Kept, inputs: Mapping[int, MemoryTerm], layer: int
) -> tuple[str, list[_Part]]:
    """What the backward of ``layer`` holds: what is kept by then and its gradients."""
    nb, n, gh = c.nb, c.n, c.g * c.h
    parts: list[_Part] = [*base]
    if path == REFERENCE:
        # x·W_ihᵀ is sliced per step: the backward of the last step meets every saved tensor
        # of the layer and two full-size gradients of the projection
        parts.append(kept.layers_upto(layer))
        dgates = (
            "the gradient of x·W_ihᵀ of all steps: autograd's accumulator and the full-size zeros "
            "the backward of one step's slice makes"
        )
    else:  # the layers below, and this layer's input (its saved activations are freed by now)
        parts.append(kept.layers_upto(layer - 1))
        if layer in inputs:
            parts.append(inputs[layer])
        dgates = "dgates of every step, gathered and stacked for the input GEMM's backward"
    if layer < c.layers - 1:
        parts.append(_term("output gradient", n * c.out, nb, "peak", f"dL/d(output of layer {layer})"))
    parts.append(_term("gate gradients", c.dirs * n * gh * 2, nb, "peak", dgates))
    if layer:
        parts.append(_term("input gradient", n * c.d(layer), nb, "peak", f"dX of layer {layer}"))
    parts.append(_grads(c, layer, nb))
    return (f"backward of layer {layer}", parts)


def _onednn(c: _Ctx) -> tuple[str, list[MemoryTerm]]:
    """oneDNN's fused LSTM (``aten::mkldnn_rnn_layer``, one primitive per layer and direction)."""
    base = _resident(c)
    if c.wl.training:
        return _onednn_training(c, base)
    return _best(_onednn_forward(c, base, layer) for layer in range(c.layers))


def _onednn_forward(c: _Ctx, base: list[MemoryTerm], layer: int) -> tuple[str, list[MemoryTerm]]:
    """Inference: the forward of ``layer`` (its input, output, scratchpad and reordered weights)."""
    nb, n, b, t, h, g = c.nb, c.n, c.b, c.t, c.h, c.g
    terms = list(base)
    if layer:
        terms.append(_term("layer input", n * c.out, nb, "kept", f"layer {layer - 1}'s output"))
    out = n * h * (3 if c.dirs == 2 else 1)
    terms.append(
        _term(
            "layer output",
            out,
            nb,
            "peak",
            "y (T, B, Dh)" + (" per direction and their concatenation" if c.dirs == 2 else ""),
        )
    )
    terms.append(
        MemoryTerm(
            "oneDNN scratchpad",
            (t + 1) * b * h * 4,
            "peak",
            "the c states of every step, fp32 (the part of the inference scratchpad a forward touches)",
            (t + 1) * b * h,
        )
    )
    terms.append(
        _term("reordered weights", g * h * (c.d(layer) + h), nb, "peak", "ideep's copy of W_ih, W_hh")
    )
    return (f"forward of layer {layer}", terms)


def _onednn_kept(c: _Ctx) -> _Kept:
    """What each layer keeps for backward: the touched part of its workspace and its output."""
    nb, n, b, t, h = c.nb, c.n, c.b, c.t, c.h
    gld = good_ld(c.g * h, 4)
    kept = _Kept()
    for layer in range(c.layers):
        ws = onednn_workspace_bytes(t, b, c.d(layer), h, nb)
        kept.add(
            MemoryTerm(
                f"oneDNN workspace (forward part), layer {layer}",
                c.dirs * ((t * b * gld + (t + 1) * b * h) * 4),
                "kept",
                f"per direction the gates T·B·ld(4Dh) and c_t (T+1)·B·Dh, fp32, of a {ws:,} B workspace "
                "(the rest is touched in backward or not at all)",
                None,
            )
        )
        kept.add(
            _term(
                f"layer output, layer {layer}",
                c.dirs * n * h + (n * c.out if c.dirs == 2 else 0),
                nb,
                "kept",
                "y (T, B, Dh) per direction, kept for backward"
                + ("; and their concatenation" if c.dirs == 2 else ""),
            )
        )
        kept.end_layer()
    return kept


def _onednn_training(c: _Ctx, base: list[MemoryTerm]) -> tuple[str, list[MemoryTerm]]:
    """Training: everything the layers keep at the end of forward, or a layer's backward."""
    b, t = c.b, c.t
    gld = good_ld(c.g * c.h, 4)
    kept = _onednn_kept(c)
    top = c.layers - 1
    scratchpad = MemoryTerm(
        "oneDNN scratchpad (forward)",
        t * b * gld * 4 if b < 128 else b * gld * 4,
        "peak",
        f"the gate pre-activations of layer {top}'s steps, fp32 (one step's with B >= 128); "
        "the directions run one after the other",
        None,
    )
    backward = (_onednn_backward(c, base, kept, layer) for layer in range(top, -1, -1))
    return _best([("end of forward", [*base, kept.layers_upto(top), scratchpad]), *backward])


def _onednn_backward(c: _Ctx, base: list[MemoryTerm], kept: _Kept, layer: int) -> tuple[str, list[_Part]]:
    """What the backward of ``layer`` holds: the layers' kept terms up to it and its buffers."""
    nb, n, b, t, h, g = c.nb, c.n, c.b, c.t, c.h, c.g
    gld = good_ld(g * h, 4)
    d = c.d(layer)
    ld_d = good_ld(max(d, h), 4)
    parts: list[_Part] = [*base, kept.layers_upto(layer)]
    parts.append(
        MemoryTerm(
            "output gradient",
            n * h * 4,
            "peak",
            "dy (T, B, Dh) made contiguous, fp32 (the directions' backward calls run one after the other)",
            n * h,
        )
    )
    parts.append(
        MemoryTerm(
            "oneDNN diff states",
            (3 * (t + 1) * b * ld_d + (t + 1) * b * h) * 4,
            "peak",
            "workspace touched in backward, fp32: diff layer states (2 rows) and diff iter states "
            "(T+1)·B·ld(max(d, Dh)), diff c states (T+1)·B·Dh",
            None,
        )
    )
    parts.append(
        MemoryTerm(
            "oneDNN scratchpad (backward)",
            t * b * gld * 4,
            "peak",
            "the gate gradients of every step, fp32",
            None,
        )
    )
    if layer:
        parts.append(
            MemoryTerm(
                "input gradient",
                c.dirs * n * d * 4,
                "peak",
                "dX (T, B, d), fp32" + (", one per direction before they are summed" if c.dirs == 2 else ""),
                c.dirs * n * d,
            )
        )
    parts.append(
        MemoryTerm(
            "weight copies",
            g * h * (d + h) * (2 * nb + 4),
            "peak",
            "ideep's reordered W_ih, W_hh for forward and backward, and their fp32 gradients",
            None,
        )
    )
    parts.append(_grads(c, layer + 1, nb))
    return (f"backward of layer {layer}", parts)


def _cudnn(c: _Ctx) -> tuple[str, list[MemoryTerm]]:
    """cuDNN's fused stack (not measured: estimates from cuDNN's documented buffers)."""
    nb, n, h, g = c.nb, c.n, c.h, c.g
    base = _resident(c)
    layers_out = n * c.out
    if not c.wl.training:
        return (
            "forward",
            [
                *base,
                _term(
                    "layer outputs",
                    2 * layers_out,
                    nb,
                    "peak",
                    "the output and one layer's input inside cuDNN",
                ),
                _term(
                    "cuDNN workspace",
                    c.dirs * n * g * h,
                    nb,
                    "peak",
                    "estimate: the input projection of one layer (cudnnGetRNNTempSpaceSizes; not measured)",
                ),
            ],
        )
    reserve = c.layers * c.dirs * n * (g * h + 2 * h)
    return _best(
        [
            (
                "backward",
                [
                    *base,
                    _term(
                        "cuDNN reserve space",
                        reserve,
                        nb,
                        "kept",
                        "estimate: gates, c and h of every step and layer (not measured)",
                    ),
                    _term("output", layers_out, nb, "kept", "the stack's output"),
                    _term("output gradient", layers_out, nb, "peak", "dy"),
                    _term(
                        "cuDNN workspace",
                        c.dirs * n * g * h,
                        nb,
                        "peak",
                        "estimate: the gate gradients of one layer (not measured)",
                    ),
                    _term(
                        "input gradient", n * max(c.d(layer) for layer in range(c.layers)), nb, "peak", "dX"
                    ),
                    _grads(c, 0, nb),
                ],
            )
        ]
    )


def _fused_cell(c: _Ctx) -> tuple[str, list[MemoryTerm]]:
    """CUDA's ``_thnn_fused_lstm_cell``/``_thnn_fused_gru_cell`` stepped by the driver (estimate)."""
    nb, n, b, h, g = c.nb, c.n, c.b, c.h, c.g
    base = _resident(c)
    kept_per_tok = (g + 2) * h if c.wl.training else 0
    terms = [
        *base,
        _term("step outputs", n * c.r, nb, "kept", "h_t of every step in the driver's list"),
        _term("one step's gates", 2 * b * g * h, nb, "peak", "x_t·W_ihᵀ and h·W_hhᵀ of one step"),
    ]
    if c.wl.training:
        terms.append(
            _term(
                "saved activations",
                n * kept_per_tok,
                nb,
                "kept",
                "estimate: the fused cell's workspace (G·Dh), c or h in and out per token (not measured)",
            )
        )
        terms.append(_grads(c, 0, nb))
    return ("backward" if c.wl.training else "forward", [t for t in terms if t.bytes > 0])


def largest_block(spec: RecurrentSpec, workload: Workload) -> int:
    """The largest tensor one call allocates and frees, capped at glibc's largest mmap threshold.

    A stack: one direction's input projection ``N·G·Dh`` or a layer's output ``N·O``; a
    single-step cell: one step's gates ``B·G·Dh`` or a weight gradient ``G·Dh·max(d, R)``.
    """
    nb, n, gh = workload.dtype_bytes, workload.tokens, spec.gates * spec.hidden_size
    if spec.cell_type.single_step:
        elements = max(workload.batch * gh, gh * max(spec.input_size, spec.output_size))
    else:
        elements = max(n * gh, n * spec.stack_output_size)
    return min(elements * nb, GLIBC_MMAP_THRESHOLD_MAX)


def _optimizer(c: _Ctx) -> MemoryTerm:
    return _term(
        "Adam moments",
        2 * total_params(c.spec),
        c.nb,
        "optimizer",
        "exp_avg + exp_avg_sq (torch.optim.Adam), no fp32 master copy; not part of one call",
    )


def memory_model(
    spec: RecurrentSpec,
    workload: Workload | None = None,
    path: str | None = None,
    *,
    device_type: str = "cpu",
    optimizer: str | None = None,
) -> MemoryModel:
    """The memory of one call of ``spec`` on ``workload`` by kernel ``path`` (see the module docstring).

    ``path`` defaults to :func:`predict_path` for ``device_type`` (oneDNN assumed available,
    its bf16/fp16 kernels not); a path of another name (``MPS``) is modelled as ``native``.
    ``optimizer="adam"`` adds Adam's moments as a term outside the peak.
    """
    if not isinstance(spec, RecurrentSpec):
        from .coerce import as_spec

        spec = as_spec(spec, "memory_model")
    wl = workload if workload is not None else Workload()
    if not isinstance(wl, Workload):
        raise ParamcalcError(f"memory_model needs a Workload, got {type(wl).__name__}")
    if optimizer not in (None, "adam"):
        raise ParamcalcError(f"optimizer must be None or 'adam', got {optimizer!r}")
    if path is None:
        path = predict_path(spec, wl, device_type)
    notes: list[str] = []
    if path not in PATHS:
        notes.append(f"kernel path {path!r} is modelled as {FALLBACK_PATH!r}")
        path_used = FALLBACK_PATH
    else:
        path_used = path
    c = _ctx(spec, wl)
    if path_used == ONEDNN:
        phase, terms = _onednn(c)
    elif path_used == CUDNN:
        phase, terms = _cudnn(c)
    elif path_used == FUSED_CELL:
        phase, terms = _fused_cell(c)
    else:
        phase, terms = _stepwise(c, path_used)
    if device_type == "cpu":
        blocks = ALLOCATOR_RETENTION.get((path_used, wl.mode), 0.0)
        block = largest_block(spec, wl)
        terms = [
            *terms,
            MemoryTerm(
                "library buffers",
                min(BLAS_BUFFERS, wl.tokens * c.g * c.h * c.nb),
                "allocator",
                f"buffers the GEMM and threading libraries keep once a run is large (about "
                f"{BLAS_BUFFERS >> 20} MiB on one thread, less for a tiny run; measured, docs/memory.md)",
            ),
        ]
        if blocks:
            terms = [
                *terms,
                MemoryTerm(
                    "allocator retention",
                    int(blocks * block),
                    "allocator",
                    f"{blocks:g} × the call's largest block ({block:,} B, at most 32 MiB): glibc keeps "
                    "freed heap blocks resident once its mmap threshold has risen to that block; fitted, "
                    "docs/memory.md",
                ),
            ]
    if optimizer == "adam" and wl.training:
        terms = [*terms, _optimizer(c)]
    return MemoryModel(spec, wl, path, device_type, phase, tuple(terms), tuple(notes))


def memory_terms(
    spec: RecurrentSpec,
    workload: Workload | None = None,
    path: str | None = None,
    *,
    device_type: str = "cpu",
) -> dict[str, int]:
    """The model's terms by name, in bytes (the peak's terms; no optimizer)."""
    m = memory_model(spec, workload, path, device_type=device_type)
    out: dict[str, int] = {}
    for t in m.terms:
        out[t.item] = out.get(t.item, 0) + t.bytes
    return out


def peak_bytes(
    spec: RecurrentSpec,
    workload: Workload | None = None,
    path: str | None = None,
    *,
    device_type: str = "cpu",
) -> int:
    """Bytes held at the peak of one call (the sum of :func:`memory_model`'s terms, no optimizer)."""
    return memory_model(spec, workload, path, device_type=device_type).peak_bytes


__all__ = [
    "PATHS",
    "MemoryModel",
    "MemoryTerm",
    "good_ld",
    "largest_block",
    "memory_model",
    "memory_terms",
    "onednn_workspace_bytes",
    "peak_bytes",
    "predict_path",
]
