"""A GEMM throughput surface per device and dtype, and the speed model over arrays of configurations.

:mod:`paramcalc.timing.predict` times every distinct GEMM shape a prediction needs. A design
search (:mod:`paramcalc.studies.design`) needs the time of thousands of shapes, so it times a few
and reads the rest off a surface fitted to them:

* **which shapes**: the GEMMs a search needs fall into families that share one dimension (the
  per-step GEMMs' rows ``B``, the input GEMM's rows ``B·T``, and in training the ``K`` of their
  weight gradients). In each family the two free dimensions are rounded to powers of two, and
  :data:`POINTS_PER_FAMILY` of the rounded shapes are chosen spread out (the largest first, then
  each time the one farthest, in octaves, from those chosen): at most 18 shapes for inference and
  36 for training, whatever the number of configurations. Rounding to powers of two makes
  searches over other sizes reuse the same timings.
* **how**: each shape is timed by the :class:`~paramcalc.timing.gemm.DeviceTimer` (its cache,
  tiles, noise and suspect-entry checks: a warm cache times nothing).
* **the surface**: ``t(m, k, n) = t0 + (m + m0)(k + k0)(n + n0) / rate``, a floor plus the MACs
  of a GEMM whose every dimension is padded by a tile's worth, fitted in relative error (the
  pads on a grid of powers of two, ``t0`` and ``rate`` by least squares), times a correction
  interpolated between the timed shapes (inverse squared distance in octaves of the fit's log
  residuals): at a timed shape the surface gives its timing.

:func:`predict_grid` is then :mod:`~paramcalc.timing.predict`'s model over a
:class:`~paramcalc.core.bulk.Grid`: Σ calls × the surface's time of each GEMM of the cost
model's list (:func:`paramcalc.core.bulk.gemm_terms`), + elementwise bytes at the copy
bandwidth (a scan's work: its unit-steps at the time per unit-step measured on its module),
+ the operator calls one call dispatches × the per-call overhead. The dispatch counts
are recorded on the cell's module at one and two layers and extended linearly in layers (every
layer runs the same code); the per-call overhead is the one-layer module's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..core import bulk
from ..core.spec import RecurrentSpec
from ..errors import ParamcalcError
from ..results.text import plural
from .gemm import runs_once

if TYPE_CHECKING:  # pragma: no cover
    import os

    from .gemm import DeviceTimer

#: Shapes timed per family of GEMMs (see the module docstring).
POINTS_PER_FAMILY = 9
#: The pads tried for each dimension of the surface (powers of two).
PADS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


# --- where timings come from ------------------------------------------------------------------


class SpeedSource(Protocol):
    """What the surface and the bulk speed model ask of a device (:class:`DeviceSpeed` on a real
    one; tests give a stub that counts the timings it is asked for)."""

    device: str
    device_name: str
    threads: int
    torch_version: str

    @property
    def timed(self) -> int: ...
    def gemm_seconds(
        self, shapes: Sequence[tuple[int, int, int]], dtype: str, on_timed: Callable[[int, int], None] | None
    ) -> list[float]: ...
    def copy_bandwidth(self) -> float: ...
    def dispatch(self, spec: RecurrentSpec, dtype: str) -> tuple[int, int, int]: ...
    def op_seconds(self, spec: RecurrentSpec, dtype: str) -> float: ...
    def scan_seconds(self, spec: RecurrentSpec, dtype: str, training: bool) -> float: ...
    def capabilities(self) -> dict[str, Any]: ...
    def notes(self) -> list[str]: ...


class DeviceSpeed:
    """A :class:`SpeedSource` on a device: GEMM, copy and per-call timings from a
    :class:`~paramcalc.timing.gemm.DeviceTimer` (cached), dispatch counts from the driver."""

    def __init__(
        self,
        device: str = "cpu",
        *,
        threads: int | None = None,
        cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        timer: DeviceTimer | None = None,
    ) -> None:
        from .predict import make_timer

        self.timer = timer or make_timer(device, threads=threads, cache=cache, cache_dir=cache_dir)
        self.device = str(self.timer.dev)
        self.device_name = self.timer.device_name
        self.threads = self.timer.host_threads()
        self.torch_version = self.timer.torch_version
        self._keys: list[str] = []

    @property
    def timed(self) -> int:
        return self.timer.timed

    def gemm_seconds(
        self, shapes: Sequence[tuple[int, int, int]], dtype: str, on_timed: Callable[[int, int], None] | None
    ) -> list[float]:
        from .gemm import GemmRequest
        from .predict import math_mode

        mm = math_mode(dtype, self.timer.dev, "")
        requests = [GemmRequest(m, k, n, dtype, mm) for m, k, n in shapes]
        self.timer.ensure(requests, on_timed)
        self._keys += [self.timer.gemm_key(r, t) for r in requests for t in self.timer.tiles(r)]
        return [self.timer.gemm_time(r).seconds for r in requests]

    def copy_bandwidth(self) -> float:
        self._keys.append(self.timer.copy_key)
        return self.timer.copy_bandwidth()

    def dispatch(self, spec: RecurrentSpec, dtype: str) -> tuple[int, int, int]:
        from ..bridge.driver import dispatched_ops

        return dispatched_ops(spec, dtype, self.timer.dev)

    def op_seconds(self, spec: RecurrentSpec, dtype: str) -> float:
        self._keys.append(self.timer.op_key(spec, dtype)[0])
        return self.timer.op_seconds(spec, dtype)

    def scan_seconds(self, spec: RecurrentSpec, dtype: str, training: bool) -> float:
        self._keys.append(self.timer.scan_key(spec, dtype, training))
        return self.timer.scan_seconds(spec, dtype, training)

    def capabilities(self) -> dict[str, Any]:
        """What decides the kernel paths on this device (``device_type``, oneDNN's and cuDNN's
        availability: :func:`paramcalc.bridge.devices.kernel_capabilities`), and on CUDA the
        device's facts for the memory model (``cuda``)."""
        from ..bridge.devices import cuda_setup, kernel_capabilities

        caps = kernel_capabilities(self.timer.dev)
        if caps["device_type"] == "cuda":
            caps["cuda"] = cuda_setup(self.timer.dev)
        return caps

    def notes(self) -> list[str]:
        t = self.timer
        out = [n for n in (t.cache_problem, t.write_problem) if n]
        out += t.suspect_notes(self._keys)
        if not t.use_cache:
            out.append("no GEMM cache: every shape was timed for this search")
        return out


# --- which shapes to time ---------------------------------------------------------------------------


def _spread(points: Any, count: int) -> list[int]:
    """Indices of ``count`` rows of ``points`` (octaves) spread out: the largest first, then each
    time the row farthest from those chosen (the first in order among equals)."""
    if len(points) <= count:
        return list(range(len(points)))
    chosen = [int(np.lexsort((points[:, 1], points[:, 0], points.sum(axis=1)))[-1])]
    gap = np.sum((points - points[chosen[0]]) ** 2, axis=1)
    while len(chosen) < count:
        nxt = int(np.argmax(gap))
        chosen.append(nxt)
        gap = np.minimum(gap, np.sum((points - points[nxt]) ** 2, axis=1))
    return chosen


def design_points(
    terms: Sequence[bulk.GemmTerm], per_family: int = POINTS_PER_FAMILY
) -> list[tuple[int, int, int]]:
    """The GEMM shapes to time for a surface that covers ``terms`` (see the module docstring)."""
    families: dict[tuple[str, int], list[Any]] = {}
    for t in terms:
        rows = np.asarray(t.count) > 0
        if not bool(np.any(rows)):
            continue
        free = (t.k, t.n) if t.family[0] == "m" else (t.m, t.n)
        pair = np.stack([np.asarray(f, dtype=float)[rows] for f in free], axis=1)
        families.setdefault(t.family, []).append(np.rint(np.log2(pair)).astype(np.int64))
    out: list[tuple[int, int, int]] = []
    for (axis, value), parts in sorted(families.items()):
        octaves = np.unique(np.concatenate(parts), axis=0)
        for i in _spread(octaves, per_family):
            a, b = (2 ** int(x) for x in octaves[i])
            out.append((value, a, b) if axis == "m" else (a, value, b))
    return list(dict.fromkeys(out))


# --- the surface ---------------------------------------------------------------------------------------


def _log2_shapes(m: Any, k: Any, n: Any) -> Any:
    return np.log2(np.stack([np.asarray(x, dtype=float) for x in (m, k, n)], axis=-1))


@dataclass(frozen=True)
class GemmSurface:
    """Seconds per call of any GEMM shape in one dtype on one device, fitted to timed shapes (see
    the module docstring): ``t0 + (m + pads[0])(k + pads[1])(n + pads[2]) / rate``, corrected
    towards the timings between the timed shapes."""

    dtype: str
    shapes: tuple[tuple[int, int, int], ...]
    timings: tuple[float, ...]
    t0: float
    pads: tuple[int, int, int]
    rate: float
    residuals: tuple[float, ...] = field(repr=False)

    @classmethod
    def fit(cls, dtype: str, shapes: Sequence[tuple[int, int, int]], timings: Sequence[float]) -> GemmSurface:
        """The surface of ``timings`` (seconds per call) of ``shapes``: the pads of least squared
        log error among :data:`PADS`, ``t0`` and ``rate`` by least squares in relative error."""
        if not shapes or len(shapes) != len(timings):
            raise ParamcalcError("a GEMM surface needs timed shapes, one timing each")
        y = np.asarray(timings, dtype=float)
        if not bool(np.all(np.isfinite(y) & (y > 0))):
            raise ParamcalcError("a GEMM surface needs positive, finite timings")
        dims = np.asarray(shapes, dtype=float)
        pads = np.asarray(PADS, dtype=float)
        grid = np.stack(np.meshgrid(pads, pads, pads, indexing="ij"), axis=-1).reshape(-1, 3)
        x = np.prod(dims[None, :, :] + grid[:, None, :], axis=2)  # padded MACs: combos × shapes
        t0, c = _relative_lsq(x / y[None, :], 1.0 / y)
        err = np.log((t0[:, None] + c[:, None] * x) / y[None, :])
        best = int(np.argmin(np.sum(err**2, axis=1)))
        pm, pk, pn = (int(v) for v in grid[best])
        plain = cls(
            dtype, tuple(shapes), tuple(map(float, y)), float(t0[best]), (pm, pk, pn), 1 / float(c[best]), ()
        )
        residuals = np.log(y / plain.base(dims[:, 0], dims[:, 1], dims[:, 2]))
        return replace(plain, residuals=tuple(map(float, residuals)))

    def base(self, m: Any, k: Any, n: Any) -> Any:
        """The fitted model alone, without the correction towards the timings."""
        pm, pk, pn = self.pads
        fm, fk, fn = (np.asarray(v, dtype=float) for v in (m, k, n))
        return self.t0 + (fm + pm) * (fk + pk) * (fn + pn) / self.rate

    def __call__(self, m: Any, k: Any, n: Any) -> Any:
        """Seconds per call of every shape ``(m[i], k[i], n[i])`` (arrays, or numbers)."""
        shape = np.broadcast(np.asarray(m), np.asarray(k), np.asarray(n)).shape
        flat = np.stack(
            [np.broadcast_to(np.asarray(v, dtype=float), shape).reshape(-1) for v in (m, k, n)], 1
        )
        if not flat.size:
            return np.zeros(shape)
        unique, back = np.unique(flat, axis=0, return_inverse=True)
        seconds = self.base(unique[:, 0], unique[:, 1], unique[:, 2]) * np.exp(self._correction(unique))
        return seconds[np.asarray(back).reshape(-1)].reshape(shape)

    def _correction(self, unique: Any) -> Any:
        """The log residuals of the timed shapes, interpolated (inverse squared distance, octaves)."""
        nodes = _log2_shapes(*np.asarray(self.shapes, dtype=float).T)
        d2 = np.sum((np.log2(unique)[:, None, :] - nodes[None, :, :]) ** 2, axis=2)
        res = np.asarray(self.residuals)
        exact = d2 == 0
        w = 1.0 / np.where(exact, 1.0, d2)
        out = (w @ res) / np.sum(w, axis=1)
        hit = np.any(exact, axis=1)
        out[hit] = res[np.argmax(exact[hit], axis=1)]
        return out

    @property
    def fit_error(self) -> float:
        """The median |fitted / timed - 1| of the model alone over the timed shapes."""
        return float(np.median(np.abs(np.exp(-np.asarray(self.residuals)) - 1.0)))

    def describe(self) -> str:
        pm, pk, pn = self.pads
        return (
            f"{self.dtype}: {plural(len(self.shapes), 'timed shape')}, t = {self.t0 * 1e6:.2f} µs + "
            f"(M+{pm})(K+{pk})(N+{pn}) / {self.rate / 1e9:,.1f} GMAC/s, median fit error "
            f"{100 * self.fit_error:.0f}% before the correction towards the timings"
        )


def _relative_lsq(b: Any, a: Any) -> tuple[Any, Any]:
    """Per row of ``b``: ``t0, c >= 0`` minimising Σ (t0·a + c·b - 1)² (relative error of
    ``t0 + c·x`` against ``y`` with ``a = 1/y``, ``b = x/y``)."""
    saa, sab, sbb = np.sum(a * a), np.sum(b * a[None, :], axis=1), np.sum(b * b, axis=1)
    sa, sb = np.sum(a), np.sum(b, axis=1)
    det = saa * sbb - sab * sab
    with np.errstate(divide="ignore", invalid="ignore"):
        t0 = (sa * sbb - sb * sab) / det
        c = (saa * sb - sab * sa) / det
    only_c = ~(t0 >= 0) | ~(c > 0)
    t0 = np.where(only_c, 0.0, t0)
    c = np.where(only_c, sb / sbb, c)
    return t0, c


def fit_surface(
    source: SpeedSource,
    dtype: str,
    terms: Sequence[bulk.GemmTerm],
    on_timed: Callable[[int, int], None] | None = None,
) -> GemmSurface:
    """Time the :func:`design_points` of ``terms`` on ``source`` and fit their surface."""
    shapes = design_points(terms)
    if not shapes:
        raise ParamcalcError("no GEMM to time: every configuration was excluded before timing")
    return GemmSurface.fit(dtype, shapes, source.gemm_seconds(shapes, dtype, on_timed))


# --- the speed model over a grid --------------------------------------------------------------------


@dataclass(frozen=True)
class GridSpeed:
    """The predicted seconds of one call of every configuration of a grid, by part."""

    gemm_s: Any
    elementwise_s: Any
    dispatch_s: Any

    @property
    def seconds(self) -> Any:
        return self.gemm_s + self.elementwise_s + self.dispatch_s


def _probe(g: bulk.Grid, layers: int, dirs: int, projected: bool) -> RecurrentSpec:
    """The spec whose module's operator calls stand for a structure (the timed module's)."""
    from .base import timing_spec

    spec = RecurrentSpec(
        g.cell.name, 4, 4, num_layers=layers, bidirectional=dirs == 2, proj_size=2 if projected else 0
    )
    return timing_spec(spec)[0]


def dispatch_arrays(g: bulk.Grid, source: SpeedSource) -> tuple[Any, Any]:
    """Per configuration: the non-GEMM operator calls one call dispatches, and the seconds each
    costs (see the module docstring: recorded at one and two layers, linear in layers)."""
    s = bulk.sizes(g)
    dtype = g.workload.dtype
    calls = np.zeros(len(g), dtype=float)
    op_s = np.zeros(len(g), dtype=float)
    passes = 3 if g.workload.training else 1
    for projected in (False, True):
        for dirs in (1, 2):
            rows = ((s.p > 0) == projected) & (s.dirs == dirs)
            if not bool(np.any(rows)):
                continue
            one = source.dispatch(_probe(g, 1, dirs, projected), dtype)
            two = source.dispatch(_probe(g, 2, dirs, projected), dtype)
            layers = np.asarray(s.nl[rows], dtype=float)
            once = one[0] + (layers - 1) * (two[0] - one[0])
            per_step = one[1] + (layers - 1) * (two[1] - one[1])
            calls[rows] = passes * (np.maximum(once, 0) + s.t * np.maximum(per_step, 0))
            op_s[rows] = source.op_seconds(_probe(g, 1, 1, projected), dtype)
    return calls, op_s


def predict_grid(g: bulk.Grid, surface: GemmSurface, source: SpeedSource) -> GridSpeed:
    """The speed model (:mod:`paramcalc.timing.predict`) of every configuration of ``g``, its GEMMs
    read off ``surface``."""
    gemm = np.zeros(len(g), dtype=float)
    for t in bulk.gemm_terms(g):
        count = np.asarray(t.count, dtype=float)
        if bool(np.any(count > 0)):
            gemm += count * surface(np.maximum(t.m, 1), np.maximum(t.k, 1), np.maximum(t.n, 1))
    calls, op_s = dispatch_arrays(g, source)
    probe = _probe(g, 1, 1, False)
    if runs_once(probe):  # a scan's work is measured on its module, per unit-step
        s = bulk.sizes(g)
        per = source.scan_seconds(probe, g.workload.dtype, g.workload.training)
        elementwise = per * np.asarray(s.h * s.nl * s.dirs, dtype=float) * s.n
    else:
        elementwise = np.asarray(bulk.elementwise_bytes(g), dtype=float) / source.copy_bandwidth()
    return GridSpeed(gemm, elementwise, calls * op_s)


def tokens_per_s(tokens: int, seconds: Any) -> Any:
    """Tokens of the workload per predicted second."""
    return tokens / np.asarray(seconds, dtype=float)
