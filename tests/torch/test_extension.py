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
