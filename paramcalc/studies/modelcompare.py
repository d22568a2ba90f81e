"""``paramcalc.compare_models``: language models of different families side by side (Mamba,
Mamba-2, RWKV, and whatever else the block registry reads): parameters, FLOPs per token, the
inference state at each context length, and the KV cache an attention model of the same width
and depth would hold there.

Conventions: FLOPs as :mod:`paramcalc.core.blocks.base` states them (one multiply or add is one
FLOP; a GEMM of ``n`` weights costs ``2n`` a token; the head included; training = 3x forward);
``flops/token`` is the forward cost of one generated token at that context. The attention
model's KV cache is ``2 · layers · d_model · ctx`` elements (keys and values of every layer for
every token so far: full multi-head attention, no grouped-query sharing, no window), in the
same dtype as the state.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.blocks import LanguageModel, dtype_bytes
from ..errors import ParamcalcError
from ..results.base import Result
from ..results.table import Column, Table
from ..results.text import plural

CONTEXT_COLUMNS = (
    Column("model", "str"),
    Column("type", "str", doc="the config's model_type"),
    Column("params"),
    Column("context", doc="tokens so far"),
    Column("flops/token", doc="forward FLOPs of one generated token at that context, head included"),
    Column("state", unit="B", doc="inference state per sequence (bytes)"),
    Column(
        "attn KV",
        unit="B",
        doc="an attention model's KV cache of the same width and depth: 2·layers·d_model·ctx",
    ),
    Column("KV/state", "float", digits=3, doc="how many times the state the KV cache holds"),
)
MODEL_COLUMNS = (
    Column("model", "str"),
    Column("type", "str"),
    Column("params"),
    Column("layers"),
    Column("d_model"),
    Column("flops/token", doc="forward FLOPs of one token at context 0"),
    Column("train flops/token", doc="3x the forward"),
    Column("state", unit="B", doc="inference state per sequence at context 0 (bytes)"),
)


def attention_kv_elements(layers: int, d_model: int, ctx: int) -> int:
    """Keys and values of ``layers`` attention layers of width ``d_model`` over ``ctx`` tokens."""
    return 2 * layers * d_model * ctx


@dataclass(frozen=True, repr=False)
class ModelComparison(Result):
    """Language models side by side (view ``context``: a row per model and context length;
    view ``model``: a row per model)."""

    VIEWS = ("context", "model")
    KIND = "models"

    models: tuple[LanguageModel, ...]
    contexts: tuple[int, ...]
    dtype: str

    def _table(self, view: str) -> Table:
        b = dtype_bytes(self.dtype)
        if view == "model":
            return Table(
                MODEL_COLUMNS,
                tuple(
                    (
                        m.name,
                        m.model_type,
                        m.params,
                        len(m.blocks),
                        m.d_model,
                        m.flops_per_token(0),
                        3 * m.flops_per_token(0),
                        m.state_bytes(0, self.dtype),
                    )
                    for m in self.models
                ),
            )
        rows = []
        for m in self.models:
            for ctx in self.contexts:
                state = m.state_bytes(ctx, self.dtype)
                kv = attention_kv_elements(len(m.blocks), m.d_model, ctx) * b
                rows.append(
                    (
                        m.name,
                        m.model_type,
                        m.params,
                        ctx,
                        m.flops_per_token(ctx),
                        state,
                        kv,
                        kv / state if state else None,
                    )
                )
        return Table(CONTEXT_COLUMNS, tuple(rows))

    def title(self) -> str:
        ctxs = ", ".join(map(str, self.contexts))
        return f"{plural(len(self.models), 'model')}, contexts {ctxs}, state in {self.dtype}"

    def headline(self) -> str:
        return self.title()

    def notes(self) -> list[str]:
        notes = [
            "attn KV = 2·layers·d_model·ctx elements: the keys and values of an attention model of the same "
            "width and depth (full multi-head, no grouped-query sharing, no window), in the same dtype",
            "flops/token: one multiply or add is one FLOP, a GEMM of n weights 2n, the head included; "
            "training is 3x the forward",
        ]
        if any(m.model_type == "rwkv" for m in self.models):
            notes.append(
                "transformers holds RWKV's state in float32 whatever the dtype; "
                "here it is priced in the dtype asked"
            )
        return notes

    def meta(self) -> dict[str, Any]:
        return {
            "models": [{"name": m.name, "model_type": m.model_type, "source": m.source} for m in self.models],
            "contexts": list(self.contexts),
            "dtype": self.dtype,
        }


def compare_models(
    models: Sequence[str | os.PathLike[str] | LanguageModel],
    contexts: Sequence[int] = (2048, 32768),
    dtype: str = "bfloat16",
) -> ModelComparison:
    """Language models side by side: each a :class:`~paramcalc.core.blocks.LanguageModel`, a
    ``config.json`` path, or the name of a bundled config (``'mamba-130m'``, ``'rwkv-4-169m'``);
    parameters, FLOPs per token, state bytes at each of ``contexts`` and the KV cache of an
    attention model of the same width and depth, in ``dtype``."""
    from ..bridge.readers.hf_config import read_published

    if isinstance(models, (str, os.PathLike, LanguageModel)):
        models = [models]
    if not models:
        raise ParamcalcError("compare_models needs at least one model")
    if isinstance(contexts, int):
        contexts = (contexts,)
    ctxs = tuple(contexts)
    if not ctxs or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in ctxs):
        raise ParamcalcError(f"`contexts` must be integers >= 1, got {list(contexts)!r}")
    dtype_bytes(dtype)
    read = tuple(m if isinstance(m, LanguageModel) else read_published(m) for m in models)
    return ModelComparison(read, ctxs, dtype)
