"""The shipped published configs (data/hf/*.json): every tensor's name and shape against
transformers' model built on the meta device, and the total against the exact counts reported
for the checkpoints where data/hf/index.json records one."""

from __future__ import annotations

import json

import pytest

transformers = pytest.importorskip("transformers", reason="the [hf] extra builds the reference models")
import torch  # noqa: E402

from paramcalc.bridge.readers.hf_config import load_config, read_hf_config  # noqa: E402
from tests.helpers import ROOT  # noqa: E402

HF = ROOT / "paramcalc" / "data" / "hf"
INDEX = json.loads((HF / "index.json").read_text())
NAMES = sorted(k for k in INDEX if not k.startswith("_"))


def test_every_file_is_indexed() -> None:
    assert sorted(p.stem for p in HF.glob("*.json") if p.stem != "index") == NAMES
    assert (ROOT / "data" / "hf" / "mamba-130m.json").is_file()  # the top-level link


@pytest.mark.parametrize("name", NAMES)
def test_published_config_against_transformers(name: str) -> None:
    path = HF / f"{name}.json"
    cfg = {k: v for k, v in load_config(path).items() if k != "architectures"}
    model_type = cfg.pop("model_type")
    with torch.device("meta"):
        hf = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model(model_type, **cfg)
        )
    expected = {n: tuple(p.shape) for n, p in hf.named_parameters()}
    ours = read_hf_config(path)
    assert {t.name: t.shape for t in ours.tensors()} == expected
    assert ours.params == sum(p.numel() for p in hf.parameters())
    reported = INDEX[name].get("reported_count")
    if reported is not None:
        assert ours.params == reported
