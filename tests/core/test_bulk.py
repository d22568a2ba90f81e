"""The bulk evaluator equals the per-spec engine, exactly, on random configurations (hypothesis).

For every configuration of a random :class:`paramcalc.core.bulk.Grid` (every built-in stack and
a registered cell with conditional shape rules, random sizes, workloads, dtypes, modes and CPU
capabilities), the arrays are compared with what ``total_params``, ``cost`` (MACs, FLOPs by
both backward rules, the memory figures, the state), ``memory_model`` on the path
``predict_path`` names and the speed model's GEMM list (``timing.predict.gemm_calls``) give for
that configuration's own ``RecurrentSpec``: equal integers, not approximately equal. The Pareto
front is checked against the definition by brute force.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import paramcalc as pc
from paramcalc.core import bulk
from paramcalc.core.cells import CELLS, CellType, TorchBinding
from paramcalc.core.costmodel import cost
from paramcalc.core.memory import memory_model, predict_path
from paramcalc.timing.predict import gemm_calls

STACKS = [c.name for c in CELLS.values() if not c.single_step]

#: A cell whose shape rules take every branch of the grammar (conditions, min, max, //).
RULED = CellType(
    name="bulk_ruled",
    gate_names=("a", "b", "c"),
    templates=(
        pc.TensorTemplate("w", "input", "w", "w", "x·W", shape_rule=("(3 if d == Dh else 4)·Dh", "d")),
        pc.TensorTemplate("u", "recurrent_diag", "u", "u", "u ⊙ h", blocks=("b", "c")),
        pc.TensorTemplate("b", "bias", "b", "b", "b", blocks=("a",)),
        pc.TensorTemplate(
            "x",
            "recurrent",
            "x",
            "x",
            "h·X",
            shape_rule=("max(d, Dh) + 1", "(Dh + 15) // 16", "min(2, d, Dh)"),
        ),
    ),
    equations=("h_t = ...",),
    display_name="Ruled",
    default_bias_vectors=1,
    torch=TorchBinding(step="tests.nowhere:step"),
)


@pytest.fixture(scope="module", autouse=True)
def ruled_cell():
    pc.register_cell(RULED)
    yield
    pc.unregister_cell("bulk_ruled")


@st.composite
def grids(draw: st.DrawFn, cells: list[str] | None = None) -> bulk.Grid:
    name = draw(st.sampled_from(cells or [*STACKS, "bulk_ruled"]))
    ct = pc.get_cell(name)
    dtype = draw(st.sampled_from(["fp32", "bf16", "fp16", "int8"]))
    mode = "inference" if dtype == "int8" else draw(st.sampled_from(["inference", "training"]))
    wl = pc.Workload(draw(st.integers(1, 300)), draw(st.integers(1, 120)), dtype=dtype, mode=mode)
    n = draw(st.integers(1, 6))
    h = draw(st.lists(st.integers(2, 2500), min_size=n, max_size=n))
    layers = draw(st.lists(st.integers(1, 6), min_size=n, max_size=n))
    dirs = draw(st.lists(st.sampled_from([1, 2]), min_size=n, max_size=n))
    proj = [draw(st.integers(0, x - 1)) if ct.projection and draw(st.booleans()) else 0 for x in h]
    return bulk.grid(ct, draw(st.integers(1, 3000)), wl, h, layers, proj, dirs)


CAPS = st.fixed_dictionaries(
    {"onednn": st.booleans(), "onednn_bf16": st.booleans(), "onednn_fp16": st.booleans()}
)


def _costs(g: bulk.Grid, i: int, c: bulk.Costs) -> tuple[int, ...]:
    return tuple(
        int(x[i])
        for x in (c.macs_per_step, c.macs, c.forward_flops, c.backward_flops, c.flops, c.flops_per_sequence)
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grids())
def test_counts_flops_memory_and_state_equal_the_engine(g):
    params, two, auto = bulk.params(g), bulk.costs(g), bulk.costs(g, "autograd")
    inference, training, state = bulk.inference_bytes(g), bulk.training_bytes(g), bulk.state_bytes(g)
    for i in range(len(g)):
        spec, wl = g.spec(i), g.workload
        c = cost(spec, wl)
        a = cost(spec, wl, backward="autograd")
        assert int(params[i]) == pc.total_params(spec)
        assert _costs(g, i, two) == (
            c.macs_per_step,
            c.macs,
            c.forward_flops,
            c.backward_flops,
            c.flops,
            c.flops_per_sequence,
        )
        assert _costs(g, i, auto)[2:] == (a.forward_flops, a.backward_flops, a.flops, a.flops_per_sequence)
        assert int(inference[i]) == c.inference_bytes
        assert int(training[i]) == c.training_bytes
        assert int(state[i]) == c.state_bytes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grids(), CAPS)
def test_the_peak_on_the_predicted_path_equals_the_memory_model(g, caps):
    """Any CPU's capabilities: the path of every configuration and its peak in either mode."""
    for mode in ("inference", "training") if g.workload.dtype != "int8" else ("inference",):
        paths = bulk.paths(g, mode, **caps)
        peaks = bulk.peak(g, paths, mode)
        for i in range(len(g)):
            spec, wl = (
                g.spec(i),
                pc.Workload(g.workload.batch, g.workload.seq_len, dtype=g.workload.dtype, mode=mode),
            )
            path = predict_path(spec, wl, **caps)
            assert paths[i] == path
            assert int(peaks[i]) == memory_model(spec, wl, path).peak_bytes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grids())
def test_the_gemm_list_and_elementwise_bytes_equal_the_speed_model(g):
    terms, ew = bulk.gemm_terms(g), bulk.elementwise_bytes(g)
    for i in range(len(g)):
        spec, wl = g.spec(i), g.workload
        want: Counter[tuple[int, int, int]] = Counter()
        for call in gemm_calls(spec, wl):
            want[(call.m, call.k, call.n)] += call.calls
        got: Counter[tuple[int, int, int]] = Counter()
        for t in terms:
            if t.count[i]:
                got[(int(t.m[i]), int(t.k[i]), int(t.n[i]))] += int(t.count[i])
        assert got == want
        c = cost(spec, wl)
        assert int(ew[i]) == (3 if wl.training else 1) * (c.bias_ops + c.elementwise_ops) * 2 * wl.dtype_bytes


def test_sizes_beyond_int64_are_computed_in_python_ints():
    """A grid whose FLOPs could leave int64 computes with Python ints: still exact."""
    wl = pc.Workload(100_000, 100_000, mode="training")
    g = bulk.grid("lstm", 100_000, wl, [500_000, 3], [1000, 2], [0, 0], [2, 1])
    assert g.dtype is object
    flops, training = bulk.costs(g).flops, bulk.training_bytes(g)
    for i in range(len(g)):
        c = cost(g.spec(i), wl)
        assert flops[i] == c.flops and training[i] == c.training_bytes
    assert flops[0] > 2**63  # the case the fallback exists for


def test_a_grid_checks_its_configurations_as_a_spec_does():
    wl = pc.Workload(2, 3)
    for kw, needle in [
        ({"proj": [300]}, "proj_size has to be smaller than hidden_size"),
        ({"dirs": [3]}, "directions must be 1 or 2"),
        ({"layers": [0]}, "layer counts must be positive"),
        ({"hidden": [0]}, "hidden sizes must be positive"),
    ]:
        args = {"hidden": [256], "layers": [1], "proj": [0], "dirs": [1], **kw}
        with pytest.raises(pc.ParamcalcError, match=needle):
            bulk.grid("lstm", 8, wl, **args)
    with pytest.raises(pc.ParamcalcError, match="only supported for cells with a projection"):
        bulk.grid("gru", 8, wl, [64], [1], [32], [1])
    with pytest.raises(pc.ParamcalcError, match="single-step cell"):
        bulk.grid("lstm_cell", 8, wl, [64], [1], [0], [1])
    with pytest.raises(pc.ParamcalcError, match="without lengths"):
        bulk.grid("lstm", 8, pc.Workload.packed([3, 2]), [64], [1], [0], [1])


def test_registering_a_cell_again_recompiles_its_rules():
    """The compiled kernels are memoised with the registry: a replaced entry is compiled anew."""
    wl = pc.Workload(1, 1)
    before = int(bulk.params(bulk.grid("bulk_ruled", 5, wl, [20], [1], [0], [1]))[0])
    fewer = replace(RULED, templates=RULED.templates[:3])  # no recurrent matrix
    pc.register_cell(fewer, replace_existing=True)
    try:
        after = int(bulk.params(bulk.grid("bulk_ruled", 5, wl, [20], [1], [0], [1]))[0])
        assert after == pc.total_params(pc.RecurrentSpec("bulk_ruled", 5, 20)) != before
    finally:
        pc.register_cell(RULED, replace_existing=True)


# --- the Pareto front -------------------------------------------------------------------------------


def _dominated_by_definition(points: np.ndarray) -> list[bool]:
    out = []
    for p in points:
        out.append(any(np.all(q <= p) and np.any(q < p) for q in points))
    return out


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda k: st.lists(st.lists(st.integers(0, 6), min_size=k, max_size=k), min_size=1, max_size=80)
    )
)
def test_the_front_is_the_set_no_point_dominates(rows):
    points = np.asarray(rows, dtype=float)
    keep = bulk.pareto_mask(points)
    assert list(~keep) == _dominated_by_definition(points)


def test_the_front_of_many_points_in_chunks():
    """More points than one chunk: the chunked sweep agrees with the definition."""
    rng = np.random.default_rng(0)
    points = rng.integers(0, 40, size=(3 * bulk.CHUNK + 7, 3)).astype(float)
    assert list(~bulk.pareto_mask(points)) == _dominated_by_definition(points)
