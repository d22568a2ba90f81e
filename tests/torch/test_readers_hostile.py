"""Hostile input for the readers (issue 22): every case builds its file in ``tmp_path``.

No code from the working folder runs, a FIFO never blocks, impossible shapes and oversized
configurations are one line (exit 2 through the CLI), wrong argument types are
:class:`~paramcalc.errors.ParamcalcError`, and a refusal names the way that works.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

os.environ["KERAS_BACKEND"] = "torch"  # before anything imports keras: no TensorFlow

import paramcalc as pc
from paramcalc.bridge.readers import read_model
from paramcalc.errors import ParamcalcError
from tests.helpers import invoke, one_line_error

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def one_line(exc: pytest.ExceptionInfo[ParamcalcError]) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg
    return msg


@pytest.fixture(scope="module")
def keras() -> Any:
    pytest.importorskip("h5py")
    k = pytest.importorskip("keras")
    if k.backend.backend() != "torch":  # pragma: no cover
        pytest.skip("keras was imported with another backend before this module")
    return k


# --- no code from the working folder ----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_the_keras_reader_imports_nothing_from_the_working_folder(
    keras: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    L = keras.layers
    model = keras.Sequential([keras.Input((3, 5)), L.LSTM(4)])
    path = tmp_path / f"m{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(path))
    work = tmp_path / "work"
    work.mkdir()
    marker = tmp_path / "PWNED"
    for module in ("json", "h5py", "numpy", "sitecustomize", "usercustomize"):
        (work / f"{module}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(work)
    monkeypatch.setenv("PYTHONPATH", str(work))  # the isolated child ignores it too
    sm = read_model(path)
    assert not marker.exists()
    assert [layer.spec.hidden_size for layer in sm.layers] == [4]


# --- regular files only -----------------------------------------------------------------------------


def _readers() -> dict[str, Callable[[Path], Any]]:
    from paramcalc.bridge.readers.keras_reader import read_keras
    from paramcalc.bridge.readers.onnx_reader import read_onnx
    from paramcalc.bridge.readers.pickle_reader import read_pickle
    from paramcalc.bridge.readers.safetensors_reader import read_safetensors

    return {
        "safetensors": read_safetensors,
        "onnx": read_onnx,
        "keras": read_keras,
        "pickle": read_pickle,
        "read_model": read_model,
        "inspect": pc.inspect,
    }


@pytest.mark.parametrize("reader", list(_readers()))
@pytest.mark.parametrize("link", [False, True])
def test_every_reader_refuses_a_fifo_without_blocking(tmp_path: Path, reader: str, link: bool) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("safetensors")
    pytest.importorskip("h5py")
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    target = fifo
    if link:
        target = tmp_path / "model.onnx"
        target.symlink_to(fifo)
    errors: list[str] = []

    def run() -> None:
        try:
            _readers()[reader](target)
        except ParamcalcError as e:
            errors.append(str(e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(30)  # generous: a refusal takes milliseconds, a blocked open never ends
    if t.is_alive():
        with open(fifo, "wb"):  # unblock the reader before failing
            pass
        pytest.fail(f"{reader} blocked on a FIFO")
    assert len(errors) == 1 and "FIFO" in errors[0] and "\n" not in errors[0]


def test_the_cli_refuses_a_fifo_in_one_line(tmp_path: Path) -> None:
    fifo = tmp_path / "model.pt"
    os.mkfifo(fifo)
    assert "FIFO" in one_line_error(invoke("inspect", fifo))


# --- sizes and shapes that cannot be ------------------------------------------------------------------


def test_an_oversized_h5_model_config_is_refused(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    from paramcalc.bridge.readers.keras_reader import MAX_CONFIG_BYTES

    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:  # a variable-length string: 16 bytes in the header
        f.attrs["model_config"] = '{"class_name": "Sequential", "pad": "' + "x" * MAX_CONFIG_BYTES + '"}'
        f.create_group("model_weights")
    with pytest.raises(ParamcalcError) as exc:
        read_model(path)
    assert "model_config is" in one_line(exc) and f"limit {MAX_CONFIG_BYTES:,}" in str(exc.value)
    assert "model_config is" in one_line_error(invoke("inspect", path))


def _onnx_with_dims(path: Path, dims: list[int]) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    path.write_bytes(helper.make_model(graph).SerializeToString())
    assert onnx.load(str(path)).graph.initializer[0].dims == dims  # onnx itself accepts it
    return path


@pytest.mark.parametrize(
    ("dims", "needle"),
    [([-4, 3], "negative dimension"), ([2**40, 2**40], "elements"), ([1] * 65, "dimensions")],
)
def test_impossible_onnx_shapes_are_one_line(tmp_path: Path, dims: list[int], needle: str) -> None:
    path = _onnx_with_dims(tmp_path / "bad.onnx", dims)
    with pytest.raises(ParamcalcError) as exc:
        read_model(path)
    assert needle in one_line(exc) and "'w'" in str(exc.value)
    assert needle in one_line_error(invoke("inspect", path))


def test_a_meta_checkpoint_claiming_an_absurd_shape_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "huge.pt"
    torch.save({"w": torch.empty(2**26, 2**26, device="meta")}, path)  # 2**52 elements
    assert "elements" in one_line_error(invoke("inspect", path))


# --- wrong types and refusals that point the way ---------------------------------------------------


@pytest.mark.parametrize("bad", [None, 123, b"model.pt", ["model.pt"], ""])
def test_inspect_of_a_wrong_type_is_a_paramcalc_error(bad: Any) -> None:
    with pytest.raises(ParamcalcError) as exc:
        pc.inspect(bad)
    assert "inspect needs a file path" in one_line(exc)
    with pytest.raises(ParamcalcError):
        read_model(bad)


def test_check_of_a_container_points_to_analyze() -> None:
    with pytest.raises(ParamcalcError) as exc:
        pc.check(nn.Sequential(nn.LSTM(4, 4), nn.Linear(4, 2)))
    assert "paramcalc.analyze(model)" in one_line(exc)


class UserNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8)


def test_a_pickled_module_of_the_users_class_gets_the_state_dict_hint(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(UserNet(), path)
    msg = one_line_error(invoke("inspect", path))
    assert "UserNet" in msg and "save model.state_dict() instead" in msg
    assert "nothing in the file was executed" in msg


def test_a_quantized_state_dict_points_to_the_factory_route(tmp_path: Path) -> None:
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated, not gone
        warnings.simplefilter("ignore")
        q = torch.ao.quantization.quantize_dynamic(UserNet(), {nn.LSTM}, dtype=torch.qint8)
    path = tmp_path / "q.pt"
    torch.save(q.state_dict(), path)
    msg = one_line_error(invoke("inspect", path))
    assert "quantized" in msg and "paramcalc.analyze(model)" in msg and "package.module:factory" in msg
    # and that route works: the quantized model itself is analysed, its packed weights counted
    a = pc.analyze(q)
    assert a.ok and a.actual_total == sum(p.numel() for p in UserNet().parameters())
