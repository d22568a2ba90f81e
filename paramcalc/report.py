"""Rendering and export: plain records -> text table (tabulate), CSV, JSON, or a file.

Rendering to the terminal needs no pandas: records are lists of dicts, tabulate draws them and
the standard library writes CSV and JSON, so analytic queries stay fast. Export to a file goes
through a pandas DataFrame (imported only then) and is atomic: the data is written to a
temporary file in the target folder and renamed over the target, so a failure never leaves a
half-written report or clobbers the old one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ParamcalcError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

Records = Sequence[dict[str, Any]]


def table_formats() -> list[str]:
    """Every tabulate table format, plus ``csv`` and ``json``."""
    from tabulate import tabulate_formats

    return [*tabulate_formats, "csv", "json"]


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


def render(
    records: Records,
    fmt: str = "simple",
    *,
    meta: dict[str, Any] | None = None,
    footer: Sequence[str] = (),
) -> str:
    """Render records as text.

    ``json`` gives ``{**meta, "rows": records}`` (``meta`` carries e.g. the ``"total"``);
    ``csv`` gives the bare rows; any tabulate format gives a table followed by ``footer`` lines.
    """
    if fmt == "json":
        return json.dumps({**(meta or {}), "rows": list(records)}, indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        if records:
            w = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(records)
        return buf.getvalue().rstrip("\n")
    from tabulate import tabulate

    text = tabulate(
        [list(r.values()) for r in records],
        headers=list(records[0]) if records else [],
        tablefmt=fmt,
        intfmt=",",
        disable_numparse=False,
    )
    return "\n".join([text, *footer]) if footer else text


# --- export to a file ------------------------------------------------------------------


def _write_text(text_fn: Callable[[pd.DataFrame], str]) -> Callable[[pd.DataFrame, str], None]:
    def write(df: pd.DataFrame, tmp: str) -> None:
        Path(tmp).write_text(text_fn(df), encoding="utf-8")

    return write


def _write_json(meta: dict[str, Any]) -> Callable[[pd.DataFrame, str], None]:
    def write(df: pd.DataFrame, tmp: str) -> None:
        rows = json.loads(df.to_json(orient="records"))
        text = json.dumps({**meta, "rows": rows}, indent=2, default=str)
        Path(tmp).write_text(text + "\n", encoding="utf-8")

    return write


def _write_xlsx(df: pd.DataFrame, tmp: str) -> None:
    # openpyxl refuses a file name not ending in .xlsx (ours ends in .tmp): hand it a file object.
    with open(tmp, "wb") as fh:
        df.to_excel(fh, index=False, engine="openpyxl")


def _needs(module: str, suffix: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ParamcalcError(f"writing {suffix} files needs {module}: pip install {module}")


SUFFIXES = (".csv", ".json", ".md", ".html", ".tex", ".parquet", ".xlsx")


def export(frame: pd.DataFrame, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
    """Write ``frame`` to ``path`` in the format its suffix names, atomically.

    ``.csv``, ``.json`` (``{**meta, "rows": [...]}``), ``.md``, ``.html``, ``.tex``,
    ``.parquet`` (needs pyarrow), ``.xlsx`` (needs openpyxl).
    """
    target, suffix = check_export_target(path)
    writers: dict[str, Callable[[pd.DataFrame, str], None]] = {
        ".csv": lambda df, tmp: df.to_csv(tmp, index=False),
        ".json": _write_json(meta or {}),
        ".md": _write_text(lambda df: df.to_markdown(index=False) + "\n"),
        ".html": _write_text(lambda df: df.to_html(index=False) + "\n"),
        ".tex": _write_text(lambda df: _to_latex(df)),
        # The temporary file's name ends in .tmp: name the engines, pandas cannot infer them.
        ".parquet": lambda df, tmp: df.to_parquet(tmp, index=False, engine="pyarrow"),
        ".xlsx": _write_xlsx,
    }
    atomic_write(target, lambda tmp: writers[suffix](frame, tmp))
    return target


def check_target(path: str | os.PathLike[str], suffixes: Sequence[str], verb: str) -> tuple[Path, str]:
    """Check an output path: a known suffix, an existing folder, not a folder itself.

    Returns the path and its lower-case suffix; raises a one-line :class:`ParamcalcError` that
    starts with ``cannot {verb} 'PATH'``.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in suffixes:
        raise ParamcalcError(
            f"cannot {verb} {str(target)!r}: unknown suffix {suffix or '(none)'!r}, "
            f"expected one of {', '.join(suffixes)}"
        )
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise ParamcalcError(f"cannot {verb} {str(target)!r}: folder {str(folder)!r} does not exist")
    if target.is_dir():
        raise ParamcalcError(f"cannot {verb} {str(target)!r}: it is a folder")
    return target, suffix


def check_export_target(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """Check an export path before any work is done: known suffix, its package, existing folder.

    Returns the path and its lower-case suffix; raises a one-line :class:`ParamcalcError`.
    """
    target, suffix = check_target(path, SUFFIXES, "export to")
    if suffix == ".parquet":
        _needs("pyarrow", suffix)
    if suffix == ".xlsx":
        _needs("openpyxl", suffix)
    return target, suffix


def _to_latex(df: pd.DataFrame) -> str:
    # DataFrame.to_latex needs jinja2; tabulate's latex_booktabs needs nothing extra.
    from tabulate import tabulate

    return tabulate(df.values.tolist(), headers=list(df.columns), tablefmt="latex_booktabs") + "\n"


def atomic_write(target: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file over ``target``.

    On any failure the temporary file is removed and ``target`` is left as it was.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise ParamcalcError(f"cannot write {str(target)!r}: {exc.strerror}") from None
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
        raise ParamcalcError(f"cannot write {str(target)!r}: {exc.strerror or exc}") from None
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
