"""What bench, predict and the GEMM cache share: the bottom of :mod:`paramcalc.timing`.

The device clock (:func:`timer_for`), torch's thread control (:func:`num_threads`), the checks of
the timing arguments every entry point takes, torch.utils.benchmark's noise thresholds, and
which module stands in for a spec when it is timed (:func:`timing_spec`). Nothing here imports
the other timing modules, so :mod:`~paramcalc.timing.benchmark`, :mod:`~paramcalc.timing.predict`
and :mod:`~paramcalc.timing.gemm` all import from it and never from each other's insides.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..bridge.build import is_torch_native, module_label, reference_kind, torch_equivalent
from ..bridge.devices import cpu_count
from ..core.spec import RecurrentSpec
from ..core.workload import Workload
from ..errors import ParamcalcError
from ..results.text import plural

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Most seconds of timing one measurement may be asked for.
MAX_MIN_RUN_TIME = 600.0


def noise_thresholds() -> tuple[float, float]:
    """torch.utils.benchmark's IQR/median thresholds: a ``Measurement`` warns from the first
    ("could indicate system fluctuation") and calls it gross from the second ("suggests
    significant environmental influence")."""
    from torch.utils.benchmark.utils import common

    return (
        float(getattr(common, "_IQR_WARN_THRESHOLD", 0.1)),
        float(getattr(common, "_IQR_GROSS_WARN_THRESHOLD", 0.25)),
    )


def num_threads(n: int) -> contextlib.AbstractContextManager[None]:
    """torch's own thread control for a block (``torch.utils.benchmark``'s ``set_torch_threads``)."""
    from torch.utils.benchmark import set_torch_threads

    return set_torch_threads(n)


def check_threads(threads: Any) -> int | None:
    """``threads`` if it is ``None`` or a count within this machine's CPUs; else one line."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ParamcalcError(f"threads must be a positive integer, got {threads!r}")
    n = cpu_count()
    if threads > n:
        raise ParamcalcError(f"threads must be at most {n} (the CPUs this process may use), got {threads:,}")
    return threads


def check_min_run_time(seconds: Any) -> float:
    """``seconds`` as a float if it is in (0, :data:`MAX_MIN_RUN_TIME`]; else one line."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not 0 < seconds <= MAX_MIN_RUN_TIME
        or seconds != seconds
    ):
        raise ParamcalcError(f"min_run_time must be in (0, {MAX_MIN_RUN_TIME:g}] seconds, got {seconds!r}")
    return float(seconds)


def timer_for(dev: torch.device) -> Callable[[], float]:
    """A clock that first waits for the device's queued work (CUDA, MPS)."""
    import torch

    if dev.type == "cuda":

        def cuda_timer() -> float:
            torch.cuda.synchronize(dev)
            return time.perf_counter()

        return cuda_timer
    if dev.type == "mps":

        def mps_timer() -> float:
            torch.mps.synchronize()
            return time.perf_counter()

        return mps_timer
    return time.perf_counter


def timing_spec(spec: RecurrentSpec) -> tuple[RecurrentSpec, str]:
    """The spec whose module is timed for ``spec``, and a note when it is not ``spec`` itself."""
    target = torch_equivalent(spec)
    if is_torch_native(target):
        return target, ""
    ct = spec.cell_type
    if spec.bias and spec.bias_vectors == 1 and ct.torch.nn_class and 2 in ct.bias_vectors_allowed:
        twin = target.replace(bias_vectors=2)
        if is_torch_native(twin):
            return twin, (
                f"timed as torch.nn.{twin.cell_type.torch.nn_class} with two bias vectors per gate block: "
                "torch has no one-bias module, and the second vector is one fused add per gate element"
            )
    kind = reference_kind(target)
    how = f" (a {kind})" if kind and kind != "own module" else ""
    return target, f"timed as {module_label(target)}{how}: a correctness reference, not an optimised kernel"


class TimedRun(Protocol):
    """What a timed or predicted run tells about itself (``BenchResult``, ``PredictResult``)."""

    @property
    def spec(self) -> RecurrentSpec: ...
    @property
    def workload(self) -> Workload: ...
    @property
    def device(self) -> str: ...
    @property
    def device_name(self) -> str: ...
    @property
    def threads(self) -> int: ...
    @property
    def torch_version(self) -> str: ...


def environment(r: TimedRun) -> dict[str, Any]:
    """Where a run happened: device, device name, threads, torch (the ``runs`` JSON's fields)."""
    return {"device": r.device, "device_name": r.device_name, "threads": r.threads, "torch": r.torch_version}


def timed_context(r: TimedRun) -> list[tuple[str, str]]:
    """The document context of a timed or predicted run: spec, workload, device, torch."""
    return [
        ("spec", r.spec.describe()),
        ("workload", r.workload.describe()),
        ("device", f"{r.device} ({r.device_name}), {plural(r.threads, 'thread')}"),
        ("torch", r.torch_version),
    ]
