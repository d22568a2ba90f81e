"""A user-registered SRU (Lei et al. 2018): the worked example of docs/extending.md, run as written.

The code block under "A worked example: SRU" in docs/extending.md (the entry, with a shape rule,
diagonal recurrent vectors and a bias of two of its three gate blocks, and a module written from
the paper's equations) is read from the file and executed here; then every command runs on it.

Expected counts are the paper's, by hand: per layer ``k·d·Dh + 4·Dh`` (the matrices W, W_f, W_r,
and W' when the layer's input width d differs from Dh: k = 3 or 4; the vectors v_f, v_r, b_f,
b_r), which is also the ``sru`` package's ``SRUCell`` layout (``num_matrices = 4 if input_size !=
output_size else 3``, ``weight_c`` and ``bias`` of ``2·output_size``).
"""

from __future__ import annotations

import sys
import types

import pytest

import paramcalc as pc
from tests.helpers import ROOT, invoke, one_line_error

MARK = "## A worked example: SRU"


def docs_example() -> str:
    text = (ROOT / "docs" / "extending.md").read_text()
    return text.split(MARK, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def sru():
    module = types.ModuleType("sru_docs_example")
    sys.modules[module.__name__] = module
    exec(compile(docs_example(), "docs/extending.md", "exec"), module.__dict__)
    yield pc.get_cell("sru")
    pc.unregister_cell("sru")
    del sys.modules[module.__name__]


def paper(d: int, h: int, layers: int, bias: bool = True) -> int:
    """Lei et al. 2018, per layer: k matrices of d x Dh (k = 3, or 4 when d != Dh), v_f, v_r, b_f, b_r."""
    total = 0
    for layer in range(layers):
        width = d if layer == 0 else h
        k = 3 if width == h else 4
        total += k * width * h + 2 * h + (2 * h if bias else 0)
    return total


def test_the_example_counts_as_the_paper(sru):
    spec = pc.RecurrentSpec("sru", 32, 64, num_layers=2)
    res = pc.count(spec)
    assert res.total == paper(32, 64, 2) == (4 * 32 * 64 + 4 * 64) + (3 * 64 * 64 + 4 * 64) == 20_992
    assert [(r.name, r.shape) for r in res.rows] == [
        ("weight_l0", (32, 4 * 64)),  # stored input-major, as the sru package does
        ("weight_c_l0", (2 * 64,)),
        ("bias_l0", (2 * 64,)),
        ("weight_l1", (64, 3 * 64)),  # d = Dh above the first layer: no W'
        ("weight_c_l1", (2 * 64,)),
        ("bias_l1", (2 * 64,)),
    ]
    # the formulas docs/extending.md quotes
    assert [r.formula for r in res.rows][::3] == ["4d·Dh = 4·32·64", "3Dh·Dh = 3·64·64"]
    assert [f.symbolic for f in res.formulas] == ["4d·Dh + 2Dh + 2Dh", "3Dh·Dh + 2Dh + 2Dh"]
    assert pc.count(pc.RecurrentSpec("sru", 64, 64)).total == 3 * 64 * 64 + 4 * 64 == paper(64, 64, 1)
    assert pc.count(pc.RecurrentSpec("sru", 5, 7, num_layers=3, bias=False)).total == paper(
        5, 7, 3, bias=False
    )
    # cost: the input GEMM is all of SRU's MACs; the bias additions are the two covered blocks
    c = pc.cost(spec, pc.Workload(batch=2, seq_len=3))
    assert c.macs_per_step == 4 * 32 * 64 + 3 * 64 * 64 and c.bias_ops == 2 * 64 * 2 * 6
    assert "2 of 3 gate blocks (f, r)" in pc.explain(spec).rows[2].why


def test_check_flop_check_bench_and_predict_through_the_api(sru):
    spec = pc.RecurrentSpec("sru", 6, 8, num_layers=2)
    checked = pc.check(spec, "cpu")
    assert checked.ok and checked.torch_total == paper(6, 8, 2)
    packed = pc.Workload(batch=3, seq_len=4, lengths=(4, 2, 3), mode="training")
    fc = pc.flop_check(spec, packed)
    assert (
        fc.ok is True
    )  # FlopCounterMode on meta equals the cost model, forward and backward, real tokens only
    assert fc.ours_forward == 2 * (6 * 4 * 8 + 8 * 3 * 8) * 9  # 9 real tokens
    b = pc.bench(spec, pc.Workload(batch=3, seq_len=4, lengths=(4, 2, 3)), min_run_time=0.01)
    assert b.median_s > 0 and b.kernel_path == "reference"
    p = pc.predict(spec, pc.Workload(batch=3, seq_len=4, lengths=(4, 2, 3)), device="cpu", cache=False)
    assert p.seconds > 0


@pytest.mark.parametrize(
    "args",
    [
        ("check", "sru", "-d", "6", "-H", "8", "-L", "2", "--device", "cpu"),
        ("cost", "sru", "-d", "6", "-H", "8", "-L", "2", "--lengths", "4,2,3", "--train", "--flop-check"),
        ("bench", "sru", "-d", "6", "-H", "8", "-L", "2", "--lengths", "4,2,3", "--min-time", "0.01"),
        ("predict", "sru", "-d", "6", "-H", "8", "-L", "2", "--lengths", "4,2,3", "--no-cache"),
        ("explain", "sru", "-d", "6", "-H", "8"),
    ],
    ids=lambda a: a[0],
)
def test_every_command_runs_it(sru, args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output


def test_a_stack_module_without_lengths_is_one_line(sru, monkeypatch):
    """The driver calls forward(x, lengths) for a batch with lengths: a module that cannot take
    them is refused in one line naming the cell (exit 2), not a TypeError from inside torch."""
    import dataclasses

    from tests.torch.janet_cell import JANET

    pc.register_cell(JANET)
    try:
        line = one_line_error(
            invoke("bench", "janet", "-d", "4", "-H", "4", "--lengths", "3,2", "--min-time", "0.01")
        )
        assert "cell janet: its module tests.torch.janet_cell:build takes no sequence lengths" in line
        assert "forward(x, lengths)" in line and "internal error" not in line
        # packed_input=True: the same module gets a PackedSequence (and fails on it in its own code)
        packed = dataclasses.replace(
            JANET, name="janet_packed", torch=dataclasses.replace(JANET.torch, packed_input=True)
        )
        pc.register_cell(packed)
        from paramcalc.bridge.driver import make_case

        case = make_case(pc.RecurrentSpec("janet_packed", 4, 4), pc.Workload(2, 3, lengths=(3, 2)), "meta")
        assert hasattr(case.inputs, "batch_sizes") and case.lengths is None
        pc.unregister_cell("janet_packed")
    finally:
        pc.unregister_cell("janet")
