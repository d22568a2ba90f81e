"""xLSTM (model type ``xlstm``) and Griffin/RecurrentGemma/Hawk (``recurrent_gemma``) against
Hugging Face ``transformers``: every tensor name and shape (in order) of the shipped configs and
of random small configurations built on the meta device, FLOPs per token against
``FlopCounterMode`` on the CPU, and the inference state against the implementation's cache.

Expected values come from ``transformers``' modules (``named_parameters``), torch's FLOP counter
and the cache tensors, plus the FLOPs of the recurrence's own matrix products, derived by hand in
the comments below from the installed source; never from paramcalc's output.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from paramcalc.bridge.readers.hf_config import model_from_config, read_hf_config
from paramcalc.core.blocks import LanguageModel
from tests.helpers import DATA

transformers = pytest.importorskip("transformers", reason="the [hf] extra (transformers) is not installed")

PROPERTY = settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _hf_model(config: dict[str, Any], device: str = "meta") -> Any:
    cfg = transformers.AutoConfig.for_model(**config)
    if device == "meta":
        with torch.device("meta"):
            return transformers.AutoModelForCausalLM.from_config(cfg)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()


def _hf_tensors(model: Any) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(p.shape)) for name, p in model.named_parameters()]


def _ours(model: LanguageModel) -> list[tuple[str, tuple[int, ...]]]:
    return [(t.name, t.shape) for t in model.tensors()]


def _assert_same_tensors(config: dict[str, Any]) -> LanguageModel:
    ours = model_from_config(config)
    hf = _hf_model(config)
    assert _ours(ours) == _hf_tensors(hf)
    assert ours.params == sum(p.numel() for p in hf.parameters())
    return ours


# --- the shipped configs ---------------------------------------------------------------------------

#: Published sizes: xLSTM 7B "a 7-billion-parameter LLM" (Beck et al. 2025, abstract);
#: RecurrentGemma-2B 2.68B and -9B 8.58B in total (the RecurrentGemma report's table of model
#: sizes). transformers' count on meta is the exact reference; the published size is checked to
#: the digits it is published with.
SHIPPED = [
    ("xlstm-7b.json", 7e9, 0.15e9),
    ("recurrentgemma-2b.json", 2.68e9, 0.005e9),
    ("recurrentgemma-9b.json", 8.58e9, 0.005e9),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "published", "tolerance"), SHIPPED)
def test_shipped_config_equals_transformers_and_published_size(
    name: str, published: float, tolerance: float
) -> None:
    path = DATA / "hf" / name
    config = json.loads(path.read_text())
    ours = read_hf_config(path)
    hf = _hf_model(config)
    assert _ours(ours) == _hf_tensors(hf)
    total = sum(p.numel() for p in hf.parameters())
    assert ours.params == total
    assert abs(total - published) <= tolerance


def test_recurrentgemma_2b_non_embedding_size() -> None:
    """ "A pre-trained model with 2B non-embedding parameters" (RecurrentGemma report, abstract)."""
    ours = read_hf_config(DATA / "hf" / "recurrentgemma-2b.json")
    assert abs(ours.params - 256000 * 2560 - 2e9) < 0.05e9


# --- random small configurations (hypothesis) ------------------------------------------------------


@st.composite
def xlstm_configs(draw: st.DrawFn) -> dict[str, Any]:
    heads = draw(st.sampled_from([1, 2, 4]))
    # hidden = heads·8·k makes every factor below give widths that split into heads
    d = heads * 8 * draw(st.integers(1, 4))
    return {
        "model_type": "xlstm",
        "vocab_size": draw(st.integers(1, 300)),
        "hidden_size": d,
        "embedding_dim": d,
        "num_blocks": draw(st.integers(1, 3)),
        "num_heads": heads,
        "use_bias": draw(st.booleans()),
        "qk_dim_factor": draw(st.sampled_from([0.25, 0.5, 0.75, 1.0, 1.5])),
        "v_dim_factor": draw(st.sampled_from([0.5, 1.0, 2.0])),
        "ffn_proj_factor": draw(st.sampled_from([1.0, 1.3, 2.0, 2.667, 4.0])),
        "ffn_round_up_to_multiple_of": draw(st.sampled_from([1, 8, 64])),
        "weight_mode": draw(st.sampled_from(["single", "fused"])),
        "tie_word_embeddings": draw(st.booleans()),
    }


@st.composite
def griffin_configs(draw: st.DrawFn) -> dict[str, Any]:
    heads = draw(st.integers(1, 4))
    d = heads * draw(st.integers(2, 8)) + draw(st.integers(0, heads - 1))  # head_dim = d // heads
    kinds = draw(st.lists(st.sampled_from(["recurrent", "attention"]), min_size=1, max_size=3))
    return {
        "model_type": "recurrent_gemma",
        "vocab_size": draw(st.integers(1, 300)),
        "hidden_size": d,
        "lru_width": heads * draw(st.integers(1, 8)),
        "num_attention_heads": heads,
        "num_key_value_heads": draw(st.integers(1, heads)),
        "intermediate_size": draw(st.integers(2, 64)),
        "num_hidden_layers": draw(st.integers(1, 5)),
        "block_types": kinds,
        "conv1d_width": draw(st.integers(1, 5)),
        "attention_window_size": draw(st.integers(1, 16)),
        "attention_bias": draw(st.booleans()),
        "tie_word_embeddings": draw(st.booleans()),
    }


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["single", "fused"])
def test_xlstm_tensors_equal_transformers(mode: str) -> None:
    """100 random configurations per weight mode (mlstm and xlstm_ffn, or their fused forms)."""

    seen: list[dict[str, Any]] = []

    @PROPERTY
    @given(xlstm_configs())
    def check(config: dict[str, Any]) -> None:
        seen.append(config)
        ours = _assert_same_tensors({**config, "weight_mode": mode})
        assert ours.blocks[0].type.name == ("mlstm_fused" if mode == "fused" else "mlstm")

    check()
    assert len(seen) >= 100
    assert {c["use_bias"] for c in seen} == {True, False}


PATTERNS = {
    "griffin": None,  # a random pattern of recurrent and attention blocks
    "hawk": ["recurrent"],
    "attention": ["attention"],
}


@pytest.mark.slow
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_griffin_tensors_equal_transformers(pattern: str) -> None:
    """100 random configurations per pattern: Griffin's mixed ones, Hawk (all recurrent) and all
    local attention; the MLP block is in every layer."""
    kinds = PATTERNS[pattern]

    seen: list[dict[str, Any]] = []

    @PROPERTY
    @given(griffin_configs())
    def check(config: dict[str, Any]) -> None:
        seen.append(config)
        ours = _assert_same_tensors(config if kinds is None else {**config, "block_types": kinds})
        if kinds == ["recurrent"]:
            assert {b.type.name for b in ours.blocks} == {"rglru", "griffin_mlp"}

    check()
    assert len(seen) >= 100
    assert {c["tie_word_embeddings"] for c in seen} == {True, False}


# --- FLOPs per token against FlopCounterMode (CPU) --------------------------------------------------


def _counted(fn: Any) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return int(counter.get_total_flops())


def _gemm(model: LanguageModel) -> int:
    return sum(b.flops_breakdown()["gemm"] for b in model.blocks)


XLSTM_TINY = {
    "model_type": "xlstm",
    "vocab_size": 50,
    "hidden_size": 128,
    "embedding_dim": 128,
    "num_hidden_layers": 2,
    "num_heads": 2,
    "qk_dim_factor": 0.5,
    "v_dim_factor": 1.0,
}


@pytest.mark.parametrize("tokens", [1, 5])
@pytest.mark.parametrize(("use_bias", "mode"), [(False, "single"), (True, "fused")])
def test_xlstm_flops_and_state_against_counter_and_cache(tokens: int, use_bias: bool, mode: str) -> None:
    config = {**XLSTM_TINY, "use_bias": use_bias, "weight_mode": mode}
    ours = model_from_config(config)
    # built on meta, then given random weights on the CPU: transformers 5.25's _init_weights of
    # weight_mode="fused" fails on a real device (a shape mismatch in its gate-bias init)
    hf = _hf_model(config).to_empty(device="cpu").eval()
    assert not list(hf.buffers())
    torch.manual_seed(0)
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.02)
    ids = torch.randint(0, 50, (1, tokens))
    out: list[Any] = []
    flops = _counted(lambda: out.append(hf(ids, use_cache=True)))
    # Fewer tokens than the smallest chunk (16): transformers runs the step kernel per token. Its
    # matrix products per head (dk = 64/2 = 32, dv = 128/2 = 64): the outer product k vᵀ and
    # qᵀ C (FlopCounterMode: 2·dk·dv each) and qᵀ n (2·dk). Two layers of two heads.
    recurrence = 2 * 2 * (2 * 32 * 64 + 2 * 32 * 64 + 2 * 32)
    head = 2 * 50 * 128
    assert flops == tokens * (_gemm(ours) + recurrence + head)
    # paramcalc's scan term covers those products and the elementwise work the counter misses
    assert sum(b.flops_breakdown()["scan"] for b in ours.blocks) > recurrence
    # the state: C, n, m of every layer as xLSTMCache holds them after the forward
    cache = out[0].cache
    held = sum(t.numel() for layer in cache.rnn_state.values() for t in layer)
    assert held == ours.state_elements(ctx=tokens)
    shapes = [tuple(t.shape) for t in cache.rnn_state[0]]
    assert shapes == [(1, 2, 32, 64), (1, 2, 32), (1, 2, 1)]


GRIFFIN_TINY = {
    "model_type": "recurrent_gemma",
    "vocab_size": 50,
    "hidden_size": 32,
    "lru_width": 48,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 40,
    "num_hidden_layers": 3,
    "conv1d_width": 4,
    "attention_window_size": 4,
    "tie_word_embeddings": True,
}


def _prefill(hf: Any, tokens: int, cache: Any) -> None:
    ids = torch.randint(0, 50, (1, tokens))
    hf(ids, position_ids=torch.arange(tokens)[None], use_cache=True, cache=cache)


@pytest.mark.parametrize("context", [2, 3, 9])
def test_griffin_decode_flops_and_state_against_counter_and_cache(context: int) -> None:
    ours = model_from_config(GRIFFIN_TINY)
    hf = _hf_model(GRIFFIN_TINY, device="cpu")
    cache = transformers.DynamicCache(config=hf.config)
    _prefill(hf, context, cache)
    # state after `context` tokens: each recurrent layer's conv inputs and RG-LRU state (held on
    # the module), the attention layer's keys and values (held by the cache, window − 1 at most)
    recurrent = [layer.temporal_block for layer in hf.model.layers if hasattr(layer.temporal_block, "rg_lru")]
    assert len(recurrent) == 2
    held = sum(b.conv1d_state.numel() + b.rg_lru.recurrent_states.numel() for b in recurrent)
    attention = cache.layers[2]
    assert attention.keys.shape == (1, 1, min(context, 3), 16)
    held += attention.keys.numel() + attention.values.numel()
    assert held == ours.state_elements(ctx=context)
    # one decoding step at that context
    step = torch.randint(0, 50, (1, 1))
    flops = _counted(lambda: hf(step, position_ids=torch.tensor([[context]]), use_cache=True, cache=cache))
    # The counter sees the linear maps, the RG-LRU's block-diagonal gates (baddbmm) and the head;
    # decoding runs the depthwise conv elementwise (not counted). Attention: QKᵀ and AV over
    # min(context + 1, window 4) keys, 2 heads of head_dim 16: 2·2·2·16 FLOPs per key.
    keys = min(context + 1, 4)
    assert flops == _gemm(ours) + 2 * 50 * 32 + 2 * 2 * 2 * 16 * keys
    assert ours.blocks[4].flops_breakdown(ctx=context)["extra"] >= 2 * 2 * 2 * 16 * keys


def test_hawk_prefill_flops_against_counter() -> None:
    """A prefill runs the conv as a convolution: the counter counts its w − 1 padded outputs too."""
    config = {**GRIFFIN_TINY, "block_types": ["recurrent"], "num_hidden_layers": 2}
    ours = model_from_config(config)
    hf = _hf_model(config, device="cpu")
    tokens = 6
    ids = torch.randint(0, 50, (1, tokens))
    flops = _counted(lambda: hf(ids, position_ids=torch.arange(tokens)[None], use_cache=False))
    conv = sum(b.flops_breakdown()["conv"] for b in ours.blocks)
    # per layer 2·lru·w per output; the padded conv has tokens + w − 1 outputs
    assert conv == 2 * (2 * 48 * 4)
    assert flops == tokens * (_gemm(ours) + 2 * 50 * 32) + 2 * (2 * 48 * 4) * (tokens + 3)


@pytest.mark.parametrize("tokens", [3, 6])
def test_griffin_prefill_attention_counts_masked_work(tokens: int) -> None:
    """A prefill's eager attention multiplies all tokens × tokens scores, masked or not (the
    counter's count); paramcalc counts the min(t + 1, window) keys token t reads."""
    ours = model_from_config(GRIFFIN_TINY)
    hf = _hf_model(GRIFFIN_TINY, device="cpu")
    cache = transformers.DynamicCache(config=hf.config)
    flops = _counted(lambda: _prefill(hf, tokens, cache))
    per_key = 2 * 2 * 2 * 16  # QKᵀ and AV, 2 heads of head_dim 16
    conv = 2 * (2 * 48 * 4) * (tokens + 3)  # two recurrent layers, tokens + w − 1 padded outputs
    assert flops == tokens * (_gemm(ours) + 2 * 50 * 32) + conv + per_key * tokens * tokens
    read = sum(min(t + 1, 4) for t in range(tokens))  # 1 + 2 + 3 (+ 4 + 4 + 4)
    attention = ours.blocks[4]
    assert (
        sum(attention.flops_breakdown(ctx=t)["extra"] for t in range(tokens))
        == tokens * 2 * 32 + per_key * read
    )
