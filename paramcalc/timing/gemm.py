"""GEMM and copy timings of one device, and their on-disk cache: what the speed model stands on.

Conventions (every prediction rests on them; :mod:`paramcalc.timing.predict` repeats them in
its notes):

* **a GEMM shape** ``(M, K, N)`` is ``C(M×N) = A(M×K)·Bᵀ`` with ``B`` stored ``N×K`` row-major:
  the forward layout of ``x·Wᵀ`` (``nn.Linear``, ATen's RNN path). Backward shapes (dX, dW) are
  timed in the same layout under their own ``(M, K, N)``. The call is ``torch.mm(A, Bᵀ,
  out=C)``: no allocation inside the timed call.
* **how**: on the device, in the dtype, with the thread count of the run (CPU), the clock
  synchronised with the device (CUDA, MPS). Before the first shape of a process, small GEMMs
  for :data:`SPIN_UP_S` wake the threads. Per shape: a first call, then warm-up calls (at least two,
  for :data:`WARMUP_S`), then torch.utils.benchmark's
  ``Timer.adaptive_autorange`` (blocks of calls until the IQR is under :data:`NOISE_THRESHOLD`
  of the median, or ``max_run_time``); a shape whose fastest warm-up call takes longer than
  ``min_run_time / MIN_RUNS`` is timed as single calls instead (the warm-up calls are its first
  samples; 3 to :data:`MIN_RUNS` samples, 2 when a call takes over :data:`SLOW_CALL_S`).
  The median per call is kept; ``Measurement.meets_confidence`` says whether it is noisy.
* **large shapes** (operands beyond the device's budget: :data:`CPU_OPERAND_BUDGET`, or
  :data:`ACCEL_OPERAND_BUDGET` capped by a quarter of the free memory) are timed as tiles:
  :func:`tile_plan` halves the dimension of the largest operand until ``A``, ``B`` and ``C`` of
  a tile fit, then covers ``M×K×N`` with full tiles and remainder tiles. The tiles' MACs add
  up to ``M·K·N`` exactly; the shape's time is the sum of its tiles' times (a tiled GEMM runs
  at most as fast as the whole one would: small tiles can only lose efficiency).
* **copy bandwidth**: ``dst.copy_(src)`` of :data:`COPY_BYTES` per tensor, timed the same way;
  bandwidth = ``2 · nbytes / median`` (every byte read once and written once).
* **per-operator overhead**: what one operator call costs in dispatch and launch however small
  its tensors, per kernel path: a 4-unit copy of the module run for 8 and 24 steps, the extra
  time per step over the calls per step (:meth:`DeviceTimer.op_seconds`); a module that runs its
  recurrence as one scan, one forward of the copy over its calls; ``torch.add`` of 64 elements
  where the path dispatches nothing per step. Cached beside the copy timing.
* **the cache**: one JSON file per device name and torch version in :func:`cache_dir`
  (``$PARAMCALC_CACHE_DIR``, else ``$XDG_CACHE_HOME/paramcalc``, else
  ``~/.cache/paramcalc``), keyed by dtype, math mode (TF32 or not), shape and thread count.
  Every entry keeps its median, IQR (its spread), runs, tries, and the 1-minute load average
  and usable CPUs when it was taken (older files without the last two still load).
  A cached timing marked noisy is timed again the next time a process needs it, up to
  :data:`MAX_TRIES` times in all.
* **what a cached entry is trusted for** (see ``docs/bench.md``, "What the cache trusts"): a
  value outside :data:`MIN_SECONDS` .. :data:`MAX_SECONDS` (NaN, negative, 1e300 s) is dropped
  with a note. Before a prediction uses an entry it did not time itself, the timer measures the
  device now (:class:`Probe`: a tiny GEMM, a cube GEMM's MAC rate and a copy's bandwidth, a few
  milliseconds each) and an entry more than :data:`SUSPECT_FACTOR` times slower than the probe's
  estimate for its shape, or taken while the machine was busy (load above :data:`BUSY_LOAD` per
  CPU) and used while it is not, is **suspect**: timed again (within :data:`MAX_TRIES`), or
  used with a note that says so.
* **the file**: a file that is not valid JSON, has another schema, another torch version or
  another device name is ignored (and replaced on the next write); so is a symbolic link or
  anything but a regular file at the cache path (opened with ``O_NOFOLLOW | O_NONBLOCK``,
  checked with ``fstat``: a link is never followed, a FIFO never blocks). Writes go through
  :func:`paramcalc.core.writes.atomic_write` with ``follow_links=False`` (the entry itself is
  replaced, never what a link names) under a :mod:`filelock` lock, merging what another
  process wrote meanwhile, so concurrent runs never leave a torn or partial file; a lock held
  elsewhere for :data:`LOCK_TIMEOUT_S` makes the run go on without saving, and say so.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import statistics
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.files import CACHE_ENV as CACHE_ENV  # re-exported: the variable that moves the cache
from ..core.files import CacheBusy, cache_dir, cache_lock
from ..errors import ParamcalcError
from ..results.text import plural
from .base import check_min_run_time, check_threads, num_threads, timer_for

# The cache file's format and the tile plan live in their own modules; their names stay
# importable from here, where the timer that uses them is.
from .gemmcache import BUSY_LOAD as BUSY_LOAD
from .gemmcache import MAX_CACHE_FILE as MAX_CACHE_FILE
from .gemmcache import MAX_SECONDS as MAX_SECONDS
from .gemmcache import MIN_SECONDS as MIN_SECONDS
from .gemmcache import SCHEMA as SCHEMA
from .gemmcache import OutOfBounds as OutOfBounds
from .gemmcache import Timing as Timing
from .gemmcache import cache_file as cache_file
from .gemmcache import read_cache as read_cache
from .tiles import ACCEL_OPERAND_BUDGET as ACCEL_OPERAND_BUDGET
from .tiles import CPU_OPERAND_BUDGET as CPU_OPERAND_BUDGET
from .tiles import SPLIT_K_RATIO as SPLIT_K_RATIO
from .tiles import Tile as Tile
from .tiles import operand_bytes as operand_bytes
from .tiles import tile_plan as tile_plan

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..core.spec import RecurrentSpec

#: Environment variable naming the cache folder (it wins over ``XDG_CACHE_HOME``).
#: Default seconds of timing per GEMM shape (before the adaptive noise check).
DEFAULT_GEMM_MIN_RUN_TIME = 0.02
#: ``IQR / median`` under which a timing is steady (torch.utils.benchmark's own threshold).
NOISE_THRESHOLD = 0.1
#: Most single calls timed for a slow shape, and the blocks adaptive_autorange needs at least.
MIN_RUNS = 5
#: Times a shape whose timing stays noisy is timed in all (by successive processes).
MAX_TRIES = 2
#: Steps of the short run that times the per-call overhead of a kernel path (the long run: 3 ×).
OP_STEPS = 8
#: The module a scan's work per hidden unit and step is timed on: hidden units, batch, steps.
SCAN_PROBE = (256, 16, 64)
#: What a cached scan timing is judged against: this many elements copied per unit and step (a
#: log-space scan measured 0.15 to 0.5 µs per unit-step on a 2-core EPYC, 1,000 to 3,000 copies'
#: worth); over :data:`SUSPECT_FACTOR` times that, it is suspect.
SCAN_ESTIMATE_COPIES = 2000
#: Seconds of small GEMMs before the first timing of a process (threads awake, clocks up).
SPIN_UP_S = 0.2
#: Warm-up: calls (at least two) for this many seconds before a shape is judged slow or fast.
WARMUP_S = 0.05
#: A call slower than this is sampled twice when timed as single calls (else three times).
SLOW_CALL_S = 0.1
#: Bytes of each tensor of the copy-bandwidth probe (beyond the last-level caches).
COPY_BYTES = {"cpu": 64 * 2**20, "cuda": 512 * 2**20, "mps": 256 * 2**20}
#: A cached timing more than this many times the probe's estimate for its shape is suspect. On a
#: 2-core CPU under a load average of 5 (one thread, four runs), 23 shapes from (2, 4, 24) to
#: (1024, 1024, 1024), skinny and GEMV-like ones included, took 0.4 to 12.3 × the estimate; a
#: timing 50 × too slow is caught for any shape that runs at 0.4 × its estimate or slower.
SUSPECT_FACTOR = 20.0
#: Seconds a save waits for another process's lock on the cache before giving up (no save).
LOCK_TIMEOUT_S = 10.0
#: The probe: side of its cube GEMM per device type, and at least this many calls and seconds.
PROBE_SIDE = {"cpu": 256, "cuda": 2048, "mps": 1024}
PROBE_CALLS = 3
PROBE_S = 0.005
#: paramcalc dtype names the cache knows, with their element sizes.
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def host_load() -> tuple[float | None, int]:
    """The 1-minute load average (``None`` where the OS keeps none) and the usable CPUs."""
    from ..bridge.devices import cpu_count

    try:
        load: float | None = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - Windows
        load = None
    return load, cpu_count()


def time_call(fn: Callable[[], Any], dev: torch.device, threads: int, min_run_time: float) -> Timing:
    """Time ``fn`` on ``dev`` with torch.utils.benchmark (see the module docstring)."""
    from torch.utils.benchmark import Measurement, TaskSpec, Timer

    clock = timer_for(dev)
    samples: list[float] = []

    def once() -> float:
        start = clock()
        fn()
        samples.append(clock() - start)
        return samples[-1]

    with num_threads(threads):
        fn()  # first call: library set-up, page faults
        t0 = clock()
        while len(samples) < 2 or (clock() - t0 < WARMUP_S and len(samples) < 1000):
            once()  # warm up (threads awake, caches hot); a slow shape's samples count
        one = min(samples)
    timer = Timer("fn()", globals={"fn": fn}, timer=clock, num_threads=threads)
    if one * MIN_RUNS > min_run_time:
        # slow calls: the warm-up calls are the first samples, then single calls
        runs = max(min(MIN_RUNS, int(min_run_time / max(one, 1e-9))), 2 if one > SLOW_CALL_S else 3)
        raw = list(samples)
        with num_threads(threads):
            while len(raw) < runs:  # not Timer.timeit: it makes two warm-up calls before each
                raw.append(once())
        m = Measurement(1, raw, TaskSpec("fn()", "pass", num_threads=threads))
    else:
        m = timer.adaptive_autorange(
            threshold=NOISE_THRESHOLD, min_run_time=min_run_time, max_run_time=max(10 * min_run_time, 0.2)
        )
    times = list(m.times)
    noisy = len(times) >= 2 and not m.meets_confidence(NOISE_THRESHOLD)
    load, cpus = host_load()
    return Timing(float(m.median), float(m.iqr), len(times), noisy, load=load, cpus=cpus)


def probe_time(fn: Callable[[], Any], dev: torch.device, threads: int) -> float:
    """The median of a few calls of ``fn`` after a first one: at least :data:`PROBE_CALLS`, for
    :data:`PROBE_S` (a quick reading of what the device does now, not a cached timing)."""
    clock = timer_for(dev)
    samples: list[float] = []
    with num_threads(threads):
        fn()
        start = clock()
        while len(samples) < PROBE_CALLS or (clock() - start < PROBE_S and len(samples) < 1000):
            t0 = clock()
            fn()
            samples.append(clock() - t0)
    return max(statistics.median(samples), MIN_SECONDS)


# --- the device timer ------------------------------------------------------------------------


@dataclass(frozen=True)
class GemmRequest:
    """A GEMM shape to time: ``(m, k, n)`` in ``dtype`` under a math mode (``ieee`` or ``tf32``)."""

    m: int
    k: int
    n: int
    dtype: str = "fp32"
    math: str = "ieee"


@dataclass(frozen=True)
class GemmTime:
    """Seconds per call of one GEMM shape, from its tiles (one tile: the shape itself)."""

    request: GemmRequest
    seconds: float
    tiles: tuple[Tile, ...]
    noisy: bool

    @property
    def tiled(self) -> bool:
        return len(self.tiles) > 1 or self.tiles[0].count > 1

    def describe_tiles(self) -> str:
        """``64 × (64, 16384, 1024)`` for a tiled shape, else ``""``."""
        if not self.tiled:
            return ""
        return " + ".join(f"{t.count} × ({t.m}, {t.k}, {t.n})" for t in self.tiles)


@dataclass(frozen=True)
class Probe:
    """What the device does now, measured on the spot in a few milliseconds: the time of a tiny
    GEMM (the floor of any call), the MAC rate of a cube GEMM, and a copy's bandwidth."""

    floor_s: float
    macs_per_s: float
    bytes_per_s: float

    def gemm_s(self, m: int, k: int, n: int, elem: int) -> float:
        """The time the probe gives a GEMM: floor + MACs at the cube's rate + operand bytes at
        the copy bandwidth (the sum, so a shape that is bound by either is not under-rated)."""
        return self.floor_s + m * k * n / self.macs_per_s + operand_bytes(m, k, n, elem) / self.bytes_per_s


@dataclass(frozen=True)
class Suspect:
    """A cached timing that looked wrong for the device now: what it is, why, and what became of it."""

    what: str
    why: str
    cached_s: float
    #: The new median when it was timed again; ``None``: used as cached (timed enough already).
    retimed_s: float | None = None


class DeviceTimer:
    """GEMM and copy timings of one device, thread count and torch version, cached on disk.

    ``cache``: ``True`` reads and writes the cache file in ``folder`` (default
    :func:`cache_dir`); ``False`` keeps timings in memory only. ``refresh``: read nothing from
    the cache, time every shape again and write the new timings over the old ones.
    ``verify`` (default): check every cached timing this object uses against the device now
    (:class:`Probe`) and the load it was taken under, and time a suspect one again (see the
    module docstring). ``operand_budget`` overrides the bytes a timed GEMM may allocate (see
    :func:`tile_plan`).
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        *,
        threads: int | None = None,
        min_run_time: float = DEFAULT_GEMM_MIN_RUN_TIME,
        folder: str | os.PathLike[str] | None = None,
        cache: bool = True,
        operand_budget: int | None = None,
        refresh: bool = False,
        verify: bool = True,
    ) -> None:
        import torch

        from ..bridge.devices import available_bytes, device_name, timing_device

        self.dev = timing_device(device)
        self.threads = (check_threads(threads) or torch.get_num_threads()) if self.dev.type == "cpu" else 0
        self.min_run_time = check_min_run_time(min_run_time)
        self.device_name = device_name(self.dev)
        self.torch_version = str(torch.__version__)
        self.use_cache = bool(cache)
        self.folder = Path(folder) if folder is not None else cache_dir()
        self.path = cache_file(self.folder, self.dev.type, self.device_name, self.torch_version)
        if operand_budget is None:
            if self.dev.type == "cpu":
                operand_budget = CPU_OPERAND_BUDGET
            else:
                free = available_bytes(self.dev)
                operand_budget = min(ACCEL_OPERAND_BUDGET, free // 4) if free else ACCEL_OPERAND_BUDGET
        self.operand_budget = int(operand_budget)
        self._gemm: dict[str, Timing] = {}
        self._copy: dict[str, Timing] = {}
        self._warm = False
        self._fresh: set[str] = set()  # keys timed by this object (a noisy one is not retimed)
        #: Timings measured by this object (not read from the cache; probes not counted).
        self.timed = 0
        #: Why the cache file (or some of its entries) was ignored when it was read ("" if none).
        self.cache_problem = ""
        #: Why the cache file could not be written ("" when it could).
        self.write_problem = ""
        #: Time every shape again (once per object), whatever the cache holds.
        self.refresh = bool(refresh)
        #: Check the cached timings this object uses against the device now.
        self.verify = bool(verify)
        #: Cached timings judged suspect, by cache key (see :meth:`suspect_notes`).
        self.suspects: dict[str, Suspect] = {}
        self._judged: set[str] = set()
        self._probes: dict[tuple[str, str], tuple[float, float]] = {}
        self._copy_probe: float | None = None
        self._busy_now: bool | None = None
        if self.use_cache and not refresh:
            self._gemm, self._copy, self.cache_problem = self._read()

    # -- identity and file --------------------------------------------------------------------
    def identity(self) -> dict[str, str]:
        return {
            "schema": SCHEMA,
            "torch": self.torch_version,
            "device_type": self.dev.type,
            "device_name": self.device_name,
        }

    def _read(self) -> tuple[dict[str, Timing], dict[str, Timing], str]:
        """The cache's entries, or empty ones and why the file was ignored."""
        return read_cache(self.path, self.identity())

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the cache's :mod:`filelock` lock for the block, waiting at most
        :data:`LOCK_TIMEOUT_S`; :class:`CacheBusy` when another process keeps it longer, or when
        the lock path is not a regular file (:func:`paramcalc.core.files.cache_lock`)."""
        return cache_lock(self.lock_path, LOCK_TIMEOUT_S)

    def save(self) -> None:
        """Merge this object's timings into the cache file, atomically (no-op without a cache).

        The entry at the cache path is replaced, never written through (a link, a FIFO). A lock
        held elsewhere, a full disk or a read-only folder: nothing is saved, and
        :attr:`write_problem` says why (a note of the result)."""
        if not self.use_cache:
            return
        from ..core.writes import atomic_write

        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self._lock():
                gemm, copy, _ = self._read()
                gemm.update(self._gemm)
                copy.update(self._copy)
                data = {
                    **self.identity(),
                    "gemm": {k: v.to_json() for k, v in sorted(gemm.items())},
                    "copy": {k: v.to_json() for k, v in sorted(copy.items())},
                }
                text = json.dumps(data, indent=1, sort_keys=False) + "\n"

                def write(tmp: str) -> None:
                    with open(tmp, "w", encoding="utf-8") as fh:
                        fh.write(text)

                atomic_write(self.path, write, follow_links=False)
            self._gemm, self._copy = gemm, copy
            self.write_problem = ""
        except CacheBusy as exc:
            self.write_problem = f"the cache {str(self.path)!r} was not saved: {exc}"
        except (OSError, ParamcalcError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.write_problem = f"the cache {str(self.path)!r} could not be written: {why}"

    # -- GEMMs --------------------------------------------------------------------------------
    def _key(self, dtype: str, math_mode: str, m: int, k: int, n: int) -> str:
        return f"{dtype}:{math_mode}:{m}x{k}x{n}:t{self.threads}"

    def gemm_key(self, req: GemmRequest, t: Tile) -> str:
        """The cache key of tile ``t`` of ``req``."""
        return self._key(req.dtype, req.math, t.m, t.k, t.n)

    def tiles(self, req: GemmRequest) -> tuple[Tile, ...]:
        return tile_plan(req.m, req.k, req.n, ELEMENT_BYTES[req.dtype], self.operand_budget)

    def missing(self, requests: Iterable[GemmRequest]) -> list[tuple[GemmRequest, Tile]]:
        """The distinct tiles of ``requests`` to time, in first-seen order: those without a
        timing, and those whose cached timing is noisy or suspect (:meth:`judge_gemm`) and was
        timed fewer than :data:`MAX_TRIES` times (at most once per object); with ``refresh``,
        every tile this object has not timed."""
        out: dict[str, tuple[GemmRequest, Tile]] = {}
        for req in requests:
            _check_request(req)
            for t in self.tiles(req):
                key = self.gemm_key(req, t)
                if key in out or key in self._fresh:
                    continue
                have = self._gemm.get(key)
                if have is None or self.refresh:
                    out[key] = (req, t)
                elif self.judge_gemm(req, t, have) or have.noisy:  # judged even when kept
                    if have.tries < MAX_TRIES:
                        out[key] = (req, t)
        return list(out.values())

    def ensure(
        self,
        requests: Iterable[GemmRequest],
        on_timed: Callable[[int, int], None] | None = None,
    ) -> int:
        """Time every missing tile of ``requests`` (one shape's operands at a time); save once.

        ``on_timed(done, total)`` after each (a progress bar). Returns how many were timed.
        """
        todo = self.missing(requests)
        for i, (req, t) in enumerate(todo, 1):
            key = self.gemm_key(req, t)
            self._gemm[key] = self._retimed(key, self._gemm.get(key), self._time_gemm(req, t))
            self.timed += 1
            if on_timed is not None:
                on_timed(i, len(todo))
        if todo:
            self.save()
        return len(todo)

    def gemm_time(self, req: GemmRequest) -> GemmTime:
        """Seconds per call of ``req`` (timed now if the cache lacks a tile of it)."""
        self.ensure([req])
        tiles = self.tiles(req)
        entries = [self._gemm[self.gemm_key(req, t)] for t in tiles]
        seconds = sum(t.count * e.median_s for t, e in zip(tiles, entries, strict=True))
        return GemmTime(req, seconds, tiles, any(e.noisy for e in entries))

    # -- is a cached timing right for the device now? -----------------------------------------
    def judge_gemm(self, req: GemmRequest, t: Tile, have: Timing) -> bool:
        """Whether the cached timing ``have`` of tile ``t`` is suspect (recorded in
        :attr:`suspects`): off the probe's estimate for its shape by more than
        :data:`SUSPECT_FACTOR`, or taken on a busy machine that is quiet now."""
        key = self.gemm_key(req, t)
        if key not in self._judged:
            self._judged.add(key)
            elem = ELEMENT_BYTES[req.dtype]
            what = f"GEMM ({t.m}, {t.k}, {t.n}) {req.dtype}{' tf32' if req.math == 'tf32' else ''}"

            def estimate() -> float:
                return self.probe(req.dtype, req.math).gemm_s(t.m, t.k, t.n, elem)

            self._judge(key, what, have, estimate)
        return key in self.suspects

    def _judge(self, key: str, what: str, have: Timing, estimate: Callable[[], float]) -> None:
        """Record ``have`` in :attr:`suspects` if it was taken busy and is used quiet, or is over
        :data:`SUSPECT_FACTOR` × ``estimate()`` (the probe's time for it). A timing is never
        judged too fast: load only slows a measurement down, and the probe may be the slow one."""
        if not self.verify or key in self._fresh:
            return
        why = ""
        if have.busy and not self.busy_now():
            cpus = plural(have.cpus or 0, "CPU")
            why = f"taken under load {have.load:.1f} on {cpus}, the machine is quiet now"
        else:
            expect = estimate()
            if have.median_s > SUSPECT_FACTOR * expect:
                why = f"{have.median_s / expect:,.0f} × the probe's estimate ({_fmt_s(expect)})"
        if why:
            self.suspects[key] = Suspect(what, why, have.median_s)

    def _retimed(self, key: str, old: Timing | None, new: Timing) -> Timing:
        """What is kept of a new timing of ``key``: a suspect one keeps the faster of the two
        (load and noise only slow a timing down), a retried one counts the try."""
        self._fresh.add(key)
        if old is None or self.refresh:
            return new
        kept = replace(new, tries=old.tries + 1)
        if key in self.suspects:
            self.suspects[key] = replace(self.suspects[key], retimed_s=new.median_s)
            if old.median_s < new.median_s:
                kept = replace(old, tries=old.tries + 1)
        return kept

    def busy_now(self) -> bool:
        """Whether the machine is busy now (:data:`BUSY_LOAD`); read once per object."""
        if self._busy_now is None:
            load, cpus = host_load()
            self._busy_now = load is not None and load > BUSY_LOAD * cpus
        return self._busy_now

    def probe(self, dtype: str = "fp32", math_mode: str = "ieee") -> Probe:
        """The device now (once per object and dtype): a (8, 8, 8) GEMM, a cube GEMM of side
        :data:`PROBE_SIDE` (halved until its operands fit the budget) and a copy of an eighth of
        :data:`COPY_BYTES`, each a few calls (:func:`probe_time`)."""
        import torch

        from ..bridge.devices import oom_as_error, torch_dtype

        if (dtype, math_mode) not in self._probes:
            dt, elem = torch_dtype(dtype), ELEMENT_BYTES[dtype]
            side = PROBE_SIDE.get(self.dev.type, PROBE_SIDE["cuda"])
            while side > 8 and operand_bytes(side, side, side, elem) > self.operand_budget:
                side //= 2
            times = []
            with oom_as_error("probing the device", self.dev), _tf32(self.dev, math_mode):
                for size in (8, side):
                    a = torch.empty(size, size, device=self.dev, dtype=dt).uniform_(-1, 1)
                    c = torch.empty(size, size, device=self.dev, dtype=dt)
                    times.append(
                        probe_time(
                            functools.partial(torch.mm, a, a.t(), out=c), self.dev, self.host_threads()
                        )
                    )
                    del a, c
            floor, cube = times
            self._probes[(dtype, math_mode)] = (floor, side**3 / max(cube - floor, cube / 2))
        if self._copy_probe is None:
            n = self.copy_bytes // 32  # an eighth of the cached copy, in fp32
            with oom_as_error("probing the copy bandwidth", self.dev):
                src = torch.ones(n, device=self.dev)
                dst = torch.empty(n, device=self.dev)
                self._copy_probe = (
                    2 * 4 * n / probe_time(functools.partial(dst.copy_, src), self.dev, self.host_threads())
                )
                del src, dst
        floor, rate = self._probes[(dtype, math_mode)]
        return Probe(floor, rate, self._copy_probe)

    def suspect_notes(self, keys: Iterable[str]) -> list[str]:
        """At most two lines on the suspect timings among ``keys``: those timed again, and those
        used as cached (timed :data:`MAX_TRIES` times already). Like every note on the cache, they
        start with "the cache" (``bench`` shows those of its prediction)."""
        found = [self.suspects[k] for k in dict.fromkeys(keys) if k in self.suspects]
        again = [x for x in found if x.retimed_s is not None]
        kept = [x for x in found if x.retimed_s is None]
        out = []
        if again:
            shown = "; ".join(
                f"{x.what}: {_fmt_s(x.cached_s)} cached, {_fmt_s(x.retimed_s or 0.0)} now ({x.why})"
                for x in again[:3]
            )
            more = f"; and {len(again) - 3} more" if len(again) > 3 else ""
            out.append(
                f"the cache had {plural(len(again), 'timing')} that looked wrong for this device now, "
                "timed again: "
                f"{shown}{more}"
            )
        if kept:
            shown = "; ".join(f"{x.what}: {_fmt_s(x.cached_s)} ({x.why})" for x in kept[:3])
            more = f"; and {len(kept) - 3} more" if len(kept) > 3 else ""
            out.append(
                f"the cache has {plural(len(kept), 'timing')} that "
                f"{'looks' if len(kept) == 1 else 'look'} wrong for this device now but "
                f"{'was' if len(kept) == 1 else 'were'} timed {MAX_TRIES} times already, so the "
                f"prediction uses {'it' if len(kept) == 1 else 'them'} as cached and may be off: "
                f"{shown}{more}; a prediction with refresh times {'it' if len(kept) == 1 else 'them'} again"
            )
        return out

    def _warm_up(self) -> None:
        """Once per object, before its first timing: busy the device's threads for :data:`SPIN_UP_S`
        with small GEMMs (a fresh process's first parallel calls are many times slower)."""
        if self._warm:
            return
        import time

        import torch

        clock = timer_for(self.dev)
        a = torch.ones(256, 256, device=self.dev)
        with num_threads(self.host_threads()):
            end = time.perf_counter() + SPIN_UP_S
            while clock() < end:
                torch.mm(a, a)
        self._warm = True

    def _time_gemm(self, req: GemmRequest, t: Tile) -> Timing:
        import torch

        from ..bridge.devices import oom_as_error, torch_dtype

        dt = torch_dtype(req.dtype)
        self._warm_up()
        what = f"timing a ({t.m}, {t.k}, {t.n}) {req.dtype} GEMM"
        with oom_as_error(what, self.dev, "lower the operand budget"), _tf32(self.dev, req.math):
            a = torch.empty(t.m, t.k, device=self.dev, dtype=dt).uniform_(-1, 1)
            b = torch.empty(t.n, t.k, device=self.dev, dtype=dt).uniform_(-1, 1)
            c = torch.empty(t.m, t.n, device=self.dev, dtype=dt)
            fn = functools.partial(torch.mm, a, b.t(), out=c)
            try:
                return time_call(fn, self.dev, self.host_threads(), self.min_run_time)
            finally:
                del fn, a, b, c

    # -- copy bandwidth ----------------------------------------------------------------------
    @property
    def copy_key(self) -> str:
        return f"t{self.threads}"

    def copy_bandwidth(self) -> float:
        """Bytes per second a large ``copy_`` moves (read + write), timed once and cached."""

        def estimate() -> float:
            return 2 * self.copy_bytes / self.probe().bytes_per_s

        what = f"copy of {self.copy_bytes / 2**20:g} MiB"
        timing = self._cached(self.copy_key, what, self._time_copy, estimate)
        return 2 * self.copy_bytes / timing.median_s

    def _cached(
        self, key: str, what: str, time: Callable[[], Timing], estimate: Callable[[], float]
    ) -> Timing:
        """The copy-side timing under ``key`` (copy bandwidth, per-call overhead): from the cache
        (judged against ``estimate()``, the probe's time for it), or timed now by ``time()`` and
        saved (with ``refresh``: timed once per object)."""
        have = self._copy.get(key)
        if have is not None and not self.refresh and key not in self._judged:
            self._judged.add(key)
            self._judge(key, what, have, estimate)
        stale = have is None or (self.refresh and key not in self._fresh)
        if have is not None and key in self.suspects and key not in self._fresh and have.tries < MAX_TRIES:
            stale = True
        if stale:
            self._copy[key] = self._retimed(key, have, time())
            self.timed += 1
            self.save()
        return self._copy[key]

    def op_key(self, spec: RecurrentSpec | None = None, dtype: str = "fp32") -> tuple[str, int]:
        """The cache key of a kernel path's per-call overhead (:meth:`op_seconds`), and the
        operator calls per step that path dispatches (0: the tiny ``torch.add`` stands in); for
        a module that runs a layer's recurrence as one scan, the calls of one forward."""
        if spec is not None:
            from ..bridge.driver import dispatched_ops, tiny_spec

            once, _, calls = dispatched_ops(spec, dtype, self.dev)
            calls = calls or (once if runs_once(spec) else 0)
            if calls:
                text = json.dumps([tiny_spec(spec).to_dict(), dtype], sort_keys=True)
                return f"op:{hashlib.sha1(text.encode()).hexdigest()[:10]}:t{self.threads}", calls
        return f"op:t{self.threads}", 0

    def op_seconds(self, spec: RecurrentSpec | None = None, dtype: str = "fp32") -> float:
        """Seconds of overhead per operator call, timed once and cached.

        With ``spec``: measured on its own kernel path, from a 4-unit copy of its module
        (:func:`paramcalc.bridge.driver.step_case`) run for :data:`OP_STEPS` steps and for 3 ×
        as many: the extra time per step over the operator calls per step (GEMMs included: at
        4 units every call is dispatch). So ATen's native cells (calls from C++) and a reference
        module (calls from Python, with its ``forward``) each get their own figure. Without, or
        where the path dispatches nothing per step (a fused layer): one ``torch.add`` of 64
        elements. A cached figure over :data:`SUSPECT_FACTOR` × the probe's tiny GEMM is suspect.
        """
        key, calls = self.op_key(spec, dtype)

        def time() -> Timing:
            timing = None
            if calls and spec is not None:
                timed = self._time_forward if runs_once(spec) else self._time_steps
                timing = timed(spec, dtype, calls)
            return timing or self._time_op()

        def estimate() -> float:
            return self.probe().floor_s  # the tiny GEMM: one call's dispatch, and a little work

        return self._cached(key, "per-call overhead", time, estimate).median_s

    def _time_steps(self, spec: RecurrentSpec, dtype: str, calls: int) -> Timing | None:
        import torch

        from ..bridge.driver import step_case

        self._warm_up()
        whole = step_case(spec, dtype, self.dev, 3 * OP_STEPS)
        timings = []
        for case in (whole.first(OP_STEPS), whole):

            def run(case: Any = case) -> None:
                with torch.no_grad():
                    case.forward()

            timings.append(time_call(run, self.dev, self.host_threads(), self.min_run_time))
        short, long = timings
        per_call = (long.median_s - short.median_s) / (2 * OP_STEPS * calls)
        if per_call < MIN_SECONDS:  # lost in the noise: the tiny op stands in
            return None
        iqr = (long.iqr_s + short.iqr_s) / (2 * OP_STEPS * calls)
        return replace(
            long,
            median_s=per_call,
            iqr_s=iqr,
            runs=min(short.runs, long.runs),
            noisy=short.noisy or long.noisy,
        )

    def scan_key(self, spec: RecurrentSpec, dtype: str, training: bool) -> str:
        """The cache key of :meth:`scan_seconds` for ``spec``'s module, dtype and mode."""
        text = json.dumps([scan_probe(spec).to_dict(), dtype, training], sort_keys=True)
        return f"ew:{hashlib.sha1(text.encode()).hexdigest()[:10]}:t{self.threads}"

    def scan_seconds(self, spec: RecurrentSpec, dtype: str = "fp32", training: bool = False) -> float:
        """Seconds per hidden unit and step of one layer and direction of a module that runs its
        recurrence as one scan (:func:`runs_once`), timed once and cached.

        A log-space scan does dozens of elementwise operations per element, logarithms and
        exponentials among them, where the cell's equations count a few: priced at the copy
        bandwidth by the equations' count, it would be predicted many times too fast. So it is
        measured on its module (:data:`SCAN_PROBE` sizes: one call, or a training step, less its
        operator calls at :meth:`op_seconds`, over the units × steps; the input GEMM at 4 input
        features is a rounding error there).
        """
        key = self.scan_key(spec, dtype, training)

        def estimate() -> float:  # each unit-step as SCAN_ESTIMATE_COPIES fp32 elements copied
            return SCAN_ESTIMATE_COPIES * 8 / self.probe().bytes_per_s

        what = f"scan of {spec.cell_type.display_name} ({'training' if training else 'inference'})"
        return self._cached(key, what, lambda: self._time_scan(spec, dtype, training), estimate).median_s

    def _time_scan(self, spec: RecurrentSpec, dtype: str, training: bool) -> Timing:
        import contextlib as ctx

        import torch

        from ..bridge.driver import dispatched_ops, make_case
        from ..core.workload import Workload

        hidden, batch, steps = SCAN_PROBE
        probe = scan_probe(spec)
        self._warm_up()
        case = make_case(
            probe, Workload(batch, steps, dtype=dtype, mode="training" if training else "inference"), self.dev
        )
        case.module.train(training)
        call = case.callable(training)

        def run() -> None:
            with ctx.nullcontext() if training else torch.no_grad():
                call()

        t = time_call(run, self.dev, self.host_threads(), self.min_run_time)
        calls = dispatched_ops(probe, dtype, self.dev)[0] * (3 if training else 1)
        units = hidden * batch * steps
        median = max(t.median_s - calls * self.op_seconds(probe, dtype), t.median_s / 2) / units
        return replace(t, median_s=max(median, MIN_SECONDS), iqr_s=t.iqr_s / units)

    def _time_forward(self, spec: RecurrentSpec, dtype: str, calls: int) -> Timing | None:
        """A scan's per-call overhead: one forward of its 4-unit copy (:data:`OP_STEPS` steps, where
        every call is dispatch) over the calls it makes."""
        import torch

        from ..bridge.driver import step_case

        self._warm_up()
        case = step_case(spec, dtype, self.dev, OP_STEPS)

        def run() -> None:
            with torch.no_grad():
                case.forward()

        t = time_call(run, self.dev, self.host_threads(), self.min_run_time)
        return replace(t, median_s=max(t.median_s / calls, MIN_SECONDS), iqr_s=t.iqr_s / calls)

    def _time_op(self) -> Timing:
        import torch

        self._warm_up()
        a = torch.ones(64, device=self.dev)
        b = torch.ones(64, device=self.dev)
        c = torch.empty(64, device=self.dev)
        fn = functools.partial(torch.add, a, b, out=c)
        try:
            return time_call(fn, self.dev, self.host_threads(), self.min_run_time)
        finally:
            del fn, a, b, c

    @property
    def copy_bytes(self) -> int:
        return COPY_BYTES.get(self.dev.type, COPY_BYTES["cuda"])

    def _time_copy(self) -> Timing:
        import torch

        from ..bridge.devices import oom_as_error

        n = self.copy_bytes // 4
        self._warm_up()
        with oom_as_error("timing the copy bandwidth", self.dev):
            src = torch.empty(n, device=self.dev, dtype=torch.float32).fill_(1.0)
            dst = torch.empty(n, device=self.dev, dtype=torch.float32).fill_(0.0)
            fn = functools.partial(dst.copy_, src)
            try:
                return time_call(fn, self.dev, self.host_threads(), self.min_run_time)
            finally:
                del fn, src, dst

    def host_threads(self) -> int:
        """The CPU threads timings run with (torch's setting on an accelerator)."""
        import torch

        return self.threads or torch.get_num_threads()


def scan_probe(spec: RecurrentSpec) -> RecurrentSpec:
    """The one-layer, one-direction module of ``spec``'s cell a scan's work is timed on."""
    return spec.replace(
        input_size=4,
        hidden_size=SCAN_PROBE[0],
        proj_size=0,
        num_layers=1,
        bidirectional=False,
        merge_mode="concat",
    )


def runs_once(spec: RecurrentSpec) -> bool:
    """Whether ``spec``'s module runs each layer's recurrence as one scan (its operator calls do
    not grow with the steps: the per-call overhead is read off one forward)."""
    from ..bridge.build import reference_kind

    return reference_kind(spec) == "parallel scan"


def _fmt_s(seconds: float) -> str:
    from ..results.text import fmt_seconds

    return fmt_seconds(seconds)


def _check_request(req: GemmRequest) -> None:
    if req.dtype not in ELEMENT_BYTES:
        raise ParamcalcError(f"GEMMs are timed in {', '.join(ELEMENT_BYTES)}, not {req.dtype}")
    if req.math not in ("ieee", "tf32"):
        raise ParamcalcError(f"math mode must be ieee or tf32, got {req.math!r}")


@contextlib.contextmanager
def _tf32(dev: torch.device, math_mode: str) -> Iterator[None]:
    """CUDA matmuls in TF32 (or not) for the block, as the timed kernel would run them."""
    if dev.type != "cuda":
        yield
        return
    import torch

    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = math_mode == "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
