"""Work grows linearly with layers and components (issue 22: the memory model and the graph
wiring were quadratic; ``cost -L 10000`` and a 10,000-component TOML never answered).

Work is counted as Python calls (``tests.helpers.python_calls``), never timed: doubling the size
must at most about double the count (a quadratic loop quadruples it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import paramcalc as pc
from paramcalc.core.architecture import load_architecture
from paramcalc.core.memory import memory_model
from tests.helpers import invoke, python_calls

#: Doubling the size may cost at most this factor (linear: 2 plus fixed costs; quadratic: ~4).
LINEAR = 2.3


def _ratio(work: object, small: int) -> float:
    assert callable(work)
    return python_calls(lambda: work(2 * small)) / python_calls(lambda: work(small))


@pytest.mark.parametrize(
    ("cell", "mode", "path"),
    [
        ("rnn", "training", None),  # native: ATen's loop
        ("rnn", "inference", None),
        ("lstm", "training", None),  # oneDNN
        ("lstm", "training", "reference"),
        ("mgu", "training", None),  # reference module
        ("gru", "training", "cuDNN"),
    ],
)
def test_the_memory_model_is_linear_in_layers(cell: str, mode: str, path: str | None) -> None:
    def work(layers: int) -> None:
        spec = pc.RecurrentSpec(cell, 4, 4, num_layers=layers, bidirectional=True)
        memory_model(spec, pc.Workload(batch=2, seq_len=3, mode=mode), path, optimizer="adam")

    assert _ratio(work, 300) < LINEAR


@pytest.mark.parametrize("view", ["total", "gemm", "memory", "layer"])
def test_cost_is_linear_in_layers(view: str) -> None:
    def work(layers: int) -> None:
        spec = pc.RecurrentSpec("lstm", 4, 4, num_layers=layers, proj_size=2)
        pc.cost(spec, pc.Workload(batch=3, seq_len=3, lengths=(3, 2, 2), mode="training")).table(view)

    assert _ratio(work, 300) < LINEAR


def test_cost_of_10000_layers_answers_with_figures_derived_by_hand() -> None:
    # RNN(4, 4, num_layers=10000): every layer has W_ih 4·4, W_hh 4·4, b_ih 4, b_hh 4 = 40
    args = ("-d", "4", "-H", "4", "-L", "10000", "--by", "total", "--train", "-f", "json")
    result = invoke("cost", "rnn", *args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["param_bytes"] == 10_000 * 40 * 4  # fp32
    assert data["macs_per_step"] == 10_000 * (16 + 16)  # x·W_ihᵀ and h·W_hhᵀ, 4·4 each
    assert data["critical_path_steps"] == 1 + 10_000 - 1  # T + L - 1
    spec = pc.RecurrentSpec("rnn", 4, 4, num_layers=10_000)
    training = memory_model(spec, pc.Workload(mode="training"))
    grads = {t.item: t for t in training.terms}["parameter gradients"]
    assert grads.elements == 10_000 * 40  # the peak is the backward of layer 0: every layer's .grad
    assert training.phase == "backward of layer 0"


def _chain_toml(path: Path, n: int) -> Path:
    lines = ['name = "chain"', "[[input]]", 'name = "x"', "size = 4"]
    for i in range(n):
        kind = "kind = 'lstm'\nhidden_size = 4" if i % 2 else "kind = 'linear'\nout_features = 4"
        lines += ["[[component]]", f'name = "c{i}"', kind]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_graph_wiring_is_linear_in_components(tmp_path: Path) -> None:
    files = {n: _chain_toml(tmp_path / f"chain{n}.toml", n) for n in (300, 600)}
    assert _ratio(lambda n: load_architecture(files[n]), 300) < LINEAR


def test_a_10000_component_architecture_answers_with_its_count(tmp_path: Path) -> None:
    path = _chain_toml(tmp_path / "chain.toml", 10_000)
    result = invoke("report", str(path), "--by", "total", "-f", "json")
    assert result.exit_code == 0, result.output
    # 5,000 Linear(4, 4): 16 + 4 = 20; 5,000 LSTM(4, 4): 4·(4·4 + 4·4 + 2·4) = 160
    assert pc.count_architecture(load_architecture(path)).total == 5_000 * 20 + 5_000 * 160
