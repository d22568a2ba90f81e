"""Architectures (paramcalc.arch), TOML files and `paramcalc report`.

Totals are written out by hand or taken from the same model built with torch.nn here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from torch import nn

import paramcalc as pc
from paramcalc import torch_bridge
from paramcalc.arch import (
    Architecture,
    BatchNorm1d,
    Conv1d,
    Embedding,
    LayerNorm,
    Linear,
    Recurrent,
    architecture_from_dict,
    count_architecture,
    load_architecture,
)
from paramcalc.check import check_architecture
from paramcalc.cli import cli
from tests.conftest import DATA, one_line_error

ARCHS = DATA / "architectures"
EXAMPLES = sorted(ARCHS.glob("*.toml"))


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --- the seed's MNIST-rows classifier -----------------------------------------------------------


def test_mnist_rows_total_by_hand_and_by_torch():
    arch = load_architecture(ARCHS / "mnist_rows_lstm.toml")
    counted = count_architecture(arch)
    lstm = 4 * (256 * 28 + 256 * 256 + 2 * 256) + 4 * (256 * 256 + 256 * 256 + 2 * 256)
    head = 256 * 10 + 10
    assert lstm == 819_200 and lstm + head == 821_770
    assert counted.total == 821_770
    assert {c.component: c.params for c in counted.components} == {"rnn": lstm, "lin": head}
    seed = nn.ModuleDict({"rnn": nn.LSTM(28, 256, num_layers=2, batch_first=True), "lin": nn.Linear(256, 10)})
    assert n_params(seed) == counted.total
    assert [r.name for r in counted.rows] == [n for n, _ in seed.named_parameters()]


def test_awd_lstm_three_stacks_and_tied_decoder():
    arch = load_architecture(ARCHS / "awd_lstm_lm.toml")
    v, e = 33278, 400
    emb = v * e
    rnn0 = 4 * (1150 * 400 + 1150 * 1150 + 2 * 1150)
    rnn1 = 4 * (1150 * 1150 + 1150 * 1150 + 2 * 1150)
    rnn2 = 4 * (400 * 1150 + 400 * 400 + 2 * 400)
    decoder_bias = v  # the decoder's weight is the embedding's: counted once
    counted = count_architecture(arch)
    assert counted.total == emb + rnn0 + rnn1 + rnn2 + decoder_bias
    assert [s.hidden_size for s in arch.specs.values()] == [1150, 1150, 400]
    assert [s.input_size for s in arch.specs.values()] == [400, 1150, 1150]
    (tied,) = counted.tied
    assert tied.name == "decoder.weight" and tied.tied_to == "encoder.weight" and tied.counted == 0
    # The same model in torch, tied the way weight-tied LMs do it:
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


def test_examples_exist():
    assert {p.stem for p in EXAMPLES} >= {"mnist_rows_lstm", "awd_lstm_lm"}


def test_other_layers_match_torch_modules():
    cases = [
        (LayerNorm("n", (6,)), nn.LayerNorm(6)),
        (LayerNorm("n", (2, 3), bias=False), nn.LayerNorm((2, 3), bias=False)),
        (LayerNorm("n", (6,), elementwise_affine=False), nn.LayerNorm(6, elementwise_affine=False)),
        (Conv1d("c", 8, 12, 3, groups=4), nn.Conv1d(8, 12, 3, groups=4)),
        (Conv1d("c", 8, 12, 3, bias=False), nn.Conv1d(8, 12, 3, bias=False)),
        (BatchNorm1d("b", 7), nn.BatchNorm1d(7)),
        (Embedding("e", 11, 5), nn.Embedding(11, 5)),
        (Linear("l", 5, 3, bias=False), nn.Linear(5, 3, bias=False)),
    ]
    for comp, module in cases:
        assert [(t.name, t.shape) for t in comp.tensors()] == [
            (n, tuple(p.shape)) for n, p in module.named_parameters()
        ], comp
        assert comp.params == n_params(module)


def test_conv1d_formula_by_hand():
    c = Conv1d("c", 8, 12, 3, groups=4)
    assert c.params == 12 * (8 // 4) * 3 + 12


def test_tie_first_appearance_counts_even_if_the_tying_component_comes_first():
    arch = Architecture(
        "x",
        (Linear("dec", 4, 10, tie_to="enc"), Embedding("enc", 10, 4)),
    )
    counted = count_architecture(arch)
    assert counted.total == 10 * 4 + 10
    assert counted.tied[0].name == "enc.weight" and counted.tied[0].tied_to == "dec.weight"


def test_to_frame():
    counted = count_architecture(load_architecture(ARCHS / "mnist_rows_lstm.toml"))
    df = counted.to_frame("component")
    assert list(df["component"]) == ["rnn", "lin"]
    assert int(df["params"].sum()) == 821_770
    assert list(counted.to_frame().columns)[:4] == ["component", "name", "shape", "numel"]


def test_arch_module_imports_no_torch():
    code = "import sys, paramcalc.arch as a; a.load_architecture(sys.argv[1]); print('torch' in sys.modules)"
    args = [sys.executable, "-c", code, str(ARCHS / "awd_lstm_lm.toml")]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_recurrent_component_needs_torch_convention():
    with pytest.raises(pc.ParamcalcError, match="torch convention"):
        Recurrent("r", pc.RecurrentSpec("lstm", 2, 3, convention="keras"))


# --- errors in files: each names the file, the component and the problem --------------------------


def write(tmp_path: Path, text: str, name: str = "m.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def comp(name: str, kind: str | None, **keys: object) -> str:
    """One [[component]] table in TOML."""
    lines = ["[[component]]", f"name = {json.dumps(name)}"]
    if kind is not None:
        lines.append(f"kind = {json.dumps(kind)}")
    lines += [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


LSTM = comp("rnn", "lstm", input_size=8, hidden_size=16)
EMB = comp("enc", "embedding", num_embeddings=10, embedding_dim=4)


@pytest.mark.parametrize(
    "text, component, problem",
    [
        (LSTM + "hidden = 3\n", "rnn", "unknown key hidden"),
        (comp("enc", "embedding", num_embeddings=10), "enc", "missing embedding_dim"),
        (comp("rnn", "lstm", input_size=8), "rnn", "missing hidden_size"),
        (comp("rnn", "gru", hidden_size=4), "rnn", "missing input_size"),
        (LSTM + comp("dec", "linear", out_features=3, tie="emb"), "dec", "no component 'emb'"),
        (
            LSTM + comp("head", "linear", in_features=15, out_features=3),
            "head",
            "expects 15 input features but 'rnn' (lstm) outputs 16",
        ),
        (LSTM + comp("n", "layernorm", normalized_shape=8), "n", "expects 8 input features"),
        (LSTM + comp("x", "transformer"), "x", "unknown kind 'transformer'"),
        (LSTM + comp("rnn", "lstm", input_size=16, hidden_size=4), "rnn", "the name is used twice"),
        (comp("rnn", "lstm", input_size=8, hidden_size=-4), "rnn", "hidden_size must be a positive integer"),
        (comp("rnn", "lstm", input_size=8, hidden_size=4, proj_size=5), "rnn", "proj_size has to be smaller"),
        (EMB + comp("dec", "linear", out_features=11, tie="enc"), "dec", "needs equal weight shapes"),
        (EMB + comp("dec", "linear", out_features=10, tie="dec"), "dec", "names the component itself"),
        (LSTM + comp("dec", "linear", out_features=3, tie="rnn"), "dec", "only embedding or linear"),
        (comp("a-b", "dropout"), "a-b", "Python identifier"),
        (comp("k", None), "k", "missing kind"),
        (comp("d", "dropout", p=1.5), "d", "p must be a probability"),
        (comp("r", "lstm", input_size=8, hidden_size=4, bidirectional="yes"), "r", "bidirectional must be"),
    ],
)
def test_file_errors_name_file_component_and_problem(tmp_path, text, component, problem):
    path = write(tmp_path, text)
    with pytest.raises(pc.ParamcalcError) as exc:
        load_architecture(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: "), msg
    assert f"component {component!r}" in msg and problem in msg, msg
    line = one_line_error(run("report", str(path)))
    assert str(path) in line and problem in line


@pytest.mark.parametrize(
    "text, problem",
    [
        ("name = 'x'\n[[component]\n", "invalid TOML"),
        ("name = 'x'\n", "no components"),
        ("nme = 'x'\n" + LSTM, "unknown top-level key nme"),
        ("[component]\nkind = 'lstm'\n", "array of tables"),
    ],
)
def test_file_level_errors(tmp_path, text, problem):
    path = write(tmp_path, text)
    line = one_line_error(run("report", str(path)))
    assert str(path) in line and problem in line


def test_missing_file_and_folder(tmp_path):
    line = one_line_error(run("report", str(tmp_path / "nope.toml")))
    assert "nope.toml: no such file" in line
    assert "is a folder" in one_line_error(run("report", str(tmp_path)))


def test_not_utf8(tmp_path):
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00garbage")
    assert "invalid TOML" in one_line_error(run("report", str(p)))


def test_input_size_inferred_from_previous(tmp_path):
    path = write(tmp_path, LSTM + '[[component]]\nname = "head"\nkind = "linear"\nout_features = 3\n')
    arch = load_architecture(path)
    assert arch.component("head").in_features == 16
    assert arch.name == "m"  # the file's stem when the file has no name


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_report_prints_components_tensors_and_total():
    r = run("report", str(ARCHS / "awd_lstm_lm.toml"))
    assert r.exit_code == 0, r.output
    assert "decoder.weight" in r.output and "tied to encoder.weight (counted once)" in r.output
    assert "V·E = 33278·400" in r.output
    total = 33278 * 400 + 7_139_200 + 10_589_200 + 2_483_200 + 33278
    assert f"total: {total:,} parameters (1 tied tensor(s) counted once)" in r.output


def test_cli_report_by_component():
    r = run("report", str(ARCHS / "mnist_rows_lstm.toml"), "--by", "component")
    assert r.exit_code == 0 and "LSTM(28, 256, num_layers=2)" in r.output and "819,200" in r.output


def test_cli_report_check_ok():
    r = run("report", str(ARCHS / "awd_lstm_lm.toml"), "--check")
    assert r.exit_code == 0, r.output
    assert "OK: all 15 tensors" in r.output
    assert "ok (tied to encoder.weight, counted once)" in r.output


def test_cli_report_check_cpu():
    r = run("report", str(ARCHS / "mnist_rows_lstm.toml"), "--check", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "on cpu" in r.output


def test_cli_report_check_json_is_one_document():
    r = run("report", str(ARCHS / "mnist_rows_lstm.toml"), "--check", "--format", "json")
    data = json.loads(r.output)
    assert data["total"] == 821_770 and data["check"]["ok"] is True
    assert data["check"]["torch_total"] == 821_770


def test_cli_report_check_untied_in_torch_exit_1(monkeypatch):
    real = torch_bridge.build_architecture

    def untied(arch, dev, dtype=None):
        m = real(arch, dev, dtype)
        m.decoder.weight = nn.Parameter(m.encoder.weight.detach().clone())
        return m

    monkeypatch.setattr(torch_bridge, "build_architecture", untied)
    r = run("report", str(ARCHS / "awd_lstm_lm.toml"), "--check")
    assert r.exit_code == 1, r.output
    assert "not tied in torch" in r.output and "MISMATCH" in r.output


def test_cli_report_bad_device():
    line = one_line_error(run("report", str(ARCHS / "mnist_rows_lstm.toml"), "--check", "--device", "tpu"))
    assert "unknown device 'tpu'" in line


def test_cli_report_help_has_examples():
    r = run("report", "--help")
    assert r.exit_code == 0 and "paramcalc report data/architectures/awd_lstm_lm.toml --check" in r.output


def test_architecture_from_dict_rejects_non_components():
    with pytest.raises(pc.ParamcalcError, match="no components"):
        architecture_from_dict({"component": []})
