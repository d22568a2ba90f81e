"""Reading user files safely: regular files only, and never more than a stated cap.

A FIFO would block forever, ``/dev/zero`` would never end, a folder is not a file: each is a
one-line :class:`~paramcalc.errors.ParamcalcError` before anything is read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import ParamcalcError


def check_regular_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` if it is a readable regular file; else one line (missing, folder, FIFO, device)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ParamcalcError(f"{p}: no such file") from None
    except OSError as exc:
        raise ParamcalcError(f"{p}: cannot read: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ParamcalcError(f"{p}: is a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise ParamcalcError(f"{p}: not a regular file (a FIFO, socket or device is not a {what})")
    if not os.access(p, os.R_OK):
        raise ParamcalcError(f"{p}: cannot read: permission denied")
    return p


def read_text(path: str | os.PathLike[str], max_bytes: int, what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` (one line otherwise)."""
    p = check_regular_file(path, what)
    try:
        with open(p, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ParamcalcError(f"{p}: cannot read: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise ParamcalcError(f"{p}: larger than {max_bytes:,} bytes: not a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ParamcalcError(f"{p}: not UTF-8 text, so not a {what}") from None
