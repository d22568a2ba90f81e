"""Specs and architectures -> real torch modules, on a device (the torch edge of paramcalc).

A spec whose layout is exactly a ``torch.nn`` module's (the cell's
:class:`~paramcalc.core.cells.TorchBinding` says which class and constructor arguments) is
built as that module: the cross-check is then against PyTorch itself. Every other layout
(a Keras bias layout, peepholes, merged directions, the reset-before GRU, the cells outside
``torch.nn``) is built as the cell's reference module: paramcalc's own step-by-step
implementation (:mod:`paramcalc.bridge.modules`), or a registered cell's own factory.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..core.architecture import (
    Architecture,
    Attention,
    BatchNorm1d,
    BatchNorm2d,
    BlockStack,
    Component,
    Conv1d,
    Conv2d,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Recurrent,
)
from ..core.cells import module_failure
from ..core.params import total_params
from ..core.spec import RecurrentSpec
from ..errors import ParamcalcError
from .devices import ensure_fits, is_oom, oom_as_error, resolve_device

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn


def torch_equivalent(spec: RecurrentSpec) -> RecurrentSpec:
    """``spec`` with PyTorch's tensor names and the same layout (and so the same count)."""
    if spec.convention == "torch":
        return spec
    return spec.replace(convention="torch", bias_vectors=spec.bias_vectors, peephole=spec.peephole)


def module_kwargs(spec: RecurrentSpec) -> dict[str, Any]:
    """Constructor keyword arguments of the cell's ``torch.nn`` class for ``spec``."""
    ct = spec.cell_type
    kw: dict[str, Any] = {"input_size": spec.input_size, "hidden_size": spec.hidden_size, "bias": spec.bias}
    if ct.torch.nonlinearity:
        kw["nonlinearity"] = ct.torch.nonlinearity
    if not ct.single_step:
        kw.update(num_layers=spec.num_layers, bidirectional=spec.bidirectional)
        if spec.proj_size:
            kw["proj_size"] = spec.proj_size
    return kw


def is_torch_native(spec: RecurrentSpec) -> bool:
    """Whether ``spec`` is built as a ``torch.nn`` module (else as a reference module)."""
    return spec.cell_type.torch_native(torch_equivalent(spec))


def takes_packed(spec: RecurrentSpec) -> bool:
    """Whether the stack module :func:`build_module` builds for ``spec`` takes a ``PackedSequence``
    (``torch.nn`` and paramcalc's reference modules do; a registered module if its binding says
    ``packed_input``); else it takes a padded tensor and the lengths (``paramcalc.bridge.driver``)."""
    binding = spec.cell_type.torch
    return is_torch_native(spec) or binding.reference is None or binding.packed_input


def module_label(spec: RecurrentSpec) -> str:
    """What :func:`build_module` builds: ``torch.nn.LSTM`` or the reference module's name."""
    target = torch_equivalent(spec)
    ct = target.cell_type
    if ct.torch_native(target):
        return f"torch.nn.{ct.torch.nn_class}"
    ref = ct.torch.reference
    if ref is None:
        return "paramcalc's reference module"
    return f"the cell's registered module {ref if isinstance(ref, str) else getattr(ref, '__name__', ref)}"


def reference_kind(spec: RecurrentSpec) -> str:
    """How the module :func:`build_module` builds for ``spec`` runs, when it is not a ``torch.nn``
    module: ``"parallel scan"`` (paramcalc's reference module of a cell whose entry gives a scan,
    ``TorchBinding.scan``: the whole sequence at once, in ``⌈log₂ T⌉`` levels), ``"Python step
    loop"`` (paramcalc's reference module: one step after another from Python), ``"own module"``
    (a registered cell's own factory); ``""`` for a ``torch.nn`` module."""
    target = torch_equivalent(spec)
    ct = target.cell_type
    if ct.torch_native(target):
        return ""
    if ct.torch.reference is not None:
        return "own module"
    return "parallel scan" if ct.torch.scan is not None and not ct.single_step else "Python step loop"


#: How a table names each way a reference module runs (:func:`reference_kind`), briefly.
SHORT_KINDS = {"parallel scan": "scan", "Python step loop": "step loop", "own module": "own module"}


def kernel_label(path: str, spec: RecurrentSpec) -> str:
    """A kernel path as a table shows it: a reference module's says how it runs
    (``reference (step loop)``: a Python loop over the steps; ``reference (scan)``: a parallel scan)."""
    kind = reference_kind(spec) if path == "reference" else ""
    return f"{path} ({SHORT_KINDS[kind]})" if kind else path


#: torch indexes a tensor's elements with int64: no tensor can hold more.
TORCH_MAX_NUMEL = 2**63 - 1


def check_indexable(spec: RecurrentSpec) -> None:
    """Refuse (one line) a spec with a tensor torch cannot even describe (beyond int64 elements)."""
    from ..core.params import dims

    for layer in range(min(spec.num_layers, 2)):  # layers > 1 repeat layer 1's shapes
        dm = dims(spec, layer)
        for t in spec.cell_type.templates_for(spec):
            n = 1
            for s in t.shape(dm):
                n *= s
            if n > TORCH_MAX_NUMEL:
                raise ParamcalcError(
                    f"{t.torch_name} of {spec.describe()} has {n:,} elements, more than torch can index "
                    f"(2**63 - 1): no device, not even meta, can build it; count it with paramcalc count"
                )


@contextlib.contextmanager
def plugin_errors(spec: RecurrentSpec, what: str) -> Iterator[None]:
    """A failure of a registered cell's own module (its ``TorchBinding.reference``) as one line
    naming the cell and the module: a bug in that package, not paramcalc's. Allocation failures
    and paramcalc's own reference modules are left alone."""
    try:
        yield
    except ParamcalcError:
        raise
    except (Exception, SystemExit) as exc:
        if spec.cell_type.torch.reference is None or is_oom(exc):
            raise
        raise ParamcalcError(module_failure(spec.cell_type, what, exc)) from None


def _reference_factory(spec: RecurrentSpec) -> Any:
    ref = spec.cell_type.torch.reference
    if ref is None:
        from .modules import build_reference

        return build_reference
    if isinstance(ref, str):
        mod, _, attr = ref.partition(":")
        with plugin_errors(spec, "to import"):
            factory = getattr(importlib.import_module(mod), attr, None)
        if factory is None:
            raise ParamcalcError(f"cell {spec.cell}: cannot load its module {ref!r}: {mod} has no {attr!r}")
        return factory
    return ref


def build_module(
    spec: RecurrentSpec, device: str | torch.device = "meta", dtype: torch.dtype | None = None
) -> nn.Module:
    """Instantiate the module of ``spec`` on ``device``: ``torch.nn`` where its layout is
    PyTorch's, else the cell's reference module (same tensor names, same count).

    On ``cpu``/``cuda`` the parameters must fit in the memory that is free, else a
    :class:`ParamcalcError` suggests ``meta`` (which allocates nothing).
    """
    from torch import nn

    from ..core.coerce import as_spec

    spec = torch_equivalent(as_spec(spec, "build_module"))
    dev = resolve_device(device)
    check_indexable(spec)
    ensure_fits(total_params(spec), dev, dtype, spec.describe())
    ct = spec.cell_type
    with oom_as_error(f"building {spec.describe()}", dev, "use `device='meta'`, which allocates no memory"):
        if ct.torch_native(spec):
            cls = getattr(nn, str(ct.torch.nn_class))
            return cls(**module_kwargs(spec), device=dev, dtype=dtype)  # type: ignore[no-any-return]
        factory = _reference_factory(spec)
        with plugin_errors(spec, "to build"):
            module = factory(spec, dev, dtype)
    if not isinstance(module, nn.Module):
        raise ParamcalcError(f"cell {spec.cell}: its module factory returned {type(module).__name__}")
    return module


# --- Architecture -> nn.Module ------------------------------------------------------------


def _component_module(c: Component, dev: Any, dtype: Any) -> nn.Module:
    from torch import nn

    kw = {"device": dev, "dtype": dtype}
    if isinstance(c, Recurrent):
        return build_module(c.spec, dev, dtype)
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
    if isinstance(c, BatchNorm2d):
        return nn.BatchNorm2d(c.num_features, affine=c.affine, **kw)
    if isinstance(c, BatchNorm1d):
        return nn.BatchNorm1d(c.num_features, affine=c.affine, **kw)
    if isinstance(c, Conv2d):
        return nn.Conv2d(
            c.in_channels,
            c.out_channels,
            c.kernel_size,
            stride=c.stride,
            padding=c.padding,
            dilation=c.dilation,
            groups=c.groups,
            bias=c.bias,
            **kw,
        )
    if isinstance(c, Attention):
        return additive_attention(c, dev, dtype)
    if isinstance(c, BlockStack):
        raise ParamcalcError(
            f"component {c.name!r} ({c.kind}): a registry block is not built in torch here; inspect "
            "the model's config.json with `check=True` to compare it with transformers"
        )
    raise ParamcalcError(f"component {c.name!r} ({c.kind}): paramcalc cannot build it in torch")


def additive_attention(c: Attention, dev: Any, dtype: Any) -> nn.Module:
    """Bahdanau attention as a module: ``query``/``key`` linears without bias, ``v``; ``g``, ``b``
    when normalised (GNMT). Its ``forward(query, keys)`` returns the context."""
    import torch
    from torch import nn

    class AdditiveAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            kw = {"device": dev, "dtype": dtype}
            self.query = nn.Linear(c.query_size, c.attn_size, bias=False, **kw)
            self.key = nn.Linear(c.key_size, c.attn_size, bias=False, **kw)
            self.v = nn.Parameter(torch.empty(c.attn_size, **kw).uniform_(-0.1, 0.1))
            if c.normalize:
                self.g = nn.Parameter(torch.full((1,), c.attn_size**-0.5, **kw))
                self.b = nn.Parameter(torch.zeros(c.attn_size, **kw))

        def forward(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
            v = self.v
            hidden = self.query(query).unsqueeze(0) + self.key(keys)  # (T, B, A)
            if c.normalize:
                v = self.g * v / v.norm()
                hidden = hidden + self.b
            weights = torch.softmax(torch.tanh(hidden) @ v, dim=0)  # (T, B)
            return (weights.unsqueeze(-1) * keys).sum(0)

    return AdditiveAttention()


def build_architecture(
    arch: Architecture, device: str | torch.device = "meta", dtype: torch.dtype | None = None
) -> nn.Module:
    """Build ``arch`` as an ``nn.Module`` whose children are its components, in order.

    A tie assigns the target's ``weight`` Parameter to the tying module, as weight-tied language
    models do (``decoder.weight = encoder.weight``). The module is for counting and checking; it
    has no ``forward``.
    """
    from torch import nn

    from ..core.architecture import count_architecture

    dev = resolve_device(device)
    ensure_fits(count_architecture(arch).total, dev, dtype, f"architecture {arch.name!r}")

    class ArchitectureModule(nn.Module):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("an architecture built by paramcalc is for counting only")

    root = ArchitectureModule()
    for c in arch.components:
        if hasattr(root, c.name):  # torch's add_module refuses it (KeyError)
            raise ParamcalcError(
                f"component {c.name!r} ({c.kind}): torch cannot build a child module of that name, "
                f"{c.name!r} is an attribute of torch.nn.Module; rename the component"
            )
    with oom_as_error(f"building architecture {arch.name!r}", dev, "use `device='meta'`"):
        for c in arch.components:
            root.add_module(c.name, _component_module(c, dev, dtype))
    for c in arch.components:
        if c.tie:
            getattr(root, c.name).weight = getattr(root, c.tie).weight
    return root
