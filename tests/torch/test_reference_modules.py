"""paramcalc's reference modules (``paramcalc.bridge.modules``) against independent ground truth.

* parameter names, shapes and order against ``count`` and against hand-written counts;
* outputs and states against the real ``torch.nn`` modules (weights copied over) for every
  layout PyTorch can build;
* outputs, states and gradients against a step-by-step implementation written below from the
  papers' equations (plain loops over time and over the sequences of the batch, weights taken
  by name and split into gate blocks) for everything ``torch.nn`` cannot build;
* a packed batch against each sequence run alone;
* ``FlopCounterMode`` on the ``meta`` device against the cost model (forward and training).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils.flop_counter import FlopCounterMode

import paramcalc as pc
from paramcalc.bridge.modules import ReferenceCell, ReferenceRecurrent, build_reference
from paramcalc.core.cells import CELLS
from paramcalc.core.costmodel import cost
from paramcalc.core.params import count
from paramcalc.core.spec import RecurrentSpec
from paramcalc.core.workload import Workload
from paramcalc.errors import ParamcalcError
from tests.helpers import invoke

warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")

S = RecurrentSpec
DT = torch.float64
ATOL = 1e-10
D_IN, DH, P = 3, 4, 2


def _id(spec: RecurrentSpec) -> str:
    return spec.describe() + (" keras" if spec.convention == "keras" else "")


def torch_spec(spec: RecurrentSpec) -> RecurrentSpec:
    return spec.replace(convention="torch", bias_vectors=spec.bias_vectors, peephole=spec.peephole)


# --- 1. parameters: names, shapes, order and hand-written counts ------------------------------

LAYOUTS = [
    S("rnn", D_IN, DH),
    S("rnn_relu", D_IN, DH, num_layers=2, bias=False),
    S("lstm", D_IN, DH, num_layers=2, bidirectional=True),
    S("lstm", D_IN, DH, num_layers=2, bidirectional=True, proj_size=P),
    S("lstm", D_IN, DH, peephole=True),
    S("lstm", D_IN, DH, num_layers=2, bias_vectors=1, proj_size=P, peephole=True),
    S("lstm", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="mul", proj_size=P),
    S("lstm", D_IN, DH, num_layers=2, convention="keras"),
    S("gru", D_IN, DH, reset_after=False, bias_vectors=1),
    S("gru", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="sum"),
    S("gru", D_IN, DH, num_layers=2, convention="keras", reset_after=False),
    S("rnn_cell", D_IN, DH),
    S("rnn_relu_cell", D_IN, DH, bias=False),
    S("lstm_cell", D_IN, DH, peephole=True),
    S("lstm_cell", D_IN, DH, bias_vectors=1),
    S("gru_cell", D_IN, DH, reset_after=False, bias_vectors=1),
    S("gru_cell", D_IN, DH, bias=False),
    S("cifg", D_IN, DH),
    S("cifg", D_IN, DH, peephole=False, bias_vectors=2),
    S("cifg", D_IN, DH, num_layers=2, bidirectional=True, bias=False),
    S("mgu", D_IN, DH),
    S("mgu", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="ave", bias_vectors=2),
    S("indrnn", D_IN, DH),
    S("indrnn", D_IN, DH, bias_vectors=2),
    S("indrnn", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="mul", bias=False),
    S("mingru", D_IN, DH),
    S("mingru", D_IN, DH, num_layers=2, bidirectional=True),
    S("minlstm", D_IN, DH),
    S("minlstm", D_IN, DH, num_layers=2, bias=False),
]


@pytest.mark.parametrize("spec", LAYOUTS, ids=_id)
def test_named_parameters_are_the_counted_rows(spec: RecurrentSpec) -> None:
    module = build_reference(spec, device="meta")
    expected = count(torch_spec(spec))
    got = [(name, tuple(p.shape)) for name, p in module.named_parameters()]
    assert got == [(r.name, r.shape) for r in expected.rows]
    assert sum(p.numel() for p in module.parameters()) == expected.total
    assert all(p.device.type == "meta" for p in module.parameters())
    assert isinstance(module, ReferenceCell if spec.cell_type.single_step else ReferenceRecurrent)
    assert module.spec == torch_spec(spec)
    assert module.spec.bias_vectors == spec.bias_vectors and module.spec.peephole == spec.peephole


# (spec, parameters counted by hand with d=3, Dh=4, P=2)
HAND_COUNTS = [
    (S("mgu", 3, 4), 2 * (4 * 3 + 4 * 4 + 4)),  # 2(Dh·d + Dh·Dh + Dh)
    # layer 1 takes Dh = 4 features (directions averaged), two biases per block
    (
        S("mgu", 3, 4, num_layers=2, bidirectional=True, merge_mode="ave", bias_vectors=2),
        2 * (2 * (4 * 3 + 4 * 4 + 2 * 4) + 2 * (4 * 4 + 4 * 4 + 2 * 4)),
    ),
    (S("cifg", 3, 4), 3 * (4 * 3 + 4 * 4 + 4) + 2 * 4),  # peepholes p_i, p_o
    (S("cifg", 3, 4, peephole=False, bias_vectors=2), 3 * (4 * 3 + 4 * 4 + 2 * 4)),
    (S("indrnn", 3, 4), 4 * 3 + 4 + 4),  # W, u, b
    (S("indrnn", 3, 4, bias_vectors=2), 4 * 3 + 4 + 4 + 4),  # W, u, b_ih, b_hh
    (
        S("indrnn", 3, 4, num_layers=2, bidirectional=True, merge_mode="mul", bias=False),
        2 * (4 * 3 + 4 + 4 * 4 + 4),
    ),
    (S("mingru", 3, 4), 2 * (4 * 3 + 4)),
    (S("mingru", 3, 4, num_layers=2, bidirectional=True), 2 * (2 * (4 * 3 + 4) + 2 * (4 * 8 + 4))),
    (S("minlstm", 3, 4), 3 * (4 * 3 + 4)),
    (S("minlstm", 3, 4, bias=False), 3 * (4 * 3)),
    (S("lstm", 3, 4, peephole=True), 4 * (4 * 3 + 4 * 4 + 2 * 4) + 3 * 4),
    # one bias, projection and peepholes: layer 0 d=3, layer 1 d=P=2; W_hh is (4Dh, P)
    (
        S("lstm", 3, 4, num_layers=2, bias_vectors=1, proj_size=2, peephole=True),
        (4 * (4 * 3 + 4 * 2 + 4) + 3 * 4 + 2 * 4) + (4 * (4 * 2 + 4 * 2 + 4) + 3 * 4 + 2 * 4),
    ),
    (S("gru", 3, 4, reset_after=False, bias_vectors=1), 3 * (4 * 3 + 4 * 4 + 4)),
    (S("lstm_cell", 3, 4, peephole=True), 4 * (4 * 3 + 4 * 4 + 2 * 4) + 3 * 4),
    (S("gru_cell", 3, 4, reset_after=False, bias_vectors=1), 3 * (4 * 3 + 4 * 4 + 4)),
]


@pytest.mark.parametrize(("spec", "params"), HAND_COUNTS, ids=[_id(s) for s, _ in HAND_COUNTS])
def test_parameter_counts_by_hand(spec: RecurrentSpec, params: int) -> None:
    module = build_reference(spec, device="meta")
    assert sum(p.numel() for p in module.parameters()) == params
    assert count(spec).total == params


def test_init_is_uniform_in_one_over_sqrt_hidden() -> None:
    torch.manual_seed(0)
    module = build_reference(S("cifg", 5, 16, num_layers=2, bidirectional=True, bias_vectors=2))
    values = torch.cat([p.detach().flatten() for p in module.parameters()])
    bound = 1 / math.sqrt(16)
    assert values.abs().max() <= bound
    assert values.abs().max() > 0.9 * bound and abs(values.mean()) < 0.05


def test_dtype_and_errors() -> None:
    module = build_reference(S("mgu", 3, 4), dtype=DT)
    assert all(p.dtype == DT for p in module.parameters())
    with pytest.raises(ParamcalcError, match="single-step"):
        ReferenceRecurrent(S("lstm_cell", 3, 4))
    with pytest.raises(ParamcalcError, match="RecurrentSpec"):
        build_reference("lstm")  # type: ignore[arg-type]
    with pytest.raises(ParamcalcError, match="initial h"):
        build_reference(S("gru", 3, 4), dtype=DT)(
            torch.zeros(2, 5, 3, dtype=DT), torch.zeros(1, 4, 4, dtype=DT)
        )


# --- 2. the layouts torch.nn builds: same weights, same outputs -------------------------------


def torch_stack(spec: RecurrentSpec) -> nn.Module:
    """The ``torch.nn`` module of a torch-native spec, constructed here from the spec's fields."""
    kw = {"num_layers": spec.num_layers, "bidirectional": spec.bidirectional, "bias": spec.bias, "dtype": DT}
    if spec.cell == "lstm":
        return nn.LSTM(spec.input_size, spec.hidden_size, proj_size=spec.proj_size, **kw)
    if spec.cell == "gru":
        return nn.GRU(spec.input_size, spec.hidden_size, **kw)
    act = "relu" if spec.cell == "rnn_relu" else "tanh"
    return nn.RNN(spec.input_size, spec.hidden_size, nonlinearity=act, **kw)


def torch_cell(spec: RecurrentSpec) -> nn.Module:
    kw = {"bias": spec.bias, "dtype": DT}
    if spec.cell == "lstm_cell":
        return nn.LSTMCell(spec.input_size, spec.hidden_size, **kw)
    if spec.cell == "gru_cell":
        return nn.GRUCell(spec.input_size, spec.hidden_size, **kw)
    act = "relu" if spec.cell == "rnn_relu_cell" else "tanh"
    return nn.RNNCell(spec.input_size, spec.hidden_size, nonlinearity=act, **kw)


def _states(s: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return s if isinstance(s, tuple) else (s,)


def _close(a: Tensor, b: Tensor, atol: float = ATOL) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=atol, rtol=0)


NATIVE = [
    S("rnn", D_IN, DH),
    S("rnn_relu", D_IN, DH, num_layers=2, bidirectional=True),
    S("rnn", D_IN, DH, num_layers=2, bias=False),
    S("lstm", D_IN, DH),
    S("lstm", D_IN, DH, num_layers=2, bidirectional=True),
    S("lstm", D_IN, DH, num_layers=2, bidirectional=True, proj_size=P),
    S("lstm", D_IN, DH, num_layers=2, proj_size=P, bias=False),
    S("gru", D_IN, DH),
    S("gru", D_IN, DH, num_layers=2, bidirectional=True),
    S("gru", D_IN, DH, bidirectional=True, bias=False),
]


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["zero-state", "hx"])
@pytest.mark.parametrize("spec", NATIVE, ids=_id)
def test_matches_torch_nn(spec: RecurrentSpec, packed: bool, with_hx: bool) -> None:
    torch.manual_seed(1)
    theirs = torch_stack(spec)
    ours = build_reference(spec, dtype=DT)
    ours.load_state_dict(theirs.state_dict())
    t, b = 5, 3
    x = torch.randn(t, b, spec.input_size, dtype=DT)
    inp = pack_padded_sequence(x, torch.tensor([3, 5, 2]), enforce_sorted=False) if packed else x
    hx = None
    if with_hx:
        n = spec.num_layers * spec.num_directions
        h0 = torch.randn(n, b, spec.proj_size or spec.hidden_size, dtype=DT)
        hx = (h0, torch.randn(n, b, spec.hidden_size, dtype=DT)) if spec.cell == "lstm" else h0
    out_t, st_t = theirs(inp, hx)
    out_o, st_o = ours(inp, hx)
    if packed:
        assert torch.equal(out_o.batch_sizes, out_t.batch_sizes)
        assert torch.equal(out_o.unsorted_indices, out_t.unsorted_indices)
        out_t, out_o = out_t.data, out_o.data
    _close(out_o, out_t)
    for a, e in zip(_states(st_o), _states(st_t), strict=True):
        _close(a, e)
    # gradients too (the same graph up to rounding)
    loss_t = out_t.sum() + sum(s.square().sum() for s in _states(st_t))
    loss_o = out_o.sum() + sum(s.square().sum() for s in _states(st_o))
    grads_t = torch.autograd.grad(loss_t, list(theirs.parameters()))
    grads_o = torch.autograd.grad(loss_o, list(ours.parameters()))
    for a, e in zip(grads_o, grads_t, strict=True):
        _close(a, e, 1e-9)


def test_unbatched_input_matches_torch_nn() -> None:
    spec = S("lstm", D_IN, DH, num_layers=2, bidirectional=True, proj_size=P)
    theirs = torch_stack(spec)
    ours = build_reference(spec, dtype=DT)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, D_IN, dtype=DT)
    (out_t, (h_t, c_t)), (out_o, (h_o, c_o)) = theirs(x), ours(x)
    _close(out_o, out_t)
    _close(h_o, h_t)
    _close(c_o, c_t)


CELL_SPECS = [
    S("rnn_cell", D_IN, DH),
    S("rnn_relu_cell", D_IN, DH),
    S("rnn_cell", D_IN, DH, bias=False),
    S("lstm_cell", D_IN, DH),
    S("lstm_cell", D_IN, DH, bias=False),
    S("gru_cell", D_IN, DH),
    S("gru_cell", D_IN, DH, bias=False),
]


@pytest.mark.parametrize("spec", CELL_SPECS, ids=_id)
def test_cells_match_torch_nn(spec: RecurrentSpec) -> None:
    torch.manual_seed(2)
    theirs = torch_cell(spec)
    ours = build_reference(spec, dtype=DT)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 3, spec.input_size, dtype=DT)
    st_t = st_o = None
    for t in range(4):
        st_t, st_o = theirs(x[t], st_t), ours(x[t], st_o)
        for a, e in zip(_states(st_o), _states(st_t), strict=True):
            _close(a, e)
    for a, e in zip(_states(ours(x[0, 0])), _states(theirs(x[0, 0])), strict=True):  # unbatched
        _close(a, e)


# --- 3. the layouts torch.nn cannot build: an independent implementation of the papers ---------
# Vectors only: one sequence at a time, one step at a time; W @ v for every product.


def sig(v: Tensor) -> Tensor:
    return 1 / (1 + torch.exp(-v))


class Layer:
    """One layer and direction's tensors, looked up by name and split into gate blocks."""

    def __init__(self, params: dict[str, Tensor], suffix: str, gates: int) -> None:
        def get(name: str) -> Tensor | None:
            return params.get(name + suffix)

        w_ih, w_hh = get("weight_ih"), get("weight_hh")
        assert w_ih is not None
        self.W = w_ih.chunk(gates, 0)  # input weight of each gate block
        self.U = w_hh.chunk(gates, 0) if w_hh is not None and w_hh.dim() == 2 else None
        self.u = w_hh if w_hh is not None and w_hh.dim() == 1 else None  # IndRNN
        zero = w_ih.new_zeros(w_ih.shape[0])
        b_ih, b_hh = get("bias_ih"), get("bias_hh")
        self.bi = (zero if b_ih is None else b_ih).chunk(gates)
        self.bh = (zero if b_hh is None else b_hh).chunk(gates)
        self.peep = {g: get(f"weight_c{g}") for g in "ifo"}
        self.hr = get("weight_hr")


def eq_rnn(act: Callable[[Tensor], Tensor]) -> Callable[..., tuple[Tensor, Tensor | None]]:
    def step(p: Layer, x: Tensor, h: Tensor, c: Tensor | None, spec: RecurrentSpec) -> tuple[Tensor, None]:
        assert p.U is not None
        return act(p.W[0] @ x + p.bi[0] + p.U[0] @ h + p.bh[0]), None

    return step


def eq_lstm(p: Layer, x: Tensor, h: Tensor, c: Tensor, spec: RecurrentSpec) -> tuple[Tensor, Tensor]:
    assert p.U is not None
    (Wi, Wf, Wg, Wo), (Ui, Uf, Ug, Uo) = p.W, p.U
    b = [bi + bh for bi, bh in zip(p.bi, p.bh, strict=True)]
    zero = torch.zeros_like(c)
    pi, pf, po = (p.peep[g] if spec.peephole else zero for g in "ifo")
    i = sig(Wi @ x + Ui @ h + pi * c + b[0])
    f = sig(Wf @ x + Uf @ h + pf * c + b[1])
    g = torch.tanh(Wg @ x + Ug @ h + b[2])
    c = f * c + i * g
    o = sig(Wo @ x + Uo @ h + po * c + b[3])
    h = o * torch.tanh(c)
    if p.hr is not None:
        h = p.hr @ h
    return h, c


def eq_gru(p: Layer, x: Tensor, h: Tensor, c: None, spec: RecurrentSpec) -> tuple[Tensor, None]:
    assert p.U is not None
    (Wr, Wz, Wn), (Ur, Uz, Un) = p.W, p.U
    r = sig(Wr @ x + p.bi[0] + Ur @ h + p.bh[0])
    z = sig(Wz @ x + p.bi[1] + Uz @ h + p.bh[1])
    if spec.reset_after:
        n = torch.tanh(Wn @ x + p.bi[2] + r * (Un @ h + p.bh[2]))
    else:
        n = torch.tanh(Wn @ x + p.bi[2] + Un @ (r * h) + p.bh[2])
    return (1 - z) * n + z * h, None


def eq_cifg(p: Layer, x: Tensor, h: Tensor, c: Tensor, spec: RecurrentSpec) -> tuple[Tensor, Tensor]:
    assert p.U is not None
    (Wi, Wg, Wo), (Ui, Ug, Uo) = p.W, p.U
    b = [bi + bh for bi, bh in zip(p.bi, p.bh, strict=True)]
    zero = torch.zeros_like(c)
    pi, po = (p.peep[g] if spec.peephole else zero for g in "io")
    i = sig(Wi @ x + Ui @ h + pi * c + b[0])
    g = torch.tanh(Wg @ x + Ug @ h + b[1])
    f = 1 - i
    c = f * c + i * g
    o = sig(Wo @ x + Uo @ h + po * c + b[2])
    return o * torch.tanh(c), c


def eq_mgu(p: Layer, x: Tensor, h: Tensor, c: None, spec: RecurrentSpec) -> tuple[Tensor, None]:
    assert p.U is not None
    (Wf, Wn), (Uf, Un) = p.W, p.U
    f = sig(Wf @ x + Uf @ h + p.bi[0] + p.bh[0])
    n = torch.tanh(Wn @ x + Un @ (f * h) + p.bi[1] + p.bh[1])
    return (1 - f) * h + f * n, None


def eq_indrnn(p: Layer, x: Tensor, h: Tensor, c: None, spec: RecurrentSpec) -> tuple[Tensor, None]:
    assert p.u is not None
    return torch.clamp(p.W[0] @ x + p.u * h + p.bi[0] + p.bh[0], min=0), None  # b_hh: zero when absent


def eq_mingru(p: Layer, x: Tensor, h: Tensor, c: None, spec: RecurrentSpec) -> tuple[Tensor, None]:
    z = sig(p.W[0] @ x + p.bi[0])
    n = p.W[1] @ x + p.bi[1]
    return (1 - z) * h + z * n, None


def eq_minlstm(p: Layer, x: Tensor, h: Tensor, c: None, spec: RecurrentSpec) -> tuple[Tensor, None]:
    f = sig(p.W[0] @ x + p.bi[0])
    i = sig(p.W[1] @ x + p.bi[1])
    n = p.W[2] @ x + p.bi[2]
    return f / (f + i) * h + i / (f + i) * n, None


# cell name -> (gate blocks, has a cell state c, step)
EQUATIONS: dict[str, tuple[int, bool, Callable[..., tuple[Tensor, Tensor | None]]]] = {
    "rnn": (1, False, eq_rnn(torch.tanh)),
    "rnn_relu": (1, False, eq_rnn(lambda v: torch.clamp(v, min=0))),
    "lstm": (4, True, eq_lstm),
    "gru": (3, False, eq_gru),
    "cifg": (3, True, eq_cifg),
    "mgu": (2, False, eq_mgu),
    "indrnn": (1, False, eq_indrnn),
    "mingru": (2, False, eq_mingru),
    "minlstm": (3, False, eq_minlstm),
}
EQUATIONS.update({f"{k}_cell": v for k, v in EQUATIONS.items() if k in ("rnn", "rnn_relu", "lstm", "gru")})

MERGE = {
    "concat": lambda a, b: torch.cat([a, b]),
    "sum": lambda a, b: a + b,
    "ave": lambda a, b: (a + b) / 2,
    "mul": lambda a, b: a * b,
}


def by_the_equations(module: nn.Module, spec: RecurrentSpec, x: Tensor) -> tuple[Tensor, list[list[Tensor]]]:
    """Run ``x`` (T, B, d) through the stack, one sequence and one step at a time.

    Returns the output (T, B, features) and the final states as lists ``[layer·D + direction]``
    of ``(B, width)`` tensors (one list for h, one for c when the cell has one).
    """
    gates, has_c, step = EQUATIONS[spec.cell]
    params = dict(module.named_parameters())
    steps, batch = x.shape[:2]
    h_width = spec.proj_size or spec.hidden_size
    seqs = [[x[t, b] for t in range(steps)] for b in range(batch)]
    finals: list[list[Tensor]] = [[], []]
    for layer in range(spec.num_layers):
        per_direction = []
        for direction in range(spec.num_directions):
            p = Layer(params, f"_l{layer}" + ("_reverse" if direction else ""), gates)
            outs, hs, cs = [], [], []
            for seq in seqs:
                h, c = x.new_zeros(h_width), (x.new_zeros(spec.hidden_size) if has_c else None)
                ys: list[Tensor] = [h] * steps
                for t in range(steps - 1, -1, -1) if direction else range(steps):
                    h, c = step(p, seq[t], h, c, spec)
                    ys[t] = h
                outs.append(ys)
                hs.append(h)
                cs.append(c)
            per_direction.append(outs)
            finals[0].append(torch.stack(hs))
            if has_c:
                finals[1].append(torch.stack(cs))
        if spec.bidirectional:
            fwd, rev = per_direction
            seqs = [
                [MERGE[spec.merge_mode](a, b) for a, b in zip(f, r, strict=True)]
                for f, r in zip(fwd, rev, strict=True)
            ]
        else:
            seqs = per_direction[0]
    output = torch.stack([torch.stack([seqs[b][t] for b in range(batch)]) for t in range(steps)])
    return output, [f for f in finals if f]


INDEPENDENT = [
    S("cifg", D_IN, DH),
    S("cifg", D_IN, DH, peephole=False, bias_vectors=2),
    S("cifg", D_IN, DH, num_layers=2, bidirectional=True, bias=False),
    S("mgu", D_IN, DH),
    S("mgu", D_IN, DH, bias_vectors=2),
    S("mgu", D_IN, DH, num_layers=2, bidirectional=True, bias=False),
    S("indrnn", D_IN, DH),
    S("indrnn", D_IN, DH, num_layers=2, bidirectional=True, bias_vectors=2),
    S("indrnn", D_IN, DH, num_layers=2, bidirectional=True, bias=False),
    S("mingru", D_IN, DH),
    S("mingru", D_IN, DH, num_layers=2, bidirectional=True),
    S("minlstm", D_IN, DH),
    S("minlstm", D_IN, DH, num_layers=2, bidirectional=True, bias=False),
    S("lstm", D_IN, DH, peephole=True),
    S("lstm", D_IN, DH, num_layers=2, bidirectional=True, peephole=True, bias_vectors=1),
    S("lstm", D_IN, DH, num_layers=2, bias_vectors=1, proj_size=P),
    S("lstm", D_IN, DH, num_layers=2, bidirectional=True, bias_vectors=1, proj_size=P, peephole=True),
    S("lstm", D_IN, DH, num_layers=2, convention="keras"),
    S("gru", D_IN, DH, reset_after=False, bias_vectors=1),
    S("gru", D_IN, DH, reset_after=False),
    S("gru", D_IN, DH, num_layers=2, bidirectional=True, convention="keras", reset_after=False),
    S("gru", D_IN, DH, num_layers=2, bidirectional=True, reset_after=False, bias=False),
    S("rnn", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="sum"),
    S("rnn_relu", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="ave", bias_vectors=1),
    S("lstm", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="mul", proj_size=P),
    S("gru", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="sum"),
    S("gru", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="ave", reset_after=False),
    S("mgu", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="mul"),
    S("cifg", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="ave"),
    S("mingru", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="sum"),
    S("minlstm", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="mul"),
    S("indrnn", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="ave"),
]


@pytest.mark.parametrize("spec", INDEPENDENT, ids=_id)
def test_matches_the_papers_equations(spec: RecurrentSpec) -> None:
    torch.manual_seed(3)
    module = build_reference(spec, dtype=DT)
    x = torch.randn(4, 2, spec.input_size, dtype=DT)
    out, state = module(x)
    expected, finals = by_the_equations(module, spec, x)
    _close(out, expected)
    for got, want in zip(_states(state), finals, strict=True):
        _close(got, torch.stack(want))
    # the gradients too (the reference module's zero-state shortcuts change no gradient)
    params = list(module.parameters())
    loss_o = out.square().sum() + sum(s.sum() for s in _states(state))
    loss_e = expected.square().sum() + sum(torch.stack(f).sum() for f in finals)
    for a, e in zip(torch.autograd.grad(loss_o, params), torch.autograd.grad(loss_e, params), strict=True):
        _close(a, e, 1e-9)


INDEPENDENT_CELLS = [
    S("lstm_cell", D_IN, DH, peephole=True),
    S("lstm_cell", D_IN, DH, bias_vectors=1, peephole=True),
    S("lstm_cell", D_IN, DH, bias_vectors=1),
    S("gru_cell", D_IN, DH, reset_after=False),
    S("gru_cell", D_IN, DH, reset_after=False, bias_vectors=1),
    S("gru_cell", D_IN, DH, convention="keras"),
    S("rnn_relu_cell", D_IN, DH, bias_vectors=1),
]


@pytest.mark.parametrize("spec", INDEPENDENT_CELLS, ids=_id)
def test_cells_match_the_papers_equations(spec: RecurrentSpec) -> None:
    torch.manual_seed(4)
    module = build_reference(spec, dtype=DT)
    gates, has_c, step = EQUATIONS[spec.cell]
    p = Layer(dict(module.named_parameters()), "", gates)
    x = torch.randn(4, 2, spec.input_size, dtype=DT)
    state = None
    hs = [x.new_zeros(spec.hidden_size) for _ in range(2)]
    cs = [x.new_zeros(spec.hidden_size) if has_c else None for _ in range(2)]
    for t in range(4):
        state = module(x[t], state)
        for b in range(2):
            hs[b], cs[b] = step(p, x[t, b], hs[b], cs[b], spec)
        _close(_states(state)[0], torch.stack(hs))
        if has_c:
            _close(_states(state)[1], torch.stack(cs))  # type: ignore[arg-type]


# --- 4. packed batches: exactly each sequence run alone --------------------------------------

STACKS = ("rnn", "lstm", "gru", "cifg", "mgu", "indrnn", "mingru", "minlstm")
PACKED = [
    *(S(name, D_IN, DH, num_layers=2, bidirectional=bi) for name in STACKS for bi in (False, True)),
    S("lstm", D_IN, DH, num_layers=2, bidirectional=True, proj_size=P, peephole=True, bias_vectors=1),
    S("gru", D_IN, DH, num_layers=2, bidirectional=True, reset_after=False, merge_mode="ave"),
    S("mgu", D_IN, DH, bidirectional=True, merge_mode="mul"),
]


@pytest.mark.parametrize("lengths", [(5, 3, 2), (3, 5, 2)], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("spec", PACKED, ids=_id)
def test_packed_batch_is_each_sequence_alone(spec: RecurrentSpec, lengths: tuple[int, ...]) -> None:
    torch.manual_seed(5)
    module = build_reference(spec, dtype=DT)
    x = torch.randn(max(lengths), len(lengths), spec.input_size, dtype=DT)
    in_order = list(lengths) == sorted(lengths, reverse=True)  # sorted: no sorted_indices
    packed = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=in_order)
    out, state = module(packed)
    padded, out_lengths = pad_packed_sequence(out)
    assert out_lengths.tolist() == list(lengths)
    for b, n in enumerate(lengths):
        alone, alone_state = module(x[:n, b : b + 1])
        _close(padded[:n, b : b + 1], alone)
        assert not padded[n:, b].any()
        for got, want in zip(_states(state), _states(alone_state), strict=True):
            _close(got[:, b : b + 1], want)


# --- 5. FlopCounterMode on meta: the cost model's GEMMs, forward and training -----------------


def counter_flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def run(module: nn.Module, spec: RecurrentSpec, wl: Workload, x: Tensor) -> Tensor:
    """A scalar from the module's outputs: a stack takes ``x`` (or it packed); a cell steps."""
    if spec.cell_type.single_step:
        state = None
        total = x.new_zeros(())
        for t in range(wl.steps):
            b = wl.step_batch(t)  # sequences still running (longest first)
            if state is not None:
                state = tuple(s[:b] for s in state) if isinstance(state, tuple) else state[:b]
            state = module(x[t, :b], state)
            total = total + _states(state)[0].sum()
        return total
    if wl.lengths is not None:
        out = module(pack_padded_sequence(x, torch.tensor(wl.lengths), enforce_sorted=False))[0]
        return out.data.sum()
    return module(x)[0].sum()


def _flop_cases() -> list[RecurrentSpec]:
    cases = []
    for name, ct in CELLS.items():
        shapes = [(1, False)] if ct.single_step else [(1, False), (2, True)]
        for layers, bi in shapes:
            cases.append(S(name, D_IN, DH, num_layers=layers, bidirectional=bi))
    return [
        *cases,
        S("gru", D_IN, DH, num_layers=2, bidirectional=True, reset_after=False, bias_vectors=1),
        S("gru_cell", D_IN, DH, reset_after=False),
        S("lstm", D_IN, DH, num_layers=2, bidirectional=True, proj_size=P),
        S("lstm", D_IN, DH, num_layers=2, bias_vectors=1, proj_size=P, peephole=True),
        S("gru", D_IN, DH, num_layers=2),
        S("mgu", D_IN, DH, num_layers=2),
        S("mingru", D_IN, DH, num_layers=2),
        S("lstm_cell", D_IN, DH, peephole=True),
        S("cifg", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="ave", peephole=False),
        S("mgu", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="mul", bias=False),
        S("rnn", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="sum", bias=False),
        S("indrnn", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="sum"),
        S("minlstm", D_IN, DH, num_layers=2, bidirectional=True, merge_mode="ave"),
    ]


def _flop_params() -> list[Any]:
    """Every case padded and packed; the fast subset keeps each cell's first case padded and the
    classic stacks' bidirectional case packed (meta kernels under the counter are slow)."""
    out, seen = [], set()
    for spec in _flop_cases():
        for lengths, tag in ((None, "padded"), ((5, 3, 2), "packed")):
            fast = (lengths is None and spec.cell not in seen) or (
                lengths is not None
                and spec.cell in ("rnn", "lstm", "gru")
                and spec.bidirectional
                and spec == S(spec.cell, D_IN, DH, num_layers=2, bidirectional=True)
            )
            marks = () if fast else (pytest.mark.slow,)
            out.append(pytest.param(spec, lengths, id=f"{_id(spec)}-{tag}", marks=marks))
        seen.add(spec.cell)
    return out


@pytest.mark.parametrize(("spec", "lengths"), _flop_params())
def test_flop_counter_sees_the_cost_models_gemms(
    spec: RecurrentSpec, lengths: tuple[int, ...] | None
) -> None:
    wl = Workload(3, 5, lengths, mode="training")
    module = build_reference(spec, device="meta")
    x = torch.randn(5, 3, D_IN, device="meta")
    # the forward pass and the backward pass under separate counters (meta kernels are slow)
    with FlopCounterMode(display=False) as fwd:
        loss = run(module, spec, wl, x)
    with FlopCounterMode(display=False) as bwd:
        loss.backward()
    ours = cost(spec, wl, bias_ops=False, elementwise=False, backward="autograd")
    assert fwd.get_total_flops() == 2 * ours.macs
    assert fwd.get_total_flops() + bwd.get_total_flops() == ours.flops


# FLOPs written out by hand (d=3, Dh=4, B=3, T=5: 15 tokens), 2 FLOPs per MAC
HAND_FLOPS = [
    # MGU: input (2Dh·d) and recurrent (Dh·Dh twice) GEMMs per token
    (S("mgu", 3, 4), 2 * 15 * (8 * 3 + 4 * 4 + 4 * 4)),
    # IndRNN: only the input GEMM (u ⊙ h is elementwise)
    (S("indrnn", 3, 4), 2 * 15 * (4 * 3)),
    # minLSTM: only the input GEMM of three blocks
    (S("minlstm", 3, 4), 2 * 15 * (12 * 3)),
    # one-bias LSTM with projection: input 4Dh·d, recurrent 4Dh·P, projection P·Dh
    (S("lstm", 3, 4, bias_vectors=1, proj_size=2), 2 * 15 * (16 * 3 + 16 * 2 + 2 * 4)),
    # CIFG, two layers merged by sum: layer 1 takes Dh features
    (
        S("cifg", 3, 4, num_layers=2, bidirectional=True, merge_mode="sum"),
        2 * 15 * 2 * ((12 * 3 + 12 * 4) + (12 * 4 + 12 * 4)),
    ),
]


@pytest.mark.parametrize(("spec", "flops"), HAND_FLOPS, ids=[_id(s) for s, _ in HAND_FLOPS])
def test_forward_flops_by_hand(spec: RecurrentSpec, flops: int) -> None:
    module = build_reference(spec, device="meta")
    x = torch.randn(5, 3, 3, device="meta")
    with torch.no_grad():
        assert counter_flops(lambda: module(x)) == flops
    assert 2 * cost(spec, Workload(3, 5)).macs == flops


def test_mgu_training_flops_by_hand() -> None:
    """One layer, B=3, T=5, d=3, Dh=4: dW for every GEMM, dX for none of the input GEMM (data)
    and none of the first step's recurrent GEMMs (h_0 = 0 is a constant, f_1 ⊙ h_0 too)."""
    module = build_reference(S("mgu", 3, 4), device="meta")
    x = torch.randn(5, 3, 3, device="meta")
    fwd = 2 * 15 * (24 + 32)
    dw = 2 * 15 * (24 + 32)
    dx = 2 * 12 * 32  # the recurrent GEMMs of steps 2..5
    assert counter_flops(lambda: module(x)[0].sum().backward()) == fwd + dw + dx


def test_a_third_party_style_indrnn_with_two_biases_is_counted_and_checked() -> None:
    """IndRNN as several packages write it: nn.Linear(d, Dh) (weight and bias) for the input, and a
    recurrent weight u and a recurrent bias, both (Dh,). Its count is paramcalc's with two bias
    vectors, and ``check`` passes for that layout."""

    class ThirdPartyIndRNN(nn.Module):
        def __init__(self, d: int, h: int) -> None:
            super().__init__()
            self.input = nn.Linear(d, h)
            self.u = nn.Parameter(torch.ones(h))
            self.recurrent_bias = nn.Parameter(torch.zeros(h))

    theirs = sum(p.numel() for p in ThirdPartyIndRNN(D_IN, DH).parameters())
    assert theirs == DH * D_IN + DH + DH + DH
    assert count(S("indrnn", D_IN, DH, bias_vectors=2)).total == theirs
    checked = pc.check(S("indrnn", D_IN, DH, num_layers=2, bias_vectors=2), "cpu")
    assert checked.ok
    r = invoke("check", "indrnn", "-d", "5", "-H", "7", "--bias-vectors", "2", "--device", "cpu")
    assert r.exit_code == 0, r.output
