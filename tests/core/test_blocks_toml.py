"""Registry blocks in the TOML architecture language: a language model written as components
(embedding, a stack of blocks, the final norm, a tied head) counts what its config.json does."""

from __future__ import annotations

from pathlib import Path

import pytest

from paramcalc.bridge.readers.hf_config import read_hf_config
from paramcalc.core.architecture import BlockStack, count_architecture, load_architecture
from paramcalc.errors import ParamcalcError
from tests.helpers import ROOT, invoke, one_line_error

MAMBA_130M = """
name = "mamba-130m"

[[component]]
name = "embeddings"
kind = "embedding"
num_embeddings = 50280
embedding_dim = 768

[[component]]
name = "layers"
kind = "mamba"
num_layers = 24
d_inner = 1536
d_state = 16
d_conv = 4
dt_rank = 48
{extra}
[[component]]
name = "norm_f"
kind = "layernorm"
normalized_shape = 768
bias = false

[[component]]
name = "lm_head"
kind = "linear"
out_features = 50280
bias = false
tie = "embeddings"
"""


def write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "mamba.toml"
    path.write_text(MAMBA_130M.format(extra=extra))
    return path


def test_mamba_130m_written_as_components(tmp_path: Path) -> None:
    counted = count_architecture(load_architecture(write(tmp_path)))
    # issue 18, from the published configuration: 24 x 3,771,648 + 38,615,040 + 768
    assert 24 * 3_771_648 + 38_615_040 + 768 == 129_135_360
    assert counted.total == 129_135_360
    assert {c.component: c.params for c in counted.components}["layers"] == 24 * 3_771_648
    # the same tensors as the config.json reader names them, under transformers' "backbone."
    ours = {f"backbone.{r.name}" for r in counted.unique_rows} - {"backbone.embeddings.weight"}
    config = read_hf_config(ROOT / "data" / "hf" / "mamba-130m.json")
    theirs = {t.name for t in config.tensors()} - {"backbone.embeddings.weight"}
    assert ours == theirs


def test_d_model_comes_from_the_source(tmp_path: Path) -> None:
    (stack,) = [c for c in load_architecture(write(tmp_path)).components if isinstance(c, BlockStack)]
    assert dict(stack.sizes)["d_model"] == 768 and stack.num_layers == 24


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("dt_rank = 48", "dt_rank = 48\nheads = 3", "unknown key heads"),
        ("dt_rank = 48", "dt_rank = 48\nd_model = -1", "d_model"),
        ("num_layers = 24", "num_layers = 0", "num_layers"),
        ("num_layers = 24", "num_layers = 1000000", "num_layers must be at most 10,000"),
    ],
)
def test_bad_block_keys_are_one_line(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(MAMBA_130M.format(extra="").replace(old, new))
    with pytest.raises(ParamcalcError, match=message):
        load_architecture(path)
    assert message in one_line_error(invoke("report", str(path)))
