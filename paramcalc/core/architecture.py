"""Whole architectures: recurrent stacks plus the layers around them, with tied weights.

An :class:`Architecture` is a tuple of components (recurrent stacks of any registered cell,
``embedding``, ``linear``, ``layernorm``, ``dropout``, ``conv1d``, ``conv2d``, ``batchnorm1d``,
``batchnorm2d``, ``attention``) and their wiring: by default each takes the previous one's
output; a component may name its sources (named inputs or earlier components) and how they
merge (``concat``, ``sum``), and stack consecutive frames (pyramidal and time-reduction layers).
Every component knows its parameter tensors, named and shaped as the matching ``torch.nn``
module stores them, with a formula per tensor. Pure Python: no torch, no pandas.

Counting conventions:

* recurrent stacks use PyTorch's tensor names (their layout knobs: bias vectors, peepholes,
  merge mode, as in :mod:`paramcalc.core.params`);
* a **tied** weight (``tie = "encoder"`` on a decoder ``linear``) is one tensor held by two
  modules: it is listed under both, counted once, at its first appearance in component order,
  exactly as ``nn.Module.parameters()`` deduplicates it;
* only parameters count: ``batchnorm1d``'s running statistics are buffers, not parameters.

Architectures are written as TOML files, see :func:`load_architecture` and docs/architectures.md.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from math import prod
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from ..errors import ParamcalcError
from ..results.base import Result
from ..results.table import Column, Table
from ..results.text import plural
from .cells import ALIASES, CELLS, find_cell, get_cell, plugin_note
from .params import count as count_spec
from .params import total_params
from .spec import RecurrentSpec, check_size

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TensorFormula(NamedTuple):
    """One analytic parameter tensor of a component: local name, shape, count and formula."""

    name: str
    shape: tuple[int, ...]
    numel: int
    formula: str  # symbolic = substituted, e.g. "V·E = 10000·400"


def _tensor(name: str, shape: tuple[int, ...], symbolic: str, substituted: str) -> TensorFormula:
    return TensorFormula(name, shape, prod(shape), f"{symbolic} = {substituted}")


# --- components ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """Base class: a named layer with analytic parameter tensors."""

    name: str

    kind: ClassVar[str] = "component"
    #: The torch.nn class this component is built as.
    torch_class: ClassVar[str] = ""

    @property
    def tie(self) -> str | None:
        """Name of the component whose ``weight`` this one shares, if any."""
        return None

    @property
    def in_features(self) -> int | None:
        """Features this component expects from the previous one (None: it takes indices)."""
        return None

    def out_features(self, incoming: int | None) -> int | None:
        """Features this component hands on, given what it received."""
        return incoming

    def tensors(self) -> tuple[TensorFormula, ...]:
        return ()

    def formula(self) -> str:
        """The component's parameter count as a formula with numbers substituted."""
        return "no parameters"

    def describe(self) -> str:
        return f"{self.torch_class}()"

    def remark(self) -> str:
        """A counting remark shown with the component (e.g. which tensors are buffers)."""
        return ""

    @property
    def params(self) -> int:
        """Parameters of this component, a tied weight included."""
        return sum(t.numel for t in self.tensors())


@dataclass(frozen=True)
class Recurrent(Component):
    """An ``nn.RNN``/``nn.LSTM``/``nn.GRU`` stack (or cell), described by a ``RecurrentSpec``."""

    spec: RecurrentSpec = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not isinstance(self.spec, RecurrentSpec):
            raise ParamcalcError(f"component {self.name!r}: a recurrent component needs a RecurrentSpec")

    @property
    def kind(self) -> str:  # type: ignore[override]  # the cell name: lstm, gru, rnn, ...
        return self.spec.cell

    @property
    def torch_class(self) -> str:  # type: ignore[override]
        return self.spec.cell_type.torch_class

    @property
    def in_features(self) -> int | None:
        return self.spec.input_size

    def out_features(self, incoming: int | None) -> int | None:
        s = self.spec
        return s.output_size if s.cell_type.single_step else s.stack_output_size

    def tensors(self) -> tuple[TensorFormula, ...]:
        return _recurrent_tensors(self.spec)

    def formula(self) -> str:
        return _recurrent_formula(self.spec)

    def describe(self) -> str:
        return self.spec.describe()

    @property
    def params(self) -> int:
        return total_params(self.spec)


@lru_cache(maxsize=4096)
def _recurrent_tensors(spec: RecurrentSpec) -> tuple[TensorFormula, ...]:
    return tuple(TensorFormula(r.name, r.shape, r.numel, r.formula) for r in count_spec(spec).rows)


@lru_cache(maxsize=4096)
def _recurrent_formula(spec: RecurrentSpec) -> str:
    res = count_spec(spec)
    seen: dict[tuple[str, str], int] = {}
    for f in res.formulas:  # identical layers (k > 0) and directions collapse into "n × ..."
        seen[(f.symbolic, f.substituted)] = seen.get((f.symbolic, f.substituted), 0) + 1
    if len(seen) == 1 and next(iter(seen.values())) == 1:
        (sym, num), _ = next(iter(seen.items()))
        return f"{sym} = {num}"
    parts = []
    for (sym, num), n in seen.items():
        parts.append(f"{n} × [{sym} = {num}]" if n > 1 else f"[{sym} = {num}]")
    return " + ".join(parts)


@dataclass(frozen=True)
class Embedding(Component):
    """``nn.Embedding(V, E)``: one ``weight`` of shape ``(V, E)``."""

    num_embeddings: int = 0
    embedding_dim: int = 0
    tie_to: str | None = None

    kind: ClassVar[str] = "embedding"
    torch_class: ClassVar[str] = "Embedding"

    def __post_init__(self) -> None:
        _sizes(self, "num_embeddings", "embedding_dim")

    @property
    def tie(self) -> str | None:
        return self.tie_to

    def out_features(self, incoming: int | None) -> int | None:
        return self.embedding_dim

    def tensors(self) -> tuple[TensorFormula, ...]:
        v, e = self.num_embeddings, self.embedding_dim
        return (_tensor("weight", (v, e), "V·E", f"{v}·{e}"),)

    def formula(self) -> str:
        return f"V·E = {self.num_embeddings}·{self.embedding_dim}"

    def describe(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"


@dataclass(frozen=True)
class Linear(Component):
    """``nn.Linear(in, out)``: ``weight (out, in)`` and ``bias (out,)``."""

    in_size: int = 0
    out_size: int = 0
    bias: bool = True
    tie_to: str | None = None

    kind: ClassVar[str] = "linear"
    torch_class: ClassVar[str] = "Linear"

    def __post_init__(self) -> None:
        _sizes(self, "in_size", "out_size")
        _flags(self, "bias")

    @property
    def tie(self) -> str | None:
        return self.tie_to

    @property
    def in_features(self) -> int | None:
        return self.in_size

    def out_features(self, incoming: int | None) -> int | None:
        return self.out_size

    def tensors(self) -> tuple[TensorFormula, ...]:
        i, o = self.in_size, self.out_size
        ts = [_tensor("weight", (o, i), "out·in", f"{o}·{i}")]
        if self.bias:
            ts.append(_tensor("bias", (o,), "out", f"{o}"))
        return tuple(ts)

    def formula(self) -> str:
        i, o = self.in_size, self.out_size
        return f"out·in + out = {o}·{i} + {o}" if self.bias else f"out·in = {o}·{i}"

    def describe(self) -> str:
        return f"Linear({self.in_size}, {self.out_size}{'' if self.bias else ', bias=False'})"


@dataclass(frozen=True)
class LayerNorm(Component):
    """``nn.LayerNorm(shape)``: ``weight`` and ``bias`` of ``shape`` (when affine)."""

    normalized_shape: tuple[int, ...] = ()
    elementwise_affine: bool = True
    bias: bool = True

    kind: ClassVar[str] = "layernorm"
    torch_class: ClassVar[str] = "LayerNorm"

    def __post_init__(self) -> None:
        shape = self.normalized_shape
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = (shape,)
        if not isinstance(shape, (tuple, list)) or not shape:
            raise ParamcalcError(f"normalized_shape must be an integer or a list of integers, got {shape!r}")
        object.__setattr__(self, "normalized_shape", tuple(check_size("normalized_shape", s) for s in shape))
        _flags(self, "elementwise_affine", "bias")

    @property
    def in_features(self) -> int | None:
        return self.normalized_shape[-1]

    def tensors(self) -> tuple[TensorFormula, ...]:
        if not self.elementwise_affine:
            return ()
        shape = self.normalized_shape
        num = "·".join(map(str, shape))
        ts = [_tensor("weight", shape, "n", num)]
        if self.bias:
            ts.append(_tensor("bias", shape, "n", num))
        return tuple(ts)

    def formula(self) -> str:
        if not self.elementwise_affine:
            return "no parameters (elementwise_affine=False)"
        num = "·".join(map(str, self.normalized_shape))
        return f"2n = 2·{num}" if self.bias else f"n = {num}"

    def describe(self) -> str:
        shape = self.normalized_shape
        arg = str(shape[0]) if len(shape) == 1 else str(list(shape))
        extra = "" if self.elementwise_affine else ", elementwise_affine=False"
        extra += "" if self.bias or not self.elementwise_affine else ", bias=False"
        return f"LayerNorm({arg}{extra})"


@dataclass(frozen=True)
class Dropout(Component):
    """``nn.Dropout(p)``: no parameters; passes its input size on."""

    p: float = 0.5

    kind: ClassVar[str] = "dropout"
    torch_class: ClassVar[str] = "Dropout"

    def __post_init__(self) -> None:
        p = self.p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ParamcalcError(f"p must be a probability between 0 and 1, got {p!r}")

    def describe(self) -> str:
        return f"Dropout(p={self.p})"


@dataclass(frozen=True)
class Conv1d(Component):
    """``nn.Conv1d(in, out, k, groups=g)``: ``weight (out, in/g, k)`` and ``bias (out,)``."""

    in_channels: int = 0
    out_channels: int = 0
    kernel_size: int = 0
    groups: int = 1
    bias: bool = True

    kind: ClassVar[str] = "conv1d"
    torch_class: ClassVar[str] = "Conv1d"

    def __post_init__(self) -> None:
        _sizes(self, "in_channels", "out_channels", "kernel_size", "groups")
        _flags(self, "bias")
        for what in ("in_channels", "out_channels"):
            if getattr(self, what) % self.groups:
                raise ParamcalcError(
                    f"{what} ({getattr(self, what)}) must be divisible by groups ({self.groups})"
                )

    @property
    def in_features(self) -> int | None:
        return self.in_channels

    def out_features(self, incoming: int | None) -> int | None:
        return self.out_channels

    def tensors(self) -> tuple[TensorFormula, ...]:
        o, i, k, g = self.out_channels, self.in_channels, self.kernel_size, self.groups
        ig = i // g
        sym, num = ("out·(in/g)·k", f"{o}·{ig}·{k}") if g > 1 else ("out·in·k", f"{o}·{i}·{k}")
        ts = [_tensor("weight", (o, ig, k), sym, num)]
        if self.bias:
            ts.append(_tensor("bias", (o,), "out", f"{o}"))
        return tuple(ts)

    def formula(self) -> str:
        return (
            " + ".join(t.formula.split(" = ")[0] for t in self.tensors())
            + " = "
            + " + ".join(t.formula.split(" = ")[1] for t in self.tensors())
        )

    def describe(self) -> str:
        extra = f", groups={self.groups}" if self.groups > 1 else ""
        extra += "" if self.bias else ", bias=False"
        return f"Conv1d({self.in_channels}, {self.out_channels}, {self.kernel_size}{extra})"


@dataclass(frozen=True)
class BatchNorm1d(Component):
    """``nn.BatchNorm1d(C)``: ``weight`` and ``bias`` of ``(C,)``; running stats are buffers."""

    num_features: int = 0
    affine: bool = True

    kind: ClassVar[str] = "batchnorm1d"
    torch_class: ClassVar[str] = "BatchNorm1d"

    def __post_init__(self) -> None:
        _sizes(self, "num_features")
        _flags(self, "affine")

    @property
    def in_features(self) -> int | None:
        return self.num_features

    def tensors(self) -> tuple[TensorFormula, ...]:
        c = self.num_features
        if not self.affine:
            return ()
        return (_tensor("weight", (c,), "C", f"{c}"), _tensor("bias", (c,), "C", f"{c}"))

    def formula(self) -> str:
        if not self.affine:
            return "no parameters (affine=False)"
        return f"2C = 2·{self.num_features}"

    def remark(self) -> str:
        return "running_mean, running_var, num_batches_tracked are buffers, not parameters"

    def describe(self) -> str:
        return f"BatchNorm1d({self.num_features}{'' if self.affine else ', affine=False'})"


@dataclass(frozen=True)
class BatchNorm2d(BatchNorm1d):
    """``nn.BatchNorm2d(C)``: the same tensors as ``BatchNorm1d(C)``, on a ``(C, H, W)`` input."""

    kind: ClassVar[str] = "batchnorm2d"
    torch_class: ClassVar[str] = "BatchNorm2d"

    @property
    def in_features(self) -> int | None:
        return None  # checked against the incoming plane's channels instead

    @property
    def in_channels(self) -> int | None:
        return self.num_features

    def out_plane(self, plane: tuple[int, int] | None) -> tuple[int, int] | None:
        return plane

    def describe(self) -> str:
        return f"BatchNorm2d({self.num_features}{'' if self.affine else ', affine=False'})"


def _pair(name: str, value: Any, minimum: int = 1) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ParamcalcError(f"{name} must be an integer or a pair [h, w], got {value!r}")
        a, b = value
    else:
        a = b = value
    return (check_size(name, a, minimum=minimum), check_size(name, b, minimum=minimum))


@dataclass(frozen=True)
class Conv2d(Component):
    """``nn.Conv2d(in, out, (kh, kw), stride, padding, dilation, groups)``.

    ``weight (out, in/g, kh, kw)`` and ``bias (out,)``. With the input ``height`` known (the
    frequency bins of a spectrogram, or the previous 2-D layer's output), the layer hands on
    ``out·H_out`` features per frame, ``H_out = ⌊(H + 2p - d(k - 1) - 1)/s⌋ + 1`` along the
    height, as speech models flatten channels and frequency before their recurrent layers.
    """

    in_channels: int = 0
    out_channels: int = 0
    kernel_size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = True
    height: int | None = None

    kind: ClassVar[str] = "conv2d"
    torch_class: ClassVar[str] = "Conv2d"

    def __post_init__(self) -> None:
        _sizes(self, "in_channels", "out_channels", "groups")
        _flags(self, "bias")
        set_ = object.__setattr__
        set_(self, "kernel_size", _pair("kernel_size", self.kernel_size))
        set_(self, "stride", _pair("stride", self.stride))
        set_(self, "padding", _pair("padding", self.padding, minimum=0))
        set_(self, "dilation", _pair("dilation", self.dilation))
        if self.height is not None:
            set_(self, "height", check_size("height", self.height))
            if self.out_height() < 1:
                raise ParamcalcError(f"the kernel is taller than the padded input height {self.height}")
        for what in ("in_channels", "out_channels"):
            if getattr(self, what) % self.groups:
                raise ParamcalcError(
                    f"{what} ({getattr(self, what)}) must be divisible by groups ({self.groups})"
                )

    def out_height(self) -> int:
        assert self.height is not None
        (k, _), (s, _), (p, _), (d, _) = self.kernel_size, self.stride, self.padding, self.dilation
        return (self.height + 2 * p - d * (k - 1) - 1) // s + 1

    @property
    def in_features(self) -> int | None:
        return None  # checked against the incoming plane instead

    def out_plane(self, plane: tuple[int, int] | None) -> tuple[int, int] | None:
        return None if self.height is None else (self.out_channels, self.out_height())

    def out_features(self, incoming: int | None) -> int | None:
        return None if self.height is None else self.out_channels * self.out_height()

    def tensors(self) -> tuple[TensorFormula, ...]:
        o, i, g = self.out_channels, self.in_channels, self.groups
        kh, kw = self.kernel_size
        ig = i // g
        sym, num = (
            ("out·(in/g)·kh·kw", f"{o}·{ig}·{kh}·{kw}") if g > 1 else ("out·in·kh·kw", f"{o}·{i}·{kh}·{kw}")
        )
        ts = [_tensor("weight", (o, ig, kh, kw), sym, num)]
        if self.bias:
            ts.append(_tensor("bias", (o,), "out", f"{o}"))
        return tuple(ts)

    def formula(self) -> str:
        parts = [t.formula.split(" = ") for t in self.tensors()]
        return " + ".join(a for a, _ in parts) + " = " + " + ".join(b for _, b in parts)

    def describe(self) -> str:
        kh, kw = self.kernel_size
        extra = "" if self.stride == (1, 1) else f", stride={self.stride}"
        extra += "" if self.padding == (0, 0) else f", padding={self.padding}"
        extra += "" if self.dilation == (1, 1) else f", dilation={self.dilation}"
        extra += f", groups={self.groups}" if self.groups > 1 else ""
        extra += "" if self.bias else ", bias=False"
        return f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size=({kh}, {kw}){extra})"


@dataclass(frozen=True)
class Attention(Component):
    """Additive (Bahdanau) attention: ``score = vᵀ tanh(W_q·q + W_k·k)``, context = Σ softmax·k.

    ``query.weight (A, Hq)`` and ``key.weight (A, Hk)`` (no biases), ``v (A,)``; the normalised
    form of GNMT (Wu et al. 2016) adds a scalar gain ``g (1,)`` and a bias ``b (A,)``. Takes two
    inputs, the query (decoder state) and the keys (encoder outputs), and hands on the context:
    ``Hk`` features.
    """

    query_size: int = 0
    key_size: int = 0
    attn_size: int = 0
    normalize: bool = False

    kind: ClassVar[str] = "attention"
    torch_class: ClassVar[str] = "AdditiveAttention"

    def __post_init__(self) -> None:
        _sizes(self, "query_size", "key_size", "attn_size")
        _flags(self, "normalize")

    def out_features(self, incoming: int | None) -> int | None:
        return self.key_size

    def tensors(self) -> tuple[TensorFormula, ...]:
        q, k, a = self.query_size, self.key_size, self.attn_size
        # a module's own parameters come before its children's in named_parameters()
        ts = [_tensor("v", (a,), "A", f"{a}")]
        if self.normalize:
            ts += [_tensor("g", (1,), "1", "1"), _tensor("b", (a,), "A", f"{a}")]
        ts += [
            _tensor("query.weight", (a, q), "A·Hq", f"{a}·{q}"),
            _tensor("key.weight", (a, k), "A·Hk", f"{a}·{k}"),
        ]
        return tuple(ts)

    def formula(self) -> str:
        q, k, a = self.query_size, self.key_size, self.attn_size
        if self.normalize:
            return f"A·Hq + A·Hk + 2A + 1 = {a}·{q} + {a}·{k} + 2·{a} + 1"
        return f"A·Hq + A·Hk + A = {a}·{q} + {a}·{k} + {a}"

    def describe(self) -> str:
        extra = ", normalize=True" if self.normalize else ""
        return (
            f"AdditiveAttention(query={self.query_size}, key={self.key_size}, attn={self.attn_size}{extra})"
        )


def _sizes(obj: Any, *names: str) -> None:
    for n in names:
        object.__setattr__(obj, n, check_size(n, getattr(obj, n)))


def _flags(obj: Any, *names: str) -> None:
    for n in names:
        if not isinstance(getattr(obj, n), bool):
            raise ParamcalcError(f"{n} must be true or false, got {getattr(obj, n)!r}")


# --- the architecture ------------------------------------------------------------------------


MERGES = ("concat", "sum")


@dataclass(frozen=True)
class Input:
    """A named input of the model: ``size`` features per frame, or a ``(channels, height)`` plane."""

    name: str
    size: int | None = None
    channels: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ParamcalcError(f"input {self.name!r}: a name must be a Python identifier")
        for key in ("size", "channels", "height"):
            if getattr(self, key) is not None:
                object.__setattr__(self, key, check_size(key, getattr(self, key)))
        if (self.channels is None) != (self.height is None):
            raise ParamcalcError(f"input {self.name!r}: give channels and height together (a 2-D input)")
        if self.channels is not None and self.height is not None:
            plane = self.channels * self.height
            if self.size is not None and self.size != plane:
                raise ParamcalcError(
                    f"input {self.name!r}: size {self.size} is not channels·height = {plane}"
                )
            object.__setattr__(self, "size", plane)
        if self.size is None:
            raise ParamcalcError(f"input {self.name!r}: give its size (features per frame)")

    @property
    def plane(self) -> tuple[int, int] | None:
        return None if self.channels is None or self.height is None else (self.channels, self.height)


@dataclass(frozen=True)
class Wiring:
    """Where a component's input comes from: sources (inputs or earlier components), how several
    are merged (``concat``: features add up; ``sum``: equal sizes, kept), and how many consecutive
    frames are stacked into one first (pyramidal/time-reduction layers: the features multiply)."""

    sources: tuple[str, ...] = ()
    merge: str = "concat"
    stack: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        if self.merge not in MERGES:
            raise ParamcalcError(f"merge must be one of {', '.join(MERGES)}, got {self.merge!r}")
        object.__setattr__(self, "stack", check_size("stack", self.stack, maximum=1024))


@dataclass(frozen=True)
class Flow:
    """What a component receives and hands on (features per frame; a plane for 2-D layers)."""

    sources: tuple[str, ...]
    incoming: int | None
    plane_in: tuple[int, int] | None
    outgoing: int | None
    plane_out: tuple[int, int] | None


def _default_source(last: str | None, inputs: Mapping[str, Input]) -> tuple[str, ...]:
    if last is not None:
        return (last,)
    if len(inputs) == 1:
        return (next(iter(inputs)),)
    return ()


def _merged(
    name: str, wiring: Wiring, sources: tuple[str, ...], known: Mapping[str, tuple[int | None, Any]]
) -> tuple[int | None, tuple[int, int] | None]:
    sizes = [known[src][0] for src in sources]
    planes = [known[src][1] for src in sources]
    if not sources:
        return None, None
    if len(sources) == 1:
        size, plane = sizes[0], planes[0]
    elif wiring.merge == "concat":
        size = None if any(x is None for x in sizes) else sum(x for x in sizes if x is not None)
        plane = None
    else:
        known_sizes = {x for x in sizes if x is not None}
        if len(known_sizes) > 1:
            shown = ", ".join(f"{src} {x}" for src, x in zip(sources, sizes, strict=True))
            raise ParamcalcError(f"merge = 'sum' needs equal sizes, got {shown}")
        size, plane = (known_sizes.pop() if known_sizes and None not in sizes else None), None
    if wiring.stack > 1:
        size = None if size is None else size * wiring.stack
        plane = None
    return size, plane


class _Tracer:
    """The flow of features, one component after the other (linear in components).

    :func:`trace` runs it over a whole architecture; :func:`architecture_from_dict` asks it for
    the input of each component before making it (sizes left out are inferred from it).
    """

    def __init__(self, inputs: tuple[Input, ...], names: Collection[str] = ()) -> None:
        self.inputs = {i.name: i for i in inputs}
        self.known: dict[str, tuple[int | None, Any]] = {i.name: (i.size, i.plane) for i in inputs}
        self.flows: dict[str, Flow] = {}
        self.last: str | None = None
        self.names = names  # every component's name, to tell "comes later" from "no such"

    def sources(self, w: Wiring, where: str = "") -> tuple[str, ...]:
        """The sources of a component wired by ``w``, each checked to come before it."""
        sources = w.sources or _default_source(self.last, self.inputs)
        for src in sources:
            if src not in self.known:
                later = src in self.names
                raise ParamcalcError(
                    f"{where}from = {src!r}: "
                    + ("it comes later; a source must come first" if later else "no such input or component")
                    + ("" if where or later else " before this one")
                )
        return sources

    def incoming(self, name: str, w: Wiring) -> tuple[int | None, tuple[int, int] | None]:
        """The merged input of the next component (before it is made)."""
        return _merged(name, w, self.sources(w), self.known)

    def add(self, c: Component, w: Wiring) -> Flow:
        """Check what ``c`` receives against what it expects, and record what it hands on."""
        where = f"component {c.name!r} ({c.kind})"
        sources = self.sources(w, f"{where}: ")
        try:
            incoming, plane = self._received(c, w, sources)
        except ParamcalcError as exc:
            raise ParamcalcError(f"{where}: {exc}") from None
        expected = c.in_features
        if expected is not None and incoming is not None and expected != incoming:
            what = (
                " + ".join(f"{s} ({self.known[s][0]})" for s in sources)
                if len(sources) > 1
                else repr(sources[0])
            )
            stacked = f" x {w.stack} stacked frames" if w.stack > 1 else ""
            raise ParamcalcError(
                f"{where}: expects {expected} input features but {what}{stacked} gives {incoming}"
            )
        _check_plane(c, plane, where)
        out = c.out_features(incoming)
        out_plane = c.out_plane(plane) if isinstance(c, (Conv2d, BatchNorm2d)) else None
        if isinstance(c, BatchNorm2d):
            out = incoming
        self.known[c.name] = (out, out_plane)
        self.flows[c.name] = flow = Flow(sources, incoming, plane, out, out_plane)
        self.last = c.name
        return flow

    def _received(
        self, c: Component, w: Wiring, sources: tuple[str, ...]
    ) -> tuple[int | None, tuple[int, int] | None]:
        if not isinstance(c, Attention):
            return _merged(c.name, w, sources, self.known)
        if len(sources) != 2:
            raise ParamcalcError("attention takes two sources: from = [query, keys]")
        (q, _), (k, _) = self.known[sources[0]], self.known[sources[1]]
        for label, src, got, want in (
            ("query", sources[0], q, c.query_size),
            ("key", sources[1], k, c.key_size),
        ):
            if got is not None and got != want:
                raise ParamcalcError(f"{label}_size is {want} but {src!r} outputs {got}")
        return None, None


def _check_plane(c: Component, plane: tuple[int, int] | None, where: str) -> None:
    """A 2-D layer's channels (and a Conv2d's height) against the plane it receives."""
    channels = getattr(c, "in_channels", None) if isinstance(c, (Conv2d, BatchNorm2d)) else None
    if isinstance(c, BatchNorm2d):
        channels = c.num_features
    if channels is not None and plane is not None:
        if plane[0] != channels:
            raise ParamcalcError(f"{where}: expects {channels} channels but its input has {plane[0]}")
        if isinstance(c, Conv2d) and c.height is not None and c.height != plane[1]:
            raise ParamcalcError(f"{where}: height = {c.height} but its input is {plane[1]} high")


def trace(
    components: tuple[Component, ...], inputs: tuple[Input, ...], wiring: Mapping[str, Wiring]
) -> dict[str, Flow]:
    """The flow of features through the components, checked (one line per mistake)."""
    tracer = _Tracer(inputs, {c.name for c in components})
    for c in components:
        tracer.add(c, wiring.get(c.name, Wiring()))
    return tracer.flows


@dataclass(frozen=True)
class Architecture:
    """A validated set of components with tied weights and matching sizes.

    Components run in order; each takes the previous one's output unless its :class:`Wiring`
    names other sources (named inputs or earlier components: encoder and decoder
    branches, an attention context fed to a decoder, summed directions, stacked frames).
    """

    name: str
    components: tuple[Component, ...]
    description: str = ""
    inputs: tuple[Input, ...] = ()
    wiring: Mapping[str, Wiring] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", tuple(self.components))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "wiring", dict(self.wiring))
        if not self.components:
            raise ParamcalcError("an architecture needs at least one component")
        by_name: dict[str, Component] = {}
        taken: set[str] = set()
        for i in self.inputs:
            if i.name in taken:
                raise ParamcalcError(f"input {i.name!r}: the name is used twice")
            taken.add(i.name)
        for c in self.components:
            if not isinstance(c, Component):
                raise ParamcalcError(f"not a component: {c!r}")
            if not _NAME_RE.match(c.name):
                raise ParamcalcError(
                    f"component {c.name!r} ({c.kind}): a name must be a Python identifier "
                    "(letters, digits, underscores), as torch module names are"
                )
            if c.name in by_name or c.name in taken:
                raise ParamcalcError(f"component {c.name!r} ({c.kind}): the name is used twice")
            by_name[c.name] = c
        for name in self.wiring:
            if name not in by_name:
                raise ParamcalcError(f"wiring names no component {name!r}")
        for c in self.components:
            self._check_tie(c, by_name)
        trace(self.components, self.inputs, self.wiring)

    def flows(self) -> dict[str, Flow]:
        """What each component receives and hands on."""
        return trace(self.components, self.inputs, self.wiring)

    @staticmethod
    def _check_tie(c: Component, by_name: Mapping[str, Component]) -> None:
        tie = c.tie
        if tie is None:
            return
        where = f"component {c.name!r} ({c.kind})"
        if tie == c.name:
            raise ParamcalcError(f"{where}: tie = {tie!r} names the component itself")
        target = by_name.get(tie)
        if target is None:
            raise ParamcalcError(
                f"{where}: tie = {tie!r}, but there is no component {tie!r} "
                f"(components: {', '.join(by_name)})"
            )
        if not isinstance(target, (Embedding, Linear)):
            raise ParamcalcError(
                f"{where}: tie = {tie!r} is a {target.kind}; only embedding or linear weights tie"
            )
        if target.tie is not None:
            raise ParamcalcError(
                f"{where}: tie = {tie!r}, which is itself tied to {target.tie!r}; tie both to one"
            )
        mine = next(t for t in c.tensors() if t.name == "weight").shape
        theirs = next(t for t in target.tensors() if t.name == "weight").shape
        if mine != theirs:
            raise ParamcalcError(
                f"{where}: tie = {tie!r} needs equal weight shapes, but {c.name}.weight is "
                f"{mine} and {tie}.weight is {theirs}"
            )

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise ParamcalcError(f"no component {name!r} in architecture {self.name!r}")

    @property
    def specs(self) -> dict[str, RecurrentSpec]:
        """The recurrent stacks, by component name."""
        return {c.name: c.spec for c in self.components if isinstance(c, Recurrent)}


def with_head(spec: RecurrentSpec, head: int) -> Architecture:
    """The recurrent stack ``spec`` (component ``rnn``) with a classifier ``nn.Linear`` on its
    output (component ``head``): the seed's ``nn.LSTM(28, 256, 2)`` + ``nn.Linear(256, 10)``.

    The head reads the stack's output features: ``P or Dh`` per direction, both directions
    concatenated (``2·(P or Dh)``) unless they are merged (``merge_mode`` sum, ave, mul); for a
    single-step cell, ``P or Dh``. It has ``out·in + out`` parameters (weight and bias).
    """
    if not isinstance(spec, RecurrentSpec):
        from .coerce import as_spec

        spec = as_spec(spec, "with_head")
    rnn = Recurrent("rnn", spec)
    width = rnn.out_features(None)
    assert width is not None
    linear = Linear("head", width, check_size("head", head))
    note = spec.cell_type.layout_note(spec)
    return Architecture(
        f"{spec.cell}_head", (rnn, linear), f"{spec.describe()} + {linear.describe()}  [{note}]"
    )


# --- counting --------------------------------------------------------------------------------

ARCH_TENSOR_COLUMNS = (
    Column("component", "str"),
    Column("name", "str"),
    Column("shape", "shape"),
    Column("numel"),
    Column("counted"),
    Column("formula", "str"),
    Column("tied_to", "str", doc="the tensor this one is, when it is counted there"),
)
ARCH_COMPONENT_COLUMNS = (
    Column("component", "str"),
    Column("kind", "str"),
    Column("module", "str"),
    Column("tensors"),
    Column("params"),
    Column("formula", "str", wide=True),
    Column("note", "str", wide=True),  # ties also show in the total line, buffers in the tensor view
)
ARCH_TOTAL_COLUMNS = (Column("architecture", "str"), Column("components"), Column("params"))


@dataclass(frozen=True)
class ArchTensorRow:
    """One tensor of an architecture; ``counted`` is 0 for the second holder of a tied weight."""

    component: str
    name: str  # full name, as named_parameters() gives it: "<component>.<tensor>"
    shape: tuple[int, ...]
    numel: int
    counted: int
    formula: str
    tied_to: str | None = None  # full name of the tensor this one is (when counted elsewhere)


@dataclass(frozen=True)
class ArchComponentRow:
    component: str
    kind: str
    module: str
    tensors: int
    params: int  # counted (tied weights once)
    formula: str
    note: str
    all_params: int = 0  # every tensor of the component, a tied weight included


@dataclass(frozen=True, repr=False)
class ArchitectureCount(Result):
    """The analytic count of an architecture. Views: ``tensor`` (default), ``component``, ``total``."""

    VIEWS = ("tensor", "component", "total")

    arch: Architecture
    rows: tuple[ArchTensorRow, ...]
    components: tuple[ArchComponentRow, ...]
    total: int
    source: str = ""

    @property
    def tied(self) -> tuple[ArchTensorRow, ...]:
        return tuple(r for r in self.rows if r.tied_to)

    @property
    def unique_rows(self) -> tuple[ArchTensorRow, ...]:
        """The tensors ``named_parameters()`` yields: tied weights once, at first appearance."""
        return tuple(r for r in self.rows if not r.tied_to)

    def _table(self, view: str) -> Table:
        if view == "tensor":
            return Table(
                ARCH_TENSOR_COLUMNS,
                tuple(
                    (r.component, r.name, r.shape, r.numel, r.counted, r.formula, r.tied_to)
                    for r in self.rows
                ),
            )
        if view == "component":
            return Table(
                ARCH_COMPONENT_COLUMNS,
                tuple(
                    (c.component, c.kind, c.module, c.tensors, c.params, c.formula, c.note or None)
                    for c in self.components
                ),
            )
        return Table(ARCH_TOTAL_COLUMNS, ((self.arch.name, len(self.components), self.total),))

    def title(self) -> str:
        where = f" ({self.source})" if self.source else ""
        desc = f": {self.arch.description}" if self.arch.description else ""
        return f"architecture {self.arch.name!r}{where}{desc}"

    def headline(self) -> str:
        return f"architecture {self.arch.name!r}: {plural(self.total, 'parameter')}"

    def summary(self, view: str | None = None) -> list[str]:
        lines = []
        for c in self.components if view in (None, "tensor") else ():
            counted_as = f"{c.formula} = {c.all_params:,}" if c.tensors else "no parameters"
            line = f"{c.component}: {c.module}: {counted_as}"
            if c.all_params != c.params:
                line += f"; counted here {c.params:,}"
            lines.append(line + (f"  [{c.note}]" if c.note else ""))
        tied = f" ({plural(len(self.tied), 'tied tensor')} counted once)" if self.tied else ""
        lines.append(f"total: {plural(self.total, 'parameter')}{tied}")
        return lines

    def meta(self) -> dict[str, Any]:
        return {"architecture": self.arch.name, "file": self.source or None, "total": self.total}

    def context(self) -> list[tuple[str, str]]:
        return [("architecture", self.arch.name), ("total", f"{self.total:,}")]


def count_architecture(arch: Architecture, source: str = "") -> ArchitectureCount:
    """Every tensor of ``arch`` with its formula; tied weights counted once (first appearance)."""
    if not isinstance(arch, Architecture):
        raise ParamcalcError(f"count_architecture needs an Architecture, got {type(arch).__name__}")
    # A tie makes two (component, "weight") names one tensor; its key is the target's name.
    key_of: dict[str, str] = {}
    for c in arch.components:
        if c.tie:
            key_of[f"{c.name}.weight"] = f"{c.tie}.weight"
    targets = set(key_of.values())
    first: dict[str, str] = {}
    rows: list[ArchTensorRow] = []
    comps: list[ArchComponentRow] = []
    for c in arch.components:
        counted_here = 0
        notes = []
        ts = c.tensors()
        for i, t in enumerate(ts):
            full = f"{c.name}.{t.name}"
            # only a tie makes two tensors one; Keras' names repeat per layer and direction
            key = key_of.get(full) or (full if full in targets else f"{full}#{i}")
            if key in first:
                rows.append(ArchTensorRow(c.name, full, t.shape, t.numel, 0, t.formula, first[key]))
                notes.append(f"{t.name} tied to {first[key]} (counted once)")
                continue
            first[key] = full
            rows.append(ArchTensorRow(c.name, full, t.shape, t.numel, t.numel, t.formula))
            counted_here += t.numel
        if c.tie and not notes:
            notes.append(f"weight shared with {c.tie}.weight (counted here, first appearance)")
        if c.remark():
            notes.append(c.remark())
        comps.append(
            ArchComponentRow(
                c.name,
                c.kind,
                c.describe(),
                len(ts),
                counted_here,
                c.formula(),
                "; ".join(notes),
                sum(t.numel for t in ts),
            )
        )
    total = sum(r.counted for r in rows)
    return ArchitectureCount(arch, tuple(rows), tuple(comps), total, source)


# --- TOML ------------------------------------------------------------------------------------

_RECURRENT_KEYS = {
    "input_size",
    "hidden_size",
    "num_layers",
    "bidirectional",
    "bias",
    "proj_size",
    "nonlinearity",
    "dropout",
    "batch_first",
    "bias_vectors",
    "peephole",
    "merge_mode",
    "reset_after",
}
#: Keys each kind accepts besides ``name`` and ``kind`` (some are accepted and ignored: they
#: change behaviour, not parameter counts).
KIND_KEYS: dict[str, set[str]] = {
    "embedding": {"num_embeddings", "embedding_dim", "padding_idx", "max_norm", "tie"},
    "linear": {"in_features", "out_features", "bias", "tie"},
    "layernorm": {"normalized_shape", "eps", "elementwise_affine", "bias"},
    "dropout": {"p"},
    "conv1d": {
        "in_channels",
        "out_channels",
        "kernel_size",
        "groups",
        "bias",
        "stride",
        "padding",
        "dilation",
    },
    "batchnorm1d": {"num_features", "affine", "eps", "momentum", "track_running_stats"},
    "batchnorm2d": {"num_features", "affine", "eps", "momentum", "track_running_stats"},
    "conv2d": {
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
        "bias",
        "height",
        "padding_mode",
    },
    "attention": {"query_size", "key_size", "attn_size", "normalize"},
}
#: Keys every component accepts: where its input comes from (see :class:`Wiring`).
WIRING_KEYS = {"from", "merge", "stack"}
TOP_KEYS = {"name", "description", "component", "input"}
INPUT_KEYS = {"name", "size", "channels", "height"}
#: Largest architecture file read (a real one is a few kB).
MAX_TOML_BYTES = 1 << 20


def recurrent_kinds() -> list[str]:
    return [*CELLS, *ALIASES]


def with_nonlinearity(kind: str, nonlinearity: Any) -> str:
    """The registered cell that is ``kind`` with PyTorch's ``nonlinearity=`` argument.

    ``rnn`` with ``"relu"`` is ``rnn_relu``, ``rnn_cell`` with ``"relu"`` is ``rnn_relu_cell``:
    the cells sharing a ``torch.nn`` class that differ in their constructor's nonlinearity.
    """
    base = get_cell(kind)
    if nonlinearity is None:
        return base.name
    siblings = {
        c.torch.nonlinearity: c.name
        for c in CELLS.values()
        if c.torch.nonlinearity and c.torch.nn_class == base.torch.nn_class
    }
    if not base.torch.nonlinearity or not siblings:
        takes = ", ".join(c.name for c in CELLS.values() if c.torch.nonlinearity)
        raise ParamcalcError(f"nonlinearity applies only to {takes}, not {base.name}")
    if nonlinearity not in siblings:
        raise ParamcalcError(
            f"nonlinearity must be one of {', '.join(map(repr, siblings))}, got {nonlinearity!r}"
        )
    return siblings[nonlinearity]


def _required(table: Mapping[str, Any], key: str, why: str = "") -> Any:
    if key not in table:
        raise ParamcalcError(f"missing {key}{why}")
    return table[key]


def _inferred(table: Mapping[str, Any], key: str, incoming: int | None) -> Any:
    if key in table:
        return table[key]
    if incoming is None:
        raise ParamcalcError(
            f"missing {key} (it may be left out only after a component whose output size is known)"
        )
    return incoming


def _str(table: Mapping[str, Any], key: str) -> str | None:
    v = table.get(key)
    if v is not None and not isinstance(v, str):
        raise ParamcalcError(f"{key} must be a string, got {v!r}")
    return v


def _component_from_table(
    table: Mapping[str, Any],
    name: str,
    kind: str,
    incoming: int | None,
    plane: tuple[int, int] | None = None,
) -> Component:
    table = {k: v for k, v in table.items() if k not in WIRING_KEYS}
    # a registered cell (an installed plugin's too: looked up only if the kind is no layer's)
    if kind in CELLS or kind in ALIASES or (kind not in KIND_KEYS and find_cell(kind) is not None):
        return _recurrent_from_table(table, name, kind, incoming)
    keys = KIND_KEYS.get(kind)
    if keys is None:
        raise ParamcalcError(
            f"unknown kind {kind!r}{plugin_note()}: expected one of "
            f"{', '.join([*recurrent_kinds(), *KIND_KEYS])}"
        )
    _no_unknown(set(table) - keys - {"name", "kind"}, keys)
    builders: dict[str, Callable[[], Component]] = {
        "embedding": lambda: Embedding(
            name,
            _required(table, "num_embeddings"),
            _required(table, "embedding_dim"),
            _str(table, "tie"),
        ),
        "linear": lambda: Linear(
            name,
            _inferred(table, "in_features", incoming),
            _required(table, "out_features"),
            table.get("bias", True),
            _str(table, "tie"),
        ),
        "layernorm": lambda: LayerNorm(
            name,
            _inferred(table, "normalized_shape", incoming),
            table.get("elementwise_affine", True),
            table.get("bias", True),
        ),
        "dropout": lambda: Dropout(name, table.get("p", 0.5)),
        "conv1d": lambda: Conv1d(
            name,
            _inferred(table, "in_channels", incoming),
            _required(table, "out_channels"),
            _required(table, "kernel_size"),
            table.get("groups", 1),
            table.get("bias", True),
        ),
        "batchnorm1d": lambda: BatchNorm1d(
            name, _inferred(table, "num_features", incoming), table.get("affine", True)
        ),
        "batchnorm2d": lambda: BatchNorm2d(
            name, _inferred(table, "num_features", plane[0] if plane else None), table.get("affine", True)
        ),
        "conv2d": lambda: Conv2d(
            name,
            _inferred(table, "in_channels", plane[0] if plane else None),
            _required(table, "out_channels"),
            _required(table, "kernel_size"),
            table.get("stride", 1),
            table.get("padding", 0),
            table.get("dilation", 1),
            table.get("groups", 1),
            table.get("bias", True),
            table.get("height", plane[1] if plane else None),
        ),
        "attention": lambda: Attention(
            name,
            _required(table, "query_size"),
            _required(table, "key_size"),
            _required(table, "attn_size"),
            table.get("normalize", False),
        ),
    }
    return builders[kind]()


def _recurrent_from_table(table: Mapping[str, Any], name: str, kind: str, incoming: int | None) -> Recurrent:
    _no_unknown(set(table) - _RECURRENT_KEYS - {"name", "kind"}, _RECURRENT_KEYS)
    spec = RecurrentSpec(
        cell=with_nonlinearity(kind, table.get("nonlinearity")),
        input_size=_inferred(table, "input_size", incoming),
        hidden_size=_required(table, "hidden_size"),
        num_layers=table.get("num_layers", 1),
        bidirectional=table.get("bidirectional", False),
        bias=table.get("bias", True),
        proj_size=table.get("proj_size", 0),
        bias_vectors=table.get("bias_vectors"),
        peephole=table.get("peephole"),
        merge_mode=table.get("merge_mode", "concat"),
        reset_after=table.get("reset_after", True),
    )
    return Recurrent(name, spec)


def _no_unknown(unknown: set[str], known: set[str]) -> None:
    if unknown:
        raise ParamcalcError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(sorted(unknown))} "
            f"(known: name, kind, {', '.join(sorted(known))})"
        )


def architecture_from_dict(data: Mapping[str, Any], default_name: str = "architecture") -> Architecture:
    """Build an :class:`Architecture` from parsed TOML (or any mapping of the same shape)."""
    if not isinstance(data, Mapping):
        raise ParamcalcError(f"an architecture is a mapping (parsed TOML), got {type(data).__name__}")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ParamcalcError(
            f"unknown top-level key{'s' if len(unknown) > 1 else ''} {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(TOP_KEYS))}; components go in [[component]] tables)"
        )
    name = _str(data, "name") or default_name
    description = _str(data, "description") or ""
    tables = data.get("component")
    if not tables:
        raise ParamcalcError("no components: add at least one [[component]] table")
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ParamcalcError("component must be an array of tables: write each as [[component]]")
    inputs = _inputs(data.get("input"))
    components: list[Component] = []
    wiring: dict[str, Wiring] = {}
    tracer = _Tracer(inputs)
    for i, table in enumerate(tables):
        kind_raw = table.get("kind")
        cname = table.get("name", f"{kind_raw or 'component'}_{i}")
        where = f"component {cname!r}" + (f" ({kind_raw})" if isinstance(kind_raw, str) else f" (#{i + 1})")
        try:
            if not isinstance(cname, str):
                raise ParamcalcError(f"name must be a string, got {cname!r}")
            if not isinstance(kind_raw, str):
                raise ParamcalcError(
                    "missing kind" if kind_raw is None else f"kind must be a string, got {kind_raw!r}"
                )
            kind = kind_raw.strip().lower().replace("-", "_")
            w = _wiring(table)
            if w != Wiring():
                wiring[cname] = w
            incoming, plane = tracer.incoming(cname, w)
            comp = _component_from_table(table, cname, kind, incoming, plane)
        except ParamcalcError as exc:
            raise ParamcalcError(f"{where}: {exc}") from None
        tracer.add(comp, w)
        components.append(comp)
    return Architecture(name, tuple(components), description, inputs, wiring)


def _inputs(raw: Any) -> tuple[Input, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ParamcalcError("input must be an array of tables: write each as [[input]]")
    out = []
    seen: set[str] = set()
    for t in raw:
        unknown = set(t) - INPUT_KEYS
        if unknown:
            raise ParamcalcError(
                f"input: unknown {'key' if len(unknown) == 1 else 'keys'} {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(INPUT_KEYS))})"
            )
        name = t.get("name")
        if not isinstance(name, str):
            raise ParamcalcError(f"input: name must be a string, got {name!r}")
        if name in seen:
            raise ParamcalcError(f"input {name!r}: the name is used twice (two [[input]] tables)")
        seen.add(name)
        try:
            out.append(Input(name, t.get("size"), t.get("channels"), t.get("height")))
        except ParamcalcError as exc:
            raise ParamcalcError(f"input {name!r}: {exc}") from None
    return tuple(out)


def _wiring(table: Mapping[str, Any]) -> Wiring:
    src = table.get("from", ())
    if isinstance(src, str):
        src = (src,)
    if not isinstance(src, (list, tuple)) or not all(isinstance(x, str) for x in src):
        raise ParamcalcError(f"from must be a name or a list of names, got {src!r}")
    merge = table.get("merge", "concat")
    if not isinstance(merge, str):
        raise ParamcalcError(f"merge must be a string, got {merge!r}")
    return Wiring(tuple(src), merge, table.get("stack", 1))


def _toml_loads(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as exc:
        raise ParamcalcError(f"invalid TOML: {exc}") from None
    except RecursionError:
        raise ParamcalcError("invalid TOML: arrays or tables nested too deeply") from None


def load_architecture(path: str | Path) -> Architecture:
    """Read an architecture TOML file. Every error names the file (and the component)."""
    import os

    from .files import read_text

    if not isinstance(path, (str, os.PathLike)):
        raise ParamcalcError(f"load_architecture needs a file path (str or Path), got {type(path).__name__}")
    p = Path(path)
    text = read_text(p, MAX_TOML_BYTES, "TOML file")
    try:
        return architecture_from_dict(_toml_loads(text), default_name=p.stem)
    except ParamcalcError as exc:
        raise ParamcalcError(f"{p}: {exc}") from None


#: Where the example architectures ship inside the package (``paramcalc report NAME``).
BUNDLED = ("data", "architectures")


def bundled_architectures() -> dict[str, Path]:
    """The example architectures installed with paramcalc, by name (the file's stem):
    ``mnist_rows_lstm`` (the seed's classifier), ``awd_lstm_lm``, ``deepspeech2``, ..."""
    from importlib.resources import files

    folder = files("paramcalc")
    for part in BUNDLED:
        folder = folder.joinpath(part)
    out = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".toml") and entry.is_file():
            out[entry.name[: -len(".toml")]] = Path(str(entry))
    return dict(sorted(out.items()))


def find_architecture(name_or_path: str | Path) -> tuple[Path, str]:
    """A TOML file to load: ``name_or_path`` if such a file exists, else the bundled example of
    that name (``mnist_rows_lstm``, also ``mnist-rows-lstm`` or ``mnist_rows_lstm.toml``).
    Returns the path and how to name it in a title."""
    import os

    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ParamcalcError(
            f"an architecture is a TOML file path or a bundled name, got {type(name_or_path).__name__}"
        )
    given = os.fspath(name_or_path)
    if os.path.lexists(given) or os.sep in given or (os.altsep and os.altsep in given):
        return Path(given), given
    key = given[: -len(".toml")] if given.lower().endswith(".toml") else given
    key = key.strip().lower().replace("-", "_")
    bundled = bundled_architectures()
    if key in bundled:
        return bundled[key], f"bundled {key}"
    raise ParamcalcError(f"{given}: no such file, nor a bundled architecture (bundled: {', '.join(bundled)})")


BUNDLED_COLUMNS = (
    Column("name", "str", doc="what paramcalc report takes"),
    Column("architecture", "str", wide=True, doc="the name the file gives"),
    Column("components"),
    Column("params"),
    Column("description", "str"),
)


class BundledArchitectures(Result):
    """The example architectures shipped with paramcalc (``paramcalc report --list``)."""

    VIEWS = ("rows",)

    def __init__(self) -> None:
        self.counts = {
            name: count_architecture(load_architecture(p)) for name, p in bundled_architectures().items()
        }

    def _table(self, view: str) -> Table:
        rows = [
            (name, c.arch.name, len(c.arch.components), c.total, c.arch.description)
            for name, c in self.counts.items()
        ]
        return Table(BUNDLED_COLUMNS, tuple(rows))

    def title(self) -> str:
        return "architectures bundled with paramcalc: paramcalc report NAME"


@dataclass(frozen=True)
class Custom(Component):
    """Any layer described by its tensors: what a user's adapter returns for its own module.

    >>> gate = Custom("gate", "Gate(16)", (tensor_formula("scale", (16,), "n", "16"),))
    >>> gate.describe(), [(t.name, t.numel, t.formula) for t in gate.tensors()]
    ('Gate(16)', [('scale', 16, 'n = 16')])
    """

    label: str = ""
    items: tuple[TensorFormula, ...] = ()
    total_formula: str = ""

    kind: ClassVar[str] = "custom"

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        for t in self.items:
            if not isinstance(t, TensorFormula):
                raise ParamcalcError(f"component {self.name!r}: items must be TensorFormula, got {t!r}")

    def tensors(self) -> tuple[TensorFormula, ...]:
        return self.items

    def formula(self) -> str:
        if self.total_formula:
            return self.total_formula
        if not self.items:
            return "no parameters"
        return " + ".join(t.formula.split(" = ")[-1] for t in self.items)

    def describe(self) -> str:
        return self.label or "custom"


def tensor_formula(name: str, shape: tuple[int, ...], symbolic: str, substituted: str) -> TensorFormula:
    """An analytic tensor for :class:`Custom`: ``tensor_formula("w", (4, 8), "4n·m", "4·1·8")``."""
    return _tensor(name, tuple(shape), symbolic, substituted)
