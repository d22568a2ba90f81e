"""Architectures, TOML files and `paramcalc report` (without --check): totals written out by hand.

The same models built with torch.nn, and `report --check`, are in tests/torch/test_architecture_torch.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import paramcalc as pc
from paramcalc.core.architecture import (
    Architecture,
    BatchNorm1d,
    Conv1d,
    Custom,
    Dropout,
    Embedding,
    Input,
    LayerNorm,
    Linear,
    Recurrent,
    architecture_from_dict,
    count_architecture,
    load_architecture,
    tensor_formula,
)
from tests.helpers import ARCHS, invoke, one_line_error

EXAMPLES = sorted(ARCHS.glob("*.toml"))


# --- the seed's MNIST-rows classifier -----------------------------------------------------------


def test_mnist_rows_total_by_hand():
    arch = load_architecture(ARCHS / "mnist_rows_lstm.toml")
    counted = count_architecture(arch)
    lstm = 4 * (256 * 28 + 256 * 256 + 2 * 256) + 4 * (256 * 256 + 256 * 256 + 2 * 256)
    head = 256 * 10 + 10
    assert lstm == 819_200 and lstm + head == 821_770
    assert counted.total == 821_770
    assert {c.component: c.params for c in counted.components} == {"rnn": lstm, "lin": head}
    assert [r.name for r in counted.rows] == [
        *(f"rnn.{k}_l{n}" for n in (0, 1) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
        "lin.weight",
        "lin.bias",
    ]


def test_awd_lstm_three_stacks_and_tied_decoder():
    arch = load_architecture(ARCHS / "awd_lstm_lm.toml")
    v, e = 33278, 400
    emb = v * e
    rnn0 = 4 * (1150 * 400 + 1150 * 1150 + 2 * 1150)
    rnn1 = 4 * (1150 * 1150 + 1150 * 1150 + 2 * 1150)
    rnn2 = 4 * (400 * 1150 + 400 * 400 + 2 * 400)
    decoder_bias = v  # the decoder's weight is the embedding's: counted once
    counted = count_architecture(arch)
    assert counted.total == emb + rnn0 + rnn1 + rnn2 + decoder_bias == 33_556_078
    assert [s.hidden_size for s in arch.specs.values()] == [1150, 1150, 400]
    assert [s.input_size for s in arch.specs.values()] == [400, 1150, 1150]
    (tied,) = counted.tied
    assert tied.name == "decoder.weight" and tied.tied_to == "encoder.weight" and tied.counted == 0
    assert len(counted.unique_rows) == len(counted.rows) - 1
    decoder = next(c for c in counted.components if c.component == "decoder")
    assert (decoder.params, decoder.all_params) == (v, v * e + v)


def test_examples_exist():
    assert {p.stem for p in EXAMPLES} >= {"mnist_rows_lstm", "awd_lstm_lm", "bigru_tagger", "lstmp_speech"}


def test_bigru_tagger_by_hand():
    counted = count_architecture(load_architecture(ARCHS / "bigru_tagger.toml"))
    emb = 20000 * 128
    gru = 2 * 3 * (256 * 128 + 256 * 256 + 2 * 256) + 2 * 3 * (256 * 512 + 256 * 256 + 2 * 256)
    norm = 2 * 512  # the bidirectional GRU outputs 2·256 = 512 features
    tagger = 512 * 17 + 17
    assert counted.total == emb + gru + norm + tagger


def test_component_tensors_by_hand():
    cases = [
        (LayerNorm("n", (6,)), [("weight", (6,)), ("bias", (6,))]),
        (LayerNorm("n", (2, 3), bias=False), [("weight", (2, 3))]),
        (LayerNorm("n", (6,), elementwise_affine=False), []),
        (Conv1d("c", 8, 12, 3, groups=4), [("weight", (12, 2, 3)), ("bias", (12,))]),
        (Conv1d("c", 8, 12, 3, bias=False), [("weight", (12, 8, 3))]),
        (BatchNorm1d("b", 7), [("weight", (7,)), ("bias", (7,))]),  # running stats are buffers
        (BatchNorm1d("b", 7, affine=False), []),
        (Embedding("e", 11, 5), [("weight", (11, 5))]),
        (Linear("l", 5, 3, bias=False), [("weight", (3, 5))]),
        (Dropout("d", 0.1), []),
    ]
    for comp, expected in cases:
        assert [(t.name, t.shape) for t in comp.tensors()] == expected, comp
        assert comp.params == sum(t.numel for t in comp.tensors())


def test_conv1d_formula_by_hand():
    c = Conv1d("c", 8, 12, 3, groups=4)
    assert c.params == 12 * (8 // 4) * 3 + 12
    assert c.formula() == "out·(in/g)·k + out = 12·2·3 + 12"


def test_recurrent_component_of_a_newer_cell():
    comp = Recurrent("m", pc.RecurrentSpec("mgu", 4, 8, num_layers=2))
    assert comp.params == 2 * (8 * 4 + 8 * 8 + 8) + 2 * (8 * 8 + 8 * 8 + 8)
    assert (
        comp.formula()
        == "[2(Dh·d + Dh·Dh + Dh) = 2(8·4 + 8·8 + 8)] + [2(Dh·Dh + Dh·Dh + Dh) = 2(8·8 + 8·8 + 8)]"
    )


def test_tie_first_appearance_counts_even_if_the_tying_component_comes_first():
    arch = Architecture(
        "x",
        (Linear("dec", 4, 10, tie_to="enc"), Embedding("enc", 10, 4)),
    )
    counted = count_architecture(arch)
    assert counted.total == 10 * 4 + 10
    assert counted.tied[0].name == "enc.weight" and counted.tied[0].tied_to == "dec.weight"


def test_custom_component():
    c = Custom(
        "g",
        "Gate(16)",
        (tensor_formula("scale", (16,), "n", "16"), tensor_formula("w", (4, 8), "4n·m", "4·1·8")),
    )
    assert c.params == 16 + 32 and c.describe() == "Gate(16)" and c.formula() == "16 + 4·1·8"
    with pytest.raises(pc.ParamcalcError, match="items must be TensorFormula"):
        Custom("g", "Gate", ("scale",))  # type: ignore[arg-type]


def test_views_and_frames():
    counted = count_architecture(load_architecture(ARCHS / "mnist_rows_lstm.toml"))
    assert counted.VIEWS == ("tensor", "component", "total")
    df = counted.to_frame("component")
    assert list(df["component"]) == ["rnn", "lin"]
    assert int(df["params"].sum()) == 821_770
    assert list(counted.to_frame().columns)[:4] == ["component", "name", "shape", "numel"]
    assert counted.table("total").records() == [
        {"architecture": "mnist-rows-lstm", "components": 2, "params": 821_770}
    ]


def test_recurrent_component_keeps_its_conventions_names():
    # inspect reads Keras and ONNX files into components of their own naming
    keras = Recurrent("r", pc.RecurrentSpec("lstm", 2, 3, convention="keras"))
    assert [t.name for t in keras.tensors()] == ["kernel", "recurrent_kernel", "bias"]
    assert keras.params == 4 * (3 * 2 + 3 * 3 + 3)


def test_layout_knobs_and_nonlinearity_in_toml():
    arch = architecture_from_dict(
        {
            "component": [
                {"name": "a", "kind": "rnn", "input_size": 4, "hidden_size": 8, "nonlinearity": "relu"},
                {"name": "b", "kind": "rnn_cell", "hidden_size": 8, "nonlinearity": "relu"},
                {"name": "c", "kind": "cifg", "hidden_size": 8, "peephole": False},
                {"name": "d", "kind": "lstm", "hidden_size": 8, "bias_vectors": 1, "proj_size": 3},
            ]
        }
    )
    assert [s.cell for s in arch.specs.values()] == ["rnn_relu", "rnn_relu_cell", "cifg", "lstm"]
    assert arch.specs["c"].peephole is False and arch.specs["d"].bias_vectors == 1
    assert arch.specs["d"].input_size == 8


def test_merged_bidirectional_stack_outputs_dh():
    arch = architecture_from_dict(
        {
            "component": [
                {
                    "name": "rnn",
                    "kind": "lstm",
                    "input_size": 4,
                    "hidden_size": 8,
                    "bidirectional": True,
                    "merge_mode": "sum",
                },
                {"name": "head", "kind": "linear", "out_features": 3},
            ]
        }
    )
    assert arch.component("head").in_features == 8


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
            "expects 15 input features but 'rnn' gives 16",
        ),
        (LSTM + comp("n", "layernorm", normalized_shape=8), "n", "expects 8 input features"),
        (LSTM + comp("x", "transformer"), "x", "unknown kind 'transformer'"),
        (LSTM + comp("rnn", "lstm", input_size=16, hidden_size=4), "rnn", "the name is used twice"),
        (comp("rnn", "lstm", input_size=8, hidden_size=-4), "rnn", "hidden_size must be a positive integer"),
        (comp("rnn", "lstm", input_size=8, hidden_size=4, proj_size=5), "rnn", "proj_size has to be smaller"),
        (
            comp("rnn", "lstm", input_size=8, hidden_size=4, nonlinearity="relu"),
            "rnn",
            "nonlinearity applies only",
        ),
        (
            comp("rnn", "rnn", input_size=8, hidden_size=4, nonlinearity="gelu"),
            "rnn",
            "nonlinearity must be one of",
        ),
        (
            comp("rnn", "gru", input_size=8, hidden_size=4, peephole=True),
            "rnn",
            "peephole connections exist only",
        ),
        (
            comp("rnn", "lstm", input_size=8, hidden_size=4, convention="keras"),
            "rnn",
            "unknown key convention",
        ),
        (EMB + comp("dec", "linear", out_features=11, tie="enc"), "dec", "needs equal weight shapes"),
        (EMB + comp("dec", "linear", out_features=10, tie="dec"), "dec", "names the component itself"),
        (LSTM + comp("dec", "linear", out_features=3, tie="rnn"), "dec", "only embedding or linear"),
        (comp("a-b", "dropout"), "a-b", "Python identifier"),
        (comp("k", None), "k", "missing kind"),
        (comp("d", "dropout", p=1.5), "d", "p must be a probability"),
        (comp("r", "lstm", input_size=8, hidden_size=4, bidirectional="yes"), "r", "bidirectional must be"),
        (
            comp("c", "conv1d", in_channels=6, out_channels=4, kernel_size=3, groups=4),
            "c",
            "divisible by groups",
        ),
    ],
)
def test_file_errors_name_file_component_and_problem(tmp_path, text, component, problem):
    path = write(tmp_path, text)
    with pytest.raises(pc.ParamcalcError) as exc:
        load_architecture(path)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: "), msg
    assert f"component {component!r}" in msg and problem in msg, msg
    line = one_line_error(invoke("report", path))
    assert str(path) in line and problem in line


@pytest.mark.parametrize(
    "text, problem",
    [
        ("name = 'x'\n[[component]\n", "invalid TOML"),
        ("name = 'x'\n", "no components"),
        ("nme = 'x'\n" + LSTM, "unknown top-level key nme"),
        ("[component]\nkind = 'lstm'\n", "array of tables"),
        ("a = " + "[" * 2000 + "]" * 2000 + "\n", "invalid TOML"),
    ],
)
def test_file_level_errors(tmp_path, text, problem):
    path = write(tmp_path, text)
    line = one_line_error(invoke("report", path))
    assert str(path) in line and problem in line


def test_missing_file_and_folder(tmp_path):
    line = one_line_error(invoke("report", tmp_path / "nope.toml"))
    assert "nope.toml: no such file" in line
    assert "is a folder" in one_line_error(invoke("report", tmp_path))


def test_not_utf8(tmp_path):
    p = tmp_path / "bin.toml"
    p.write_bytes(b"\xff\xfe\x00garbage")
    assert "not UTF-8 text, so not a TOML file" in one_line_error(invoke("report", p))


def test_too_large_file(tmp_path):
    p = tmp_path / "big.toml"
    p.write_text("# " + "x" * (1 << 20) + "\n")
    assert "larger than 1,048,576 bytes, so not a TOML file" in one_line_error(invoke("report", p))


def test_input_size_inferred_from_previous(tmp_path):
    path = write(tmp_path, LSTM + '[[component]]\nname = "head"\nkind = "linear"\nout_features = 3\n')
    arch = load_architecture(path)
    assert arch.component("head").in_features == 16
    assert arch.name == "m"  # the file's stem when the file has no name


def test_architecture_from_dict_rejects_non_components():
    with pytest.raises(pc.ParamcalcError, match="no components"):
        architecture_from_dict({"component": []})
    with pytest.raises(pc.ParamcalcError, match="needs an Architecture"):
        count_architecture("x")  # type: ignore[arg-type]


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_report_prints_components_tensors_and_total():
    r = invoke("report", ARCHS / "awd_lstm_lm.toml")
    assert r.exit_code == 0, r.output
    assert "decoder.weight" in r.stdout and "tied to encoder.weight (counted once)" in r.stdout
    assert "V·E = 33278·400" in r.stdout
    total = 33278 * 400 + 7_139_200 + 10_589_200 + 2_483_200 + 33278
    assert f"total: {total:,} parameters (1 tied tensor counted once)" in r.stdout


def test_cli_report_by_component():
    r = invoke("report", ARCHS / "mnist_rows_lstm.toml", "--by", "component")
    assert r.exit_code == 0 and "LSTM(28, 256, num_layers=2)" in r.stdout and "819,200" in r.stdout


def test_cli_report_json():
    r = invoke("report", ARCHS / "mnist_rows_lstm.toml", "--by", "total", "--format", "json")
    data = json.loads(r.stdout)
    assert data["total"] == 821_770 and data["rows"] == [
        {"architecture": "mnist-rows-lstm", "components": 2, "params": 821_770}
    ]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--device", "cpu"], "--device only applies with --check"),
        (["--no-torchinfo"], "only applies with --check"),
    ],
)
def test_cli_report_check_only_flags(args, needle):
    assert needle in one_line_error(invoke("report", ARCHS / "mnist_rows_lstm.toml", *args))


def test_cli_report_help_has_examples():
    r = invoke("report", "--help")
    assert r.exit_code == 0 and "paramcalc report awd_lstm_lm --check" in r.stdout


# --- hostile input (issue 22) -----------------------------------------------------------------


def test_two_inputs_of_one_name_are_refused(tmp_path):
    path = tmp_path / "twice.toml"
    path.write_text(
        '[[input]]\nname = "x"\nsize = 4\n[[input]]\nname = "x"\nsize = 9\n'
        '[[component]]\nname = "out"\nkind = "linear"\nfrom = "x"\nout_features = 2\n'
    )
    with pytest.raises(pc.ParamcalcError, match=r"input 'x': the name is used twice"):
        load_architecture(path)
    line = one_line_error(invoke("report", str(path)))
    assert "twice.toml" in line and "input 'x': the name is used twice" in line
    with pytest.raises(pc.ParamcalcError, match="input 'x': the name is used twice"):
        pc.Architecture("a", (Linear("out", 4, 2),), inputs=(Input("x", 4), Input("x", 9)))


@pytest.mark.parametrize("path", [123, None, b"model.toml", ["a.toml"]])
def test_load_architecture_needs_a_path(path):
    with pytest.raises(pc.ParamcalcError, match="load_architecture needs a file path"):
        pc.load_architecture(path)


def test_architecture_from_dict_needs_a_mapping():
    with pytest.raises(pc.ParamcalcError, match="an architecture is a mapping"):
        architecture_from_dict([{"component": []}])
