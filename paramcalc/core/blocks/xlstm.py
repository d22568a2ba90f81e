"""xLSTM's mLSTM block and its feed-forward, as Hugging Face ``transformers`` implements the
``xlstm`` model type (``xLSTMForCausalLM``, the layout of NX-AI's xLSTM-7B), and the reader of
its ``config.json``.

One layer (``backbone.blocks.{i}.``) is two registry entries, each with its pre-norm:

* ``mlstm`` (or ``mlstm_fused``): ``norm_mlstm`` (RMSNorm), the projections ``q``, ``k``
  (``heads·qk_head_dim`` rows), ``v``, ``ogate_preact`` (``heads·v_head_dim`` rows), the gate
  projections ``igate_preact`` and ``fgate_preact`` (one pre-activation per head, always with a
  bias), the multi-head layer norm over each head's ``v_head_dim`` and ``out_proj``. With
  ``weight_mode="fused"`` q, k, v and the output gate are one ``qkv_opreact`` and the two gates
  one ``ifgate_preact``.
* ``xlstm_ffn`` (or ``xlstm_ffn_fused``): ``norm_ffn`` and the SiLU-gated feed-forward
  ``proj_up_gate``, ``proj_up``, ``proj_down`` of width ``ffn_dim`` (``hidden_size ·
  ffn_proj_factor`` rounded up to ``ffn_round_up_to_multiple_of``).

Every linear map and norm has a bias only with ``use_bias`` (the two gates always have one).
The model adds the embedding (``backbone.embeddings``), ``backbone.out_norm`` (always present in
``transformers``, whatever ``add_out_norm`` says) and an ``lm_head`` that ``transformers`` never
ties to the embedding (``xLSTMForCausalLM`` declares no tied weights, so
``tie_word_embeddings`` changes nothing).

The widths are read as ``transformers``' layer computes them: ``qk_dim = int(hidden_size ·
qk_dim_factor)`` and ``v_dim = int(hidden_size · v_dim_factor)``, not rounded (the config's
``qk_dim`` property and ``xLSTMCache`` round them up to a multiple of 64; the two agree for
published models, whose widths are multiples of 64).

The sLSTM has no ``transformers`` model type: ``slstm`` and ``xlstm_gated_ffn`` follow the
``xlstm`` package's ``sLSTMBlock`` (names under ``xlstm_block_stack.blocks.{i}.`` there), with
no ``config.json`` reader: bind them with their sizes (``package_ffn_width`` gives the package's
feed-forward width).

FLOPs beyond the GEMMs (``scan_flops``: the recurrent step, per head, with ``dk = qk_head_dim``
and ``dv = v_head_dim``): ``q/√dk`` (dk), ``k vᵀ`` (dk·dv), ``i·(k vᵀ)`` (dk·dv), ``f·C``
(dk·dv), their sum (dk·dv), ``n`` (3dk), ``Cᵀq`` (2dk·dv), ``nᵀq`` (2dk) and the division
(dv): ``6·dk·dv + 6·dk + dv`` per head. The per-head scalar gate arithmetic (log-sigmoid, the
stabiliser's max, three exponentials) and all norms and nonlinearities are not counted.
``extra_flops`` counts bias additions, the output gate's product, the feed-forward's gating
product and the residual additions.
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
    "Beck et al., xLSTM: Extended Long Short-Term Memory (arXiv:2405.04517); xLSTM 7B "
    "(arXiv:2503.13427); transformers.models.xlstm.modeling_xlstm"
)
HF_CLASS = "xLSTMForCausalLM"

_MLSTM_SIZES = ("d_model", "heads", "qk_head_dim", "v_head_dim", "use_bias")
_QK = "heads·qk_head_dim"
_V = "heads·v_head_dim"


def _mlstm_projections(fused: bool) -> tuple[BlockTensor, ...]:
    layer = "mlstm_layer."
    if fused:
        return (
            BlockTensor(
                layer + "qkv_opreact.weight",
                (f"2·{_QK} + 2·{_V}", "d_model"),
                "gemm",
                note="q, k, v and the output gate's pre-activation, stacked",
            ),
            BlockTensor(layer + "qkv_opreact.bias", (f"2·{_QK} + 2·{_V}",), when="use_bias"),
            BlockTensor(
                layer + "ifgate_preact.weight",
                ("2·heads", "d_model"),
                "gemm",
                note="input and forget gate pre-activations, one per head each",
            ),
            BlockTensor(layer + "ifgate_preact.bias", ("2·heads",)),
        )
    out: list[BlockTensor] = []
    for name, rows, note in (
        ("q", _QK, "queries"),
        ("k", _QK, "keys"),
        ("v", _V, "values"),
        ("ogate_preact", _V, "output gate pre-activation"),
    ):
        out.append(BlockTensor(f"{layer}{name}.weight", (rows, "d_model"), "gemm", note=note))
        out.append(BlockTensor(f"{layer}{name}.bias", (rows,), when="use_bias"))
    for name, note in (
        ("igate_preact", "input gate, one per head"),
        ("fgate_preact", "forget gate, one per head"),
    ):
        out.append(BlockTensor(f"{layer}{name}.weight", ("heads", "d_model"), "gemm", note=note))
        out.append(BlockTensor(f"{layer}{name}.bias", ("heads",), note="always present"))
    return tuple(out)


def _mlstm_type(fused: bool) -> BlockType:
    layer = "mlstm_layer."
    if fused:
        q = k = v = o = layer + "qkv_opreact.weight"
    else:
        q, k, v, o = (layer + n + ".weight" for n in ("q", "k", "v", "ogate_preact"))
    gates = (
        (layer + "ifgate_preact.weight",)
        if fused
        else (layer + "igate_preact.weight", layer + "fgate_preact.weight")
    )
    tensors = (
        BlockTensor("norm_mlstm.weight", ("d_model",), "norm", note="RMSNorm before the mLSTM layer"),
        BlockTensor("norm_mlstm.bias", ("d_model",), "norm", when="use_bias"),
        *_mlstm_projections(fused),
        BlockTensor(
            layer + "multihead_norm.weight", (_V,), "norm", note="layer norm over each head's v_head_dim"
        ),
        BlockTensor(layer + "multihead_norm.bias", (_V,), "norm", when="use_bias"),
        BlockTensor(layer + "out_proj.weight", ("d_model", _V), "gemm", note="output projection"),
        BlockTensor(layer + "out_proj.bias", ("d_model",), when="use_bias"),
    )
    return BlockType(
        name="mlstm_fused" if fused else "mlstm",
        title="xLSTM mLSTM layer"
        + (" (fused projections)" if fused else "")
        + ": matrix memory per head, exponential input gate, sigmoid forget gate",
        sizes=_MLSTM_SIZES,
        tensors=tensors,
        equations=(
            (
                "x̂_t = RMSNorm(x_t); q_t = W_q x̂_t, k_t = W_k x̂_t, v_t = W_v x̂_t",
                ("norm_mlstm.weight", q, k, v),
            ),
            ("ĩ_t = 15·tanh((W_i x̂_t + b_i)/15), f̃_t = 15·tanh((W_f x̂_t + b_f)/15) (one per head)", gates),
            ("m_t = max(log σ(f̃_t) + m_{t−1}, ĩ_t)", gates),
            ("f_t = exp(log σ(f̃_t) + m_{t−1} − m_t), i_t = exp(ĩ_t − m_t)", gates),
            ("C_t = f_t C_{t−1} + i_t k_t v_tᵀ (dk × dv per head)", (k, v)),
            ("n_t = f_t n_{t−1} + i_t k_t", (k,)),
            ("h̃_t = C_tᵀ (q_t/√dk) / (max(|n_tᵀ (q_t/√dk)|, exp(−m_t)) + ε)", (q,)),
            ("h_t = σ(W_o x̂_t) ⊙ MultiHeadLayerNorm(h̃_t)", (o, layer + "multihead_norm.weight")),
            ("y_t = x_t + W_out h_t", (layer + "out_proj.weight",)),
        ),
        scan_flops="heads·(6·qk_head_dim·v_head_dim + 6·qk_head_dim + v_head_dim)",
        extra_flops=(
            "2·heads + heads·v_head_dim + d_model"
            " + use_bias·(2·heads·qk_head_dim + 2·heads·v_head_dim + d_model)"
        ),
        state=(
            StateTerm("C", ("heads", "qk_head_dim", "v_head_dim"), "matrix memory (xLSTMCache rnn_state[0])"),
            StateTerm("n", ("heads", "qk_head_dim"), "normaliser (rnn_state[1])"),
            StateTerm("m", ("heads",), "stabiliser, one per head (rnn_state[2], heads × 1)"),
        ),
        form="chunked",
        defaults={"use_bias": 0},
        reference=REFERENCE,
        hf_class=HF_CLASS,
    )


def _ffn_type(fused: bool) -> BlockType:
    if fused:
        up: tuple[BlockTensor, ...] = (
            BlockTensor(
                "ffn.proj_up_gate_z.weight", ("2·ffn_dim", "d_model"), "gemm", note="gate and up, stacked"
            ),
            BlockTensor("ffn.proj_up_gate_z.bias", ("2·ffn_dim",), when="use_bias"),
        )
        up_names: tuple[str, ...] = ("ffn.proj_up_gate_z.weight",)
    else:
        up = (
            BlockTensor("ffn.proj_up_gate.weight", ("ffn_dim", "d_model"), "gemm", note="gate (SiLU)"),
            BlockTensor("ffn.proj_up_gate.bias", ("ffn_dim",), when="use_bias"),
            BlockTensor("ffn.proj_up.weight", ("ffn_dim", "d_model"), "gemm", note="up"),
            BlockTensor("ffn.proj_up.bias", ("ffn_dim",), when="use_bias"),
        )
        up_names = ("ffn.proj_up_gate.weight", "ffn.proj_up.weight")
    return BlockType(
        name="xlstm_ffn_fused" if fused else "xlstm_ffn",
        title="xLSTM feed-forward (RMSNorm, SiLU-gated up projection, down projection)"
        + (" (fused up projections)" if fused else ""),
        sizes=("d_model", "ffn_dim", "use_bias"),
        tensors=(
            BlockTensor("norm_ffn.weight", ("d_model",), "norm", note="RMSNorm before the feed-forward"),
            BlockTensor("norm_ffn.bias", ("d_model",), "norm", when="use_bias"),
            *up,
            BlockTensor("ffn.proj_down.weight", ("d_model", "ffn_dim"), "gemm", note="down"),
            BlockTensor("ffn.proj_down.bias", ("d_model",), when="use_bias"),
        ),
        equations=(
            (
                "y = x + W_down (SiLU(W_gate RMSNorm(x)) ⊙ W_up RMSNorm(x))",
                ("norm_ffn.weight", *up_names, "ffn.proj_down.weight"),
            ),
        ),
        extra_flops="ffn_dim + d_model + use_bias·(2·ffn_dim + d_model)",
        form="sequential",
        defaults={"use_bias": 0},
        reference=REFERENCE,
        hf_class=HF_CLASS,
    )


MLSTM = register_block(_mlstm_type(fused=False))
MLSTM_FUSED = register_block(_mlstm_type(fused=True))
XLSTM_FFN = register_block(_ffn_type(fused=False))
XLSTM_FFN_FUSED = register_block(_ffn_type(fused=True))


# --- sLSTM (the xlstm package's layout; no transformers model type) ----------------------------------

PACKAGE_REFERENCE = "Beck et al., xLSTM (arXiv:2405.04517); the xlstm package (NX-AI), xlstm.blocks.slstm"
_S = "xlstm."
_CELL = _S + "slstm_cell."

SLSTM = register_block(
    BlockType(
        name="slstm",
        title="xLSTM sLSTM block (the xlstm package): pre-LayerNorm, causal conv, headwise gates, "
        "recurrent kernel per head, exponential gating",
        sizes=("d_model", "heads", "head_dim", "conv_kernel", "group_norm_weight", "cuda"),
        tensors=(
            BlockTensor("xlstm_norm.weight", ("d_model",), "norm", note="LayerNorm, no bias"),
            BlockTensor(
                _S + "conv1d.conv.weight",
                ("d_model", "1", "conv_kernel"),
                "conv",
                when="conv_kernel",
                note="causal depthwise conv feeding the i and f gates",
            ),
            BlockTensor(_S + "conv1d.conv.bias", ("d_model",), when="conv_kernel"),
            *(
                BlockTensor(
                    f"{_S}{g}gate.weight",
                    ("heads", "head_dim", "head_dim"),
                    "gemm",
                    note="headwise (block-diagonal) input projection",
                )
                for g in "fizo"
            ),
            BlockTensor(
                _CELL + "_recurrent_kernel_",
                ("heads", "head_dim if cuda == 1 else 4·head_dim", "4·head_dim if cuda == 1 else head_dim"),
                "gemm",
                note="recurrent weights of the four gates per head (layout by backend)",
            ),
            BlockTensor(_CELL + "_bias_", ("4·d_model",), note="the four gates' biases"),
            BlockTensor(
                _S + "group_norm.weight",
                ("d_model",),
                "norm",
                when="group_norm_weight",
                note="layer norm per head",
            ),
        ),
        equations=(
            (
                "x̂_t = LayerNorm(x_t); x̃_t = SiLU(Conv1D(x̂)_t)",
                ("xlstm_norm.weight", _S + "conv1d.conv.weight"),
            ),
            (
                "ĩ_t = W_fgate x̃_t + R_i y_{t−1} + b_i,  f̃_t = W_igate x̃_t + R_f y_{t−1} + b_f"
                " (W headwise, R per head; the package's fgate module feeds the input gate)",
                (_S + "fgate.weight", _S + "igate.weight", _CELL + "_recurrent_kernel_", _CELL + "_bias_"),
            ),
            (
                "z̃_t = W_z x̂_t + R_z y_{t−1} + b_z,  õ_t = W_o x̂_t + R_o y_{t−1} + b_o",
                (_S + "zgate.weight", _S + "ogate.weight", _CELL + "_recurrent_kernel_", _CELL + "_bias_"),
            ),
            ("m_t = max(ĩ_t, log σ(f̃_t) + m_{t−1})", (_S + "fgate.weight", _S + "igate.weight")),
            (
                "i_t = min(exp(ĩ_t − m_t), 1), f_t = min(exp(log σ(f̃_t) + m_{t−1} − m_t), 1)",
                (_S + "fgate.weight", _S + "igate.weight"),
            ),
            ("c_t = f_t c_{t−1} + i_t tanh(z̃_t), n_t = f_t n_{t−1} + i_t", (_S + "zgate.weight",)),
            (
                "y_t = σ(õ_t) c_t / n_t;  out_t = x_t + GroupNorm(y_t)",
                (_S + "ogate.weight", _S + "group_norm.weight"),
            ),
        ),
        # per channel: W x + R y + b (2 adds × 4 gates), m (add, max), the two exponents (2),
        # c (3), n (2), y (2); exp, tanh, σ, log σ and the clamps not counted
        scan_flops="19·d_model",
        extra_flops="d_model + (d_model if conv_kernel > 0 else 0)",
        state=(
            StateTerm("slstm_state", ("4", "d_model"), "y, c, n, m"),
            StateTerm("conv_state", ("conv_kernel", "d_model"), "the step's conv window (kernel × d)"),
        ),
        form="sequential",
        defaults={"conv_kernel": 4, "group_norm_weight": 1, "cuda": 1},
        reference=PACKAGE_REFERENCE,
    )
)

XLSTM_GATED_FFN = register_block(
    BlockType(
        name="xlstm_gated_ffn",
        title="xLSTM gated feed-forward of the xlstm package (LayerNorm, stacked gate and up projection)",
        sizes=("d_model", "ffn_dim", "use_bias"),
        tensors=(
            BlockTensor("ffn_norm.weight", ("d_model",), "norm", note="LayerNorm, no bias"),
            BlockTensor("ffn.proj_up.weight", ("2·ffn_dim", "d_model"), "gemm", note="gate and up, stacked"),
            BlockTensor("ffn.proj_up.bias", ("2·ffn_dim",), when="use_bias"),
            BlockTensor("ffn.proj_down.weight", ("d_model", "ffn_dim"), "gemm"),
            BlockTensor("ffn.proj_down.bias", ("d_model",), when="use_bias"),
        ),
        equations=(
            (
                "y = x + W_down (GeLU(W_gate u) ⊙ W_up u), u = LayerNorm(x)",
                ("ffn_norm.weight", "ffn.proj_up.weight", "ffn.proj_down.weight"),
            ),
        ),
        extra_flops="ffn_dim + d_model + use_bias·(2·ffn_dim + d_model)",
        defaults={"use_bias": 0},
        reference=PACKAGE_REFERENCE,
    )
)


def package_ffn_width(
    d_model: int, proj_factor: float = 1.3, multiple: int = 64, round_up: bool = True
) -> int:
    """The xlstm package's feed-forward width: ``proj_factor · d_model`` rounded up (or down) to
    a multiple of ``multiple`` (``UpProjConfigMixin``)."""
    import math

    ratio = proj_factor * d_model / multiple
    return int((math.ceil(ratio) if round_up else math.floor(ratio)) * multiple)


# --- the config.json reader -----------------------------------------------------------------------


def _config_factor(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ParamcalcError(f"config.json: {key} must be a number > 0, got {value!r}")
    return float(value)


def round_up_to_multiple(x: float, multiple: int) -> int:
    """``transformers``' ``round_up_to_next_multiple_of``: ``x`` (a float) rounded up to a
    multiple of ``multiple``, as the same float arithmetic computes it."""
    return int(((x + multiple - 1) // multiple) * multiple)


def read_xlstm(config: Mapping[str, Any]) -> LanguageModel:
    """The model of an ``xlstm`` ``config.json`` (``transformers``' defaults where a key is
    missing: those of xLSTM-7B)."""
    d_model = config_int(config, "hidden_size", default=4096, minimum=1)
    embedding_dim = config_int(config, "embedding_dim", default=d_model, minimum=1)
    if embedding_dim != d_model:
        raise ParamcalcError(
            f"config.json: embedding_dim {embedding_dim} differs from hidden_size {d_model} "
            "(transformers' default when hidden_size is missing is 4096); the blocks use hidden_size"
        )
    layers = config_int(config, "num_blocks", "num_hidden_layers", default=32, minimum=1, maximum=MAX_LAYERS)
    heads = config_int(config, "num_heads", default=8, minimum=1)
    vocab = config_int(config, "vocab_size", default=50304, minimum=1)
    use_bias = config_bool(config, "use_bias", False)
    qk_dim = int(d_model * _config_factor(config, "qk_dim_factor", 0.5))
    v_dim = int(d_model * _config_factor(config, "v_dim_factor", 1.0))
    for name, width in (("qk_dim", qk_dim), ("v_dim", v_dim)):
        if width == 0 or width % heads:
            raise ParamcalcError(
                f"config.json: {name} = int(hidden_size · {name}_factor) = {width} must be a positive "
                f"multiple of num_heads {heads} (the mLSTM splits it into heads)"
            )
    multiple = config_int(config, "ffn_round_up_to_multiple_of", default=64, minimum=1)
    ffn_dim = round_up_to_multiple(d_model * _config_factor(config, "ffn_proj_factor", 2.667), multiple)
    mode = config.get("weight_mode", "single")
    if mode not in ("single", "fused"):
        raise ParamcalcError(f"config.json: weight_mode must be 'single' or 'fused', got {mode!r}")
    fused = mode == "fused"
    bias = int(use_bias)
    mlstm_sizes = {
        "d_model": d_model,
        "heads": heads,
        "qk_head_dim": qk_dim // heads,
        "v_head_dim": v_dim // heads,
        "use_bias": bias,
    }
    ffn_sizes = {"d_model": d_model, "ffn_dim": ffn_dim, "use_bias": bias}
    pattern = [
        [
            (MLSTM_FUSED if fused else MLSTM, mlstm_sizes, ""),
            (XLSTM_FFN_FUSED if fused else XLSTM_FFN, ffn_sizes, ""),
        ]
    ]
    notes = [
        f"mLSTM widths as transformers' layer computes them: "
        f"qk_dim = int({d_model}·qk_dim_factor) = {qk_dim}, "
        f"v_dim = int({d_model}·v_dim_factor) = {v_dim}, {heads} heads",
        f"feed-forward width {ffn_dim}: hidden_size·ffn_proj_factor rounded up to a multiple of {multiple}",
        "backbone.out_norm is always present in transformers (add_out_norm is not read)",
        "lm_head is never tied to the embedding: xLSTMForCausalLM declares no tied weights",
        "gate pre-activations and logits are soft-capped (tanh, no parameters)",
    ]
    # transformers: num_hidden_layers (default 32) sizes the cache, num_blocks the model
    cache_layers = layers if config.get("num_hidden_layers", 32) is None else 32
    cache_layers = config_int(
        config, "num_hidden_layers", default=cache_layers, minimum=1, maximum=MAX_LAYERS
    )
    if cache_layers != layers:
        notes.append(
            f"{plural(layers, 'block')} (num_blocks), but transformers' xLSTMCache allocates state "
            f"for num_hidden_layers = {plural(cache_layers, 'layer')}"
        )
    if config.get("tie_word_embeddings"):
        notes.append("tie_word_embeddings is true but transformers' xLSTM does not tie: lm_head counted")
    return LanguageModel(
        name=str(config.get("_name_or_path") or "xlstm"),
        model_type="xlstm",
        d_model=d_model,
        vocab=vocab,
        vocab_padded=vocab,
        embedding="backbone.embeddings.weight",
        blocks=tuple(layer_blocks(pattern, layers, "backbone.blocks.{i}.")),
        final=norm_tensors(["backbone.out_norm.weight"], d_model),
        head="lm_head.weight",
        notes=tuple(notes),
    )


register_model_type("xlstm", read_xlstm)
