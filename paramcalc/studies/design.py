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
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from ..core.cells import cell_names, registered_cells
from ..core.spec import MAX_LAYERS, RecurrentSpec
from ..core.workload import Workload
from ..errors import ParamcalcError
from ..results.text import fmt_bytes, plural
from .runner import DEFAULT_MIN_RUN_TIME, Row, TimingOptions, run

if TYPE_CHECKING:  # pragma: no cover
    from ..core import bulk
    from ..timing.surface import GemmSurface, SpeedSource
    from .designresult import DesignResult

#: The objectives a front can be drawn over: (figure, +1 to minimise or -1 to maximise, in words).
OBJECTIVES: dict[str, tuple[str, int, str]] = {
    "params": ("params", -1, "most parameters"),
    "time": ("seconds", 1, "least predicted time"),
    "memory": ("memory", 1, "least memory"),
    "state": ("state", 1, "least recurrent state"),
    "flops": ("flops", 1, "fewest FLOPs"),
}
DEFAULT_OBJECTIVES = ("params", "time", "memory")
DEFAULT_HIDDEN = range(32, 2049, 32)
DEFAULT_LAYERS = range(1, 5)
DEFAULT_PROJ = (0, 64, 128, 256, 512)
DEFAULT_DIRECTIONS = (1, 2)
#: The dtypes a search can time (GEMM timings exist for these).
DESIGN_DTYPES = ("fp32", "fp16", "bf16")
#: Most configurations one search may hold.
MAX_DESIGN_CONFIGS = 5_000_000


# --- budgets ------------------------------------------------------------------------------------------

_BYTE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SECOND_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "min": 60.0}
_AMOUNT_RE = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]*)?(?:e[+-]?[0-9]{1,3})?)\s*([a-zµ]*)\s*$", re.I)


def _amount(value: Any, what: str, units: dict[str, Any], example: str) -> Decimal:
    """A positive number with an optional unit (``1GiB``, ``50ms``), or a number, as a Decimal."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ParamcalcError(f"{what} must be a number or a text like {example}, got {type(value).__name__}")
    text = str(value)
    m = _AMOUNT_RE.match(text) if len(text) <= 64 else None
    if m is None or m.group(2).lower() not in units:
        raise ParamcalcError(f"cannot parse {what} {text[:40]!r}: use a number like {example}")
    try:
        amount = Decimal(m.group(1).replace(",", "").replace("_", "")) * Decimal(units[m.group(2).lower()])
    except InvalidOperation:
        raise ParamcalcError(f"cannot parse {what} {text[:40]!r}: use a number like {example}") from None
    if not amount > 0 or amount > Decimal(10) ** 30:
        raise ParamcalcError(f"{what} must be positive and at most 1e30, got {text[:40]!r}")
    return amount


def parse_bytes(value: Any, what: str = "max_memory") -> int:
    """Bytes from ``1GiB``, ``512MiB``, ``1.5GB``, ``2e9`` or an int (``GiB`` = 2**30, ``GB`` = 10**9)."""
    return int(_amount(value, what, _BYTE_UNITS, "1GiB, 512MiB or 2e9"))


def parse_seconds(value: Any, what: str = "max_time") -> float:
    """Seconds from ``50ms``, ``0.05s``, ``200us`` or a number of seconds."""
    return float(_amount(value, what, _SECOND_UNITS, "50ms, 0.05s or 200us"))


def parse_rate(value: Any, what: str = "min_tokens_per_s") -> float:
    """A rate from ``250k``, ``1.5M``, ``2e6`` or a number."""
    return float(_amount(value, what, {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}, "250k, 1.5M or 2e6"))


@dataclass(frozen=True)
class Budgets:
    """What a configuration may cost: parameters, memory (training with Adam, or the inference
    peak), predicted seconds per call, tokens per second, the recurrent state of the batch."""

    max_params: int | None = None
    max_memory: int | None = None
    max_time: float | None = None
    min_tokens_per_s: float | None = None
    max_state: int | None = None

    @classmethod
    def of(
        cls, max_params: Any, max_memory: Any, max_time: Any, min_tokens_per_s: Any, max_state: Any
    ) -> Budgets:
        from ..core.solver import parse_count

        return cls(
            None if max_params is None else parse_count(max_params, "max_params"),
            None if max_memory is None else parse_bytes(max_memory, "max_memory"),
            None if max_time is None else parse_seconds(max_time, "max_time"),
            None if min_tokens_per_s is None else parse_rate(min_tokens_per_s, "min_tokens_per_s"),
            None if max_state is None else parse_bytes(max_state, "max_state"),
        )

    def lines(self) -> list[str]:
        from ..results.text import fmt_bytes, fmt_seconds

        out = []
        if self.max_params is not None:
            out.append(f"parameters ≤ {self.max_params:,}")
        if self.max_memory is not None:
            out.append(f"memory ≤ {fmt_bytes(self.max_memory)}")
        if self.max_time is not None:
            out.append(f"predicted time ≤ {fmt_seconds(self.max_time)} per call")
        if self.min_tokens_per_s is not None:
            out.append(f"≥ {self.min_tokens_per_s:,.0f} tokens/s")
        if self.max_state is not None:
            out.append(f"recurrent state ≤ {fmt_bytes(self.max_state)}")
        return out


# --- the space -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Space:
    """What a search ranges over; ``skipped``: the registry entries that do not fit the task, and why."""

    cells: tuple[str, ...]
    hidden: tuple[int, ...]
    layers: tuple[int, ...]
    proj: tuple[int, ...]
    directions: tuple[int, ...]
    dtypes: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        def span(v: tuple[int, ...]) -> str:
            return f"{v[0]}" if len(v) == 1 else f"{min(v)}..{max(v)} ({len(v)} values)"

        return (
            f"{plural(len(self.cells), 'cell')} ({', '.join(self.cells)}), hidden {span(self.hidden)}, "
            f"layers {span(self.layers)}, projection {', '.join(map(str, self.proj))} (cells with one), "
            f"directions {', '.join(map(str, self.directions))}, {', '.join(self.dtypes)}"
        )


def _fits(name: str) -> str:
    """Why a registered cell does not fit a design search ("" when it does)."""
    from ..core.cells import get_cell

    ct = get_cell(name)
    if ct.single_step:
        return "single-step cells: each is the one-layer form of its stack, which is searched"
    b = ct.torch
    if b.nn_class is None and b.reference is None and b.step is None:
        return "no torch module (TorchBinding): its time cannot be predicted or measured"
    return ""


def _cells(cells: Any) -> tuple[list[str], dict[str, str]]:
    """The cells named (default: every registered one) and why each does not fit ("" if it does)."""
    named = cell_names(cells, "cells") if cells is not None else [c.name for c in registered_cells()]
    assert named is not None
    why = {n: _fits(n) for n in named}
    if cells is not None and all(why.values()):
        raise ParamcalcError(f"no cell to search: {'; '.join(f'{n}: {w}' for n, w in why.items())}")
    return named, why


def _proj_sizes(proj: Any) -> tuple[int, ...]:
    """Projection sizes, 0 (none) among them if given: checked as sizes, sorted."""
    from .sweep import axis_values

    values = (proj,) if isinstance(proj, int) else tuple(proj)
    sizes = axis_values([v for v in values if v != 0], "proj_sizes") if any(v != 0 for v in values) else ()
    return tuple(sorted({*sizes, *(0 for v in values if v == 0)}))


def _dtypes(dtypes: Any, base: str) -> tuple[str, ...]:
    """The dtypes searched (default: the workload's), each one GEMMs can be timed in."""
    given = (dtypes,) if isinstance(dtypes, str) else tuple(dtypes or (base,))
    chosen = tuple(str(d).strip().lower() for d in given)
    bad = [d for d in chosen if d not in DESIGN_DTYPES]
    if bad:
        raise ParamcalcError(f"dtypes must be among {', '.join(DESIGN_DTYPES)} (timed GEMMs), got {bad[0]!r}")
    return tuple(dict.fromkeys(chosen))


def make_space(
    cells: Any, hidden: Any, layers: Any, proj: Any, directions: Any, dtypes: Any, base_dtype: str
) -> Space:
    """The checked space: cells (default: every registered entry that fits), sizes, dtypes."""
    from .sweep import axis_values

    named, why = _cells(cells)
    return Space(
        tuple(n for n in named if not why[n]),
        axis_values(hidden, "hidden_sizes"),
        axis_values(layers, "num_layers", maximum=MAX_LAYERS),
        _proj_sizes(proj),
        tuple(sorted(axis_values(directions, "directions", maximum=2))),
        _dtypes(dtypes, base_dtype),
        tuple((n, w) for n, w in why.items() if w),
    )


# --- the configurations and their figures ------------------------------------------------------------


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


@dataclass(frozen=True)
class Region:
    """Configurations excluded for one reason: a cell, its layers and directions, how many, and
    the hidden sizes they span (``≥ 1,088`` when they are every size from there up)."""

    cell: str
    reason: str
    layers: int | None
    directions: int | None
    configs: int | None
    hidden: str


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


@dataclass(frozen=True)
class Point:
    """One configuration of the front: its spec and dtype, its figures and its kernel path."""

    spec: RecurrentSpec
    dtype: str
    params: int
    memory: int
    state: int
    flops: int
    seconds: float
    tokens_per_s: float
    kernel: str


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


@dataclass(frozen=True)
class Request:
    """What a search was asked: the input size and workload, the space, the budgets, the objectives."""

    input_size: int
    workload: Workload
    space: Space
    budgets: Budgets
    objectives: tuple[str, ...]


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
