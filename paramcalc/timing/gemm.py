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
  time per step over the calls per step (:meth:`DeviceTimer.op_seconds`); ``torch.add`` of 64
  elements where the path dispatches nothing per step. Cached beside the copy timing.
* **the cache**: one JSON file per device name and torch version in :func:`cache_dir`
  (``$PARAMCALC_CACHE_DIR``, else ``$XDG_CACHE_HOME/paramcalc``, else
  ``~/.cache/paramcalc``), keyed by dtype, math mode (TF32 or not), shape and thread count.
  A cached timing marked noisy is timed again the next time a process needs it, up to
  :data:`MAX_TRIES` times in all.
  A file that is not valid JSON, has another schema, another torch version or another device
  name is ignored (and replaced on the next write). Writes go through
  :func:`paramcalc.results.export.atomic_write` under an advisory lock, merging what another
  process wrote meanwhile, so concurrent runs never leave a torn or partial file.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ParamcalcError

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..core.spec import RecurrentSpec

#: Schema of the cache file; another value makes the file foreign (ignored, then replaced).
SCHEMA = "paramcalc.gemm-cache/1"
#: Environment variable naming the cache folder (it wins over ``XDG_CACHE_HOME``).
CACHE_ENV = "PARAMCALC_CACHE_DIR"
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
#: Seconds of small GEMMs before the first timing of a process (threads awake, clocks up).
SPIN_UP_S = 0.2
#: Warm-up: calls (at least two) for this many seconds before a shape is judged slow or fast.
WARMUP_S = 0.05
#: A call slower than this is sampled twice when timed as single calls (else three times).
SLOW_CALL_S = 0.1
#: Bytes of ``A + B + C`` one timed GEMM may allocate on a CPU, and on an accelerator.
CPU_OPERAND_BUDGET = 128 * 2**20
ACCEL_OPERAND_BUDGET = 2**30
#: ``K`` is split only when it exceeds this many times the operand's other dimension.
SPLIT_K_RATIO = 16
#: Bytes of each tensor of the copy-bandwidth probe (beyond the last-level caches).
COPY_BYTES = {"cpu": 64 * 2**20, "cuda": 512 * 2**20, "mps": 256 * 2**20}
#: Largest cache file read back (a bigger one is foreign).
MAX_CACHE_FILE = 32 * 2**20
#: paramcalc dtype names the cache knows, with their element sizes.
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}

_KEY_RE = re.compile(r"^(fp32|fp16|bf16):(ieee|tf32):(\d+)x(\d+)x(\d+):t(\d+)$")


# --- where the cache lives -------------------------------------------------------------------


def cache_dir(environ: dict[str, str] | None = None) -> Path:
    """The cache folder: ``$PARAMCALC_CACHE_DIR``, ``$XDG_CACHE_HOME/paramcalc`` or ``~/.cache/paramcalc``."""
    env = os.environ if environ is None else environ
    given = env.get(CACHE_ENV, "").strip()
    if given:
        return Path(given).expanduser()
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "paramcalc"
    return Path.home() / ".cache" / "paramcalc"


def cache_file(folder: Path, device_type: str, device_name: str, torch_version: str) -> Path:
    """The cache file of one device name and torch version inside ``folder``."""
    digest = hashlib.sha256(f"{device_type}\0{device_name}\0{torch_version}".encode()).hexdigest()[:12]
    return folder / f"gemm-{device_type}-{digest}.json"


# --- tiling large shapes ---------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """``count`` GEMMs of shape ``(m, k, n)`` that stand in for (part of) a larger one."""

    m: int
    k: int
    n: int
    count: int

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.count


def operand_bytes(m: int, k: int, n: int, elem: int) -> int:
    """Bytes of ``A (M×K)``, ``B (N×K)`` and ``C (M×N)``."""
    return (m * k + n * k + m * n) * elem


def _pieces(size: int, tile: int) -> list[tuple[int, int]]:
    """``(length, count)`` covering ``size`` with tiles of ``tile`` and one remainder."""
    full, rest = divmod(size, tile)
    out = [(tile, full)] if full else []
    if rest:
        out.append((rest, 1))
    return out


def tile_plan(m: int, k: int, n: int, elem: int, budget: int) -> tuple[Tile, ...]:
    """Tiles whose operands fit ``budget`` bytes and whose MACs add up to ``m·k·n`` exactly.

    ``((m, k, n, 1),)`` when the whole GEMM fits. Otherwise a dimension of the largest operand
    is halved (rounding up) until a tile fits: ``N`` of ``B``, ``M`` of ``A``, the larger of
    ``M`` and ``N`` of ``C``. ``K`` is halved only when it is more than :data:`SPLIT_K_RATIO`
    times the operand's other dimension (a split-K GEMM also adds its partial products, which
    the tiles' times leave out).
    """
    if min(m, k, n) < 1 or elem < 1 or budget < 3 * elem:
        raise ParamcalcError(f"cannot tile a GEMM of shape ({m}, {k}, {n}) into {budget} bytes")
    tm, tk, tn = m, k, n
    while operand_bytes(tm, tk, tn, elem) > budget:
        a, b, c = tm * tk, tn * tk, tm * tn
        if c > a and c > b:
            if tm >= tn:
                tm = -(-tm // 2)
            else:
                tn = -(-tn // 2)
            continue
        other = tn if b >= a else tm  # the operand's dimension besides K
        if other > 1 and tk <= SPLIT_K_RATIO * other:
            if b >= a:
                tn = -(-tn // 2)
            else:
                tm = -(-tm // 2)
        else:
            tk = -(-tk // 2)
    tiles = [
        Tile(pm, pk, pn, cm * ck * cn)
        for pm, cm in _pieces(m, tm)
        for pk, ck in _pieces(k, tk)
        for pn, cn in _pieces(n, tn)
    ]
    assert sum(t.macs for t in tiles) == m * k * n  # exact in MACs, by construction
    return tuple(tiles)


# --- one timing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """A measured median per call, its IQR, how many runs, and whether it is noisy."""

    median_s: float
    iqr_s: float
    runs: int
    noisy: bool
    #: How many times this shape has been timed (a noisy timing is retried up to :data:`MAX_TRIES`).
    tries: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "median_s": self.median_s,
            "iqr_s": self.iqr_s,
            "runs": self.runs,
            "noisy": self.noisy,
            "tries": self.tries,
        }

    @classmethod
    def from_json(cls, value: Any) -> Timing:
        """A timing from the cache; ``ValueError`` for anything that is not one."""
        if not isinstance(value, dict):
            raise ValueError("not an object")
        med, iqr = _number(value.get("median_s")), _number(value.get("iqr_s"))
        if not (med > 0 and iqr >= 0):
            raise ValueError("median_s must be positive and iqr_s not negative")
        runs, tries = _count(value.get("runs")), _count(value.get("tries", 1))
        noisy = value.get("noisy")
        if not isinstance(noisy, bool):
            raise ValueError("noisy must be a boolean")
        return cls(med, iqr, runs, noisy, tries)


def _number(x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError("times must be finite numbers")
    return float(x)


def _count(x: Any) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or x < 1:
        raise ValueError("runs and tries must be positive integers")
    return x


def time_call(fn: Callable[[], Any], dev: torch.device, threads: int, min_run_time: float) -> Timing:
    """Time ``fn`` on ``dev`` with torch.utils.benchmark (see the module docstring)."""
    from torch.utils.benchmark import Measurement, TaskSpec, Timer

    from .benchmark import num_threads, timer_for

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
    return Timing(float(m.median), float(m.iqr), len(times), noisy)


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


class DeviceTimer:
    """GEMM and copy timings of one device, thread count and torch version, cached on disk.

    ``cache``: ``True`` reads and writes the cache file in ``folder`` (default
    :func:`cache_dir`); ``False`` keeps timings in memory only. ``refresh``: read nothing from
    the cache, time every shape again and write the new timings over the old ones.
    ``operand_budget`` overrides the bytes a timed GEMM may allocate (see :func:`tile_plan`).
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
    ) -> None:
        import torch

        from ..bridge.devices import available_bytes, device_name, timing_device
        from .benchmark import check_min_run_time, check_threads

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
        #: Timings measured by this object (not read from the cache).
        self.timed = 0
        #: Why the cache file was ignored when it was read ("" when it was read, or absent).
        self.cache_problem = ""
        #: Why the cache file could not be written ("" when it could).
        self.write_problem = ""
        #: Time every shape again (once per object), whatever the cache holds.
        self.refresh = bool(refresh)
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

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: atomic writes only
            yield
            return
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            fh = open(lock, "a+")  # held for the block
        except OSError:
            yield
            return
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()

    def save(self) -> None:
        """Merge this object's timings into the cache file, atomically (no-op without a cache)."""
        if not self.use_cache:
            return
        from ..results.export import atomic_write

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
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

                atomic_write(self.path, write)
            self._gemm, self._copy = gemm, copy
            self.write_problem = ""
        except (OSError, ParamcalcError) as exc:
            self.write_problem = f"the cache {str(self.path)!r} could not be written: {exc}"

    # -- GEMMs --------------------------------------------------------------------------------
    def _key(self, dtype: str, math_mode: str, m: int, k: int, n: int) -> str:
        return f"{dtype}:{math_mode}:{m}x{k}x{n}:t{self.threads}"

    def tiles(self, req: GemmRequest) -> tuple[Tile, ...]:
        return tile_plan(req.m, req.k, req.n, ELEMENT_BYTES[req.dtype], self.operand_budget)

    def missing(self, requests: Iterable[GemmRequest]) -> list[tuple[GemmRequest, Tile]]:
        """The distinct tiles of ``requests`` to time, in first-seen order: those without a
        timing, and those whose cached timing is noisy and was timed fewer than :data:`MAX_TRIES`
        times (at most once per object); with ``refresh``, every tile this object has not timed."""
        out: dict[str, tuple[GemmRequest, Tile]] = {}
        for req in requests:
            _check_request(req)
            for t in self.tiles(req):
                key = self._key(req.dtype, req.math, t.m, t.k, t.n)
                have = self._gemm.get(key)
                if key in self._fresh:
                    stale = False
                else:
                    stale = have is not None and (self.refresh or (have.noisy and have.tries < MAX_TRIES))
                if (have is None or stale) and key not in out:
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
            key = self._key(req.dtype, req.math, t.m, t.k, t.n)
            old = self._gemm.get(key)
            new = self._time_gemm(req, t)
            again = old is not None and not self.refresh
            self._gemm[key] = replace(new, tries=old.tries + 1) if again and old is not None else new
            self._fresh.add(key)
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
        entries = [self._gemm[self._key(req.dtype, req.math, t.m, t.k, t.n)] for t in tiles]
        seconds = sum(t.count * e.median_s for t, e in zip(tiles, entries, strict=True))
        return GemmTime(req, seconds, tiles, any(e.noisy for e in entries))

    def _warm_up(self) -> None:
        """Once per object, before its first timing: busy the device's threads for :data:`SPIN_UP_S`
        with small GEMMs (a fresh process's first parallel calls are many times slower)."""
        if self._warm:
            return
        import time

        import torch

        from .benchmark import num_threads, timer_for

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
    def copy_bandwidth(self) -> float:
        """Bytes per second a large ``copy_`` moves (read + write), timed once and cached."""
        return 2 * self.copy_bytes / self._cached(f"t{self.threads}", self._time_copy).median_s

    def _cached(self, key: str, time: Callable[[], Timing]) -> Timing:
        """The copy-side timing under ``key`` (copy bandwidth, per-call overhead): from the cache,
        or timed now by ``time()`` and saved (with ``refresh``: timed once per object)."""
        if key not in self._copy or (self.refresh and key not in self._fresh):
            self._copy[key] = time()
            self._fresh.add(key)
            self.timed += 1
            self.save()
        return self._copy[key]

    def op_seconds(self, spec: RecurrentSpec | None = None, dtype: str = "fp32") -> float:
        """Seconds of overhead per operator call, timed once and cached.

        With ``spec``: measured on its own kernel path, from a 4-unit copy of its module
        (:func:`paramcalc.bridge.driver.step_case`) run for :data:`OP_STEPS` steps and for 3 ×
        as many: the extra time per step over the operator calls per step (GEMMs included: at
        4 units every call is dispatch). So ATen's native cells (calls from C++) and a reference
        module (calls from Python, with its ``forward``) each get their own figure. Without, or
        where the path dispatches nothing per step (a fused layer): one ``torch.add`` of 64
        elements.
        """
        key = f"op:t{self.threads}"
        calls = 0
        if spec is not None:
            from ..bridge.driver import dispatched_ops, tiny_spec

            calls = dispatched_ops(spec, dtype, self.dev)[2]
            if calls:
                text = json.dumps([tiny_spec(spec).to_dict(), dtype], sort_keys=True)
                key = f"op:{hashlib.sha1(text.encode()).hexdigest()[:10]}:t{self.threads}"

        def time() -> Timing:
            timing = self._time_steps(spec, dtype, calls) if calls and spec is not None else None
            return timing or self._time_op()

        return self._cached(key, time).median_s

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
        if per_call <= 0:  # lost in the noise: the tiny op stands in
            return None
        iqr = (long.iqr_s + short.iqr_s) / (2 * OP_STEPS * calls)
        return Timing(per_call, iqr, min(short.runs, long.runs), short.noisy or long.noisy)

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

    @property
    def copy_timing(self) -> Timing | None:
        return self._copy.get(f"t{self.threads}")


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


def read_cache(path: Path, identity: dict[str, str]) -> tuple[dict[str, Timing], dict[str, Timing], str]:
    """Entries of the cache at ``path`` if it is valid and ``identity``'s; else empty and why."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CACHE_FILE + 1)
    except FileNotFoundError:
        return {}, {}, ""
    except OSError as exc:
        return {}, {}, f"the cache {str(path)!r} could not be read: {exc.strerror}"
    if len(data) > MAX_CACHE_FILE:
        return {}, {}, f"the cache {str(path)!r} is larger than {MAX_CACHE_FILE:,} bytes: ignored"
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}, {}, f"the cache {str(path)!r} is not valid JSON: ignored, rebuilt"
    if not isinstance(doc, dict):
        return {}, {}, f"the cache {str(path)!r} is not a paramcalc GEMM cache: ignored, rebuilt"
    for key, want in identity.items():
        if doc.get(key) != want:
            return (
                {},
                {},
                (
                    f"the cache {str(path)!r} is for another {key.replace('_', ' ')} "
                    f"({str(doc.get(key))[:60]!r}): ignored, rebuilt"
                ),
            )
    try:
        gemm_doc, copy_doc = doc.get("gemm"), doc.get("copy")
        if not isinstance(gemm_doc, dict) or not isinstance(copy_doc, dict):
            raise ValueError("gemm and copy must be objects")
        gemm = {}
        for k, v in gemm_doc.items():
            if not isinstance(k, str) or not _KEY_RE.match(k):
                raise ValueError(f"bad key {k!r}")
            gemm[k] = Timing.from_json(v)
        copy = {}
        for k, v in copy_doc.items():
            if not isinstance(k, str) or not re.match(r"^(op:([0-9a-f]{10}:)?)?t\d+$", k):
                raise ValueError(f"bad key {k!r}")
            copy[k] = Timing.from_json(v)
    except ValueError as exc:
        return {}, {}, f"the cache {str(path)!r} has a wrong schema ({exc}): ignored, rebuilt"
    return gemm, copy, ""
