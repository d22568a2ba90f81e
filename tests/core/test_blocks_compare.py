"""compare_models, the bundled published configs, explain of a block and inspect of a
config.json through the CLI (analytic paths: no torch), against numbers worked out by hand."""

from __future__ import annotations

import json
import re

import pytest

import paramcalc as pc
from paramcalc.bridge.readers.hf_config import bundled_configs, find_config
from paramcalc.errors import ParamcalcError
from tests.helpers import invoke, one_line_error


def test_bundled_configs_listed_and_found() -> None:
    names = bundled_configs()
    assert {"mamba-130m", "falcon-mamba-7b", "mamba-codestral-7b", "rwkv-4-169m", "rwkv-4-14b"} <= set(names)
    assert "index" not in names
    assert find_config("mamba-130m") == names["mamba-130m"]
    with pytest.raises(ParamcalcError, match="no bundled config of that name"):
        find_config("mamba-9000m")


def test_compare_models_by_hand() -> None:
    result = pc.compare_models(["mamba-130m", "rwkv-4-169m"], contexts=(2048, 32768), dtype="bf16")
    rows = {(r[0], r[3]): r for r in result.table().rows}
    mamba = rows[("mamba-130m", 2048)]
    assert mamba[2] == 129_135_360
    # 24 layers x (conv 1536·4 + ssm 1536·16) x 2 bytes
    assert mamba[5] == 24 * (1536 * 4 + 1536 * 16) * 2 == 1_474_560
    # attention of the same width and depth: 2·24·768·2048 elements x 2 bytes
    assert mamba[6] == 2 * 24 * 768 * 2048 * 2
    assert rows[("mamba-130m", 32768)][6] == 2 * 24 * 768 * 32768 * 2
    rwkv = rows[("rwkv-4-169m", 32768)]
    assert rwkv[5] == 12 * 5 * 768 * 2  # five vectors of 768 per layer
    assert rwkv[6] == 2 * 12 * 768 * 32768 * 2
    assert rwkv[7] == pytest.approx(rwkv[6] / rwkv[5])
    # one generated token: 2 FLOPs per GEMM weight + the head (tied: still a GEMM), + the rules
    m = pc.compare_models(["mamba-130m"]).models[0]
    gemm = 2 * (3072 * 768 + 80 * 1536 + 1536 * 48 + 768 * 1536)
    conv = 2 * 1536 * 4
    scan = 7 * 1536 * 16 + 8 * 1536
    assert m.flops_per_token() == 24 * (gemm + conv + scan + 4 * 768) + 2 * 50280 * 768
    model_rows = result.table("model").rows
    assert model_rows[0][6] == 3 * model_rows[0][5]  # training = 3x forward


def test_compare_models_refusals() -> None:
    with pytest.raises(ParamcalcError, match="contexts"):
        pc.compare_models(["mamba-130m"], contexts=(0,))
    with pytest.raises(ParamcalcError, match="unknown dtype"):
        pc.compare_models(["mamba-130m"], dtype="int3")
    with pytest.raises(ParamcalcError, match="at least one"):
        pc.compare_models([])


def test_compare_models_frame() -> None:
    pytest.importorskip("pandas")
    frame = pc.compare_models(["mamba-130m", "mamba2-130m"], contexts=(1024,)).to_frame()
    assert list(frame["model"]) == ["mamba-130m", "mamba2-130m"]
    assert "attn KV" in frame.columns


def test_explain_block() -> None:
    r = invoke("explain", "mamba")
    assert r.exit_code == 0, r.output
    assert "h_t = Ā h_{t-1}" in r.stdout
    assert re.search(r"mixer\.x_proj\.weight\s+\(dt_rank \+ 2·d_state, d_inner\)\s+gemm", r.stdout)
    data = json.loads(invoke("explain", "rwkv", "-f", "json").stdout)
    assert any(row["tensor"] == "attention.time_decay" for row in data["rows"])
    assert "-d/--input-size" in one_line_error(invoke("explain", "lstm", "-H", "8"))
    assert pc.explain_block("mamba2").table().rows[0][0] == "norm.weight"


def test_inspect_cli_analytic(tmp_path) -> None:
    r = invoke("inspect", "mamba-130m")
    assert r.exit_code == 0, r.output
    assert "total 129,135,360 parameters" in r.stdout
    r = invoke("inspect", "mamba-130m", "rwkv-4-169m", "--context", "2048", "--context", "32768", "-f", "csv")
    assert r.exit_code == 0, r.output
    assert len(r.stdout.strip().splitlines()) == 1 + 4
    r = invoke("inspect", "rwkv-4-169m", "--context", "100", "--by", "model")
    assert r.exit_code == 0 and "169,342,464" in r.stdout
    assert "no bundled config" in one_line_error(invoke("inspect", "mamba-130m", "nope-1b"))
    assert "--check" in one_line_error(invoke("inspect", "mamba-130m", "rwkv-4-169m", "--check"))
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"model_type": "mamba", "hidden_size": 8}))
    assert "missing num_hidden_layers" in one_line_error(invoke("inspect", str(bad)))
