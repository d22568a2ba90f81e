"""Property test: random small configurations of every model type the block registry reads
(mamba, falcon_mamba, mamba2, rwkv), with the bias, conv-bias, tying and vocabulary-padding
knobs; every tensor's name and shape equals transformers' model built on the meta device."""

from __future__ import annotations

from typing import Any

import pytest

transformers = pytest.importorskip("transformers", reason="the [hf] extra builds the reference models")
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from paramcalc.bridge.readers.hf_config import model_from_config  # noqa: E402

EXAMPLES = 100


def hf_shapes(config: dict[str, Any], vocab: int) -> dict[str, tuple[int, ...]]:
    cfg = {k: v for k, v in config.items() if k not in ("model_type", "pad_vocab_size_multiple")}
    cfg["vocab_size"] = vocab  # transformers ignores pad_vocab_size_multiple: give it the stored size
    hf_config = transformers.AutoConfig.for_model(config["model_type"], **cfg)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf_config)
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def assert_same(config: dict[str, Any]) -> None:
    multiple = config.get("pad_vocab_size_multiple", 1)
    stored = -(-config["vocab_size"] // multiple) * multiple  # rounded up to the multiple, by hand
    ours = {t.name: t.shape for t in model_from_config(config).tensors()}
    assert ours == hf_shapes(config, stored)


knobs = {
    "num_hidden_layers": st.integers(1, 3),
    "vocab_size": st.integers(5, 300),
    "tie_word_embeddings": st.booleans(),
}


@st.composite
def mamba_configs(draw: st.DrawFn) -> dict[str, Any]:
    hidden = draw(st.integers(4, 64))
    cfg: dict[str, Any] = {
        "model_type": draw(st.sampled_from(["mamba", "falcon_mamba"])),
        "hidden_size": hidden,
        "state_size": draw(st.integers(1, 16)),
        "expand": draw(st.integers(1, 3)),
        "conv_kernel": draw(st.integers(1, 5)),
        "use_bias": draw(st.booleans()),
        "use_conv_bias": draw(st.booleans()),
        "time_step_rank": draw(st.one_of(st.just("auto"), st.integers(1, 12))),
        **{k: draw(s) for k, s in knobs.items()},
    }
    if draw(st.booleans()):
        cfg["intermediate_size"] = draw(st.integers(2, 96))
    if draw(st.booleans()):
        cfg["pad_vocab_size_multiple"] = draw(st.sampled_from([8, 16, 64]))
    return cfg


@st.composite
def mamba2_configs(draw: st.DrawFn) -> dict[str, Any]:
    heads = draw(st.integers(1, 8))
    head_dim = draw(st.integers(1, 8))
    expand = draw(st.sampled_from([1, 2]))
    inner = heads * head_dim
    hidden = inner // expand if inner % expand == 0 else inner
    expand = inner // hidden
    groups = draw(st.sampled_from([g for g in range(1, 5) if inner % g == 0]))
    return {
        "model_type": "mamba2",
        "hidden_size": hidden,
        "expand": expand,
        "num_heads": heads,
        "head_dim": head_dim,
        "n_groups": groups,
        "state_size": draw(st.integers(1, 16)),
        "conv_kernel": draw(st.integers(1, 5)),
        "use_bias": draw(st.booleans()),
        "use_conv_bias": draw(st.booleans()),
        **{k: draw(s) for k, s in knobs.items()},
    }


@st.composite
def rwkv_configs(draw: st.DrawFn) -> dict[str, Any]:
    hidden = draw(st.integers(2, 48))
    cfg: dict[str, Any] = {
        "model_type": "rwkv",
        "hidden_size": hidden,
        **{k: draw(s) for k, s in knobs.items()},
    }
    if draw(st.booleans()):
        cfg["attention_hidden_size"] = draw(st.integers(1, 64))
    if draw(st.booleans()):
        cfg["intermediate_size"] = draw(st.integers(1, 128))
    return cfg


@settings(max_examples=EXAMPLES)
@given(mamba_configs())
def test_mamba_family_matches_transformers(config: dict[str, Any]) -> None:
    assert_same(config)


@settings(max_examples=EXAMPLES)
@given(mamba2_configs())
def test_mamba2_matches_transformers(config: dict[str, Any]) -> None:
    assert_same(config)


@settings(max_examples=EXAMPLES)
@given(rwkv_configs())
def test_rwkv_matches_transformers(config: dict[str, Any]) -> None:
    assert_same(config)
