"""The GEMM timing cache's file: what one timing is (:class:`Timing`), where the file of a device
lives (:func:`cache_file`), and reading it back (:func:`read_cache`) with every entry checked
against physical bounds. Timing, judging and saving are :class:`paramcalc.timing.gemm.DeviceTimer`'s;
the conventions of the whole cache are in :mod:`paramcalc.timing.gemm`'s docstring.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.files import read_cache_file
from ..results.text import plural

#: Schema of the cache file; another value makes the file foreign (ignored, then replaced).
SCHEMA = "paramcalc.gemm-cache/1"
#: Largest cache file read back (a bigger one is foreign).
MAX_CACHE_FILE = 32 * 2**20
#: Physical bounds of a cached time per call: no torch call is faster, no tile slower.
MIN_SECONDS = 1e-9
MAX_SECONDS = 3600.0
#: A 1-minute load average above this many runnable tasks per usable CPU: the machine is busy.
BUSY_LOAD = 1.0

_KEY_RE = re.compile(r"^(fp32|fp16|bf16):(ieee|tf32):(\d+)x(\d+)x(\d+):t(\d+)$")

# --- where the cache lives -------------------------------------------------------------------


def cache_file(folder: Path, device_type: str, device_name: str, torch_version: str) -> Path:
    """The cache file of one device name and torch version inside ``folder``."""
    digest = hashlib.sha256(f"{device_type}\0{device_name}\0{torch_version}".encode()).hexdigest()[:12]
    return folder / f"gemm-{device_type}-{digest}.json"


# --- one timing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """A measured median per call, its IQR, how many runs, whether it is noisy, and the load
    it was taken under (``None`` in files written before paramcalc recorded it)."""

    median_s: float
    iqr_s: float
    runs: int
    noisy: bool
    #: How many times this shape has been timed (a noisy or suspect timing is retried up to
    #: :data:`MAX_TRIES`).
    tries: int = 1
    #: The 1-minute load average when it was taken, and the CPUs the process could use.
    load: float | None = None
    cpus: int | None = None

    @property
    def busy(self) -> bool:
        """Taken while more tasks wanted to run than there were CPUs (:data:`BUSY_LOAD`)."""
        return self.load is not None and self.cpus is not None and self.load > BUSY_LOAD * self.cpus

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "median_s": self.median_s,
            "iqr_s": self.iqr_s,
            "runs": self.runs,
            "noisy": self.noisy,
            "tries": self.tries,
        }
        if self.load is not None and self.cpus is not None:
            out.update(load=round(self.load, 2), cpus=self.cpus)
        return out

    @classmethod
    def from_json(cls, value: Any) -> Timing:
        """A timing from the cache; ``ValueError`` for anything that is not one
        (:class:`OutOfBounds` for a number beyond :data:`MIN_SECONDS` .. :data:`MAX_SECONDS`)."""
        if not isinstance(value, dict):
            raise ValueError("not an object")
        med, iqr = _number(value.get("median_s")), _number(value.get("iqr_s"))
        if not MIN_SECONDS <= med <= MAX_SECONDS:
            raise OutOfBounds(f"median_s {med!r}")
        if not 0 <= iqr <= MAX_SECONDS:
            raise OutOfBounds(f"iqr_s {iqr!r}")
        runs, tries = _count(value.get("runs")), _count(value.get("tries", 1))
        noisy = value.get("noisy")
        if not isinstance(noisy, bool):
            raise ValueError("noisy must be a boolean")
        load, cpus = value.get("load"), value.get("cpus")
        if load is not None or cpus is not None:
            load, cpus = _number(load), _count(cpus)
            if not 0 <= load <= 1e6:
                raise OutOfBounds(f"load {load!r}")
        return cls(med, iqr, runs, noisy, tries, load, cpus)


class OutOfBounds(ValueError):
    """A cached number no measurement gives: the entry is dropped (with a note), the file kept."""


def _number(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError("times must be numbers")
    try:
        value = float(x)
    except OverflowError:  # an integer of hundreds of digits
        raise OutOfBounds(f"{str(x)[:12]}... ({len(str(x))} digits)") from None
    if not math.isfinite(value):
        raise OutOfBounds(repr(value))
    return value


def _count(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= 2**31:
        raise ValueError("runs, tries and cpus must be positive integers")
    return x


def _read_regular(path: Path) -> tuple[bytes | None, str]:
    """The bytes of the regular file at ``path`` (at most :data:`MAX_CACHE_FILE` + 1), or ``None``
    and why not: :func:`paramcalc.core.files.read_cache_file` (no link followed, no FIFO read)."""
    return read_cache_file(path, MAX_CACHE_FILE, f"the cache {str(path)!r}")


def read_cache(path: Path, identity: dict[str, str]) -> tuple[dict[str, Timing], dict[str, Timing], str]:
    """Entries of the cache at ``path`` if it is valid and ``identity``'s; else empty and why.

    Whatever the file holds, the answer is entries and at most one line: a link, a FIFO, a file
    over :data:`MAX_CACHE_FILE`, invalid or too deeply nested JSON, another schema or identity
    make it ignored; entries with times beyond the physical bounds are dropped, the rest kept.
    """
    data, problem = _read_regular(path)
    if data is None:
        return {}, {}, problem
    where = f"the cache {str(path)!r}"
    if len(data) > MAX_CACHE_FILE:
        return {}, {}, f"{where} is larger than {MAX_CACHE_FILE:,} bytes: ignored"
    try:
        doc = json.loads(data.decode("utf-8"))
    except RecursionError:
        return {}, {}, f"{where} is not valid JSON (nested too deeply): ignored, rebuilt"
    except (UnicodeDecodeError, ValueError):
        return {}, {}, f"{where} is not valid JSON: ignored, rebuilt"
    if not isinstance(doc, dict):
        return {}, {}, f"{where} is not a paramcalc GEMM cache: ignored, rebuilt"
    for key, want in identity.items():
        if doc.get(key) != want:
            other = f"another {key.replace('_', ' ')} ({str(doc.get(key))[:60]!r})"
            return {}, {}, f"{where} is for {other}: ignored, rebuilt"

    dropped: list[str] = []
    try:
        gemm = _entries(doc.get("gemm"), _KEY_RE, dropped)
        copy = _entries(doc.get("copy"), _COPY_KEY_RE, dropped)
    except ValueError as exc:
        return {}, {}, f"{where} has a wrong schema ({str(exc)[:120]}): ignored, rebuilt"
    if dropped:
        problem = (
            f"{where}: {plural(len(dropped), 'timing')} outside physical bounds ({MIN_SECONDS:g} s to "
            f"{MAX_SECONDS:g} s per call, finite) ignored: {'; '.join(dropped[:3])}"
        )
    return gemm, copy, problem


_COPY_KEY_RE = re.compile(r"^((op|ew):([0-9a-f]{10}:)?)?t\d+$")


def _entries(section: Any, key_re: re.Pattern[str], dropped: list[str]) -> dict[str, Timing]:
    """One section of the cache: ``ValueError`` for a malformed one, out-of-bounds entries
    appended to ``dropped`` and left out."""
    if not isinstance(section, dict):
        raise ValueError("gemm and copy must be objects")
    out = {}
    for k, v in section.items():
        if not isinstance(k, str) or not key_re.match(k):
            raise ValueError(f"bad key {str(k)[:40]!r}")
        try:
            out[k] = Timing.from_json(v)
        except OutOfBounds as exc:
            dropped.append(f"{k} ({str(exc)[:40]})")
    return out
