"""The ``oneDNN`` path: the CPU's fused LSTM (``aten::mkldnn_rnn_layer``, one primitive per layer
and direction), its buffers as oneDNN 3.x lays them out (``src/cpu/rnn/rnn_utils.hpp``).

A CPU run touches only part of oneDNN's workspace (the diff states of only some iterations, no
``ht`` without projection), and untouched pages cost no memory: the terms count the touched
part; the full allocation is :func:`onednn_workspace_bytes`, stated in the assumption.
"""

from __future__ import annotations

from .base import Ctx, Kept, MemoryTerm, Phase, Rule, best, grads, phase, resident, term

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


def _gld(c: Ctx) -> int:
    return good_ld(c.g * c.h, 4)


def _fp32(item: str, elements: int, kind: str, assumption: str, show: bool = True) -> MemoryTerm:
    """A buffer oneDNN keeps in fp32 whatever the data type."""
    return MemoryTerm(item, elements * 4, kind, assumption, elements if show else None)


# --- inference: the forward of one layer ---------------------------------------------------------


def _layer_input(c: Ctx, layer: int) -> MemoryTerm | None:
    return term("layer input", c.n * c.out, c.nb, "kept", f"layer {layer - 1}'s output") if layer else None


def _forward_output(c: Ctx, layer: int) -> MemoryTerm:
    both = " per direction and their concatenation" if c.dirs == 2 else ""
    return term("layer output", c.n * c.h * (3 if c.dirs == 2 else 1), c.nb, "peak", f"y (T, B, Dh){both}")


def _forward_scratchpad(c: Ctx, layer: int) -> MemoryTerm:
    return _fp32(
        "oneDNN scratchpad",
        (c.t + 1) * c.b * c.h,
        "peak",
        "the c states of every step, fp32 (the part of the inference scratchpad a forward touches)",
    )


def _reordered_weights(c: Ctx, layer: int) -> MemoryTerm:
    return term(
        "reordered weights", c.g * c.h * (c.d(layer) + c.h), c.nb, "peak", "ideep's copy of W_ih, W_hh"
    )


#: Inference: what the forward of a layer holds besides the resident terms.
FORWARD: tuple[Rule, ...] = (_layer_input, _forward_output, _forward_scratchpad, _reordered_weights)


# --- training: what each layer keeps, and a layer's backward --------------------------------------


def _workspace_forward_part(c: Ctx, layer: int) -> MemoryTerm:
    ws = onednn_workspace_bytes(c.t, c.b, c.d(layer), c.h, c.nb)
    return MemoryTerm(
        f"oneDNN workspace (forward part), layer {layer}",
        c.dirs * ((c.t * c.b * _gld(c) + (c.t + 1) * c.b * c.h) * 4),
        "kept",
        f"per direction the gates T·B·ld(4Dh) and c_t (T+1)·B·Dh, fp32, of a {ws:,} B workspace "
        "(the rest is touched in backward or not at all)",
        None,
    )


def _kept_output(c: Ctx, layer: int) -> MemoryTerm:
    both = "; and their concatenation" if c.dirs == 2 else ""
    return term(
        f"layer output, layer {layer}",
        c.dirs * c.n * c.h + (c.n * c.out if c.dirs == 2 else 0),
        c.nb,
        "kept",
        f"y (T, B, Dh) per direction, kept for backward{both}",
    )


#: Training: what each layer keeps for backward (the touched part of its workspace, its output).
KEPT: tuple[Rule, ...] = (_workspace_forward_part, _kept_output)


def _forward_scratchpad_training(c: Ctx, layer: int) -> MemoryTerm:
    return MemoryTerm(
        "oneDNN scratchpad (forward)",
        c.t * c.b * _gld(c) * 4 if c.b < 128 else c.b * _gld(c) * 4,
        "peak",
        f"the gate pre-activations of layer {layer}'s steps, fp32 (one step's with B >= 128); "
        "the directions run one after the other",
        None,
    )


def _output_gradient(c: Ctx, layer: int) -> MemoryTerm:
    return _fp32(
        "output gradient",
        c.n * c.h,
        "peak",
        "dy (T, B, Dh) made contiguous, fp32 (the directions' backward calls run one after the other)",
    )


def _diff_states(c: Ctx, layer: int) -> MemoryTerm:
    ld_d = good_ld(max(c.d(layer), c.h), 4)
    return _fp32(
        "oneDNN diff states",
        3 * (c.t + 1) * c.b * ld_d + (c.t + 1) * c.b * c.h,
        "peak",
        "workspace touched in backward, fp32: diff layer states (2 rows) and diff iter states "
        "(T+1)·B·ld(max(d, Dh)), diff c states (T+1)·B·Dh",
        show=False,
    )


def _backward_scratchpad(c: Ctx, layer: int) -> MemoryTerm:
    return _fp32(
        "oneDNN scratchpad (backward)",
        c.t * c.b * _gld(c),
        "peak",
        "the gate gradients of every step, fp32",
        False,
    )


def _input_gradient(c: Ctx, layer: int) -> MemoryTerm | None:
    if not layer:
        return None
    each = ", one per direction before they are summed" if c.dirs == 2 else ""
    return _fp32("input gradient", c.dirs * c.n * c.d(layer), "peak", f"dX (T, B, d), fp32{each}")


def _weight_copies(c: Ctx, layer: int) -> MemoryTerm:
    return MemoryTerm(
        "weight copies",
        c.g * c.h * (c.d(layer) + c.h) * (2 * c.nb + 4),
        "peak",
        "ideep's reordered W_ih, W_hh for forward and backward, and their fp32 gradients",
        None,
    )


def _gradients_above(c: Ctx, layer: int) -> MemoryTerm:
    return grads(c, layer + 1, c.nb)


#: Training: what the backward of a layer holds besides the resident and kept terms.
BACKWARD: tuple[Rule, ...] = (
    _output_gradient,
    _diff_states,
    _backward_scratchpad,
    _input_gradient,
    _weight_copies,
    _gradients_above,
)


def terms(c: Ctx) -> tuple[str, list[MemoryTerm]]:
    """The oneDNN path: the forward of the largest layer, or the end of forward or a layer's backward."""
    base = resident(c)
    if not c.wl.training:
        return best(
            (f"forward of layer {layer}", [*base, *phase(c, layer, FORWARD)]) for layer in range(c.layers)
        )
    kept = Kept()
    for layer in range(c.layers):
        for t in phase(c, layer, KEPT):
            kept.add(t)
        kept.end_layer()
    top = c.layers - 1
    end: Phase = ("end of forward", [*base, kept.layers_upto(top), _forward_scratchpad_training(c, top)])
    backward: list[Phase] = [
        (f"backward of layer {layer}", [*base, kept.layers_upto(layer), *phase(c, layer, BACKWARD)])
        for layer in range(top, -1, -1)
    ]
    return best([end, *backward])
