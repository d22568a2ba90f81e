"""Reference torch modules: every cell and layout a ``RecurrentSpec`` can express, step by step.

``torch.nn`` builds only PyTorch's own layouts (two bias vectors or none, no peepholes,
concatenated directions, the GRU reset after the matmul). Everything else (one bias vector,
peepholes, merged directions, the reset-before GRU, and the cells outside ``torch.nn``: CIFG,
MGU, IndRNN, minGRU, minLSTM) is built here, written by hand from the papers' equations (see
``paramcalc.core.cells``). The step function of a cell comes from its registry entry
(``TorchBinding.step``), and so do its tensors: the module registers what the entry's templates
give for the spec (names, shapes, order), and hands them to the step function by kind
(:class:`Weights`). What keeps the entry honest is running it: the step functions are written
from the papers and index the tensors by their gate blocks, and the tests compare the outputs
with ``torch.nn`` (weights copied over), with loops written from the equations in the tests, and
``FlopCounterMode`` with the cost model.

* :class:`ReferenceRecurrent` is a stack (layers, directions) with ``nn.RNNBase``'s interface:
  ``forward(input, hx=None) -> (output, h_n)`` (``(output, (h_n, c_n))`` for cells with a cell
  state), input ``(T, B, d)``, ``(T, d)`` or a ``PackedSequence``. Its parameters are registered
  flat under PyTorch's names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), so the state dict
  of an ``nn.LSTM`` loads into the reference module of the same layout.
* :class:`ReferenceCell` is one step, with ``nn.LSTMCell``/``nn.GRUCell``'s interface.
* :func:`build_reference` builds the one a spec needs (on any device, ``meta`` included).

What the cost model counts is what runs: every GEMM operand (``W_ih``, ``W_hh``, ``W_hr``) is
multiplied with ``torch.matmul`` (the input projection once for all tokens of a layer and
direction, the recurrent GEMM(s) and the projection once per step), everything else is
elementwise. A packed batch runs exactly its real tokens as PyTorch does: at step ``t`` only the
``batch_sizes[t]`` sequences still running (longest first); the reverse direction starts each
sequence at its own last step, concatenating its initial state onto the running state, as
``torch.nn`` does. So ``FlopCounterMode`` sees exactly the cost model's GEMMs, in training too.
No Python decision depends on a tensor's values (the modules run on ``meta``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..core.cells import CellType
from ..core.params import compiled
from ..core.spec import RecurrentSpec
from ..errors import ParamcalcError
from ..results.text import plural

State = tuple[Tensor, ...]


# --- the weights of one layer and direction, as the step functions see them -----------------


@dataclass(frozen=True)
class Weights:
    """One layer and direction's tensors, by what they do in the equations (``None`` when absent).

    ``ih`` the input weight ``(G·Dh, d)``; ``hh`` the recurrent matrix ``(G·Dh, R)`` or the
    diagonal vector ``(Dh,)``; ``b_ih`` the first bias vector when it covers every gate block
    (it is added to the input projection ``gx``), ``b_hh`` the second; ``peep`` the peepholes by
    gate ``(Dh,)``; ``hr`` the projection ``(P, Dh)``; ``named``: every tensor by its template's
    role, for step functions of other layouts (a bias of some blocks, several diagonal vectors).
    """

    ih: Tensor
    hh: Tensor | None = None
    b_ih: Tensor | None = None
    b_hh: Tensor | None = None
    peep: Mapping[str, Tensor] = field(default_factory=dict)
    hr: Tensor | None = None
    named: Mapping[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Knobs:
    """Per-module choices a step function reads: the activation and the GRU's reset form."""

    act: Callable[[Tensor], Tensor] = torch.tanh
    reset_before: bool = False


def _mm(a: Tensor, w: Tensor) -> Tensor:
    """``a·wᵀ``: a GEMM (the only kind of product FlopCounterMode counts)."""
    return torch.matmul(a, w.t())


def _linear(a: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """``a·wᵀ + b`` (the bias, when present, is an elementwise addition after the GEMM)."""
    out = _mm(a, w)
    return out if b is None else out + b


def _rows(t: Tensor | None, start: int, stop: int) -> Tensor | None:
    """Rows ``start:stop`` of a stacked weight or bias (gate blocks), ``None`` stays ``None``."""
    return None if t is None else t[start:stop]


def _reset(gate: Tensor, h: Tensor, zero_state: bool) -> Tensor:
    """``gate ⊙ h_{t-1}``, the operand of a reset-before recurrent GEMM.

    On the zero initial state ``gate ⊙ h_0 = h_0``: the constant is used as is, so autograd runs
    no input gradient through that GEMM, as for every GEMM that multiplies ``h_0`` (the cost
    model's autograd rule). The value is the same either way.
    """
    return h if zero_state else gate * h


# --- the step functions of the built-in cells (each entry's TorchBinding.step names its own) ---
# step(weights, gx, state, knobs, zero_state) -> (output of the step, new state); gx is the
# step's input projection x_t·W_ihᵀ + b_ih (all gate blocks, stacked as the weights are).


def rnn_step(w: Weights, gx: Tensor, state: State, k: Knobs, zero_state: bool) -> tuple[Tensor, State]:
    """h_t = act(x_t·W_ihᵀ + b_ih + h_{t-1}·W_hhᵀ + b_hh)."""
    (h,) = state
    assert w.hh is not None
    h = k.act(gx + _linear(h, w.hh, w.b_hh))
    return h, (h,)


def lstm_step(w: Weights, gx: Tensor, state: State, k: Knobs, zero_state: bool) -> tuple[Tensor, State]:
    """LSTM (gates i, f, g, o), optional peepholes (i, f on c_{t-1}, o on c_t) and projection."""
    h, c = state
    assert w.hh is not None
    i, f, g, o = (gx + _linear(h, w.hh, w.b_hh)).chunk(4, dim=-1)
    if w.peep:
        i = i + w.peep["i"] * c
        f = f + w.peep["f"] * c
    i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
    c = f * c + i * g
    if w.peep:
        o = o + w.peep["o"] * c
    h = torch.sigmoid(o) * torch.tanh(c)
    if w.hr is not None:
        h = _mm(h, w.hr)  # h_t = (o_t ⊙ tanh(c_t))·W_hrᵀ
    return h, (h, c)


def gru_step(w: Weights, gx: Tensor, state: State, k: Knobs, zero_state: bool) -> tuple[Tensor, State]:
    """GRU (gates r, z, n): reset after the recurrent matmul (PyTorch) or before it (Keras)."""
    (h,) = state
    assert w.hh is not None
    x_r, x_z, x_n = gx.chunk(3, dim=-1)
    if k.reset_before:
        # r and z first; n's recurrent GEMM takes r_t ⊙ h_{t-1}, so it waits for r_t
        dh = w.hh.shape[0] // 3
        h_r, h_z = _linear(h, w.hh[: 2 * dh], _rows(w.b_hh, 0, 2 * dh)).chunk(2, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + _linear(_reset(r, h, zero_state), w.hh[2 * dh :], _rows(w.b_hh, 2 * dh, 3 * dh)))
    else:
        h_r, h_z, h_n = _linear(h, w.hh, w.b_hh).chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
    h = (1 - z) * n + z * h
    return h, (h,)


def cifg_step(w: Weights, gx: Tensor, state: State, k: Knobs, zero_state: bool) -> tuple[Tensor, State]:
    """CIFG (Greff et al. 2017; gates i, g, o): the forget gate is coupled, f_t = 1 - i_t."""
    h, c = state
    assert w.hh is not None
    i, g, o = (gx + _linear(h, w.hh, w.b_hh)).chunk(3, dim=-1)
    if w.peep:
        i = i + w.peep["i"] * c
    i, g = torch.sigmoid(i), torch.tanh(g)
    c = (1 - i) * c + i * g
    if w.peep:
        o = o + w.peep["o"] * c
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, (h, c)


def mgu_step(w: Weights, gx: Tensor, state: State, k: Knobs, zero_state: bool) -> tuple[Tensor, State]:
    """MGU (Zhou et al. 2016; blocks f, n): n's recurrent GEMM takes f_t ⊙ h_{t-1}."""
    (h,) = state
    assert w.hh is not None
    dh = w.hh.shape[0] // 2
    x_f, x_n = gx.chunk(2, dim=-1)
    f = torch.sigmoid(x_f + _linear(h, w.hh[:dh], _rows(w.b_hh, 0, dh)))
    n = torch.tanh(x_n + _linear(_reset(f, h, zero_state), w.hh[dh:], _rows(w.b_hh, dh, 2 * dh)))
    h = (1 - f) * h + f * n
    return h, (h,)


def indrnn_step(w: Weights, gx: Tensor, state: State, k: Knobs, zero_state: bool) -> tuple[Tensor, State]:
    """IndRNN (Li et al. 2018): h_t = ReLU(x_t·Wᵀ + u ⊙ h_{t-1} + b), u one weight per unit."""
    (h,) = state
    assert w.hh is not None
    pre = gx + w.hh * h
    if w.b_hh is not None:
        pre = pre + w.b_hh
    h = k.act(pre)
    return h, (h,)


def mingru_step(w: Weights, gx: Tensor, state: State, k: Knobs, zero_state: bool) -> tuple[Tensor, State]:
    """minGRU (Feng et al. 2024; blocks z, n from x_t only): h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ n_t."""
    (h,) = state
    z, n = gx.chunk(2, dim=-1)
    z = torch.sigmoid(z)
    h = (1 - z) * h + z * n
    return h, (h,)


def minlstm_step(w: Weights, gx: Tensor, state: State, k: Knobs, zero_state: bool) -> tuple[Tensor, State]:
    """minLSTM (Feng et al. 2024; blocks f, i, n from x_t only), gates normalised to sum to 1."""
    (h,) = state
    f, i, n = gx.chunk(3, dim=-1)
    f, i = torch.sigmoid(f), torch.sigmoid(i)
    total = f + i
    h = (f / total) * h + (i / total) * n
    return h, (h,)


StepFn = Callable[[Weights, Tensor, State, Knobs, bool], tuple[Tensor, State]]


# --- the parallel scans of the linear recurrences (each entry's TorchBinding.scan names its own) ---
# scan(weights, gx, h0, knobs) -> h of every step: gx is a layer and direction's input projection
# (T, B, G·Dh), time first; h0 the initial h (B, Dh), None for zeros; the result is (T, B, Dh).


def linear_scan(log_a: Tensor, b: Tensor, h0: Tensor | None = None) -> Tensor:
    """``h_t = a_t ⊙ h_{t-1} + b_t`` for every step ``t`` of dim 0, as a parallel scan in log space.

    Heinsen's method (2023), as Feng et al. (2024) run minGRU and minLSTM: with ``A_t = Σ_{s≤t} log
    a_s``, ``h_t = exp(A_t) ⊙ (h_0 + Σ_{s≤t} b_s ⊙ exp(-A_s))``, the sum a ``logcumsumexp`` of
    ``log b_s - A_s``: ``⌈log₂ T⌉`` dependent levels instead of ``T`` steps, and no ``exp(-A_s)``
    ever formed (it overflows on a long sequence). ``b`` and ``h_0`` may be negative: their positive
    and negative parts are scanned apart and subtracted (a part that is zero at a step enters as
    the dtype's smallest normal number, so no ``-inf`` reaches the gradient, whose ``NaN`` it
    would be). 16-bit inputs are
    scanned in fp32 (the cumulative sums lose too much in 16 bits) and the result cast back.
    """
    dtype = b.dtype
    if dtype in (torch.float16, torch.bfloat16):
        log_a, b = log_a.float(), b.float()
        h0 = None if h0 is None else h0.float()
    a_star = torch.cumsum(log_a, dim=0)
    if h0 is not None:  # h_0 enters as step 0, with A_0 = 0
        a_star = torch.cat([a_star.new_zeros((1, *a_star.shape[1:])), a_star])
        b = torch.cat([h0.unsqueeze(0), b])
    tiny = torch.finfo(b.dtype).tiny
    magnitude = torch.log(b.abs() + tiny)
    parts = []
    for sign in (b > 0, b < 0):
        mask = sign.to(b.dtype)  # a factor, not a selection: the gradient of log|b| is 0 off the part
        log_part = magnitude * mask + math.log(tiny) * (1 - mask) - a_star
        parts.append(torch.exp(a_star + torch.logcumsumexp(log_part, dim=0)))
    h = parts[0] - parts[1]
    h = h if h0 is None else h[1:]
    return h.to(dtype)


def mingru_scan(w: Weights, gx: Tensor, h0: Tensor | None, k: Knobs) -> Tensor:
    """minGRU as a scan: ``a_t = 1 - z_t = σ(-x_z)``, in logs ``logsigmoid(-x_z)``; ``b_t = z_t ⊙ n_t``."""
    z, n = gx.chunk(2, dim=-1)
    return linear_scan(F.logsigmoid(-z), torch.sigmoid(z) * n, h0)


def minlstm_scan(w: Weights, gx: Tensor, h0: Tensor | None, k: Knobs) -> Tensor:
    """minLSTM as a scan: ``a_t = f_t / (f_t + i_t)``, ``b_t = i_t / (f_t + i_t) ⊙ n_t``, in logs."""
    f, i, n = gx.chunk(3, dim=-1)
    log_f, log_i = F.logsigmoid(f), F.logsigmoid(i)
    log_total = torch.logaddexp(log_f, log_i)
    return linear_scan(log_f - log_total, torch.exp(log_i - log_total) * n, h0)


ScanFn = Callable[[Weights, Tensor, "Tensor | None", Knobs], Tensor]


#: The :class:`Weights` field of each tensor kind (the first tensor of the kind fills it).
_SLOTS = {"input": "ih", "recurrent": "hh", "recurrent_diag": "hh", "bias": "b_ih", "projection": "hr"}

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"tanh": torch.tanh, "relu": torch.relu}

_MERGES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "concat": lambda fwd, rev: torch.cat([fwd, rev], dim=-1),
    "sum": lambda fwd, rev: fwd + rev,
    "ave": lambda fwd, rev: (fwd + rev) / 2,
    "mul": lambda fwd, rev: fwd * rev,
}


def step_function(ct: CellType) -> StepFn:
    """The step function the entry names (``TorchBinding.step``), imported when a string."""
    ref = ct.torch.step
    if ref is None:
        raise ParamcalcError(
            f"cell {ct.name} has no torch module: give its TorchBinding a reference (a module factory) "
            "or a step function for paramcalc's reference module"
        )
    return _load(ct, ref, "step function")


def scan_function(ct: CellType) -> ScanFn | None:
    """The parallel scan the entry names (``TorchBinding.scan``), or ``None`` (run step by step)."""
    ref = ct.torch.scan
    if ref is None:
        return None
    if len(ct.state_names) != 1:
        raise ParamcalcError(
            f"cell {ct.name}: a scan carries h alone, but the cell's states are {ct.state_names}"
        )
    return _load(ct, ref, "scan")


def _load(ct: CellType, ref: str | Callable[..., Any], what: str) -> Callable[..., Any]:
    """A callable of the entry's torch binding (``"package.module:attr"`` imported)."""
    if not isinstance(ref, str):
        return ref
    mod, _, attr = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(mod), attr, None)
    except Exception as exc:  # a plugin's broken module: name it, never an internal error
        raise ParamcalcError(
            f"cell {ct.name}: its {what} {ref} failed to import: {type(exc).__name__}: {exc}"
        ) from None
    if not callable(fn):
        raise ParamcalcError(f"cell {ct.name}: cannot load its {what} {ref!r}: {mod} has no {attr!r}")
    return fn  # type: ignore[no-any-return]


def torch_layout(spec: RecurrentSpec) -> RecurrentSpec:
    """``spec`` under PyTorch's names, with its own layout (bias vectors, peepholes) kept."""
    return spec.replace(convention="torch", bias_vectors=spec.bias_vectors, peephole=spec.peephole)


class _Reference(nn.Module):
    """What the stack and the cell share: the spec, the step function, the parameters and their init."""

    states: tuple[str, ...]

    def __init__(self, spec: RecurrentSpec) -> None:
        super().__init__()
        self.spec = torch_layout(spec)
        ct = self.spec.cell_type
        self.step = step_function(ct)
        self.scan = scan_function(ct)
        self.states = ct.state_names
        act = _ACTIVATIONS.get(ct.nonlinearity or "tanh")
        if act is None:
            raise ParamcalcError(f"unknown nonlinearity {ct.nonlinearity!r} of cell {ct.name!r}")
        self.knobs = Knobs(act=act, reset_before=not self.spec.reset_after)
        self.templates = compiled(self.spec).templates

    def _add_layer(self, suffix: str, layer: int, factory: dict[str, Any]) -> None:
        """Register one layer and direction's parameters: the entry's templates, in their order."""
        s = self.spec
        h, p = s.hidden_size, s.proj_size
        shapes = compiled(s).shapes(h, s.layer_input_size(layer), p, p or h)
        for t, shape in zip(self.templates, shapes, strict=True):
            self.register_parameter(t.torch_name + suffix, nn.Parameter(torch.empty(shape, **factory)))

    def _weights(self, suffix: str) -> Weights:
        """The tensors of one layer and direction, by kind (see :class:`Weights`)."""
        named: dict[str, Tensor] = {}
        slots: dict[str, Any] = {}
        peep: dict[str, Tensor] = {}
        for t in self.templates:
            tensor = self._parameters[t.torch_name + suffix]
            assert tensor is not None
            named[t.role] = tensor
            if t.kind == "peephole":
                peep[t.gate] = tensor
                continue
            slot = _SLOTS[t.kind]
            if t.kind == "bias":
                slot = "" if t.blocks else "b_hh" if t.index else "b_ih"
            if slot and slot not in slots:
                slots[slot] = tensor
        return Weights(peep=peep, named=named, **slots)

    def reset_parameters(self) -> None:
        """U(-1/sqrt(Dh), 1/sqrt(Dh)) for every parameter, as ``torch.nn``'s recurrent modules."""
        bound = 1.0 / math.sqrt(self.spec.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _state_widths(self) -> tuple[int, ...]:
        """Width of each state: ``h`` is P (with a projection) or Dh wide, the others Dh wide."""
        s = self.spec
        return tuple((s.proj_size or s.hidden_size) if n == "h" else s.hidden_size for n in self.states)

    def extra_repr(self) -> str:
        return self.spec.describe()


@dataclass(frozen=True)
class _Batch:
    """A stack's input as tokens (time-major, ``batch_sizes[t]`` running at step ``t``), and
    how the output and the final states go back to the input's form."""

    tokens: Tensor
    batch_sizes: list[int]
    packed: PackedSequence | None = None
    shape: tuple[int, int] | None = None  # (T, B) of a padded input
    unbatched: bool = False

    @property
    def sorted_idx(self) -> Tensor | None:
        return None if self.packed is None else self.packed.sorted_indices

    @classmethod
    def of(cls, input: Tensor | PackedSequence) -> _Batch:
        if isinstance(input, PackedSequence):
            sizes = [int(b) for b in input.batch_sizes.tolist()]  # a CPU tensor, also for meta data
            return cls(input.data, sizes, packed=input)
        unbatched = input.dim() == 2
        seq = input.unsqueeze(1) if unbatched else input
        if seq.dim() != 3:
            raise ParamcalcError(f"input must be (T, B, d) or (T, d), got shape {tuple(input.shape)}")
        t, b = int(seq.shape[0]), int(seq.shape[1])
        return cls(seq.reshape(t * b, seq.shape[2]), [b] * t, shape=(t, b), unbatched=unbatched)

    def output(self, x: Tensor) -> Any:
        """The stack's output in the input's form (packed, ``(T, B, ·)`` or ``(T, ·)``)."""
        if self.packed is not None:
            p = self.packed
            return PackedSequence(x, p.batch_sizes, p.sorted_indices, p.unsorted_indices)
        assert self.shape is not None
        out = x.reshape(self.shape[0], self.shape[1], x.shape[-1])
        return out.squeeze(1) if self.unbatched else out

    def state(self, state: State) -> Tensor | State:
        """The final states in the input's batch order (``h_n`` alone, or ``(h_n, c_n)``)."""
        if self.packed is not None and self.packed.unsorted_indices is not None:
            state = tuple(t.index_select(1, self.packed.unsorted_indices) for t in state)
        if self.unbatched:
            state = tuple(t.squeeze(1) for t in state)
        return state if len(state) > 1 else state[0]


class ReferenceRecurrent(_Reference):
    """A recurrent stack (layers, directions) of any cell, run step by step like ``nn.RNNBase``.

    ``forward(input, hx=None)``: ``input`` is ``(T, B, d)``, unbatched ``(T, d)`` or a
    ``PackedSequence``; ``hx`` is ``h_0`` (``(L·D, B, R)``), or ``(h_0, c_0)`` for a cell with a
    cell state, zeros when ``None``. Returns ``(output, h_n)`` or ``(output, (h_n, c_n))``;
    ``output`` is of the input's kind, its features the two directions merged by ``merge_mode``.
    """

    def __init__(self, spec: RecurrentSpec, device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(spec)
        s = self.spec
        if s.cell_type.single_step:
            raise ParamcalcError(f"{s.cell} is a single-step cell: build it as a ReferenceCell")
        for layer in range(s.num_layers):
            for direction in range(2 if s.bidirectional else 1):
                self._add_layer(self._suffix(layer, direction), layer, {"device": device, "dtype": dtype})
        self.reset_parameters()

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | State | None = None) -> tuple[Any, Any]:
        s = self.spec
        dirs = 2 if s.bidirectional else 1
        batch = _Batch.of(input)
        x, steps = batch.tokens, batch.batch_sizes
        zero_state = hx is None
        initial = self._initial(hx, steps[0] if steps else 0, x, batch.unbatched)
        if batch.sorted_idx is not None and not zero_state:
            initial = tuple(t.index_select(1, batch.sorted_idx) for t in initial)
        finals: list[State] = []
        for layer in range(s.num_layers):
            outs = []
            for direction in range(dirs):
                w = self._weights(self._suffix(layer, direction))
                start = tuple(t[layer * dirs + direction] for t in initial)
                out, final = self._run(w, x, steps, start, zero_state, reverse=direction == 1)
                outs.append(out)
                finals.append(final)
            x = _MERGES[s.merge_mode](*outs) if dirs == 2 else outs[0]
        state = tuple(torch.stack([f[i] for f in finals]) for i in range(len(self.states)))
        return batch.output(x), batch.state(state)

    def _initial(self, hx: Tensor | State | None, batch: int, x: Tensor, unbatched: bool) -> State:
        """The initial states, ``(L·D, B, width)`` each: zeros, or ``hx`` checked."""
        s = self.spec
        layers = s.num_layers * (2 if s.bidirectional else 1)
        widths = self._state_widths()
        if hx is None:
            return tuple(x.new_zeros(layers, batch, w) for w in widths)
        given = (hx,) if isinstance(hx, Tensor) else tuple(hx)
        if len(given) != len(widths):
            raise ParamcalcError(f"hx must hold {plural(len(widths), 'tensor')} ({', '.join(self.states)})")
        if unbatched:
            given = tuple(t.unsqueeze(1) for t in given)
        for name, t, w in zip(self.states, given, widths, strict=True):
            if tuple(t.shape) != (layers, batch, w):
                raise ParamcalcError(
                    f"initial {name} must have shape {(layers, batch, w)}, got {tuple(t.shape)}"
                )
        return given

    def _run(
        self, w: Weights, x: Tensor, batch_sizes: list[int], start: State, zero_state: bool, reverse: bool
    ) -> tuple[Tensor, State]:
        """One layer and direction over the (packed) tokens ``x``: its outputs and final states.

        ``x`` holds the tokens time-major, ``batch_sizes[t]`` of them at step ``t`` (the running
        sequences, longest first). Forward, the state sheds the rows of the sequences that have
        ended; in reverse, the sequences whose last step is ``t`` join with their initial state.
        """
        if self.scan is not None:
            return self._run_scan(w, x, batch_sizes, start, zero_state, reverse)
        gx = _linear(x, w.ih, w.b_ih)  # the input GEMM, once for every token of the layer
        offsets = [0]
        for b in batch_sizes:
            offsets.append(offsets[-1] + b)
        steps = range(len(batch_sizes) - 1, -1, -1) if reverse else range(len(batch_sizes))
        state = start if not reverse else tuple(t[: batch_sizes[-1]] for t in start)
        outputs: list[Tensor] = [x[:0]] * len(batch_sizes)
        ended: list[State] = []  # forward: the final states of the sequences that have ended
        for t in steps:
            rows, b = state[0].shape[0], batch_sizes[t]
            if b < rows:
                ended.append(tuple(v[b:] for v in state))
                state = tuple(v[:b] for v in state)
            elif b > rows:
                state = tuple(torch.cat([v, v0[rows:b]]) for v, v0 in zip(state, start, strict=True))
            gx_t = gx[offsets[t] : offsets[t + 1]]
            outputs[t], state = self.step(w, gx_t, state, self.knobs, zero_state)
            zero_state = False
        # the rows of sequences that ended early follow the running ones (shortest ended first)
        final = tuple(torch.cat([v, *(e[i] for e in reversed(ended))]) for i, v in enumerate(state))
        return torch.cat(outputs), final

    def _run_scan(
        self, w: Weights, x: Tensor, batch_sizes: list[int], start: State, zero_state: bool, reverse: bool
    ) -> tuple[Tensor, State]:
        """One layer and direction as the cell's parallel scan (``TorchBinding.scan``), over the
        tokens laid out ``(T, B, ·)``: a batch of equal lengths as it is (reversed in time for the
        reverse direction), a packed one gathered so that each sequence starts at row 0 (in
        reverse, at its own last step) and the padding follows its last step, where the scan's
        causality keeps it from the real steps. The positions come from ``batch_sizes`` alone."""
        assert self.scan is not None
        gx = _linear(x, w.ih, w.b_ih)  # the input GEMM, once for every token of the layer
        steps, rows = len(batch_sizes), batch_sizes[0]
        h0 = None if zero_state else start[0]
        if all(b == rows for b in batch_sizes):
            seq = gx.reshape(steps, rows, gx.shape[-1])
            h = self.scan(w, seq.flip(0) if reverse else seq, h0, self.knobs)
            final = h[-1]
            return (h.flip(0) if reverse else h).reshape(steps * rows, h.shape[-1]), (final,)
        src, last = _scan_positions(batch_sizes, reverse, x.device)
        padded = gx.new_zeros(steps * rows, gx.shape[-1]).index_copy(0, src, gx)
        h = self.scan(w, padded.reshape(steps, rows, gx.shape[-1]), h0, self.knobs)
        flat = h.reshape(steps * rows, h.shape[-1])
        return flat.index_select(0, src), (flat.index_select(0, last),)


def _scan_positions(batch_sizes: list[int], reverse: bool, device: Any) -> tuple[Tensor, Tensor]:
    """For a packed batch (time-major tokens, ``batch_sizes[t]`` running at step ``t``, longest
    first): each token's row in the ``(T·B)`` layout a scan runs over, and each sequence's last
    row there. Sequence ``b`` of length ``n_b`` takes rows ``j·B + b`` for ``j < n_b``, ``j = t``,
    or ``n_b - 1 - t`` in reverse."""
    sizes = torch.tensor(batch_sizes, dtype=torch.long)
    steps, rows = len(batch_sizes), batch_sizes[0]
    offsets = torch.cumsum(sizes, 0) - sizes
    t_of = torch.repeat_interleave(torch.arange(steps), sizes)
    b_of = torch.arange(int(sizes.sum())) - torch.repeat_interleave(offsets, sizes)
    lengths = (sizes[:, None] > torch.arange(rows)[None, :]).sum(0)
    j = lengths[b_of] - 1 - t_of if reverse else t_of
    src = j * rows + b_of
    last = (lengths - 1) * rows + torch.arange(rows)
    return src.to(device), last.to(device)


class ReferenceCell(_Reference):
    """One step of a cell, like ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell``.

    ``forward(x, hx=None)``: ``x`` is ``(B, d)`` or ``(d,)``; ``hx`` is ``h`` or ``(h, c)``,
    zeros when ``None``. Returns the new ``h``, or ``(h, c)`` for a cell with a cell state.
    """

    def __init__(self, spec: RecurrentSpec, device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(spec)
        self._add_layer("", 0, {"device": device, "dtype": dtype})
        self.reset_parameters()

    def forward(self, x: Tensor, hx: Tensor | State | None = None) -> Tensor | State:
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
        if hx is None:
            state = tuple(x.new_zeros(x.shape[0], w) for w in self._state_widths())
        else:
            state = (hx,) if isinstance(hx, Tensor) else tuple(hx)
            if unbatched:
                state = tuple(t.unsqueeze(0) for t in state)
        w = self._weights("")
        _, state = self.step(w, _linear(x, w.ih, w.b_ih), state, self.knobs, hx is None)
        if unbatched:
            state = tuple(t.squeeze(0) for t in state)
        return state if len(state) > 1 else state[0]


def build_reference(
    spec: RecurrentSpec, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> nn.Module:
    """The reference module of ``spec``: a :class:`ReferenceCell` or a :class:`ReferenceRecurrent`."""
    if not isinstance(spec, RecurrentSpec):
        raise ParamcalcError(f"build_reference needs a RecurrentSpec, got {type(spec).__name__}")
    cls = ReferenceCell if spec.cell_type.single_step else ReferenceRecurrent
    return cls(spec, device=device, dtype=dtype)


__all__ = [
    "Knobs",
    "ReferenceCell",
    "ReferenceRecurrent",
    "Weights",
    "build_reference",
    "linear_scan",
    "scan_function",
    "step_function",
    "torch_layout",
]
