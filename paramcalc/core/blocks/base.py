"""What a block entry is, a language model made of blocks, and the two registries.

A *block* is the recurrent unit of today's language models (a Mamba mixer, an RWKV time-mixing
block, an xLSTM mLSTM block, Griffin's RG-LRU block): the same kind of registry entry as a
classic cell (:mod:`paramcalc.core.celltypes`), with more tensors and its own sizes.

* :class:`BlockTensor`: one named tensor, its shape as a rule over the block's sizes
  (:mod:`paramcalc.core.shapes`: ``("2·d_inner", "d_model")``), its cost role and, optionally,
  the knob (a size) that must be non-zero for it to exist (``when="conv_bias"``).
* :class:`BlockType`: the entry: sizes, tensors, equations (each naming the tensors of its
  terms), the cost rules beyond the GEMMs and convolutions its tensors imply (``scan_flops``:
  the recurrence's elementwise work per token; ``extra_flops``: anything else per token, may use
  ``ctx``, the context length), the inference state carried between tokens (element rules, may
  use ``ctx`` for a bounded attention cache), and the form of its recurrence.
* :class:`Block`: an entry with its sizes bound (a configured layer): tensors, parameters, FLOPs
  per token, state elements, formulas symbolic and substituted.
* :class:`LanguageModel`: embedding, a sequence of named blocks (``backbone.layers.3.mixer.``),
  final tensors and a tied or untied head, with the vocabulary padding stated.

Cost conventions (stated once, here): a FLOP is one multiply or one add; a GEMM tensor
(``role="gemm"``) of ``n`` elements costs ``2n`` FLOPs per token; a depthwise convolution
(``role="conv"``) of ``n`` weights costs ``2n`` per token; biases, norms and vectors cost what the
entry's ``scan_flops``/``extra_flops`` rules say (they are O(width), small against the GEMMs);
the embedding lookup costs nothing; the head is a GEMM. Training FLOPs are 3x the forward
(backward = 2x forward, the usual convention). State bytes are state elements times the dtype's
bytes.

The registries: :func:`register_block` / :func:`get_block` / :func:`registered_blocks` for the
entries, :func:`register_model_type` / :func:`model_reader` / :func:`model_types` for the readers
that turn a Hugging Face ``config.json`` (a dict) into a :class:`LanguageModel`.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ...errors import ParamcalcError
from .. import shapes
from ..spec import MAX_SIZE

#: A size every block may use in its cost and state rules: the context length (tokens so far).
CONTEXT = "ctx"
#: What a tensor does per token (how its FLOPs are priced; see the module docstring).
Role = Literal["gemm", "conv", "vector", "norm", "embedding"]
ROLES: tuple[str, ...] = ("gemm", "conv", "vector", "norm", "embedding")
#: How the recurrence runs: one step per token, or a parallel/chunked scan over the sequence.
Form = Literal["sequential", "scan", "chunked", "attention"]
FORMS: tuple[str, ...] = ("sequential", "scan", "chunked", "attention")
#: Bytes per element of the dtypes a state can be held in.
DTYPE_BYTES: dict[str, int] = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "bfloat16": 2, "bf16": 2}


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of ``dtype`` (one line naming the known ones otherwise)."""
    try:
        return DTYPE_BYTES[dtype.lower()]
    except (KeyError, AttributeError):
        raise ParamcalcError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_BYTES)}") from None


@functools.lru_cache(maxsize=1024)
def _rule(rule: tuple[str, ...], sizes: tuple[str, ...]) -> tuple[ast.expr, ...]:
    return shapes.parse_rule(rule, sizes)


@dataclass(frozen=True)
class BlockTensor:
    """One tensor of a block: ``name`` relative to the block's prefix (``in_proj.weight``),
    ``rule`` its shape over the block's sizes, ``role`` how it is priced, ``when`` the size that
    must be non-zero for it to exist (a knob: ``conv_bias``, ``use_bias``), ``note`` what it is."""

    name: str
    rule: tuple[str, ...]
    role: Role = "vector"
    when: str | None = None
    note: str = ""


@dataclass(frozen=True)
class StateTerm:
    """One part of the inference state per sequence: ``name`` (``ssm_state``), ``rule`` its
    shape over the block's sizes (may use ``ctx`` for an attention cache), ``note``."""

    name: str
    rule: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class BlockType:
    """A registry entry for a block (see the module docstring).

    ``sizes`` are the names its rules may use (``ctx`` is always allowed in cost and state
    rules); ``defaults`` give sizes a value when a configuration leaves them out; ``equations``
    are pairs ``(equation, tensors that implement its terms)``; ``scan_flops`` and
    ``extra_flops`` are rules for FLOPs per token beyond the GEMMs and convolutions (one
    expression each); ``state`` the inference state; ``form`` how the recurrence runs;
    ``reference`` the paper or implementation the layout follows; ``hf_class`` the
    ``transformers`` class that implements it (for ``--check``).
    """

    name: str
    title: str
    sizes: tuple[str, ...]
    tensors: tuple[BlockTensor, ...]
    equations: tuple[tuple[str, tuple[str, ...]], ...] = ()
    scan_flops: str = "0"
    extra_flops: str = "0"
    state: tuple[StateTerm, ...] = ()
    form: Form = "sequential"
    defaults: Mapping[str, int] = field(default_factory=dict)
    reference: str = ""
    hf_class: str = ""

    def __post_init__(self) -> None:
        validate_block(self)

    @property
    def cost_sizes(self) -> tuple[str, ...]:
        return (*self.sizes, CONTEXT)

    def bind(self, sizes: Mapping[str, int], prefix: str = "") -> Block:
        """This entry with its sizes bound (defaults filled in; one line naming a missing or bad
        size)."""
        env = {**self.defaults, **sizes}
        missing = [s for s in self.sizes if s not in env]
        if missing:
            raise ParamcalcError(f"block {self.name!r} needs {_sizes(missing)}")
        unknown = sorted(set(env) - set(self.sizes))
        if unknown:
            raise ParamcalcError(f"block {self.name!r} has no {_sizes(unknown).removeprefix('the ')}")
        for key, value in env.items():
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SIZE:
                raise ParamcalcError(
                    f"block {self.name!r}: size {key} must be an integer >= 0, got {value!r}"
                )
        return Block(self, dict(env), prefix)


def _sizes(names: Sequence[str]) -> str:
    """``the size width`` or ``the sizes a, b``."""
    return f"the size{'s' if len(names) != 1 else ''} {', '.join(names)}"


def _names(noun: str, names: Sequence[str]) -> str:
    """``tensor name w appears`` or ``tensor names v, w appear``."""
    if len(names) == 1:
        return f"{noun} {names[0]} appears"
    return f"{noun}s {', '.join(names)} appear"


def validate_block(block: BlockType) -> None:
    """Check an entry when it is made: names, sizes, every rule parsed against its sizes."""
    if not block.name or not block.name.replace("_", "").replace("-", "").isalnum():
        raise ParamcalcError(f"a block's name must be a non-empty identifier, got {block.name!r}")
    if CONTEXT in block.sizes:
        raise ParamcalcError(f"block {block.name!r}: {CONTEXT!r} is reserved (the context length)")
    names = [t.name for t in block.tensors]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ParamcalcError(f"block {block.name!r}: {_names('tensor name', dup)} twice")
    if block.form not in FORMS:
        raise ParamcalcError(f"block {block.name!r}: form must be one of {', '.join(FORMS)}")
    for t in block.tensors:
        if t.role not in ROLES:
            raise ParamcalcError(
                f"block {block.name!r}, tensor {t.name}: role must be one of {'/'.join(ROLES)}"
            )
        if t.when is not None and t.when not in block.sizes:
            raise ParamcalcError(f"block {block.name!r}, tensor {t.name}: 'when' names no size ({t.when!r})")
        _rule(tuple(t.rule), block.sizes)
    for s in block.state:
        _rule(tuple(s.rule), block.cost_sizes)
    for text in (block.scan_flops, block.extra_flops):
        _rule((text,), block.cost_sizes)
    for _eq, parts in block.equations:
        unknown = [p for p in parts if p not in names]
        if unknown:
            raise ParamcalcError(f"block {block.name!r}: an equation names no tensor {', '.join(unknown)}")


@dataclass(frozen=True)
class TensorShape:
    """A tensor of a bound block or model: full name, shape, role and the block it belongs to."""

    name: str
    shape: tuple[int, ...]
    role: str
    block: str

    @property
    def numel(self) -> int:
        return shapes.numel(self.shape)


@dataclass(frozen=True)
class Block:
    """A :class:`BlockType` with its sizes bound and the prefix its tensors are named under."""

    type: BlockType
    env: dict[str, int]
    prefix: str = ""

    def _present(self, t: BlockTensor) -> bool:
        return t.when is None or self.env[t.when] != 0

    def tensors(self) -> list[TensorShape]:
        """The tensors that exist for these sizes, named ``prefix + name``."""
        out = []
        for t in self.type.tensors:
            if self._present(t):
                nodes = _rule(tuple(t.rule), self.type.sizes)
                shape = tuple(shapes.evaluate(n, self.env) for n in nodes)
                out.append(TensorShape(self.prefix + t.name, shape, t.role, self.type.name))
        return out

    @property
    def params(self) -> int:
        return sum(t.numel for t in self.tensors())

    def _cost_env(self, ctx: int) -> dict[str, int]:
        if isinstance(ctx, bool) or not isinstance(ctx, int) or ctx < 0:
            raise ParamcalcError(f"context length must be an integer >= 0, got {ctx!r}")
        return {**self.env, CONTEXT: ctx}

    def flops_per_token(self, ctx: int = 0) -> int:
        """Forward FLOPs for one token at context ``ctx`` (GEMMs, convolutions, scan, extra)."""
        return sum(self.flops_breakdown(ctx).values())

    def flops_breakdown(self, ctx: int = 0) -> dict[str, int]:
        """FLOPs per token by kind: ``gemm``, ``conv``, ``scan``, ``extra``."""
        env = self._cost_env(ctx)
        ts = self.tensors()
        return {
            "gemm": sum(2 * t.numel for t in ts if t.role == "gemm"),
            "conv": sum(2 * t.numel for t in ts if t.role == "conv"),
            "scan": shapes.evaluate(_rule((self.type.scan_flops,), self.type.cost_sizes)[0], env),
            "extra": shapes.evaluate(_rule((self.type.extra_flops,), self.type.cost_sizes)[0], env),
        }

    def state_elements(self, ctx: int = 0) -> dict[str, int]:
        """Elements of each inference-state term per sequence at context ``ctx``."""
        env = self._cost_env(ctx)
        return {
            s.name: shapes.numel(
                [shapes.evaluate(n, env) for n in _rule(tuple(s.rule), self.type.cost_sizes)]
            )
            for s in self.type.state
        }

    def formulas(self) -> list[tuple[str, str, str, int]]:
        """``(tensor, symbolic, substituted, value)`` for each tensor that exists."""
        out = []
        for t in self.type.tensors:
            if not self._present(t):
                continue
            nodes = _rule(tuple(t.rule), self.type.sizes)
            node = shapes.product(nodes)
            sym, num = shapes.render(node, {}, self.env)
            out.append((self.prefix + t.name, sym, num, shapes.evaluate(node, self.env)))
        return out


@dataclass(frozen=True)
class LanguageModel:
    """A language model assembled from blocks.

    ``embedding``: the token embedding (``vocab_padded × d_model``; ``vocab`` is what the
    configuration declares, ``vocab_padded`` what is stored after padding to a multiple);
    ``blocks``: every bound block in order (norms are blocks too, or tensors of one);
    ``final``: tensors after the last block (the final norm); ``head``: the output projection's
    name, or ``None`` when it is tied to the embedding; ``model_type``: the Hugging Face
    ``model_type`` it was read from; ``name`` a label; ``source`` where it was read from;
    ``notes`` the conventions the reader applied (one line each).
    """

    name: str
    model_type: str
    d_model: int
    vocab: int
    vocab_padded: int
    embedding: str
    blocks: tuple[Block, ...]
    final: tuple[TensorShape, ...] = ()
    head: str | None = None
    source: str = ""
    notes: tuple[str, ...] = ()

    @property
    def tied(self) -> bool:
        return self.head is None

    def tensors(self) -> list[TensorShape]:
        """Every stored tensor, in the order the reference implementation names them."""
        out = [TensorShape(self.embedding, (self.vocab_padded, self.d_model), "embedding", "embedding")]
        for b in self.blocks:
            out.extend(b.tensors())
        out.extend(self.final)
        if self.head is not None:
            out.append(TensorShape(self.head, (self.vocab_padded, self.d_model), "gemm", "head"))
        return out

    @property
    def params(self) -> int:
        return sum(t.numel for t in self.tensors())

    def head_flops_per_token(self) -> int:
        """The output projection's FLOPs per token (tied or not, it is one GEMM)."""
        return 2 * self.vocab_padded * self.d_model

    def flops_per_token(self, ctx: int = 0) -> int:
        """Forward FLOPs for one token at context ``ctx``, head included, final norm excluded."""
        return sum(b.flops_per_token(ctx) for b in self.blocks) + self.head_flops_per_token()

    def forward_flops(self, tokens: int) -> int:
        """Forward FLOPs over a sequence of ``tokens`` (token ``t`` sees context ``t``)."""
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise ParamcalcError(f"tokens must be an integer >= 1, got {tokens!r}")
        if all(b.type.form != "attention" for b in self.blocks):
            return tokens * self.flops_per_token(0)
        return sum(self.flops_per_token(t) for t in range(tokens))

    def training_flops(self, tokens: int) -> int:
        """Forward and backward over ``tokens`` (3x the forward)."""
        return 3 * self.forward_flops(tokens)

    def state_elements(self, ctx: int = 0) -> int:
        """Inference state per sequence at context ``ctx`` (elements)."""
        return sum(sum(b.state_elements(ctx).values()) for b in self.blocks)

    def state_bytes(self, ctx: int = 0, dtype: str = "float32") -> int:
        return self.state_elements(ctx) * dtype_bytes(dtype)


# --- registries -----------------------------------------------------------------------------------

_BLOCKS: dict[str, BlockType] = {}
ConfigReader = Callable[[Mapping[str, Any]], LanguageModel]
_READERS: dict[str, ConfigReader] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def register_block(block: BlockType, *, replace_existing: bool = False) -> BlockType:
    """Add ``block`` to the registry (one line if its name is taken and not replaced)."""
    if not isinstance(block, BlockType):
        raise ParamcalcError(f"register_block takes a BlockType, got {type(block).__name__}")
    key = _key(block.name)
    if key in _BLOCKS and not replace_existing:
        raise ParamcalcError(
            f"block {block.name!r} is already registered (replace_existing=True replaces it)"
        )
    _BLOCKS[key] = block
    return block


def register_model_type(model_type: str, reader: ConfigReader, *, replace_existing: bool = False) -> None:
    """Make ``reader`` turn a ``config.json`` of ``model_type`` into a :class:`LanguageModel`."""
    key = _key(model_type)
    if key in _READERS and not replace_existing:
        raise ParamcalcError(f"model type {model_type!r} already has a reader")
    _READERS[key] = reader


# --- helpers for readers ------------------------------------------------------------------------


def config_int(
    config: Mapping[str, Any],
    *keys: str,
    default: int | None = None,
    minimum: int = 0,
    maximum: int = MAX_SIZE,
) -> int:
    """The first of ``keys`` present in ``config`` as an integer in ``[minimum, maximum]`` (one
    line naming the key when it is missing, not an integer or out of range: a size is at most
    2**31 - 1, a layer count at most :data:`~paramcalc.core.spec.MAX_LAYERS`, as everywhere)."""
    for key in keys:
        if key in config and config[key] is not None:
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ParamcalcError(f"config.json: {key} must be an integer >= {minimum}, got {value!r}")
            if value > maximum:
                raise ParamcalcError(f"config.json: {key} must be at most {maximum:,}, got {value:,}")
            return value
    if default is not None:
        return default
    raise ParamcalcError(f"config.json: missing {' or '.join(keys)}")


def config_bool(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ParamcalcError(f"config.json: {key} must be true or false, got {value!r}")
    return value


def pad_to(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple`` (``multiple`` <= 1: ``n``)."""
    if multiple <= 1:
        return n
    return -(-n // multiple) * multiple


def layer_blocks(
    pattern: Sequence[Sequence[tuple[BlockType, Mapping[str, int], str]]], count: int, prefix: str
) -> list[Block]:
    """The blocks of ``count`` layers: layer ``i`` holds the blocks of ``pattern[i % len(pattern)]``
    (each an entry, its sizes and its name under the layer), named ``prefix.format(i=i) + name``
    (Griffin's recurrent, recurrent, attention is a pattern of three layers)."""
    if not pattern:
        raise ParamcalcError("a layer pattern needs at least one layer")
    out = []
    for i in range(count):
        for block, sizes, name in pattern[i % len(pattern)]:
            out.append(block.bind(sizes, prefix.format(i=i) + name))
    return out


def norm_tensors(names: Iterable[str], width: int, block: str = "norm") -> tuple[TensorShape, ...]:
    """Vectors of ``width`` (norm weights and biases) named ``names``."""
    return tuple(TensorShape(n, (width,), "norm", block) for n in names)
