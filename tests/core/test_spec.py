"""RecurrentSpec: validation (one line naming the field and the rule) and the layout knobs."""

from __future__ import annotations

import pytest

import paramcalc as pc
from paramcalc import ParamcalcError, RecurrentSpec


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(cell="lstm", input_size=0, hidden_size=4), "input_size must be a positive integer, got 0"),
        (dict(cell="lstm", input_size=4, hidden_size=-3), "hidden_size must be a positive integer"),
        (dict(cell="lstm", input_size=4.5, hidden_size=4), "input_size must be an integer, got 4.5"),
        (dict(cell="lstm", input_size=4, hidden_size=2**40), "hidden_size must be at most 2,147,483,647"),
        (dict(cell="lstm", input_size=4, hidden_size=10**40), "got a 41-digit number"),
        (dict(cell="lstm", input_size=4, hidden_size=4, num_layers=0), "num_layers must be a positive"),
        (
            dict(cell="lstm", input_size=4, hidden_size=4, num_layers=10_001),
            "num_layers must be at most 10,000",
        ),
        (dict(cell="lstm", input_size=4, hidden_size=4, num_layers=True), "num_layers must be an integer"),
        (
            dict(cell="lstm", input_size=4, hidden_size=4, bidirectional=1),
            "bidirectional must be True or False",
        ),
        (dict(cell="transformer", input_size=4, hidden_size=4), "unknown cell 'transformer'"),
        (
            dict(cell="gru", input_size=4, hidden_size=8, proj_size=2),
            "proj_size is only supported for lstm, not gru",
        ),
        (dict(cell="lstm_cell", input_size=4, hidden_size=8, proj_size=2), "not lstm_cell"),
        (dict(cell="lstm", input_size=4, hidden_size=8, proj_size=8), "proj_size has to be smaller"),
        (dict(cell="lstm", input_size=4, hidden_size=8, proj_size=-1), "proj_size must be an integer >= 0"),
        (
            dict(cell="lstm_cell", input_size=4, hidden_size=8, num_layers=2),
            "single-step cell: num_layers must be 1",
        ),
        (dict(cell="gru_cell", input_size=4, hidden_size=8, bidirectional=True), "no bidirectional form"),
        (
            dict(cell="lstm", input_size=4, hidden_size=8, convention="tf"),
            "convention must be one of torch, keras",
        ),
        (
            dict(cell="lstm", input_size=4, hidden_size=8, proj_size=2, convention="keras"),
            "no Keras equivalent",
        ),
        (
            dict(cell="lstm", input_size=4, hidden_size=8, reset_after=False),
            "reset_after applies only to GRU",
        ),
        (dict(cell="mgu", input_size=4, hidden_size=8, reset_after=False), "not mgu"),
        (dict(cell="gru", input_size=4, hidden_size=8, peephole=True), "peephole connections exist only for"),
        (dict(cell="lstm", input_size=4, hidden_size=8, merge_mode="sum"), "only to bidirectional stacks"),
        (
            dict(cell="lstm", input_size=4, hidden_size=8, merge_mode="max"),
            "merge_mode must be one of concat",
        ),
        (dict(cell="lstm", input_size=4, hidden_size=8, bias_vectors=3), "bias_vectors must be at most 2"),
        (dict(cell="lstm", input_size=4, hidden_size=8, bias=False, bias_vectors=1), "use bias_vectors=0"),
        (dict(cell="mingru", input_size=4, hidden_size=8, bias_vectors=2), "mingru takes 0, 1 bias vectors"),
    ],
)
def test_validation_names_field_and_rule(kwargs, needle):
    with pytest.raises(ParamcalcError) as info:
        RecurrentSpec(**kwargs)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_the_peephole_message_lists_the_cells_that_have_them():
    with pytest.raises(ParamcalcError) as info:
        RecurrentSpec("gru", 4, 8, peephole=True)
    assert str(info.value) == "peephole connections exist only for lstm, lstm_cell, cifg, not gru"


def test_spec_is_frozen_and_normalised():
    s = RecurrentSpec("RNN_TANH", 3, 4)
    assert s.cell == "rnn" and s.cell_type is pc.get_cell("rnn")
    with pytest.raises(AttributeError):
        s.hidden_size = 5  # type: ignore[misc]
    assert s == RecurrentSpec("rnn", 3, 4)
    assert RecurrentSpec("lstm", 4, 8.0).hidden_size == 8  # an exact float is an int
    assert RecurrentSpec("lstm", 4, 8, convention=" Keras ").convention == "keras"


@pytest.mark.parametrize(
    "kwargs, bias_vectors",
    [
        (dict(cell="lstm"), 2),  # PyTorch: b_ih and b_hh
        (dict(cell="lstm", bias=False), 0),
        (dict(cell="lstm", convention="keras"), 1),  # Keras: one bias
        (dict(cell="gru", convention="keras"), 2),  # Keras GRU(reset_after=True): input + recurrent bias
        (dict(cell="gru", convention="keras", reset_after=False), 1),
        (dict(cell="cifg"), 1),  # Greff et al.
        (dict(cell="mgu"), 1),  # Zhou et al.
        (dict(cell="indrnn"), 1),  # Li et al.
        (dict(cell="mingru"), 1),  # Feng et al.: nn.Linear per block
        (dict(cell="lstm", bias_vectors=1), 1),
        (dict(cell="gru", bias_vectors=0), 0),
    ],
)
def test_default_bias_vectors(kwargs, bias_vectors):
    s = RecurrentSpec(input_size=4, hidden_size=8, **kwargs)
    assert s.bias_vectors == bias_vectors and s.bias == (bias_vectors > 0)


def test_peephole_defaults():
    assert RecurrentSpec("cifg", 4, 8).peephole is True  # Greff et al.'s CIFG has peepholes
    assert RecurrentSpec("lstm", 4, 8).peephole is False
    assert RecurrentSpec("cifg", 4, 8, peephole=False).peephole is False


def test_reset_before_gru_is_allowed_under_torch_names():
    s = RecurrentSpec("gru", 4, 8, reset_after=False)
    assert s.convention == "torch" and s.bias_vectors == 2 and not s.reset_after
    assert s.describe() == "GRU(4, 8, reset_after=False)"


@pytest.mark.parametrize(
    "spec, label",
    [
        (RecurrentSpec("lstm", 28, 256, num_layers=2), "LSTM(28, 256, num_layers=2)"),
        (RecurrentSpec("rnn_relu", 5, 7), "RNN(5, 7, nonlinearity='relu')"),
        (RecurrentSpec("rnn_relu_cell", 5, 7), "RNNCell(5, 7, nonlinearity='relu')"),
        (RecurrentSpec("lstm", 4, 8, bias=False), "LSTM(4, 8, bias=False)"),
        (RecurrentSpec("lstm", 4, 8, bias_vectors=1, proj_size=2), "LSTM(4, 8, bias_vectors=1, proj_size=2)"),
        (RecurrentSpec("lstm", 4, 8, peephole=True), "LSTM(4, 8, peephole=True)"),
        (RecurrentSpec("cifg", 4, 8), "CIFG(4, 8)"),
        (RecurrentSpec("cifg", 4, 8, peephole=False), "CIFG(4, 8, peephole=False)"),
        (
            RecurrentSpec("gru", 4, 8, bidirectional=True, merge_mode="ave"),
            "GRU(4, 8, bidirectional=True, merge_mode='ave')",
        ),
        (RecurrentSpec("lstm", 4, 8, convention="keras"), "keras LSTM(4, 8)"),
        (RecurrentSpec("gru", 4, 8, convention="keras"), "keras GRU(4, 8, reset_after=True)"),
        (RecurrentSpec("gru_cell", 4, 8, convention="keras"), "keras GRUCell(4, 8, reset_after=True)"),
        (RecurrentSpec("rnn", 4, 8, convention="keras"), "keras SimpleRNN(4, 8)"),
    ],
)
def test_describe(spec, label):
    assert spec.describe() == label


def test_layer_input_and_output_sizes():
    concat = RecurrentSpec("lstm", 10, 8, num_layers=3, bidirectional=True, proj_size=3)
    assert concat.output_size == 3 and concat.stack_output_size == 6
    assert [concat.layer_input_size(k) for k in range(3)] == [10, 6, 6]
    merged = RecurrentSpec("lstm", 10, 8, num_layers=3, bidirectional=True, merge_mode="sum")
    assert merged.stack_output_size == 8 and merged.layer_input_size(1) == 8


def test_replace_revalidates_and_layout_knobs_follow_a_new_cell():
    s = RecurrentSpec("cifg", 4, 8)
    lstm = s.replace(cell="lstm")
    assert (lstm.bias_vectors, lstm.peephole) == (2, False)  # LSTM's own defaults, not CIFG's
    assert lstm.replace(cell="cifg").peephole is True
    kept = RecurrentSpec("lstm", 4, 8, bias_vectors=1).replace(hidden_size=16)
    assert kept.bias_vectors == 1 and kept.hidden_size == 16
    with pytest.raises(ParamcalcError, match="proj_size has to be smaller"):
        RecurrentSpec("lstm", 4, 8, proj_size=4).replace(hidden_size=4)


def test_to_dict_round_trips():
    s = RecurrentSpec("gru", 4, 8, num_layers=2, bidirectional=True, merge_mode="mul", bias_vectors=1)
    d = s.to_dict()
    assert "cell_type" not in d and d["merge_mode"] == "mul"
    assert RecurrentSpec(**d) == s
