"""Reading user files safely: regular files only, and never more than a stated cap.

A FIFO would block forever, ``/dev/zero`` would never end, a folder is not a file: each is a
one-line :class:`~paramcalc.errors.ParamcalcError` before anything is read.

paramcalc's own cache files (the GEMM timings, the cuDNN calibrations) live in :func:`cache_dir`;
they are read without following a link or blocking on a FIFO (:func:`read_cache_file`) and saved
under a :mod:`filelock` lock with a bounded wait (:func:`cache_lock`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Mapping
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


# --- paramcalc's own cache files (the GEMM timings, the cuDNN calibrations) -----------------------

#: The environment variable that moves the cache folder.
CACHE_ENV = "PARAMCALC_CACHE_DIR"


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The cache folder: ``$PARAMCALC_CACHE_DIR``, ``$XDG_CACHE_HOME/paramcalc`` or ``~/.cache/paramcalc``."""
    env = os.environ if environ is None else environ
    given = env.get(CACHE_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "paramcalc"
    return Path.home() / ".cache" / "paramcalc"


class CacheBusy(Exception):
    """A cache could not be locked for a save (held elsewhere, or the lock is not a regular file)."""


def read_cache_file(path: Path, max_bytes: int, where: str) -> tuple[bytes | None, str]:
    """The bytes of the regular file at ``path`` (at most ``max_bytes`` + 1), or ``None`` and why
    not ("" when there is no file). Opened with ``O_NOFOLLOW`` (a symbolic link is not followed)
    and ``O_NONBLOCK`` (a FIFO does not block), then checked with ``fstat``; ``where`` names the
    file in the reasons."""
    flags = (
        os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    )
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):  # O_NOFOLLOW's own check, where there is none
            raise OSError(errno.ELOOP, "a symbolic link")
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return (
                None,
                f"{where} is a symbolic link: not followed, ignored, replaced by a file on the next save",
            )
        return None, f"{where} could not be read: {exc.strerror}"
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = (
                "a folder"
                if stat.S_ISDIR(mode)
                else "a FIFO"
                if stat.S_ISFIFO(mode)
                else "not a regular file"
            )
            return None, f"{where} is {kind}: not read, ignored"
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), ""
    except OSError as exc:
        return None, f"{where} could not be read: {exc.strerror}"
    finally:
        os.close(fd)


@contextlib.contextmanager
def cache_lock(lock: Path, timeout: float) -> Iterator[None]:
    """Hold the :mod:`filelock` lock at ``lock`` for the block, waiting at most ``timeout``
    seconds; :class:`CacheBusy` when another process keeps it longer, or when the lock path is
    not a regular file (filelock opens it with ``O_NOFOLLOW``)."""
    from filelock import FileLock, Timeout

    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.lstat(lock).st_mode):
            raise CacheBusy(f"its lock {str(lock)!r} is not a regular file")
    fl = FileLock(str(lock), timeout=timeout)
    try:
        fl.acquire()
    except Timeout:
        raise CacheBusy(
            f"another process has held its lock for {timeout:g} s (if none runs, delete {str(lock)!r})"
        ) from None
    try:
        yield
    finally:
        fl.release()
