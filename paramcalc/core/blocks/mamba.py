"""The Mamba family: Mamba's selective-scan block (``mamba``, Gu & Dao 2023, as Hugging Face
``transformers``' ``MambaMixer`` lays it out) and Mamba-2's state-space-duality block (``mamba2``,
Dao & Gu 2024, ``Mamba2Mixer``), with the ``config.json`` readers of ``mamba``, ``falcon_mamba``
and ``mamba2``.

A block is one layer of the backbone: its pre-norm (``norm.weight``) and its mixer
(``mixer.in_proj.weight``, ...), named as ``transformers`` names them under
``backbone.layers.{i}.``. Falcon-Mamba's mixer adds parameter-free RMS norms on B, C and Δ, so
its tensors are Mamba's.

Cost rules beyond the GEMMs and the depthwise convolution, per token (one multiply or one add is
one FLOP; exp, softplus and SiLU count one each): Mamba's scan ``7·d_inner·d_state`` (ΔA, exp,
Ā·h, (Δx)·B, the sum, C·h as a multiply-add) plus ``8·d_inner`` (dt bias, softplus, SiLU of x,
Δ·x, D·x as a multiply-add, SiLU of z, the gate), and ``4·d_model`` for the RMSNorm. Mamba-2's
recurrent (one token) form: ``5·d_inner·d_state`` (decay, x⊗B, sum, C·h multiply-add) plus
``7·d_inner`` (dt·x, D·x multiply-add, SiLU of z, gate, SiLU after the conv over x) plus
``4·n_groups·d_state`` (SiLU after the conv over B and C, twice per group) plus ``4·n_heads``
(dt bias, softplus, dt·A, exp), the gated RMSNorm ``4·d_inner`` and the pre-norm ``4·d_model``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ...errors import ParamcalcError
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
    pad_to,
    register_block,
    register_model_type,
)

MAMBA = register_block(
    BlockType(
        name="mamba",
        title="Mamba selective-scan block (S6) with its RMSNorm",
        sizes=("d_model", "d_inner", "d_state", "d_conv", "dt_rank", "use_bias", "conv_bias"),
        tensors=(
            BlockTensor("norm.weight", ("d_model",), "norm", note="RMSNorm before the mixer"),
            BlockTensor("mixer.A_log", ("d_inner", "d_state"), "vector", note="A = -exp(A_log), per channel"),
            BlockTensor("mixer.D", ("d_inner",), "vector", note="skip connection D·x"),
            BlockTensor("mixer.conv1d.weight", ("d_inner", "1", "d_conv"), "conv", note="causal depthwise"),
            BlockTensor("mixer.conv1d.bias", ("d_inner",), "vector", when="conv_bias"),
            BlockTensor("mixer.in_proj.weight", ("2·d_inner", "d_model"), "gemm", note="x and gate z"),
            BlockTensor("mixer.in_proj.bias", ("2·d_inner",), "vector", when="use_bias"),
            BlockTensor("mixer.x_proj.weight", ("dt_rank + 2·d_state", "d_inner"), "gemm", note="Δ, B, C"),
            BlockTensor("mixer.dt_proj.weight", ("d_inner", "dt_rank"), "gemm", note="Δ up to d_inner"),
            BlockTensor("mixer.dt_proj.bias", ("d_inner",), "vector"),
            BlockTensor("mixer.out_proj.weight", ("d_model", "d_inner"), "gemm"),
            BlockTensor("mixer.out_proj.bias", ("d_model",), "vector", when="use_bias"),
        ),
        equations=(
            ("u = RMSNorm(x_in) ⊙ w", ("norm.weight",)),
            ("[x, z] = W_in u (+ b_in)", ("mixer.in_proj.weight", "mixer.in_proj.bias")),
            ("x = SiLU(conv1d(x) + b_conv)", ("mixer.conv1d.weight", "mixer.conv1d.bias")),
            ("[δ, B, C] = W_x x", ("mixer.x_proj.weight",)),
            ("Δ = softplus(W_dt δ + b_dt)", ("mixer.dt_proj.weight", "mixer.dt_proj.bias")),
            ("Ā = exp(Δ A), A = -exp(A_log)", ("mixer.A_log",)),
            ("h_t = Ā h_{t-1} + (Δ x_t) B_t   (B̄x)", ("mixer.x_proj.weight",)),
            ("y = C_t h_t + D x_t", ("mixer.x_proj.weight", "mixer.D")),
            ("out = W_out (y ⊙ SiLU(z)) (+ b_out)", ("mixer.out_proj.weight", "mixer.out_proj.bias")),
        ),
        scan_flops="7·d_inner·d_state + 8·d_inner",
        extra_flops="4·d_model",
        state=(
            StateTerm("conv_state", ("d_inner", "d_conv"), "the last d_conv inputs of the convolution"),
            StateTerm("ssm_state", ("d_inner", "d_state"), "h, one d_state vector per channel"),
        ),
        form="scan",
        defaults={"use_bias": 0, "conv_bias": 1},
        reference="Gu & Dao 2023, Mamba; transformers MambaMixer",
        hf_class="MambaForCausalLM",
    )
)

MAMBA2 = register_block(
    BlockType(
        name="mamba2",
        title="Mamba-2 state-space-duality block (SSD) with its RMSNorm",
        sizes=(
            "d_model",
            "d_inner",
            "d_state",
            "d_conv",
            "n_heads",
            "head_dim",
            "n_groups",
            "use_bias",
            "conv_bias",
        ),
        tensors=(
            BlockTensor("norm.weight", ("d_model",), "norm", note="RMSNorm before the mixer"),
            BlockTensor("mixer.dt_bias", ("n_heads",), "vector"),
            BlockTensor("mixer.A_log", ("n_heads",), "vector", note="one scalar decay per head"),
            BlockTensor("mixer.D", ("n_heads",), "vector"),
            BlockTensor(
                "mixer.conv1d.weight",
                ("d_inner + 2·n_groups·d_state", "1", "d_conv"),
                "conv",
                note="over x, B, C",
            ),
            BlockTensor("mixer.conv1d.bias", ("d_inner + 2·n_groups·d_state",), "vector", when="conv_bias"),
            BlockTensor(
                "mixer.in_proj.weight",
                ("2·d_inner + 2·n_groups·d_state + n_heads", "d_model"),
                "gemm",
                note="z, x, B, C, dt",
            ),
            BlockTensor("mixer.in_proj.bias", ("2·d_inner + 2·n_groups·d_state + n_heads",), when="use_bias"),
            BlockTensor("mixer.norm.weight", ("d_inner",), "norm", note="gated RMSNorm"),
            BlockTensor("mixer.out_proj.weight", ("d_model", "d_inner"), "gemm"),
            BlockTensor("mixer.out_proj.bias", ("d_model",), "vector", when="use_bias"),
        ),
        equations=(
            ("u = RMSNorm(x_in) ⊙ w", ("norm.weight",)),
            ("[z, x, B, C, dt] = W_in u (+ b_in)", ("mixer.in_proj.weight", "mixer.in_proj.bias")),
            ("[x, B, C] = SiLU(conv1d([x, B, C]) + b_conv)", ("mixer.conv1d.weight", "mixer.conv1d.bias")),
            ("Δ = softplus(dt + dt_bias), one per head", ("mixer.dt_bias",)),
            ("h_t = exp(Δ A) h_{t-1} + Δ x_t ⊗ B_t, A = -exp(A_log) per head", ("mixer.A_log",)),
            ("y = C_t h_t + D x_t", ("mixer.D",)),
            (
                "out = W_out (RMSNorm(y ⊙ SiLU(z)) ⊙ w_g) (+ b_out)",
                ("mixer.norm.weight", "mixer.out_proj.weight"),
            ),
        ),
        scan_flops="5·d_inner·d_state + 7·d_inner + 4·n_groups·d_state + 4·n_heads",
        extra_flops="4·d_inner + 4·d_model",
        state=(
            StateTerm(
                "conv_state", ("d_inner + 2·n_groups·d_state", "d_conv"), "the last d_conv inputs of x, B, C"
            ),
            StateTerm(
                "ssm_state", ("n_heads", "head_dim", "d_state"), "h, a head_dim × d_state matrix per head"
            ),
        ),
        form="chunked",
        defaults={"use_bias": 0, "conv_bias": 1},
        reference="Dao & Gu 2024, Transformers are SSMs (Mamba-2); transformers Mamba2Mixer",
        hf_class="Mamba2ForCausalLM",
    )
)


def _expand(config: Mapping[str, Any], hidden: int) -> int:
    """``int(expand · hidden_size)``, as ``transformers`` computes the inner width."""
    expand = config.get("expand", 2)
    if isinstance(expand, bool) or not isinstance(expand, (int, float)) or expand <= 0:
        raise ParamcalcError(f"config.json: expand must be a positive number, got {expand!r}")
    return int(expand * hidden)


def _dt_rank(config: Mapping[str, Any], hidden: int) -> int:
    rank = config.get("time_step_rank", "auto")
    if rank == "auto" or rank is None:
        return math.ceil(hidden / 16)
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ParamcalcError(f"config.json: time_step_rank must be 'auto' or an integer >= 1, got {rank!r}")
    return rank


def _vocab(config: Mapping[str, Any]) -> tuple[int, int, list[str]]:
    """The declared vocabulary, the stored one, and a note when ``pad_vocab_size_multiple`` pads
    it (``transformers`` ignores that key: the padded size is what mamba_ssm checkpoints store)."""
    vocab = config_int(config, "vocab_size", minimum=1)
    multiple = config_int(config, "pad_vocab_size_multiple", default=1, minimum=1)
    padded = pad_to(vocab, multiple)
    notes = []
    if padded != vocab:
        notes.append(
            f"vocab_size {vocab} padded to {padded} (pad_vocab_size_multiple {multiple}, as mamba_ssm stores "
            "it; transformers builds vocab_size as given)"
        )
    return vocab, padded, notes


def _backbone(
    config: Mapping[str, Any], block: BlockType, sizes: dict[str, int], tie_default: bool, notes: list[str]
) -> LanguageModel:
    hidden = sizes["d_model"]
    layers = config_int(config, "num_hidden_layers", "n_layer", minimum=1, maximum=MAX_LAYERS)
    vocab, padded, vnotes = _vocab(config)
    tied = config_bool(config, "tie_word_embeddings", tie_default)
    blocks = layer_blocks([[(block, sizes, "")]], layers, "backbone.layers.{i}.")
    return LanguageModel(
        name=str(config.get("_name_or_path") or config["model_type"]),
        model_type=str(config["model_type"]),
        d_model=hidden,
        vocab=vocab,
        vocab_padded=padded,
        embedding="backbone.embeddings.weight",
        blocks=tuple(blocks),
        final=norm_tensors(["backbone.norm_f.weight"], hidden),
        head=None if tied else "lm_head.weight",
        notes=tuple(notes + vnotes),
    )


def read_mamba(config: Mapping[str, Any]) -> LanguageModel:
    """A ``mamba`` or ``falcon_mamba`` ``config.json`` (``MambaConfig`` / ``FalconMambaConfig``)."""
    hidden = config_int(config, "hidden_size", "d_model", minimum=1)
    notes: list[str] = []
    if config.get("intermediate_size") is not None:
        d_inner = config_int(config, "intermediate_size", minimum=1)
        if "expand" in config and _expand(config, hidden) != d_inner:
            notes.append(
                f"intermediate_size {d_inner} used (expand · hidden_size = {_expand(config, hidden)})"
            )
    else:
        d_inner = _expand(config, hidden)
    sizes = {
        "d_model": hidden,
        "d_inner": d_inner,
        "d_state": config_int(config, "state_size", default=16, minimum=1),
        "d_conv": config_int(config, "conv_kernel", default=4, minimum=1),
        "dt_rank": _dt_rank(config, hidden),
        "use_bias": int(config_bool(config, "use_bias", False)),
        "conv_bias": int(config_bool(config, "use_conv_bias", True)),
    }
    return _backbone(config, MAMBA, sizes, True, notes)


def read_mamba2(config: Mapping[str, Any]) -> LanguageModel:
    """A ``mamba2`` ``config.json`` (``Mamba2Config``; ``transformers`` requires
    ``expand · hidden_size == num_heads · head_dim``)."""
    hidden = config_int(config, "hidden_size", minimum=1)
    d_inner = _expand(config, hidden)
    n_heads = config_int(config, "num_heads", default=128, minimum=1)
    head_dim = config_int(config, "head_dim", default=64, minimum=1)
    if n_heads * head_dim != d_inner:
        raise ParamcalcError(
            f"config.json: expand · hidden_size ({d_inner}) must equal "
            f"num_heads · head_dim ({n_heads * head_dim})"
        )
    n_groups = config_int(config, "n_groups", default=8, minimum=1)
    if d_inner % n_groups:
        raise ParamcalcError(f"config.json: n_groups ({n_groups}) must divide the inner width {d_inner}")
    sizes = {
        "d_model": hidden,
        "d_inner": d_inner,
        "d_state": config_int(config, "state_size", default=128, minimum=1),
        "d_conv": config_int(config, "conv_kernel", default=4, minimum=1),
        "n_heads": n_heads,
        "head_dim": head_dim,
        "n_groups": n_groups,
        "use_bias": int(config_bool(config, "use_bias", False)),
        "conv_bias": int(config_bool(config, "use_conv_bias", True)),
    }
    return _backbone(config, MAMBA2, sizes, False, [])


register_model_type("mamba", read_mamba)
register_model_type("falcon_mamba", read_mamba)
register_model_type("mamba2", read_mamba2)
