"""The torch edge: specs and architectures <-> real ``torch.nn`` modules, on a device.

This is the only place that knows how paramcalc's specs map onto PyTorch's constructors, how a
device name the user typed maps onto an available ``torch.device``, how a module is read back
into a spec (the adapter registry, keyed by module type), and how a state dict's names and
shapes are read back into specs. torch itself is imported only inside the functions that use it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .arch import (
    Architecture,
    BatchNorm1d,
    Component,
    Conv1d,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Recurrent,
)
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
    On ``cpu`` and ``cuda`` the parameters must fit in the memory that is free, else a
    :class:`ParamcalcError` suggests ``meta`` (which allocates nothing).
    """
    from torch import nn

    from .count import total_params

    spec = torch_equivalent(spec)
    dev = resolve_device(device) if isinstance(device, str) else device
    ensure_fits(total_params(spec), dev, dtype, spec.describe())
    cls = getattr(nn, spec.cell_type.torch_class)
    with _oom_as_error(spec.describe(), dev):
        return cls(**module_kwargs(spec), device=dev, dtype=dtype)


class _oom_as_error:
    """Turn an allocation failure into a one-line :class:`ParamcalcError`."""

    def __init__(self, what: str, dev: Any) -> None:
        self.what, self.dev = what, dev

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: Any, exc: Any, tb: Any) -> bool:
        if exc is None:
            return False
        text = str(exc).lower()
        if isinstance(exc, (RuntimeError, MemoryError)) and (
            "out of memory" in text or "can't allocate memory" in text or isinstance(exc, MemoryError)
        ):
            raise ParamcalcError(f"out of memory building {self.what} on {self.dev}") from None
        return False


def _available_bytes(dev: torch.device) -> int | None:
    """Free memory on ``dev`` (``None`` when unknown)."""
    if dev.type == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None
    if dev.type == "cuda":
        import torch

        try:
            return int(torch.cuda.mem_get_info(dev)[0])
        except Exception:  # pragma: no cover - driver quirks
            return None
    return None


def ensure_fits(numel: int, dev: torch.device, dtype: torch.dtype | None, what: str) -> None:
    """Refuse (one line) to allocate ``numel`` parameters that cannot fit on ``dev``."""
    if dev.type == "meta":
        return
    import torch

    size = torch.empty((), dtype=dtype or torch.get_default_dtype(), device="meta").element_size()
    need = numel * size
    free = _available_bytes(dev)
    if free is not None and need > free:
        raise ParamcalcError(
            f"{what} needs {need / 2**30:,.1f} GiB of parameters but {dev} has "
            f"{free / 2**30:,.1f} GiB free; use --device meta, which allocates no memory"
        )


# --- adapters: nn.Module -> Component (registry keyed by module type) -------------------------

#: ``adapter(module, name) -> Component | None``; ``None`` declines (the module's tensors are
#: then counted without a formula).
Adapter = Callable[[Any, str], "Component | None"]

_ADAPTERS: dict[type, Adapter] = {}
_DEFAULTS_LOADED = False


def register_adapter(module_type: type) -> Callable[[Adapter], Adapter]:
    """Register ``adapter(module, name) -> Component`` for ``module_type`` (and its subclasses).

    A user adapter overrides a built-in one for the same type::

        @register_adapter(MyGate)
        def _(m: MyGate, name: str) -> Component:
            return Custom(name, f"MyGate({m.n})", (tensor_formula("scale", (m.n,), "n", f"{m.n}"),))
    """
    if not isinstance(module_type, type):
        raise TypeError(f"register_adapter needs a class, got {module_type!r}")

    def deco(fn: Adapter) -> Adapter:
        _ADAPTERS[module_type] = fn
        return fn

    return deco


def adapter_for(module: Any) -> Adapter | None:
    """The adapter of the most specific registered class in ``type(module).__mro__``."""
    _load_default_adapters()
    for cls in type(module).__mro__:
        fn = _ADAPTERS.get(cls)
        if fn is not None:
            return fn
    return None


def component_from_module(module: Any, name: str) -> Component | None:
    """Read a module into an analytic component via its adapter (``None``: no adapter)."""
    fn = adapter_for(module)
    if fn is None:
        return None
    try:
        comp = fn(module, name)
    except ParamcalcError as exc:
        raise ParamcalcError(f"module {name!r} ({type(module).__name__}): {exc}") from None
    except Exception as exc:  # a user's adapter: one line, naming the module and the adapter
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ParamcalcError(
            f"module {name!r} ({type(module).__name__}): adapter {getattr(fn, '__name__', fn)!r} "
            f"failed: {type(exc).__name__}: {first}"
        ) from None
    if comp is not None and comp.name != name:
        comp = dataclasses.replace(comp, name=name)
    return comp


def spec_from_module(module: Any) -> RecurrentSpec:
    """The ``RecurrentSpec`` of an ``nn.RNN``/``nn.LSTM``/``nn.GRU`` or cell instance."""
    from torch import nn

    if isinstance(module, nn.RNNBase):
        cell = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn_relu"}.get(module.mode)
        if cell is None:
            raise ParamcalcError(f"unknown recurrent mode {module.mode!r} of {type(module).__name__}")
        return RecurrentSpec(
            cell,
            module.input_size,
            module.hidden_size,
            num_layers=module.num_layers,
            bidirectional=bool(module.bidirectional),
            bias=bool(module.bias),
            proj_size=int(getattr(module, "proj_size", 0) or 0),
        )
    if isinstance(module, nn.RNNCellBase):
        # nn.RNNCell(nonlinearity="relu") has the same tensors as the tanh cell.
        cell = "rnn_cell"
        for base, name in ((nn.LSTMCell, "lstm_cell"), (nn.GRUCell, "gru_cell")):
            if isinstance(module, base):
                cell = name
                break
        return RecurrentSpec(cell, module.input_size, module.hidden_size, bias=bool(module.bias))
    raise ParamcalcError(f"{type(module).__name__} is not a recurrent module")


def _load_default_adapters() -> None:
    global _DEFAULTS_LOADED
    if _DEFAULTS_LOADED:
        return
    from torch import nn

    def recurrent(m: Any, name: str) -> Component:
        return Recurrent(name, spec_from_module(m))

    def embedding(m: Any, name: str) -> Component:
        return Embedding(name, m.num_embeddings, m.embedding_dim)

    def linear(m: Any, name: str) -> Component | None:
        if isinstance(m.weight, nn.parameter.UninitializedParameter):
            return None
        return Linear(name, m.in_features, m.out_features, m.bias is not None)

    def layernorm(m: Any, name: str) -> Component:
        return LayerNorm(name, tuple(m.normalized_shape), m.elementwise_affine, m.bias is not None)

    def conv1d(m: Any, name: str) -> Component:
        return Conv1d(name, m.in_channels, m.out_channels, m.kernel_size[0], m.groups, m.bias is not None)

    def batchnorm1d(m: Any, name: str) -> Component:
        return BatchNorm1d(name, m.num_features, m.affine)

    def dropout(m: Any, name: str) -> Component:
        return Dropout(name, float(m.p))

    defaults: dict[type, Adapter] = {
        nn.RNNBase: recurrent,
        nn.RNNCellBase: recurrent,
        nn.Embedding: embedding,
        nn.Linear: linear,
        nn.LayerNorm: layernorm,
        nn.Conv1d: conv1d,
        nn.BatchNorm1d: batchnorm1d,
        nn.Dropout: dropout,
    }
    for cls, fn in defaults.items():
        _ADAPTERS.setdefault(cls, fn)  # a user's adapter registered earlier wins
    _DEFAULTS_LOADED = True


# --- Architecture -> nn.Module ------------------------------------------------------------


def _component_module(c: Component, dev: Any, dtype: Any) -> nn.Module:
    from torch import nn

    kw = {"device": dev, "dtype": dtype}
    if isinstance(c, Recurrent):
        spec = c.spec
        return getattr(nn, spec.cell_type.torch_class)(**module_kwargs(spec), **kw)
    if isinstance(c, Embedding):
        return nn.Embedding(c.num_embeddings, c.embedding_dim, **kw)
    if isinstance(c, Linear):
        return nn.Linear(c.in_size, c.out_size, bias=c.bias, **kw)
    if isinstance(c, LayerNorm):
        return nn.LayerNorm(c.normalized_shape, elementwise_affine=c.elementwise_affine, bias=c.bias, **kw)
    if isinstance(c, Dropout):
        return nn.Dropout(c.p)
    if isinstance(c, Conv1d):
        return nn.Conv1d(c.in_channels, c.out_channels, c.kernel_size, groups=c.groups, bias=c.bias, **kw)
    if isinstance(c, BatchNorm1d):
        return nn.BatchNorm1d(c.num_features, affine=c.affine, **kw)
    raise ParamcalcError(f"component {c.name!r} ({c.kind}): paramcalc cannot build it in torch")


def build_architecture(
    arch: Architecture, device: str | torch.device = "meta", dtype: torch.dtype | None = None
) -> nn.Module:
    """Build ``arch`` as an ``nn.Module`` whose children are its components, in order.

    A tie assigns the target's ``weight`` Parameter to the tying module, as weight-tied language
    models do (``decoder.weight = encoder.weight``). The module is for counting and checking; it
    has no ``forward``.
    """
    from torch import nn

    from .arch import count_architecture

    dev = resolve_device(device) if isinstance(device, str) else device
    ensure_fits(count_architecture(arch).total, dev, dtype, f"architecture {arch.name!r}")

    class ArchitectureModule(nn.Module):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("an architecture built by paramcalc is for counting only")

    root = ArchitectureModule()
    with _oom_as_error(f"architecture {arch.name!r}", dev):
        for c in arch.components:
            root.add_module(c.name, _component_module(c, dev, dtype))
    for c in arch.components:
        if c.tie:
            getattr(root, c.name).weight = getattr(root, c.tie).weight
    return root


# --- state dict -> components (names and shapes only) --------------------------------------

_RNN_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)(?:_l(\d+)(_reverse)?)?$")
_PARAMETRIZED = re.compile(r"^(.*?)(?:^|\.)parametrizations\.(\w+)\.original\d*$")
#: Suffixes that wrappers add to a renamed parameter: weight-drop's ``_raw``, pruning's ``_orig``.
RENAME_SUFFIXES = ("_raw", "_orig")
#: Names that are buffers, not parameters, in the layers paramcalc knows.
BUFFER_NAMES = ("running_mean", "running_var", "num_batches_tracked")
EMBEDDING_HINTS = ("emb", "encoder", "lookup", "token", "wte", "wpe", "vocab")


def canonical_name(name: str) -> str:
    """The name a wrapper-renamed parameter had: ``rnn.weight_hh_l0_raw`` -> ``rnn.weight_hh_l0``.

    Handles weight-drop (``_raw``), pruning/spectral norm (``_orig``) and
    ``torch.nn.utils.parametrize`` (``parametrizations.weight.original``).
    """
    m = _PARAMETRIZED.match(name)
    if m:
        head, leaf = m.group(1), m.group(2)
        name = f"{head}.{leaf}" if head else leaf
    for suffix in RENAME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _split(name: str) -> tuple[str, str]:
    head, _, leaf = name.rpartition(".")
    return head, leaf


@dataclass(frozen=True)
class Inferred:
    """A group of state-dict tensors read back as one layer (``component`` None: unknown)."""

    prefix: str
    component: Component | None
    type_name: str
    note: str = ""


def infer_components(shapes: Mapping[str, tuple[int, ...]]) -> list[Inferred]:
    """Read layers back from a state dict's names and shapes, in first-appearance order.

    Recurrent stacks come from ``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}``, ``bias_*``
    and ``weight_hr_l{k}``: the hidden size from ``weight_hh`` (``(G·h, h)``, or ``(4h, P)``
    with ``weight_hr (P, h)``), the cell from the gate multiple ``G`` (4 LSTM, 3 GRU, 1 RNN;
    an RNN with tanh and one with ReLU have the same tensors), the input size from
    ``weight_ih_l0``, layers, directions and bias from the names. Other layers come from the
    usual ``weight``/``bias``/running-stat patterns; a lone 2-D ``weight`` reads as an
    embedding when the name says so, else as a bias-free linear (their counts are the same).
    """
    groups: dict[str, dict[str, tuple[int, ...]]] = {}
    for full, shape in shapes.items():
        head, leaf = _split(canonical_name(full))
        groups.setdefault(head, {})[leaf] = tuple(shape)
    _adopt_orphans(groups)
    out: list[Inferred] = []
    for prefix, leaves in groups.items():
        try:
            inferred = _infer_group(prefix, leaves)
        except ParamcalcError as exc:  # shapes that contradict themselves: no formula, say why
            inferred = Inferred(prefix, None, "unknown", f"not read as a layer: {exc}")
        out.append(inferred)
    return out


def _adopt_orphans(groups: dict[str, dict[str, tuple[int, ...]]]) -> None:
    """Move a wrapper's renamed recurrent tensor (fastai's weight-drop keeps ``weight_hh_l0_raw``
    on the wrapper) into the child group that lacks it."""
    for prefix in list(groups):
        leaves = groups[prefix]
        for leaf in [k for k in leaves if _RNN_KEY.match(k)]:
            for other, its in groups.items():
                if other != prefix and other.startswith(f"{prefix}." if prefix else "") and leaf not in its:
                    if any(_RNN_KEY.match(k) and k != leaf for k in its) and all(
                        _RNN_KEY.match(k) for k in leaves
                    ):
                        its[leaf] = leaves.pop(leaf)
                        break
        if not leaves:
            del groups[prefix]


def _infer_group(prefix: str, leaves: Mapping[str, tuple[int, ...]]) -> Inferred:
    name = prefix or "(root)"
    rnn = {k: v for k, v in leaves.items() if _RNN_KEY.match(k)}
    if rnn and len(rnn) == len(leaves):
        return _infer_recurrent(prefix, name, rnn)
    w, b = leaves.get("weight"), leaves.get("bias")
    keys = set(leaves)
    if keys <= {"weight", "bias", *BUFFER_NAMES} and keys & {"running_mean", "running_var"}:
        c = (w or b or leaves.get("running_mean") or (0,))[0]
        return Inferred(prefix, BatchNorm1d(name, c, w is not None), "BatchNorm1d")
    if w is not None and keys <= {"weight", "bias"}:
        if len(w) == 2 and (b is None or b == (w[0],)):
            if b is None and any(h in prefix.lower() for h in EMBEDDING_HINTS):
                return Inferred(prefix, Embedding(name, w[0], w[1]), "Embedding")
            if b is None:
                return Inferred(
                    prefix,
                    Linear(name, w[1], w[0], False),
                    "Linear",
                    "a lone 2-D weight: Linear(bias=False) or Embedding, the same count",
                )
            return Inferred(prefix, Linear(name, w[1], w[0], True), "Linear")
        if len(w) == 3 and (b is None or b == (w[0],)):
            return Inferred(
                prefix,
                Conv1d(name, w[1], w[0], w[2], 1, b is not None),
                "Conv1d",
                "groups=1 assumed (in_channels = weight.shape[1])",
            )
        if b is None or b == w:
            note = "" if b is not None else "weight only: LayerNorm(bias=False) or RMSNorm, the same count"
            return Inferred(prefix, LayerNorm(name, w, True, b is not None), "LayerNorm", note)
    return Inferred(prefix, None, "unknown")


def _infer_recurrent(prefix: str, name: str, rnn: Mapping[str, tuple[int, ...]]) -> Inferred:
    parsed = {}
    for key, shape in rnn.items():
        m = _RNN_KEY.match(key)
        assert m is not None
        parsed[key] = (m.group(1), None if m.group(2) is None else int(m.group(2)), bool(m.group(3)), shape)
    single = all(layer is None for _, layer, _, _ in parsed.values())
    if not single and any(layer is None for _, layer, _, _ in parsed.values()):
        raise ParamcalcError("cell-style and stack-style recurrent names mixed")
    hh = rnn.get("weight_hh" if single else "weight_hh_l0")
    ih = rnn.get("weight_ih" if single else "weight_ih_l0")
    if hh is None or ih is None or len(hh) != 2 or len(ih) != 2:
        raise ParamcalcError("needs 2-D weight_ih and weight_hh of the first layer to read the sizes")
    hr = rnn.get("weight_hr_l0")
    if hr is not None:
        if len(hr) != 2:
            raise ParamcalcError("weight_hr_l0 must be 2-D")
        proj, hidden = hr
    else:
        proj, hidden = 0, hh[1]
    if hidden == 0 or hh[0] % hidden:
        raise ParamcalcError(f"weight_hh rows ({hh[0]}) are not a multiple of the hidden size ({hidden})")
    gates = hh[0] // hidden
    family = {1: "rnn", 3: "gru", 4: "lstm"}.get(gates)
    if family is None:
        raise ParamcalcError(
            f"a gate multiple of {gates} (weight_hh {hh}) is no RNN (1), GRU (3) or LSTM (4)"
        )
    note = "rnn (tanh) or rnn_relu: the same tensors" if family == "rnn" else ""
    layers = sorted({layer for _, layer, _, _ in parsed.values() if layer is not None})
    if not single and layers != list(range(len(layers))):
        raise ParamcalcError(f"layers {layers} are not numbered 0..{len(layers) - 1}")
    spec = RecurrentSpec(
        f"{family}_cell" if single else family,
        ih[1],
        hidden,
        num_layers=1 if single else len(layers),
        bidirectional=any(rev for _, _, rev, _ in parsed.values()),
        bias=any(role.startswith("bias") for role, _, _, _ in parsed.values()),
        proj_size=proj,
    )
    return Inferred(prefix, Recurrent(name, spec), spec.cell_type.torch_class, note)
