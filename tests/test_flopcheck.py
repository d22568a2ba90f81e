"""Cross-checks of the cost model against torch: FlopCounterMode, named_parameters, torchinfo.

Expected values come from PyTorch itself (FlopCounterMode's matmul FLOPs, the modules' own
parameters, torchinfo's summary), never from paramcalc's output.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.flop_counter import FlopCounterMode

import paramcalc.flopcheck as fc
from paramcalc import RecurrentSpec
from paramcalc.cli import cli
from paramcalc.cost import Workload, cost
from paramcalc.flopcheck import NOT_OBSERVABLE, flop_check
from paramcalc.torch_bridge import build_module

warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")


def counter_flops(fn) -> int:  # type: ignore[no-untyped-def]
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


S = RecurrentSpec
CASES = [
    (S("rnn", 5, 7), Workload(3, 4)),
    (S("rnn_relu", 5, 7, num_layers=3, bias=False), Workload(2, 4)),
    (S("gru", 5, 7), Workload(3, 4)),
    (S("lstm", 5, 7), Workload(3, 4)),
    (S("lstm", 5, 7, num_layers=2, proj_size=3), Workload(3, 4)),
    (S("lstm", 5, 7, num_layers=2, bidirectional=True, proj_size=2), Workload(2, 3)),
    (S("gru", 5, 7, num_layers=2, bidirectional=True), Workload(3, 4)),
    (S("rnn", 5, 7, num_layers=2, bidirectional=True), Workload(3, 5, (2, 5, 1))),
    (S("gru", 5, 7, num_layers=2, bidirectional=True), Workload(3, 4, (2, 4, 1))),
    (S("lstm", 5, 7, num_layers=2, bidirectional=True), Workload(4, 5, (5, 2, 5, 1))),
    (S("lstm", 5, 7, proj_size=4), Workload(3, 6, (6, 3, 2))),
    (S("rnn_cell", 5, 7), Workload(3, 4)),
    (S("gru_cell", 5, 7), Workload(3, 1)),
    (S("lstm_cell", 5, 7), Workload(3, 4, (4, 1, 2))),
    (S("gru", 5, 7, convention="keras", reset_after=False), Workload(2, 4)),
]


def _id(case: tuple[RecurrentSpec, Workload]) -> str:
    return f"{case[0].describe()}-{case[1].describe()}"


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_matmul_flops_equal_flop_counter_on_meta(case: tuple[RecurrentSpec, Workload], mode: str) -> None:
    spec, wl = case
    wl = Workload(wl.batch, wl.seq_len, wl.lengths, mode=mode)
    check = flop_check(spec, wl, device="meta", with_torchinfo=False)
    assert check.observable
    assert check.counter_forward == check.ours_forward == 2 * cost(spec, wl).macs
    if mode == "training":
        assert check.counter_training == check.ours_training
    assert check.ok is True and check.status == "match"


def test_flop_counter_directly_lstm_two_layers_meta() -> None:
    """FlopCounterMode on the real module, with our MACs derived from its named_parameters."""
    spec = RecurrentSpec("lstm", 28, 64, num_layers=2, bidirectional=True)
    m = build_module(spec, "meta")
    weights = sum(p.numel() for name, p in m.named_parameters() if not name.startswith("bias"))
    x = torch.empty(10, 4, 28, device="meta")
    assert counter_flops(lambda: m(x)) == 2 * weights * 10 * 4
    assert cost(spec, Workload(4, 10)).macs == weights * 40


def test_flop_counter_packed_follows_real_steps() -> None:
    m = nn.GRU(5, 7, device="meta")
    x = torch.empty(6, 3, 5, device="meta")
    packed = pack_padded_sequence(x, torch.tensor([6, 4, 1]))
    weights = 3 * 7 * 5 + 3 * 7 * 7
    assert counter_flops(lambda: m(packed)) == 2 * weights * (6 + 4 + 1)
    assert cost(RecurrentSpec("gru", 5, 7), Workload(3, 6, (6, 4, 1))).macs == weights * 11


def test_onednn_lstm_on_cpu_is_not_observable_never_zero() -> None:
    spec = RecurrentSpec("lstm", 5, 7)
    wl = Workload(3, 4)
    hidden = flop_check(spec, wl, device="cpu", fused=True, with_torchinfo=False)
    assert hidden.counter_forward is None and not hidden.observable
    assert hidden.ok is None and hidden.status == NOT_OBSERVABLE
    assert hidden.records()[0]["reference"] == NOT_OBSERVABLE
    # with oneDNN off, the same module on the same device is counted exactly
    shown = flop_check(spec, wl, device="cpu", with_torchinfo=False)
    assert shown.ok is True and shown.counter_forward == 2 * (28 * 5 + 28 * 7) * 12


@pytest.mark.parametrize(
    ("spec", "wl"),
    [
        (S("gru", 5, 7, num_layers=2, bidirectional=True), Workload(3, 4, (2, 4, 1), mode="training")),
        (S("lstm_cell", 5, 7), Workload(3, 4, mode="training")),
        (S("lstm", 5, 7, proj_size=3), Workload(2, 3, mode="training")),
    ],
    ids=["gru-bi-packed", "lstm_cell", "lstm-proj"],
)
def test_cpu_without_fused_kernels_matches(spec: RecurrentSpec, wl: Workload) -> None:
    check = flop_check(spec, wl, device="cpu", with_torchinfo=False)
    assert check.ok is True


@settings(max_examples=25, deadline=None)
@given(
    cell=st.sampled_from(["rnn", "lstm", "gru", "rnn_cell", "lstm_cell", "gru_cell"]),
    d=st.integers(1, 12),
    h=st.integers(2, 12),
    layers=st.integers(1, 3),
    bi=st.booleans(),
    lengths=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    packed=st.booleans(),
    training=st.booleans(),
)
def test_random_specs_match_flop_counter(
    cell: str, d: int, h: int, layers: int, bi: bool, lengths: list[int], packed: bool, training: bool
) -> None:
    single = cell.endswith("_cell")
    spec = RecurrentSpec(cell, d, h, num_layers=1 if single else layers, bidirectional=bi and not single)
    mode = "training" if training else "inference"
    wl = Workload(len(lengths), max(lengths), tuple(lengths) if packed else None, mode=mode)
    assert flop_check(spec, wl, with_torchinfo=False).ok is True


# --- torchinfo ---------------------------------------------------------------------------------
def _torchinfo(model: nn.Module, x: torch.Tensor) -> int:
    import torchinfo

    return int(torchinfo.summary(model, input_data=[x], verbose=0, device="meta").total_mult_adds)


def test_torchinfo_batched_counts_bias_additions() -> None:
    m = nn.LSTM(5, 7, num_layers=2, device="meta")
    all_params = sum(p.numel() for p in m.parameters())
    biases = sum(p.numel() for n, p in m.named_parameters() if n.startswith("bias"))
    ours = cost(RecurrentSpec("lstm", 5, 7, num_layers=2), Workload(3, 4)).macs
    ti = _torchinfo(m, torch.empty(4, 3, 5, device="meta"))
    assert ti == all_params * 4 * 3
    assert ti - ours == biases * 4 * 3  # one MAC per bias element and token


def test_torchinfo_over_counts_unbatched_input_and_cells() -> None:
    gru = nn.GRU(5, 7, device="meta")
    params = sum(p.numel() for p in gru.parameters())
    # unbatched (T=4, d) input: output (4, 7) -> params · 4 · 7, a factor Dh too many
    assert _torchinfo(gru, torch.empty(4, 5, device="meta")) == params * 4 * 7
    cell = nn.GRUCell(5, 7, device="meta")
    # one call on (B=3, d): output (3, 7) -> params · 3 · 7
    assert _torchinfo(cell, torch.empty(3, 5, device="meta")) == params * 3 * 7


@pytest.mark.parametrize(
    ("spec", "wl"),
    [
        (S("lstm", 5, 7, num_layers=2), Workload(3, 4)),
        (S("gru", 5, 7, bidirectional=True), Workload(3, 4, (2, 4, 1))),
        (S("gru_cell", 5, 7), Workload(3, 4)),
        (S("lstm", 5, 7, proj_size=3), Workload(2, 3)),
    ],
    ids=["batched", "packed", "cell-loop", "proj"],
)
def test_flop_check_explains_torchinfo(spec: RecurrentSpec, wl: Workload) -> None:
    check = flop_check(spec, wl)
    assert check.torchinfo_mult_adds is not None
    assert check.torchinfo_mult_adds == check.torchinfo_expected
    status = check.records()[-1]["status"]
    assert status == "expected difference"


def test_torchinfo_packed_rule_by_hand() -> None:
    # packed GRU(5, 7): torchinfo sees output data (tokens=7, 7): all 294 params · 7 · 7
    check = flop_check(S("gru", 5, 7), Workload(3, 4, (4, 2, 1)))
    assert check.torchinfo_mult_adds == (3 * 7 * 5 + 3 * 7 * 7 + 2 * 3 * 7) * 7 * 7


# --- CLI ---------------------------------------------------------------------------------------
def test_cli_flop_check_match_exit_0() -> None:
    args = ["cost", "lstm", "-d", "5", "-H", "7", "-L", "2", "--batch", "3", "--seq-len", "4"]
    result = CliRunner().invoke(cli, [*args, "--train", "--flop-check"])
    assert result.exit_code == 0, result.output
    assert "match" in result.output and "MISMATCH" not in result.output
    assert "torchinfo" in result.output


def test_cli_flop_check_not_observable_exit_0_with_warning() -> None:
    args = ["cost", "lstm", "-d", "5", "-H", "7", "--batch", "3", "--seq-len", "4"]
    result = CliRunner().invoke(cli, [*args, "--flop-check", "--flop-device", "cpu", "--fused"])
    assert result.exit_code == 0
    row = next(ln for ln in result.output.splitlines() if ln.startswith("forward matmul FLOPs"))
    assert NOT_OBSERVABLE in row  # never a 0
    assert f"flop check {NOT_OBSERVABLE}" in result.output  # the warning


def test_cli_flop_check_mismatch_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fc._count
    monkeypatch.setattr(fc, "_count", lambda fn: {k: v + 2 for k, v in real(fn).items()})
    args = ["cost", "rnn", "-d", "5", "-H", "7", "--batch", "3", "--seq-len", "4", "--flop-check"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "MISMATCH" in result.output


def test_cli_flop_check_bad_device_exit_2() -> None:
    args = ["cost", "rnn", "-d", "5", "-H", "7", "--flop-check", "--flop-device", "tpu"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
