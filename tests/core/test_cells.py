"""The cell registry: built-in entries against the papers' equations, lookup, registration.

Gate blocks and elementwise ops per unit are counted here from the update equations (written in
each test), not read back from the registry.
"""

from __future__ import annotations

import dataclasses

import pytest

import paramcalc as pc
from paramcalc.core.cells import ALIASES, CELLS, CellType, gated_templates


@pytest.fixture
def registry():
    """Restore the registry after a test that registers or removes cells."""
    cells, aliases = dict(CELLS), dict(ALIASES)
    yield
    CELLS.clear()
    CELLS.update(cells)
    ALIASES.clear()
    ALIASES.update(aliases)


def test_builtin_cells_in_order():
    assert list(pc.CELLS) == [
        "rnn",
        "rnn_relu",
        "lstm",
        "gru",
        "rnn_cell",
        "rnn_relu_cell",
        "lstm_cell",
        "gru_cell",
        "cifg",
        "mgu",
        "indrnn",
        "mingru",
        "minlstm",
    ]


@pytest.mark.parametrize(
    "cell, gates",
    [
        ("rnn", ("h",)),
        ("lstm", ("i", "f", "g", "o")),  # PyTorch's row order of weight_ih
        ("gru", ("r", "z", "n")),
        ("cifg", ("i", "g", "o")),  # Greff et al.: f = 1 - i has no weights of its own
        ("mgu", ("f", "n")),  # Zhou et al.: one forget gate and the candidate
        ("indrnn", ("h",)),
        ("mingru", ("z", "n")),  # Feng et al.: z and the candidate
        ("minlstm", ("f", "i", "n")),  # Feng et al.: f, i and the candidate
    ],
)
def test_gate_blocks(cell, gates):
    ct = pc.get_cell(cell)
    assert ct.gate_names == gates and ct.gates == len(gates)


@pytest.mark.parametrize(
    "cell, per_unit",
    [
        # RNN: the sum joining the two matmuls + the activation
        ("rnn", 1 + 1),
        ("rnn_relu", 1 + 1),
        # LSTM: 4 joining sums, 3 σ, tanh(g), c = f⊙c + i⊙g (2 ⊙ 1 +), h = o⊙tanh(c) (tanh, ⊙)
        ("lstm", 4 + 3 + 1 + 3 + 2),
        # GRU: 3 joining sums, 2 σ, tanh, r⊙(...), (1 - z)⊙n + z⊙h (1 -, 2 ⊙, 1 +)
        ("gru", 3 + 2 + 1 + 1 + 4),
        # CIFG: 3 joining sums, 2 σ, tanh(g), f = 1 - i, c (2 ⊙ 1 +), h (tanh, ⊙)
        ("cifg", 3 + 2 + 1 + 1 + 3 + 2),
        # MGU: 2 joining sums, σ, f⊙h, tanh, (1 - f)⊙h + f⊙n (1 -, 2 ⊙, 1 +)
        ("mgu", 2 + 1 + 1 + 1 + 4),
        # IndRNN: u⊙h, the joining sum, ReLU
        ("indrnn", 1 + 1 + 1),
        # minGRU: σ(z), (1 - z)⊙h + z⊙n (1 -, 2 ⊙, 1 +)
        ("mingru", 1 + 4),
        # minLSTM: 2 σ, f + i, 2 divisions, f'⊙h + i'⊙n (2 ⊙, 1 +)
        ("minlstm", 2 + 1 + 2 + 3),
    ],
)
def test_elementwise_ops_per_unit_from_the_equations(cell, per_unit):
    assert sum(n for _, n in pc.get_cell(cell).elementwise_ops) == per_unit


def test_peepholes_add_a_product_and_a_sum_per_gate():
    spec = pc.RecurrentSpec("lstm", 2, 3, peephole=True)
    ops = dict(spec.cell_type.ops_for(spec))
    base = dict(pc.get_cell("lstm").elementwise_ops)
    assert ops["mul"] == base["mul"] + 3 and ops["add"] == base["add"] + 3  # on i, f and o


@pytest.mark.parametrize(
    "cell, kind",
    [("lstm", "gemm"), ("indrnn", "diagonal"), ("mingru", "none"), ("minlstm", "none"), ("mgu", "gemm")],
)
def test_recurrent_weight_kind(cell, kind):
    ct = pc.get_cell(cell)
    kinds = {t.kind for t in ct.templates}
    found = "gemm" if "recurrent" in kinds else "diagonal" if "recurrent_diag" in kinds else "none"
    assert found == kind
    assert ct.recurrent_gemm == (kind == "gemm")


def test_scan_cells_are_the_linear_recurrences():
    assert sorted(c.name for c in CELLS.values() if c.recurrence == "scan") == ["mingru", "minlstm"]


def test_torch_bindings():
    assert pc.get_cell("lstm").torch.mode == "LSTM" and pc.get_cell("lstm").torch.runner == "stack"
    assert pc.get_cell("rnn_relu").torch.mode == "RNN_RELU"
    cell = pc.get_cell("rnn_relu_cell")
    assert (cell.torch.nn_class, cell.torch.nonlinearity, cell.torch.runner) == ("RNNCell", "relu", "cell")
    for name in ("cifg", "mgu", "indrnn", "mingru", "minlstm"):
        assert pc.get_cell(name).torch.nn_class is None  # built as paramcalc's reference module


@pytest.mark.parametrize(
    "name, canonical",
    [
        ("RNN_TANH", "rnn"),
        ("rnn-tanh", "rnn"),
        (" LSTM ", "lstm"),
        ("Rnn-Relu", "rnn_relu"),
        ("rnn_tanh_cell", "rnn_cell"),
        ("minGRU", "mingru"),
    ],
)
def test_lookup_is_case_and_dash_insensitive(name, canonical):
    assert pc.get_cell(name).name == canonical


def test_unknown_cell_lists_the_known_ones():
    with pytest.raises(pc.ParamcalcError) as info:
        pc.get_cell("transformer")
    msg = str(info.value)
    assert msg.startswith("unknown cell 'transformer': expected one of rnn, rnn_relu, lstm")
    assert "minlstm" in msg and "rnn_tanh" in msg and "\n" not in msg


def test_register_a_cell_then_count_and_remove_it(registry):
    # a "gated RNN" with two blocks and one bias vector: params = 2(Dh·d + Dh·Dh + Dh)
    cell = CellType(
        name="Two-Gate",
        family="twogate",
        gate_names=("a", "b"),
        templates=gated_templates(bias_vectors=1),
        equations=("h_t = ...",),
        display_name="TwoGate",
        default_bias_vectors=1,
        aliases=("tg",),
    )
    registered = pc.register_cell(cell)
    assert registered.name == "two_gate"
    spec = pc.RecurrentSpec("tg", 3, 4)
    assert spec.cell == "two_gate"
    assert pc.count(spec).total == 2 * (4 * 3 + 4 * 4 + 4) == 64
    with pytest.raises(pc.ParamcalcError, match="already registered"):
        pc.register_cell(cell)
    pc.unregister_cell("tg")
    with pytest.raises(pc.ParamcalcError, match="unknown cell 'tg'"):
        pc.get_cell("tg")


def test_register_rejects_what_is_not_a_cell(registry):
    with pytest.raises(pc.ParamcalcError, match="register_cell needs a CellType, got str"):
        pc.register_cell("lstm")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"templates": ()}, "the first tensor template must be the input weight"),
        ({"bias_vectors_allowed": (0, 1), "default_bias_vectors": 2}, "default_bias_vectors not in"),
    ],
)
def test_cell_type_validates_itself(changes, needle):
    with pytest.raises(pc.ParamcalcError, match=needle):
        dataclasses.replace(pc.get_cell("rnn"), **changes)


def test_an_alias_cannot_take_over_a_registered_name(registry):
    rogue = dataclasses.replace(pc.get_cell("rnn"), name="rogue", aliases=("lstm",))
    with pytest.raises(pc.ParamcalcError):
        pc.register_cell(rogue)
    assert pc.get_cell("lstm").name == "lstm"


def test_an_alias_cannot_take_over_an_existing_alias(registry):
    rogue = dataclasses.replace(pc.get_cell("rnn"), name="rogue", aliases=("rnn_tanh",))
    try:
        pc.register_cell(rogue)
    except pc.ParamcalcError:
        pass
    else:
        pc.unregister_cell("rogue")
    assert pc.get_cell("rnn_tanh").name == "rnn"


# --- re-registering a cell: every count computed after the change follows it ----------------


def _gated(gates: tuple[str, ...]) -> CellType:
    return CellType(
        name="regate",
        gate_names=gates,
        templates=gated_templates(bias_vectors=1),
        equations=("h_t = ...",),
        display_name="Regate",
        default_bias_vectors=1,
        elementwise_ops=(("add", 2), ("sigmoid", 1)),
    )


def test_re_registering_a_cell_changes_every_count_that_depends_on_it(registry, tmp_path):
    from paramcalc.core.architecture import architecture_from_dict, count_architecture, with_head
    from paramcalc.core.costmodel import cost
    from paramcalc.core.explain import explain
    from paramcalc.core.params import total_params
    from paramcalc.core.solver import largest_hidden

    toml = {
        "input": [{"name": "x", "size": 4}],
        "component": [{"name": "rnn", "kind": "regate", "hidden_size": 8}],
    }

    def everything() -> dict[str, int]:
        spec = pc.RecurrentSpec("regate", 4, 8)
        return {
            "count": pc.count(spec).total,
            "count by name": pc.count("regate", 4, 8).total,
            "total_params": total_params(spec),
            "rows": sum(r.numel for r in pc.count(spec).rows),
            "with a head": pc.count("regate", 4, 8, head=2).total - (2 * 8 + 2),
            "architecture": count_architecture(with_head(spec, 2)).total - (2 * 8 + 2),
            "toml architecture": count_architecture(architecture_from_dict(toml)).total,
            "macs per step": cost(spec).macs_per_step + 8 * spec.gates,  # + the bias elements
            "explain": sum(r.numel for r in explain(spec).rows),
            "largest hidden 8 in budget": largest_hidden(spec, 312),
        }

    # per layer G(Dh·d + Dh·Dh + Dh) with d = 4, Dh = 8: 2 blocks 2·(32 + 64 + 8) = 208, 3 blocks 312
    pc.register_cell(_gated(("a", "b")))
    old_spec = pc.RecurrentSpec("regate", 4, 8)
    before = everything()
    assert {k: v for k, v in before.items() if k != "largest hidden 8 in budget"} == dict.fromkeys(
        [k for k in before if k != "largest hidden 8 in budget"], 208
    )
    assert before["largest hidden 8 in budget"] > 8  # 312 parameters buy more than Dh = 8 at 2 blocks
    pc.register_cell(_gated(("a", "b", "c")), replace_existing=True)
    after = everything()
    assert after == {**dict.fromkeys(after, 312), "largest hidden 8 in budget": 8}
    new_spec = pc.RecurrentSpec("regate", 4, 8)
    assert new_spec != old_spec and hash(new_spec) != hash(old_spec)  # the entry is in the identity
    assert old_spec.gates == 2 and pc.count(old_spec).total == 208  # a spec keeps the entry it was made with


# --- shape rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rule, needle",
    [
        (("G·Dh", "d - 1"), "the operator Sub is not allowed"),
        (("Dh // d",), "// divides by a positive integer only"),
        (("Dh·k",), "unknown size 'k': expected one of Dh, G, P, R, d"),
        (("2.5·Dh",), "2.5 is not a non-negative integer"),
        (("Dh if d else P",), "a condition must compare sizes"),
        (("abs(Dh)",), "the only functions are min(a, b, ...) and max(a, b, ...)"),
        (("Dh +",), "is not an expression of"),
        ("Dh", "shape_rule must be a tuple, got str"),
    ],
)
def test_a_shape_rule_outside_the_grammar_is_one_line(rule, needle):
    with pytest.raises(pc.ParamcalcError) as info:
        pc.TensorTemplate("w", "input", "w", "w", "x·W", shape_rule=rule)
    assert str(info.value).startswith("tensor template 'w': ") and needle in str(info.value)
    assert "\n" not in str(info.value)


def test_blocks_must_be_gate_blocks_of_the_cell():
    t = pc.TensorTemplate("b", "bias", "b", "b", "b", blocks=("x",))
    with pytest.raises(pc.ParamcalcError, match="template 'b' names blocks not in gate_names: x"):
        CellType(
            name="blocky",
            gate_names=("f", "r"),
            templates=(gated_templates()[0], t),
            equations=("h_t = ...",),
            display_name="Blocky",
            default_bias_vectors=1,
        )


def test_shape_rules_by_hand():
    """Every construct of the grammar, evaluated on sizes chosen so each branch shows."""
    cell = CellType(
        name="ruled",
        gate_names=("a", "b", "c"),
        templates=(
            pc.TensorTemplate("w", "input", "w", "w", "x·W", shape_rule=("d", "(3 if d == Dh else 4)·Dh")),
            pc.TensorTemplate("u", "recurrent_diag", "u", "u", "u ⊙ h", blocks=("b", "c")),
            pc.TensorTemplate("b", "bias", "b", "b", "b", blocks=("a",)),
            pc.TensorTemplate(
                "x",
                "recurrent",
                "x",
                "x",
                "h·X",
                shape_rule=("max(d, Dh) + 1", "(Dh + 15) // 16", "min(2, d)"),
            ),
        ),
        equations=("h_t = ...",),
        display_name="Ruled",
        default_bias_vectors=1,
    )
    pc.register_cell(cell)
    try:
        rows = pc.count(pc.RecurrentSpec("ruled", 5, 20)).rows
        assert [r.shape for r in rows] == [(5, 80), (40,), (20,), (21, 2, 2)]
        rows = pc.count(pc.RecurrentSpec("ruled", 20, 20, bias=False)).rows
        assert [r.shape for r in rows] == [(20, 60), (40,), (21, 2, 2)]
        assert rows[0].formula == "3d·Dh = 3·20·20"  # the branch taken for these sizes
    finally:
        pc.unregister_cell("ruled")


@pytest.mark.parametrize("name", list(CELLS))
def test_the_compiled_count_is_the_templates_evaluated(name):
    """The generated arithmetic against the rules evaluated node by node (two separate paths)."""
    from math import prod

    from paramcalc.core.params import dims, layer_params

    ct = pc.get_cell(name)
    for d, h, p in ((3, 5, 0), (17, 9, 4), (1, 1, 0)):
        for b in ct.bias_vectors_allowed:
            for peep in {ct.default_peephole, bool(ct.peephole_gates)}:
                proj = p if ct.projection and p < h else 0
                layers = 1 if ct.single_step else 2
                spec = pc.RecurrentSpec(
                    name, d, h, num_layers=layers, proj_size=proj, bias_vectors=b, peephole=peep
                )
                for layer in range(layers):
                    dm = dims(spec, layer)
                    slow = sum(prod(t.shape(dm)) for t in ct.templates if t.present(spec))
                    assert layer_params(spec, layer) == slow
