"""`paramcalc check` and ``pc.check``: analytic rows vs real torch modules, tensor by tensor.

Expected values come from PyTorch itself (modules built here with torch.nn) or from arithmetic
written out in the test, never from paramcalc's own output.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn

import paramcalc as pc
import paramcalc.bridge.build as build
import paramcalc.bridge.devices as devices
from paramcalc import Status
from paramcalc.checks.tensorcheck import check_spec, compare_tensors, torchinfo_total
from tests.helpers import invoke, one_line_error

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def torch_named(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(n, tuple(p.shape)) for n, p in module.named_parameters()]


# --- the library -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, module",
    [
        (pc.RecurrentSpec("lstm", 28, 256, num_layers=2), lambda: nn.LSTM(28, 256, 2, device="meta")),
        (
            pc.RecurrentSpec("gru", 10, 20, num_layers=3, bidirectional=True, bias=False),
            lambda: nn.GRU(10, 20, 3, bias=False, bidirectional=True, device="meta"),
        ),
        (
            pc.RecurrentSpec("lstm", 12, 16, num_layers=2, bidirectional=True, proj_size=6),
            lambda: nn.LSTM(12, 16, 2, bidirectional=True, proj_size=6, device="meta"),
        ),
        (pc.RecurrentSpec("rnn_relu", 5, 7), lambda: nn.RNN(5, 7, nonlinearity="relu", device="meta")),
        (
            pc.RecurrentSpec("rnn_relu_cell", 5, 7),
            lambda: nn.RNNCell(5, 7, nonlinearity="relu", device="meta"),
        ),
        (pc.RecurrentSpec("lstm_cell", 5, 7), lambda: nn.LSTMCell(5, 7, device="meta")),
        (pc.RecurrentSpec("gru_cell", 5, 7, bias=False), lambda: nn.GRUCell(5, 7, bias=False, device="meta")),
    ],
    ids=lambda v: v.describe() if isinstance(v, pc.RecurrentSpec) else "",
)
def test_check_agrees_with_named_parameters(spec, module):
    m = module()
    result = check_spec(spec)
    assert result.ok, result.problems()
    assert result.status is Status.OK
    assert [(t.name, t.torch_shape) for t in result.tensors] == torch_named(m)
    assert result.torch_total == sum(p.numel() for p in m.parameters())
    assert result.analytic_total == result.torch_total
    assert result.torchinfo.total == result.torch_total
    assert result.spec == spec and result.module == f"torch.nn.{type(m).__name__}"


def test_mnist_lstm_total_by_hand():
    # nn.LSTM(28, 256, num_layers=2): 4(256·28 + 256·256 + 2·256) + 4(256·256 + 256·256 + 2·256)
    by_hand = 4 * (256 * 28 + 256 * 256 + 2 * 256) + 4 * (256 * 256 + 256 * 256 + 2 * 256)
    assert by_hand == 819_200
    result = pc.check(pc.RecurrentSpec("lstm", 28, 256, num_layers=2))
    assert result.ok and result.torch_total == by_hand and result.analytic_total == by_hand


def test_seventeen_billion_on_meta_is_cheap():
    h = 16384
    by_hand = 8 * 4 * (h * h + h * h + 2 * h)  # d = h, so every layer is the same
    assert by_hand == 17_180_917_760
    result = pc.check(pc.RecurrentSpec("lstm", h, h, num_layers=8))
    assert result.ok
    assert result.torch_total == by_hand
    assert len(result.tensors) == 8 * 4
    assert result.device.startswith("meta")


def test_keras_convention_checks_its_torch_named_twin():
    # Keras GRU(reset_after=True) keeps an input and a recurrent bias: PyTorch's layout exactly
    spec = pc.RecurrentSpec("gru", 64, 256, convention="keras")
    result = check_spec(spec)
    assert result.ok
    assert result.requested == spec
    assert result.spec is not None and result.spec.convention == "torch"
    assert result.torch_total == sum(p.numel() for p in nn.GRU(64, 256, device="meta").parameters())
    assert result.notes()[0] == (
        "keras GRU(64, 256, reset_after=True) uses Keras' tensor names; its twin with PyTorch's names "
        "and the same layout (247,296 parameters) is checked"
    )


def test_keras_reset_before_gru_is_checked_against_the_reference_module():
    spec = pc.RecurrentSpec("gru", 64, 256, convention="keras", reset_after=False)
    result = check_spec(spec)
    assert result.ok, result.problems()
    # one bias vector: 3(256·64 + 256·256 + 256)
    assert result.torch_total == 3 * (256 * 64 + 256 * 256 + 256)
    assert "not a torch.nn module's" in result.notes()[1]


@pytest.mark.parametrize(
    "spec, by_hand",
    [
        (pc.RecurrentSpec("cifg", 5, 7), 3 * (7 * 5 + 7 * 7 + 7) + 2 * 7),
        (pc.RecurrentSpec("mgu", 5, 7, num_layers=2), 2 * (7 * 5 + 7 * 7 + 7) + 2 * (7 * 7 + 7 * 7 + 7)),
        (pc.RecurrentSpec("indrnn", 5, 7), 7 * 5 + 7 + 7),
        (pc.RecurrentSpec("mingru", 5, 7), 2 * (7 * 5 + 7)),
        (pc.RecurrentSpec("minlstm", 5, 7, bidirectional=True), 2 * 3 * (7 * 5 + 7)),
        (pc.RecurrentSpec("lstm", 5, 7, peephole=True), 4 * (7 * 5 + 7 * 7 + 14) + 3 * 7),
        (pc.RecurrentSpec("lstm", 5, 7, bias_vectors=1), 4 * (7 * 5 + 7 * 7 + 7)),
        (pc.RecurrentSpec("gru", 5, 7, num_layers=2, bidirectional=True, merge_mode="sum"), None),
    ],
    ids=lambda v: v.describe() if isinstance(v, pc.RecurrentSpec) else "",
)
def test_layouts_outside_torch_nn_are_checked_against_the_reference_modules(spec, by_hand):
    result = check_spec(spec)
    assert result.ok, result.problems()
    assert result.module.startswith("paramcalc's reference module")
    if by_hand is not None:
        assert result.torch_total == by_hand


def test_check_on_cpu_allocates_real_tensors():
    result = check_spec(pc.RecurrentSpec("gru", 3, 4), "cpu")
    assert result.ok and result.device == "cpu"
    assert result.torch_total == 3 * (4 * 3 + 4 * 4 + 2 * 4)


def test_cpu_refuses_what_does_not_fit(monkeypatch):
    monkeypatch.setattr(devices, "available_bytes", lambda dev: 1000)
    with pytest.raises(pc.ParamcalcError, match="use `device='meta'`, which allocates no memory"):
        check_spec(pc.RecurrentSpec("lstm", 28, 256), "cpu")


def _wrong_module(hidden_delta: int):
    real = build.build_module

    def build_wrong(spec, dev, dtype=None):
        return real(spec.replace(hidden_size=spec.hidden_size + hidden_delta), dev, dtype)

    return build_wrong


def test_a_disagreement_is_a_result_not_an_exception(monkeypatch):
    monkeypatch.setattr(build, "build_module", _wrong_module(1))
    result = check_spec(pc.RecurrentSpec("lstm", 4, 8))
    assert not result.ok and result.status is Status.MISMATCH
    problems = " ".join(result.problems())
    assert "weight_ih_l0: shape differs: torch (36, 4)" in problems  # 4·(8+1) rows
    assert "total: analytic" in problems
    assert result.table().column("status")[0] == "mismatch"


def test_check_of_a_module_compares_that_modules_tensors():
    m = nn.LSTM(4, 8)
    m.extra = nn.Parameter(torch.zeros(5))  # a tensor the formula does not have
    result = pc.check(m)
    assert not result.ok
    assert result.torch_total == sum(p.numel() for p in m.parameters())


def test_compare_tensors_flags_missing_extra_order_and_shape():
    expected = [("a", (2, 3)), ("b", (4,)), ("c", (5,)), ("d", (1,))]
    actual = [("b", (4,)), ("a", (2, 3)), ("c", (6,)), ("e", (7,))]
    checks = {c.name: c for c in compare_tensors(expected, actual)}
    assert "out of order" in " ".join(checks["a"].problems)
    assert "out of order" in " ".join(checks["b"].problems)
    assert checks["c"].problems == ("shape differs: torch (6,)", "numel differs: torch 6")
    assert checks["d"].problems == ("missing in torch",)
    assert checks["e"].index is None and "not in the formula" in checks["e"].problems[0]


def test_compare_tensors_one_missing_does_not_cascade():
    expected = [("a", (1,)), ("b", (1,)), ("c", (1,))]
    actual = [("a", (1,)), ("c", (1,))]
    checks = {c.name: c for c in compare_tensors(expected, actual)}
    assert checks["a"].ok and checks["c"].ok and not checks["b"].ok


def test_torchinfo_skipped_with_a_reason_when_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchinfo", None)  # import torchinfo -> ImportError
    total, note = torchinfo_total(nn.Linear(2, 3))
    assert total is None and "not installed" in note
    result = check_spec(pc.RecurrentSpec("gru", 3, 4))
    assert result.ok and result.torchinfo.status is Status.SKIPPED
    assert result.summary()[1] == "torchinfo: skipped: torchinfo is not installed (pip install torchinfo)"


def test_torchinfo_failure_is_a_skip(monkeypatch):
    import torchinfo

    def fails(*a, **k):
        raise RuntimeError("no can do\nsecond line")

    monkeypatch.setattr(torchinfo, "summary", fails)
    total, note = torchinfo_total(nn.Linear(2, 3))
    assert total is None and note == "torchinfo failed: RuntimeError: no can do"


def test_torchinfo_disagreement_is_a_mismatch(monkeypatch):
    import torchinfo

    class Stats:
        total_params = 1

    monkeypatch.setattr(torchinfo, "summary", lambda *a, **k: Stats())
    result = check_spec(pc.RecurrentSpec("rnn", 2, 3))
    assert not result.ok and "torchinfo: 1 vs expected 21" in result.problems()


def test_table_frame_and_meta():
    result = check_spec(pc.RecurrentSpec("rnn", 2, 3))
    df = result.to_frame()
    assert list(df.columns) == [
        "index",
        "name",
        "shape",
        "torch_shape",
        "numel",
        "torch_numel",
        "status",
        "detail",
    ]
    assert list(df["name"]) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert list(df["torch_numel"]) == [3 * 2, 3 * 3, 3, 3]
    meta = result.meta()
    assert meta["ok"] is True and meta["torch_total"] == 21 and meta["module"] == "torch.nn.RNN"


def test_check_rejects_what_it_cannot_check():
    with pytest.raises(
        pc.ParamcalcError, match=r"check needs a RecurrentSpec .* or an Architecture, got str"
    ):
        pc.check("lstm")  # type: ignore[arg-type]


def test_pc_check_is_the_function_even_after_importing_the_module():
    import paramcalc.checks.tensorcheck as tensorcheck

    assert pc.check is tensorcheck.check and callable(pc.check)


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_check_ok_exit_0():
    r = invoke("check", "lstm", "-d", "28", "-H", "256", "-L", "2")
    assert r.exit_code == 0, r.output
    assert "OK: all 8 tensors" in r.stdout
    assert "819,200" in r.stdout
    for name, _ in torch_named(nn.LSTM(28, 256, 2, device="meta")):
        assert name in r.stdout


def test_cli_check_mismatch_exit_1(monkeypatch):
    monkeypatch.setattr(build, "build_module", _wrong_module(2))
    r = invoke("check", "gru", "-d", "3", "-H", "4")
    assert r.exit_code == 1, r.output
    assert "MISMATCH" in r.stdout and "shape differs: torch (18, 3)" in r.stdout  # 3·(4+2) rows
    assert "Traceback" not in r.output


def test_cli_check_keras_says_so():
    r = invoke("check", "lstm", "-d", "8", "-H", "16", "--convention", "keras", "--bias-vectors", "2")
    assert r.exit_code == 0, r.output
    assert "uses Keras' tensor names; its twin with PyTorch's names" in r.stdout
    assert r.stdout.startswith("check: LSTM(8, 16) on meta")


def test_cli_check_json():
    data = json.loads(invoke("check", "gru", "-d", "3", "-H", "4", "--format", "json").stdout)
    assert data["ok"] is True and data["torch_total"] == 3 * (4 * 3 + 4 * 4 + 2 * 4)
    assert [row["name"] for row in data["rows"]] == [n for n, _ in torch_named(nn.GRU(3, 4))]


def test_cli_check_no_torchinfo():
    r = invoke("check", "gru", "-d", "3", "-H", "4", "--no-torchinfo")
    assert r.exit_code == 0 and "torchinfo: skipped: turned off (--no-torchinfo)" in r.stdout


def test_cli_check_help_has_examples():
    r = invoke("check", "--help")
    assert r.exit_code == 0 and "paramcalc check lstm -d 16384 -H 16384 -L 8" in r.stdout


# --- devices -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device, needle",
    [
        ("tpu", "unknown device 'tpu': expected cpu, meta, cuda, cuda:N or mps"),
        ("cpu:1", "device 'cpu:1' does not exist: cpu has no index 1"),
        ("cuda:x", "unknown device 'cuda:x'"),
        ("mps:3", "device 'mps:3' does not exist: mps has only index 0"),
        ("", "unknown device ''"),
    ],
)
def test_bad_device_one_line_exit_2(device, needle):
    assert needle in one_line_error(invoke("check", "lstm", "-d", "2", "-H", "3", "--device", device))


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA; the no-CUDA error cannot happen")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:7"])
def test_cuda_without_cuda_one_line_exit_2(device):
    line = one_line_error(invoke("check", "lstm", "-d", "2", "-H", "3", "--device", device))
    assert line == f"Error: device '{device}' is not available: this torch sees no CUDA device"


@pytest.mark.skipif(HAS_MPS, reason="this machine has MPS")
def test_mps_off_a_mac_one_line_exit_2():
    assert "not available" in one_line_error(invoke("check", "gru", "-d", "2", "-H", "3", "--device", "mps"))


@pytest.mark.gpu
def test_check_on_cuda():
    result = check_spec(pc.RecurrentSpec("lstm", 12, 16, num_layers=2, proj_size=6), "cuda")
    assert result.ok and result.device.startswith("cuda")
    assert result.torch_total == sum(p.numel() for p in nn.LSTM(12, 16, 2, proj_size=6).parameters())
    r = invoke("check", "gru", "-d", "3", "-H", "4", "--device", "cuda:0")
    assert r.exit_code == 0, r.output


@pytest.mark.gpu
def test_cuda_index_beyond_the_count_one_line_exit_2():
    n = torch.cuda.device_count()
    line = one_line_error(invoke("check", "gru", "-d", "3", "-H", "4", "--device", f"cuda:{n}"))
    assert f"only {n} CUDA device" in line


@pytest.mark.gpu
def test_cuda_memory_is_read():
    free = devices.available_bytes(torch.device("cuda"))
    assert free is not None and 0 < free <= torch.cuda.get_device_properties(0).total_memory


@pytest.mark.skipif(not HAS_MPS, reason="needs Apple MPS")
def test_check_on_mps():  # pragma: no cover - Apple only
    assert check_spec(pc.RecurrentSpec("gru", 3, 4), "mps").ok


def test_cpu_memory_is_read_from_proc_meminfo(tmp_path, monkeypatch):
    """available_bytes reads MemAvailable (in KiB) from /proc/meminfo on Linux."""
    import builtins

    fake = tmp_path / "meminfo"
    fake.write_text("MemTotal:       16384000 kB\nMemFree:          100000 kB\nMemAvailable:    2048000 kB\n")
    real_open = builtins.open

    def fake_open(path, *args, **kwargs):
        return real_open(fake if path == "/proc/meminfo" else path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert devices.available_bytes(torch.device("cpu")) == 2_048_000 * 1024
    assert devices.available_bytes(torch.device("meta")) is None
