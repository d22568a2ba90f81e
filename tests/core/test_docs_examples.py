"""The documentation shows real output: every deterministic ``$ paramcalc ...`` console example in
README.md and docs/*.md that needs no torch is re-run here and compared with the text shown.

Golden text is used only for formatting: the numbers inside are checked by the other tests. The
examples that build torch modules are re-run by tests/torch/test_docs_examples_torch.py; timed
ones (``bench``, ``--bench``) differ from run to run and are not compared.
"""

from __future__ import annotations

import pytest

from tests.helpers import ROOT, console_examples, invoke

EXAMPLES = [e for e in console_examples() if not e.timed and not e.needs_torch]


def test_the_readme_has_examples():
    assert len(EXAMPLES) >= 10
    commands = {e.args[0] for e in EXAMPLES}
    assert {"count", "solve", "cost", "report", "compare", "sweep"} <= commands


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_output_is_real(example, tmp_path, monkeypatch):
    (tmp_path / "data").symlink_to(ROOT / "data")  # the examples name data/... relative to the checkout
    monkeypatch.chdir(tmp_path)
    result = invoke(*example.args)
    assert result.output.rstrip("\n") == example.expected
