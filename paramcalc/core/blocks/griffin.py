"""Griffin and Hawk's blocks as Hugging Face ``transformers`` implements the ``recurrent_gemma``
model type (``RecurrentGemmaForCausalLM``, the layout of Google's RecurrentGemma), and the reader
of its ``config.json``.

Every layer (``model.layers.{i}.``) is a temporal block and an MLP block, each with its pre-norm
(RMSNorm, stored as ``w`` and applied as ``1 + w``):

* ``rglru``: the recurrent block. ``linear_y`` (GeLU branch), ``linear_x`` then a depthwise causal
  ``conv_1d`` of width ``conv1d_width`` (with bias), the RG-LRU (``recurrent_param`` Λ, one per
  channel; the input and recurrence gates are block-diagonal, ``heads`` blocks of
  ``block_width × block_width`` with a bias each) and ``linear_out``; every linear map has a bias.
* ``local_attention``: multi-query (``num_key_value_heads``) attention over the last
  ``attention_window_size`` tokens with RoPE on half of each head: ``q_proj``, ``k_proj``,
  ``v_proj`` (biases only with ``attention_bias``) and ``o_proj`` (always with a bias).
* ``griffin_mlp``: ``gate_proj``, ``up_proj`` (GeLU-gated), ``down_proj``, all with biases, of
  width ``intermediate_size // 2`` (``transformers`` halves the configured size).

``block_types`` (``recurrent``, ``recurrent``, ``attention`` for RecurrentGemma) is cycled over
the layers; Hawk is the all-``recurrent`` pattern. The embedding is multiplied by
``√hidden_size`` and the logits soft-capped (``cap·tanh(z/cap)``): neither has parameters. The
head is tied to the embedding unless ``tie_word_embeddings`` is false.

FLOPs beyond the GEMMs and the convolution: the RG-LRU scan (``scan_flops``) per channel: the two
gate biases, ``−8·r_t·softplus(Λ)`` (2), ``a_t²`` (1), ``1 − a_t²`` (1), ``i_t ⊙ u_t`` (1), the
product with ``√(1 − a_t²)`` (1), ``a_t ⊙ h_{t−1}`` (1) and the sum (1): ``10·lru_width``.
Attention at context ``ctx`` reads ``min(ctx + 1, window)`` keys: ``QKᵀ`` and ``AV`` cost
``4·heads·head_dim`` FLOPs per key. ``extra_flops`` also counts bias additions, gating products
and residual additions; norms and nonlinearities (σ, softplus, exp, √, GeLU, softmax, RoPE) are
not counted.

State per sequence: a recurrent layer keeps the convolution's last ``conv1d_width − 1`` inputs
(``lru_width × (conv1d_width − 1)``) and the RG-LRU state (``lru_width``); an attention layer keeps
the keys and values of the last ``min(ctx, attention_window_size − 1)`` tokens
(``DynamicSlidingWindowLayer``: the window minus the token being processed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import ParamcalcError
from ...results.text import plural
from ..spec import MAX_LAYERS
from .base import (
    BlockTensor,
    BlockType,
    LanguageModel,
    StateTerm,
    config_bool,
    config_int,
    layer_blocks,
    norm_tensors,
    register_block,
    register_model_type,
)

REFERENCE = (
    "De et al., Griffin: Mixing Gated Linear Recurrences with Local Attention (arXiv:2402.19427); "
    "RecurrentGemma (arXiv:2404.07839); transformers.models.recurrent_gemma.modeling_recurrent_gemma"
)
HF_CLASS = "RecurrentGemmaForCausalLM"
_T = "temporal_block."
_LRU = _T + "rg_lru."

RGLRU = register_block(
    BlockType(
        name="rglru",
        title="Griffin/Hawk recurrent block: gated branch, causal depthwise conv and the RG-LRU",
        sizes=("d_model", "lru_width", "heads", "block_width", "conv_width", "conv_state_width"),
        tensors=(
            BlockTensor("temporal_pre_norm.weight", ("d_model",), "norm", note="RMSNorm (applied as 1 + w)"),
            BlockTensor(_T + "linear_y.weight", ("lru_width", "d_model"), "gemm", note="GeLU branch"),
            BlockTensor(_T + "linear_y.bias", ("lru_width",)),
            BlockTensor(_T + "linear_x.weight", ("lru_width", "d_model"), "gemm", note="recurrent branch"),
            BlockTensor(_T + "linear_x.bias", ("lru_width",)),
            BlockTensor(_T + "linear_out.weight", ("d_model", "lru_width"), "gemm", note="output"),
            BlockTensor(_T + "linear_out.bias", ("d_model",)),
            BlockTensor(
                _T + "conv_1d.weight", ("lru_width", "1", "conv_width"), "conv", note="depthwise, causal"
            ),
            BlockTensor(_T + "conv_1d.bias", ("lru_width",)),
            BlockTensor(_LRU + "recurrent_param", ("lru_width",), note="Λ: a = σ(Λ)^(c·r), c = 8"),
            BlockTensor(
                _LRU + "input_gate_weight",
                ("heads", "block_width", "block_width"),
                "gemm",
                note="block-diagonal input gate",
            ),
            BlockTensor(_LRU + "input_gate_bias", ("heads", "block_width")),
            BlockTensor(
                _LRU + "recurrent_gate_weight",
                ("heads", "block_width", "block_width"),
                "gemm",
                note="block-diagonal recurrence gate",
            ),
            BlockTensor(_LRU + "recurrent_gate_bias", ("heads", "block_width")),
        ),
        equations=(
            (
                "x̂_t = RMSNorm(x_t); y_t = GeLU(W_y x̂_t + b_y)",
                ("temporal_pre_norm.weight", _T + "linear_y.weight"),
            ),
            (
                "u_t = Conv1D(W_x x̂ + b_x)_t (causal, depthwise)",
                (_T + "linear_x.weight", _T + "conv_1d.weight"),
            ),
            (
                "r_t = σ(W_a u_t + b_a), i_t = σ(W_i u_t + b_i) (block-diagonal per head)",
                (
                    _LRU + "recurrent_gate_weight",
                    _LRU + "input_gate_weight",
                ),
            ),
            ("log a_t = −8·r_t·softplus(Λ)", (_LRU + "recurrent_param", _LRU + "recurrent_gate_weight")),
            ("h_t = a_t ⊙ h_{t−1} + √(1 − a_t²) ⊙ (i_t ⊙ u_t)", (_LRU + "input_gate_weight",)),
            ("out_t = x_t + W_out (h_t ⊙ y_t) + b_out", (_T + "linear_out.weight",)),
        ),
        scan_flops="10·lru_width",
        extra_flops="4·lru_width + 2·d_model",
        state=(
            StateTerm(
                "conv_state", ("lru_width", "conv_state_width"), "the last conv1d_width − 1 conv inputs"
            ),
            StateTerm("rg_lru_state", ("lru_width",), "h_t (float32 in transformers)"),
        ),
        form="scan",
        reference=REFERENCE,
        hf_class=HF_CLASS,
    )
)

LOCAL_ATTENTION = register_block(
    BlockType(
        name="local_attention",
        title="Griffin local (sliding-window) multi-query attention",
        sizes=("d_model", "heads", "kv_heads", "head_dim", "attention_bias", "window", "cache_window"),
        tensors=(
            BlockTensor("temporal_pre_norm.weight", ("d_model",), "norm", note="RMSNorm (applied as 1 + w)"),
            BlockTensor(_T + "q_proj.weight", ("heads·head_dim", "d_model"), "gemm"),
            BlockTensor(_T + "q_proj.bias", ("heads·head_dim",), when="attention_bias"),
            BlockTensor(_T + "k_proj.weight", ("kv_heads·head_dim", "d_model"), "gemm"),
            BlockTensor(_T + "k_proj.bias", ("kv_heads·head_dim",), when="attention_bias"),
            BlockTensor(_T + "v_proj.weight", ("kv_heads·head_dim", "d_model"), "gemm"),
            BlockTensor(_T + "v_proj.bias", ("kv_heads·head_dim",), when="attention_bias"),
            BlockTensor(_T + "o_proj.weight", ("d_model", "heads·head_dim"), "gemm"),
            BlockTensor(_T + "o_proj.bias", ("d_model",), note="always present"),
        ),
        equations=(
            (
                "x̂ = RMSNorm(x); q = W_q x̂, k = W_k x̂, v = W_v x̂ (RoPE on half of each head)",
                (
                    "temporal_pre_norm.weight",
                    _T + "q_proj.weight",
                    _T + "k_proj.weight",
                    _T + "v_proj.weight",
                ),
            ),
            (
                "o_t = softmax(q_t Kᵀ/√head_dim) V over the last min(t + 1, window) tokens",
                (_T + "q_proj.weight",),
            ),
            ("out_t = x_t + W_o o_t + b_o", (_T + "o_proj.weight",)),
        ),
        extra_flops=(
            "4·heads·head_dim·min(ctx + 1, window) + 2·d_model"
            " + attention_bias·(heads·head_dim + 2·kv_heads·head_dim)"
        ),
        state=(
            StateTerm(
                "keys", ("kv_heads", "min(ctx, cache_window)", "head_dim"), "window − 1 tokens at most"
            ),
            StateTerm(
                "values", ("kv_heads", "min(ctx, cache_window)", "head_dim"), "window − 1 tokens at most"
            ),
        ),
        form="attention",
        defaults={"attention_bias": 0},
        reference=REFERENCE,
        hf_class=HF_CLASS,
    )
)

GRIFFIN_MLP = register_block(
    BlockType(
        name="griffin_mlp",
        title="Griffin MLP block (RMSNorm, GeLU-gated, biases)",
        sizes=("d_model", "ffn_dim"),
        tensors=(
            BlockTensor("channel_pre_norm.weight", ("d_model",), "norm", note="RMSNorm (applied as 1 + w)"),
            BlockTensor("mlp_block.gate_proj.weight", ("ffn_dim", "d_model"), "gemm", note="GeLU gate"),
            BlockTensor("mlp_block.gate_proj.bias", ("ffn_dim",)),
            BlockTensor("mlp_block.up_proj.weight", ("ffn_dim", "d_model"), "gemm"),
            BlockTensor("mlp_block.up_proj.bias", ("ffn_dim",)),
            BlockTensor("mlp_block.down_proj.weight", ("d_model", "ffn_dim"), "gemm"),
            BlockTensor("mlp_block.down_proj.bias", ("d_model",)),
        ),
        equations=(
            (
                "y = x + W_down (GeLU(W_gate x̂ + b_gate) ⊙ (W_up x̂ + b_up)) + b_down, x̂ = RMSNorm(x)",
                (
                    "channel_pre_norm.weight",
                    "mlp_block.gate_proj.weight",
                    "mlp_block.up_proj.weight",
                    "mlp_block.down_proj.weight",
                ),
            ),
        ),
        extra_flops="3·ffn_dim + 2·d_model",
        form="sequential",
        reference=REFERENCE,
        hf_class=HF_CLASS,
    )
)

BLOCK_TYPES = ("recurrent", "attention")


def _block_types(config: Mapping[str, Any]) -> list[str]:
    value = config.get("block_types")
    if value is None:
        return ["recurrent", "recurrent", "attention"]
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ParamcalcError(f"config.json: block_types must be a non-empty list, got {value!r}")
    bad = [v for v in value if v not in BLOCK_TYPES]
    if bad:
        raise ParamcalcError(
            f"config.json: block_types holds {bad[0]!r}; expected 'recurrent' or 'attention'"
        )
    return list(value)


def _griffin_sizes(config: Mapping[str, Any]) -> dict[str, int]:
    """The sizes of a ``recurrent_gemma`` configuration, checked as transformers needs them."""
    d_model = config_int(config, "hidden_size", default=2560, minimum=1)
    layers = config_int(config, "num_hidden_layers", default=26, minimum=1, maximum=MAX_LAYERS)
    vocab = config_int(config, "vocab_size", default=256000, minimum=1)
    heads = config_int(config, "num_attention_heads", default=10, minimum=1)
    kv_heads = config_int(config, "num_key_value_heads", default=heads, minimum=1)
    if kv_heads > heads:
        raise ParamcalcError(
            f"config.json: num_key_value_heads {kv_heads} exceeds num_attention_heads {heads}"
        )
    lru_width = config_int(config, "lru_width", default=d_model, minimum=1)
    if lru_width % heads:
        raise ParamcalcError(
            f"config.json: lru_width {lru_width} must be a multiple of num_attention_heads {heads} "
            "(the RG-LRU's gates are block-diagonal, one block per head)"
        )
    head_dim = d_model // heads
    if head_dim == 0:
        raise ParamcalcError(
            f"config.json: hidden_size {d_model} is smaller than num_attention_heads {heads}"
        )
    window = config_int(config, "attention_window_size", "sliding_window", default=2048, minimum=1)
    conv_width = config_int(config, "conv1d_width", default=4, minimum=1)
    ffn_dim = config_int(config, "intermediate_size", default=3 * d_model, minimum=2) // 2
    attention_bias = int(config_bool(config, "attention_bias", False))
    return {
        "d_model": d_model,
        "layers": layers,
        "vocab": vocab,
        "heads": heads,
        "kv_heads": kv_heads,
        "lru_width": lru_width,
        "head_dim": head_dim,
        "window": window,
        "conv_width": conv_width,
        "ffn_dim": ffn_dim,
        "attention_bias": attention_bias,
    }


def read_recurrent_gemma(config: Mapping[str, Any]) -> LanguageModel:
    """The model of a ``recurrent_gemma`` ``config.json`` (``transformers``' defaults where a key
    is missing: those of RecurrentGemma-2B, except that ``num_key_value_heads`` defaults to
    ``num_attention_heads``)."""
    z = _griffin_sizes(config)
    d_model, layers, vocab, heads, kv_heads = z["d_model"], z["layers"], z["vocab"], z["heads"], z["kv_heads"]
    lru_width, head_dim, window, conv_width = z["lru_width"], z["head_dim"], z["window"], z["conv_width"]
    ffn_dim, attention_bias = z["ffn_dim"], z["attention_bias"]
    tied = config_bool(config, "tie_word_embeddings", True)
    kinds = _block_types(config)

    recurrent = (
        RGLRU,
        {
            "d_model": d_model,
            "lru_width": lru_width,
            "heads": heads,
            "block_width": lru_width // heads,
            "conv_width": conv_width,
            "conv_state_width": conv_width - 1,
        },
        "",
    )
    attention = (
        LOCAL_ATTENTION,
        {
            "d_model": d_model,
            "heads": heads,
            "kv_heads": kv_heads,
            "head_dim": head_dim,
            "attention_bias": attention_bias,
            "window": window,
            "cache_window": window - 1,
        },
        "",
    )
    mlp = (GRIFFIN_MLP, {"d_model": d_model, "ffn_dim": ffn_dim}, "")
    pattern = [[recurrent if kind == "recurrent" else attention, mlp] for kind in kinds]
    notes = [
        f"layer pattern {', '.join(kinds)} cycled over {plural(layers, 'layer')}",
        f"MLP width intermediate_size // 2 = {ffn_dim}",
        f"attention head_dim = hidden_size // num_attention_heads = {head_dim} "
        f"(transformers ignores a head_dim key), {plural(kv_heads, 'key/value head')}, window {window}",
        "embedding scaled by √hidden_size and logits soft-capped (no parameters)",
        "lm_head tied to the embedding" if tied else "lm_head stored separately (tie_word_embeddings false)",
    ]
    given_head_dim = config.get("head_dim")
    if isinstance(given_head_dim, int) and given_head_dim != head_dim:
        notes.append(
            f"config.json's head_dim {given_head_dim} is not used (transformers computes {head_dim})"
        )
    return LanguageModel(
        name=str(config.get("_name_or_path") or "recurrent_gemma"),
        model_type="recurrent_gemma",
        d_model=d_model,
        vocab=vocab,
        vocab_padded=vocab,
        embedding="model.embed_tokens.weight",
        blocks=tuple(layer_blocks(pattern, layers, "model.layers.{i}.")),
        final=norm_tensors(["model.final_norm.weight"], d_model),
        head=None if tied else "lm_head.weight",
        notes=tuple(notes),
    )


register_model_type("recurrent_gemma", read_recurrent_gemma)
