"""Cross-checks of the cost model against torch: FlopCounterMode, named_parameters, torchinfo.

Expected values come from PyTorch itself (FlopCounterMode's matmul FLOPs, the modules' own
parameters, torchinfo's summary), never from paramcalc's output.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence
from torch.utils.flop_counter import FlopCounterMode

import paramcalc.checks.flopcount as fc
from paramcalc import ParamcalcError, RecurrentSpec, Status, Workload
from paramcalc.checks.flopcount import DIRECT_STEPS, flop_check
from paramcalc.core.costmodel import cost
from tests.helpers import invoke, one_line_error

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
    (S("rnn_relu_cell", 5, 7), Workload(3, 4, (4, 2, 1))),
    (S("gru_cell", 5, 7), Workload(3, 1)),
    (S("lstm_cell", 5, 7), Workload(3, 4, (4, 1, 2))),
    (S("gru", 5, 7, convention="keras"), Workload(2, 4)),  # Keras GRU(reset_after=True): torch's layout
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
    assert check.ok is True and check.status is Status.OK


@pytest.mark.parametrize(
    "spec",
    [
        S("cifg", 5, 7),
        S("mgu", 5, 7, num_layers=2),
        S("indrnn", 5, 7),
        S("mingru", 5, 7),
        S("minlstm", 5, 7),
        S("lstm", 5, 7, peephole=True),
        S("gru", 5, 7, reset_after=False),
    ],
    ids=lambda s: s.describe(),
)
def test_reference_modules_match_the_flop_counter(spec: RecurrentSpec) -> None:
    check = flop_check(spec, Workload(3, 4, mode="training"), with_torchinfo=False)
    assert check.ok is True, check.table().records()


def test_flop_counter_directly_lstm_two_layers_meta() -> None:
    """FlopCounterMode on the real module, with our MACs derived from its named_parameters."""
    spec = RecurrentSpec("lstm", 28, 64, num_layers=2, bidirectional=True)
    m = nn.LSTM(28, 64, 2, bidirectional=True, device="meta")
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


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="torch built without oneDNN")
def test_onednn_lstm_on_cpu_is_not_observable_never_zero() -> None:
    spec = RecurrentSpec("lstm", 5, 7)
    wl = Workload(3, 4)
    hidden = flop_check(spec, wl, device="cpu", fused=True, with_torchinfo=False)
    assert hidden.counter_forward is None and not hidden.observable
    assert hidden.ok is None and hidden.status is Status.NOT_OBSERVABLE
    assert hidden.table().records()[0]["reference"] is None
    assert hidden.table().records()[0]["status"] == "not observable"
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


def test_dtype_does_not_change_the_flop_count() -> None:
    for dtype in ("bf16", "int8"):
        check = flop_check(S("lstm", 5, 7), Workload(2, 4, dtype=dtype), with_torchinfo=False)
        assert check.ok is True and check.counter_forward == 2 * (28 * 5 + 28 * 7) * 8


def test_long_sequences_are_extrapolated_exactly() -> None:
    # 100 steps > DIRECT_STEPS: the module runs B = 1 at T = 2, 3, 4 and B = 2 at T = 2
    assert DIRECT_STEPS < 100
    spec = S("lstm", 5, 7, num_layers=2)
    check = flop_check(spec, Workload(3, 100, mode="training"))
    assert check.extrapolated_from == (2, 3, 4)
    assert check.ok is True and check.counter_forward == 2 * (28 * 5 + 28 * 7 + 2 * 28 * 7) * 300
    assert check.torchinfo_mult_adds is None  # torchinfo would need the whole run
    assert any("extrapolated exactly to B = 3, T = 100" in n for n in check.notes())


def test_long_packed_batches_are_refused() -> None:
    with pytest.raises(ParamcalcError, match="runs a packed batch of at most 64 steps"):
        flop_check(S("gru", 5, 7), Workload(3, 100, (100, 50, 2)))
    with pytest.raises(ParamcalcError, match="flop_check needs a Workload, got str"):
        flop_check(S("gru", 5, 7), "B=3")  # type: ignore[arg-type]


def test_extrapolation_refuses_counts_off_a_line() -> None:
    # counts at (B, T) = (1, 2), (1, 3), (1, 4), (2, 2)
    with pytest.raises(ParamcalcError, match="not B times an affine function of T"):
        fc._extrapolate([{"mm": 2}, {"mm": 4}, {"mm": 7}, {"mm": 4}], 1, 100)
    with pytest.raises(ParamcalcError, match="not B times an affine function of T"):
        fc._extrapolate([{"mm": 2}, {"mm": 4}, {"mm": 6}, {"mm": 5}], 1, 100)  # B = 2 not doubled
    # 2T - 2 at B = 1, so 3 × (2·100 - 2) at B = 3
    assert fc._extrapolate([{"mm": 2}, {"mm": 4}, {"mm": 6}, {"mm": 4}], 3, 100) == {"mm": 3 * (2 * 100 - 2)}


@pytest.mark.slow
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
    assert check.torchinfo_status() is Status.EXPECTED_DIFFERENCE
    assert check.table().records()[-1]["status"] == "expected difference"


def test_torchinfo_packed_rule_by_hand() -> None:
    # packed GRU(5, 7): torchinfo sees output data (tokens=7, 7): all 294 params · 7 · 7
    check = flop_check(S("gru", 5, 7), Workload(3, 4, (4, 2, 1)))
    assert check.torchinfo_mult_adds == (3 * 7 * 5 + 3 * 7 * 7 + 2 * 3 * 7) * 7 * 7


def test_torchinfo_failure_is_reported_not_fatal(monkeypatch) -> None:
    def fails(case):
        raise RuntimeError("torchinfo broke")

    monkeypatch.setattr(fc, "_torchinfo", fails)
    check = flop_check(S("gru", 5, 7), Workload(2, 3))
    assert check.ok is True and check.torchinfo_status() is Status.FAILED
    assert "torchinfo failed: RuntimeError: torchinfo broke" in check.notes()


# --- CLI ---------------------------------------------------------------------------------------
def test_cli_flop_check_ok_exit_0() -> None:
    args = ["cost", "lstm", "-d", "5", "-H", "7", "-L", "2", "--batch", "3", "--seq-len", "4"]
    r = invoke(*args, "--train", "--flop-check")
    assert r.exit_code == 0, r.output
    rows = [ln for ln in r.stdout.splitlines() if "FlopCounterMode on meta" in ln]
    assert len(rows) == 2 and all(ln.split()[-1] == "ok" for ln in rows)
    assert "torchinfo" in r.stdout and "mismatch" not in r.stdout


def test_cli_flop_check_json_keeps_stdout_one_document() -> None:
    args = [
        "cost",
        "rnn",
        "-d",
        "5",
        "-H",
        "7",
        "--batch",
        "3",
        "--seq-len",
        "4",
        "--flop-check",
        "-f",
        "json",
    ]
    r = invoke(*args)
    import json

    assert json.loads(r.stdout)["macs"] == 84 * 12
    assert "flop check: RNN(5, 7)" in r.stderr


def test_cli_flop_check_not_observable_exit_0_with_warning() -> None:
    args = ["cost", "lstm", "-d", "5", "-H", "7", "--batch", "3", "--seq-len", "4"]
    r = invoke(*args, "--flop-check", "--flop-device", "cpu", "--fused")
    assert r.exit_code == 0
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("forward matmul FLOPs"))
    assert "not observable" in row  # never a 0
    assert r.stderr == "warning: flop check not observable on cpu\n"


def test_cli_flop_check_mismatch_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fc._count
    monkeypatch.setattr(fc, "_count", lambda fn: {k: v + 2 for k, v in real(fn).items()})
    args = ["cost", "rnn", "-d", "5", "-H", "7", "--batch", "3", "--seq-len", "4", "--flop-check"]
    r = invoke(*args)
    assert r.exit_code == 1
    assert "mismatch" in r.stdout and r.stderr == "flop check: mismatch\n"


def test_cli_flop_check_bad_device_exit_2() -> None:
    args = ["cost", "rnn", "-d", "5", "-H", "7", "--flop-check", "--flop-device", "tpu"]
    assert "unknown device 'tpu'" in one_line_error(invoke(*args))
