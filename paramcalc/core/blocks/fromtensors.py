"""A language model recognised from its tensors' names and shapes alone (a safetensors file of a
Hugging Face Mamba, Mamba-2, RWKV-4, xLSTM or RecurrentGemma checkpoint, no config.json at
hand): the configuration is read back from the shapes and handed to the registered reader, whose
tensors are then compared with the stored ones, name by name.

What shapes cannot tell is said in a note: Falcon-Mamba stores Mamba's tensors (read as
``mamba``); Mamba-2 stores ``n_groups · state_size`` only as a product (read as one group);
RecurrentGemma's attention window has no tensor (its default, 2,048, is assumed: it changes the
state and FLOPs, not the parameters).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .base import LanguageModel
from .registry import model_reader

Shapes = Mapping[str, tuple[int, ...]]


def _layers(shapes: Shapes, pattern: str) -> int:
    found = {int(m.group(1)) for name in shapes if (m := re.fullmatch(pattern, name))}
    return max(found) + 1 if found else 0


def _mamba(s: Shapes) -> tuple[dict[str, Any], list[str]] | None:
    pre = "backbone.layers.0.mixer."
    a_log = s.get(pre + "A_log")
    if a_log is None or pre + "in_proj.weight" not in s or "backbone.embeddings.weight" not in s:
        return None
    layers = _layers(s, r"backbone\.layers\.(\d+)\.norm\.weight")
    vocab, hidden = s["backbone.embeddings.weight"]
    common = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "vocab_size": vocab,
        "use_bias": pre + "in_proj.bias" in s,
        "use_conv_bias": pre + "conv1d.bias" in s,
        "conv_kernel": s[pre + "conv1d.weight"][-1],
        "tie_word_embeddings": "lm_head.weight" not in s,
    }
    if len(a_log) == 2:
        d_inner, d_state = a_log
        cfg = {"model_type": "mamba", **common, "intermediate_size": d_inner, "state_size": d_state}
        cfg["time_step_rank"] = s[pre + "dt_proj.weight"][1]
        return cfg, ["read as mamba from the tensors' shapes (falcon_mamba stores the same tensors)"]
    (heads,) = a_log
    d_inner = s[pre + "out_proj.weight"][1]
    bc = s[pre + "conv1d.weight"][0] - d_inner if s[pre + "conv1d.weight"][0] >= d_inner else 0
    if heads == 0 or d_inner % heads or bc % 2 or bc == 0:
        return None
    cfg = {
        "model_type": "mamba2",
        **common,
        "expand": d_inner / hidden,
        "num_heads": heads,
        "head_dim": d_inner // heads,
        "n_groups": 1,
        "state_size": bc // 2,
    }
    return cfg, [
        f"read as mamba2 from the tensors' shapes: n_groups · state_size = {bc // 2} (shown as one group)"
    ]


def _rwkv(s: Shapes) -> tuple[dict[str, Any], list[str]] | None:
    key = s.get("rwkv.blocks.0.attention.key.weight")
    if key is None or "rwkv.embeddings.weight" not in s or "rwkv.blocks.0.feed_forward.key.weight" not in s:
        return None
    vocab, hidden = s["rwkv.embeddings.weight"]
    cfg = {
        "model_type": "rwkv",
        "hidden_size": hidden,
        "attention_hidden_size": key[0],
        "intermediate_size": s["rwkv.blocks.0.feed_forward.key.weight"][0],
        "num_hidden_layers": _layers(s, r"rwkv\.blocks\.(\d+)\.ln1\.weight"),
        "vocab_size": vocab,
        "tie_word_embeddings": "head.weight" not in s,
    }
    return cfg, ["read as rwkv from the tensors' shapes"]


def _xlstm(s: Shapes) -> tuple[dict[str, Any], list[str]] | None:
    pre = "backbone.blocks.0."
    q = s.get(pre + "mlstm_layer.q.weight")
    if q is None or "backbone.embeddings.weight" not in s:
        return None  # the fused weight mode stores qkv together: not read from shapes
    vocab, hidden = s["backbone.embeddings.weight"]
    ffn = s[pre + "ffn.proj_up.weight"][0]
    cfg = {
        "model_type": "xlstm",
        "hidden_size": hidden,
        "embedding_dim": hidden,
        "num_blocks": _layers(s, r"backbone\.blocks\.(\d+)\.norm_mlstm\.weight"),
        "num_heads": s[pre + "mlstm_layer.igate_preact.weight"][0],
        "vocab_size": vocab,
        "use_bias": pre + "mlstm_layer.q.bias" in s,
        # factors that give the stored widths back through the reader's int() and floor(), whatever
        # the rounding of the division (half a unit of slack each way)
        "qk_dim_factor": (q[0] + 0.5) / hidden,
        "v_dim_factor": (s[pre + "mlstm_layer.v.weight"][0] + 0.5) / hidden,
        "ffn_proj_factor": (ffn + 0.5) / hidden,
        "ffn_round_up_to_multiple_of": 1,
        "weight_mode": "single",
    }
    return cfg, [f"read as xlstm from the tensors' shapes (feed-forward width {ffn} as stored)"]


def _griffin(s: Shapes) -> tuple[dict[str, Any], list[str]] | None:
    if "model.embed_tokens.weight" not in s:
        return None
    layers = _layers(s, r"model\.layers\.(\d+)\.temporal_pre_norm\.weight")
    kinds = [
        "recurrent" if f"model.layers.{i}.temporal_block.rg_lru.recurrent_param" in s else "attention"
        for i in range(layers)
    ]
    if "recurrent" not in kinds:
        return None  # the head count is only stored by the RG-LRU's block-diagonal gates
    first = kinds.index("recurrent")
    lru = f"model.layers.{first}.temporal_block.rg_lru."
    heads = s[lru + "input_gate_weight"][0]
    vocab, hidden = s["model.embed_tokens.weight"]
    cfg: dict[str, Any] = {
        "model_type": "recurrent_gemma",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "vocab_size": vocab,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "lru_width": s[lru + "recurrent_param"][0],
        "conv1d_width": s[f"model.layers.{first}.temporal_block.conv_1d.weight"][-1],
        "intermediate_size": 2 * s["model.layers.0.mlp_block.gate_proj.weight"][0],
        "block_types": kinds,
        "tie_word_embeddings": "lm_head.weight" not in s,
    }
    if "attention" in kinds:
        att = f"model.layers.{kinds.index('attention')}.temporal_block."
        cfg["num_key_value_heads"] = s[att + "k_proj.weight"][0] // (hidden // heads)
        cfg["attention_bias"] = att + "q_proj.bias" in s
    return cfg, ["read as recurrent_gemma from the tensors' shapes; the attention window is not stored"]


def config_from_tensors(shapes: Shapes) -> tuple[dict[str, Any], list[str]] | None:
    """The ``config.json`` keys a Mamba, Mamba-2, RWKV-4, xLSTM or RecurrentGemma checkpoint's
    shapes imply, with notes on what they cannot tell; ``None`` when the names are none of these."""
    try:
        return _mamba(shapes) or _rwkv(shapes) or _xlstm(shapes) or _griffin(shapes)
    except (KeyError, ValueError, TypeError, IndexError):
        return None


def model_from_tensors(shapes: Shapes, source: str = "") -> LanguageModel | None:
    """The :class:`LanguageModel` the stored tensors imply (``None`` if not recognised, or if
    the shapes contradict each other so that no reader accepts them)."""
    from dataclasses import replace

    from ...errors import ParamcalcError

    found = config_from_tensors(shapes)
    if found is None:
        return None
    config, notes = found
    try:
        model = model_reader(config["model_type"])(config)
    except ParamcalcError:
        return None
    return replace(model, name=source or model.name, source=source, notes=(*model.notes, *notes))
