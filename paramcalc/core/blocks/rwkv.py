"""RWKV-4 (Peng et al. 2023) as Hugging Face ``transformers``' ``RwkvForCausalLM`` lays it out:
a block is a time-mixing (``attention``) and a channel-mixing (``feed_forward``) sub-block, each
after a LayerNorm (``ln1``, ``ln2``); block 0 alone normalises the embedding first (``pre_ln``),
so it is its own entry (``rwkv_first``). Named under ``rwkv.blocks.{i}.``; the final
``rwkv.ln_out`` and the head ``head.weight`` (untied unless ``tie_word_embeddings``).

Cost rules beyond the GEMMs, per token (one multiply or add is one FLOP; exp and max count one):
the WKV recurrence ``14·d_att`` (the numerically stable form: two maxima, four exponentials,
four multiply-adds into num and den, one division) plus ``2·d_att`` for σ(r) ⊙ wkv; the token
shifts (five lerps ``x·μ + x_prev·(1−μ)``, three FLOPs each: ``15·d_model``), σ(r) ⊙ value in
the channel mix (``2·d_model``), the squared ReLU (``2·d_ffn``) and two LayerNorms
(``5·d_model`` each; ``pre_ln`` another ``5·d_model`` on block 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..spec import MAX_LAYERS
from .base import (
    BlockTensor,
    BlockType,
    LanguageModel,
    StateTerm,
    config_bool,
    config_int,
    norm_tensors,
    register_block,
    register_model_type,
)

_SIZES = ("d_model", "d_att", "d_ffn")
_LN = (
    BlockTensor("ln1.weight", ("d_model",), "norm"),
    BlockTensor("ln1.bias", ("d_model",), "norm"),
    BlockTensor("ln2.weight", ("d_model",), "norm"),
    BlockTensor("ln2.bias", ("d_model",), "norm"),
)
_MIX = (
    BlockTensor("attention.time_decay", ("d_att",), "vector", note="w: per-channel decay, e^{-exp(w)}"),
    BlockTensor("attention.time_first", ("d_att",), "vector", note="u: bonus of the current token"),
    BlockTensor("attention.time_mix_key", ("1", "1", "d_model"), "vector", note="token-shift lerp for k"),
    BlockTensor("attention.time_mix_value", ("1", "1", "d_model"), "vector", note="token-shift lerp for v"),
    BlockTensor("attention.time_mix_receptance", ("1", "1", "d_model"), "vector", note="lerp for r"),
    BlockTensor("attention.key.weight", ("d_att", "d_model"), "gemm"),
    BlockTensor("attention.value.weight", ("d_att", "d_model"), "gemm"),
    BlockTensor("attention.receptance.weight", ("d_att", "d_model"), "gemm"),
    BlockTensor("attention.output.weight", ("d_model", "d_att"), "gemm"),
    BlockTensor("feed_forward.time_mix_key", ("1", "1", "d_model"), "vector"),
    BlockTensor("feed_forward.time_mix_receptance", ("1", "1", "d_model"), "vector"),
    BlockTensor("feed_forward.key.weight", ("d_ffn", "d_model"), "gemm"),
    BlockTensor("feed_forward.receptance.weight", ("d_model", "d_model"), "gemm"),
    BlockTensor("feed_forward.value.weight", ("d_model", "d_ffn"), "gemm"),
)
_EQUATIONS = (
    (
        "x_k = μ_k x_t + (1 - μ_k) x_{t-1} (also x_v, x_r)",
        ("attention.time_mix_key", "attention.time_mix_value", "attention.time_mix_receptance"),
    ),
    (
        "k = W_k x_k, v = W_v x_v, r = W_r x_r",
        ("attention.key.weight", "attention.value.weight", "attention.receptance.weight"),
    ),
    ("wkv_t = (a_{t-1} + e^{u+k_t} v_t) / (b_{t-1} + e^{u+k_t})", ("attention.time_first",)),
    (
        "a_t = e^{-w} a_{t-1} + e^{k_t} v_t, b_t = e^{-w} b_{t-1} + e^{k_t}, w = exp(time_decay)",
        ("attention.time_decay",),
    ),
    ("out = W_o (σ(r) ⊙ wkv)", ("attention.output.weight",)),
    (
        "x'_k, x'_r = token shifts of the channel mix",
        ("feed_forward.time_mix_key", "feed_forward.time_mix_receptance"),
    ),
    (
        "ffn = σ(W_r' x'_r) ⊙ W_v' (ReLU(W_k' x'_k))²",
        ("feed_forward.receptance.weight", "feed_forward.value.weight", "feed_forward.key.weight"),
    ),
    (
        "ln1 before the time mix, ln2 before the channel mix",
        ("ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias"),
    ),
)
_STATE = (
    StateTerm("att_x_prev", ("d_model",), "the previous token's input to the time mix"),
    StateTerm("ffn_x_prev", ("d_model",), "the previous token's input to the channel mix"),
    StateTerm("num", ("d_att",), "a: the WKV numerator"),
    StateTerm("den", ("d_att",), "b: the WKV denominator"),
    StateTerm("max", ("d_att",), "the running exponent maximum (numerical stability)"),
)
_SCAN = "16·d_att"
_EXTRA = "27·d_model + 2·d_ffn"

RWKV = register_block(
    BlockType(
        name="rwkv",
        title="RWKV-4 block (time mix + channel mix) with its two LayerNorms",
        sizes=_SIZES,
        tensors=(*_LN, *_MIX),
        equations=_EQUATIONS,
        scan_flops=_SCAN,
        extra_flops=_EXTRA,
        state=_STATE,
        form="sequential",
        reference="Peng et al. 2023, RWKV; transformers RwkvForCausalLM",
        hf_class="RwkvForCausalLM",
    )
)

RWKV_FIRST = register_block(
    BlockType(
        name="rwkv_first",
        title="RWKV-4 block 0: pre_ln on the embedding, then an rwkv block",
        sizes=_SIZES,
        tensors=(
            BlockTensor("pre_ln.weight", ("d_model",), "norm"),
            BlockTensor("pre_ln.bias", ("d_model",), "norm"),
            *_LN,
            *_MIX,
        ),
        equations=(("x = LayerNorm(embedding)", ("pre_ln.weight", "pre_ln.bias")), *_EQUATIONS),
        scan_flops=_SCAN,
        extra_flops="32·d_model + 2·d_ffn",
        state=_STATE,
        form="sequential",
        reference="Peng et al. 2023, RWKV; transformers RwkvForCausalLM",
        hf_class="RwkvForCausalLM",
    )
)


def read_rwkv(config: Mapping[str, Any]) -> LanguageModel:
    """An ``rwkv`` ``config.json`` (``RwkvConfig``: ``attention_hidden_size`` defaults to
    ``hidden_size``, ``intermediate_size`` to ``4·hidden_size``)."""
    hidden = config_int(config, "hidden_size", minimum=1)
    layers = config_int(config, "num_hidden_layers", minimum=1, maximum=MAX_LAYERS)
    sizes = {
        "d_model": hidden,
        "d_att": config_int(config, "attention_hidden_size", default=hidden, minimum=1),
        "d_ffn": config_int(config, "intermediate_size", default=4 * hidden, minimum=1),
    }
    vocab = config_int(config, "vocab_size", minimum=1)
    blocks = [(RWKV_FIRST if i == 0 else RWKV).bind(sizes, f"rwkv.blocks.{i}.") for i in range(layers)]
    tied = config_bool(config, "tie_word_embeddings", False)
    return LanguageModel(
        name=str(config.get("_name_or_path") or "rwkv"),
        model_type="rwkv",
        d_model=hidden,
        vocab=vocab,
        vocab_padded=vocab,
        embedding="rwkv.embeddings.weight",
        blocks=tuple(blocks),
        final=norm_tensors(["rwkv.ln_out.weight", "rwkv.ln_out.bias"], hidden),
        head=None if tied else "head.weight",
    )


register_model_type("rwkv", read_rwkv)
