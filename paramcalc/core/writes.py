"""Writing files safely: checked before any work, atomically, through links only as the kernel
follows them.

Every file paramcalc writes (a table export, a plot, the GEMM timing cache) goes through here:

* **checked first**: :func:`check_target` validates an output path (suffix, folder, name
  length, links, writability, :data:`MIN_FREE_BYTES` of free space) before any work is done;
* **atomic**: :func:`atomic_write` writes a temporary file in the target's folder and renames it
  over the target; on any failure, or SIGTERM, the temporary file is removed and the target is
  left as it was;
* **links as the kernel follows them**: a target that is a symbolic link is written through
  (the link stays, the file it names is replaced) only where the kernel itself would follow it
  (:func:`may_follow`, Linux's ``fs.protected_symlinks``): a link in a sticky world-writable
  folder such as ``/tmp`` is followed only when its owner is the user writing or the folder's
  owner; another user's link there is refused in one line. Each link of a chain is checked; the
  name handed to the final rename is never a resolved path, so the kernel applies its own rules
  to every folder on the way. :func:`atomic_write` with ``follow_links=False`` (the timing cache)
  replaces a link or any other non-folder entry itself and never touches what it names.

Reading user files safely is :mod:`.files`'s.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ParamcalcError, Terminated
from ..results.text import safe_text

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


def free_bytes(folder: Path) -> int | None:
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
    free = free_bytes(folder)
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


# --- atomic writes -----------------------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a temporary file exists (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    import signal

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
