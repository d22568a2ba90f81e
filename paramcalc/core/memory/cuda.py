"""What a CUDA run holds besides its tensors: the caching allocator's blocks and cuBLAS's workspaces.

Pure Python: the device's facts come in as a :class:`CudaSetup` (the bridge reads them from
torch, :func:`paramcalc.bridge.devices.cuda_setup`); without one the model assumes an
H100/H200-class device and says so.

* **The caching allocator** (``c10/cuda/CUDACachingAllocator.cpp``, torch 2.11):
  ``max_memory_allocated`` counts blocks. A request is rounded up to 512 B (``kMinBlockSize``);
  one of 10 MiB or more (``kMinLargeAlloc``) that gets a fresh segment gets it rounded to 2 MiB
  (``kRoundLarge``) and keeps the whole segment when no more than 1 MiB (``kSmallSize``) would be
  left over (``should_split``): :func:`block`.
* **cuBLAS** (``aten/src/ATen/cuda/CublasHandlePool.cpp``): a workspace per (handle, stream),
  allocated through the caching allocator at the handle's first GEMM and kept: 32 MiB on compute
  capability 9.x, 10.x and 12.x (``:4096:8``), else ``:4096:2:16:8`` = 8.125 MiB, or what
  ``CUBLAS_WORKSPACE_CONFIG`` says; cuBLASLt (``addmm`` with a bias) has its own 1 MiB
  (``CUBLASLT_WORKSPACE_SIZE``). Handles are per thread: autograd's device thread, which runs
  the backward's GEMMs, gets a second workspace. The cuDNN path calls no cuBLAS.
"""

from __future__ import annotations

from .base import Ctx, MemoryTerm
from .setup import CUBLASLT_WORKSPACE, MIB, CudaSetup

#: The caching allocator's constants (``CUDACachingAllocator.h``).
MIN_BLOCK = 512
SMALL_SIZE = 1 * MIB
MIN_LARGE_ALLOC = 10 * MIB
ROUND_LARGE = 2 * MIB
#: Where the CUDA rules were read and checked (named in every CUDA model's notes).
RULES_FROM = (
    "rules read from torch 2.11's sources (cuDNN RNN.cpp, CublasHandlePool.cpp, CUDACachingAllocator.cpp) "
    "and checked against 4,972 traced calls on an NVIDIA H200 (torch 2.11.0+cu130, cuDNN 9.19)"
)


def block(n: int) -> int:
    """The block the caching allocator hands out for a fresh request of ``n`` bytes."""
    if n <= 0:
        return 0
    r = -(-n // MIN_BLOCK) * MIN_BLOCK
    if r < MIN_LARGE_ALLOC:
        return r
    segment = -(-r // ROUND_LARGE) * ROUND_LARGE
    return segment if segment - r <= SMALL_SIZE else r


def setup_of(c: Ctx) -> CudaSetup:
    return c.cuda if c.cuda is not None else CudaSetup()


def cublas_terms(c: Ctx, lt: bool = False) -> list[MemoryTerm]:
    """cuBLAS's workspaces a step-by-step path holds: the forward thread's, autograd's in training,
    and cuBLASLt's where a bias GEMM goes through it."""
    size = setup_of(c).cublas_bytes()
    why = f"{size:,} B per cuBLAS handle and stream (CublasHandlePool.cpp), kept once its first GEMM ran"
    terms = [MemoryTerm("cuBLAS workspace (forward thread)", size, "library", why)]
    if lt:
        terms.append(
            MemoryTerm(
                "cuBLASLt workspace (forward thread)",
                CUBLASLT_WORKSPACE,
                "library",
                "addmm with a bias runs through cuBLASLt, whose 1 MiB workspace is its own "
                "(CUBLASLT_WORKSPACE_SIZE)",
            )
        )
    if c.wl.training:
        terms.append(
            MemoryTerm(
                "cuBLAS workspace (autograd thread)",
                size,
                "library",
                "autograd's device thread runs the backward's GEMMs with its own cuBLAS handle: " + why,
            )
        )
    return terms


def blocked(item: str, nbytes: int, kind: str, assumption: str) -> MemoryTerm:
    """A tensor of ``nbytes`` as the caching allocator counts it (:func:`block`)."""
    return MemoryTerm(item, block(nbytes), kind, assumption)


def resident(c: Ctx, input_elements: int) -> list[MemoryTerm]:
    """The parameters and the input, already allocated, as blocks."""
    from ..params import total_params

    return [
        blocked(
            "parameters",
            total_params(c.spec) * c.nb,
            "resident",
            f"every parameter in {c.wl.dtype}, already allocated",
        ),
        blocked("input", input_elements * c.nb, "resident", "the input, already allocated"),
    ]


def notes(c: Ctx) -> None:
    """Where the CUDA figures come from: the rules, the device and (cuDNN) the calibration."""
    s = setup_of(c)
    c.note(f"CUDA memory model for {s.describe()}: {RULES_FROM}")
