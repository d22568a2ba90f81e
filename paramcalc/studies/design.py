"""``design``: search the design space for the Pareto front under budgets.

A design review asks "under 5M parameters, 1 GiB of training memory and 50 ms per batch, which
cell, depth and width?". :func:`design` answers it in one call:

1. **the space**: every registry entry that fits the task (the stacks; a single-step cell is its
   stack's one-layer form) × hidden sizes × layers × projection sizes (for the cells that have
   one, each below the hidden size) × directions × dtypes, each cell in its default layout;
2. **the analytic terms** of every configuration at once (:mod:`paramcalc.core.bulk`: exact
   counts, FLOPs, the memory model of the kernel path that would run, the recurrent state);
   the budgets on parameters, state and memory exclude what they must;
3. **the time** of what is left, from the speed model over a GEMM throughput surface fitted to a
   few dozen timed shapes per dtype (:mod:`paramcalc.timing.surface`; cached, so a warm cache
   times nothing); the budgets on time and tokens per second exclude the rest;
4. **the Pareto front** of the feasible configurations over the objectives (default: most
   parameters, least predicted time, least memory): the configurations no other one beats in
   every objective. The result says how many were dominated and, region by region, why every
   excluded configuration was excluded;
5. **checked, not trusted**: ``verify=K`` times K points spread along the front on the device
   (the studies runner: each finished row written as it goes, progress with the time left) and
   reports measured over predicted; ``bench=True`` times every front point.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..core.workload import Workload
from ..errors import ParamcalcError
from ..results.text import fmt_bytes
from .designspace import (
    DEFAULT_DIRECTIONS,
    DEFAULT_HIDDEN,
    DEFAULT_LAYERS,
    DEFAULT_OBJECTIVES,
    DEFAULT_PROJ,
    DESIGN_DTYPES,
    MAX_DESIGN_CONFIGS,
    OBJECTIVES,
    Budgets,
    Point,
    Region,
    Request,
    Space,
    make_space,
    parse_bytes,
    parse_seconds,
)

__all__ = ["OBJECTIVES", "design", "parse_bytes", "parse_seconds", "search", "verify_front"]
from .runner import DEFAULT_MIN_RUN_TIME, Row, TimingOptions, run

if TYPE_CHECKING:  # pragma: no cover
    from ..core import bulk
    from ..timing.surface import GemmSurface, SpeedSource
    from .designresult import DesignResult


@dataclass(frozen=True)
class Part:
    """The configurations of one cell and dtype still in the running, with their figures."""

    grid: bulk.Grid
    dtype: str
    params: Any
    memory: Any
    state: Any
    flops: Any
    paths: Any
    seconds: Any = None

    @property
    def tokens_per_s(self) -> Any:
        return self.grid.workload.tokens / self.seconds

    def take(self, keep: Any) -> Part:
        return Part(
            self.grid.take(keep),
            self.dtype,
            self.params[keep],
            self.memory[keep],
            self.state[keep],
            self.flops[keep],
            self.paths[keep],
            None if self.seconds is None else self.seconds[keep],
        )


def _cartesian(ct: Any, space: Space) -> tuple[Any, ...]:
    """hidden, layers, proj, dirs of every combination of the space for ``ct`` (proj only below
    hidden and only for a cell with a projection), and how many had proj ≥ hidden."""
    import numpy as np

    proj = np.asarray(space.proj if ct.projection else (0,))
    if not proj.size:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(7))
    axes = np.meshgrid(np.asarray(space.hidden), np.asarray(space.layers), proj, np.asarray(space.directions))
    h, nl, p, nd = (a.reshape(-1) for a in axes)
    ok = (p == 0) | (p < h)
    return h[ok], nl[ok], p[ok], nd[ok], h[~ok], nl[~ok], nd[~ok]


def hidden_text(excluded: Any, present: Any) -> str:
    """``≥ x`` when ``excluded`` are every value of ``present`` from their smallest up; else a span."""
    import numpy as np

    lo, hi = int(np.min(excluded)), int(np.max(excluded))
    upper = np.unique(present[present >= lo])
    if np.array_equal(np.unique(excluded), upper):
        return f"≥ {lo:,}" if lo < int(np.max(present)) or lo == hi else f"{lo:,}"
    return f"{lo:,}" if lo == hi else f"{lo:,} to {hi:,} (some)"


def regions(
    cell: str, reason: str, h: Any, nl: Any, nd: Any, h_all: Any, nl_all: Any, nd_all: Any
) -> list[Region]:
    """The excluded configurations ``(h, nl, nd)`` of one reason, by layers and directions."""
    import numpy as np

    out = []
    for layers, dirs in sorted({(int(a), int(b)) for a, b in zip(nl, nd, strict=True)}):
        rows = (nl == layers) & (nd == dirs)
        present = h_all[(nl_all == layers) & (nd_all == dirs)]
        out.append(
            Region(cell, reason, layers, dirs, int(np.count_nonzero(rows)), hidden_text(h[rows], present))
        )
    return out


def _parts(
    space: Space, input_size: int, workload: Workload, caps: dict[str, Any], device_type: str
) -> tuple[list[Part], list[Region], int]:
    """Every configuration of the space with its analytic figures; the structural exclusions."""
    from ..core import bulk

    parts, excluded, total = [], [], 0
    for name in space.cells:
        ct = registered_cell(name)
        h, nl, p, nd, bad_h, bad_nl, bad_nd = _cartesian(ct, space)
        for dtype in space.dtypes:
            wl = replace(workload, dtype=dtype)
            g = bulk.grid(ct, input_size, wl, h, nl, p, nd)
            parts.append(_figures(g, dtype, caps, device_type))
            total += len(g) + len(bad_h)
            if len(bad_h):
                excluded += regions(name, "proj_size ≥ hidden_size", bad_h, bad_nl, bad_nd, h, nl, nd)
    return parts, excluded, total


def registered_cell(name: str) -> Any:
    from ..core.cells import get_cell

    return get_cell(name)


def _figures(g: bulk.Grid, dtype: str, caps: dict[str, Any], device_type: str) -> Part:
    """The analytic figures of a grid: parameters, memory (training with Adam or the inference
    peak, on the path that would run), state, FLOPs, the kernel path."""
    from ..core import bulk

    training = g.workload.training
    cpu_caps = {k: v for k, v in caps.items() if k != "device_type"}
    paths = bulk.paths(
        g,
        onednn=bool(cpu_caps.get("onednn", True)),
        onednn_bf16=bool(cpu_caps.get("onednn_bf16", False)),
        onednn_fp16=bool(cpu_caps.get("onednn_fp16", False)),
    )
    if device_type == "cpu":
        memory = bulk.training_bytes(g, cpu_caps) if training else bulk.inference_bytes(g, cpu_caps)
    else:
        memory, paths = _device_memory(g, caps)
    return Part(g, dtype, bulk.params(g), memory, bulk.state_bytes(g), bulk.costs(g).flops, paths)


def _device_memory(g: bulk.Grid, caps: dict[str, Any]) -> tuple[Any, Any]:
    """Memory and path per configuration on a device other than a CPU: the memory model of each
    configuration (its CUDA model has no bulk form), training with Adam or the inference peak."""
    import numpy as np

    from ..core.memory import memory_model, predict_path

    kind = str(caps.get("device_type", "cuda"))
    memory = np.zeros(len(g), dtype=object)
    paths = np.empty(len(g), dtype=object)
    for i in range(len(g)):
        spec, wl = g.spec(i), g.workload
        path = predict_path(spec, wl, kind, cudnn=bool(caps.get("cudnn", True)))
        m = memory_model(spec, wl, path, device_type=kind, optimizer="adam", cuda=caps.get("cuda"))
        memory[i], paths[i] = m.peak_bytes + m.optimizer_bytes, path
    return memory, paths


def _budget(
    parts: list[Part], figure: str, limit: Any, reason: str, excluded: list[Region], low: bool = False
) -> list[Part]:
    """The parts with every configuration over ``limit`` (under it, with ``low``) excluded and recorded."""
    if limit is None:
        return parts
    out = []
    for part in parts:
        value = getattr(part, figure)
        keep = (value >= limit) if low else (value <= limit)
        g = part.grid
        if not bool(keep.all()):
            gone = ~keep
            label = reason if len({p.dtype for p in parts}) == 1 else f"{reason} ({part.dtype})"
            excluded += regions(
                g.cell.name, label, g.hidden[gone], g.layers[gone], g.dirs[gone], g.hidden, g.layers, g.dirs
            )
        out.append(part.take(keep))
    return [p for p in out if len(p.grid)]


def _timed(
    parts: list[Part], source: SpeedSource, on_gemm: Callable[[int, int], None] | None
) -> tuple[list[Part], list[GemmSurface]]:
    """Every part with its predicted seconds per call: one surface per dtype, fitted to the
    design points of every GEMM its configurations run (:mod:`paramcalc.timing.surface`)."""
    from ..core import bulk
    from ..timing.surface import fit_surface, predict_grid

    out, surfaces = [], []
    for dtype in dict.fromkeys(p.dtype for p in parts):
        mine = [p for p in parts if p.dtype == dtype]
        surface = fit_surface(source, dtype, [t for p in mine for t in bulk.gemm_terms(p.grid)], on_gemm)
        surfaces.append(surface)
        out += [replace(p, seconds=predict_grid(p.grid, surface, source).seconds) for p in mine]
    return out, surfaces


def front(parts: list[Part], objectives: Sequence[str]) -> tuple[list[Point], int]:
    """The Pareto front of ``parts`` over ``objectives`` (sorted by parameters, then time) and
    how many feasible configurations it dominates."""
    import numpy as np

    from ..bridge.build import kernel_label
    from ..core import bulk

    if not parts:
        return [], 0
    columns = []
    for name in objectives:
        figure, sign, _ = OBJECTIVES[name]
        columns.append(np.concatenate([sign * np.asarray(getattr(p, figure), dtype=float) for p in parts]))
    on_front = bulk.pareto_mask(np.stack(columns, axis=1))
    points, start = [], 0
    for p in parts:
        tokens = p.grid.workload.tokens
        for i in np.flatnonzero(on_front[start : start + len(p.grid)]):
            spec, seconds = p.grid.spec(int(i)), float(p.seconds[i])
            params, memory, state, flops = (int(x[i]) for x in (p.params, p.memory, p.state, p.flops))
            kernel = kernel_label(str(p.paths[i]), spec)
            points.append(
                Point(spec, p.dtype, params, memory, state, flops, seconds, tokens / seconds, kernel)
            )
        start += len(p.grid)
    points.sort(key=lambda q: (q.params, q.seconds, q.memory, q.spec.cell))
    return points, len(on_front) - len(points)


def _objectives(objectives: Any) -> tuple[str, ...]:
    names = (objectives,) if isinstance(objectives, str) else tuple(objectives)
    bad = [n for n in names if n not in OBJECTIVES]
    if not names or bad:
        raise ParamcalcError(
            f"objectives must be among {', '.join(OBJECTIVES)}, got {bad[0] if bad else 'none'!r}"
        )
    return tuple(dict.fromkeys(names))


def _workload(workload: Any) -> Workload:
    if workload is None:
        return Workload()
    if not isinstance(workload, Workload):
        raise ParamcalcError(f"workload must be a Workload, got {type(workload).__name__}")
    if workload.lengths is not None:
        raise ParamcalcError(
            "design takes a batch and a sequence length, not lengths: pass Workload(batch, seq_len)"
        )
    if workload.dtype not in DESIGN_DTYPES:
        raise ParamcalcError(f"design times GEMMs in {', '.join(DESIGN_DTYPES)}, not {workload.dtype}")
    return workload


def _check_size(space: Space) -> None:
    n = len(space.cells) * len(space.hidden) * len(space.layers) * len(space.proj) * len(space.directions)
    n *= len(space.dtypes)
    if n > MAX_DESIGN_CONFIGS:
        raise ParamcalcError(
            f"the search has up to {n:,} configurations, more than the {MAX_DESIGN_CONFIGS:,} allowed: "
            "use fewer values or larger steps"
        )


def search(
    request: Request, source: SpeedSource, on_gemm: Callable[[int, int], None] | None = None
) -> DesignResult:
    """The front of ``request`` with ``source``'s timings (see the module docstring)."""
    from .designresult import DesignResult

    b, caps = request.budgets, source.capabilities()
    parts, excluded, total = _parts(
        request.space, request.input_size, request.workload, caps, caps["device_type"]
    )
    parts = _budget(parts, "params", b.max_params, f"parameters > {b.max_params or 0:,}", excluded)
    parts = _budget(parts, "state", b.max_state, f"state > {fmt_bytes(b.max_state or 0)}", excluded)
    parts = _budget(parts, "memory", b.max_memory, f"memory > {fmt_bytes(b.max_memory or 0)}", excluded)
    timed_before = source.timed
    surfaces: list[GemmSurface] = []
    if parts:
        parts, surfaces = _timed(parts, source, on_gemm)
    parts = _budget(
        parts, "seconds", b.max_time, f"predicted time > {(b.max_time or 0) * 1e3:g} ms", excluded
    )
    parts = _budget(
        parts,
        "tokens_per_s",
        b.min_tokens_per_s,
        f"tokens/s < {b.min_tokens_per_s or 0:,.0f}",
        excluded,
        low=True,
    )
    points, dominated = front(parts, request.objectives)
    return DesignResult(
        request=request,
        points=tuple(points),
        total=total,
        feasible=sum(len(p.grid) for p in parts),
        dominated=dominated,
        excluded=tuple(excluded),
        surfaces=tuple(surfaces),
        timed=source.timed - timed_before,
        environment=(source.device, source.device_name, source.threads, source.torch_version),
        source_notes=tuple(source.notes()),
        cloud=tuple(_cloud(parts)),
    )


def _cloud(parts: list[Part]) -> Iterable[tuple[str, str, Any, Any, Any]]:
    """Per cell and dtype: the feasible configurations' parameters, seconds and memory (the plot's points)."""
    import numpy as np

    for p in parts:
        params, seconds, memory = (np.asarray(x, dtype=float) for x in (p.params, p.seconds, p.memory))
        yield (p.grid.cell.name, p.dtype, params, seconds, memory)


def design(
    input_size: int,
    workload: Workload | None = None,
    *,
    cells: Any = None,
    hidden_sizes: Any = DEFAULT_HIDDEN,
    num_layers: Any = DEFAULT_LAYERS,
    proj_sizes: Any = DEFAULT_PROJ,
    directions: Any = DEFAULT_DIRECTIONS,
    dtypes: Any = None,
    max_params: Any = None,
    max_memory: Any = None,
    max_time: Any = None,
    min_tokens_per_s: Any = None,
    max_state: Any = None,
    objectives: Any = DEFAULT_OBJECTIVES,
    device: str = "cpu",
    threads: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    verify: int = 0,
    bench: bool = False,
    min_run_time: float = DEFAULT_MIN_RUN_TIME,
    seed: int = 0,
    source: SpeedSource | None = None,
    on_gemm: Callable[[int, int], None] | None = None,
    on_row: Callable[[Row], None] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> DesignResult:
    """The Pareto front of the designs that fit ``input_size`` and ``workload`` under the budgets.

    Searches ``cells`` (default: every registered stack) × ``hidden_sizes`` × ``num_layers`` ×
    ``proj_sizes`` (0 = none; for the cells with a projection, each below the hidden size) ×
    ``directions`` (1, 2) × ``dtypes`` (default: the workload's). Budgets: ``max_params`` (a
    count or ``"5M"``), ``max_memory`` (bytes or ``"1GiB"``: the training peak with Adam's
    moments in training, the inference peak otherwise, by the memory model of the kernel path
    that would run), ``max_time`` (seconds or ``"50ms"`` per call, predicted), ``min_tokens_per_s``,
    ``max_state`` (the batch's recurrent state, bytes). ``objectives`` (default most parameters,
    least time, least memory) define the front. Time is predicted on ``device`` from a GEMM
    throughput surface (``threads``, ``cache``, ``cache_dir`` as for :func:`paramcalc.predict`;
    ``source``: another :class:`~paramcalc.timing.surface.SpeedSource`). ``verify=K`` then times
    K front points with :func:`paramcalc.bench` (``bench=True``: every point), reporting
    measured/predicted; ``on_row`` after each, ``output`` rewritten as rows finish (see
    :func:`paramcalc.compare`). See :mod:`paramcalc.studies.design`.

    >>> import paramcalc as pc
    >>> wl = pc.Workload(32, 200, mode="training")
    >>> r = pc.design(80, wl, max_params="5M", max_memory="1GiB")  # doctest: +SKIP
    >>> r.points[-1].params <= 5_000_000  # doctest: +SKIP
    True
    """
    from ..core.spec import check_size

    wl = _workload(workload)
    space = make_space(cells, hidden_sizes, num_layers, proj_sizes, directions, dtypes, wl.dtype)
    _check_size(space)
    budgets = Budgets.of(max_params, max_memory, max_time, min_tokens_per_s, max_state)
    request = Request(check_size("input_size", input_size), wl, space, budgets, _objectives(objectives))
    count = verify_count(verify, bench)
    if output is not None:
        from ..results.renderers import check_export

        check_export(output)
    if source is None:
        from ..timing.surface import DeviceSpeed

        source = DeviceSpeed(device, threads=threads, cache=cache, cache_dir=cache_dir)
    result = search(request, source, on_gemm)
    if count and result.points:
        timing = TimingOptions(True, True, device, threads, min_run_time, seed, cache, cache_dir)
        return verify_front(result, count, timing, on_row=on_row, output=output)
    if output is not None:
        result.export(output)
    return result


def verify_count(verify: Any, bench: bool) -> int:
    if isinstance(verify, bool) or not isinstance(verify, int) or not 0 <= verify <= 10_000:
        raise ParamcalcError(f"verify must be a number of front points in 0..10000, got {verify!r}")
    if bench and verify:
        raise ParamcalcError("give verify (some front points) or bench=True (every point), not both")
    return 10_000 if bench else verify


def verify_front(
    result: DesignResult,
    count: int,
    timing: TimingOptions,
    *,
    on_row: Callable[[Row], None] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> DesignResult:
    """``result`` with ``count`` of its front points (spread along it) timed on the device by the
    studies runner: measured/predicted per point, each written to ``output`` as it finishes. With
    ``timing.predict``, each is also predicted with its own GEMMs timed (``paramcalc.predict``):
    how far the surface is from the exact shapes' timings."""
    chosen = result.spread(count)
    pairs = [(p.spec, replace(result.request.workload, dtype=p.dtype)) for p in chosen]
    return run(
        pairs,
        lambda rows, planned: replace(result, rows=rows, planned=planned),
        timing,
        on_row=on_row,
        output=output,
    )
