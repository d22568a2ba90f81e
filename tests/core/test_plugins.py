"""Cells from installed packages (``paramcalc.cells`` entry points) and the registry's checks.

Every plugin here is built by the ``plugins`` fixture (tests/conftest.py) in a temporary folder:
a module and a ``.dist-info`` with its entry points, found as an installed package's would be.
A plugin's failure is never silent: a name still unknown is a one-line error naming the plugin
(exit 2); a name found elsewhere works, with one ``warning:`` line naming what failed.
"""

from __future__ import annotations

import dataclasses

import pytest

import paramcalc as pc
from tests.helpers import invoke, one_line_error

#: A valid plugin cell: two gate blocks, one bias each; per layer 2(Dh·d + Dh·Dh + Dh).
TWO_GATE = """
import paramcalc as pc

CELL = pc.CellType(
    name="twogate",
    family="twogate",
    gate_names=("a", "b"),
    templates=pc.gated_templates(bias_vectors=1),
    equations=("h_t = a_t ⊙ h_(t-1) + b_t",),
    display_name="TwoGate",
    default_bias_vectors=1,
    elementwise_ops=(("add", 2), ("mul", 1), ("sigmoid", 2)),
    saved_per_unit=2,
)
"""


def two_gate_count(d: int, h: int) -> int:
    return 2 * (h * d + h * h + h)


def test_a_plugin_cell_counts_like_a_built_in_one(plugins):
    plugins({"pc_twogate": TWO_GATE}, {"twogate": "pc_twogate:CELL"})
    result = invoke("count", "twogate", "-d", "4", "-H", "5", "--by", "total")
    assert result.exit_code == 0, result.output
    assert f"total: {two_gate_count(4, 5):,} parameters" in result.stdout  # 2(20 + 25 + 5) = 100
    assert result.stderr == ""


def test_a_plugin_calling_sys_exit_is_named_never_silent(plugins):
    plugins({"pc_exits": "import sys\nsys.exit(0)\n"}, {"exiter": "pc_exits:CELL"})
    line = one_line_error(invoke("count", "exiter", "-d", "4", "-H", "4"))
    assert "unknown cell 'exiter'" in line
    assert "plugin 'exiter' (pc_exits:CELL) failed: it called sys.exit(0)" in line


def test_a_failed_plugin_is_a_warning_when_the_cell_asked_for_loads(plugins):
    plugins(
        {"pc_exits": "import sys\nsys.exit(0)\n", "pc_twogate": TWO_GATE},
        {"exiter": "pc_exits:CELL", "twogate": "pc_twogate:CELL"},
    )
    result = invoke("count", "twogate", "-d", "4", "-H", "5", "--by", "total")
    assert result.exit_code == 0, result.output
    assert f"total: {two_gate_count(4, 5):,} parameters" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: paramcalc plugin 'exiter'")
    assert "sys.exit(0)" in warnings[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "source, needle",
    [
        ("CELL = 'lstm'\n", "it gave a str, not a paramcalc.CellType"),
        ("def CELL():\n    raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"),
        ("import dataclasses, paramcalc as pc\nCELL = pc.get_cell('lstm')\n", "'lstm' is already registered"),
        (TWO_GATE.replace('gate_names=("a", "b")', "gate_names=()"), "at least one gate block"),
        (TWO_GATE.replace('("add", 2)', '("add", -5)'), "elementwise op 'add' must be an integer in 0..1000"),
    ],
)
def test_every_plugin_failure_names_the_plugin(plugins, source, needle):
    plugins({"pc_bad": source}, {"bad": "pc_bad:CELL"})
    line = one_line_error(invoke("solve", "bad", "-d", "4", "--budget", "1M"))
    assert "plugin 'bad' (pc_bad:CELL) failed" in line and needle in line
    assert pc.get_cell("lstm").gates == 4  # the built-in is untouched


def test_a_plugin_cell_is_a_kind_in_architecture_files(plugins, tmp_path):
    plugins({"pc_twogate": TWO_GATE}, {"twogate": "pc_twogate:CELL"})
    path = tmp_path / "arch.toml"
    path.write_text(
        '[[input]]\nname = "x"\nsize = 4\n'
        '[[component]]\nname = "rnn"\nkind = "twogate"\nhidden_size = 5\n'
        '[[component]]\nname = "head"\nkind = "linear"\nout_features = 3\n'
    )
    assert pc.count_architecture(pc.load_architecture(path)).total == two_gate_count(4, 5) + 5 * 3 + 3
    result = invoke("report", path, "--by", "total")
    assert result.exit_code == 0, result.output
    assert "118" in result.stdout  # 100 + Linear(5, 3): 15 + 3


def test_an_unknown_kind_in_an_architecture_names_a_failed_plugin(plugins, tmp_path):
    plugins({"pc_exits": "import sys\nsys.exit(3)\n"}, {"exiter": "pc_exits:CELL"})
    path = tmp_path / "arch.toml"
    path.write_text(
        '[[input]]\nname = "x"\nsize = 4\n[[component]]\nname = "r"\nkind = "exiter"\nhidden_size = 5\n'
    )
    line = one_line_error(invoke("report", path))
    assert "unknown kind 'exiter'" in line and "sys.exit(3)" in line


# --- the registry checks every entry (built-in, registered or from a plugin) ------------------


def _janetish(**changes):
    base = dict(
        name="checked",
        family="checked",
        gate_names=("f", "c"),
        templates=pc.gated_templates(bias_vectors=1),
        equations=("h_t = ...",),
        display_name="Checked",
        default_bias_vectors=1,
    )
    return pc.CellType(**{**base, **changes})


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"gate_names": ()}, "at least one gate block"),
        ({"gate_names": ("f", "f")}, "gate_names must be distinct"),
        ({"elementwise_ops": (("add", -1),)}, "elementwise op 'add' must be an integer in 0..1000"),
        ({"elementwise_ops": (("add", 1.5),)}, "must be an integer"),
        ({"elementwise_ops": ("add",)}, "must be (op name, count) pairs"),
        ({"saved_per_unit": -2}, "saved_per_unit must be an integer in 0..1000"),
        ({"bias_vectors_allowed": (0, 1, 2)}, "must be within 0..1: the bias templates hold 1"),
        ({"recurrence": "parallel"}, "recurrence must be one of sequential, scan"),
        ({"reset_before_blocks": 2}, "reset_before_blocks must be in 0..1"),
        ({"peephole_gates": ("i",)}, "must match peephole_gates"),
        ({"projection": True}, "projection=True needs a projection template"),
        ({"name": "two words"}, "is not a cell name"),
        ({"aliases": ("ok", "")}, "'' is not a cell name"),
        ({"state_names": ()}, "state_names must name at least the state h"),
        ({"torch": pc.TorchBinding(runner="loop")}, "torch.runner must be one of stack, cell"),
        ({"torch": pc.TorchBinding(reference="no_colon")}, "must read 'package.module:attribute'"),
    ],
)
def test_the_registry_refuses_entries_it_cannot_compute_with(changes, needle):
    with pytest.raises(pc.ParamcalcError) as info:
        _janetish(**changes)
    assert str(info.value).startswith(f"cell {changes.get('name', 'checked')!r}: ")
    assert needle in str(info.value)


def test_template_kinds_are_known():
    with pytest.raises(pc.ParamcalcError, match="unknown kind 'diagonal'"):
        pc.TensorTemplate("u", "diagonal", "u", "u", "u ⊙ h")  # type: ignore[arg-type]
    with pytest.raises(pc.ParamcalcError, match="index must be 0 or 1"):
        pc.TensorTemplate("b", "bias", "b", "b", "b", index=2)


def test_bias_vectors_allowed_defaults_to_the_bias_templates():
    assert _janetish().bias_vectors_allowed == (0, 1)
    two = _janetish(templates=pc.gated_templates(bias_vectors=2))
    assert two.bias_vectors_allowed == (0, 1, 2)
    # every built-in entry passes the same checks (they are made by the same constructor)
    assert all(dataclasses.replace(c) == c for c in pc.CELLS.values())
