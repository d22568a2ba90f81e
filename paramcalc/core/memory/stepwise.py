"""The step-by-step paths: ATen's ``native`` loop and paramcalc's ``reference`` modules.

What autograd keeps per token comes from the cell's registry entry (:func:`.base.saved`); the
tables here add the layer inputs, the input projection, the step outputs and the backward's
gradients, for stacks and single-step cells.
"""

from __future__ import annotations

from .base import (
    NATIVE,
    REFERENCE,
    Ctx,
    Kept,
    MemoryTerm,
    Part,
    Phase,
    Rule,
    best,
    grads,
    phase,
    resident,
    saved,
    term,
)


def _layer_input(c: Ctx, layer: int) -> MemoryTerm | None:
    return term("layer input", c.n * c.out, c.nb, "kept", f"layer {layer - 1}'s output") if layer else None


# --- inference -----------------------------------------------------------------------------------


def _cell_step_outputs(c: Ctx, layer: int) -> MemoryTerm:
    return term(
        "step outputs",
        c.n * c.r,
        c.nb,
        "kept",
        "the h_t of every step, kept by the driver's list until the end",
    )


def _cell_step_gates(c: Ctx, layer: int) -> MemoryTerm:
    return term("one step's gates", 2 * c.b * c.g * c.h, c.nb, "peak", "x_t·W_ihᵀ and h·W_hhᵀ of one step")


#: Inference of a single-step cell run by the driver.
CELL_FORWARD: tuple[Rule, ...] = (_layer_input, _cell_step_outputs, _cell_step_gates)


def _native_projection(c: Ctx, layer: int) -> MemoryTerm:
    both = ", both directions' (made before either runs)" if c.dirs == 2 else ""
    return term(
        "input projection", c.dirs * c.n * c.g * c.h, c.nb, "peak", f"x·W_ihᵀ + b_ih of all steps{both}"
    )


def _reference_projection(c: Ctx, layer: int) -> MemoryTerm:
    return term(
        "input projection",
        2 * c.n * c.g * c.h,
        c.nb,
        "peak",
        "x·W_ihᵀ + b_ih of all steps of one direction (the GEMM's result and its bias sum)",
    )


def _stacked_output(c: Ctx, layer: int) -> MemoryTerm:
    merged = c.spec.merge_mode != "concat" and c.dirs == 2
    other = "; with the other direction's and their concatenation" if c.dirs == 2 else ""
    return term(
        "layer output",
        c.n * (c.r * (3 if c.dirs == 2 and not merged else 1)),
        c.nb,
        "peak",
        f"the steps stacked into (T, B, R){other}",
    )


def _native_step_outputs(c: Ctx, layer: int) -> MemoryTerm:
    return term("step outputs", c.n * c.r, c.nb, "peak", "the h_t of every step (ATen's native loop)")


def _reference_step_outputs(c: Ctx, layer: int) -> MemoryTerm:
    return term(
        "step outputs", c.n * c.r, c.nb, "peak", "the h_t of every step (paramcalc's reference module)"
    )


#: Inference of a stack, per path: the layer's input, its input projection, its outputs.
NATIVE_FORWARD: tuple[Rule, ...] = (_layer_input, _native_projection, _native_step_outputs, _stacked_output)
REFERENCE_FORWARD: tuple[Rule, ...] = (
    _layer_input,
    _reference_projection,
    _reference_step_outputs,
    _stacked_output,
)


def forward(c: Ctx, path: str) -> tuple[str, list[MemoryTerm]]:
    """Inference: the forward of the layer that holds the most."""
    base = resident(c)
    table: tuple[Rule, ...]
    if c.spec.cell_type.single_step:
        table = CELL_FORWARD
    else:
        table = REFERENCE_FORWARD if path == REFERENCE else NATIVE_FORWARD
    return best((f"forward of layer {layer}", [*base, *phase(c, layer, table)]) for layer in range(c.layers))


# --- training --------------------------------------------------------------------------------------


def _kept(c: Ctx, path: str) -> tuple[Kept, dict[int, MemoryTerm]]:
    """What each layer keeps for backward: its saved activations and (above the first) its input.

    Also the input terms by layer (the native path's backward of a layer holds its own input but
    not its own saved activations).
    """
    per_tok, per_layer, what = saved(c, path)
    single = c.spec.cell_type.single_step
    kept = Kept()
    inputs: dict[int, MemoryTerm] = {}
    for layer in range(c.layers):
        kept.add(
            term(
                f"saved activations, layer {layer}",
                c.dirs * (c.n * per_tok + per_layer),
                c.nb,
                "kept",
                f"autograd keeps per direction {what}",
            )
        )
        if layer and not single:
            inputs[layer] = term(
                f"layer {layer} input",
                c.n * c.out,
                c.nb,
                "kept",
                f"layer {layer - 1}'s output, kept by x·W_ihᵀ",
            )
            kept.add(inputs[layer])
        kept.end_layer()
    return kept, inputs


def _output_gradient(c: Ctx, layer: int) -> MemoryTerm | None:
    if layer >= c.layers - 1:
        return None
    return term("output gradient", c.n * c.out, c.nb, "peak", f"dL/d(output of layer {layer})")


def _native_gate_gradients(c: Ctx, layer: int) -> MemoryTerm:
    why = "dgates of every step, gathered and stacked for the input GEMM's backward"
    return term("gate gradients", c.dirs * c.n * c.g * c.h * 2, c.nb, "peak", why)


def _reference_gate_gradients(c: Ctx, layer: int) -> MemoryTerm:
    why = (
        "the gradient of x·W_ihᵀ of all steps: autograd's accumulator and the full-size zeros "
        "the backward of one step's slice makes"
    )
    return term("gate gradients", c.dirs * c.n * c.g * c.h * 2, c.nb, "peak", why)


def _input_gradient(c: Ctx, layer: int) -> MemoryTerm | None:
    return term("input gradient", c.n * c.d(layer), c.nb, "peak", f"dX of layer {layer}") if layer else None


def _layer_gradients(c: Ctx, layer: int) -> MemoryTerm:
    return grads(c, layer, c.nb)


#: The backward of a layer, per path, besides what is kept by then.
NATIVE_BACKWARD: tuple[Rule, ...] = (
    _output_gradient,
    _native_gate_gradients,
    _input_gradient,
    _layer_gradients,
)
REFERENCE_BACKWARD: tuple[Rule, ...] = (
    _output_gradient,
    _reference_gate_gradients,
    _input_gradient,
    _layer_gradients,
)


def _backward(
    c: Ctx, path: str, base: list[MemoryTerm], kept: Kept, inputs: dict[int, MemoryTerm], layer: int
) -> Phase:
    """What the backward of ``layer`` holds: what is kept by then and its gradients."""
    parts: list[Part] = [*base]
    if path == REFERENCE:
        # x·W_ihᵀ is sliced per step: the backward of the last step meets every saved tensor
        # of the layer and two full-size gradients of the projection
        parts.append(kept.layers_upto(layer))
        parts += phase(c, layer, REFERENCE_BACKWARD)
    else:  # the layers below, and this layer's input (its saved activations are freed by now)
        parts.append(kept.layers_upto(layer - 1))
        if layer in inputs:
            parts.append(inputs[layer])
        parts += phase(c, layer, NATIVE_BACKWARD)
    return (f"backward of layer {layer}", parts)


def _top_projection(c: Ctx, layer: int) -> MemoryTerm:
    return term(
        "input projection",
        c.dirs * c.n * c.g * c.h,
        c.nb,
        "peak",
        f"x·W_ihᵀ + b_ih of all steps of layer {layer}, alive until the layer's output is stacked",
    )


def _top_output(c: Ctx, layer: int) -> MemoryTerm:
    both = 2 if c.dirs == 2 else 1
    return term("layer output", c.n * c.out * both, c.nb, "peak", f"layer {layer}'s steps stacked")


#: The end of the forward (training): the top layer's input projection and stacked output.
END_OF_FORWARD: tuple[Rule, ...] = (_top_projection, _top_output)


def _cell_training(c: Ctx, base: list[MemoryTerm], kept: Kept) -> tuple[str, list[MemoryTerm]]:
    """A single-step cell: everything kept, the step outputs, the gradients and one step's."""
    gh = c.g * c.h
    one_step = term(
        "one step's gradients",
        2 * c.b * gh + gh * (c.d(0) + c.r),
        c.nb,
        "peak",
        "the gate gradients and dW of one step",
    )
    outputs = term("step outputs", c.n * c.r, c.nb, "kept", "h_t of every step in the driver's list")
    top = c.layers - 1
    return best([("backward", [*base, kept.layers_upto(top), outputs, grads(c, 0, c.nb), one_step])])


def training(c: Ctx, path: str) -> tuple[str, list[MemoryTerm]]:
    """Training: everything each layer keeps, then the top layer's forward end or a layer's backward."""
    base = resident(c, states_saved=True)
    kept, inputs = _kept(c, path)
    if c.spec.cell_type.single_step:
        return _cell_training(c, base, kept)
    top = c.layers - 1
    end: Phase = ("end of forward", [*base, kept.layers_upto(top), *phase(c, top, END_OF_FORWARD)])
    backward = [_backward(c, path, base, kept, inputs, layer) for layer in range(top, -1, -1)]
    return best([end, *backward])


def terms(c: Ctx, path: str) -> tuple[str, list[MemoryTerm]]:
    """The native or reference path on a CPU (and, with the CUDA terms added, on CUDA)."""
    return training(c, path) if c.wl.training else forward(c, path)


def native(c: Ctx) -> tuple[str, list[MemoryTerm]]:
    """ATen's native loop."""
    return terms(c, NATIVE)


def reference(c: Ctx) -> tuple[str, list[MemoryTerm]]:
    """paramcalc's reference module."""
    return terms(c, REFERENCE)
