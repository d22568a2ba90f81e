"""The torch edge: turn a ``RecurrentSpec`` into a real ``torch.nn`` module on a device.

This is the only place that knows how paramcalc's specs map onto PyTorch's constructors and how
a device name the user typed maps onto an available ``torch.device``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .errors import ParamcalcError
from .spec import RecurrentSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

_DEVICE_RE = re.compile(r"^(cpu|meta|mps|cuda)(?::(\d+))?$")

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "int8"}


def resolve_device(name: str) -> torch.device:
    """Map ``cpu``, ``meta``, ``cuda``, ``cuda:N`` or ``mps`` onto an available ``torch.device``.

    Raises :class:`ParamcalcError` (one line) when the name is unknown or the device is absent.
    """
    import torch

    text = str(name).strip().lower()
    m = _DEVICE_RE.match(text)
    if not m:
        raise ParamcalcError(f"unknown device {name!r}: expected cpu, meta, cuda, cuda:N or mps")
    kind, index = m.group(1), m.group(2)
    if kind in ("cpu", "meta"):
        if index not in (None, "0"):
            raise ParamcalcError(f"device {name!r} does not exist: {kind} has no index {index}")
        return torch.device(kind)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ParamcalcError(f"device {name!r} is not available: this torch sees no CUDA device")
        count = torch.cuda.device_count()
        i = int(index or 0)
        if i >= count:
            raise ParamcalcError(
                f"device {name!r} is not available: only {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
            )
        return torch.device("cuda", i)
    # mps
    if index not in (None, "0"):
        raise ParamcalcError(f"device {name!r} does not exist: mps has only index 0")
    if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ParamcalcError(f"device {name!r} is not available: MPS needs Apple silicon with macOS 12.3+")
    return torch.device("mps")


def torch_equivalent(spec: RecurrentSpec) -> RecurrentSpec:
    """The spec PyTorch can build: a Keras spec becomes its torch-convention counterpart."""
    if spec.convention == "torch":
        return spec
    return spec.replace(convention="torch", reset_after=True)


def module_kwargs(spec: RecurrentSpec) -> dict[str, Any]:
    """Constructor keyword arguments of the ``torch.nn`` class for ``spec``."""
    ct = spec.cell_type
    kw: dict[str, Any] = {
        "input_size": spec.input_size,
        "hidden_size": spec.hidden_size,
        "bias": spec.bias,
    }
    if ct.family == "rnn":
        kw["nonlinearity"] = ct.nonlinearity
    if not ct.single_step:
        kw.update(num_layers=spec.num_layers, bidirectional=spec.bidirectional)
        if spec.proj_size:
            kw["proj_size"] = spec.proj_size
    return kw


def build_module(
    spec: RecurrentSpec, device: str | torch.device = "meta", dtype: torch.dtype | None = None
) -> nn.Module:
    """Instantiate the real ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (or cell) for ``spec`` on ``device``.

    A Keras-convention spec is built as its torch equivalent (see :func:`torch_equivalent`).
    """
    from torch import nn

    spec = torch_equivalent(spec)
    dev = resolve_device(device) if isinstance(device, str) else device
    cls = getattr(nn, spec.cell_type.torch_class)
    try:
        return cls(**module_kwargs(spec), device=dev, dtype=dtype)
    except RuntimeError as exc:  # e.g. CUDA out of memory
        if "out of memory" in str(exc).lower():
            raise ParamcalcError(f"out of memory building {spec.describe()} on {dev}") from None
        raise
