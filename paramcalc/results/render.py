"""Drawing tables: the one place numbers get formatted (thousands, significant digits, units).

:func:`render` draws a :class:`~paramcalc.results.table.Table` in any tabulate format, or as CSV
or JSON; text formats get header and footer lines, machine formats get none. Untrusted text (a
checkpoint's tensor names) is drawn escaped (:func:`safe_text`): a control character or an
escape sequence never reaches the terminal. No pandas here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from .table import Column, Table

#: Formats whose output is markup or data for another program: no header or footer lines.
MACHINE_FORMATS = frozenset(
    {
        "csv",
        "json",
        "tsv",
        "html",
        "unsafehtml",
        "latex",
        "latex_raw",
        "latex_booktabs",
        "latex_longtable",
        "mediawiki",
        "moinmoin",
        "jira",
        "textile",
        "asciidoc",
        "youtrack",
    }
)


def table_formats() -> list[str]:
    """Every tabulate table format, plus ``csv`` and ``json``."""
    from tabulate import tabulate_formats

    return [*tabulate_formats, "csv", "json"]


# --- numbers -----------------------------------------------------------------------------------


def sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (measured values carry no more)."""
    if x == 0 or x != x or math.isinf(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def fmt_float(x: float, digits: int = 4) -> str:
    """A float with ``digits`` significant digits and thousands separators: ``12,340``, ``0.5123``."""
    if x != x:
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    r = sig(x, digits)
    if r == 0:
        return "0"
    if abs(r) >= 10 ** (digits - 1):
        return f"{round(r):,}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(r))))
    return f"{r:,.{decimals}f}"


def fmt_bytes(n: float) -> str:
    """``3.12 MiB``: bytes with a binary unit (for text only; tables keep exact byte counts)."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,.0f} B"


def fmt_seconds(s: float) -> str:
    """``1.234 ms`` or ``56.7 µs``: a duration with 4 significant digits."""
    if s >= 1:
        return f"{s:.4g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.4g} ms"
    return f"{s * 1e6:.4g} µs"


def fmt_int(n: int) -> str:
    return f"{n:,}"


# --- untrusted text ----------------------------------------------------------------------------

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def safe_text(text: str) -> str:
    """``text`` with control characters, escape sequences and lone surrogates shown escaped."""
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(lambda m: _escape(m.group()), text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# --- cells -------------------------------------------------------------------------------------


def cell_text(value: Any, col: Column) -> str:
    """One value as a table cell: thousands separators, significant digits, shapes, blanks."""
    if value is None:
        return ""
    if col.kind == "shape":
        return "(" + ", ".join(map(str, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return fmt_int(value)
    if isinstance(value, float):
        return fmt_float(value, col.digits)
    return safe_text(str(value))


def raw_value(value: Any, col: Column) -> Any:
    """A value for CSV/JSON: exact ints, floats, lists for shapes, escaped text."""
    if value is None:
        return None
    if col.kind == "shape":
        return list(value)
    if isinstance(value, str):
        return safe_text(value)
    return value


def _numeric(col: Column) -> bool:
    return col.kind in ("int", "float")


def render(
    table: Table,
    fmt: str = "simple",
    *,
    wide: bool = False,
    header: Sequence[str] = (),
    footer: Sequence[str] = (),
    meta: dict[str, Any] | None = None,
) -> str:
    """Draw ``table`` as text.

    ``json`` gives ``{**meta, "rows": [...]}`` with raw values (exact integers); ``csv`` the bare
    rows; any tabulate format a table, after ``header`` and before ``footer`` lines when the
    format is for people (not in :data:`MACHINE_FORMATS`). ``wide`` keeps every column in the
    text formats; CSV and JSON always hold every column.
    """
    if fmt == "json":
        import json

        rows = [{c.name: raw_value(v, c) for c, v in zip(table.columns, r, strict=True)} for r in table.rows]
        return json.dumps({**(meta or {}), "rows": rows}, indent=2, ensure_ascii=False, default=str)
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(table.names)
        for r in table.rows:
            w.writerow(["" if v is None else _csv_cell(v, c) for c, v in zip(table.columns, r, strict=True)])
        return buf.getvalue().rstrip("\n")
    from tabulate import tabulate

    shown = table.select(wide)
    body: str = tabulate(
        [[cell_text(v, c) for c, v in zip(shown.columns, r, strict=True)] for r in shown.rows],
        headers=shown.names,
        tablefmt=fmt,
        disable_numparse=True,
        colalign=tuple("right" if _numeric(c) else "left" for c in shown.columns) or None,
    )
    if fmt in MACHINE_FORMATS:
        return body
    return "\n".join([*map(safe_text, header), body, *map(safe_text, footer)])


def _csv_cell(value: Any, col: Column) -> str:
    if col.kind == "shape":
        return cell_text(value, col)
    if isinstance(value, str):
        return safe_text(value)
    return str(value)


def html_table(table: Table) -> str:
    """An HTML table (for notebooks' ``_repr_html_``); text is escaped by tabulate."""
    from tabulate import tabulate

    return str(
        tabulate(
            [[cell_text(v, c) for c, v in zip(table.columns, r, strict=True)] for r in table.rows],
            headers=table.names,
            tablefmt="html",
            disable_numparse=True,
        )
    )
