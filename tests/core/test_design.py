"""``design``: the front, the exclusions, the timings a search needs, the result, the command.

Times come from :class:`tests.speedstub.StubSpeed` (formulas, no device, no torch): the front is
checked against a brute force over the same space made of one ``RecurrentSpec`` at a time and
the per-spec engine (``total_params``, ``cost``), the predicted times against the speed model
written out per spec (``tests.speedstub.expected_seconds``), and the number of timings a large
search asks for is counted, never timed.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import paramcalc as pc
from paramcalc.core.costmodel import cost
from paramcalc.studies.design import OBJECTIVES, design, parse_bytes, parse_seconds
from tests.helpers import invoke, one_line_error
from tests.speedstub import StubSpeed, expected_seconds

WL = pc.Workload(8, 12, mode="training")
SPACE = {
    "cells": ["lstm", "gru", "mgu", "mingru"],
    "hidden_sizes": range(16, 129, 16),
    "num_layers": (1, 2, 3),
    "proj_sizes": (0, 8, 32),
    "directions": (1, 2),
}
BUDGETS = {"max_params": 60_000, "max_memory": "3MiB", "max_time": 0.0035}


@pytest.fixture(scope="module")
def result():
    return design(20, WL, source=StubSpeed(), **SPACE, **BUDGETS)


def _brute_force() -> tuple[list[tuple], dict[str, int], int]:
    """Every configuration of SPACE made one spec at a time, with its figures and first failed budget."""
    feasible, failed, total = [], {}, 0
    for cell, h, layers, proj, dirs in itertools.product(
        SPACE["cells"], SPACE["hidden_sizes"], SPACE["num_layers"], SPACE["proj_sizes"], SPACE["directions"]
    ):
        if proj and cell != "lstm":
            continue  # a projection only where the cell has one
        total += 1
        if proj >= h:
            failed["proj"] = failed.get("proj", 0) + 1
            continue
        spec = pc.RecurrentSpec(cell, 20, h, num_layers=layers, bidirectional=dirs == 2, proj_size=proj)
        params, memory = pc.total_params(spec), cost(spec, WL).training_bytes
        seconds = expected_seconds(spec, WL)
        for name, over in (
            ("params", params > 60_000),
            ("memory", memory > 3 * 2**20),
            ("time", seconds > 0.0035),
        ):
            if over:
                failed[name] = failed.get(name, 0) + 1
                break
        else:
            feasible.append((spec, params, seconds, memory))
    return feasible, failed, total


def test_the_front_is_what_no_feasible_configuration_beats(result):
    feasible, failed, total = _brute_force()
    assert result.total == total and result.feasible == len(feasible)
    beaten = set()
    for a in feasible:
        for b in feasible:
            if b[1] >= a[1] and b[2] <= a[2] and b[3] <= a[3] and (b[1] > a[1] or b[2] < a[2] or b[3] < a[3]):
                beaten.add(a[0])
                break
    front = {f[0] for f in feasible} - beaten
    assert {p.spec for p in result.points} == front
    assert result.dominated == len(beaten)
    by_reason: dict[str, int] = {}
    for reg in result.excluded:
        key = reg.reason.split()[0]
        by_reason[key] = by_reason.get(key, 0) + reg.configs
    assert by_reason == {
        "proj_size": failed["proj"],
        "parameters": failed["params"],
        "memory": failed["memory"],
        "predicted": failed["time"],
    }


def test_front_points_carry_the_engines_figures_and_the_speed_model(result):
    assert result.points, "the budgets leave a front"
    for p in result.points:
        c = cost(p.spec, WL)
        assert (p.params, p.memory, p.state, p.flops) == (
            pc.total_params(p.spec),
            c.training_bytes,
            c.state_bytes,
            c.flops,
        )
        assert p.seconds == pytest.approx(expected_seconds(p.spec, WL), rel=1e-6)
        assert p.tokens_per_s == pytest.approx(WL.tokens / p.seconds)
        assert p.params <= 60_000 and p.memory <= 3 * 2**20 and p.seconds <= 0.0035
    assert [p.params for p in result.points] == sorted(p.params for p in result.points)


def test_every_region_names_the_hidden_sizes_it_excluded(result):
    """A parameter region of one cell, layers and directions: the sizes ≥ the smallest over budget."""
    reg = next(
        r for r in result.excluded if r.cell == "gru" and r.reason.startswith("parameters") and r.layers == 2
    )
    over = [
        h
        for h in SPACE["hidden_sizes"]
        if pc.total_params(pc.RecurrentSpec("gru", 20, h, num_layers=2, bidirectional=reg.directions == 2))
        > 60_000
    ]
    assert reg.configs == len(over) and reg.hidden == f"≥ {min(over):,}"


def test_a_search_of_100k_configurations_needs_a_few_dozen_timings():
    stub = StubSpeed()
    r = design(
        80,
        pc.Workload(32, 200, mode="training"),
        hidden_sizes=range(4, 4097, 4),
        num_layers=range(1, 7),
        proj_sizes=(0, 64, 128, 256, 512),
        max_params="5M",
        source=stub,
    )
    assert r.total >= 100_000
    assert len(stub.gemms) <= 36  # 9 shapes for each of the 4 families of GEMMs of training
    assert stub.timed <= 50  # and the copy, the per-call overheads of 9 cells, the 2 scans
    assert r.timed == stub.timed and sum(len(s.shapes) for s in r.surfaces) == len(stub.gemms)


def test_a_warm_source_times_nothing_more():
    stub = StubSpeed()
    design(20, WL, source=stub, **SPACE)
    before = stub.timed
    again = design(20, WL, source=stub, **SPACE)
    assert stub.timed == before and again.timed == 0


def test_objectives_and_inference(result):
    r = design(20, pc.Workload(8, 12), source=StubSpeed(), objectives=("params", "time"), **SPACE)
    assert not r.training and r.request.objectives == ("params", "time")
    for p in r.points:  # inference memory: the forward's peak
        assert p.memory == cost(p.spec, pc.Workload(8, 12)).inference_bytes
    # two objectives: along the front, more parameters always cost more time
    times = [p.seconds for p in sorted(r.points, key=lambda p: p.params)]
    assert all(a <= b for a, b in itertools.pairwise(times))
    assert set(OBJECTIVES) >= {"params", "time", "memory", "state", "flops"}


def test_budget_on_state_and_tokens():
    r = design(20, WL, source=StubSpeed(), **SPACE, max_state="4KiB", min_tokens_per_s="40k")
    assert r.points and all(p.state <= 4096 and p.tokens_per_s >= 40_000 for p in r.points)
    reasons = {reg.reason.split(" ")[0] for reg in r.excluded}
    assert {"state", "tokens/s"} <= reasons


# --- the result --------------------------------------------------------------------------------------


def test_the_result_follows_the_protocol(result, tmp_path):
    assert result.VIEWS == ("front", "excluded", "surface")
    frame = result.to_frame()
    assert len(frame) == len(result.points)
    assert {"cell", "hidden_size", "params", "memory_bytes", "predicted_ms", "kernel"} <= set(frame.columns)
    assert len(result.to_frame("excluded")) == len(result.excluded)
    assert len(result.to_frame("surface")) == sum(len(s.shapes) for s in result.surfaces)
    text = result.render()
    assert text.startswith(f"design: {len(result.points)} configurations on the front")
    assert "dominated" in text and "budgets: parameters ≤ 60,000" in text
    for suffix in (".csv", ".json", ".md", ".html"):
        result.export(tmp_path / f"front{suffix}")
    meta = json.loads((tmp_path / "front.json").read_text())
    assert meta["front"] == len(result.points) and meta["dominated"] == result.dominated
    assert meta["budgets"]["max_params"] == 60_000 and meta["rows"][0]["cell"] == result.points[0].spec.cell
    assert "<table" in result._repr_html_()


def test_showing_spreads_the_rows_and_keeps_the_counts(result):
    shown = result.showing(3)
    assert [p.spec for p in shown.shown_points()] == [p.spec for p in result.spread(3)]
    assert shown.points == result.points and len(shown.table().rows) == 3
    assert any(n.startswith(f"showing 3 of the {len(result.points)}") for n in shown.notes())
    assert result.showing(0).shown is None


def test_reference_rows_say_how_they_run(result):
    kernels = {p.spec.cell: p.kernel for p in result.points}
    assert kernels.get("mingru") == "reference (scan)"
    assert kernels.get("mgu") == "reference (step loop)"
    assert any(
        n.startswith("minGRU: predicted for paramcalc's reference module (a parallel scan)")
        for n in result.notes()
    )


def test_the_plot(result, tmp_path):
    pytest.importorskip("matplotlib")
    out = result.plot(tmp_path / "front.png")
    assert out.stat().st_size > 10_000


def test_single_step_cells_are_not_searched_and_say_why():
    r = design(20, WL, source=StubSpeed(), hidden_sizes=(16, 32), num_layers=(1,), proj_sizes=(0,))
    skipped = dict(r.request.space.skipped)
    assert set(skipped) == {"rnn_cell", "rnn_relu_cell", "lstm_cell", "gru_cell"}
    assert any(
        line.startswith("not searched: rnn_cell, rnn_relu_cell, lstm_cell, gru_cell") for line in r.summary()
    )


# --- mistakes are one line ------------------------------------------------------------------------------


def test_units():
    assert (
        parse_bytes("1GiB") == 2**30 and parse_bytes("1.5 GB") == 1_500_000_000 and parse_bytes(4096) == 4096
    )
    assert parse_seconds("50ms") == pytest.approx(0.05) and parse_seconds("200us") == pytest.approx(2e-4)


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"max_memory": "1GX"}, "cannot parse max_memory '1GX'"),
        ({"max_time": "-5ms"}, "cannot parse max_time"),
        ({"max_params": "lots"}, "cannot parse max_params"),
        ({"objectives": ("params", "speed")}, "objectives must be among params, time, memory, state, flops"),
        ({"dtypes": ("int8",)}, "dtypes must be among fp32, fp16, bf16"),
        ({"cells": ["lstm_cell"]}, "no cell to search: lstm_cell: single-step cells"),
        ({"verify": 2, "bench": True}, "not both"),
        ({"hidden_sizes": range(1, 10**7)}, "more than"),
    ],
)
def test_mistakes_are_one_line_in_python_words(kw, needle):
    with pytest.raises(pc.ParamcalcError, match=needle) as info:
        design(20, WL, source=StubSpeed(), **kw)
    assert "\n" not in str(info.value) and "--" not in str(info.value)


def test_a_packed_workload_is_refused():
    with pytest.raises(pc.ParamcalcError, match="not lengths"):
        design(20, pc.Workload.packed([3, 2]), source=StubSpeed())


# --- the command ------------------------------------------------------------------------------------------


@pytest.fixture
def stub_device(monkeypatch):
    from paramcalc.timing import surface

    monkeypatch.setattr(surface, "DeviceSpeed", lambda *a, **k: StubSpeed())


ARGS = [
    "design",
    "-d",
    "20",
    "--batch",
    "8",
    "--seq-len",
    "12",
    "--train",
    "--cells",
    "lstm,gru,mingru",
    "-H",
    "16:128:16",
    "-L",
    "1:3",
    "--proj-size",
    "0,8,32",
    "--max-params",
    "60k",
]


def test_the_command_prints_the_front(stub_device, tmp_path):
    out, plot = tmp_path / "front.json", tmp_path / "front.png"
    r = invoke(*ARGS, "--rows", "5", "--output", str(out), "--plot", str(plot))
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("design: ") and "budgets: parameters ≤ 60,000" in r.stdout
    table = r.stdout.splitlines()[3:8]
    assert len([ln for ln in table if ln.split()[0] in ("lstm", "gru", "mingru")]) == 5
    data = json.loads(out.read_text())
    assert len(data["rows"]) == data["front"] > 5  # the file holds every point
    assert plot.exists() or pytest.importorskip("matplotlib")


def test_the_command_shows_the_exclusions(stub_device):
    r = invoke(*ARGS, "--by", "excluded")
    assert r.exit_code == 0, r.output
    assert "parameters > 60,000" in r.stdout and "proj_size ≥ hidden_size" in r.stdout


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--max-memory", "lots"], "cannot parse max_memory"),
        (["--proj-size", "0,x"], "cannot parse projection sizes"),
        (["--directions", "3"], "directions must be at most 2"),
        (["--rows", "-1"], "--rows must be 0"),
    ],
)
def test_command_mistakes_are_one_line(stub_device, extra, needle):
    assert needle in one_line_error(invoke(*ARGS, *extra))


def test_the_search_is_found_fast_enough_to_search():
    """Bulk evaluation, not sampling: the grid of a 100k-configuration space in a few arrays."""
    from paramcalc.core import bulk

    g = bulk.grid("lstm", 80, pc.Workload(32, 200), np.arange(4, 4097, 4), 3, 0, 1)
    assert len(g) == 1024 and bulk.params(g).dtype == np.int64
