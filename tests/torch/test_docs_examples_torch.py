"""The documentation's console examples that build torch modules (check, report --check, inspect,
cost --flop-check), re-run and compared with the text shown; see tests/core/test_docs_examples.py.

The files the README's inspect examples read are made here: ``lm_models.py`` is the README's own
code block, ``lm.pt`` its model's state dict nested under ``state_dict``, ``whole_model.pt`` a
pickled ``nn.ModuleDict`` (refused).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers import ROOT, console_examples, invoke

EXAMPLES = [e for e in console_examples() if e.needs_torch and not e.timed]


def lm_models_source() -> str:
    text = (ROOT / "docs" / "inspect.md").read_text(encoding="utf-8")
    start = text.index("Given this file, `lm_models.py`:")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def make_workspace(folder: Path, example_args: list[str]) -> None:
    (folder / "data").symlink_to(ROOT / "data")
    (folder / "lm_models.py").write_text(lm_models_source())
    if "lm.pt" in example_args:
        sys.path.insert(0, str(folder))
        try:
            import lm_models

            torch.save({"state_dict": lm_models.build_lm().state_dict()}, folder / "lm.pt")
        finally:
            sys.path.remove(str(folder))
            sys.modules.pop("lm_models", None)
    if "whole_model.pt" in example_args:
        torch.save(
            nn.ModuleDict({"encoder": nn.Embedding(10, 4), "rnn": nn.LSTM(4, 8)}), folder / "whole_model.pt"
        )


def params():
    out = []
    for e in EXAMPLES:
        marks = []
        if "lm.pt" in e.args:
            marks.append(pytest.mark.slow)  # a 24-million-parameter state dict written to disk
        if any(a.startswith("cuda") for a in e.args) and torch.cuda.is_available():
            marks.append(pytest.mark.skip(reason="shows the error of a machine without CUDA"))
        out.append(pytest.param(e, marks=marks, id=e.id))
    return out


def test_the_readme_has_torch_examples():
    assert {e.args[0] for e in EXAMPLES} >= {"check", "report", "inspect", "cost"}


@pytest.mark.parametrize("example", params())
def test_example_output_is_real(example, tmp_path, monkeypatch):
    make_workspace(tmp_path, example.args)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        result = invoke(*example.args)
    finally:
        sys.modules.pop("lm_models", None)
    assert result.output.rstrip("\n") == example.expected
