"""The components of an architecture: each knows its parameter tensors, named and shaped as
the matching ``torch.nn`` module stores them, with a formula per tensor.

Recurrent stacks of any registered cell use PyTorch's tensor names (their layout knobs: bias
vectors, peepholes, merge mode, as in :mod:`paramcalc.core.params`); ``embedding``, ``linear``,
``layernorm``, ``dropout``, ``conv1d``, ``conv2d``, ``batchnorm1d``, ``batchnorm2d``,
``attention`` follow torch; :class:`Custom` is any layer a user's adapter describes by its tensors.
Only parameters count: ``batchnorm1d``'s running statistics are buffers, not parameters.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from functools import lru_cache
from math import prod
from typing import Any, ClassVar, NamedTuple, TypeVar

from ...errors import ParamcalcError
from ..params import count as count_spec
from ..params import total_params
from ..spec import MAX_LAYERS, RecurrentSpec, check_size

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_C = TypeVar("_C", bound="Component")


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

    def renamed(self: _C, name: str) -> _C:
        """This component under another ``name``. Its values were checked when it was made, so
        the copy is not checked again: a model's many identical layers share one reading."""
        if name == self.name:
            return self
        try:
            fields = self.__dict__
        except AttributeError:  # a user's slotted dataclass
            return dataclasses.replace(self, name=name)
        new = object.__new__(type(self))
        copied = new.__dict__
        copied.update(fields)
        copied["name"] = name
        return new


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


@dataclass(frozen=True)
class BlockStack(Component):
    """``num_layers`` copies of a registered block (:mod:`paramcalc.core.blocks`: ``mamba``,
    ``rwkv``, ``mlstm``, ``rglru``, ...) with the sizes ``sizes``, layer ``i``'s tensors named
    ``{i}.`` plus the block's own names (``layers.3.mixer.in_proj.weight`` in a component
    ``layers``). The features in and out are the block's ``d_model`` (a residual
    block keeps its width)."""

    block: str = ""
    sizes: tuple[tuple[str, int], ...] = ()
    num_layers: int = 1

    torch_class: ClassVar[str] = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(sorted(dict(self.sizes).items())))
        object.__setattr__(self, "num_layers", check_size("num_layers", self.num_layers, maximum=MAX_LAYERS))
        self._bound(0)  # checks the block's name and its sizes, one line naming the problem

    def _bound(self, i: int) -> Any:
        from ..blocks import get_block

        return get_block(self.block).bind(dict(self.sizes), f"{i}.")

    @property
    def kind(self) -> str:  # type: ignore[override]  # the block's registry name
        return str(self._bound(0).type.name)

    @property
    def in_features(self) -> int | None:
        return dict(self.sizes).get("d_model")

    def out_features(self, incoming: int | None) -> int | None:
        return dict(self.sizes).get("d_model", incoming)

    def tensors(self) -> tuple[TensorFormula, ...]:
        out = []
        for i in range(self.num_layers):
            bound = self._bound(i)
            shapes = {t.name: t.shape for t in bound.tensors()}
            out += [_tensor(name, shapes[name], sym, num) for name, sym, num, _ in bound.formulas()]
        return tuple(out)

    def formula(self) -> str:
        one = self._bound(0)
        per = one.params
        lead = f"{self.num_layers}·" if self.num_layers > 1 else ""
        return f"{lead}{per:,} per {one.type.name} block = {self.num_layers * per:,}"

    def describe(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes)
        return f"{self.num_layers} × {self.block}({sizes})"

    def remark(self) -> str:
        return (
            "a block of paramcalc's registry: counted from its entry (paramcalc explain " + self.block + ")"
        )


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
