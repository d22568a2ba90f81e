"""Export a result's table to a file chosen by suffix, atomically and losslessly.

Suffixes: ``.csv`` and ``.json`` (standard library writers: exact integers of any size),
``.md`` and ``.html`` (a small document: title, context, table, notes), ``.tex``
(``latex_booktabs``), ``.parquet`` (pyarrow) and ``.xlsx`` (openpyxl). Rules every writer keeps:

* **atomic**: the data goes to a temporary file in the target's folder, which is renamed over
  the target; on any failure, or SIGTERM, the temporary file is removed and the target is left
  as it was. A target that is a symbolic link is written through: the link stays.
* **lossless**: integers beyond int64 (parquet) or beyond 2**53 (Excel stores numbers as
  doubles) are written as decimal text, and a note says which columns: in the file (parquet's
  schema metadata holds the result's meta and notes; an Excel file gets a ``notes`` sheet) and
  on stderr from the CLI.
* **safe**: a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
  prefixed with ``'`` in ``.csv`` and ``.xlsx`` so no spreadsheet runs it as a formula; control
  characters and lone surrogates are written escaped (``\\x1b``), never raw.
* **checked first**: :func:`check_export_target` validates the path (suffix, folder, name
  length, writability, the extra package) before any work is done.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ParamcalcError, Terminated
from .render import cell_text, raw_value, safe_text
from .table import INT64_MAX, Table

SUFFIXES = (".csv", ".json", ".md", ".html", ".tex", ".parquet", ".xlsx")
#: Largest integer a spreadsheet cell holds exactly (IEEE double).
EXCEL_INT_MAX = 2**53
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Which extra installs the package a suffix needs.
_EXTRA = {".parquet": ("pyarrow", "export"), ".xlsx": ("openpyxl", "export")}


@dataclass(frozen=True)
class Document:
    """What surrounds a table in ``.md`` and ``.html`` exports."""

    title: str = ""
    context: Sequence[tuple[str, str]] = ()
    summary: Sequence[str] = ()
    notes: Sequence[str] = ()
    links: Sequence[tuple[str, str]] = field(default=())


# --- checking the target -----------------------------------------------------------------------


def check_target(path: str | os.PathLike[str], suffixes: Sequence[str], verb: str) -> tuple[Path, str]:
    """Check an output path before any work: a known suffix, an existing writable folder, a
    name the file system takes, not a folder. Returns the path (through a symlink: the file it
    points to) and its lower-case suffix; raises one line starting ``cannot {verb} 'PATH'``."""
    given = Path(path)
    shown = safe_text(str(given))
    if len(shown) > 100:
        shown = f"{shown[:50]}...{shown[-40:]}"
    where = f"cannot {verb} {shown!r}"
    suffix = given.suffix.lower()
    if suffix not in suffixes:
        raise ParamcalcError(
            f"{where}: unknown suffix {safe_text(suffix) or '(none)'!r}, "
            f"expected one of {', '.join(suffixes)}"
        )
    try:
        name_max = os.pathconf(given.parent if str(given.parent) else ".", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    if len(given.name.encode("utf-8", "surrogateescape")) > name_max:
        raise ParamcalcError(f"{where}: the file name is longer than {name_max} bytes")
    try:
        target = Path(os.path.realpath(given)) if given.is_symlink() else given
    except OSError as exc:
        raise ParamcalcError(f"{where}: {exc.strerror}") from None
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ParamcalcError(f"{where}: folder {safe_text(str(folder))!r} does not exist")
    if target.is_dir():
        raise ParamcalcError(f"{where}: it is a folder")
    if target.exists() and not target.is_file():
        raise ParamcalcError(f"{where}: it is not a regular file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ParamcalcError(f"{where}: folder {safe_text(str(folder))!r} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise ParamcalcError(f"{where}: the file is read-only")
    _probe(folder, where)
    return target, suffix


def _probe(folder: Path, where: str) -> None:
    """Create and remove a file in ``folder``: the real test of writability (root, read-only
    mounts, pseudo file systems), before any work is done."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".paramcalc-probe-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ParamcalcError(
            f"{where}: cannot create a file in {safe_text(str(folder))!r}: {exc.strerror}"
        ) from None
    os.close(fd)
    _unlink(tmp)


def check_export_target(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """:func:`check_target` for table exports, plus the package the suffix needs."""
    target, suffix = check_target(path, SUFFIXES, "export to")
    need = _EXTRA.get(suffix)
    if need is not None:
        import importlib.util

        if importlib.util.find_spec(need[0]) is None:
            raise ParamcalcError(
                f"writing {suffix} files needs {need[0]}: pip install 'paramcalc[{need[1]}]'"
            )
    return target, suffix


# --- atomic writes -----------------------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a temporary file exists (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # pragma: no cover - embedded interpreters
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def atomic_write(target: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file over ``target``.

    On any failure (or SIGTERM) the temporary file is removed and ``target`` is left as it was.
    A symbolic link is written through: the file it points to is replaced, the link stays.
    """
    target = Path(os.path.realpath(target)) if target.is_symlink() else target
    with _sigterm_raises():
        try:
            fd, tmp = tempfile.mkstemp(prefix=".paramcalc-", suffix=".tmp", dir=target.parent or ".")
        except OSError as exc:
            raise ParamcalcError(f"cannot write {safe_text(str(target))!r}: {exc.strerror}") from None
        os.close(fd)
        try:
            write(tmp)
            if target.exists():
                os.chmod(tmp, target.stat().st_mode & 0o777)
            else:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, target)
        except OSError as exc:  # permission, a folder in the way, disk full, ...: one line
            _unlink(tmp)
            raise ParamcalcError(f"cannot write {safe_text(str(target))!r}: {exc.strerror or exc}") from None
        except BaseException:
            _unlink(tmp)
            raise


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_bytes(target: Path, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(target, write)


# --- cell values per format --------------------------------------------------------------------


def neutralise(text: str) -> str:
    """A spreadsheet-safe text cell: a leading formula character gets a ``'`` before it."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _sheet_text(value: Any) -> str:
    return neutralise(safe_text(str(value)))


def _text_columns(table: Table) -> list[int]:
    return [i for i, c in enumerate(table.columns) if c.kind == "str"]


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


def _csv_text(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([_sheet_text(n) for n in table.names])
    text_cols = set(_text_columns(table))
    for r in table.rows:
        row = []
        for i, (c, v) in enumerate(zip(table.columns, r, strict=True)):
            if v is None:
                row.append("")
            elif c.kind == "shape":
                row.append(cell_text(v, c))
            elif i in text_cols:
                row.append(_sheet_text(v))
            else:
                row.append(str(v))
        w.writerow(row)
    return buf.getvalue()


def _json_text(table: Table, meta: dict[str, Any]) -> str:
    rows = [{c.name: raw_value(v, c) for c, v in zip(table.columns, r, strict=True)} for r in table.rows]
    return json.dumps({**_jsonable(meta), "rows": rows}, indent=2, ensure_ascii=False, default=str) + "\n"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {safe_text(str(k)): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, str):
        return safe_text(obj)
    return obj


def _display_rows(table: Table) -> list[list[str]]:
    return [[cell_text(v, c) for c, v in zip(table.columns, r, strict=True)] for r in table.rows]


def _markdown(table: Table, doc: Document) -> str:
    from tabulate import tabulate

    def esc(s: str) -> str:
        return safe_text(s).replace("|", "\\|")

    lines = [f"# {esc(doc.title)}", ""] if doc.title else []
    if doc.context:
        lines += [f"- **{esc(k)}**: {esc(v)}" for k, v in doc.context] + [""]
    body = tabulate(
        [[esc(x) for x in row] for row in _display_rows(table)],
        headers=[esc(n) for n in table.names],
        tablefmt="github",
        disable_numparse=True,
        colalign=tuple("right" if c.kind in ("int", "float") else "left" for c in table.columns) or None,
    )
    lines += [body, ""]
    if doc.summary:
        lines += [esc(s) + "  " for s in doc.summary] + [""]
    for label, href in doc.links:
        lines += [f"![{esc(label)}]({href})", ""]
    if doc.notes:
        lines += ["Notes:", ""] + [f"- {esc(n)}" for n in doc.notes] + [""]
    return "\n".join(lines)


def _html(table: Table, doc: Document) -> str:
    import html

    from tabulate import tabulate

    e = html.escape
    parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">']
    parts.append(f"<title>{e(safe_text(doc.title or 'paramcalc'))}</title></head><body>")
    if doc.title:
        parts.append(f"<h1>{e(safe_text(doc.title))}</h1>")
    if doc.context:
        parts.append(
            "<ul>"
            + "".join(f"<li><b>{e(safe_text(k))}</b>: {e(safe_text(v))}</li>" for k, v in doc.context)
            + "</ul>"
        )
    parts.append(tabulate(_display_rows(table), headers=table.names, tablefmt="html", disable_numparse=True))
    if doc.summary:
        parts.append("<p>" + "<br>".join(e(safe_text(s)) for s in doc.summary) + "</p>")
    for label, href in doc.links:
        parts.append(f'<p><img src="{e(href)}" alt="{e(safe_text(label))}"></p>')
    if doc.notes:
        parts.append("<ul>" + "".join(f"<li>{e(safe_text(n))}</li>" for n in doc.notes) + "</ul>")
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
    import pandas as pd

    frame = table.to_frame()
    limit = INT64_MAX if suffix == ".parquet" else EXCEL_INT_MAX
    for i, c in enumerate(table.columns):
        values = [r[i] for r in table.rows]
        if c.kind == "int" and any(v is not None and abs(v) > limit for v in values):
            frame[c.name] = pd.Series([None if v is None else str(v) for v in values], dtype="string")
        elif c.kind == "shape" and suffix == ".xlsx":
            frame[c.name] = pd.Series(
                [None if v is None else cell_text(v, c) for v in values], dtype="string"
            )
        elif c.kind == "shape":
            frame[c.name] = pd.Series([None if v is None else list(v) for v in values], dtype="object")
        elif c.kind == "str":
            conv = _sheet_text if suffix == ".xlsx" else (lambda s: safe_text(str(s)))
            frame[c.name] = pd.Series([None if v is None else conv(v) for v in values], dtype="string")
    if suffix == ".xlsx":
        frame.columns = [_sheet_text(n) for n in frame.columns]
    return frame


def _xlsx_bytes(table: Table, notes: Sequence[str]) -> bytes:
    import pandas as pd

    frame = _frame_for_file(table, ".xlsx")
    buf = io.BytesIO()  # built in memory: a full disk fails in one place, with no half-written zip
    with pd.ExcelWriter(buf, engine="openpyxl") as writer:
        frame.to_excel(writer, index=False, sheet_name="table")
        if notes:  # the notes travel with the data: a second sheet
            pd.DataFrame({"note": [_sheet_text(n) for n in notes]}).to_excel(
                writer, index=False, sheet_name="notes"
            )
    return buf.getvalue()


def _parquet_bytes(table: Table, meta: dict[str, Any]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = _frame_for_file(table, ".parquet")
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    extra = {b"paramcalc": json.dumps(_jsonable(meta), default=str).encode("utf-8")}
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **extra})
    buf = io.BytesIO()
    pq.write_table(arrow, buf)
    return buf.getvalue()


def encode(table: Table, suffix: str, meta: dict[str, Any], doc: Document) -> bytes:
    """The file's bytes for ``suffix`` (everything is built before the target is touched)."""
    if suffix == ".csv":
        return (_csv_text(table) + _comment_line("#", meta, table)).encode("utf-8")
    if suffix == ".json":
        return _json_text(table, meta).encode("utf-8")
    if suffix == ".md":
        return _markdown(table, doc).encode("utf-8")
    if suffix == ".html":
        return _html(table, doc).encode("utf-8")
    if suffix == ".tex":
        return (_latex(table) + _comment_line("%", meta, table)).encode("utf-8")
    if suffix == ".parquet":
        return _parquet_bytes(table, meta)
    if suffix == ".xlsx":
        return _xlsx_bytes(table, list(meta.get("notes", [])))
    raise ParamcalcError(f"unknown export suffix {suffix!r}")  # pragma: no cover - checked before


def _comment_line(mark: str, meta: dict[str, Any], table: Table) -> str:
    """The last line of a partial table's ``.csv``/``.tex`` (formats without a header for notes):
    ``# partial: 3 of 7 rows (the run was interrupted)``; ``""`` for a complete one."""
    if not meta.get("partial"):
        return ""
    planned = meta.get("rows_planned", "?")
    return f"{mark} partial: {len(table.rows)} of {planned} rows (the run was interrupted)\n"


#: What an export's disk space check counts per row, and at least: generous (a timed row is
#: under 1 KB of CSV, an .xlsx adds its zip structure).
EXPORT_ROW_BYTES = 4096
EXPORT_MIN_BYTES = 2**20


def check_free_space(path: str | os.PathLike[str], rows: int) -> None:
    """Refuse (one line) an export the disk cannot hold, before timed work is done: the need is
    ``EXPORT_MIN_BYTES + rows × EXPORT_ROW_BYTES``, twice over (the temporary file exists beside
    the old one until the rename). Nothing is said where the free space cannot be read."""
    import shutil

    folder = Path(path).parent if str(Path(path).parent) else Path(".")
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    need = 2 * (EXPORT_MIN_BYTES + rows * EXPORT_ROW_BYTES)
    if free < need:
        from .render import fmt_bytes

        raise ParamcalcError(
            f"cannot export to {safe_text(str(path))!r}: {fmt_bytes(free)} free in "
            f"{safe_text(str(folder))!r}, and the table of {rows:,} timed row(s) needs about "
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
    doc = doc or Document()
    notes = lossless_notes(table, suffix)
    meta = dict(meta or {})
    if notes:
        meta["notes"] = [*meta.get("notes", []), *notes]
        doc = Document(doc.title, doc.context, doc.summary, [*doc.notes, *notes], doc.links)
    data = encode(table, suffix, meta, doc)
    write_bytes(target, data)
    return target
