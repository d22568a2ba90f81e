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
    """``path`` if it is a readable regular file; else one line (missing, folder, FIFO, device).

    Uses ``os.stat`` (which follows symlinks and never blocks) before anything opens the path.
    """
    p = Path(os.fspath(path))
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ParamcalcError(f"cannot read {p}: no such file") from None
    except OSError as exc:
        raise ParamcalcError(f"cannot read {p}: {exc.strerror or exc}") from None
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise ParamcalcError(f"cannot read {p}: it is a folder, not a {what}")
    if not stat.S_ISREG(mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(mode)
            else "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "a special file"
        )
        raise ParamcalcError(f"cannot read {p}: it is {kind}; only regular files are read")
    if not os.access(p, os.R_OK):
        raise ParamcalcError(f"cannot read {p}: permission denied")
    return p


def read_text(path: str | os.PathLike[str], max_bytes: int, what: str = "file") -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` (one line otherwise)."""
    p = check_regular_file(path, what)
    try:
        with open(p, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ParamcalcError(f"cannot read {p}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise ParamcalcError(f"cannot read {p}: larger than {max_bytes:,} bytes, so not a {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ParamcalcError(f"cannot read {p}: not UTF-8 text, so not a {what}") from None
