"""Reading layers back from a state dict's names and shapes alone (no torch needed).

The shapes are written out by hand here, or taken from a spec's rows and read back as that spec
(or, where the tensors cannot tell them apart, a spec with the same tensors, named in the note).
"""

from __future__ import annotations

import pytest

import paramcalc as pc
from paramcalc.bridge.statedict import canonical_name, infer_components

S = pc.RecurrentSpec


def test_canonical_names():
    assert canonical_name("rnn.weight_hh_l0_raw") == "rnn.weight_hh_l0"
    assert canonical_name("conv.weight_orig") == "conv.weight"
    assert canonical_name("a.parametrizations.weight.original") == "a.weight"
    assert canonical_name("parametrizations.weight.original0") == "weight"
    assert canonical_name("rnn.weight_hh_l0") == "rnn.weight_hh_l0"


def test_hand_written_lstm_with_peepholes():
    shapes = {
        "enc.weight_ih_l0": (28, 5),  # 4 blocks of 7
        "enc.weight_hh_l0": (28, 7),
        "enc.bias_ih_l0": (28,),
        "enc.bias_hh_l0": (28,),
        "enc.weight_ci_l0": (7,),
        "enc.weight_cf_l0": (7,),
        "enc.weight_co_l0": (7,),
    }
    (layer,) = infer_components(shapes)
    assert layer.prefix == "enc" and layer.type_name == "LSTM"
    assert layer.component.spec == S("lstm", 5, 7, peephole=True)


def test_hand_written_indrnn():
    (layer,) = infer_components({"weight_ih_l0": (7, 5), "weight_hh_l0": (7,), "bias_ih_l0": (7,)})
    assert layer.component.spec == S("indrnn", 5, 7)


@pytest.mark.parametrize(
    "spec",
    [
        S("lstm", 5, 7, bias_vectors=1),
        S("cifg", 5, 7),
        S("mgu", 5, 7, num_layers=2),
        S("mingru", 5, 7, bidirectional=True),
        S("minlstm", 5, 7),
        S("indrnn", 5, 7, bias=False),
        S("lstm", 5, 7, num_layers=2, bidirectional=True, proj_size=3, peephole=True),
        S("lstm", 5, 7, num_layers=2, bidirectional=True, merge_mode="sum"),
    ],
    ids=lambda s: s.describe(),
)
def test_newer_layouts_read_back_as_themselves(spec):
    shapes = {f"m.{r.name}": r.shape for r in pc.count(spec).rows}
    (layer,) = infer_components(shapes)
    assert layer.component is not None and layer.component.spec == spec


@pytest.mark.parametrize(
    "spec, read_as, note",
    [
        # the tensors cannot tell the merge apart: sum, ave and mul all hand Dh on
        (S("gru", 5, 7, num_layers=2, bidirectional=True, merge_mode="ave"), "sum", "directions merged"),
        # nor the GRU's form: the reset gate moves, the weights do not
        (S("gru", 5, 7, reset_after=False), "gru", "gru or cifg: the same tensors"),
        # a CIFG without peepholes has a one-bias GRU's three blocks
        (S("cifg", 5, 7, peephole=False), "gru", "gru or cifg: the same tensors"),
    ],
)
def test_ambiguous_tensors_are_named_in_the_note(spec, read_as, note):
    shapes = {r.name: r.shape for r in pc.count(spec).rows}
    (layer,) = infer_components(shapes)
    got = layer.component.spec
    assert read_as in (got.cell, got.merge_mode)
    assert pc.total_params(got) == pc.total_params(spec)
    assert note in layer.note


def test_common_layers_and_unknown_tensors():
    layers = infer_components(
        {
            "emb.weight": (100, 16),
            "proj.weight": (8, 16),
            "proj.bias": (8,),
            "conv.weight": (4, 8, 3),
            "bn.weight": (4,),
            "bn.bias": (4,),
            "bn.running_mean": (4,),
            "bn.running_var": (4,),
            "bn.num_batches_tracked": (),
            "norm.weight": (4,),
            "pos": (2, 3, 4),
        }
    )
    kinds = {i.prefix: i.type_name for i in layers}
    assert kinds == {
        "emb": "Embedding",
        "proj": "Linear",
        "conv": "Conv1d",
        "bn": "BatchNorm1d",
        "norm": "LayerNorm",
        "": "unknown",
    }
    by = {i.prefix: i for i in layers}
    assert by["proj"].component.params == 8 * 16 + 8
    assert by["conv"].component.params == 4 * 8 * 3  # groups=1 assumed, said in the note
    assert "groups=1 assumed" in by["conv"].note
    assert by["norm"].note.startswith("weight only")


def test_contradicting_shapes_are_not_read_as_a_layer():
    (layer,) = infer_components({"weight_ih_l0": (28, 5), "weight_hh_l0": (28, 6)})  # 4·7 rows, 6 columns
    assert layer.component is None and layer.note.startswith("not read as a layer: no registered cell")
    (mixed,) = infer_components({"weight_ih": (28, 5), "weight_hh_l0": (28, 7)})
    assert "cell-style and stack-style recurrent names mixed" in mixed.note


def test_hand_written_indrnn_with_two_bias_vectors():
    # a recurrent bias beside nn.Linear's (third-party IndRNN modules): W, u, b_ih, b_hh
    shapes = {"weight_ih_l0": (7, 5), "weight_hh_l0": (7,), "bias_ih_l0": (7,), "bias_hh_l0": (7,)}
    (layer,) = infer_components(shapes)
    assert layer.component.spec == S("indrnn", 5, 7, bias_vectors=2)
