"""The step-by-step paths on CUDA: single-step cells stepped by the driver (``native fused cell``,
``native``), paramcalc's ``reference`` modules, and ATen's native loop with cuDNN off.

Each holds cuBLAS's workspaces (:func:`.cuda.cublas_terms`) besides its tensors.

* **single-step cells** (``nn.LSTMCell``/``nn.GRUCell``: ``_thnn_fused_*_cell``; ``nn.RNNCell``:
  ``addmm`` with the bias through cuBLASLt, and the activation): the cell's
  :class:`~paramcalc.core.memrules.CudaCell` rule gives what autograd keeps per token (read off
  the traces: GRU igates 3·Dh, hgates 3·Dh, the kernel's workspace 5·Dh and h; LSTM 4·Dh three
  times, c and h; RNNCell h) and one step's temporaries. At the start of the backward the call
  also holds the parameter gradients and one step's ``dW`` with its contiguous copy
  (AccumulateGrad's layout contract); in fp16/bf16 the objective's ``out.float()`` makes each
  step's ``dL/dh_t`` up front.
* **reference stacks**: inference per layer and direction, the larger of the input GEMM
  (``x·W_ihᵀ`` and its bias sum) and the stacking of the step outputs; training: the CPU's
  reference terms (saved tensors measured with hooks), which hold on CUDA with the workspaces.
* **anything else** (a native stack with cuDNN off, a single-step reference cell): the CPU's
  step-by-step terms with the workspaces (not measured on CUDA: a note says so).
"""

from __future__ import annotations

from ..memrules import CudaCell
from . import stepwise
from .base import NATIVE, REFERENCE, Ctx, MemoryTerm, Phase, best
from .cuda import block, blocked, cublas_terms, notes, resident


def _cell_rule(c: Ctx) -> CudaCell:
    rules = c.spec.cell_type.memory
    if rules is not None and rules.cuda_cell is not None:
        return rules.cuda_cell
    ct = c.spec.cell_type
    k = ct.saved_per_unit + 2 * c.g + 2
    c.note(
        f"memory is a guess: {ct.display_name} has no CUDA cell rule in its registry entry "
        f"(CellType.memory): autograd is assumed to keep {k}·Dh per token"
    )
    return CudaCell(k, (c.g, c.g))


def _step_blocks(c: Ctx, width: int) -> int:
    """One ``(b_t, width)`` tensor per step, as blocks."""
    if c.wl.lengths is None:
        return c.t * block(c.b * width * c.nb)
    return sum(block(c.wl.step_batch(t) * width * c.nb) for t in range(c.t))


def cell(c: Ctx) -> tuple[str, list[MemoryTerm]]:
    """A single-step cell stepped by the driver (``native fused cell``, or ``native`` RNNCell)."""
    rule = _cell_rule(c)
    notes(c)
    b, h, nb = c.b, c.h, c.nb
    base = [*resident(c, c.t * b * c.d(0)), *cublas_terms(c, lt=rule.lt)]
    h0 = blocked("h0 (zeros)", b * c.r * nb, "kept", "the driver's first state; rule")
    if not c.wl.training:
        temps = sum(block(b * k * h * nb) for k in rule.step)
        return best(
            [
                (
                    "forward",
                    [
                        *base,
                        h0,
                        MemoryTerm(
                            "step outputs",
                            _step_blocks(c, c.r),
                            "kept",
                            "h_t of every step in the driver's list; rule",
                        ),
                        MemoryTerm(
                            "one step's temporaries", temps, "peak", f"widths {rule.step} × Dh; rule (traced)"
                        ),
                    ],
                )
            ]
        )
    return best([("start of backward", [*base, h0, *_cell_backward(c, rule)])])


def _cell_backward(c: Ctx, rule: CudaCell) -> list[MemoryTerm]:
    """What a single-step cell holds when its backward starts."""
    from ..params import total_params

    b, h, nb, g = c.b, c.h, c.nb, c.g
    step_grad = 2 * block(g * h * max(c.d(0), c.r) * nb) + block(b * (g + 2) * h * nb) + block(b * h * nb)
    out = [
        MemoryTerm(
            "saved activations",
            c.n * rule.saved * h * nb,
            "kept",
            f"autograd keeps {rule.saved}·Dh per token: {rule.what or 'a guess'}; rule (traced)",
        ),
        blocked("parameter gradients", total_params(c.spec) * nb, "peak", ".grad of every parameter; rule"),
        MemoryTerm(
            "one step's backward temporaries",
            step_grad,
            "peak",
            "one step's dW and its contiguous copy (AccumulateGrad's layout contract) and gate gradients; "
            "rule (traced)",
        ),
    ]
    if nb != 4:
        out.append(
            MemoryTerm(
                "dL/dh_t of every step",
                c.n * h * nb,
                "peak",
                "out.float(): each step's ToCopyBackward makes its gradient in the data type up front; "
                "rule (traced)",
            )
        )
    return out


# --- reference stacks --------------------------------------------------------------------------------


def _reference_forward(c: Ctx) -> list[Phase]:
    """Per layer and direction: the input GEMM, then the stacking of its steps (and the merge)."""
    n, r, nb, gh = c.n, c.r, c.nb, c.g * c.h
    gx = block(n * gh * nb)
    bias = (c.spec.bias_vectors or 0) >= 1
    phases: list[Phase] = []
    for layer in range(c.layers):
        below = (
            [blocked("layer input", n * r * c.dirs * nb, "kept", f"layer {layer - 1}'s output")]
            if layer
            else []
        )
        for direction in range(c.dirs):
            other = [blocked("other direction's output", n * r * nb, "kept", "rule")] if direction else []
            gemm = MemoryTerm(
                "input projection",
                gx * (2 if bias else 1),
                "peak",
                "x·W_ihᵀ" + (" and its bias sum" if bias else "") + " of all steps; rule (traced)",
            )
            stack = [
                MemoryTerm("input projection", gx, "peak", "x·W_ihᵀ + b_ih of all steps; rule (traced)"),
                MemoryTerm("step outputs and torch.cat", 2 * block(n * r * nb), "peak", "rule (traced)"),
                MemoryTerm("one step's temporaries", 3 * block(c.b * gh * nb), "peak", "rule (traced)"),
            ]
            phases.append((f"input GEMM, layer {layer}", [*below, *other, gemm]))
            phases.append((f"stacking, layer {layer}", [*below, *other, *stack]))
        if c.dirs == 2:
            both = 2 * block(n * r * nb) + block(2 * n * r * nb)
            merge = MemoryTerm("both directions and their concatenation", both, "peak", "rule (traced)")
            phases.append((f"merge, layer {layer}", [*below, merge]))
    return phases


def reference(c: Ctx) -> tuple[str, list[MemoryTerm]]:
    """A reference stack on CUDA (a single-step reference cell: :func:`other`)."""
    if c.spec.cell_type.single_step:
        return other(c, REFERENCE)
    notes(c)
    base = [*resident(c, c.n * c.d(0)), *cublas_terms(c)]
    if c.wl.training:
        name, body = stepwise.training(c, REFERENCE)
        return name, [*base, *(t for t in body if t.kind != "resident")]
    states = len(c.spec.cell_type.state_names) * block(c.layers * c.dirs * c.b * c.r * c.nb)
    init = MemoryTerm("initial states (zeros)", states, "kept", "h_0 (and c_0), (L·D, B, R) each; rule")
    name, phase = best(_reference_forward(c))
    return name, [*base, init, *phase]


def native(c: Ctx) -> tuple[str, list[MemoryTerm]]:
    """The ``native`` path on CUDA: RNNCell stepped by the driver, or a stack with cuDNN off."""
    return cell(c) if c.spec.cell_type.single_step else other(c, NATIVE)


def other(c: Ctx, path: str) -> tuple[str, list[MemoryTerm]]:
    """ATen's native loop with cuDNN off, or a single-step reference cell: the CPU's terms and the
    workspaces (not measured on CUDA)."""
    notes(c)
    c.note(
        f"the {path} path of {c.spec.describe()} on CUDA was not measured: the CPU's terms with "
        "cuBLAS's workspaces"
    )
    name, body = stepwise.terms(c, path)
    return name, [
        *(t for t in body if t.kind == "resident"),
        *cublas_terms(c),
        *(t for t in body if t.kind != "resident"),
    ]
