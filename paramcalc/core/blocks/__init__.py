"""Blocks: the recurrent units of today's language models (Mamba, Mamba-2, RWKV, xLSTM, Griffin)
as registry entries, and language models assembled from them (:mod:`.base`).

The built-in entries and their ``config.json`` readers are registered by :mod:`.builtin` the
first time the registry is asked (analytic queries import neither torch nor pandas).
"""

from __future__ import annotations

from .base import (
    CONTEXT,
    Block,
    BlockTensor,
    BlockType,
    LanguageModel,
    StateTerm,
    TensorShape,
    dtype_bytes,
    get_block,
    model_reader,
    model_types,
    register_block,
    register_model_type,
    registered_blocks,
)

__all__ = [
    "CONTEXT",
    "Block",
    "BlockTensor",
    "BlockType",
    "LanguageModel",
    "StateTerm",
    "TensorShape",
    "dtype_bytes",
    "get_block",
    "model_reader",
    "model_types",
    "register_block",
    "register_model_type",
    "registered_blocks",
]
