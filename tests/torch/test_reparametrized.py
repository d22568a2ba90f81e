"""Re-parametrized, quantized and meta-saved layers, and 2-D front ends (issue 11, part 2 and 3).

Ground truth is torch's own: the tensors it stores and ``sum(p.numel())``.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import paramcalc as pc
from paramcalc.cli import cli
from tests.helpers import invoke


def test_weight_norm_parametrization_on_an_lstm_is_not_a_mismatch():
    m = nn.utils.parametrizations.weight_norm(nn.LSTM(8, 16, 2), "weight_hh_l0")
    stored = sum(p.numel() for p in m.parameters())
    a = pc.analyze(m)
    assert a.ok, str(a)
    assert (
        a.actual_total == stored == 4 * (16 * 8 + 16 * 16 + 32) + 4 * (16 * 16 * 2 + 32) + 64
    )  # + g (64, 1)
    rows = {t.name: t for t in a.tensors}
    v = rows["parametrizations.weight_hh_l0.original1"]
    assert v.status is pc.Status.OK and "matched to weight_hh_l0" in v.detail
    g = rows["parametrizations.weight_hh_l0.original0"]
    assert g.status is pc.Status.NO_FORMULA and "re-parametrization of weight_hh_l0" in g.detail


def test_legacy_weight_norm_and_spectral_and_orthogonal():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy = nn.utils.weight_norm(nn.LSTM(8, 16), "weight_hh_l0")
    a = pc.analyze(legacy)
    assert a.ok and a.actual_total == sum(p.numel() for p in legacy.parameters())
    spectral = nn.utils.parametrizations.spectral_norm(nn.Linear(6, 5))
    orth = nn.utils.parametrizations.orthogonal(nn.Linear(5, 5))
    for m in (spectral, orth):
        b = pc.analyze(m)
        assert b.ok and b.actual_total == sum(p.numel() for p in m.parameters())
        assert not [t for t in b.tensors if t.status is pc.Status.MISMATCH]


def test_dynamically_quantized_lstm_and_gru_report_their_packed_weights():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        float_model = nn.Sequential(nn.LSTM(8, 16, 2), nn.GRU(16, 12), nn.Linear(12, 4))
        q = torch.ao.quantization.quantize_dynamic(
            float_model, {nn.LSTM, nn.GRU, nn.Linear}, dtype=torch.qint8
        )
        a = pc.analyze(q)
    assert sum(p.numel() for p in q.parameters()) == 0  # torch sees no parameters
    want = sum(p.numel() for p in float_model.parameters())
    assert a.actual_total == want and a.ok
    assert set(a.specs) == {"0", "1"}
    assert a.specs["0"] == pc.RecurrentSpec("lstm", 8, 16, num_layers=2)
    assert {t.name: t.status for t in a.tensors}["0.weight_ih_l0"] is pc.Status.OK
    assert any("qint8" in n for n in a.notes())


def test_a_meta_saved_tied_checkpoint_says_the_ties_could_not_be_seen(tmp_path):
    with torch.device("meta"):
        lm = nn.ModuleDict(
            {"encoder": nn.Embedding(50, 8), "rnn": nn.LSTM(8, 8), "decoder": nn.Linear(8, 50)}
        )
    lm["decoder"].weight = lm["encoder"].weight  # tied: one tensor
    torch.save(lm.state_dict(), tmp_path / "meta.pt")
    a = pc.inspect(tmp_path / "meta.pt")
    assert a.ties_unknown
    text = str(a)
    assert "UNVERIFIED:" in text and "ties could not be seen" in text
    assert "decoder.weight" in text and "encoder.weight" in text
    # the real model has the tied weight once; the file lists it under both names
    assert a.actual_total == sum(p.numel() for p in lm.parameters()) + 50 * 8
    # not "ok" anywhere: the verdict, JSON's status and the exit code all say unverified
    assert not a.ok and not a.mismatch and a.status is pc.Status.UNVERIFIED
    r = invoke("inspect", tmp_path / "meta.pt", "--format", "json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 4 and doc["status"] == "unverified" and doc["ok"] is False
    assert any("ties could not be seen" in u for u in doc["unverified"])
    assert invoke("inspect", tmp_path / "meta.pt").exit_code == 4


def test_a_cpu_saved_tied_checkpoint_counts_the_tie_once(tmp_path):
    lm = nn.ModuleDict({"encoder": nn.Embedding(50, 8), "decoder": nn.Linear(8, 50)})
    lm["decoder"].weight = lm["encoder"].weight
    torch.save(lm.state_dict(), tmp_path / "tied.pt")
    a = pc.inspect(tmp_path / "tied.pt")
    assert not a.ties_unknown and a.actual_total == sum(p.numel() for p in lm.parameters())


def test_batchnorm2d_and_conv2d_from_a_checkpoint(tmp_path):
    front = nn.Sequential(nn.Conv2d(1, 32, (41, 11), stride=(2, 2), padding=(20, 5)), nn.BatchNorm2d(32))
    torch.save(front.state_dict(), tmp_path / "front.pt")
    a = pc.inspect(tmp_path / "front.pt")
    by_path = {m.path: m for m in a.modules}
    assert by_path["0"].type_name == "Conv2d" and by_path["0"].analytic == 32 * 1 * 41 * 11 + 32
    assert by_path["1"].type_name == "BatchNorm2d" and by_path["1"].analytic == 64
    assert a.ok and a.no_formula_total == 0
    live = pc.analyze(front)
    assert live.ok and live.no_formula_total == 0 and live.actual_total == 14_464 + 64


def test_cli_inspects_a_quantized_factory(tmp_path, monkeypatch):
    (tmp_path / "qmodels.py").write_text(
        "import warnings, torch\nfrom torch import nn\n"
        "def build():\n"
        "    with warnings.catch_warnings():\n"
        "        warnings.simplefilter('ignore')\n"
        "        return torch.ao.quantization.quantize_dynamic(nn.LSTM(4, 8), {nn.LSTM}, dtype=torch.qint8)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    res = CliRunner().invoke(cli, ["inspect", "qmodels:build"])
    assert res.exit_code == 0, res.output
    assert f"{4 * (8 * 4 + 8 * 8 + 16):,}" in res.output


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv2d_with_string_padding_is_counted(padding):
    m = nn.Conv2d(3, 8, 3, padding=padding)
    a = pc.analyze(m)
    assert a.ok and a.analytic_total == 8 * 3 * 3 * 3 + 8
