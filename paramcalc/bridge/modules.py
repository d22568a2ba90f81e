"""Reference torch modules: every cell and layout a ``RecurrentSpec`` can express, step by step.

``torch.nn`` builds only PyTorch's own layouts (two bias vectors or none, no peepholes,
concatenated directions, the GRU reset after the matmul). Everything else (one bias vector,
peepholes, merged directions, the reset-before GRU, and the cells outside ``torch.nn``: CIFG,
MGU, IndRNN, minGRU, minLSTM) is built here, written by hand from the papers' equations (see
``paramcalc.core.cells``). The parameter shapes are written out here too, not read from the
registry's tensor templates, so comparing a reference module's ``named_parameters()`` with
``count(spec).rows`` is a real cross-check.

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

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..core.spec import RecurrentSpec
from ..errors import ParamcalcError
from ..results.text import plural

State = tuple[Tensor, ...]


# --- the weights of one layer and direction, as the step functions see them -----------------


@dataclass(frozen=True)
class Weights:
    """One layer and direction's tensors: ``ih (G·Dh, d)``, ``hh (G·Dh, R)`` or ``(Dh,)``, biases
    ``(G·Dh,)``, peepholes by gate ``(Dh,)``, projection ``hr (P, Dh)``; ``None`` when absent."""

    ih: Tensor
    hh: Tensor | None = None
    b_ih: Tensor | None = None
    b_hh: Tensor | None = None
    peep: Mapping[str, Tensor] = field(default_factory=dict)
    hr: Tensor | None = None


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


# --- the step functions, one per family (the equations of paramcalc.core.cells) --------------
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


@dataclass(frozen=True)
class Family:
    """A reference implementation: its tensors (written from the paper) and its step function.

    ``blocks``: gate blocks stacked along the rows of ``weight_ih``; ``recurrent``: ``matrix``
    (``(G·Dh, R)``), ``vector`` (``(Dh,)``, IndRNN) or ``none`` (minGRU, minLSTM); ``peepholes``:
    the gates with a peephole vector, in storage order; ``states``: ``("h",)`` or ``("h", "c")``.
    """

    blocks: int
    recurrent: Literal["matrix", "vector", "none"]
    step: StepFn
    peepholes: tuple[str, ...] = ()
    states: tuple[str, ...] = ("h",)
    projection: bool = False


#: The step functions and tensors of every family, keyed by ``CellType.family``.
FAMILIES: dict[str, Family] = {
    "rnn": Family(1, "matrix", rnn_step),
    "lstm": Family(4, "matrix", lstm_step, peepholes=("i", "f", "o"), states=("h", "c"), projection=True),
    "gru": Family(3, "matrix", gru_step),
    "cifg": Family(3, "matrix", cifg_step, peepholes=("i", "o"), states=("h", "c")),
    "mgu": Family(2, "matrix", mgu_step),
    "indrnn": Family(1, "vector", indrnn_step),
    "mingru": Family(2, "none", mingru_step),
    "minlstm": Family(3, "none", minlstm_step),
}

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"tanh": torch.tanh, "relu": torch.relu}

_MERGES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "concat": lambda fwd, rev: torch.cat([fwd, rev], dim=-1),
    "sum": lambda fwd, rev: fwd + rev,
    "ave": lambda fwd, rev: (fwd + rev) / 2,
    "mul": lambda fwd, rev: fwd * rev,
}


def _family(spec: RecurrentSpec) -> Family:
    ct = spec.cell_type
    fam = FAMILIES.get(ct.family)
    if fam is None:
        raise ParamcalcError(
            f"paramcalc has no reference implementation of cell family {ct.family!r} (cell {ct.name!r}): "
            "give the cell's TorchBinding a reference builder"
        )
    if spec.proj_size and not fam.projection:
        raise ParamcalcError(f"the {ct.family} reference implementation has no projection (proj_size)")
    if spec.peephole and not fam.peepholes:
        raise ParamcalcError(f"the {ct.family} reference implementation has no peepholes")
    return fam


def torch_layout(spec: RecurrentSpec) -> RecurrentSpec:
    """``spec`` under PyTorch's names, with its own layout (bias vectors, peepholes) kept."""
    return spec.replace(convention="torch", bias_vectors=spec.bias_vectors, peephole=spec.peephole)


class _Reference(nn.Module):
    """What the stack and the cell share: the spec, the family, the parameters and their init."""

    def __init__(self, spec: RecurrentSpec) -> None:
        super().__init__()
        self.spec = torch_layout(spec)
        self.family = _family(self.spec)
        ct = self.spec.cell_type
        act = _ACTIVATIONS.get(ct.nonlinearity or "tanh")
        if act is None:
            raise ParamcalcError(f"unknown nonlinearity {ct.nonlinearity!r} of cell {ct.name!r}")
        self.knobs = Knobs(act=act, reset_before=not self.spec.reset_after)

    def _add_layer(self, suffix: str, input_size: int, factory: dict[str, Any]) -> None:
        """Register one layer and direction's parameters, in PyTorch's order."""
        s, fam = self.spec, self.family
        dh, p = s.hidden_size, s.proj_size
        gdh = fam.blocks * dh
        shapes: list[tuple[str, tuple[int, ...]]] = [("weight_ih", (gdh, input_size))]
        if fam.recurrent == "matrix":
            shapes.append(("weight_hh", (gdh, p or dh)))
        elif fam.recurrent == "vector":
            shapes.append(("weight_hh", (dh,)))
        shapes += [("bias_ih", (gdh,)), ("bias_hh", (gdh,))][: s.bias_vectors]
        if s.peephole:
            shapes += [(f"weight_c{g}", (dh,)) for g in fam.peepholes]
        if p:
            shapes.append(("weight_hr", (p, dh)))
        for name, shape in shapes:
            self.register_parameter(name + suffix, nn.Parameter(torch.empty(shape, **factory)))

    def _weights(self, suffix: str) -> Weights:
        get = self._parameters.get
        ih = get("weight_ih" + suffix)
        assert ih is not None
        peep = {g: get(f"weight_c{g}{suffix}") for g in self.family.peepholes}
        return Weights(
            ih=ih,
            hh=get("weight_hh" + suffix),
            b_ih=get("bias_ih" + suffix),
            b_hh=get("bias_hh" + suffix),
            peep={g: t for g, t in peep.items() if t is not None},
            hr=get("weight_hr" + suffix),
        )

    def reset_parameters(self) -> None:
        """U(-1/sqrt(Dh), 1/sqrt(Dh)) for every parameter, as ``torch.nn``'s recurrent modules."""
        bound = 1.0 / math.sqrt(self.spec.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _state_widths(self) -> tuple[int, ...]:
        """Width of each state: ``h`` is P (with a projection) or Dh wide, ``c`` is Dh wide."""
        s = self.spec
        return tuple(
            (s.proj_size or s.hidden_size) if n == "h" else s.hidden_size for n in self.family.states
        )

    def extra_repr(self) -> str:
        return self.spec.describe()


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
        out = s.proj_size or s.hidden_size
        merged = out * (2 if s.bidirectional and s.merge_mode == "concat" else 1)
        for layer in range(s.num_layers):
            for direction in range(2 if s.bidirectional else 1):
                d = s.input_size if layer == 0 else merged
                self._add_layer(self._suffix(layer, direction), d, {"device": device, "dtype": dtype})
        self.reset_parameters()

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | State | None = None) -> tuple[Any, Any]:
        s = self.spec
        dirs = 2 if s.bidirectional else 1
        batch_sizes_t: Tensor | None
        sorted_idx: Tensor | None
        unsorted_idx: Tensor | None
        if isinstance(input, PackedSequence):
            x, batch_sizes_t, sorted_idx, unsorted_idx = input
            batch_sizes = [int(b) for b in batch_sizes_t.tolist()]  # a CPU tensor, also for meta data
            unbatched, shape = False, None
        else:
            unbatched = input.dim() == 2
            seq = input.unsqueeze(1) if unbatched else input
            if seq.dim() != 3:
                raise ParamcalcError(f"input must be (T, B, d) or (T, d), got shape {tuple(input.shape)}")
            shape = seq.shape[:2]
            x, batch_sizes = seq.reshape(shape[0] * shape[1], seq.shape[2]), [shape[1]] * shape[0]
            batch_sizes_t = sorted_idx = unsorted_idx = None
        batch = batch_sizes[0] if batch_sizes else 0

        zero_state = hx is None
        initial = self._initial(hx, batch, x, unbatched)
        if sorted_idx is not None and not zero_state:
            initial = tuple(t.index_select(1, sorted_idx) for t in initial)

        finals: list[State] = []
        for layer in range(s.num_layers):
            outs = []
            for direction in range(dirs):
                w = self._weights(self._suffix(layer, direction))
                start = tuple(t[layer * dirs + direction] for t in initial)
                out, final = self._run(w, x, batch_sizes, start, zero_state, reverse=direction == 1)
                outs.append(out)
                finals.append(final)
            x = _MERGES[s.merge_mode](*outs) if dirs == 2 else outs[0]

        state = tuple(torch.stack([f[i] for f in finals]) for i in range(len(self.family.states)))
        if unsorted_idx is not None:
            state = tuple(t.index_select(1, unsorted_idx) for t in state)
        if unbatched:
            state = tuple(t.squeeze(1) for t in state)
        if batch_sizes_t is not None:
            output: Any = PackedSequence(x, batch_sizes_t, sorted_idx, unsorted_idx)
        else:
            assert shape is not None
            output = x.reshape(shape[0], shape[1], x.shape[-1])
            if unbatched:
                output = output.squeeze(1)
        return output, (state if len(state) > 1 else state[0])

    def _initial(self, hx: Tensor | State | None, batch: int, x: Tensor, unbatched: bool) -> State:
        """The initial states, ``(L·D, B, width)`` each: zeros, or ``hx`` checked."""
        s = self.spec
        layers = s.num_layers * (2 if s.bidirectional else 1)
        widths = self._state_widths()
        if hx is None:
            return tuple(x.new_zeros(layers, batch, w) for w in widths)
        given = (hx,) if isinstance(hx, Tensor) else tuple(hx)
        if len(given) != len(widths):
            raise ParamcalcError(
                f"hx must hold {plural(len(widths), 'tensor')} ({', '.join(self.family.states)})"
            )
        if unbatched:
            given = tuple(t.unsqueeze(1) for t in given)
        for name, t, w in zip(self.family.states, given, widths, strict=True):
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
            outputs[t], state = self.family.step(w, gx_t, state, self.knobs, zero_state)
            zero_state = False
        # the rows of sequences that ended early follow the running ones (shortest ended first)
        final = tuple(torch.cat([v, *(e[i] for e in reversed(ended))]) for i, v in enumerate(state))
        return torch.cat(outputs), final


class ReferenceCell(_Reference):
    """One step of a cell, like ``nn.RNNCell``/``nn.LSTMCell``/``nn.GRUCell``.

    ``forward(x, hx=None)``: ``x`` is ``(B, d)`` or ``(d,)``; ``hx`` is ``h`` or ``(h, c)``,
    zeros when ``None``. Returns the new ``h``, or ``(h, c)`` for a cell with a cell state.
    """

    def __init__(self, spec: RecurrentSpec, device: Any = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(spec)
        self._add_layer("", self.spec.input_size, {"device": device, "dtype": dtype})
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
        _, state = self.family.step(w, _linear(x, w.ih, w.b_ih), state, self.knobs, hx is None)
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
    "FAMILIES",
    "Family",
    "Knobs",
    "ReferenceCell",
    "ReferenceRecurrent",
    "Weights",
    "build_reference",
    "torch_layout",
]
