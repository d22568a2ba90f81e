"""Looking up the block registry: the built-in entries and readers are registered (by importing
:mod:`.builtin`, whose family modules call :func:`~.base.register_block` and
:func:`~.base.register_model_type`) before the first answer. The store itself is
:mod:`.base`'s, so a family module imports only :mod:`.base` and nothing imports back up.
"""

from __future__ import annotations

from ...errors import ParamcalcError
from . import builtin  # noqa: F401  (registers the built-in blocks and readers)
from .base import _BLOCKS, _READERS, BlockType, ConfigReader, _key


def get_block(name: str) -> BlockType:
    """The registered block ``name`` (one line naming the known ones otherwise)."""
    try:
        return _BLOCKS[_key(name)]
    except (KeyError, AttributeError):
        known = ", ".join(sorted(_BLOCKS)) or "none"
        raise ParamcalcError(f"unknown block {name!r}; known blocks: {known}") from None


def registered_blocks() -> tuple[BlockType, ...]:
    return tuple(_BLOCKS.values())


def model_types() -> tuple[str, ...]:
    return tuple(sorted(_READERS))


def model_reader(model_type: str) -> ConfigReader:
    """The reader of ``model_type`` (one line naming the supported ones otherwise)."""
    try:
        return _READERS[_key(model_type)]
    except (KeyError, AttributeError):
        raise ParamcalcError(
            f"model type {model_type!r} is not supported; supported: {', '.join(sorted(_READERS))}"
        ) from None
