"""The ``cuDNN`` path: torch's ``_cudnn_rnn`` (v8 API) and the buffers cuDNN asks for.

Sources: ``aten/src/ATen/native/cudnn/RNN.cpp`` (torch 2.11: the allocation order, ``get_algo``)
and what cuDNN 9.19 returned on an NVIDIA H200 for 4,972 traced calls (every cell, dtype,
algorithm, bidirectional, projected and packed). Sizes are requested bytes; the terms are the
caching allocator's blocks of them (:func:`.cuda.block`).

* **phases**: forward (``hx``/``cx`` zeros, the output, ``hy``/``cy``, the workspace and in
  training the reserve space); backward data (``dL/dh_n`` zeros, ``dy`` made contiguous, ``dx``,
  ``dhx``, the workspace again); backward weights (``dw``: the parameter gradients, views of one
  buffer, and the workspace a third time). The peak is the largest phase.
* **algorithm** (:func:`algo`): torch's ``get_algo``: a projection or a packed input runs
  STANDARD; else PERSIST_STATIC_SMALL_H for Dh <= 384 (RNN) / 192 (LSTM, GRU) forward and 256 /
  128 backward; fp16 PERSIST_STATIC under torch's common and device heuristics. cuDNN 9.19 sizes
  (and times) bf16 small-H exactly as STANDARD, so bf16 counts as STANDARD.
* **reserve** (:func:`reserve_bytes`): ``nb·N·(L·D·(k·Dh [+ Dh + P with a projection]) +
  (L-1)·D·Dh) + 256``, ``k`` from the cell's :class:`~paramcalc.core.memrules.CudnnRule`:
  exact within 36 B on 2,504 traced training calls.
* **inference workspace** (:func:`workspace_inference`): per layer-direction 8 MiB and the
  weights, ``(B, Dh)`` state buffers, and per algorithm the input GEMM's gates (STANDARD: of at
  most 256 steps unidirectional), the staged input and output: within 4 KiB on 2,350 of 2,468
  traced calls (projected LSTM: within 8.3%).
* **training workspace** (:func:`workspace_training`): the larger of the inference form and a
  linear form in 17 physical features (:data:`TRAIN_BASIS`) whose coefficients cuDNN's choices
  make a measurement: a :class:`CudnnCalibration` (held out: median 0.56%, p90 3%). Without one,
  the inference form, and the notes say so.
"""

from __future__ import annotations

from typing import Any

from ..memrules import CudnnRule
from ..spec import RecurrentSpec
from ..workload import Workload
from .base import Ctx, MemoryTerm, best, make_ctx
from .cuda import block, blocked, notes, resident, setup_of
from .setup import ALGO_NAMES, MIB, PERSIST, SMALL_H, STANDARD, CudaSetup

#: cuDNN's constant per layer-direction in every workspace (the same 8 MiB in every algorithm).
LAYER_CONST = 8 * MIB
#: STANDARD inference computes the input GEMM of at most this many steps at a time (unidirectional).
STEP_CHUNK = 256


def rule_of(c: Ctx) -> CudnnRule:
    """The cell's cuDNN rule; a guess (with a note) for a cell without one."""
    rules = c.spec.cell_type.memory
    if rules is not None and rules.cudnn is not None:
        return rules.cudnn
    name = c.spec.cell_type.display_name
    c.note(
        f"memory is a guess: {name} has no cuDNN rule in its registry entry (CellType.memory): its reserve "
        f"space is taken as {c.g + 2}·Dh per token and its workspaces as an LSTM's"
    )
    return CudnnRule("lstm", reserve=c.g + 2, standard=2 * c.g + 2, persistent=2 * c.g)


# --- the algorithm torch asks for ------------------------------------------------------------------


def _small_h(mode: str, h: int, forward: bool) -> bool:
    """torch's ``use_rnn_persist_small_h`` (cuDNN >= 8.2.1, compute capability >= 6)."""
    if mode == "rnn":
        return h <= (384 if forward else 256)
    return h <= (192 if forward else 128)


def _persist_device(c: Ctx, mode: str) -> bool:
    """torch's ``use_persist_device_heuristics`` for fp16 PERSIST_STATIC."""
    s, b, t = setup_of(c), c.b, c.t
    major, minor = s.major_minor
    if major == 7:
        fits = (t >= 40 and b <= 128) or (t >= 20 and b <= 96) or (t >= 10 and b <= 32)
        return minor != 5 and ((b % 16 == 0 and b not in (80, 112)) or b == 8) and fits
    if major < 8 or s.sms < 98 or minor == 6 or mode == "gru":
        return False
    return b % 8 == 0 and b <= 128 and (mode == "lstm" or b < 96 or c.h < 896)


def algo(c: Ctx, rule: CudnnRule, forward: bool) -> str:
    """The algorithm cuDNN sizes the call's buffers by (torch's ``get_algo``; bf16 small-H: STANDARD)."""
    if c.spec.proj_size or c.wl.lengths is not None:
        return STANDARD
    if setup_of(c).major_minor[0] >= 6 and _small_h(rule.mode, c.h, forward):
        return STANDARD if c.wl.dtype == "bf16" else SMALL_H
    common = c.layers == 1 and c.dirs == 1 and c.h <= 1024 and c.h % 128 == 0 and c.d(0) % 128 == 0
    if c.wl.dtype == "fp16" and common and _persist_device(c, rule.mode):
        return PERSIST
    return STANDARD


# --- the buffers -----------------------------------------------------------------------------------


def weight_elements(c: Ctx) -> int:
    """cuDNN's weight space without the biases: W_ih, W_hh (and W_hr) of every layer-direction."""
    o, p = c.r, c.spec.proj_size
    first = c.g * c.h * (c.d(0) + o) + p * c.h
    upper = c.g * c.h * (c.d(1) + o) + p * c.h if c.layers > 1 else 0
    return c.dirs * (first + (c.layers - 1) * upper)


def reserve_bytes(c: Ctx, rule: CudnnRule) -> int:
    """cudnnGetRNNTempSpaceSizes' reserve space (training only)."""
    p = c.spec.proj_size
    per = rule.reserve * c.h + ((c.h + p) if p else 0)
    return c.nb * c.n * (c.layers * c.dirs * per + (c.layers - 1) * c.dirs * c.h) + 256


def _first_steps_tokens(c: Ctx) -> int:
    if c.wl.lengths is None:
        return min(c.t, STEP_CHUNK) * c.b
    return sum(c.wl.step_batch(t) for t in range(min(c.t, STEP_CHUNK)))


def workspace_inference(c: Ctx, rule: CudnnRule, alg: str) -> int:
    """The workspace of CUDNN_FWD_MODE_INFERENCE (also the floor of every training workspace)."""
    g, h, d, layers, dirs, b, nb, n = c.g, c.h, c.d(0), c.layers, c.dirs, c.b, c.nb, c.n
    ws = 512 + layers * dirs * LAYER_CONST + nb * weight_elements(c)
    if alg == STANDARD:
        ws += nb * layers * dirs * b * rule.standard * h
        ws += nb * (_first_steps_tokens(c) if dirs == 1 else n) * g * h * dirs
        if c.wl.lengths is None:  # the (T, B, ·) input and output staged in cuDNN's packed layout
            ws += nb * (n * d + n * h * dirs)  # a projected LSTM still stages Dh-wide outputs
        if dirs == 2:
            ws += nb * h * (4 * (n + b) + 4 * (layers - 1) * b)
        return ws
    ws += nb * layers * dirs * b * rule.persistent * h
    per_dir = (5 * g + 1) if dirs == 1 else (3 * g + 3)
    ws += nb * n * (per_dir * h * dirs + d)
    if dirs == 2:
        ws += 2 * nb * b * h * layers
    return ws


def train_features(c: Ctx) -> list[float]:
    """The training form's features, in :data:`TRAIN_BASIS` order."""
    g, h, d, layers, dirs, b, nb, n = c.g, c.h, c.d(0), c.layers, c.dirs, c.b, c.nb, c.n
    pk = 1 if c.wl.lengths is not None else 0
    deep, two = int(layers > 1), dirs - 1
    dx = max(d - h, 0)
    return [
        1.0, layers * dirs * LAYER_CONST, nb * weight_elements(c), nb * b * h * layers * dirs,
        nb * n * h, nb * n * g * h, nb * n * d, nb * n * dx, nb * n * h * deep, nb * n * h * two,
        nb * b * h * two * layers, nb * n * h * two * deep, nb * n * d * two, nb * n * h * pk,
        nb * n * d * pk, nb * n * dx * pk, nb * n * h * deep * pk,
    ]  # fmt: skip


def workspace_training(c: Ctx, rule: CudnnRule, phase: str) -> tuple[int, str]:
    """The workspace of the training forward (``phase='fwd'``) or of each backward call (``'bwd'``):
    the larger of the inference form and the calibrated training form; and where it came from."""
    alg = algo(c, rule, phase == "fwd")
    floor = workspace_inference(c, rule, alg)
    cal = setup_of(c).calibration
    key = f"{phase}/{alg}/{rule.mode}"
    coef = cal.coefficients(key) if cal is not None else None
    if coef is None:
        return floor, f"rule only (the inference form: no calibration for {key})"
    form = sum(a * x for a, x in zip(coef, train_features(c), strict=True))
    return int(max(floor, form)), f"calibration {cal.origin if cal else ''} ({key})"


# --- the path's term table -----------------------------------------------------------------------


def _sizes(c: Ctx) -> tuple[int, int, int]:
    """Blocks of ``hx`` (and ``cx``) and of the output ``y``."""
    state = block(c.layers * c.dirs * c.b * c.r * c.nb)
    cell_state = block(c.layers * c.dirs * c.b * c.h * c.nb) if "c" in c.spec.cell_type.state_names else 0
    return state, cell_state, block(c.n * c.r * c.dirs * c.nb)


def _kept(c: Ctx) -> list[MemoryTerm]:
    """What the call holds from the start of the forward: the initial states, the output, and in
    bf16 without flat weights the copy of them every call makes."""
    state, cell_state, y = _sizes(c)
    out = [MemoryTerm("h0 (zeros)", state, "kept", "hx, (L·D, B, R), made by the module; rule")]
    if cell_state:
        out.append(MemoryTerm("c0 (zeros)", cell_state, "kept", "cx, (L·D, B, Dh), made by the module; rule"))
    out.append(MemoryTerm("output y", y, "kept", "y, (N, D·R); rule"))
    if c.wl.dtype == "bf16" and not setup_of(c).bf16_weights_flat:
        out.append(
            blocked(
                "weight copy (bf16 weights not flat)",
                _param_bytes(c),
                "kept",
                "_cudnn_rnn copies weights that are not in one buffer into a fresh one every call "
                "(torch's flatten_parameters skips bf16); source: RNN.cpp",
            )
        )
    return out


def _param_bytes(c: Ctx) -> int:
    from ..params import total_params

    return total_params(c.spec) * c.nb


def _states(c: Ctx, h_name: str, c_name: str, source: str) -> MemoryTerm:
    """A state-shaped pair (``h``, and ``c`` for a cell with a cell state) as one term."""
    state, cell_state, _ = _sizes(c)
    return MemoryTerm(f"{h_name}, {c_name}" if cell_state else h_name, state + cell_state, "peak", source)


_WORKSPACES = {
    "inference": ("cuDNN workspace (inference)", "the inference workspace"),
    "fwd": ("cuDNN workspace (training forward)", "the training forward's workspace"),
    "bwd": ("cuDNN workspace (training backward)", "each backward call's workspace (it is allocated twice)"),
}


def _workspace(c: Ctx, rule: CudnnRule, phase: str) -> MemoryTerm:
    """The workspace of ``phase`` (``inference``, ``fwd``, ``bwd``) as a block, with its source."""
    name, what = _WORKSPACES[phase]
    alg = algo(c, rule, phase != "bwd")
    if phase == "inference":
        size, source = workspace_inference(c, rule, alg), "rule (closed form)"
    else:
        size, source = workspace_training(c, rule, phase)
        if source.startswith("rule only"):
            c.note(
                f"cuDNN's training workspace is {source}: measure a calibration on the device for the "
                "training figures (docs/memory.md)"
            )
    return MemoryTerm(name, block(size), "peak", f"{what}, {ALGO_NAMES[alg]}: {size:,} B requested; {source}")


def _reserve(c: Ctx, rule: CudnnRule) -> MemoryTerm:
    size = reserve_bytes(c, rule)
    return MemoryTerm(
        "cuDNN reserve space",
        block(size),
        "kept",
        f"{rule.reserve}·Dh per token and layer-direction and the inner layers' outputs, kept for backward: "
        f"{size:,} B requested; rule (exact on 2,504 traced calls)",
    )


def _gradients_in(c: Ctx) -> list[MemoryTerm]:
    """What both backward calls hold: the zero gradients of h_n (c_n), dx and dhx (dcx)."""
    return [
        _states(
            c,
            "dL/dh_n (zeros)",
            "dL/dc_n",
            "the gradients of h_n (c_n) made for the backward; source: RNN.cpp",
        ),
        blocked("dx", c.n * c.d(0) * c.nb, "peak", "the input gradient; source: RNN.cpp"),
        _states(c, "dhx", "dcx", "the gradients of hx (cx); source: RNN.cpp"),
    ]


def _training(c: Ctx, rule: CudnnRule, base: list[MemoryTerm]) -> tuple[str, list[MemoryTerm]]:
    """The three phases: the training forward, backward data and backward weights."""
    kept, reserve, grads_in = _kept(c), _reserve(c, rule), _gradients_in(c)
    ws_bwd = _workspace(c, rule, "bwd")
    dy = MemoryTerm(
        "dy (contiguous)", _sizes(c)[2], "peak", "the output gradient made contiguous; source: RNN.cpp"
    )
    dw = blocked(
        "parameter gradients",
        _param_bytes(c),
        "peak",
        "dw, one buffer the .grad are views of; source: RNN.cpp",
    )
    forward = [*base, *kept, _states(c, "h_n", "c_n", "hy (cy); rule"), reserve, _workspace(c, rule, "fwd")]
    return best(
        [
            ("training forward", forward),
            ("backward data", [*base, *kept, reserve, *grads_in, dy, ws_bwd]),
            ("backward weights", [*base, *kept, reserve, *grads_in, dw, ws_bwd]),
        ]
    )


def terms(c: Ctx) -> tuple[str, list[MemoryTerm]]:
    """The cuDNN path: the forward (inference), or the largest of its three training phases."""
    rule = rule_of(c)
    notes(c)
    if c.wl.dtype == "bf16" and setup_of(c).bf16_weights_flat:
        c.note(
            "bf16 weights counted flat, as paramcalc's driver makes them; a module only torch's "
            "flatten_parameters saw (it skips bf16) copies them every call: the parameters' bytes more"
        )
    base = resident(c, c.n * c.d(0))
    if not c.wl.training:
        phase = [
            *base,
            *_kept(c),
            _states(c, "h_n", "c_n", "hy (cy); rule"),
            _workspace(c, rule, "inference"),
        ]
        return best([("forward", phase)])
    cal = setup_of(c).calibration
    if cal is not None:
        c.note(f"cuDNN's training workspace: calibration {cal.describe()}")
    return _training(c, rule, base)


def buffers(spec: RecurrentSpec, workload: Workload, cuda: CudaSetup | None = None) -> dict[str, Any]:
    """What cuDNN asks the allocator for in one call of ``spec`` on ``workload`` (requested bytes,
    before the caching allocator's rounding): the algorithms of the forward and the backward, the
    inference workspace, and in training the reserve space and the workspaces of the forward and
    of each backward call (with where each came from)."""
    c = make_ctx(spec, workload, cuda)
    rule = rule_of(c)
    out: dict[str, Any] = {"algo_forward": algo(c, rule, True), "algo_backward": algo(c, rule, False)}
    if not workload.training:
        out["workspace"] = workspace_inference(c, rule, out["algo_forward"])
        return out
    out["reserve"] = reserve_bytes(c, rule)
    out["workspace_forward"], out["source_forward"] = workspace_training(c, rule, "fwd")
    out["workspace_backward"], out["source_backward"] = workspace_training(c, rule, "bwd")
    return out


def training_form(spec: RecurrentSpec, workload: Workload, cuda: CudaSetup | None = None) -> dict[str, Any]:
    """What a calibration is fitted from, per phase (``fwd``, ``bwd``): the coefficient set's key
    (``phase/algorithm/mode``), the training form's features (:data:`TRAIN_BASIS`) and the floor
    (the inference form) of one training call of ``spec`` on ``workload``."""
    c = make_ctx(spec, workload, cuda)
    rule = rule_of(c)
    features = train_features(c)
    out: dict[str, Any] = {}
    for phase in ("fwd", "bwd"):
        alg = algo(c, rule, phase == "fwd")
        out[phase] = (f"{phase}/{alg}/{rule.mode}", features, workspace_inference(c, rule, alg))
    return out
