"""A cell defined outside the package, registered through the public extension API.

JANET (van der Westhuizen & Lasenby 2018, "The unreasonable effectiveness of the forget gate"):
an LSTM with only a forget gate, whose cell state is its output::

    s_t = σ(x_t·W_fᵀ + h_{t-1}·U_fᵀ + b_f)
    n_t = tanh(x_t·W_cᵀ + h_{t-1}·U_cᵀ + b_c)
    h_t = s_t ⊙ h_{t-1} + (1 - s_t) ⊙ n_t

Two gate blocks (f, c), one bias vector per block in the paper. The module below is written from
those equations with its own parameters, named as paramcalc's torch convention names tensors.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

import paramcalc as pc

JANET = pc.CellType(
    name="janet",
    family="janet",
    gate_names=("f", "c"),
    templates=pc.gated_templates(),
    equations=(
        "s_t = σ(x_t·W_fᵀ + h_{t-1}·U_fᵀ + b_f)",
        "n_t = tanh(x_t·W_cᵀ + h_{t-1}·U_cᵀ + b_c)",
        "h_t = s_t ⊙ h_{t-1} + (1 - s_t) ⊙ n_t",
    ),
    display_name="JANET",
    default_bias_vectors=1,
    bias_vectors_allowed=(0, 1),
    source="van der Westhuizen & Lasenby 2018 (JANET): one bias per gate block",
    # 2 joining sums, σ, tanh, s⊙h, (1 - s) (1 -), (1 - s)⊙n, + : add 3, sub 1, mul 2, sigmoid 1, tanh 1
    elementwise_ops=(("add", 3), ("sub", 1), ("mul", 2), ("sigmoid", 1), ("tanh", 1)),
    saved_per_unit=3,
    torch=pc.TorchBinding(reference="tests.torch.janet_cell:build", runner="stack"),
)


class JanetStack(nn.Module):
    """A stack of JANET layers (unidirectional), ``forward(x) -> (output, h_n)`` like ``nn.RNN``."""

    def __init__(self, spec: Any, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        self.spec = spec
        h, kw = spec.hidden_size, {"device": device, "dtype": dtype}
        for k in range(spec.num_layers):
            d = spec.input_size if k == 0 else h
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(2 * h, d, **kw)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(2 * h, h, **kw)))
            if spec.bias:
                self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(2 * h, **kw)))
        bound = 1 / math.sqrt(h)
        if not any(p.is_meta for p in self.parameters()):
            for p in self.parameters():
                nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h_n = []
        for k in range(self.spec.num_layers):
            w, u = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
            b = getattr(self, f"bias_ih_l{k}", None)
            h = x.new_zeros(x.shape[1], self.spec.hidden_size)
            outs = []
            for t in range(x.shape[0]):
                z = x[t] @ w.t() + h @ u.t()
                if b is not None:
                    z = z + b
                f, c = z.chunk(2, dim=1)
                s = torch.sigmoid(f)
                h = s * h + (1 - s) * torch.tanh(c)
                outs.append(h)
            x = torch.stack(outs)
            h_n.append(h)
        return x, torch.stack(h_n)


def build(spec: Any, device: Any = None, dtype: Any = None) -> nn.Module:
    return JanetStack(spec, device, dtype)


def janet_step(w: Any, gx: torch.Tensor, state: Any, knobs: Any, zero_state: bool) -> Any:
    """One JANET step for paramcalc's reference stack (``TorchBinding(step=...)``): ``gx`` is
    ``x_t·W_ihᵀ + b_ih`` for both blocks, ``w.hh`` the recurrent matrix ``(2Dh, Dh)``."""
    (h,) = state
    f, c = (gx + h @ w.hh.t()).chunk(2, dim=-1)
    s = torch.sigmoid(f)
    h = s * h + (1 - s) * torch.tanh(c)
    return h, (h,)
