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

**Term tables**, one per path and device (:data:`PATH_TERMS`), each a tuple of small term rules
per phase (``base``: the sizes and shared terms; ``onednn``, ``stepwise``: the CPU paths;
``cudnn``, ``cudasteps``, ``cuda``: the CUDA paths, the caching allocator and cuBLAS; ``setup``:
the CUDA device's facts and cuDNN's calibration, as data). What a cell
keeps for backward on each path comes from its registry entry
(:class:`paramcalc.core.memrules.MemoryRules`); a cell without rules gets a guess, and the
model's notes say so. Notation: ``N`` real tokens, ``B`` batch, ``T`` steps, ``Dh`` hidden,
``R`` the width of ``h``, ``G`` gate blocks, ``d_l`` a layer's input width, ``O`` its output
width, ``D`` directions.

* resident before the call: the parameters and the input ``(T, B, d)`` (and the zero initial
  states the module makes);
* training on a step-by-step path: the activations each layer keeps for backward (per token, the
  entry's rule), the layer outputs that feed the next layer, and at the peak either the top
  layer's input projection ``x·W_ihᵀ`` of all steps (end of forward) or a layer's backward
  buffers (gradient of the gates of every step, ``dX``), plus the parameter gradients
  accumulated by then; oneDNN keeps its output and a workspace of gates and cell states. No
  optimizer (Adam's two moments are a separate ``optimizer`` term that the cost view shows and
  the bench peak leaves out);
* inference: layer by layer, the layer's input, its input projection of all steps, the
  per-step outputs and their stacked copy (native), or the output and oneDNN's scratchpad;
* on a CPU, two allocator terms fitted to measured peaks (``docs/memory.md``): the buffers the
  GEMM and threading libraries keep (:data:`BLAS_BUFFERS`), and what glibc keeps resident once
  its mmap threshold has risen to the call's largest block, in units of that block
  (:data:`ALLOCATOR_RETENTION`, :func:`largest_block`). CPU peaks are resident-set peaks;
* on CUDA, what ``torch.cuda.max_memory_allocated`` counts: every tensor as the caching
  allocator's block, cuBLAS's workspaces (step-by-step paths), and on the cuDNN path its three
  phases with the reserve space and the workspaces (:mod:`.cudnn`). The device's facts and cuDNN's
  training-workspace calibration come in as a :class:`CudaSetup`
  (:func:`paramcalc.bridge.devices.cuda_setup`); the notes name the rules' sources, the device,
  the versions and whether a calibration was used.
"""

from __future__ import annotations

from collections.abc import Callable

from ...errors import ParamcalcError
from ..spec import RecurrentSpec
from ..workload import Workload
from . import cudasteps, cudnn, onednn, stepwise
from .base import (
    CUDNN,
    FALLBACK_PATH,
    FUSED_CELL,
    KINDS,
    NATIVE,
    ONEDNN,
    PATHS,
    REFERENCE,
    Ctx,
    MemoryModel,
    MemoryTerm,
    make_ctx,
    optimizer_term,
)
from .cuda import block
from .onednn import good_ld, onednn_workspace_bytes
from .setup import CudaSetup, CudnnCalibration

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

Builder = Callable[[Ctx], tuple[str, list[MemoryTerm]]]

#: The term table of each kernel path, ``(path, on CUDA) -> builder``. cuDNN and the fused cells
#: exist on CUDA only; the others have a CPU table (also used on MPS and the like) and a CUDA one.
PATH_TERMS: dict[tuple[str, bool], Builder] = {
    (ONEDNN, False): onednn.terms,
    (ONEDNN, True): onednn.terms,
    (NATIVE, False): stepwise.native,
    (REFERENCE, False): stepwise.reference,
    (CUDNN, True): cudnn.terms,
    (FUSED_CELL, True): cudasteps.cell,
    (NATIVE, True): lambda c: (
        cudasteps.cell(c) if c.spec.cell_type.single_step else cudasteps.other(c, NATIVE)
    ),
    (REFERENCE, True): cudasteps.reference,
}
#: Paths that run on CUDA only: modelled on CUDA whatever ``device_type`` says.
CUDA_ONLY = (CUDNN, FUSED_CELL)


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


# --- the CPU allocator -------------------------------------------------------------------------


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


def _library_buffers(c: Ctx, path: str) -> MemoryTerm:
    return MemoryTerm(
        "library buffers",
        min(BLAS_BUFFERS, c.wl.tokens * c.g * c.h * c.nb),
        "allocator",
        f"buffers the GEMM and threading libraries keep once a run is large (about "
        f"{BLAS_BUFFERS >> 20} MiB on one thread, less for a tiny run; measured, docs/memory.md)",
    )


def _retention(c: Ctx, path: str) -> MemoryTerm | None:
    blocks = ALLOCATOR_RETENTION.get((path, c.wl.mode), 0.0)
    if not blocks:
        return None
    size = largest_block(c.spec, c.wl)
    return MemoryTerm(
        "allocator retention",
        int(blocks * size),
        "allocator",
        f"{blocks:g} × the call's largest block ({size:,} B, at most 32 MiB): glibc keeps "
        "freed heap blocks resident once its mmap threshold has risen to that block; fitted, "
        "docs/memory.md",
    )


#: The CPU's allocator terms, added to every CPU path's peak.
CPU_ALLOCATOR = (_library_buffers, _retention)


# --- the model ------------------------------------------------------------------------------------


def _check(
    spec: object, workload: object, optimizer: str | None, cuda: object
) -> tuple[RecurrentSpec, Workload]:
    if not isinstance(spec, RecurrentSpec):
        from ..coerce import as_spec

        spec = as_spec(spec, "memory_model")
    wl = workload if workload is not None else Workload()
    if not isinstance(wl, Workload):
        raise ParamcalcError(f"memory_model needs a Workload, got {type(wl).__name__}")
    if optimizer not in (None, "adam"):
        raise ParamcalcError(f"optimizer must be None or 'adam', got {optimizer!r}")
    if cuda is not None and not isinstance(cuda, CudaSetup):
        raise ParamcalcError(f"cuda must be a CudaSetup or None, got {type(cuda).__name__}")
    return spec, wl


def memory_model(
    spec: RecurrentSpec,
    workload: Workload | None = None,
    path: str | None = None,
    *,
    device_type: str = "cpu",
    optimizer: str | None = None,
    cuda: CudaSetup | None = None,
) -> MemoryModel:
    """The memory of one call of ``spec`` on ``workload`` by kernel ``path`` (see the module docstring).

    ``path`` defaults to :func:`predict_path` for ``device_type`` (oneDNN assumed available,
    its bf16/fp16 kernels not); a path of another name (``MPS``) is modelled as ``native``.
    ``optimizer="adam"`` adds Adam's moments as a term outside the peak. ``cuda``: the CUDA
    device's facts and calibration (:class:`CudaSetup`; ``None``: an H100/H200-class device
    without a calibration is assumed, and the notes say so).
    """
    spec, wl = _check(spec, workload, optimizer, cuda)
    if path is None:
        path = predict_path(spec, wl, device_type)
    c = make_ctx(spec, wl, cuda)
    used = path
    if path not in PATHS:
        c.note(f"kernel path {path!r} is modelled as {FALLBACK_PATH!r}")
        used = FALLBACK_PATH
    on_cuda = device_type == "cuda" or used in CUDA_ONLY
    phase, terms = PATH_TERMS[(used, on_cuda)](c)
    if device_type == "cpu" and not on_cuda:
        terms += [t for rule in CPU_ALLOCATOR if (t := rule(c, used)) is not None]
    if optimizer == "adam" and wl.training:
        terms.append(optimizer_term(c))
    return MemoryModel(spec, wl, path, device_type, phase, tuple(terms), tuple(c.notes))


def memory_terms(
    spec: RecurrentSpec,
    workload: Workload | None = None,
    path: str | None = None,
    *,
    device_type: str = "cpu",
    cuda: CudaSetup | None = None,
) -> dict[str, int]:
    """The model's terms by name, in bytes (the peak's terms; no optimizer)."""
    m = memory_model(spec, workload, path, device_type=device_type, cuda=cuda)
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
    cuda: CudaSetup | None = None,
) -> int:
    """Bytes held at the peak of one call (the sum of :func:`memory_model`'s terms, no optimizer)."""
    return memory_model(spec, workload, path, device_type=device_type, cuda=cuda).peak_bytes


__all__ = [
    "CUDNN",
    "FUSED_CELL",
    "KINDS",
    "NATIVE",
    "ONEDNN",
    "PATHS",
    "REFERENCE",
    "CudaSetup",
    "CudnnCalibration",
    "MemoryModel",
    "MemoryTerm",
    "block",
    "good_ld",
    "largest_block",
    "memory_model",
    "memory_terms",
    "onednn_workspace_bytes",
    "peak_bytes",
    "predict_path",
]
