"""Blocks: the recurrent units of today's language models (Mamba, Mamba-2, RWKV, xLSTM, Griffin)
as registry entries, and language models assembled from them (:mod:`.base`).

The entries and readers are stored by :mod:`.base` and looked up through :mod:`.registry`, which
registers the built-in families (:mod:`.builtin`) first. Nothing here imports torch or pandas.
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
    register_block,
    register_model_type,
)
from .registry import get_block, model_reader, model_types, registered_blocks

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
