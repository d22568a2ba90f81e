"""The model-file readers against real files written by the real libraries.

Ground truth is independent of the readers: ``sum(p.numel())`` of the torch module, Keras'
``model.count_params()``, and hand arithmetic for hand-built ONNX graphs.
"""

from __future__ import annotations

import json
import os
import re
import resource
import struct
import sys
import tempfile
import threading
import types
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

os.environ["KERAS_BACKEND"] = "torch"  # before anything imports keras: no TensorFlow

from paramcalc.bridge.readers import (
    FoundLayer,
    StoredModel,
    StoredTensor,
    detect_format,
    read_model,
)
from paramcalc.core.params import count
from paramcalc.core.spec import RecurrentSpec
from paramcalc.errors import ParamcalcError

# Keras' torch backend warns about numpy 2's __array__(copy=) protocol: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def one_line(exc: pytest.ExceptionInfo[ParamcalcError]) -> str:
    """The error's message, asserted to be one non-empty line without a traceback."""
    msg = str(exc.value)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


def params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_total(sm: StoredModel, layer: FoundLayer) -> int:
    return sum(t.numel for t in sm.layer_tensors(layer))


# --- safetensors -----------------------------------------------------------------------------------


def write_safetensors_header(path: Path, header: dict[str, Any], data_bytes: int) -> None:
    """A safetensors file by hand: 8-byte length, JSON header, then a sparse data section."""
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
    os.truncate(path, 8 + len(raw) + data_bytes)


class LstmHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(28, 256, num_layers=2)
        self.fc = nn.Linear(256, 10)


def test_safetensors_lstm_and_linear(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch")
    model = LstmHead()
    path = tmp_path / "model.safetensors"
    st.save_file(model.state_dict(), str(path), metadata={"format": "pt"})
    sm = read_model(path)
    assert sm.format == "safetensors" and sm.convention == "torch" and sm.layers == ()
    assert {t.name: t.shape for t in sm.tensors} == {n: tuple(p.shape) for n, p in model.named_parameters()}
    assert {t.dtype for t in sm.tensors} == {"float32"}
    assert sm.total == params(model) == count(RecurrentSpec("lstm", 28, 256, num_layers=2)).total + 2570
    assert len({t.key for t in sm.tensors}) == len(sm.tensors)  # no ties
    assert any("format=pt" in n for n in sm.notes)


def test_safetensors_dtypes(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch")
    path = tmp_path / "mixed.safetensors"
    st.save_file(
        {
            "a": torch.zeros(3, 4, dtype=torch.bfloat16),
            "b": torch.zeros(5, dtype=torch.int8),
            "c": torch.zeros(2, dtype=torch.float16),
        },
        str(path),
    )
    sm = read_model(path)
    assert {t.name: (t.shape, t.dtype) for t in sm.tensors} == {
        "a": ((3, 4), "bfloat16"),
        "b": ((5,), "int8"),
        "c": ((2,), "float16"),
    }


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.rnn = nn.GRU(16, 16)
        self.out = nn.Linear(16, 50)
        self.out.weight = self.emb.weight  # tied


def test_safetensors_tied_weights(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch")
    model = TiedLM()
    path = tmp_path / "tied.safetensors"
    st.save_model(model, str(path))  # stores the shared tensor once, names the other in __metadata__
    sm = read_model(path)
    assert {t.name: t.shape for t in sm.tensors} == {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sm.tensor("out.weight").key == sm.tensor("emb.weight").key is not None
    assert sm.total == params(model) == 50 * 16 + count(RecurrentSpec("gru", 16, 16)).total + 50
    assert sum(t.numel for t in sm.tensors) == sm.total + 50 * 16
    assert any("save_model" in n for n in sm.notes)


def test_safetensors_aliased_offsets_refused_by_the_library(tmp_path: Path) -> None:
    """Two entries on one byte range: the safetensors library itself rejects the header."""
    pytest.importorskip("safetensors")
    path = tmp_path / "alias.safetensors"
    entry = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    write_safetensors_header(path, {"a": entry, "b": dict(entry)}, 16)
    with pytest.raises(ParamcalcError) as exc:
        read_model(path)
    assert "offset" in one_line(exc)


def _bytes_read() -> int | None:
    """Bytes this process has read through system calls so far (Linux ``/proc/self/io``)."""
    try:
        with open("/proc/self/io", encoding="ascii") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("rchar:"))
    except (OSError, StopIteration, ValueError):
        return None


def test_safetensors_huge_sparse_header_only(tmp_path: Path) -> None:
    """A 100 GB (sparse) file: inspected from its header alone (bytes read) in constant memory."""
    pytest.importorskip("safetensors")
    small = tmp_path / "small.safetensors"
    write_safetensors_header(small, {"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, 4)
    read_model(small)  # warm up the imports
    n = 25_000_000_000  # 100 GB of float32
    path = tmp_path / "huge.safetensors"
    header = {
        "__metadata__": {"format": "pt"},
        "embed.weight": {"dtype": "F32", "shape": [n // 1000, 1000], "data_offsets": [0, 4 * n]},
        "lstm.weight_ih_l0": {"dtype": "BF16", "shape": [1024, 256], "data_offsets": [4 * n, 4 * n + 2**19]},
    }
    write_safetensors_header(path, header, 4 * n + 2**19)
    assert path.stat().st_size > 100 * 10**9
    assert path.stat().st_blocks * 512 < 10**6  # really sparse: nothing was written
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    read_before = _bytes_read()
    sm = read_model(path)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    if read_before is not None:  # the header only: not a time, which depends on the machine's load
        assert _bytes_read() - read_before < 16 * 2**20
    assert grown_kib < 64 * 1024, grown_kib
    assert sm.tensor("embed.weight").shape == (n // 1000, 1000)
    assert sm.tensor("lstm.weight_ih_l0").dtype == "bfloat16"
    assert sm.total == n + 1024 * 256


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x01\x02", "truncated"),
        (struct.pack("<Q", 200) + b'{"a": 1}', "only"),  # header longer than the file
        (struct.pack("<Q", 2**40) + b"{}", "limit"),  # a header claiming a terabyte
        (struct.pack("<Q", 10) + b"{not json}", "JSON"),
        (struct.pack("<Q", 2) + b"[]", "not an object"),
        (struct.pack("<Q", 8) + b'{"a": 1}', "not a valid safetensors file"),
    ],
)
def test_safetensors_broken_headers(tmp_path: Path, content: bytes, needle: str) -> None:
    pytest.importorskip("safetensors")
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ParamcalcError) as exc:
        read_model(path)
    assert needle in one_line(exc)


def test_safetensors_truncated_real_file(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch")
    path = tmp_path / "cut.safetensors"
    st.save_file(nn.LSTM(8, 16).state_dict(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ParamcalcError) as exc:
        read_model(path)
    one_line(exc)


# --- ONNX --------------------------------------------------------------------------------------------


def export_onnx(module: Any, x: Any, path: Path) -> None:
    """The legacy TorchScript exporter (offline, fast); torch exports one ONNX node per layer."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module.eval(), (x,), str(path), dynamo=False)
        except TypeError:  # pragma: no cover - a torch without the legacy exporter
            pytest.skip("this torch has no legacy (dynamo=False) ONNX exporter")


TORCH_RNNS: dict[str, tuple[Callable[[], Any], str]] = {
    "rnn_tanh_bi_2layers": (lambda: nn.RNN(12, 16, num_layers=2, bidirectional=True), "rnn"),
    "rnn_relu": (lambda: nn.RNN(12, 16, nonlinearity="relu"), "rnn_relu"),
    "lstm_bi_2layers": (lambda: nn.LSTM(12, 16, num_layers=2, bidirectional=True), "lstm"),
    "gru_bi_2layers": (lambda: nn.GRU(12, 16, num_layers=2, bidirectional=True), "gru"),
    "lstm_no_bias": (lambda: nn.LSTM(12, 16, bias=False), "lstm"),
}


@pytest.mark.parametrize("case", list(TORCH_RNNS))
def test_onnx_export_of_torch_rnns(tmp_path: Path, case: str) -> None:
    pytest.importorskip("onnx")
    make, cell = TORCH_RNNS[case]
    module = make()
    path = tmp_path / f"{case}.onnx"
    export_onnx(module, torch.randn(5, 3, 12), path)
    sm = read_model(path)
    assert sm.format == "onnx" and sm.convention == "onnx"
    dirs = 2 if module.bidirectional else 1
    expected = [
        RecurrentSpec(
            cell,
            12 if k == 0 else dirs * 16,
            16,
            bidirectional=module.bidirectional,
            bias_vectors=2 if module.bias else 0,
        )
        for k in range(module.num_layers)
    ]
    assert [layer.spec for layer in sm.layers] == expected  # one node per layer
    assert sum(count(layer.spec).total for layer in sm.layers) == params(module)
    assert sum(layer_total(sm, layer) for layer in sm.layers) == params(module)
    assert sm.total == params(module)  # B is one [dirs, 2·G·H] tensor, W and R [dirs, G·H, ·]
    for layer in sm.layers:
        assert ("two bias vectors" in layer.note) == bool(module.bias)


class LstmClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(10, 20, batch_first=True)
        self.fc = nn.Linear(20, 4)

    def forward(self, x: Any) -> Any:
        return self.fc(self.lstm(x)[0][:, -1])


def test_onnx_initializers_include_non_recurrent_weights(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    model = LstmClassifier()
    path = tmp_path / "clf.onnx"
    export_onnx(model, torch.randn(2, 7, 10), path)
    sm = read_model(path)
    assert [layer.spec for layer in sm.layers] == [RecurrentSpec("lstm", 10, 20)]
    assert sm.total == params(model)  # the Linear's weight and bias are initializers too
    assert len(sm.tensors) == 5


def _onnx_model(op: str, inputs: list[str], inits: dict[str, tuple[int, ...]], d: int, **attrs: Any) -> Any:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node(op, ["X", *inputs], ["Y"], name=f"my_{op.lower()}", **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [5, 1, d])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", "D", "N", "H"])],
        [numpy_helper.from_array(np.zeros(s, dtype=np.float32), name=n) for n, s in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return model


def test_onnx_lstm_peepholes(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    d, h = 7, 5
    inits = {"W": (2, 4 * h, d), "R": (2, 4 * h, h), "B": (2, 8 * h), "P": (2, 3 * h)}
    model = _onnx_model(
        "LSTM", ["W", "R", "B", "", "", "", "P"], inits, d, hidden_size=h, direction="bidirectional"
    )
    path = tmp_path / "peep.onnx"
    onnx.save(model, str(path))
    sm = read_model(path)
    (layer,) = sm.layers
    assert layer.path == "my_lstm" and layer.tensors == ("W", "R", "B", "P")
    assert layer.spec == RecurrentSpec("lstm", d, h, bidirectional=True, bias_vectors=2, peephole=True)
    by_hand = 2 * (4 * h * d + 4 * h * h + 8 * h + 3 * h)
    assert count(layer.spec).total == sm.total == layer_total(sm, layer) == by_hand
    assert "peephole" in layer.note and "two bias vectors" in layer.note


def test_onnx_gru_reset_before_and_relu_rnn(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    d, h = 6, 4
    gru = _onnx_model("GRU", ["W", "R", "B"], {"W": (1, 3 * h, d), "R": (1, 3 * h, h), "B": (1, 6 * h)}, d)
    onnx.save(gru, str(tmp_path / "gru.onnx"))
    (layer,) = read_model(tmp_path / "gru.onnx").layers  # linear_before_reset defaults to 0
    assert layer.spec == RecurrentSpec("gru", d, h, reset_after=False, bias_vectors=2)
    assert count(layer.spec).total == 3 * h * d + 3 * h * h + 6 * h
    rnn = _onnx_model(
        "RNN",
        ["W", "R"],
        {"W": (1, h, d), "R": (1, h, h)},
        d,
        hidden_size=h,
        activations=["Relu"],
        direction="reverse",
    )
    onnx.save(rnn, str(tmp_path / "rnn.onnx"))
    (layer,) = read_model(tmp_path / "rnn.onnx").layers
    assert layer.spec == RecurrentSpec("rnn_relu", d, h, bias=False)
    assert count(layer.spec).total == h * d + h * h
    assert "reverse" in layer.note and "no biases" in layer.note


def test_onnx_external_data_is_never_opened(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    d, h = 6, 4
    inits = {"W": (1, 4 * h, d), "R": (1, 4 * h, h), "B": (1, 8 * h)}
    model = _onnx_model("LSTM", ["W", "R", "B"], inits, d, hidden_size=h)
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="ext.data", size_threshold=0)
    (tmp_path / "ext.data").unlink()  # the reader must not need it
    sm = read_model(path)
    assert sm.layers[0].spec == RecurrentSpec("lstm", d, h)
    assert {t.name: t.shape for t in sm.tensors} == inits
    assert all(isinstance(t.key, tuple) and t.key[:2] == ("onnx-external", "ext.data") for t in sm.tensors)
    assert len({t.key for t in sm.tensors}) == 3
    assert any("external" in n for n in sm.notes)


def test_onnx_tied_external_initializers(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def ext(name: str, offset: int) -> Any:
        t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4, 4])
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", "w.bin"), ("offset", str(offset)), ("length", "64")):
            t.external_data.add(key=k, value=v)
        return t

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["Y"])],
        "g",
        [],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [ext("A", 0), ext("B", 0), ext("C", 64)],
    )
    path = tmp_path / "tied.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    sm = read_model(path)
    assert sm.tensor("A").key == sm.tensor("B").key != sm.tensor("C").key
    assert sm.total == 32 and sm.layers == ()


def test_onnx_inconsistent_shapes_are_one_line(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    d, h = 6, 4
    inits = {"W": (1, 4 * h, d), "R": (1, 4 * h, h + 1), "B": (1, 8 * h)}
    model = _onnx_model("LSTM", ["W", "R", "B"], inits, d, hidden_size=h)
    path = tmp_path / "bad.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ParamcalcError) as exc:
        read_model(path)
    assert "my_lstm" in one_line(exc) and "R" in str(exc.value)


def test_onnx_garbage_and_truncated(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xfe this is not a protobuf \x00\x01" * 20)
    with pytest.raises(ParamcalcError) as exc:
        read_model(garbage)
    one_line(exc)
    real = tmp_path / "real.onnx"
    export_onnx(nn.GRU(32, 64), torch.randn(3, 1, 32), real)
    data = real.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    assert detect_format(cut) == "onnx"
    with pytest.raises(ParamcalcError) as exc:
        read_model(cut)
    assert "ONNX" in one_line(exc)


# --- Keras -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras() -> Any:
    pytest.importorskip("h5py")
    k = pytest.importorskip("keras")
    if k.backend.backend() != "torch":  # pragma: no cover
        pytest.skip("keras was imported with another backend before this module")
    return k


def ks(cell: str, d: int, h: int, **kw: Any) -> RecurrentSpec:
    return RecurrentSpec(cell, d, h, convention="keras", **kw)


#: name -> (layers builder, expected specs); input (T=3, d=5), then a Dense(2) head.
KERAS_CASES: dict[str, tuple[Callable[[Any], list[Any]], list[RecurrentSpec]]] = {
    "lstm": (lambda L: [L.LSTM(8)], [ks("lstm", 5, 8)]),
    "gru_reset_after": (lambda L: [L.GRU(6)], [ks("gru", 5, 6)]),
    "gru_reset_before": (lambda L: [L.GRU(6, reset_after=False)], [ks("gru", 5, 6, reset_after=False)]),
    "simple_rnn_relu": (lambda L: [L.SimpleRNN(4, activation="relu")], [ks("rnn_relu", 5, 4)]),
    "simple_rnn_no_bias": (lambda L: [L.SimpleRNN(4, use_bias=False)], [ks("rnn", 5, 4, bias=False)]),
    "bidirectional_concat": (
        lambda L: [L.Bidirectional(L.LSTM(7, return_sequences=True)), L.LSTM(3)],
        [ks("lstm", 5, 7, bidirectional=True), ks("lstm", 14, 3)],
    ),
    "bidirectional_sum": (
        lambda L: [L.Bidirectional(L.GRU(6, return_sequences=True), merge_mode="sum"), L.GRU(2)],
        [ks("gru", 5, 6, bidirectional=True, merge_mode="sum"), ks("gru", 6, 2)],
    ),
    "rnn_cell_and_custom_backward": (
        lambda L: [
            L.RNN(L.LSTMCell(4), return_sequences=True),
            L.Bidirectional(
                L.LSTM(3, return_sequences=True),
                backward_layer=L.LSTM(3, use_bias=False, go_backwards=True, return_sequences=True),
            ),
            L.GRU(2, use_bias=False),
        ],
        [ks("lstm", 5, 4), ks("lstm", 4, 3), ks("lstm", 4, 3, bias=False), ks("gru", 6, 2, bias=False)],
    ),
    "two_layer_stack": (
        lambda L: [L.LSTM(8, return_sequences=True), L.LSTM(4)],
        [ks("lstm", 5, 8), ks("lstm", 8, 4)],
    ),
}


# the legacy .h5 layout of every case runs with the slow tests; the fast subset reads .keras
@pytest.mark.parametrize("suffix", [".keras", pytest.param(".h5", marks=pytest.mark.slow)])
@pytest.mark.parametrize("case", list(KERAS_CASES))
def test_keras_models(keras: Any, tmp_path: Path, case: str, suffix: str) -> None:
    build, expected = KERAS_CASES[case]
    L = keras.layers
    model = keras.Sequential([keras.Input((3, 5)), *build(L), L.Dense(2)])
    path = tmp_path / f"{case}{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(path))
    sm = read_model(path)
    assert sm.format == "keras" and sm.convention == "keras"
    assert [layer.spec for layer in sm.layers] == expected
    names = [lay.name for lay in model.layers[:-1]]
    if case == "rnn_cell_and_custom_backward":  # one found layer per direction
        names[1:2] = [f"{names[1]}/forward_layer", f"{names[1]}/backward_layer"]
    assert [layer.path for layer in sm.layers] == names
    assert sm.total == model.count_params()
    dense = model.layers[-1].count_params()
    assert sum(count(s).total for s in expected) + dense == model.count_params()
    for layer in sm.layers:
        stored = sm.layer_tensors(layer)
        assert sorted(t.shape for t in stored) == sorted(r.shape for r in count(layer.spec).rows)
        assert "stored" not in layer.note  # no shape disagreement with the config
    if "sum" in case:
        assert "merge_mode='sum'" in sm.layers[0].note


def test_keras_nested_model_with_optimizer_state(keras: Any, tmp_path: Path) -> None:
    L = keras.layers
    inner = keras.Sequential([L.LSTM(8, return_sequences=True), L.GRU(4)], name="encoder")
    inp = keras.Input((3, 5))
    model = keras.Model(inp, L.Dense(2)(inner(inp)))
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    path = tmp_path / "nested.keras"
    model.save(str(path))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    old = tempfile.tempdir
    tempfile.tempdir = str(tmpdir)
    try:
        sm = read_model(path)
    finally:
        tempfile.tempdir = old
    assert list(tmpdir.iterdir()) == []  # nothing extracted
    assert [(layer.path, layer.spec) for layer in sm.layers] == [
        (f"encoder/{inner.layers[0].name}", ks("lstm", 5, 8)),
        (f"encoder/{inner.layers[1].name}", ks("gru", 8, 4)),
    ]
    assert sm.total == model.count_params()  # the optimizer's slots are not parameters
    assert any("optimizer" in n for n in sm.notes)


def test_keras_compressed_archive_and_weights_only_file(keras: Any, tmp_path: Path) -> None:
    L = keras.layers
    model = keras.Sequential([keras.Input((3, 5)), L.GRU(6, reset_after=False), L.Dense(2)])
    stored = tmp_path / "stored.keras"
    model.save(str(stored))
    deflated = tmp_path / "deflated.keras"
    with zipfile.ZipFile(stored) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    a, b = read_model(stored), read_model(deflated)
    assert a.tensors == b.tensors and a.layers == b.layers
    assert [layer.spec for layer in b.layers] == [ks("gru", 5, 6, reset_after=False)]
    assert b.total == model.count_params()
    weights = tmp_path / "only.weights.h5"
    model.save_weights(str(weights))
    sm = read_model(weights)
    assert sm.layers == () and sm.total == model.count_params()
    assert any("no model_config" in n for n in sm.unverified)  # nothing identified: not "ok"


def test_keras_weights_are_not_read(keras: Any, tmp_path: Path) -> None:
    L = keras.layers
    model = keras.Sequential([keras.Input((3, 64)), L.LSTM(256), L.Dense(2)])
    path = tmp_path / "big.keras"
    model.save(str(path))
    sm = read_model(path)
    assert sm.layers[0].spec == ks("lstm", 64, 256)
    (note,) = [n for n in sm.notes if n.startswith("read ")]
    read, total = (int(x.replace(",", "")) for x in re.findall(r"[\d,]+\d", note)[:2])
    assert 0 < read < total // 10 and total > 1_000_000  # HDF5 metadata only, not the weights


def test_hdf5_crash_or_hang_is_one_line(keras: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """libhdf5 can crash on a hostile file: it runs in a child process, and a crash is one line."""
    from paramcalc.bridge.readers import keras_reader

    L = keras.layers
    path = tmp_path / "m.keras"
    keras.Sequential([keras.Input((3, 5)), L.LSTM(4)]).save(str(path))
    monkeypatch.setattr(keras_reader, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(ParamcalcError) as exc:
        read_model(path)
    assert "crashed" in one_line(exc)
    monkeypatch.setattr(keras_reader, "_CHILD", "import time; time.sleep(30)")
    monkeypatch.setattr(keras_reader, "HDF5_TIMEOUT_S", 0.5)
    with pytest.raises(ParamcalcError) as exc:
        read_model(path)
    assert "took over" in one_line(exc)
    monkeypatch.setattr(keras_reader, "_CHILD", "raise SystemExit('boom')")
    with pytest.raises(ParamcalcError) as exc:
        read_model(path)
    assert "boom" in one_line(exc)


def _zip(path: Path, members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compress)


CONFIG = json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": []}}).encode()


@pytest.mark.parametrize("evil", ["../evil", "a/../../evil", "/etc/evil", "C:/evil"])
def test_keras_zip_path_traversal(tmp_path: Path, evil: str) -> None:
    path = tmp_path / "evil.keras"
    _zip(path, {"config.json": CONFIG, evil: b"x"})
    with pytest.raises(ParamcalcError) as exc:
        read_model(path)
    assert "unsafe path" in one_line(exc)


def test_keras_zip_bombs(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    bomb = tmp_path / "bomb.keras"
    _zip(bomb, {"config.json": b" " * 20_000_000 + CONFIG}, zipfile.ZIP_DEFLATED)
    with pytest.raises(ParamcalcError) as exc:
        read_model(bomb)
    assert "zip bomb" in one_line(exc)
    big = tmp_path / "big.keras"
    _zip(big, {"config.json": b" " * (17 * 2**20) + CONFIG})
    with pytest.raises(ParamcalcError) as exc:
        read_model(big)
    assert "limit" in one_line(exc)
    # a central directory that lies: a tiny member claiming 4 GB
    liar = tmp_path / "liar.keras"
    _zip(liar, {"config.json": CONFIG * 50}, zipfile.ZIP_DEFLATED)
    data = bytearray(liar.read_bytes())
    at = data.rindex(b"PK\x01\x02")
    data[at + 24 : at + 28] = struct.pack("<I", 0xFFFFFFF0)
    liar.write_bytes(bytes(data))
    with pytest.raises(ParamcalcError) as exc:
        read_model(liar)
    assert "zip bomb" in one_line(exc)


def test_keras_broken_files(keras: Any, tmp_path: Path) -> None:
    L = keras.layers
    model = keras.Sequential([keras.Input((3, 5)), L.LSTM(4)])
    good = tmp_path / "good.keras"
    model.save(str(good))
    cut = tmp_path / "cut.keras"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ParamcalcError) as exc:
        read_model(cut)
    assert "zip" in one_line(exc)
    h5 = tmp_path / "good.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(h5))
    cut_h5 = tmp_path / "cut.h5"
    cut_h5.write_bytes(h5.read_bytes()[:3000])
    with pytest.raises(ParamcalcError) as exc:
        read_model(cut_h5)
    one_line(exc)
    wrong = tmp_path / "wrong.keras"
    wrong.write_bytes(b"GIF89a not a keras file")
    with pytest.raises(ParamcalcError) as exc:
        read_model(wrong)
    assert "wrong magic" in one_line(exc)
    no_config = tmp_path / "noconfig.keras"
    _zip(no_config, {"model.weights.h5": b"x"})
    with pytest.raises(ParamcalcError) as exc:
        read_model(no_config)
    assert "config.json" in one_line(exc)
    deep = tmp_path / "deep.keras"
    _zip(deep, {"config.json": b"[" * 200_000})
    with pytest.raises(ParamcalcError) as exc:
        read_model(deep)
    one_line(exc)
    bad_json = tmp_path / "badjson.keras"
    _zip(bad_json, {"config.json": b"{oops", "metadata.json": b"{}"})
    with pytest.raises(ParamcalcError) as exc:
        read_model(bad_json)
    assert "JSON" in one_line(exc)


# --- files that are not files, dispatch, hooks, missing extras ------------------------------------------


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    errors: list[str] = []

    def run() -> None:
        try:
            read_model(fifo)
        except ParamcalcError as e:
            errors.append(str(e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(5)
    if t.is_alive():  # unblock the reader before failing
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert len(errors) == 1 and "FIFO" in errors[0]


@pytest.mark.parametrize("target", ["/dev/zero", "dir"])
def test_devices_and_directories_are_refused(tmp_path: Path, target: str) -> None:
    path = tmp_path if target == "dir" else Path(target)
    if not path.exists():  # pragma: no cover
        pytest.skip(f"{target} does not exist here")
    with pytest.raises(ParamcalcError) as exc:
        read_model(path)
    assert ("device" in one_line(exc)) or ("directory" in str(exc.value))


def test_missing_and_empty_and_unknown(tmp_path: Path) -> None:
    with pytest.raises(ParamcalcError) as exc:
        read_model(tmp_path / "nope.onnx")
    assert "no such file" in one_line(exc)
    empty = tmp_path / "empty.safetensors"
    empty.touch()
    with pytest.raises(ParamcalcError) as exc:
        read_model(empty)
    assert "empty" in one_line(exc)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ParamcalcError) as exc:
        read_model(text)
    assert "unrecognised format" in one_line(exc)


def test_content_wins_over_suffix(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch")
    path = tmp_path / "pytorch_model.bin"
    st.save_file(nn.GRU(3, 4).state_dict(), str(path))
    assert detect_format(path) == "safetensors"
    assert read_model(path).total == params(nn.GRU(3, 4))


def test_pytorch_checkpoints_go_to_the_pickle_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.ckpt"
    torch.save(nn.LSTM(3, 4).state_dict(), str(path))  # a zip archive holding data.pkl
    assert detect_format(path) == "pytorch"
    name = "paramcalc.bridge.readers.pickle_reader"
    monkeypatch.setitem(sys.modules, name, None)  # the module is not there (yet)
    with pytest.raises(ParamcalcError) as exc:
        read_model(path)
    assert "pickle_reader" in one_line(exc)
    fake = types.ModuleType(name)
    answer = StoredModel(f"checkpoint {path}", "pytorch", (StoredTensor("w", (2,), "float32"),), (), "torch")
    calls: list[Path] = []

    def read_pickle(p: Path) -> StoredModel:
        calls.append(p)
        return answer

    fake.read_pickle = read_pickle  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, name, fake)
    assert read_model(path) is answer and calls == [path]
    raw = tmp_path / "legacy.pt"
    raw.write_bytes(b"\x80\x02" + b"rest of a pickle")
    assert detect_format(raw) == "pytorch"


@pytest.mark.parametrize(
    ("module", "suffix", "message"),
    [
        (
            "safetensors",
            ".safetensors",
            "reading .safetensors files needs safetensors: pip install 'paramcalc[safetensors]'",
        ),
        ("onnx", ".onnx", "reading .onnx files needs onnx: pip install 'paramcalc[onnx]'"),
        ("h5py", ".keras", "reading Keras .keras/.h5 files needs h5py: pip install 'paramcalc[keras]'"),
    ],
)
def test_missing_extra_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, suffix: str, message: str
) -> None:
    path = tmp_path / f"m{suffix}"
    if suffix == ".safetensors":
        write_safetensors_header(path, {"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, 4)
    elif suffix == ".onnx":
        path.write_bytes(b"\x08\x07\x12\x04test")
    else:
        _zip(path, {"config.json": CONFIG})
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ParamcalcError) as exc:
        read_model(path)
    assert one_line(exc) == message


def test_stored_model_total_counts_tied_keys_once() -> None:
    a = StoredTensor("a", (3, 4), "float32", key=("x", 0, 48))
    b = StoredTensor("b", (3, 4), "float32", key=("x", 0, 48))
    c = StoredTensor("c", (5,), "float32")
    d = StoredTensor("d", (5,), "float32")
    sm = StoredModel("test", "safetensors", (a, b, c, d), (), "torch")
    assert sm.total == 12 + 5 + 5
    with pytest.raises(ParamcalcError):
        sm.tensor("missing")


# --- the example files in data/models (scripts/make_example_models.py) -------------------------
# LSTM(28, 64, 2) + Linear(64, 10), by hand: 4(64·28 + 64·64 + 2·64) + 4(64·64 + 64·64 + 2·64)
# + 64·10 + 10 = 24,064 + 33,280 + 650; Keras' LSTMs have one bias per block:
# 4(64·28 + 64·64 + 64) + 4(64·64 + 64·64 + 64) = 23,808 + 33,024, and the Dense head 650.
EXAMPLE_FILES = {
    "pt": (57_994, [(28, 64, 2, 2)]),
    "safetensors": (57_994, [(28, 64, 2, 2)]),
    "onnx": (57_994, [(28, 64, 1, 2), (64, 64, 1, 2)]),
    "keras": (57_482, [(28, 64, 1, 1), (64, 64, 1, 1)]),
}


@pytest.mark.parametrize("ext", list(EXAMPLE_FILES))
def test_the_shipped_example_files(ext: str) -> None:
    import paramcalc as pc

    total, layers = EXAMPLE_FILES[ext]  # (d, Dh, layers, bias vectors per gate block) per LSTM
    pytest.importorskip({"safetensors": "safetensors", "onnx": "onnx", "keras": "h5py"}.get(ext, "torch"))
    path = Path(__file__).resolve().parents[2] / "data" / "models" / f"rows_lstm.{ext}"
    result = pc.inspect(str(path))
    assert result.ok and result.actual_total == total
    specs = list(result.specs.values())
    got = [(s.input_size, s.hidden_size, s.num_layers, s.bias_vectors) for s in specs]
    assert all(s.cell == "lstm" for s in specs) and got == layers
