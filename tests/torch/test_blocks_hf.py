"""The block registry's models against Hugging Face transformers built on the meta device: every
tensor's name and shape, for hand-picked configurations of each model type; inspect of a
config.json (library and CLI, --check, its refusals)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

transformers = pytest.importorskip("transformers", reason="the [hf] extra builds the reference models")
import torch  # noqa: E402

import paramcalc as pc  # noqa: E402
from paramcalc.bridge.readers.hf_config import model_from_config  # noqa: E402
from paramcalc.core.blocks import register_model_type  # noqa: E402
from paramcalc.core.blocks.mamba import read_mamba  # noqa: E402
from tests.helpers import invoke, one_line_error  # noqa: E402


def hf_named_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """transformers' own model of ``config`` on the meta device: named_parameters' shapes."""
    cfg = dict(config)
    model_type = cfg.pop("model_type")
    hf_config = transformers.AutoConfig.for_model(model_type, **cfg)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(hf_config)
    return {n: tuple(p.shape) for n, p in model.named_parameters()}


def ours(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {t.name: t.shape for t in model_from_config(config).tensors()}


CONFIGS = [
    {"model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 3, "vocab_size": 101},
    {
        "model_type": "mamba",
        "hidden_size": 48,
        "num_hidden_layers": 2,
        "vocab_size": 50,
        "use_bias": True,
        "use_conv_bias": False,
        "tie_word_embeddings": False,
        "time_step_rank": 5,
        "state_size": 7,
        "conv_kernel": 3,
        "expand": 3,
    },
    {
        "model_type": "falcon_mamba",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "vocab_size": 70,
        "expand": 16,
        "intermediate_size": 64,
        "tie_word_embeddings": False,
    },
    {
        "model_type": "mamba2",
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "vocab_size": 90,
        "num_heads": 8,
        "head_dim": 16,
        "n_groups": 2,
        "state_size": 16,
    },
    {
        "model_type": "mamba2",
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "vocab_size": 90,
        "num_heads": 4,
        "head_dim": 16,
        "n_groups": 1,
        "state_size": 8,
        "use_bias": True,
        "use_conv_bias": False,
        "tie_word_embeddings": True,
    },
    {"model_type": "rwkv", "hidden_size": 32, "num_hidden_layers": 3, "vocab_size": 77},
    {
        "model_type": "rwkv",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "vocab_size": 77,
        "attention_hidden_size": 48,
        "intermediate_size": 40,
        "tie_word_embeddings": True,
    },
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["model_type"])
def test_tensor_by_tensor_against_transformers(config: dict[str, Any]) -> None:
    assert ours(config) == hf_named_shapes(config)


def test_mamba_130m_against_transformers() -> None:
    cfg = {"model_type": "mamba", "hidden_size": 768, "num_hidden_layers": 24, "vocab_size": 50280}
    with torch.device("meta"):
        hf = transformers.MambaForCausalLM(
            transformers.MambaConfig(**{k: v for k, v in cfg.items() if k != "model_type"})
        )
    assert sum(p.numel() for p in hf.parameters()) == model_from_config(cfg).params == 129_135_360


def test_inspect_config_library_and_frame(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIGS[1]))
    report = pc.inspect(path)
    frame = report.to_frame()
    assert list(frame.columns[:4]) == ["tensor", "layers", "formula", "substituted"]
    assert int(frame["total"].sum()) == sum(hf_named_params(CONFIGS[1]))
    checked = pc.inspect(path, check=True)
    assert checked.ok and "status" in checked.to_frame().columns
    assert json.loads(checked.render("json"))  # machine format
    assert report.to_frame("tensor")["numel"].sum() == sum(hf_named_params(CONFIGS[1]))


def hf_named_params(config: Mapping[str, Any]) -> list[int]:
    return [int(torch.Size(s).numel()) for s in hf_named_shapes(config).values()]


def test_inspect_cli(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIGS[5]))
    r = invoke("inspect", str(path))
    assert r.exit_code == 0, r.output
    assert "rwkv.blocks.{i}.attention.key.weight" in r.stdout
    r = invoke("inspect", str(path), "--check", "--by", "tensor")
    assert r.exit_code == 0, r.output
    assert "disagree" not in r.stdout and " ok" in r.stdout
    r = invoke("inspect", str(path), "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert "not valid JSON" in one_line_error(invoke("inspect", str(bad)))
    bad.write_text(json.dumps({"model_type": "gpt_neox"}))
    assert "not supported" in one_line_error(invoke("inspect", str(bad)))
    assert "config.json" in one_line_error(invoke("inspect", str(path), "--by", "module"))


def test_check_mismatch_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIGS[0]))

    def wrong(config: Mapping[str, Any]) -> Any:  # drops the conv bias transformers keeps
        return read_mamba({**config, "use_conv_bias": False})

    register_model_type("mamba", wrong, replace_existing=True)
    try:
        r = invoke("inspect", str(path), "--check")
    finally:
        register_model_type("mamba", read_mamba, replace_existing=True)
    assert r.exit_code == 1, r.output
    assert "missing" in r.stdout or "extra" in r.stdout


def test_check_without_transformers_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIGS[0]))
    monkeypatch.setitem(sys.modules, "transformers", None)
    assert "pip install 'paramcalc[hf]'" in one_line_error(invoke("inspect", str(path), "--check"))


#: Tiny xLSTM and RecurrentGemma models for the safetensors round trip (the other families are
#: in CONFIGS).
SAFETENSORS_MORE = [
    {
        "model_type": "xlstm",
        "hidden_size": 64,
        "embedding_dim": 64,
        "num_blocks": 2,
        "num_heads": 2,
        "vocab_size": 50,
        "qk_dim_factor": 0.5,
        "v_dim_factor": 1.0,
        "ffn_proj_factor": 2.667,
        "ffn_round_up_to_multiple_of": 64,
    },
    {
        "model_type": "recurrent_gemma",
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "vocab_size": 64,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "lru_width": 32,
        "intermediate_size": 48,
        "attention_window_size": 8,
        "block_types": ["recurrent", "recurrent", "attention"],
    },
]


@pytest.mark.parametrize(
    "config",
    [CONFIGS[1], CONFIGS[3], CONFIGS[6], *SAFETENSORS_MORE],
    ids=["mamba", "mamba2", "rwkv", "xlstm", "recurrent_gemma"],
)
def test_inspect_safetensors_recognises_the_blocks(config: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("safetensors", reason="the [safetensors] extra writes the file")
    from safetensors.torch import save_file

    cfg = {k: v for k, v in config.items() if k != "model_type"}
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(config["model_type"], **cfg)
    )
    tensors = {n: p.detach().contiguous() for n, p in model.named_parameters()}
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    report = pc.inspect(path)
    assert isinstance(report, pc.ModelReport) and report.ok
    assert report.model.params == sum(t.numel() for t in tensors.values())
    r = invoke("inspect", str(path))
    assert r.exit_code == 0, r.output
    assert "tensors agree -> ok" in r.stdout
    # a tensor missing from the file is a disagreement
    ends = (".D", "time_first", "input_gate_bias", "igate_preact.bias")
    first = next(n for n in tensors if n.endswith(ends))
    del tensors[first]
    save_file(tensors, str(path))
    r = invoke("inspect", str(path), "--by", "tensor")
    assert r.exit_code == 1, r.output
    assert "missing" in r.stdout
