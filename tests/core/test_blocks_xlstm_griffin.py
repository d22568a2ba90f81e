"""xLSTM and Griffin/RecurrentGemma/Hawk blocks without torch: tiny configurations whose counts,
FLOPs and state are worked out by hand in the comments, the shipped configs' totals from the
closed-form sums of the architecture papers, and the readers' one-line refusals.
(tests/torch/test_blocks_xlstm_griffin.py checks the same against transformers.)"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from paramcalc.bridge.readers.hf_config import model_from_config, read_hf_config
from paramcalc.core.blocks import get_block, model_types
from paramcalc.errors import ParamcalcError
from tests.helpers import DATA

XLSTM: dict[str, Any] = {
    "model_type": "xlstm",
    "vocab_size": 10,
    "hidden_size": 16,
    "num_blocks": 1,
    "num_hidden_layers": 1,
    "num_heads": 2,
    "qk_dim_factor": 0.5,
    "v_dim_factor": 1.0,
    "ffn_proj_factor": 2.0,
    "ffn_round_up_to_multiple_of": 8,
}


def test_registered() -> None:
    assert {"xlstm", "recurrent_gemma"} <= set(model_types())
    for name in (
        "mlstm",
        "mlstm_fused",
        "xlstm_ffn",
        "xlstm_ffn_fused",
        "rglru",
        "local_attention",
        "griffin_mlp",
    ):
        assert get_block(name).name == name


def test_xlstm_tiny_by_hand() -> None:
    m = model_from_config(XLSTM)
    # d = 16, 2 heads, qk_dim 8 (head 4), v_dim 16 (head 8), ffn 16·2 = 32
    # mLSTM: norm 16, q 8·16, k 8·16, v 16·16, o-gate 16·16, i/f gates 2·(2·16 + 2), multi-head
    # norm 16, out 16·16 = 16 + 128 + 128 + 256 + 256 + 68 + 16 + 256 = 1124
    # FFN: norm 16 + 3·32·16 = 1552; embedding 10·16, out_norm 16, untied head 10·16
    assert m.params == 1124 + 1552 + 160 + 16 + 160
    assert m.tensors()[-1].name == "lm_head.weight"
    mlstm, ffn = m.blocks
    assert mlstm.prefix == "backbone.blocks.0." and mlstm.type.name == "mlstm"
    assert mlstm.params == 1124 and ffn.params == 1552
    # GEMMs 2·(128 + 128 + 256 + 256 + 32 + 32 + 256); scan per head 6·4·8 + 6·4 + 8 = 224;
    # extra: gate biases 2·2, output gate 2·8, residual 16
    assert mlstm.flops_breakdown() == {"gemm": 2176, "conv": 0, "scan": 2 * 224, "extra": 36}
    # FFN GEMMs 2·3·512, gating product 32 and residual 16; head 2·10·16
    assert ffn.flops_per_token() == 3072 + 48
    assert m.flops_per_token() == 2176 + 448 + 36 + 3120 + 320
    assert m.forward_flops(7) == 7 * m.flops_per_token()
    # C 2·4·8, n 2·4, m 2: the same at any context
    assert mlstm.state_elements(ctx=0) == {"C": 64, "n": 8, "m": 2}
    assert m.state_elements(ctx=10_000) == 74
    assert mlstm.type.form == "chunked"


def test_xlstm_bias_and_fused_by_hand() -> None:
    biased = model_from_config({**XLSTM, "use_bias": True})
    # + norm 16, q 8, k 8, v 16, o 16, multi-head norm 16, out 16 = 96; FFN + 16 + 32 + 32 + 16
    assert [b.params for b in biased.blocks] == [1124 + 96, 1552 + 96]
    # extra + q, k (2·8), v, o (2·16), out 16; FFN + 2·32 + 16
    assert biased.blocks[0].flops_breakdown()["extra"] == 36 + 16 + 32 + 16
    fused = model_from_config({**XLSTM, "weight_mode": "fused"})
    names = [t.name for t in fused.tensors()]
    assert "backbone.blocks.0.mlstm_layer.qkv_opreact.weight" in names
    assert "backbone.blocks.0.ffn.proj_up_gate_z.weight" in names
    shapes = {t.name: t.shape for t in fused.tensors()}
    assert shapes["backbone.blocks.0.mlstm_layer.qkv_opreact.weight"] == (2 * 8 + 2 * 16, 16)
    assert shapes["backbone.blocks.0.mlstm_layer.ifgate_preact.bias"] == (4,)
    assert fused.params == model_from_config(XLSTM).params


def test_xlstm_ffn_rounding() -> None:
    # 16·2.667 = 42.67 rounded up to a multiple of 64 is 64; of 8 it is 48
    m = model_from_config({**XLSTM, "ffn_proj_factor": 2.667, "ffn_round_up_to_multiple_of": 64})
    assert dict((t.name, t.shape) for t in m.tensors())["backbone.blocks.0.ffn.proj_down.weight"] == (16, 64)
    m = model_from_config({**XLSTM, "ffn_proj_factor": 2.667})
    assert dict((t.name, t.shape) for t in m.tensors())["backbone.blocks.0.ffn.proj_down.weight"] == (16, 48)


def test_xlstm_7b_closed_form() -> None:
    """xLSTM-7B: d 4096, 32 blocks, 8 heads, qk 2048, v 4096, ffn 4096·2.667 -> 10944, vocab 50304."""
    m = read_hf_config(DATA / "hf" / "xlstm-7b.json")
    d, qk, v, ffn, heads, vocab = 4096, 2048, 4096, 10944, 8, 50304
    mlstm = d + 2 * qk * d + 2 * v * d + 2 * (heads * d + heads) + v + d * v
    block = mlstm + d + 3 * d * ffn
    assert m.params == 32 * block + 2 * vocab * d + d == 6_865_424_896
    # state: 32 layers · 8 heads · (C 256·512 + n 256 + m 1)
    assert m.state_elements() == 32 * 8 * (256 * 512 + 256 + 1)


GRIFFIN: dict[str, Any] = {
    "model_type": "recurrent_gemma",
    "vocab_size": 10,
    "hidden_size": 8,
    "lru_width": 12,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 10,
    "num_hidden_layers": 3,
    "conv1d_width": 3,
    "attention_window_size": 4,
}


def test_griffin_tiny_by_hand() -> None:
    m = model_from_config(GRIFFIN)
    kinds = [b.type.name for b in m.blocks]
    assert kinds == ["rglru", "griffin_mlp", "rglru", "griffin_mlp", "local_attention", "griffin_mlp"]
    # recurrent: norm 8, linear_y/x 2·(12·8 + 12), linear_out 8·12 + 8, conv 12·3 + 12, Λ 12,
    # two gates 2·(2·6·6 + 2·6) = 8 + 216 + 104 + 48 + 12 + 168 = 556
    # attention (head_dim 4, one kv head): norm 8, q 8·8, k 4·8, v 4·8, o 8·8 + 8 = 208
    # MLP (width 10 // 2 = 5): norm 8, gate/up 2·(5·8 + 5), down 8·5 + 8 = 146
    assert [b.params for b in m.blocks] == [556, 146, 556, 146, 208, 146]
    assert m.tied and m.params == 2 * 556 + 208 + 3 * 146 + 10 * 8 + 8
    rec, mlp, att = m.blocks[0], m.blocks[1], m.blocks[4]
    # GEMMs 2·(96 + 96 + 96 + 72 + 72), conv 2·36, scan 10·12, extra 4·12 + 2·8
    assert rec.flops_breakdown() == {"gemm": 864, "conv": 72, "scan": 120, "extra": 64}
    # attention: GEMMs 2·(64 + 32 + 32 + 64); 2 heads · 4 · 4 FLOPs per key + o bias + residual
    assert att.flops_breakdown(ctx=0) == {"gemm": 384, "conv": 0, "scan": 0, "extra": 32 * 1 + 16}
    assert att.flops_per_token(ctx=10) == 384 + 32 * 4 + 16  # at most the window, 4 keys
    assert mlp.flops_per_token() == 2 * 120 + 3 * 5 + 16
    per_token0 = 2 * 1120 + 432 + 3 * 271 + 2 * 10 * 8
    assert m.flops_per_token(0) == per_token0
    # tokens 0, 1, 2 see 1, 2, 3 keys
    assert m.forward_flops(3) == 3 * (per_token0 - 32) + 32 * (1 + 2 + 3)
    # state: conv 12·2 + RG-LRU 12 per recurrent layer; keys and values min(ctx, 3)·4 each
    assert rec.state_elements() == {"conv_state": 24, "rg_lru_state": 12}
    assert m.state_elements(ctx=2) == 2 * 36 + 2 * 2 * 4
    assert m.state_elements(ctx=100) == 2 * 36 + 2 * 3 * 4
    assert m.state_bytes(ctx=100, dtype="bf16") == 2 * (2 * 36 + 2 * 3 * 4)


def test_griffin_untied_bias_and_hawk() -> None:
    untied = model_from_config({**GRIFFIN, "tie_word_embeddings": False, "attention_bias": True})
    assert untied.tensors()[-1].name == "lm_head.weight"
    # + head 10·8, q bias 8, k and v biases 4 each
    assert untied.params == model_from_config(GRIFFIN).params + 80 + 16
    hawk = model_from_config({**GRIFFIN, "block_types": ["recurrent"]})
    assert {b.type.name for b in hawk.blocks} == {"rglru", "griffin_mlp"}
    assert hawk.params == 3 * (556 + 146) + 80 + 8
    assert hawk.state_elements(ctx=0) == hawk.state_elements(ctx=10**6) == 3 * 36


def _recurrentgemma(d: int, layers: int, heads: int, ffn: int) -> int:
    """The closed form of the Griffin paper's layout: pattern (recurrent, recurrent, attention),
    lru_width = d, one key/value head of d/heads, conv width 4, vocabulary 256000, tied."""
    hd, bw = d // heads, d // heads
    recurrent = d + 3 * (d * d + d) + 4 * d + d + d + 2 * (heads * bw * bw + d)
    attention = d + d * d + 2 * hd * d + d * d + d
    mlp = d + 3 * d * ffn + 2 * ffn + d
    n_att = layers // 3
    return (layers - n_att) * recurrent + n_att * attention + layers * mlp + 256000 * d + d


def test_recurrentgemma_closed_form() -> None:
    m2 = read_hf_config(DATA / "hf" / "recurrentgemma-2b.json")
    assert m2.params == _recurrentgemma(2560, 26, 10, 7680) == 2_682_862_080
    m9 = read_hf_config(DATA / "hf" / "recurrentgemma-9b.json")
    assert m9.params == _recurrentgemma(4096, 38, 16, 12288) == 8_579_977_216
    # the 2B state at 8k context: 18 recurrent layers · 2560·(3 + 1), 8 attention layers · 2·2047·256
    assert m2.state_elements(ctx=8192) == 18 * 2560 * 4 + 8 * 2 * 2047 * 256
    assert m2.state_elements(ctx=100) == 18 * 2560 * 4 + 8 * 2 * 100 * 256


def test_shipped_configs_are_json_with_their_model_type() -> None:
    for name, model_type in [
        ("xlstm-7b.json", "xlstm"),
        ("recurrentgemma-2b.json", "recurrent_gemma"),
        ("recurrentgemma-9b.json", "recurrent_gemma"),
    ]:
        assert json.loads((DATA / "hf" / name).read_text())["model_type"] == model_type


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({**XLSTM, "hidden_size": 30, "num_heads": 4}, "qk_dim = int(hidden_size · qk_dim_factor) = 15"),
        ({**XLSTM, "embedding_dim": 32}, "embedding_dim 32 differs from hidden_size 16"),
        ({**XLSTM, "weight_mode": "both"}, "weight_mode must be 'single' or 'fused'"),
        ({**XLSTM, "qk_dim_factor": -1}, "qk_dim_factor must be a number > 0"),
        ({**XLSTM, "v_dim_factor": "1"}, "v_dim_factor must be a number > 0"),
        ({**XLSTM, "num_heads": 0}, "num_heads must be an integer >= 1"),
        ({**XLSTM, "num_hidden_layers": "2"}, "num_hidden_layers must be an integer >= 1"),
        ({**GRIFFIN, "lru_width": 13}, "lru_width 13 must be a multiple of num_attention_heads 2"),
        ({**GRIFFIN, "num_key_value_heads": 3}, "num_key_value_heads 3 exceeds num_attention_heads 2"),
        ({**GRIFFIN, "block_types": ["recurrent", "mlp"]}, "block_types holds 'mlp'"),
        ({**GRIFFIN, "block_types": []}, "block_types must be a non-empty list"),
        ({**GRIFFIN, "hidden_size": 1}, "hidden_size 1 is smaller than num_attention_heads 2"),
        ({**GRIFFIN, "attention_window_size": 0}, "attention_window_size must be an integer >= 1"),
        ({**GRIFFIN, "tie_word_embeddings": "yes"}, "tie_word_embeddings must be true or false"),
    ],
)
def test_reader_refusals_are_one_line(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamcalcError, match=re.escape(message)) as info:
        model_from_config(config)
    assert "\n" not in str(info.value)


def test_reader_notes() -> None:
    notes = " ".join(model_from_config({**XLSTM, "tie_word_embeddings": True, "num_hidden_layers": 32}).notes)
    assert "does not tie" in notes and "num_hidden_layers = 32 layers" in notes
    notes = " ".join(model_from_config({**XLSTM, "num_blocks": 2, "num_hidden_layers": None}).notes)
    assert "xLSTMCache" not in notes
    notes = " ".join(model_from_config({**XLSTM, "num_hidden_layers": 1}).notes)
    assert "xLSTMCache" not in notes
    notes = " ".join(model_from_config({k: v for k, v in XLSTM.items() if k != "num_hidden_layers"}).notes)
    assert (
        "1 block (num_blocks), but transformers' xLSTMCache allocates state for num_hidden_layers = 32"
        in notes
    )
    notes = " ".join(model_from_config({**GRIFFIN, "head_dim": 3}).notes)
    assert "head_dim 3 is not used" in notes and "intermediate_size // 2 = 5" in notes


def test_slstm_by_hand() -> None:
    from paramcalc.core.blocks.xlstm import package_ffn_width

    b = get_block("slstm").bind({"d_model": 8, "heads": 2, "head_dim": 4, "conv_kernel": 3})
    # LayerNorm 8; conv 8·3 + 8; four headwise gates 2·4·4; recurrent kernel 2·4·16 (CUDA layout
    # (2, 4, 16) by default); bias 4·8; group norm 8
    assert b.params == 8 + 24 + 8 + 4 * 32 + 128 + 32 + 8
    assert {t.name: t.shape for t in b.tensors()}["xlstm.slstm_cell._recurrent_kernel_"] == (2, 4, 16)
    vanilla = get_block("slstm").bind({"d_model": 8, "heads": 2, "head_dim": 4, "conv_kernel": 0, "cuda": 0})
    assert {t.name: t.shape for t in vanilla.tensors()}["xlstm.slstm_cell._recurrent_kernel_"] == (2, 16, 4)
    assert "xlstm.conv1d.conv.weight" not in {t.name for t in vanilla.tensors()}
    # GEMMs 2·(128 + 128), conv 2·24, scan 19·8, extra: conv bias 8 + residual 8
    assert b.flops_breakdown() == {"gemm": 512, "conv": 48, "scan": 152, "extra": 16}
    assert vanilla.flops_breakdown()["extra"] == 8
    assert b.state_elements() == {"slstm_state": 32, "conv_state": 24}
    # 1.3·8 = 10.4 -> 64 (multiple 64), 16 (multiple 8), 8 rounded down
    assert (package_ffn_width(8), package_ffn_width(8, multiple=8)) == (64, 16)
    assert package_ffn_width(8, multiple=8, round_up=False) == 8
    ffn = get_block("xlstm_gated_ffn").bind({"d_model": 8, "ffn_dim": 16})
    assert ffn.params == 8 + 32 * 8 + 8 * 16
