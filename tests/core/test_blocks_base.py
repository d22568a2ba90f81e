"""The block registry's data model (paramcalc.core.blocks.base) on a toy block whose numbers are
worked out by hand here, and the config.json reader's refusals."""

from __future__ import annotations

import json
import os
import re

import pytest

from paramcalc.bridge.readers.hf_config import model_from_config, read_hf_config
from paramcalc.core.blocks import BlockTensor, BlockType, LanguageModel, StateTerm
from paramcalc.core.blocks.base import layer_blocks, norm_tensors, pad_to
from paramcalc.errors import ParamcalcError

TOY = BlockType(
    name="toy",
    title="toy gated block",
    sizes=("d_model", "expand", "width", "use_bias"),
    tensors=(
        BlockTensor("proj.weight", ("2·expand·d_model", "d_model"), "gemm"),
        BlockTensor("conv.weight", ("expand·d_model", "1", "width"), "conv"),
        BlockTensor("conv.bias", ("expand·d_model",), "vector", when="use_bias"),
        BlockTensor("out.weight", ("d_model", "expand·d_model"), "gemm"),
    ),
    equations=(("y = W_out (conv(x) ⊙ z)", ("proj.weight", "conv.weight", "out.weight")),),
    scan_flops="3·expand·d_model",
    state=(StateTerm("conv_state", ("expand·d_model", "width")), StateTerm("kv", ("min(ctx, 8)", "d_model"))),
    defaults={"use_bias": 1},
)


def test_bound_block_counts_by_hand() -> None:
    b = TOY.bind({"d_model": 10, "expand": 2, "width": 4}, "layers.0.")
    shapes = {t.name: t.shape for t in b.tensors()}
    assert shapes == {
        "layers.0.proj.weight": (40, 10),
        "layers.0.conv.weight": (20, 1, 4),
        "layers.0.conv.bias": (20,),
        "layers.0.out.weight": (10, 20),
    }
    assert b.params == 400 + 80 + 20 + 200
    # 2·(400 + 200) GEMM + 2·80 conv + 3·20 scan
    assert b.flops_per_token() == 1200 + 160 + 60
    assert b.flops_breakdown() == {"gemm": 1200, "conv": 160, "scan": 60, "extra": 0}
    assert b.state_elements(ctx=3) == {"conv_state": 80, "kv": 30}
    assert b.state_elements(ctx=100) == {"conv_state": 80, "kv": 80}
    formulas = {name: (sym, num, value) for name, sym, num, value in b.formulas()}
    assert formulas["layers.0.proj.weight"][2] == 400
    assert "d_model" in formulas["layers.0.proj.weight"][0]


def test_knob_removes_tensor() -> None:
    b = TOY.bind({"d_model": 10, "expand": 2, "width": 4, "use_bias": 0})
    assert [t.name for t in b.tensors()] == ["proj.weight", "conv.weight", "out.weight"]
    assert b.params == 680


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"d_model": 10, "expand": 2}, "needs the size width"),
        ({"d_model": 10, "expand": 2, "width": 4, "heads": 2}, "has no size heads"),
        ({"d_model": -1, "expand": 2, "width": 4}, "d_model must be an integer >= 0"),
        ({"d_model": True, "expand": 2, "width": 4}, "d_model must be an integer >= 0"),
    ],
)
def test_bad_sizes_are_one_line(sizes: dict[str, int], message: str) -> None:
    with pytest.raises(ParamcalcError, match=re.escape(message)):
        TOY.bind(sizes)


def test_bad_entries_refused_when_made() -> None:
    with pytest.raises(ParamcalcError, match=r"not allowed|rule"):
        BlockType("bad", "bad", ("a",), (BlockTensor("w", ("a - 1",)),))
    with pytest.raises(ParamcalcError, match="appears twice"):
        BlockType("bad", "bad", ("a",), (BlockTensor("w", ("a",)), BlockTensor("w", ("a",))))
    with pytest.raises(ParamcalcError, match="'when' names no size"):
        BlockType("bad", "bad", ("a",), (BlockTensor("w", ("a",), when="b"),))
    with pytest.raises(ParamcalcError, match="reserved"):
        BlockType("bad", "bad", ("ctx",), ())
    with pytest.raises(ParamcalcError, match="names no tensor"):
        BlockType("bad", "bad", ("a",), (BlockTensor("w", ("a",)),), equations=(("y = v x", ("v",)),))


def test_language_model_tied_and_untied() -> None:
    blocks = layer_blocks([[(TOY, {"d_model": 10, "expand": 2, "width": 4}, "mixer.")]], 3, "layers.{i}.")
    tied = LanguageModel(
        "toy", "toy", 10, 50, pad_to(50, 8), "emb.weight", tuple(blocks), norm_tensors(["norm_f.weight"], 10)
    )
    assert tied.vocab_padded == 56
    assert tied.params == 56 * 10 + 3 * 700 + 10
    assert tied.flops_per_token() == 3 * 1420 + 2 * 56 * 10
    untied = LanguageModel("toy", "toy", 10, 50, 50, "emb.weight", tuple(blocks), head="lm_head.weight")
    assert untied.params == 2 * 500 + 3 * 700
    assert untied.forward_flops(5) == 5 * untied.flops_per_token()
    assert untied.training_flops(5) == 15 * untied.flops_per_token()
    assert untied.state_bytes(ctx=4, dtype="bf16") == 3 * (80 + 40) * 2
    with pytest.raises(ParamcalcError, match="unknown dtype"):
        untied.state_bytes(dtype="int3")


def test_config_reader_refusals(tmp_path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ParamcalcError, match="not valid JSON"):
        read_hf_config(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ParamcalcError, match="JSON object"):
        read_hf_config(bad)
    bad.write_text(json.dumps({"hidden_size": 3}))
    with pytest.raises(ParamcalcError, match="no model_type"):
        read_hf_config(bad)
    with pytest.raises(ParamcalcError, match="not supported"):
        model_from_config({"model_type": "no_such_model"})
    bad.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ParamcalcError, match="nested too deeply"):
        read_hf_config(bad)
    with pytest.raises(ParamcalcError, match="no such file"):
        read_hf_config(tmp_path / "missing.json")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(ParamcalcError, match="FIFO"):
        read_hf_config(fifo)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("num_hidden_layers", 10**6, "num_hidden_layers must be at most 10,000"),
        ("hidden_size", 2**31, "hidden_size must be at most 2,147,483,647"),
        ("vocab_size", 10**40, "vocab_size must be at most 2,147,483,647"),
    ],
)
def test_config_sizes_are_bounded_like_every_size(tmp_path, key: str, value: int, message: str) -> None:
    """A config that would take minutes (a million layers) or describe no real tensor is one line,
    at once: the bounds every paramcalc size has (MAX_LAYERS, 2**31 - 1)."""
    from paramcalc.core.blocks.base import config_int
    from paramcalc.core.spec import MAX_LAYERS

    config = {"model_type": "mamba", "hidden_size": 8, "num_hidden_layers": 2, "vocab_size": 16, key: value}
    with pytest.raises(ParamcalcError, match=message):
        model_from_config(config)
    assert config_int({"n": MAX_LAYERS}, "n", maximum=MAX_LAYERS) == MAX_LAYERS
