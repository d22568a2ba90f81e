"""`paramcalc check` and paramcalc.check: analytic rows vs real torch modules, tensor by tensor.

Expected values come from PyTorch itself (modules built here with torch.nn) or from arithmetic
written out in the test, never from paramcalc's own output.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import paramcalc as pc
from paramcalc import torch_bridge
from paramcalc.check import check_spec, compare_tensors, torchinfo_total
from paramcalc.cli import cli
from tests.conftest import one_line_error

HAS_CUDA = torch.cuda.is_available()
HAS_MPS = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


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
        (pc.RecurrentSpec("lstm_cell", 5, 7), lambda: nn.LSTMCell(5, 7, device="meta")),
        (pc.RecurrentSpec("gru_cell", 5, 7, bias=False), lambda: nn.GRUCell(5, 7, bias=False, device="meta")),
    ],
)
def test_check_agrees_with_named_parameters(spec, module):
    m = module()
    result = check_spec(spec)
    assert result.ok, result.problems()
    assert [(t.name, t.torch_shape) for t in result.tensors] == torch_named(m)
    assert result.torch_total == sum(p.numel() for p in m.parameters())
    assert result.analytic_total == result.torch_total
    assert result.torchinfo.total == result.torch_total
    assert result.spec == spec


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
    assert "meta" in result.device


def test_keras_convention_checks_the_torch_equivalent():
    spec = pc.RecurrentSpec("gru", 64, 256, convention="keras", reset_after=False)
    result = check_spec(spec)
    assert result.ok
    assert result.requested == spec
    assert result.spec is not None and result.spec.convention == "torch"
    # torch: 3(256·64 + 256·256 + 2·256); keras reset_after=False: 3(64·256 + 256·256 + 256)
    assert result.torch_total == 3 * (256 * 64 + 256 * 256 + 2 * 256)
    assert "torch uses another convention" in result.notes[0]
    assert f"{3 * (64 * 256 + 256 * 256 + 256):,}" in result.notes[0]


def test_check_on_cpu_allocates_real_tensors():
    result = check_spec(pc.RecurrentSpec("gru", 3, 4), "cpu")
    assert result.ok and result.device == "cpu"
    assert result.torch_total == 3 * (4 * 3 + 4 * 4 + 2 * 4)


def test_cpu_refuses_what_does_not_fit(monkeypatch):
    monkeypatch.setattr(torch_bridge, "_available_bytes", lambda dev: 1000)
    with pytest.raises(pc.ParamcalcError, match="use --device meta"):
        check_spec(pc.RecurrentSpec("lstm", 28, 256), "cpu")


def _wrong_module(hidden_delta: int):
    real = torch_bridge.build_module

    def build(spec, dev, dtype=None):
        return real(spec.replace(hidden_size=spec.hidden_size + hidden_delta), dev, dtype)

    return build


def test_a_disagreement_is_a_result_not_an_exception(monkeypatch):
    monkeypatch.setattr(torch_bridge, "build_module", _wrong_module(1))
    result = check_spec(pc.RecurrentSpec("lstm", 4, 8))
    assert not result.ok
    problems = " ".join(result.problems())
    assert "weight_ih_l0: shape differs: torch (36, 4)" in problems  # 4·(8+1) rows
    assert "total: analytic" in problems


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
    assert result.ok and result.torchinfo.status == "skipped"
    assert "torchinfo: skipped: torchinfo is not installed" in result.summary_lines()[1]


def test_torchinfo_failure_is_a_skip(monkeypatch):
    import torchinfo

    def boom(*a, **k):
        raise RuntimeError("no can do\nsecond line")

    monkeypatch.setattr(torchinfo, "summary", boom)
    total, note = torchinfo_total(nn.Linear(2, 3))
    assert total is None and note == "torchinfo failed: RuntimeError: no can do"


def test_to_frame_and_records():
    result = check_spec(pc.RecurrentSpec("rnn", 2, 3))
    df = result.to_frame()
    assert list(df.columns) == ["#", "name", "shape", "torch_shape", "numel", "torch_numel", "status"]
    assert list(df["name"]) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert list(df["torch_numel"]) == [3 * 2, 3 * 3, 3, 3]


def test_import_check_needs_no_torch():
    code = "import sys, paramcalc, paramcalc.check, paramcalc.arch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pc_check_is_the_function_even_after_importing_the_module():
    import paramcalc.check  # noqa: F401  (the submodule of the same name)

    assert callable(pc.check)


# --- the CLI -----------------------------------------------------------------------------------


def test_cli_check_ok_exit_0():
    r = run("check", "lstm", "-d", "28", "-H", "256", "-L", "2")
    assert r.exit_code == 0, r.output
    assert "OK: all 8 tensors" in r.output
    assert "819,200" in r.output
    for name, _ in torch_named(nn.LSTM(28, 256, 2, device="meta")):
        assert name in r.output


def test_cli_check_mismatch_exit_1(monkeypatch):
    monkeypatch.setattr(torch_bridge, "build_module", _wrong_module(2))
    r = run("check", "gru", "-d", "3", "-H", "4")
    assert r.exit_code == 1, r.output
    assert "MISMATCH" in r.output and "shape differs: torch (18, 3)" in r.output  # 3·(4+2) rows
    assert "Traceback" not in r.output


def test_cli_check_exit_1_passes_through_main(monkeypatch):
    # _Group.main runs click in non-standalone mode; ctx.exit(1) must still exit 1.
    monkeypatch.setattr(torch_bridge, "build_module", _wrong_module(1))
    with pytest.raises(SystemExit) as exc:
        cli.main(["check", "rnn", "-d", "2", "-H", "2"], prog_name="paramcalc")
    assert exc.value.code == 1


def test_cli_check_keras_says_so():
    r = run("check", "lstm", "-d", "8", "-H", "16", "--convention", "keras")
    assert r.exit_code == 0
    assert "torch uses another convention" in r.output
    assert "LSTM(8, 16) is checked instead" in r.output


def test_cli_check_json():
    r = run("check", "gru", "-d", "3", "-H", "4", "--format", "json")
    data = json.loads(r.output)
    assert data["ok"] is True and data["torch_total"] == 3 * (4 * 3 + 4 * 4 + 2 * 4)
    assert [row["name"] for row in data["rows"]] == [n for n, _ in torch_named(nn.GRU(3, 4))]


def test_cli_check_no_torchinfo():
    r = run("check", "gru", "-d", "3", "-H", "4", "--no-torchinfo")
    assert r.exit_code == 0 and "torchinfo: skipped: turned off" in r.output


def test_cli_check_help_has_examples():
    r = run("check", "--help")
    assert r.exit_code == 0 and "paramcalc check lstm -d 16384 -H 16384 -L 8" in r.output


# --- devices -----------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["tpu", "cpu:1", "cuda:x", "mps:3", ""])
def test_bad_device_one_line_exit_2(device):
    line = one_line_error(run("check", "lstm", "-d", "2", "-H", "3", "--device", device))
    assert "device" in line


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA; the no-CUDA error cannot happen")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:7"])
def test_cuda_without_cuda_one_line_exit_2(device):
    line = one_line_error(run("check", "lstm", "-d", "2", "-H", "3", "--device", device))
    assert "not available" in line


@pytest.mark.skipif(HAS_MPS, reason="this machine has MPS")
def test_mps_off_a_mac_one_line_exit_2():
    assert "not available" in one_line_error(run("check", "gru", "-d", "2", "-H", "3", "--device", "mps"))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_check_on_cuda():
    result = check_spec(pc.RecurrentSpec("lstm", 12, 16, num_layers=2, proj_size=6), "cuda")
    assert result.ok and result.device.startswith("cuda")
    assert result.torch_total == sum(p.numel() for p in nn.LSTM(12, 16, 2, proj_size=6).parameters())
    r = run("check", "gru", "-d", "3", "-H", "4", "--device", "cuda:0")
    assert r.exit_code == 0, r.output


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_index_beyond_the_count_one_line_exit_2():
    n = torch.cuda.device_count()
    line = one_line_error(run("check", "gru", "-d", "3", "-H", "4", "--device", f"cuda:{n}"))
    assert f"only {n} CUDA device" in line


@pytest.mark.skipif(not HAS_MPS, reason="needs Apple MPS")
def test_check_on_mps():  # pragma: no cover - Apple only
    assert check_spec(pc.RecurrentSpec("gru", 3, 4), "mps").ok
