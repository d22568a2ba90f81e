"""The memory model's terms by hand arithmetic (pure Python: no torch)."""

from __future__ import annotations

import pytest

import paramcalc as pc
from paramcalc.core import memory
from paramcalc.core.memory import (
    CUDNN,
    FUSED_CELL,
    NATIVE,
    ONEDNN,
    REFERENCE,
    good_ld,
    memory_model,
    memory_terms,
    onednn_workspace_bytes,
    peak_bytes,
    predict_path,
)

RNN = pc.RecurrentSpec("rnn", 4, 8)  # W_ih 8·4 + W_hh 8·8 + 2 biases 2·8 = 112 parameters
WL = pc.Workload(batch=2, seq_len=3)  # N = 6 tokens


def _by_item(model: memory.MemoryModel) -> dict[str, int]:
    return {t.item: t.bytes for t in model.terms}


def test_no_torch_import():
    with open(memory.__file__, encoding="utf-8") as fh:
        assert "import torch" not in fh.read()


def test_native_rnn_inference_by_hand():
    m = memory_model(RNN, WL, NATIVE)
    terms = _by_item(m)
    assert terms["parameters"] == 112 * 4
    assert terms["input"] == 3 * 2 * 4 * 4  # (T, B, d) fp32
    assert terms["initial states"] == 1 * 1 * 2 * 8 * 4  # (L·D, B, R)
    assert terms["input projection"] == 6 * 1 * 8 * 4  # N·G·Dh
    assert terms["step outputs"] == 6 * 8 * 4  # N·R
    assert terms["layer output"] == 6 * 8 * 4  # the stacked (T, B, R)
    assert m.peak_bytes == sum(terms.values())
    assert m.phase == "forward of layer 0"
    assert peak_bytes(RNN, WL, NATIVE) == m.peak_bytes
    assert memory_terms(RNN, WL, NATIVE) == terms


def test_native_gru_training_by_hand():
    gru = pc.RecurrentSpec("gru", 4, 8)
    m = memory_model(gru, pc.Workload(16, 10, mode="training"), NATIVE)
    terms = _by_item(m)
    # per token: h_(t-1) (R = 8) + 6·Dh (h·W_hhᵀ + b_hh, r, z, n) = 56 elements; N = 160
    assert terms["saved activations, layer 0"] == 160 * 56 * 4
    assert "initial states" not in terms  # h_0 is h_(t-1) of the first step: saved, not counted twice
    assert terms["input projection"] == 160 * 3 * 8 * 4
    assert terms["layer output"] == 160 * 8 * 4
    assert m.phase == "end of forward"


def test_rnn_keeps_h_T_as_well():
    m = memory_model(RNN, pc.Workload(16, 10, mode="training"), NATIVE)
    # tanh keeps every h_t (N·R) and the first GEMM keeps h_0 (B·R)
    assert _by_item(m)["saved activations, layer 0"] == (160 * 8 + 16 * 8) * 4


def test_second_layer_keeps_its_input():
    gru2 = pc.RecurrentSpec("gru", 4, 8, num_layers=2)
    terms = _by_item(memory_model(gru2, pc.Workload(16, 10, mode="training"), NATIVE))
    assert terms["layer 1 input"] == 160 * 8 * 4
    assert terms["saved activations, layer 1"] == terms["saved activations, layer 0"]


def test_reference_tables_by_family():
    wl = pc.Workload(16, 10, mode="training")
    peep = _by_item(memory_model(pc.RecurrentSpec("lstm", 4, 8, peephole=True), wl, REFERENCE))
    # h_(t-1) + 6·Dh per token, and c_0 apart for the peepholes
    assert peep["saved activations, layer 0"] == (160 * (8 + 6 * 8) + 16 * 8) * 4
    mgu = _by_item(memory_model(pc.RecurrentSpec("mgu", 4, 8), wl, REFERENCE))
    assert mgu["saved activations, layer 0"] == (160 * (8 + 4 * 8) - 2 * 16 * 8) * 4


def test_good_ld_and_onednn_workspace_by_hand():
    assert good_ld(256, 4) == 272  # 256 is a multiple of 256: one more 64-byte line
    assert good_ld(1024, 4) == 1040
    assert good_ld(100, 4) == 112
    assert good_ld(5, 4) == 16
    assert good_ld(100, 2) == 128
    t, b, d, h = 3, 2, 5, 7
    ld = good_ld(7, 4)  # 16
    regions = [t * b * good_ld(28, 4) * 4, t * b * ld * 4, 2 * 4 * b * ld * 4, 2 * 4 * b * 7 * 4]
    regions += [2 * 4 * b * ld * 4] * 2 + [2 * 4 * b * 7 * 4]
    assert all(r < 4096 for r in regions)  # each region starts a page: 7 pages
    assert onednn_workspace_bytes(t, b, d, h) == 7 * 4096


def test_onednn_training_terms():
    lstm = pc.RecurrentSpec("lstm", 64, 256)
    wl = pc.Workload(32, 100, mode="training")
    m = memory_model(lstm, wl, ONEDNN)
    terms = _by_item(m)
    n = 32 * 100
    # forward part of the workspace: gates T·B·ld(4Dh) and c_t (T+1)·B·Dh, fp32
    assert terms["oneDNN workspace (forward part), layer 0"] == (n * 1040 + 101 * 32 * 256) * 4
    assert terms["layer output, layer 0"] == n * 256 * 4
    assert m.phase == "backward of layer 0"
    assert terms["oneDNN scratchpad (backward)"] == n * 1040 * 4
    assert terms["oneDNN diff states"] == (3 * 101 * 32 * 272 + 101 * 32 * 256) * 4


def test_adam_is_outside_the_peak():
    wl = pc.Workload(2, 3, mode="training")
    m = memory_model(RNN, wl, NATIVE, optimizer="adam")
    assert m.optimizer_bytes == 2 * 112 * 4
    assert m.peak_bytes == memory_model(RNN, wl, NATIVE).peak_bytes
    rows = m.table().rows
    assert rows[-1][0] == "training with Adam" and rows[-1][2] == m.peak_bytes + m.optimizer_bytes
    assert memory_model(RNN, WL, NATIVE, optimizer="adam").optimizer_bytes == 0  # inference: no optimizer


@pytest.mark.parametrize(
    "cell,kw,wl,device,caps,expected",
    [
        ("lstm", {}, pc.Workload(2, 3), "cpu", {}, ONEDNN),
        ("lstm", {"proj_size": 4}, pc.Workload(2, 3), "cpu", {}, NATIVE),
        ("lstm", {}, pc.Workload.packed([3, 2]), "cpu", {}, NATIVE),
        ("lstm", {}, pc.Workload(2, 3, dtype="bf16"), "cpu", {}, NATIVE),
        ("lstm", {}, pc.Workload(2, 3, dtype="bf16"), "cpu", {"onednn_bf16": True}, ONEDNN),
        ("lstm", {}, pc.Workload(2, 3, dtype="fp16"), "cpu", {"onednn_fp16": True}, ONEDNN),
        ("lstm", {}, pc.Workload(2, 3, dtype="fp16", mode="training"), "cpu", {"onednn_fp16": True}, NATIVE),
        ("lstm", {}, pc.Workload(2, 3), "cpu", {"onednn": False}, NATIVE),
        ("gru", {}, pc.Workload(2, 3), "cpu", {}, NATIVE),
        ("lstm_cell", {}, pc.Workload(2, 3), "cpu", {}, NATIVE),
        ("lstm", {"peephole": True}, pc.Workload(2, 3), "cuda", {}, REFERENCE),
        ("gru", {}, pc.Workload.packed([3, 2]), "cuda", {}, CUDNN),
        ("gru", {}, pc.Workload(2, 3), "cuda", {"cudnn": False}, NATIVE),
        ("gru_cell", {}, pc.Workload(2, 3), "cuda", {}, FUSED_CELL),
        ("rnn_cell", {}, pc.Workload(2, 3), "cuda", {}, NATIVE),
        ("lstm", {}, pc.Workload(2, 3), "mps", {}, NATIVE),
    ],
)
def test_path_rules(cell, kw, wl, device, caps, expected):
    assert predict_path(pc.RecurrentSpec(cell, 4, 8, **kw), wl, device, **caps) == expected


def test_unknown_path_is_modelled_as_native():
    m = memory_model(RNN, WL, "MPS")
    assert m.path == "MPS" and m.notes and m.peak_bytes == peak_bytes(RNN, WL, NATIVE)


def test_cuda_paths_give_a_peak():
    for cell in ("lstm", "gru_cell"):
        spec = pc.RecurrentSpec(cell, 4, 8)
        for mode in ("inference", "training"):
            wl = pc.Workload(2, 3, mode=mode)
            m = memory_model(spec, wl, device_type="cuda")
            assert m.path in (CUDNN, FUSED_CELL) and m.peak_bytes > m.bytes_of("resident") > 0


def test_cost_memory_view_shows_the_model():
    r = pc.cost(pc.RecurrentSpec("lstm", 28, 256), pc.Workload(64, 28, mode="training"))
    table = r.table("memory")
    assert table.names == ["item", "elements", "bytes", "assumption"]
    items = table.column("item")
    assert "Adam moments" in items and "peak of one call" in items and items[-1] == "training with Adam"
    m = memory_model(r.spec, r.workload, optimizer="adam")
    assert r.training_bytes == m.peak_bytes + m.optimizer_bytes
    assert r.inference_bytes == memory_model(r.spec, pc.Workload(64, 28)).peak_bytes
    assert r.activation_bytes == m.bytes_of("kept")
