"""``inspect config.json --check``: the ``transformers`` model of a ``config.json`` built on the
meta device (no weights, no memory, no hub access), its tensors' names and shapes compared with
the analytic model's, tensor by tensor.

``transformers`` is the ``[hf]`` extra, imported only when a check is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..bridge.readers.hf_config import load_config, read_hf_config
from ..core.blocks import LanguageModel
from ..core.blocks.report import ModelReport
from ..errors import ParamcalcError

#: Keys of a published config.json that describe the file, not the model.
_BOOKKEEPING = ("architectures", "transformers_version", "torch_dtype", "dtype", "auto_map")
HF_HINT = "pip install 'paramcalc[hf]'"


def _transformers() -> Any:
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError:
        raise ParamcalcError(f"the check builds the model with transformers and torch: {HF_HINT}") from None
    return transformers


def hf_model(config: Mapping[str, Any], model: LanguageModel | None = None) -> Any:
    """``transformers``' causal-LM model of ``config`` built on the meta device. The vocabulary
    is the one the analytic model stores (``pad_vocab_size_multiple`` applied; ``transformers``
    ignores that key)."""
    transformers = _transformers()
    import torch

    cfg = {k: v for k, v in config.items() if not k.startswith("_") and k not in _BOOKKEEPING}
    if model is not None and model.vocab_padded != model.vocab:
        cfg["vocab_size"] = model.vocab_padded
    model_type = cfg.pop("model_type", None)
    try:
        hf_config = transformers.AutoConfig.for_model(model_type, **cfg)
        with torch.device("meta"):
            return transformers.AutoModelForCausalLM.from_config(hf_config)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParamcalcError(f"transformers cannot build model_type {model_type!r}: {first}") from None


def hf_shapes(config: Mapping[str, Any], model: LanguageModel | None = None) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the parameters of ``transformers``' model (a tied head appears once,
    under the embedding's name, as ``named_parameters`` gives it)."""
    built = hf_model(config, model)
    return {name: tuple(p.shape) for name, p in built.named_parameters()}


def inspect_config(path: str | os.PathLike[str], *, check: bool = False) -> ModelReport:
    """The model a Hugging Face ``config.json`` describes (its ``model_type`` picks the reader):
    tensors, formulas, totals; with ``check=True`` each tensor against ``transformers``' model
    built on the meta device (``ModelReport.ok``)."""
    model = read_hf_config(path)
    if not check:
        return ModelReport(model)
    actual = hf_shapes(load_config(path), model)
    _transformers()
    import transformers

    ref = f"transformers {transformers.__version__} on the meta device"
    notes: tuple[str, ...] = ()
    if model.vocab_padded != model.vocab:
        notes = (f"transformers was built with vocab_size {model.vocab_padded}, the padded vocabulary",)
    return ModelReport(model, actual, ref, notes)
