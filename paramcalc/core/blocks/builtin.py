"""The built-in blocks and ``config.json`` readers: importing a family's module registers its
entries (:func:`~.base.register_block`) and readers (:func:`~.base.register_model_type`)."""

from __future__ import annotations

from . import griffin, mamba, rwkv, xlstm  # noqa: F401  (each registers its blocks and config.json readers)
