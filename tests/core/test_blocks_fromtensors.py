"""A checkpoint's language model read back from its tensors' names and shapes: every bundled
published configuration (whose tensors equal transformers' on meta, tests/torch/test_hf_data.py)
comes back with the same tensors, and so do widths that no float factor gives exactly."""

from __future__ import annotations

import pytest

from paramcalc.bridge.readers.hf_config import bundled_configs, model_from_config, read_hf_config
from paramcalc.core.blocks.fromtensors import model_from_tensors

NAMES = sorted(bundled_configs())


@pytest.mark.parametrize("name", NAMES)
def test_bundled_models_come_back_from_their_shapes(name: str) -> None:
    model = read_hf_config(bundled_configs()[name])
    shapes = {t.name: t.shape for t in model.tensors()}
    back = model_from_tensors(shapes, name)
    assert back is not None, name
    assert {t.name: t.shape for t in back.tensors()} == shapes
    assert back.params == model.params


@pytest.mark.parametrize(
    ("hidden", "qk", "v", "ffn"), [(100, 29, 57, 267), (96, 35, 96, 193), (64, 64, 32, 128)]
)
def test_xlstm_widths_that_no_factor_gives_exactly(hidden: int, qk: int, v: int, ffn: int) -> None:
    # int(100 · 0.29) is 28 in floating point: the widths must come from the shapes, not a factor
    heads = 1
    config = {
        "model_type": "xlstm",
        "hidden_size": hidden,
        "num_blocks": 2,
        "num_heads": heads,
        "vocab_size": 50,
        "qk_dim_factor": (qk + 0.5) / hidden,
        "v_dim_factor": (v + 0.5) / hidden,
        "ffn_proj_factor": (ffn + 0.5) / hidden,
        "ffn_round_up_to_multiple_of": 1,
    }
    model = model_from_config(config)
    shapes = {t.name: t.shape for t in model.tensors()}
    assert shapes["backbone.blocks.0.mlstm_layer.q.weight"] == (qk, hidden)
    assert shapes["backbone.blocks.0.mlstm_layer.v.weight"] == (v, hidden)
    assert shapes["backbone.blocks.0.ffn.proj_up.weight"] == (ffn, hidden)
    back = model_from_tensors(shapes)
    assert back is not None and {t.name: t.shape for t in back.tensors()} == shapes


def test_recurrentgemma_pattern_and_kv_heads_from_shapes() -> None:
    model = read_hf_config(bundled_configs()["recurrentgemma-2b"])
    back = model_from_tensors({t.name: t.shape for t in model.tensors()})
    assert back is not None and any("attention window is not stored" in n for n in back.notes)
