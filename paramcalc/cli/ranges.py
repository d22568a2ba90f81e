"""Range and cell-list text of the command line: ``64:1024:64``, ``16,32:128:32``, ``rnn,lstm``.

The library takes Python values (numbers, ``range`` objects, sequences: see
:func:`paramcalc.studies.sweep.axis_values`); this module reads the text a user types into
them, checking the text, each number's digits and how many values it names before anything is
expanded, so a typo cannot allocate a billion values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..core.cells import cell_names
from ..core.spec import MAX_SIZE
from ..errors import ParamcalcError

#: Longest range text accepted (``64:1024:64,2048``) and most digits of one number in it.
MAX_RANGE_TEXT = 200
MAX_RANGE_DIGITS = 12

_RANGE_RE = re.compile(r"^\s*(-?\d+)\s*(?::\s*(-?\d+)\s*(?::\s*(-?\d+)\s*)?)?$")


def parse_range(text: Any, what: str, *, maximum: int = MAX_SIZE) -> tuple[int, ...]:
    """Parse ``64:1024:64`` (start:stop:step, stop inclusive), ``1:4``, ``32,64,128`` or ``256``.

    Comma-separated items may themselves be ranges; duplicates are dropped, order is kept.
    Python values (a number, a ``range``, a sequence of numbers) are checked as the library
    checks them (:func:`paramcalc.studies.sweep.axis_values`).
    """
    from ..studies.sweep import axis_values, expand

    if isinstance(text, str):
        if len(text) > MAX_RANGE_TEXT:
            raise ParamcalcError(f"{what}: {len(text):,} characters is too long for a range")
        return expand([_parse_item(part, what) for part in text.split(",")], what, maximum=maximum)
    if isinstance(text, bool) or not isinstance(text, (int, range, Sequence)):
        raise ParamcalcError(
            f"{what} must be a range text like 64:512:64, a number or a list, got {type(text).__name__}"
        )
    return axis_values(text, what, maximum=maximum)


def _parse_item(part: str, what: str) -> range | int:
    m = _RANGE_RE.match(part)
    if not m:
        shown = part.strip() if len(part) <= 40 else part.strip()[:37] + "..."
        raise ParamcalcError(
            f"cannot parse {what} {shown!r}: use start:stop:step (stop inclusive), "
            "start:stop, a comma list like 64,128,256, or a single number"
        )
    numbers = [g for g in m.groups() if g is not None]
    if any(len(g.lstrip("-")) > MAX_RANGE_DIGITS for g in numbers):
        raise ParamcalcError(f"{what}: a number of more than {MAX_RANGE_DIGITS} digits is out of range")
    start, stop, step = m.group(1), m.group(2), m.group(3)
    if stop is None:
        return int(start)
    a, b, s = int(start), int(stop), int(step) if step is not None else 1
    if s <= 0:
        raise ParamcalcError(f"{what} range {part.strip()!r}: the step must be positive, got {s}")
    if a > b:
        raise ParamcalcError(f"{what} range {part.strip()!r}: start {a} is larger than stop {b}")
    return range(a, b + 1, s)


def parse_cells(text: str | Sequence[str] | None) -> list[str] | None:
    """``rnn,lstm,gru`` -> canonical cell names (one-line error for an unknown or empty list)."""
    return cell_names(text, "--cells")
