"""Drawing tables: the one place table cells get formatted (thousands, significant digits).

:func:`render` draws a :class:`~paramcalc.results.table.Table` in any tabulate format, or as CSV
or JSON; text formats get header and footer lines, machine formats get none. A default table
(not ``wide``) in a terminal format fits :data:`MAX_TABLE_WIDTH` columns: long text cells wrap.
:func:`draw_result` and :func:`result_html` draw a whole result (title, table, summary, notes):
they serve :meth:`Result.render <paramcalc.results.base.Result.render>` and notebooks through
the registries of :mod:`paramcalc.results.renderers`.

Untrusted text (tensor names from files, TOML titles, device names from JSON) is data in every
format, and the render layer is the one place that escapes it:

* terminals (every format): :func:`~paramcalc.results.text.safe_text` (with the other text
  helpers every layer's messages use) shows control characters, escape sequences, Unicode
  format characters (bidi overrides, zero-width characters, BOM) and lone surrogates as
  ``\\x1b``/``\\u202e`` text;
* Markdown (``.md`` exports, the ``github``/``pipe``/``markdown`` formats): :func:`md_text`
  backslash-escapes ``\\ ` * < > & [ ] ( ) |``, so no HTML tag, entity or link survives;
* spreadsheets (CSV and TSV on any stream, ``.xlsx``): :func:`neutralise` puts ``'`` before a
  text cell starting with ``= + - @``, a tab or a carriage return.

No pandas here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..results.renderers import DRAW, HTML, Say
from ..results.table import Column, Table
from ..results.text import safe_text

if TYPE_CHECKING:  # pragma: no cover
    from ..results.base import Result

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


#: Markdown table formats: their cells, headers, header and footer lines are Markdown-escaped.
MARKDOWN_FORMATS = frozenset({"github", "pipe"})
#: Other names accepted for a format: ``markdown`` is GitHub-flavoured Markdown; tabulate's raw
#: markup formats are drawn escaped (paramcalc's cells hold no markup, only untrusted names could).
FORMAT_ALIASES = {"markdown": "github", "unsafehtml": "html", "latex_raw": "latex"}
#: Widest default table, in terminal columns: text cells wrap to fit (``wide`` shows them whole).
MAX_TABLE_WIDTH = 120
#: Terminal formats in which a cell may span lines (a wrapped cell): everything but markup.
WRAP_FORMATS = frozenset(
    {
        "plain",
        "simple",
        "grid",
        "simple_grid",
        "rounded_grid",
        "heavy_grid",
        "mixed_grid",
        "double_grid",
        "fancy_grid",
        "colon_grid",
        "outline",
        "simple_outline",
        "rounded_outline",
        "heavy_outline",
        "mixed_outline",
        "double_outline",
        "fancy_outline",
        "presto",
        "pretty",
        "psql",
    }
)


def table_formats() -> list[str]:
    """Every tabulate table format, plus ``csv``, ``json`` and ``markdown`` (see
    :data:`FORMAT_ALIASES`)."""
    from tabulate import tabulate_formats

    return [*tabulate_formats, "csv", "json", *(a for a in FORMAT_ALIASES if a not in tabulate_formats)]


def resolve_format(fmt: str) -> str:
    """The format an alias names (``markdown`` -> ``github``); other names unchanged."""
    return FORMAT_ALIASES.get(fmt, fmt)


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


# --- untrusted text ----------------------------------------------------------------------------

_MARKDOWN_SPECIAL = re.compile(r"([\\`*<>&\[\]()|])")


def md_text(text: str) -> str:
    """``text`` as literal Markdown: :func:`safe_text`, then ``\\ ` * < > & [ ] ( ) |`` escaped
    with a backslash, so no HTML tag, entity, link, image or table cell break survives."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", safe_text(text))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """A spreadsheet-safe text cell: a leading formula character gets a ``'`` before it."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def sheet_text(value: Any) -> str:
    """Text for a spreadsheet cell (CSV, TSV, Excel): escaped, then neutralised."""
    return neutralise(safe_text(str(value)))


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
        return f"{value:,}"
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


def json_document(table: Table, meta: dict[str, Any]) -> dict[str, Any]:
    """``{**meta, "rows": [...]}`` with raw values and every text escaped (:func:`safe_text`):
    what JSON on stdout and ``.json`` files hold."""
    rows = [{c.name: raw_value(v, c) for c, v in zip(table.columns, r, strict=True)} for r in table.rows]
    return {**jsonable(meta), "rows": rows}


def jsonable(obj: Any) -> Any:
    """``obj`` with every string (keys too) escaped by :func:`safe_text`."""
    if isinstance(obj, dict):
        return {safe_text(str(k)): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, str):
        return safe_text(obj)
    return obj


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
    text formats, whole; otherwise a terminal table is fitted to :data:`MAX_TABLE_WIDTH`
    columns by wrapping its text cells. CSV and JSON always hold every column. Untrusted text is
    escaped for the format (module docstring).
    """
    fmt = resolve_format(fmt)
    if fmt == "json":
        import json

        return json.dumps(json_document(table, meta or {}), indent=2, ensure_ascii=False, default=str)
    if fmt == "csv":
        return csv_text(table).rstrip("\n")
    shown = table.select(wide)
    same = [] if wide else table.folded()
    text = _ESCAPES.get(fmt, _terminal)
    cells = [[text(cell_text(v, c), c) for c, v in zip(shown.columns, r, strict=True)] for r in shown.rows]
    headers = [text(n, _HEADER) for n in shown.names]
    line = md_text if fmt in MARKDOWN_FORMATS else safe_text
    limit = None if wide or fmt not in WRAP_FORMATS else MAX_TABLE_WIDTH
    body = _tabulate(cells, headers, shown.columns, fmt, limit)
    if fmt in MACHINE_FORMATS:
        return body
    if same:
        footer = ["same in every row: " + ", ".join(f"{c.name} {cell_text(v, c)}" for c, v in same), *footer]
    return "\n".join([*map(line, header), body, *map(line, footer)])


_HEADER = Column("header", "str")


def _terminal(text: str, col: Column) -> str:
    return text  # cell_text has made it terminal-safe already


def md_cell(text: str, col: Column) -> str:
    """A drawn cell of a Markdown table: text escaped (:func:`md_text`); numbers and shapes,
    which are drawn by :func:`cell_text` from numbers alone, as they are."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text) if col.kind == "str" else text


def _sheet_cell(text: str, col: Column) -> str:
    return neutralise(text) if col.kind == "str" else text


#: How a drawn cell (or header) is escaped for the format it lands in (module docstring).
_ESCAPES = {**dict.fromkeys(MARKDOWN_FORMATS, md_cell), "tsv": _sheet_cell}


def _tabulate(
    rows: list[list[str]], headers: list[str], columns: Sequence[Column], fmt: str, limit: int | None
) -> str:
    """tabulate's table; with ``limit``, text columns wrapped until it fits (when it can)."""
    from tabulate import tabulate

    align = tuple("right" if _numeric(c) else "left" for c in columns) or None

    def draw(widths: list[int | None] | None) -> str:
        return str(
            tabulate(
                rows,
                headers=headers,
                tablefmt=fmt,
                disable_numparse=True,
                colalign=align,
                maxcolwidths=widths,
            )
        )

    body = draw(None)
    if limit is None or not rows:
        return body
    natural = [max(map(_width, [h, *(r[i] for r in rows)])) for i, h in enumerate(headers)]
    widths = list(natural)
    for _ in range(4):  # each pass shrinks by the measured overflow; padding differs by format
        over = max(map(_width, body.splitlines()), default=0) - limit
        if over <= 0:
            break
        floors = [
            max(_width(h), MIN_WRAP_WIDTH) if c.kind == "str" else w
            for h, c, w in zip(headers, columns, widths, strict=True)
        ]
        shrunk = _shrink(widths, floors, over)
        if shrunk == widths:
            break  # nothing left to wrap: numbers and headers keep their width
        widths = shrunk
        body = draw([w if w < n else None for w, n in zip(widths, natural, strict=True)])
    return body


#: Narrowest a wrapped text column gets (or its header's width, if wider).
MIN_WRAP_WIDTH = 16


def _width(text: str) -> int:
    """Terminal columns of the longest line of ``text`` (East Asian wide characters count 2)."""
    import unicodedata

    lines = text.split("\n")
    if text.isascii():
        return max(map(len, lines))
    return max(sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in ln) for ln in lines)


def _shrink(widths: list[int], floors: list[int], over: int) -> list[int]:
    """Widths with ``over`` columns taken from the widest shrinkable ones first (water-filling)."""
    level = max(widths)
    while level > 0:
        level -= 1
        saved = sum(max(0, w - max(level, f)) for w, f in zip(widths, floors, strict=True))
        if saved >= over or level <= min(floors):
            break
    return [min(w, max(level, f)) for w, f in zip(widths, floors, strict=True)]


def csv_text(table: Table) -> str:
    """The table as CSV (every column, exact values): what stdout and ``.csv`` files hold.

    Text cells and headers are escaped and neutralised (:func:`sheet_text`), shapes drawn as
    ``(4, 8)``, numbers written exactly."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([sheet_text(n) for n in table.names])
    for r in table.rows:
        w.writerow(["" if v is None else _csv_cell(v, c) for c, v in zip(table.columns, r, strict=True)])
    return buf.getvalue()


def _csv_cell(value: Any, col: Column) -> str:
    if col.kind == "shape":
        return cell_text(value, col)
    if isinstance(value, str):
        return sheet_text(value)
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


# --- results -----------------------------------------------------------------------------------


def said(lines: Sequence[str], say: Say) -> list[str]:
    """``lines`` re-worded by ``say`` (unchanged when it is ``None``)."""
    return list(lines) if say is None else [say(line) for line in lines]


def draw_result(
    result: Result, fmt: str = "simple", view: str | None = None, *, wide: bool = False, say: Say = None
) -> str:
    """``result``'s view drawn in ``fmt``: its title above the table, its summary and notes
    under it (text formats), its meta and notes around the rows (JSON). ``say`` re-words the
    lines around the table, never a table cell (which is data)."""
    v = result.view(view)
    meta = result.json_meta()
    if say is not None:
        meta["notes"] = said(meta.get("notes", []), say)
    return render(
        result.table(v),
        fmt,
        wide=wide,
        header=said(result.header(), say),
        footer=said(result.footer(v), say),
        meta=meta,
    )


def result_html(result: Result) -> str:
    """What a notebook shows: the title, the default view's table, the summary and the notes."""
    import html

    title = html.escape(safe_text(result.title()))
    notes = "".join(f"<p><small>{html.escape(safe_text(n))}</small></p>" for n in result.notes())
    summary = "<br>".join(html.escape(safe_text(s)) for s in result.summary(result.VIEWS[0]))
    return (
        (f"<p><b>{title}</b></p>" if title else "")
        + html_table(result.table())
        + (f"<p>{summary}</p>" if summary else "")
        + notes
    )


DRAW.register("*", draw_result)
HTML.register("*", result_html)
