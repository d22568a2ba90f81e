"""The extension API: a cell defined in the tests folder runs through every command.

Expected values are by hand from JANET's equations (two gate blocks, one bias each):
per layer 2(Dh·d + Dh·Dh + Dh).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import paramcalc as pc
from paramcalc.cli import cli
from tests.helpers import invoke, one_line_error
from tests.torch.janet_cell import JANET


@pytest.fixture
def janet():
    pc.register_cell(JANET)
    yield pc.get_cell("janet")
    pc.unregister_cell("janet")


def hand_count(d: int, h: int, layers: int) -> int:
    first = 2 * (h * d + h * h + h)
    rest = 2 * (h * h + h * h + h)
    return first + (layers - 1) * rest


def test_count_cost_solve(janet):
    spec = pc.RecurrentSpec("janet", 5, 7, num_layers=2)
    res = pc.count(spec)
    assert res.total == hand_count(5, 7, 2) == 2 * (35 + 49 + 7) + 2 * (49 + 49 + 7)
    assert [r.name for r in res.rows][:3] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0"]
    c = pc.cost(spec, pc.Workload(batch=3, seq_len=4))
    # GEMM MACs per token = weight elements: 2·7·5 + 2·7·7 (layer 0) + 2·7·7 + 2·7·7 (layer 1)
    assert c.macs_per_step == 70 + 98 + 98 + 98
    assert c.macs == c.macs_per_step * 12
    solved = pc.solve_budget(spec, hand_count(5, 7, 2))
    assert solved.rows[0].spec.hidden_size == 7


def test_check_bench_compare_through_the_api(janet):
    spec = pc.RecurrentSpec("janet", 5, 7, num_layers=2)
    checked = pc.check(spec, "cpu")
    assert checked.ok and checked.torch_total == hand_count(5, 7, 2)
    b = pc.bench(spec, pc.Workload(batch=2, seq_len=3), min_run_time=0.01)
    assert b.median_s > 0 and b.kernel_path == "reference"
    r = pc.compare(spec, ["janet", "lstm"], workload=pc.Workload(2, 3))
    assert [row.spec.cell for row in r.rows] == ["janet", "lstm"]
    fc = pc.flop_check(spec, pc.Workload(batch=2, seq_len=3, mode="training"))
    assert fc.ok is True  # FlopCounterMode on meta equals the cost model, forward and backward


def test_cli(janet):
    runner = CliRunner()
    out = runner.invoke(cli, ["count", "janet", "-d", "5", "-H", "7", "--by", "total", "-f", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["total"] == hand_count(5, 7, 1)
    for args in (
        ["check", "janet", "-d", "5", "-H", "7", "--device", "cpu"],
        ["cost", "janet", "-d", "5", "-H", "7", "--batch", "2", "--seq-len", "3", "--flop-check"],
        ["bench", "janet", "-d", "5", "-H", "7", "--batch", "2", "--seq-len", "3", "--min-time", "0.01"],
        ["compare", "-d", "5", "-H", "7", "--cells", "janet,gru", "--batch", "2", "--seq-len", "3"],
        ["explain", "janet", "-d", "5", "-H", "7"],
    ):
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, (args, res.output)


def test_registering_twice_or_a_bad_entry_is_one_line(janet):
    with pytest.raises(pc.ParamcalcError, match="already registered"):
        pc.register_cell(JANET)
    with pytest.raises(pc.ParamcalcError, match="CellType"):
        pc.register_cell("janet")  # type: ignore[arg-type]


# --- plugins whose torch module is broken (issue 22): the plugin is named, exit 2 -------------

PLUGIN_CELL = """
import dataclasses

from tests.helpers import invoke, one_line_error
from tests.torch.janet_cell import JANET

CELL = dataclasses.replace(JANET, name="{name}", torch=dataclasses.replace(JANET.torch, reference="{ref}"))
"""


@pytest.mark.parametrize(
    "module, what",
    [
        ("1 / 0\n", "failed to import: ZeroDivisionError: division by zero"),
        ("import sys\nsys.exit(0)\n", "failed to import: it called sys.exit(0)"),
        ("def build(spec, device, dtype):\n    raise TypeError('bad')\n", "failed to build: TypeError: bad"),
    ],
)
def test_a_plugin_cell_with_a_broken_module_names_it(plugins, module, what):
    plugins(
        {"pc_broken_ref": module, "pc_broken": PLUGIN_CELL.format(name="broken", ref="pc_broken_ref:build")},
        {"broken": "pc_broken:CELL"},
    )
    assert pc.count(pc.RecurrentSpec("broken", 5, 7)).total == hand_count(5, 7, 1)  # counting needs no module
    line = one_line_error(invoke("check", "broken", "-d", "5", "-H", "7", "--device", "cpu"))
    assert "cell broken: its module pc_broken_ref:build " + what in line
    assert "not of paramcalc" in line and "internal error" not in line


def test_a_plugin_cell_builds_in_an_architecture(plugins, tmp_path):
    plugins(
        {"pc_janet": PLUGIN_CELL.format(name="janet_plugin", ref="tests.torch.janet_cell:build")},
        {"janet_plugin": "pc_janet:CELL"},
    )
    path = tmp_path / "arch.toml"
    path.write_text(
        '[[input]]\nname = "x"\nsize = 5\n'
        '[[component]]\nname = "rnn"\nkind = "janet_plugin"\nhidden_size = 7\nnum_layers = 2\n'
        '[[component]]\nname = "head"\nkind = "linear"\nout_features = 3\n'
    )
    result = invoke("report", path, "--check", "--by", "total")
    assert result.exit_code == 0, result.output
    assert f"{hand_count(5, 7, 2) + 7 * 3 + 3:,}" in result.stdout


BROKEN_FORWARD = """
from tests.torch.janet_cell import build as janet_build


def build(spec, device, dtype):
    module = janet_build(spec, device, dtype)

    def forward(x):
        raise ValueError("forward is broken")

    module.forward = forward
    return module
"""


def test_a_plugin_module_failing_in_forward_is_named_not_an_internal_error(plugins):
    plugins(
        {"pc_fw_ref": BROKEN_FORWARD, "pc_fw": PLUGIN_CELL.format(name="fwbroken", ref="pc_fw_ref:build")},
        {"fwbroken": "pc_fw:CELL"},
    )
    args = ("fwbroken", "-d", "4", "-H", "4", "--batch", "2", "--seq-len", "3")
    line = one_line_error(invoke("cost", *args, "--flop-check"))
    assert line == (
        "Error: cell fwbroken: its module pc_fw_ref:build failed while running: ValueError: forward is "
        "broken (a problem of the package that registered the cell, not of paramcalc)"
    )


def test_a_step_function_runs_on_paramcalcs_reference_stack():
    """A cell may name only its step function: paramcalc's reference module builds the tensors
    from its templates, runs layers, directions and packed batches, and gives JanetStack's output."""
    import dataclasses

    import torch

    from paramcalc.bridge.modules import ReferenceRecurrent
    from tests.torch.janet_cell import JanetStack

    cell = dataclasses.replace(
        JANET, name="janet_step", torch=pc.TorchBinding(step="tests.torch.janet_cell:janet_step")
    )
    pc.register_cell(cell)
    try:
        spec = pc.RecurrentSpec("janet_step", 5, 7, num_layers=2)
        ours = pc.build_module(spec, "cpu", torch.float64)
        assert isinstance(ours, ReferenceRecurrent)
        theirs = JanetStack(spec, dtype=torch.float64)
        theirs.load_state_dict(ours.state_dict())  # the same names and shapes
        x = torch.randn(4, 3, 5, dtype=torch.float64)
        out, h_n = ours(x)
        expected, expected_h = theirs(x)
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(h_n, expected_h)
        assert pc.flop_check(spec, pc.Workload(2, 3, lengths=(3, 2), mode="training")).ok is True
    finally:
        pc.unregister_cell("janet_step")
