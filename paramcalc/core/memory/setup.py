"""What a CUDA run's memory depends on besides the spec and the workload (pure data).

* :class:`CudaSetup`: the device (name, compute capability, SMs), the library versions, the
  cuBLAS workspace size, whether bf16 weights are flat, and cuDNN's calibration. The bridge reads
  it from torch (:func:`paramcalc.bridge.devices.cuda_setup`); the model assumes an
  H100/H200-class device without one, and says so.
* :class:`CudnnCalibration`: cuDNN's training-workspace coefficients over :data:`TRAIN_BASIS`,
  measured on one device and stack (:mod:`paramcalc.bridge.calibration` keeps them on disk).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import ParamcalcError
from ..memrules import CUDNN_MODES

MIB = 1 << 20
#: cuBLAS's default workspace per handle and stream: compute capability 9, 10, 12 / the others.
CUBLAS_WORKSPACE_LARGE = 4096 * 1024 * 8
CUBLAS_WORKSPACE_SMALL = 4096 * 1024 * 2 + 16 * 1024 * 8
#: cuBLASLt's workspace (``CUBLASLT_WORKSPACE_SIZE``, 1024 KiB by default).
CUBLASLT_WORKSPACE = 1 * MIB
STANDARD, SMALL_H, PERSIST = "std", "small_h", "persist"
#: cuDNN's names of the algorithms (``cudnnRNNAlgo_t``).
ALGO_NAMES = {STANDARD: "STANDARD", SMALL_H: "PERSIST_STATIC_SMALL_H", PERSIST: "PERSIST_STATIC"}
#: The training form's features (bytes), whose coefficients a calibration holds.
TRAIN_BASIS = (
    "c", "LD8", "w", "BHLD", "NH", "NGH", "Nd", "Ndx", "NHL1", "NHD2", "BHD2L", "NHDL", "NdD2",
    "NHp", "Ndp", "Ndxp", "NHL1p",
)  # fmt: skip
#: Bounds a calibration file is read within.
MAX_COEF_SETS = 64
MAX_COEF = 1e12


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


@dataclass(frozen=True)
class CudnnCalibration:
    """cuDNN's training-workspace coefficients, measured on one device and software stack.

    ``key``: what the sizes depend on (device name, SM count, compute capability, driver, CUDA,
    cuDNN and torch versions); ``coef``: ``(phase/algorithm/mode, coefficients)`` pairs over
    :data:`TRAIN_BASIS`; ``source``: how they were measured; ``origin``: the file they came from.
    """

    key: tuple[tuple[str, str], ...]
    coef: tuple[tuple[str, tuple[float, ...]], ...]
    source: str = ""
    origin: str = ""
    fit_runs: int = 0

    def coefficients(self, key: str) -> tuple[float, ...] | None:
        return dict(self.coef).get(key)

    def describe(self) -> str:
        """The file, the device and versions it holds for, and how it was measured."""
        k = dict(self.key)
        names = (("multiprocessors", "SMs"), ("sm", "sm"), ("driver", "driver"), ("cuda", "CUDA"))
        parts = [k.get("device") or "a CUDA device", *(f"{label} {k[f]}" for f, label in names if k.get(f))]
        parts += [f"{label} {k[f]}" for f, label in (("cudnn", "cuDNN"), ("torch", "torch")) if k.get(f)]
        how = f"; {self.source}" if self.source else ""
        return f"{self.origin or 'given'} ({', '.join(parts)}{how})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": dict(self.key),
            "basis": list(TRAIN_BASIS),
            "source": self.source,
            "n_fit_runs": self.fit_runs,
            "coef": {k: list(v) for k, v in self.coef},
        }

    @classmethod
    def from_dict(cls, doc: Any, origin: str = "") -> CudnnCalibration:
        """Read a calibration document; one-line :class:`ParamcalcError` when it is not one."""
        if not isinstance(doc, Mapping):
            raise ParamcalcError("a cuDNN calibration must be a JSON object")
        key, basis, coef = doc.get("key"), doc.get("basis"), doc.get("coef")
        if not isinstance(key, Mapping) or not all(isinstance(v, (str, int)) for v in key.values()):
            raise ParamcalcError("a cuDNN calibration needs a 'key' object of names and versions")
        if basis != list(TRAIN_BASIS):
            raise ParamcalcError("the cuDNN calibration's basis is not this model's: measure it again")
        if not isinstance(coef, Mapping) or not 0 < len(coef) <= MAX_COEF_SETS:
            raise ParamcalcError(f"a cuDNN calibration needs 1..{MAX_COEF_SETS} coefficient sets in 'coef'")
        runs = doc.get("n_fit_runs", 0)
        return cls(
            key=tuple((str(k)[:40], str(v)[:80]) for k, v in key.items()),
            coef=tuple((str(k), _coefficients(k, v)) for k, v in coef.items()),
            source=str(doc.get("source") or "")[:300],
            origin=origin[:200],
            fit_runs=runs if type(runs) is int and runs >= 0 else 0,
        )


def _coefficients(key: Any, values: Any) -> tuple[float, ...]:
    phase, _, rest = str(key).partition("/")
    alg, _, mode = rest.partition("/")
    if phase not in ("fwd", "bwd") or alg not in ALGO_NAMES or mode not in CUDNN_MODES:
        raise ParamcalcError(f"the cuDNN calibration has an unknown coefficient set {str(key)[:40]!r}")
    if not isinstance(values, list) or len(values) != len(TRAIN_BASIS):
        raise ParamcalcError(f"the cuDNN calibration's set {key!r} needs {len(TRAIN_BASIS)} coefficients")
    out = []
    for v in values:
        if type(v) not in (int, float) or not math.isfinite(v) or abs(v) > MAX_COEF:
            raise ParamcalcError(
                f"the cuDNN calibration's set {key!r} holds a coefficient that is not a finite number"
            )
        out.append(float(v))
    return tuple(out)
