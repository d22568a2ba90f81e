"""Modules -> analytic components: the adapter registry, keyed by module type (torch at the edge).

An adapter ``(module, name) -> Component | None`` reads a module into an analytic component;
``None`` declines (the module's tensors are then counted without a formula). Recurrent modules
are read by the cell registry's torch bindings (:func:`spec_from_module`), so a registered cell
is recognised without a new adapter.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

from ..core import memo
from ..core.architecture import (
    BatchNorm1d,
    BatchNorm2d,
    Component,
    Conv1d,
    Conv2d,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Recurrent,
)
from ..core.cells import CellType, registered_cells
from ..core.spec import RecurrentSpec
from ..errors import ParamcalcError

Adapter = Callable[[Any, str], "Component | None"]

_ADAPTERS: dict[type, Adapter] = {}
#: The resolved adapter of each module type seen (cleared when an adapter is registered).
_BY_TYPE: dict[type, Adapter | None] = {}
_DEFAULTS_LOADED = False


def register_adapter(module_type: type) -> Callable[[Adapter], Adapter]:
    """Register ``adapter(module, name) -> Component`` for ``module_type`` (and its subclasses).

    A user adapter overrides a built-in one for the same type::

        @register_adapter(MyGate)
        def _(m: MyGate, name: str) -> Component:
            return Custom(name, f"MyGate({m.n})", (tensor_formula("scale", (m.n,), "n", f"{m.n}"),))
    """
    if not isinstance(module_type, type):
        raise ParamcalcError(f"register_adapter needs a class, got {type(module_type).__name__}")

    def deco(fn: Adapter) -> Adapter:
        if not callable(fn):
            raise ParamcalcError(f"an adapter must be callable, got {type(fn).__name__}")
        _ADAPTERS[module_type] = fn
        _BY_TYPE.clear()
        return fn

    return deco


def adapter_for(module: Any) -> Adapter | None:
    """The adapter of the most specific registered class in ``type(module).__mro__``."""
    _load_default_adapters()
    kind = type(module)
    if kind in _BY_TYPE:
        return _BY_TYPE[kind]
    for cls in kind.__mro__:
        fn = _ADAPTERS.get(cls)
        if fn is not None:
            _BY_TYPE[kind] = fn
            return fn
    found: Adapter | None = None
    if quantized_rnn_types() and isinstance(module, quantized_rnn_types()):
        found = _recurrent
    elif quantized_linear_types() and isinstance(module, quantized_linear_types()):
        found = _quantized_linear
    _BY_TYPE[kind] = found
    return found


def _quantized_linear(m: Any, name: str) -> Component:
    return Linear(name, m.in_features, m.out_features, m.bias() is not None)


def component_from_module(module: Any, name: str) -> Component | None:
    """Read a module into an analytic component via its adapter (``None``: no adapter)."""
    fn = adapter_for(module)
    if fn is None and isinstance(getattr(module, "spec", None), RecurrentSpec):
        fn = _recurrent  # a registered cell's own module carries its spec
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


def quantized_rnn_types() -> tuple[Any, ...]:
    """``torch.ao``'s dynamically quantized RNN base class, if the user's code loaded it."""
    mod = sys.modules.get("torch.ao.nn.quantized.dynamic.modules.rnn")
    return (mod.RNNBase,) if mod is not None else ()


def quantized_linear_types() -> tuple[Any, ...]:
    mod = sys.modules.get("torch.ao.nn.quantized.dynamic.modules.linear")
    return (mod.Linear,) if mod is not None else ()


def packed_tensors(module: Any) -> list[tuple[str, tuple[int, ...], str]]:
    """``(name, shape, dtype)`` of the weights a quantized module keeps packed (not parameters).

    A dynamically quantized LSTM/GRU (``torch.ao.nn.quantized.dynamic``) stores its weights as
    packed int8 objects and has no ``parameters()``; they are read back here, with the names
    and shapes of the float module they replace.
    """
    out: list[tuple[str, tuple[int, ...], str]] = []
    module = _any(module)
    if quantized_rnn_types() and isinstance(module, quantized_rnn_types()):
        wb = module._weight_bias()
        for kind in ("weight", "bias"):
            for name, t in wb[kind].items():
                out.append((name, tuple(t.shape), str(t.dtype).removeprefix("torch.")))
    elif quantized_linear_types() and isinstance(module, quantized_linear_types()):
        w = module.weight()
        out.append(("weight", tuple(w.shape), str(w.dtype).removeprefix("torch.")))
        b = module.bias()
        if b is not None:
            out.append(("bias", tuple(b.shape), str(b.dtype).removeprefix("torch.")))
    return out


def _any(obj: Any) -> Any:
    return obj


def cell_of_module(module: Any) -> CellType | None:
    """The registered cell whose torch binding recognises ``module`` (``None``: none does)."""
    from torch import nn

    module = _any(module)
    if isinstance(module, nn.RNNBase) or (
        quantized_rnn_types() and isinstance(module, quantized_rnn_types())
    ):
        for ct in registered_cells():
            if ct.torch.mode and ct.torch.mode == module.mode:
                return ct
        return None
    if isinstance(module, nn.RNNCellBase):
        names = [cls.__name__ for cls in type(module).__mro__]
        nonlin = getattr(module, "nonlinearity", None)
        for cls_name in names:
            for ct in registered_cells():
                b = ct.torch
                if b.nn_class == cls_name and not b.mode and (b.nonlinearity or None) == nonlin:
                    return ct
    return None


def spec_from_module(module: Any) -> RecurrentSpec:
    """The ``RecurrentSpec`` of a recurrent module: ``nn.RNN``/``nn.LSTM``/``nn.GRU``, their cells,
    or a paramcalc reference module (any module with a ``spec`` attribute holding one)."""
    from torch import nn

    own = getattr(module, "spec", None)
    if isinstance(own, RecurrentSpec):
        return own
    if not isinstance(module, nn.Module):
        raise ParamcalcError(f"spec_from_module needs a torch.nn module, got {type(module).__name__}")
    module = getattr(module, "module", module) if type(module).__name__ == "DataParallel" else module
    ct = cell_of_module(module)
    if ct is None:
        raise ParamcalcError(f"{type(module).__name__} is not a recurrent module paramcalc knows")
    if ct.single_step:
        return _spec(ct.name, module.input_size, module.hidden_size, 1, False, bool(module.bias), 0)
    return _spec(
        ct.name,
        module.input_size,
        module.hidden_size,
        module.num_layers,
        bool(module.bidirectional),
        bool(module.bias),
        int(getattr(module, "proj_size", 0) or 0),
    )


@memo.memoise(maxsize=1024)
def _spec(
    cell: str, d: int, h: int, layers: int, bidirectional: bool, bias: bool, proj: int
) -> RecurrentSpec:
    """Specs are immutable: a model of many identical layers validates each configuration once."""
    return RecurrentSpec(
        cell, d, h, num_layers=layers, bidirectional=bidirectional, bias=bias, proj_size=proj
    )


def _recurrent(m: Any, name: str) -> Component:
    return Recurrent(name, spec_from_module(m))


def _load_default_adapters() -> None:
    global _DEFAULTS_LOADED
    if _DEFAULTS_LOADED:
        return
    from torch import nn

    from .modules import ReferenceCell, ReferenceRecurrent

    def embedding(m: Any, name: str) -> Component:
        return Embedding(name, m.num_embeddings, m.embedding_dim)

    def linear(m: Any, name: str) -> Component | None:
        if issubclass(type(m.weight), nn.parameter.UninitializedParameter):
            return None
        return Linear(name, m.in_features, m.out_features, m.bias is not None)

    def layernorm(m: Any, name: str) -> Component:
        return LayerNorm(name, tuple(m.normalized_shape), m.elementwise_affine, m.bias is not None)

    def conv1d(m: Any, name: str) -> Component | None:
        if issubclass(type(m.weight), nn.parameter.UninitializedParameter):
            return None
        return Conv1d(name, m.in_channels, m.out_channels, m.kernel_size[0], m.groups, m.bias is not None)

    def batchnorm1d(m: Any, name: str) -> Component | None:
        if m.affine and issubclass(type(m.weight), nn.parameter.UninitializedParameter):
            return None
        return BatchNorm1d(name, m.num_features, m.affine)

    def batchnorm2d(m: Any, name: str) -> Component | None:
        if m.affine and issubclass(type(m.weight), nn.parameter.UninitializedParameter):
            return None
        return BatchNorm2d(name, m.num_features, m.affine)

    def conv2d(m: Any, name: str) -> Component | None:
        if issubclass(type(m.weight), nn.parameter.UninitializedParameter):
            return None
        padding = (0, 0) if isinstance(m.padding, str) else m.padding  # "same"/"valid": no count change
        return Conv2d(
            name,
            m.in_channels,
            m.out_channels,
            m.kernel_size,
            m.stride,
            padding,
            m.dilation,
            m.groups,
            m.bias is not None,
        )

    def dropout(m: Any, name: str) -> Component:
        return Dropout(name, float(m.p))

    defaults: dict[type, Adapter] = {
        nn.RNNBase: _recurrent,
        nn.RNNCellBase: _recurrent,
        ReferenceRecurrent: _recurrent,
        ReferenceCell: _recurrent,
        nn.Embedding: embedding,
        nn.Linear: linear,
        nn.LayerNorm: layernorm,
        nn.Conv1d: conv1d,
        nn.BatchNorm1d: batchnorm1d,
        nn.BatchNorm2d: batchnorm2d,
        nn.Conv2d: conv2d,
        nn.Dropout: dropout,
    }
    for cls, fn in defaults.items():
        _ADAPTERS.setdefault(cls, fn)  # a user's adapter registered earlier wins
    _BUILTIN.update(defaults.values())
    _CONFIGS.update(_builtin_configs(nn))
    _DEFAULTS_LOADED = True


# --- one reading per configuration -------------------------------------------------------------

#: The built-in adapters (a type whose adapter is one of them may use :data:`_CONFIGS`).
_BUILTIN: set[Adapter] = set()
#: Per exact torch layer type, every value its built-in adapter reads from a module of that type:
#: modules with equal values have equal components (up to the name).
_CONFIGS: dict[type, Callable[[Any], tuple[Any, ...]]] = {}
_MISSING: Any = object()  # a name _lookup does not find


def _lookup(m: Any, name: str) -> Any:
    """``getattr(m, name)`` on an exact torch layer type (whose class defines no property of that
    name): the instance's own attributes, then its parameters, buffers and submodules, without
    ``Module.__getattr__``'s cost. A missing name is :data:`_MISSING`."""
    d = m.__dict__
    if name in d:
        return d[name]
    for store in ("_parameters", "_buffers", "_modules"):
        held = d[store]
        if name in held:
            return held[name]
    return _MISSING


def _builtin_configs(nn: Any) -> dict[type, Callable[[Any], tuple[Any, ...]]]:
    """What each built-in adapter reads (a tensor by its type: None, a parameter, uninitialised)."""

    def tensor(m: Any, name: str) -> type:
        return type(_lookup(m, name))

    def linear(m: Any) -> tuple[Any, ...]:
        return (m.in_features, m.out_features, tensor(m, "weight"), tensor(m, "bias"))

    def conv(m: Any) -> tuple[Any, ...]:
        sizes = (m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups)
        return (*sizes, tensor(m, "weight"), tensor(m, "bias"))

    def norm(m: Any) -> tuple[Any, ...]:
        return (m.num_features, m.affine, tensor(m, "weight"))

    def stack(m: Any) -> tuple[Any, ...]:
        sizes = (m.mode, m.input_size, m.hidden_size, m.num_layers, m.bidirectional, m.bias)
        return (*sizes, m.proj_size, _lookup(m, "spec"))

    def cell(m: Any) -> tuple[Any, ...]:
        sizes = (m.input_size, m.hidden_size, m.bias)
        return (*sizes, _lookup(m, "nonlinearity"), _lookup(m, "spec"))

    return {
        nn.Linear: linear,
        nn.Embedding: lambda m: (m.num_embeddings, m.embedding_dim),
        nn.LayerNorm: lambda m: (m.normalized_shape, m.elementwise_affine, tensor(m, "bias")),
        nn.Conv1d: conv,
        nn.Conv2d: conv,
        nn.BatchNorm1d: norm,
        nn.BatchNorm2d: norm,
        nn.Dropout: lambda m: (m.p,),
        nn.LSTM: stack,
        nn.GRU: stack,
        nn.RNN: stack,
        nn.LSTMCell: cell,
        nn.GRUCell: cell,
        nn.RNNCell: cell,
    }


class ComponentReader:
    """Reads the modules of one model into components. A built-in layer's component is made
    once per exact type and configuration (:data:`_CONFIGS`) by its adapter, then renamed for
    each module that shares it: a model of many identical layers reads each kind once. Any
    other module goes through :func:`component_from_module`."""

    def __init__(self) -> None:
        _load_default_adapters()
        #: Per configuration: its number (in order of first appearance) and its component.
        self._made: dict[tuple[Any, ...], tuple[int, Component | None]] = {}
        #: Per exact type: whether it is *bare* (no adapter, nor a class attribute ``spec``: a
        #: module of one is read only if it carries a spec itself, as a registered cell's own
        #: module does), and its configuration reader if its adapter is the built-in one.
        self._types: dict[type, tuple[bool, Callable[[Any], tuple[Any, ...]] | None]] = {}

    def __call__(self, module: Any, name: str) -> tuple[Component | None, int]:
        """The component of ``module`` named ``name``, and the number of the configuration it
        was made for (-1: not shared, read by the module's adapter alone). Modules of one
        configuration have equal components but for the name."""
        kind = type(module)
        try:
            bare, config = self._types[kind]
        except KeyError:
            fn = adapter_for(module)
            bare, config = self._types[kind] = (
                fn is None and not hasattr(kind, "spec"),
                _CONFIGS.get(kind) if fn in _BUILTIN else None,
            )
        if bare and _lookup(module, "spec") is _MISSING:
            return None, -1
        if config is None:
            return component_from_module(module, name), -1
        try:
            key = (kind, config(module))
            made = self._made.get(key)
        except Exception:  # a value missing or unhashable: the adapter itself says what is wrong
            return component_from_module(module, name), -1
        if made is None:
            made = self._made[key] = (len(self._made), component_from_module(module, name))
            return made[1], made[0]
        n, comp = made
        return (None if comp is None else comp.renamed(name)), n
