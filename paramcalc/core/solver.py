"""Inverse questions: which hidden size fits a parameter budget, and which matches another cell.

The parameter count of a stack is strictly increasing in ``hidden_size`` (every term is a
non-negative polynomial in it with a positive leading coefficient), so both answers come from
an exact integer binary search over :func:`paramcalc.count.total_params`; no floating point.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from ..errors import ParamcalcError
from ..results.base import Result
from ..results.table import Column, Table
from ..results.text import plural
from .cells import CLASSIC_CELLS, cell_names, get_cell
from .coerce import as_spec
from .params import total_params
from .spec import MAX_SIZE, RecurrentSpec

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9, "t": 10**12}
_BUDGET_RE = re.compile(
    r"^\s*((?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9][0-9_]*)(?:\.[0-9]*)?)(?:e([+-]?[0-9]+))?\s*([kmgbt]?)\s*$", re.I
)
#: Largest budget accepted: far above any model (a 2**31-wide, 10,000-layer stack has ~10**23).
MAX_COUNT = 10**30
#: Longest text a count is parsed from (a typo of 5,000 digits is refused before conversion).
MAX_COUNT_TEXT = 64


def parse_count(text: str | int, what: str = "budget") -> int:
    """Parse ``1.5M``, ``250k``, ``2e6``, ``1,000,000`` or an int into an exact positive int.

    The text and the exponent are bounded before anything is converted, so ``1e1000000`` or a
    5,000-digit number is a one-line error, not a long computation.
    """
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise ParamcalcError(f"{what} must be a number or a text like 1.5M, got {type(text).__name__}")
    if isinstance(text, int):
        if text > MAX_COUNT:
            raise ParamcalcError(f"{what} must be at most 1e30, got a {len(str(text))}-digit number")
        value = Decimal(text)
    else:
        if len(text) > MAX_COUNT_TEXT:
            raise ParamcalcError(
                f"cannot parse {what}: {len(text):,} characters is not a count (at most 1e30)"
            )
        m = _BUDGET_RE.match(text)
        if not m:
            raise ParamcalcError(
                f"cannot parse {what} {text!r}: use a number like 250k, 1.5M, 2e6 or 1000000"
            )
        mantissa, exp_text, suffix = m.group(1), m.group(2), m.group(3)
        exponent = int(exp_text) if exp_text else 0
        if abs(exponent) > 40:
            raise ParamcalcError(f"{what} {text!r} is out of range: at most 1e30")
        try:
            with localcontext() as ctx:
                ctx.prec = 120  # exact for every text of MAX_COUNT_TEXT characters
                value = Decimal(mantissa.replace(",", "").replace("_", "")).scaleb(exponent)
                value *= _SUFFIX[suffix.lower()]
        except InvalidOperation:
            raise ParamcalcError(f"cannot parse {what} {text!r}") from None
        if value > MAX_COUNT:
            raise ParamcalcError(f"{what} {text!r} is out of range: at most 1e30")
    if value != value.to_integral_value():
        raise ParamcalcError(f"{what} must be a whole number of parameters, got {text!r}")
    if value <= 0:
        raise ParamcalcError(f"{what} must be positive, got {text!r}")
    return int(value)


def _min_hidden(spec: RecurrentSpec, multiple_of: int) -> int:
    low = spec.proj_size + 1  # PyTorch: proj_size < hidden_size
    return -(-low // multiple_of) * multiple_of


def check_multiple_of(multiple_of: Any) -> int:
    """``multiple_of`` if it is a positive int within the largest size, else a one-line error."""
    if isinstance(multiple_of, bool) or not isinstance(multiple_of, int) or multiple_of < 1:
        raise ParamcalcError(f"multiple_of must be a positive integer, got {multiple_of!r}")
    if multiple_of > MAX_SIZE:
        raise ParamcalcError(f"multiple_of must be at most {MAX_SIZE:,}, got {multiple_of:,}")
    return multiple_of


def largest_hidden(spec: RecurrentSpec, budget: int | str, multiple_of: int = 1) -> int | None:
    """Largest ``hidden_size`` (a multiple of ``multiple_of``) whose total is ``<= budget``.

    ``spec.hidden_size`` is ignored; ``budget`` is a count or a text like ``"1.5M"``
    (:func:`parse_count`). Returns ``None`` when even the smallest size is too big.
    """
    spec = as_spec(spec, "largest_hidden")
    budget = parse_count(budget)
    check_multiple_of(multiple_of)

    def fits(h: int) -> bool:
        return total_params(spec.replace(hidden_size=h)) <= budget

    lo = _min_hidden(spec, multiple_of)
    if lo > MAX_SIZE or not fits(lo):
        return None
    # Exponential search for an upper bound, then bisection on k where h = k * multiple_of.
    k_lo, k_hi = lo // multiple_of, lo // multiple_of
    k_max = MAX_SIZE // multiple_of
    while k_hi < k_max and fits(k_hi * multiple_of):
        k_lo, k_hi = k_hi, min(k_hi * 2, k_max)
    if fits(k_hi * multiple_of):
        return k_hi * multiple_of
    while k_hi - k_lo > 1:  # invariant: fits(k_lo) and not fits(k_hi)
        mid = (k_lo + k_hi) // 2
        if fits(mid * multiple_of):
            k_lo = mid
        else:
            k_hi = mid
    return k_lo * multiple_of


@dataclass(frozen=True)
class SolveRow:
    """One answer: a spec, its parameter count and how it relates to the target."""

    spec: RecurrentSpec
    params: int
    target: int

    @property
    def difference(self) -> int:
        return self.params - self.target

    @property
    def relative(self) -> float:
        return self.difference / self.target


SOLVE_COLUMNS = (
    Column("cell", "str"),
    Column("hidden_size"),
    Column("params"),
    Column("target"),
    Column("difference"),
    Column("diff_pct", "float", unit="%", digits=4),
)


@dataclass(frozen=True, repr=False)
class SolveResult(Result):
    """Rows of a budget or match query; ``mode`` is ``budget`` or ``match``."""

    VIEWS = ("rows",)

    mode: str
    target: int
    rows: tuple[SolveRow, ...]
    reference: RecurrentSpec | None = None

    @property
    def total(self) -> int:
        """The target parameter count (budget, or the reference spec's count)."""
        return self.target

    def _table(self, view: str) -> Table:
        return Table(
            SOLVE_COLUMNS,
            tuple(
                (r.spec.cell, r.spec.hidden_size, r.params, r.target, r.difference, 100 * r.relative)
                for r in self.rows
            ),
        )

    def title(self) -> str:
        if self.mode == "budget":
            return f"largest hidden size within a budget of {plural(self.target, 'parameter')}"
        assert self.reference is not None
        return f"hidden sizes matching {self.reference.describe()} = {plural(self.target, 'parameter')}"

    def headline(self) -> str:
        return (
            ", ".join(f"{r.spec.cell} {r.spec.hidden_size}" for r in self.rows) + f" (target {self.target:,})"
        )

    def meta(self) -> dict[str, Any]:
        return {"mode": self.mode, "total": self.target}


def solve_budget(
    spec: RecurrentSpec, budget: int | str, *, cells: Sequence[str] | str | None = None, multiple_of: int = 1
) -> SolveResult:
    """For each cell (default: ``spec.cell``), the largest hidden size whose total fits ``budget``."""
    spec = as_spec(spec, "solve_budget")
    budget = parse_count(budget)
    check_multiple_of(multiple_of)
    rows = []
    for name in cell_names(cells) or [spec.cell]:
        s = retarget(spec, name)
        h = largest_hidden(s, budget, multiple_of)
        if h is None:
            smallest = _min_hidden(s, multiple_of)
            need = total_params(s.replace(hidden_size=smallest)) if smallest <= MAX_SIZE else None
            what = f"needs {need:,}" if need is not None else "is out of range"
            raise ParamcalcError(
                f"budget {budget:,} is too small for {s.cell}: the smallest hidden size ({smallest}) {what}"
            )
        s = s.replace(hidden_size=h)
        rows.append(SolveRow(s, total_params(s), budget))
    return SolveResult("budget", budget, tuple(rows))


def closest_hidden(spec: RecurrentSpec, target: int, multiple_of: int = 1) -> int:
    """The hidden size whose total is closest to ``target`` (ties go to the smaller size)."""
    below = largest_hidden(spec, target, multiple_of)
    low = _min_hidden(spec, multiple_of)
    if below is None:
        return low
    above = below + multiple_of
    if above > MAX_SIZE:
        return below
    d_below = target - total_params(spec.replace(hidden_size=below))
    d_above = total_params(spec.replace(hidden_size=above)) - target
    return above if d_above < d_below else below


def match_hidden(
    reference: RecurrentSpec, cells: Sequence[str] | str | None = None, *, multiple_of: int = 1
) -> SolveResult:
    """For each other cell type, the hidden size whose count comes closest to ``reference``'s.

    The first row is the reference itself. Input size, layers, directions, bias and convention
    are kept; a projection is kept only for LSTM targets.
    """
    reference = as_spec(reference, "match_hidden")
    check_multiple_of(multiple_of)
    target = total_params(reference)
    names = cell_names(cells) or [c for c in CLASSIC_CELLS if c != reference.cell_type.stack_name]
    rows = [SolveRow(reference, target, target)]
    for name in names:
        s = retarget(reference, name)
        s = s.replace(hidden_size=closest_hidden(s, target, multiple_of))
        rows.append(SolveRow(s, total_params(s), target))
    return SolveResult("match", target, tuple(rows), reference)


def retarget(spec: RecurrentSpec, cell: str) -> RecurrentSpec:
    """``spec`` with another cell type, dropping what the new cell cannot have.

    Input size, layers, directions, convention and merge mode are kept; a bias layout other
    than the old cell's default is kept where the new cell allows it; a projection only where
    the new cell has one.
    """
    ct = get_cell(cell)
    if ct.name == spec.cell:
        return spec
    old = spec.cell_type
    changes: dict[str, Any] = {"cell": ct.name}
    if not ct.projection:
        changes["proj_size"] = 0
    if not ct.reset_after_option:
        changes["reset_after"] = True
    default_b = spec.default_bias_vectors
    if spec.bias_vectors != default_b and spec.bias_vectors in ct.bias_vectors_allowed:
        changes["bias_vectors"] = spec.bias_vectors
    if spec.peephole != old.default_peephole and ct.peephole_gates:
        changes["peephole"] = spec.peephole
    if ct.single_step:
        changes.update(num_layers=1, bidirectional=False, merge_mode="concat")
    # hidden_size is a placeholder until solved; keep it valid for the new cell.
    changes["hidden_size"] = max(spec.hidden_size, (changes.get("proj_size", spec.proj_size)) + 1)
    return spec.replace(**changes)


def match(
    reference: RecurrentSpec, cells: Sequence[str] | str | None = None, *, multiple_of: int = 1
) -> SolveResult:
    """Deprecated alias of :func:`match_hidden` (renamed in 0.2.0)."""
    import warnings

    warnings.warn(
        "paramcalc.match is deprecated: use paramcalc.match_hidden", DeprecationWarning, stacklevel=2
    )
    return match_hidden(reference, cells, multiple_of=multiple_of)
