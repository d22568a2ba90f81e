"""The Mamba, Mamba-2 and RWKV-4 entries and their config.json readers, against numbers worked
out by hand here (the published Mamba-130m and RWKV-4 169M totals among them)."""

from __future__ import annotations

import re

import pytest

from paramcalc.bridge.readers.hf_config import model_from_config
from paramcalc.core.blocks import get_block, model_types
from paramcalc.errors import ParamcalcError

MAMBA_130M = {
    "model_type": "mamba",
    "hidden_size": 768,
    "num_hidden_layers": 24,
    "state_size": 16,
    "expand": 2,
    "conv_kernel": 4,
    "vocab_size": 50280,
}


def test_registered() -> None:
    assert {"mamba", "falcon_mamba", "mamba2", "rwkv"} <= set(model_types())
    assert get_block("mamba").form == "scan"
    assert get_block("Mamba2").name == "mamba2"


def test_mamba_130m_by_hand() -> None:
    m = model_from_config(MAMBA_130M)
    # d_inner 1536, dt_rank ceil(768/16) = 48, x_proj rows 48 + 2·16 = 80
    per_layer = (
        768  # norm
        + 1536 * 16  # A_log
        + 1536  # D
        + 1536 * 4
        + 1536  # conv1d weight, bias
        + 3072 * 768  # in_proj
        + 80 * 1536  # x_proj
        + 1536 * 48
        + 1536  # dt_proj weight, bias
        + 768 * 1536  # out_proj
    )
    assert per_layer == 3_771_648
    assert m.blocks[0].params == per_layer
    assert m.tensors()[0].numel == 50280 * 768 == 38_615_040
    assert m.params == 24 * per_layer + 38_615_040 + 768 == 129_135_360
    assert m.tied and m.tensors()[-1].name == "backbone.norm_f.weight"
    names = [t.name for t in m.blocks[3].tensors()]
    assert "backbone.layers.3.mixer.x_proj.weight" in names
    assert "backbone.layers.3.mixer.in_proj.bias" not in names
    state = m.blocks[0].state_elements()
    assert state == {"conv_state": 1536 * 4, "ssm_state": 1536 * 16}
    assert m.state_bytes(dtype="float32") == 24 * (1536 * 4 + 1536 * 16) * 4


def test_mamba_knobs_untied_and_padding() -> None:
    cfg = {
        **MAMBA_130M,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "vocab_size": 100,
        "use_bias": True,
        "use_conv_bias": False,
        "tie_word_embeddings": False,
        "pad_vocab_size_multiple": 16,
        "time_step_rank": 8,
    }
    m = model_from_config(cfg)
    assert m.vocab_padded == 112 and m.head == "lm_head.weight"
    names = {t.name.removeprefix("backbone.layers.0."): t.shape for t in m.blocks[0].tensors()}
    assert names["mixer.in_proj.bias"] == (256,)
    assert names["mixer.out_proj.bias"] == (64,)
    assert "mixer.conv1d.bias" not in names
    assert names["mixer.x_proj.weight"] == (8 + 32, 128)
    assert any("padded to 112" in n for n in m.notes)


def test_falcon_mamba_intermediate_size_wins() -> None:
    # the published Falcon-Mamba-7B config says expand 16 and intermediate_size 8192;
    # transformers (and so the checkpoint) uses intermediate_size.
    cfg = {
        "model_type": "falcon_mamba",
        "hidden_size": 4096,
        "num_hidden_layers": 64,
        "expand": 16,
        "intermediate_size": 8192,
        "state_size": 16,
        "time_step_rank": 256,
        "vocab_size": 65024,
        "tie_word_embeddings": False,
    }
    m = model_from_config(cfg)
    per_layer = (
        4096
        + 8192 * 16
        + 8192
        + 8192 * 4
        + 8192
        + 16384 * 4096
        + (256 + 32) * 8192
        + 8192 * 256
        + 8192
        + 4096 * 8192
    )
    assert m.params == 64 * per_layer + 2 * 65024 * 4096 + 4096 == 7_272_665_088


def test_mamba2_by_hand() -> None:
    cfg = {
        "model_type": "mamba2",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_heads": 8,
        "head_dim": 16,
        "n_groups": 2,
        "state_size": 32,
        "vocab_size": 100,
    }
    m = model_from_config(cfg)
    # d_inner 128; conv channels 128 + 2·2·32 = 256; in_proj rows 2·128 + 2·2·32 + 8 = 392
    per_layer = 64 + 3 * 8 + 256 * 4 + 256 + 392 * 64 + 128 + 64 * 128
    assert m.blocks[0].params == per_layer
    assert m.params == 2 * per_layer + 2 * 100 * 64 + 64  # untied by default
    assert m.blocks[0].state_elements() == {"conv_state": 256 * 4, "ssm_state": 8 * 16 * 32}
    with pytest.raises(ParamcalcError, match=re.escape("must equal num_heads · head_dim")):
        model_from_config({**cfg, "head_dim": 8})


def test_rwkv_169m_by_hand() -> None:
    cfg = {"model_type": "rwkv", "hidden_size": 768, "num_hidden_layers": 12, "vocab_size": 50277}
    m = model_from_config(cfg)
    d, f = 768, 3072
    per_block = 4 * d + 2 * d + 3 * d + 4 * d * d + 2 * d + f * d + d * d + d * f
    assert m.blocks[1].params == per_block
    assert m.blocks[0].params == per_block + 2 * d  # pre_ln
    assert m.params == 12 * per_block + 2 * d + 2 * 50277 * d + 2 * d == 169_342_464
    assert m.blocks[0].tensors()[0].name == "rwkv.blocks.0.pre_ln.weight"
    assert m.head == "head.weight"
    assert sum(m.blocks[0].state_elements().values()) == 5 * d


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"model_type": "mamba", "num_hidden_layers": 2, "vocab_size": 10}, "missing hidden_size"),
        (
            {
                "model_type": "mamba",
                "hidden_size": 8,
                "num_hidden_layers": 2,
                "vocab_size": 10,
                "expand": "x",
            },
            "expand must be a positive number",
        ),
        (
            {
                "model_type": "mamba",
                "hidden_size": 8,
                "num_hidden_layers": 2,
                "vocab_size": 10,
                "time_step_rank": "big",
            },
            "time_step_rank must be 'auto'",
        ),
        (
            {"model_type": "rwkv", "hidden_size": 8, "num_hidden_layers": 0, "vocab_size": 10},
            "num_hidden_layers must be an integer >= 1",
        ),
        (
            {
                "model_type": "mamba",
                "hidden_size": 8,
                "num_hidden_layers": 2,
                "vocab_size": 10,
                "use_bias": 1,
            },
            "use_bias must be true or false",
        ),
    ],
)
def test_bad_configs_one_line(cfg: dict[str, object], message: str) -> None:
    with pytest.raises(ParamcalcError, match=re.escape(message)):
        model_from_config(cfg)


def test_explain_of_an_unknown_name_lists_cells_and_blocks() -> None:
    from tests.helpers import invoke, one_line_error

    line = one_line_error(invoke("explain", "nosuchblock"))
    assert "unknown cell 'nosuchblock'" in line and "lstm" in line and "or a block:" in line
    assert "mamba" in line and "rglru" in line


def test_the_library_inspects_a_bundled_config_by_name() -> None:
    import paramcalc as pc

    # issue 18: Mamba-130m's published configuration gives 129,135,360
    assert pc.inspect("mamba-130m").model.params == 129_135_360
    with pytest.raises(ParamcalcError, match="no such file"):
        pc.inspect("no-such-model")
