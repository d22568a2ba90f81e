"""Architectures against the same models built with torch.nn here, and `paramcalc report --check`."""

from __future__ import annotations

import json

import pytest
from torch import nn

import paramcalc as pc
import paramcalc.bridge.build as build
from paramcalc.checks.tensorcheck import check_architecture
from paramcalc.core.architecture import (
    Architecture,
    BatchNorm1d,
    Conv1d,
    Embedding,
    LayerNorm,
    Linear,
    Recurrent,
    count_architecture,
    load_architecture,
)
from tests.helpers import ARCHS, invoke, one_line_error

EXAMPLES = sorted(ARCHS.glob("*.toml"))


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_mnist_rows_against_the_seed_model():
    counted = count_architecture(load_architecture(ARCHS / "mnist_rows_lstm.toml"))
    seed = nn.ModuleDict({"rnn": nn.LSTM(28, 256, num_layers=2, batch_first=True), "lin": nn.Linear(256, 10)})
    assert n_params(seed) == counted.total == 821_770
    assert [r.name for r in counted.rows] == [n for n, _ in seed.named_parameters()]


def test_awd_lstm_against_torch_with_a_tied_decoder():
    counted = count_architecture(load_architecture(ARCHS / "awd_lstm_lm.toml"))
    v, e = 33278, 400
    m = nn.ModuleDict(
        {
            "encoder": nn.Embedding(v, e, device="meta"),
            "rnn0": nn.LSTM(400, 1150, device="meta"),
            "rnn1": nn.LSTM(1150, 1150, device="meta"),
            "rnn2": nn.LSTM(1150, 400, device="meta"),
            "decoder": nn.Linear(400, v, device="meta"),
        }
    )
    m["decoder"].weight = m["encoder"].weight
    assert n_params(m) == counted.total
    assert [r.name for r in counted.unique_rows] == [n for n, _ in m.named_parameters()]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_checks_against_torch(path):
    arch = load_architecture(path)
    result = check_architecture(arch)
    assert result.ok, result.problems()
    assert result.torch_total == count_architecture(arch).total
    assert result.status is pc.Status.OK


def test_pc_check_takes_an_architecture():
    arch = load_architecture(ARCHS / "awd_lstm_lm.toml")
    result = pc.check(arch, device="meta")
    assert result.ok and result.spec is None and result.requested is arch
    tied = next(t for t in result.tensors if t.name == "decoder.weight")
    assert tied.detail == "tied to encoder.weight, counted once"
    # torchinfo counts a tied weight once per holder
    assert result.torchinfo.total == result.torchinfo.expected == 33_556_078 + 33278 * 400


def test_other_layers_match_torch_modules():
    cases = [
        (LayerNorm("n", (6,)), nn.LayerNorm(6)),
        (LayerNorm("n", (2, 3), bias=False), nn.LayerNorm((2, 3), bias=False)),
        (LayerNorm("n", (6,), elementwise_affine=False), nn.LayerNorm(6, elementwise_affine=False)),
        (Conv1d("c", 8, 12, 3, groups=4), nn.Conv1d(8, 12, 3, groups=4)),
        (Conv1d("c", 8, 12, 3, bias=False), nn.Conv1d(8, 12, 3, bias=False)),
        (BatchNorm1d("b", 7), nn.BatchNorm1d(7)),
        (BatchNorm1d("b", 7, affine=False), nn.BatchNorm1d(7, affine=False)),
        (Embedding("e", 11, 5), nn.Embedding(11, 5)),
        (Linear("l", 5, 3, bias=False), nn.Linear(5, 3, bias=False)),
        (Recurrent("r", pc.RecurrentSpec("gru", 5, 3, num_layers=2)), nn.GRU(5, 3, 2)),
    ]
    for comp, module in cases:
        assert [(t.name, t.shape) for t in comp.tensors()] == [
            (n, tuple(p.shape)) for n, p in module.named_parameters()
        ], comp
        assert comp.params == n_params(module)


def test_built_architecture_is_for_counting_only():
    arch = Architecture("x", (Embedding("enc", 10, 4), Linear("dec", 4, 10, tie_to="enc")))
    m = build.build_architecture(arch, "cpu")
    assert m.dec.weight is m.enc.weight
    with pytest.raises(NotImplementedError, match="for counting only"):
        m(1)


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_report_check_ok():
    r = invoke("report", ARCHS / "awd_lstm_lm.toml", "--check")
    assert r.exit_code == 0, r.output
    assert "OK: all 15 tensors" in r.stdout
    assert "tied to encoder.weight, counted once" in " ".join(r.stdout.split())  # a wrapped cell


def test_cli_report_check_cpu():
    r = invoke("report", ARCHS / "mnist_rows_lstm.toml", "--check", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "check: architecture 'mnist-rows-lstm' on cpu" in r.stdout


def test_cli_report_check_json_keeps_stdout_one_document():
    r = invoke("report", ARCHS / "mnist_rows_lstm.toml", "--check", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["total"] == 821_770 and len(data["rows"]) == 10
    assert "OK: all 10 tensors (name, order, shape, numel) and the totals agree" in r.stderr.splitlines()


def test_cli_report_check_untied_in_torch_exit_1(monkeypatch):
    real = build.build_architecture

    def untied(arch, dev, dtype=None):
        m = real(arch, dev, dtype)
        m.decoder.weight = nn.Parameter(m.encoder.weight.detach().clone())
        return m

    monkeypatch.setattr(build, "build_architecture", untied)
    r = invoke("report", ARCHS / "awd_lstm_lm.toml", "--check")
    assert r.exit_code == 1, r.output
    assert "not tied in torch" in r.stdout and "MISMATCH" in r.stdout


def test_cli_report_bad_device():
    line = one_line_error(invoke("report", ARCHS / "mnist_rows_lstm.toml", "--check", "--device", "tpu"))
    assert "unknown device 'tpu'" in line


@pytest.mark.parametrize("name", ["type", "training", "forward", "parameters"])
def test_a_component_named_like_a_module_attribute_is_a_one_line_error(tmp_path, name):
    # torch's Module.add_module refuses a child named after an attribute (KeyError)
    with pytest.raises(KeyError):
        nn.Module().add_module(name, nn.Linear(4, 3))
    path = tmp_path / "names.toml"
    path.write_text(
        f'[[input]]\nname = "x"\nsize = 4\n'
        f'[[component]]\nname = "{name}"\nkind = "linear"\nout_features = 3\n'
    )
    assert invoke("report", path).exit_code == 0  # counting needs no torch module
    line = one_line_error(invoke("report", path, "--check"))
    assert f"component {name!r} (linear)" in line and "rename the component" in line
