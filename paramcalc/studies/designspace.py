"""The vocabulary of a design search: the objectives, the budgets, the space searched, and what a
search was asked (:class:`Request`) and found (:class:`Point`, :class:`Region`).

:mod:`paramcalc.studies.design` runs the search and :mod:`paramcalc.studies.designresult` holds
its result; both take these types from here, so neither imports the other back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ..core.cells import cell_names, registered_cells
from ..core.spec import MAX_LAYERS, RecurrentSpec
from ..core.workload import Workload
from ..errors import ParamcalcError
from ..results.text import plural

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
class Region:
    """Configurations excluded for one reason: a cell, its layers and directions, how many, and
    the hidden sizes they span (``≥ 1,088`` when they are every size from there up)."""

    cell: str
    reason: str
    layers: int | None
    directions: int | None
    configs: int | None
    hidden: str


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


@dataclass(frozen=True)
class Request:
    """What a search was asked: the input size and workload, the space, the budgets, the objectives."""

    input_size: int
    workload: Workload
    space: Space
    budgets: Budgets
    objectives: tuple[str, ...]
