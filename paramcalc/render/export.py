"""Export a result's table to a file chosen by suffix, atomically and losslessly.

Suffixes (:data:`ENCODERS`): ``.csv`` and ``.json`` (standard library writers: exact integers of
any size), ``.md`` and ``.html`` (a small document: title, context, table, notes), ``.tex``
(``latex_booktabs``), ``.parquet`` (pyarrow) and ``.xlsx`` (openpyxl). Rules every writer keeps:

* **atomic, links as the kernel follows them, checked first**: the bytes are built in memory,
  then written by :func:`paramcalc.core.writes.atomic_write` (a temporary file renamed over the
  target; a symbolic link followed only where the kernel would); :func:`check_export_target`
  validates the path (suffix, folder, name length, links, writability, free space, the extra
  package) before any work is done.
* **lossless**: integers beyond int64 (parquet) or beyond 2**53 (Excel stores numbers as
  doubles) are written as decimal text, and a note says which columns: in the file (parquet's
  schema metadata holds the result's meta and notes; an Excel file gets a ``notes`` sheet) and
  on stderr from the CLI.
* **safe**: untrusted text is escaped for the format (one place: :mod:`.draw`): a text cell
  starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with ``'`` in
  ``.csv`` and ``.xlsx`` so no spreadsheet runs it as a formula; ``.md`` escapes Markdown
  (``< > & [ ] ( )``: no HTML or link survives), ``.html`` and ``.tex`` escape theirs; control
  characters, Unicode format characters and lone surrogates are written escaped (``\\x1b``).
* **documented**: ``.md`` and ``.html`` documents define every column (:class:`Column` docs),
  and say when and, from the CLI, by which command line they were made.

:func:`export_result` serves :meth:`Result.export <paramcalc.results.base.Result.export>`
through :data:`paramcalc.results.renderers.EXPORT`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.writes import MIN_FREE_BYTES as MIN_FREE_BYTES
from ..core.writes import check_target, free_bytes, write_bytes
from ..errors import ParamcalcError
from ..results.base import Document
from ..results.renderers import CHECK_EXPORT, EXPORT, Say
from ..results.table import INT64_MAX, Column, Table
from ..results.text import fmt_bytes, plural, safe_text
from ..version import __version__
from .draw import cell_text, csv_text, json_document, jsonable, md_cell, md_text, said, sheet_text
from .draw import neutralise as neutralise  # re-exported: the spreadsheet rule lives in .draw

if TYPE_CHECKING:  # pragma: no cover
    from ..results.base import Result

#: Largest integer a spreadsheet cell holds exactly (IEEE double).
EXCEL_INT_MAX = 2**53
#: Which extra installs the package a suffix needs.
_EXTRA = {".parquet": ("pyarrow", "export"), ".xlsx": ("openpyxl", "export")}


def stamped(doc: Document) -> Document:
    """``doc`` with ``created`` set to now (local time, with its UTC offset), unless it has one."""
    if doc.created:
        return doc
    import datetime

    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    return replace(doc, created=now)


def made(doc: Document) -> list[tuple[str, str]]:
    """``(label, value)`` lines saying when and how the document was made."""
    out = [("created", f"{doc.created} by paramcalc {__version__}")] if doc.created else []
    return out + ([("command", doc.command)] if doc.command else [])


# --- checking the target -----------------------------------------------------------------------


def check_export_target(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """:func:`~paramcalc.core.writes.check_target` for table exports, plus the package the suffix needs."""
    target, suffix = check_target(path, SUFFIXES, "export to")
    need = _EXTRA.get(suffix)
    if need is not None:
        import importlib.util

        if importlib.util.find_spec(need[0]) is None:
            raise ParamcalcError(
                f"writing {suffix} files needs {need[0]}: pip install 'paramcalc[{need[1]}]'"
            )
    return target, suffix


# --- cell values per format --------------------------------------------------------------------


def lossless_notes(table: Table, suffix: str) -> list[str]:
    """Notes naming the columns a format stores as text to keep them exact."""
    if suffix == ".parquet":
        big = table.overflowing()
        if big:
            return [f"{', '.join(big)}: integers beyond int64 are stored as decimal text"]
    if suffix == ".xlsx":
        big = [
            c.name
            for i, c in enumerate(table.columns)
            if c.kind == "int" and any(r[i] is not None and abs(r[i]) > EXCEL_INT_MAX for r in table.rows)
        ]
        if big:
            return [f"{', '.join(big)}: integers beyond 2**53 are stored as text (Excel numbers are doubles)"]
    return []


def _json_text(table: Table, meta: dict[str, Any]) -> str:
    import json

    return json.dumps(json_document(table, meta), indent=2, ensure_ascii=False, default=str) + "\n"


def _display_rows(table: Table) -> list[list[str]]:
    return [[cell_text(v, c) for c, v in zip(table.columns, r, strict=True)] for r in table.rows]


def column_docs(columns: Sequence[Column]) -> list[tuple[str, str]]:
    """``(name, definition)`` of each column that has one: its unit and what it holds."""
    out = []
    for c in columns:
        text = " ".join(x for x in (f"[{c.unit}]" if c.unit else "", c.doc) if x)
        if text:
            out.append((c.name, text))
    return out


def link_target(href: str) -> str:
    """A relative link as a URL path: percent-encoded, so no scheme, markup or quote survives."""
    from urllib.parse import quote

    return quote(href, safe="/")


def _markdown(table: Table, doc: Document) -> str:
    from tabulate import tabulate

    lines = [f"# {md_text(doc.title)}", ""] if doc.title else []
    context = [*doc.context, *made(doc)]
    if context:
        lines += [f"- **{md_text(k)}**: {md_text(v)}" for k, v in context] + [""]
    body = tabulate(
        [[md_cell(x, c) for x, c in zip(row, table.columns, strict=True)] for row in _display_rows(table)],
        headers=[md_text(n) for n in table.names],
        tablefmt="github",
        disable_numparse=True,
        colalign=tuple("right" if c.kind in ("int", "float") else "left" for c in table.columns) or None,
    )
    lines += [body, ""]
    if doc.summary:
        lines += [md_text(s) + "  " for s in doc.summary] + [""]
    for label, href in doc.links:
        lines += [f"![{md_text(label)}]({link_target(href)})", ""]
    defined = column_docs(table.columns)
    if defined:
        lines += ["Columns:", ""] + [f"- **{md_text(n)}**: {md_text(d)}" for n, d in defined] + [""]
    if doc.notes:
        lines += ["Notes:", ""] + [f"- {md_text(n)}" for n in doc.notes] + [""]
    return "\n".join(lines)


def _html(table: Table, doc: Document) -> str:
    import html

    from tabulate import tabulate

    def e(text: str) -> str:
        return html.escape(safe_text(text))

    parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">']
    parts.append(f"<title>{e(doc.title or 'paramcalc')}</title></head><body>")
    if doc.title:
        parts.append(f"<h1>{e(doc.title)}</h1>")
    context = [*doc.context, *made(doc)]
    if context:
        parts.append("<ul>" + "".join(f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in context) + "</ul>")
    parts.append(tabulate(_display_rows(table), headers=table.names, tablefmt="html", disable_numparse=True))
    if doc.summary:
        parts.append("<p>" + "<br>".join(e(s) for s in doc.summary) + "</p>")
    for label, href in doc.links:
        parts.append(f'<p><img src="{e(link_target(href))}" alt="{e(label)}"></p>')
    defined = column_docs(table.columns)
    if defined:
        parts.append("<dl>" + "".join(f"<dt>{e(n)}</dt><dd>{e(d)}</dd>" for n, d in defined) + "</dl>")
    if doc.notes:
        parts.append("<ul>" + "".join(f"<li>{e(n)}</li>" for n in doc.notes) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _latex(table: Table) -> str:
    from tabulate import tabulate

    text: str = tabulate(
        _display_rows(table), headers=table.names, tablefmt="latex_booktabs", disable_numparse=True
    )
    return text + "\n"


def _frame_for_file(table: Table, suffix: str) -> Any:
    """The table as a DataFrame for parquet/xlsx: exact big ints as text, tuples as text for xlsx."""
    frame = table.to_frame()
    limit = INT64_MAX if suffix == ".parquet" else EXCEL_INT_MAX
    for i, c in enumerate(table.columns):
        column = _file_column([r[i] for r in table.rows], c, suffix, limit)
        if column is not None:
            frame[c.name] = column
    if suffix == ".xlsx":
        frame.columns = [sheet_text(n) for n in frame.columns]
    return frame


def _file_column(values: list[Any], col: Column, suffix: str, limit: int) -> Any:
    """The column a file stores in place of the frame's own, or ``None`` to keep the frame's:
    integers beyond ``limit`` as decimal text, shapes as text (xlsx) or lists, text escaped."""
    import pandas as pd

    if col.kind == "int" and any(v is not None and abs(v) > limit for v in values):
        return pd.Series([None if v is None else str(v) for v in values], dtype="string")
    if col.kind == "shape":
        if suffix == ".xlsx":
            return pd.Series([None if v is None else cell_text(v, col) for v in values], dtype="string")
        return pd.Series([None if v is None else list(v) for v in values], dtype="object")
    if col.kind == "str":
        text: Callable[[Any], str] = sheet_text if suffix == ".xlsx" else (lambda v: safe_text(str(v)))
        return pd.Series([None if v is None else text(v) for v in values], dtype="string")
    return None


def _xlsx_bytes(table: Table, notes: Sequence[str]) -> bytes:
    import pandas as pd

    frame = _frame_for_file(table, ".xlsx")
    buf = io.BytesIO()  # built in memory: a full disk fails in one place, with no half-written zip
    with pd.ExcelWriter(buf, engine="openpyxl") as writer:
        frame.to_excel(writer, index=False, sheet_name="table")
        if notes:  # the notes travel with the data: a second sheet
            pd.DataFrame({"note": [sheet_text(n) for n in notes]}).to_excel(
                writer, index=False, sheet_name="notes"
            )
    return buf.getvalue()


def _parquet_bytes(table: Table, meta: dict[str, Any]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = _frame_for_file(table, ".parquet")
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    import json

    extra = {b"paramcalc": json.dumps(jsonable(meta), default=str).encode("utf-8")}
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **extra})
    buf = io.BytesIO()
    pq.write_table(arrow, buf)
    return buf.getvalue()


def _csv(table: Table, meta: dict[str, Any], doc: Document) -> bytes:
    return (csv_text(table) + _comment_line("#", meta, table)).encode("utf-8")


def _tex(table: Table, meta: dict[str, Any], doc: Document) -> bytes:
    return (_latex(table) + _comment_line("%", meta, table)).encode("utf-8")


#: The file's bytes for each suffix, from the table, its meta (with notes) and its document.
ENCODERS: dict[str, Callable[[Table, dict[str, Any], Document], bytes]] = {
    ".csv": _csv,
    ".json": lambda table, meta, doc: _json_text(table, meta).encode("utf-8"),
    ".md": lambda table, meta, doc: _markdown(table, doc).encode("utf-8"),
    ".html": lambda table, meta, doc: _html(table, doc).encode("utf-8"),
    ".tex": _tex,
    ".parquet": lambda table, meta, doc: _parquet_bytes(table, meta),
    ".xlsx": lambda table, meta, doc: _xlsx_bytes(table, list(meta.get("notes", []))),
}
SUFFIXES = tuple(ENCODERS)


def encode(table: Table, suffix: str, meta: dict[str, Any], doc: Document) -> bytes:
    """The file's bytes for ``suffix`` (everything is built before the target is touched)."""
    encoder = ENCODERS.get(suffix)
    if encoder is None:  # pragma: no cover - checked before
        raise ParamcalcError(f"unknown export suffix {suffix!r}")
    return encoder(table, meta, doc)


def _comment_line(mark: str, meta: dict[str, Any], table: Table) -> str:
    """The last line of a partial table's ``.csv``/``.tex`` (formats without a header for notes):
    ``# partial: 3 of 7 rows (the run was interrupted)``; ``""`` for a complete one."""
    if not meta.get("partial"):
        return ""
    planned = meta.get("rows_planned", "?")
    done, what = meta.get("rows_done", len(table.rows)), meta.get("rows_what", "rows")
    return f"{mark} partial: {done} of {planned} {what} (the run was interrupted)\n"


#: What an export's disk space check counts per row: generous (a timed row is under 1 KB of CSV,
#: an .xlsx adds its zip structure).
EXPORT_ROW_BYTES = 4096


def check_free_space(path: str | os.PathLike[str], rows: int) -> None:
    """Refuse (one line) an export the disk cannot hold, before timed work is done: the need is
    ``MIN_FREE_BYTES + rows × EXPORT_ROW_BYTES``, twice over (the temporary file exists beside
    the old one until the rename). Nothing is said where the free space cannot be read."""
    folder = Path(path).parent if str(Path(path).parent) else Path(".")
    free = free_bytes(folder)
    need = 2 * (MIN_FREE_BYTES + rows * EXPORT_ROW_BYTES)
    if free is not None and free < need:
        raise ParamcalcError(
            f"cannot export to {safe_text(str(path))!r}: {fmt_bytes(free)} free in "
            f"{safe_text(str(folder))!r}, and the table of {plural(rows, 'timed row')} needs about "
            f"{fmt_bytes(need)}: free some space or write elsewhere"
        )


def export_table(
    table: Table,
    path: str | os.PathLike[str],
    *,
    meta: dict[str, Any] | None = None,
    doc: Document | None = None,
) -> Path:
    """Write ``table`` to ``path`` in the format its suffix names, atomically (module docstring)."""
    target, suffix = check_export_target(path)
    doc = stamped(doc or Document())
    notes = lossless_notes(table, suffix)
    meta = dict(meta or {})
    if notes:
        meta["notes"] = [*meta.get("notes", []), *notes]
        doc = replace(doc, notes=[*doc.notes, *notes])
    data = encode(table, suffix, meta, doc)
    write_bytes(target, data)
    return target


def export_result(
    result: Result,
    path: str | os.PathLike[str],
    view: str | None = None,
    *,
    links: Sequence[tuple[str, str]] = (),
    command: str = "",
    say: Say = None,
) -> Path:
    """Write ``result``'s view to ``path`` by its suffix, with the result's meta and notes (and,
    in documents, its title, context and summary). ``say`` re-words the notes and summary lines
    (the CLI names its flags there), never a table cell."""
    v = result.view(view)
    doc = result.document(v, links, command)
    meta = result.json_meta()
    if say is not None:
        meta["notes"] = said(meta.get("notes", []), say)
        doc = replace(doc, summary=said(doc.summary, say), notes=said(doc.notes, say))
    return export_table(result.table(v), path, meta=meta, doc=doc)


def check_output(path: str | os.PathLike[str], timed_rows: int | None = None) -> None:
    """:func:`check_export_target`, and with ``timed_rows`` :func:`check_free_space` for a timed
    table of that many rows: what a long run checks before its first row."""
    check_export_target(path)
    if timed_rows is not None:
        check_free_space(path, timed_rows)


EXPORT.register("*", export_result)
CHECK_EXPORT.register("*", check_output)
