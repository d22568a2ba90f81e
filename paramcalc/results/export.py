"""Export a result's table to a file chosen by suffix, atomically and losslessly.

Suffixes: ``.csv`` and ``.json`` (standard library writers: exact integers of any size),
``.md`` and ``.html`` (a small document: title, context, table, notes), ``.tex``
(``latex_booktabs``), ``.parquet`` (pyarrow) and ``.xlsx`` (openpyxl). Rules every writer keeps:

* **atomic**: the data goes to a temporary file in the target's folder, which is renamed over
  the target; on any failure, or SIGTERM, the temporary file is removed and the target is left
  as it was.
* **links as the kernel follows them**: a target that is a symbolic link is written through
  (the link stays, the file it names is replaced) only where the kernel itself would follow
  it (:func:`may_follow`, Linux's ``fs.protected_symlinks``): a link in a sticky
  world-writable folder such as ``/tmp`` is followed only when its owner is the user writing or
  the folder's owner; another user's link there is refused in one line. Each link of a chain is
  checked; the name handed to the final rename is never a resolved path, so the kernel applies
  its own rules to every folder on the way. :func:`atomic_write` with ``follow_links=False``
  (the timing cache) replaces a link or any other non-folder entry itself and never touches
  what it names.
* **lossless**: integers beyond int64 (parquet) or beyond 2**53 (Excel stores numbers as
  doubles) are written as decimal text, and a note says which columns: in the file (parquet's
  schema metadata holds the result's meta and notes; an Excel file gets a ``notes`` sheet) and
  on stderr from the CLI.
* **safe**: untrusted text is escaped for the format (one place: :mod:`.render`): a text cell
  starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with ``'`` in
  ``.csv`` and ``.xlsx`` so no spreadsheet runs it as a formula; ``.md`` escapes Markdown
  (``< > & [ ] ( )``: no HTML or link survives), ``.html`` and ``.tex`` escape theirs; control
  characters, Unicode format characters and lone surrogates are written escaped (``\\x1b``).
* **documented**: ``.md`` and ``.html`` documents define every column (:class:`Column` docs),
  and say when and, from the CLI, by which command line they were made.
* **checked first**: :func:`check_export_target` validates the path (suffix, folder, name
  length, links, writability, :data:`MIN_FREE_BYTES` of free space, the extra package) before
  any work is done.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ParamcalcError, Terminated
from .render import cell_text, csv_text, json_document, jsonable, md_cell, md_text, safe_text, sheet_text
from .render import neutralise as neutralise  # re-exported: the spreadsheet rule lives in .render
from .table import INT64_MAX, Column, Table

SUFFIXES = (".csv", ".json", ".md", ".html", ".tex", ".parquet", ".xlsx")
#: Largest integer a spreadsheet cell holds exactly (IEEE double).
EXCEL_INT_MAX = 2**53
#: Which extra installs the package a suffix needs.
_EXTRA = {".parquet": ("pyarrow", "export"), ".xlsx": ("openpyxl", "export")}


@dataclass(frozen=True)
class Document:
    """What surrounds a table in ``.md`` and ``.html`` exports.

    ``command``: the command line that made it (the CLI gives it); ``created``: when (filled in
    when the file is written, if empty)."""

    title: str = ""
    context: Sequence[tuple[str, str]] = ()
    summary: Sequence[str] = ()
    notes: Sequence[str] = ()
    links: Sequence[tuple[str, str]] = field(default=())
    command: str = ""
    created: str = ""

    def stamped(self) -> Document:
        """The document with ``created`` set to now (local time, with its UTC offset)."""
        if self.created:
            return self
        import datetime

        now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
        return replace(self, created=now)

    def made(self) -> list[tuple[str, str]]:
        """``(label, value)`` lines saying when and how the document was made."""
        from .. import __version__

        out = [("created", f"{self.created} by paramcalc {__version__}")] if self.created else []
        return out + ([("command", self.command)] if self.command else [])


# --- checking the target -----------------------------------------------------------------------


def check_target(path: str | os.PathLike[str], suffixes: Sequence[str], verb: str) -> tuple[Path, str]:
    """Check an output path before any work: a known suffix, an existing writable folder, a
    name the file system takes, not a folder, a link only where the kernel would follow it.
    Returns the path (through allowed links: the file they name, see :func:`output_path`) and
    its lower-case suffix; raises one line starting ``cannot {verb} 'PATH'``."""
    given = Path(path)
    where = f"cannot {verb} {_shown(given)!r}"
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
    target = output_path(given, where)
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
    _check_free_space(folder, where)
    return target, suffix


#: Bytes an output's folder must have free before any work is done (a full disk is found first).
MIN_FREE_BYTES = 1 << 20


def _free_bytes(folder: Path) -> int | None:
    """Bytes free for this user in ``folder``'s file system (``None`` where it cannot be read)."""
    statvfs = getattr(os, "statvfs", None)
    if statvfs is None:  # pragma: no cover - Windows
        return None
    try:
        st = statvfs(folder)
    except OSError:
        return None
    return int(st.f_bavail * st.f_frsize)


def _check_free_space(folder: Path, where: str) -> None:
    free = _free_bytes(folder)
    if free is not None and free < MIN_FREE_BYTES:
        need = f"at least {MIN_FREE_BYTES:,} needed"
        raise ParamcalcError(f"{where}: {safe_text(str(folder))!r} has {free:,} bytes free ({need})")


def _shown(path: Path) -> str:
    shown = safe_text(str(path))
    return f"{shown[:50]}...{shown[-40:]}" if len(shown) > 100 else shown


# --- symbolic links ----------------------------------------------------------------------------

#: Most links followed from an output name to its file (the kernel's own limit is 40).
MAX_LINK_HOPS = 40


def may_follow(link_uid: int, folder_uid: int, folder_mode: int, follower_uid: int | None) -> bool:
    """Whether the kernel follows a link owned by ``link_uid`` in a folder (``folder_uid``,
    ``folder_mode``) for ``follower_uid``: Linux's ``fs.protected_symlinks`` rule.

    In a sticky world-writable folder (``/tmp``) a link is followed only by its owner, or when
    the folder's owner also owns it; anywhere else, always. ``follower_uid`` ``None`` (no user
    ids on this system) follows.
    """
    shared = bool(folder_mode & stat.S_ISVTX) and bool(folder_mode & stat.S_IWOTH)
    return not shared or follower_uid is None or link_uid in (follower_uid, folder_uid)


def _follower_uid() -> int | None:
    geteuid = getattr(os, "geteuid", None)
    return int(geteuid()) if geteuid is not None else None


def _link_uid(st: os.stat_result) -> int:
    """The owner of a link (a function, so a test can play another user's link)."""
    return int(st.st_uid)


def output_path(path: str | os.PathLike[str], where: str) -> Path:
    """The name a write to ``path`` replaces: ``path`` itself, or, through each symbolic link
    the kernel would follow (:func:`may_follow`), the name the last one gives. Never a resolved
    path: folders on the way are left to the kernel's own lookup at rename time. One line
    starting ``where`` for a link the kernel would refuse, a loop, or an unreadable link."""
    p = Path(os.fspath(path))
    for _ in range(MAX_LINK_HOPS):
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return p
        except OSError as exc:
            raise ParamcalcError(f"{where}: {exc.strerror or exc}") from None
        if not stat.S_ISLNK(st.st_mode):
            return p
        folder = p.parent
        try:
            fst = os.stat(folder)
            dest = os.readlink(p)
        except OSError as exc:
            raise ParamcalcError(f"{where}: {exc.strerror or exc}") from None
        if not may_follow(_link_uid(st), fst.st_uid, fst.st_mode, _follower_uid()):
            raise ParamcalcError(
                f"{where}: {_shown(p)!r} is a symbolic link owned by another user in the shared "
                f"folder {_shown(folder)!r} (sticky, world-writable); it is not followed, as the "
                "kernel would not: name a file of your own"
            )
        p = folder / dest
    raise ParamcalcError(f"{where}: more than {MAX_LINK_HOPS} symbolic links in a row (a loop?)")


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


def atomic_write(target: Path, write: Callable[[str], None], *, follow_links: bool = True) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file over ``target``.

    On any failure (or SIGTERM) the temporary file is removed and ``target`` is left as it was.
    ``follow_links``: a symbolic link is written through where the kernel would follow it (the
    file it names is replaced, the link stays; :func:`output_path`), else refused in one line.
    Without: the entry ``target`` itself is replaced, whatever it is (a link, a FIFO, a device
    node: never written into, never followed); only a folder there is an error.
    """
    shown = safe_text(str(target))
    target = output_path(target, f"cannot write {shown!r}") if follow_links else Path(target)
    with _sigterm_raises():
        try:
            fd, tmp = tempfile.mkstemp(prefix=".paramcalc-", suffix=".tmp", dir=target.parent or ".")
        except OSError as exc:
            raise ParamcalcError(f"cannot write {shown!r}: {exc.strerror}") from None
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, _mode_for(target))
            os.replace(tmp, target)
        except OSError as exc:  # permission, a folder in the way, disk full, ...: one line
            _unlink(tmp)
            raise ParamcalcError(f"cannot write {shown!r}: {exc.strerror or exc}") from None
        except BaseException:
            _unlink(tmp)
            raise


def _mode_for(target: Path) -> int:
    """An existing regular file's permissions (never a link's target's), else the umask's."""
    try:
        st = os.lstat(target)
        if stat.S_ISREG(st.st_mode):
            return st.st_mode & 0o777
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


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
    context = [*doc.context, *doc.made()]
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
    context = [*doc.context, *doc.made()]
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
            conv = sheet_text if suffix == ".xlsx" else (lambda s: safe_text(str(s)))
            frame[c.name] = pd.Series([None if v is None else conv(v) for v in values], dtype="string")
    if suffix == ".xlsx":
        frame.columns = [sheet_text(n) for n in frame.columns]
    return frame


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
    extra = {b"paramcalc": json.dumps(jsonable(meta), default=str).encode("utf-8")}
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **extra})
    buf = io.BytesIO()
    pq.write_table(arrow, buf)
    return buf.getvalue()


def encode(table: Table, suffix: str, meta: dict[str, Any], doc: Document) -> bytes:
    """The file's bytes for ``suffix`` (everything is built before the target is touched)."""
    if suffix == ".csv":
        return (csv_text(table) + _comment_line("#", meta, table)).encode("utf-8")
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
    free = _free_bytes(folder)
    need = 2 * (MIN_FREE_BYTES + rows * EXPORT_ROW_BYTES)
    if free is not None and free < need:
        from .render import fmt_bytes, plural

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
    doc = (doc or Document()).stamped()
    notes = lossless_notes(table, suffix)
    meta = dict(meta or {})
    if notes:
        meta["notes"] = [*meta.get("notes", []), *notes]
        doc = replace(doc, notes=[*doc.notes, *notes])
    data = encode(table, suffix, meta, doc)
    write_bytes(target, data)
    return target
