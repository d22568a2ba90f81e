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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .base import Ctx, MemoryTerm

if TYPE_CHECKING:  # pragma: no cover
    from .cudnn import CudnnCalibration

MIB = 1 << 20
#: The caching allocator's constants (``CUDACachingAllocator.h``).
MIN_BLOCK = 512
SMALL_SIZE = 1 * MIB
MIN_LARGE_ALLOC = 10 * MIB
ROUND_LARGE = 2 * MIB
#: cuBLAS's default workspace per handle and stream: compute capability 9, 10, 12 / the others.
CUBLAS_WORKSPACE_LARGE = 4096 * 1024 * 8
CUBLAS_WORKSPACE_SMALL = 4096 * 1024 * 2 + 16 * 1024 * 8
#: cuBLASLt's workspace (``CUBLASLT_WORKSPACE_SIZE``, 1024 KiB by default).
CUBLASLT_WORKSPACE = 1 * MIB
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


@dataclass(frozen=True)
class CudaSetup:
    """The device and libraries a CUDA run uses, as far as its memory depends on them.

    ``capability`` and ``multiprocessors``: ``None`` when not known (then an H100/H200-class
    device, 9.0 with at least 98 SMs, is assumed, and the notes say so). ``versions``: torch,
    CUDA, cuDNN and driver, as named in the notes. ``cublas_workspace``: bytes per cuBLAS handle
    when ``CUBLAS_WORKSPACE_CONFIG`` sets them (``None``: torch's default for the device).
    ``bf16_weights_flat``: cuDNN's weights are in one buffer in bf16 too
    (:func:`paramcalc.bridge.driver.flatten_weights` flattens them; torch's own
    ``flatten_parameters`` skips bf16, and each call then copies them). ``calibration``: cuDNN's
    training-workspace coefficients for this device and stack, if measured.
    """

    name: str = ""
    capability: tuple[int, int] | None = None
    multiprocessors: int | None = None
    versions: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    cublas_workspace: int | None = None
    bf16_weights_flat: bool = True
    calibration: CudnnCalibration | None = field(default=None, hash=False)

    @property
    def assumed(self) -> bool:
        return self.capability is None

    @property
    def major_minor(self) -> tuple[int, int]:
        return self.capability or (9, 0)

    @property
    def sms(self) -> int:
        return self.multiprocessors if self.multiprocessors is not None else 132

    def cublas_bytes(self) -> int:
        """One cuBLAS workspace (per handle and stream)."""
        if self.cublas_workspace is not None:
            return self.cublas_workspace
        return CUBLAS_WORKSPACE_LARGE if self.major_minor[0] in (9, 10, 12) else CUBLAS_WORKSPACE_SMALL

    def describe(self) -> str:
        if self.assumed:
            return "an assumed H100/H200-class device (compute capability 9.0, at least 98 SMs)"
        major, minor = self.major_minor
        sms = f", {self.multiprocessors} SMs" if self.multiprocessors is not None else ""
        labels = {"driver": "driver", "cuda": "CUDA", "cudnn": "cuDNN", "torch": "torch"}
        extra = "".join(f", {labels.get(k, k)} {v}" for k, v in self.versions.items() if v)
        return f"{self.name or 'a CUDA device'} (compute capability {major}.{minor}{sms}{extra})"


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
