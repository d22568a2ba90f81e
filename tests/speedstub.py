"""A speed source without a device, for design searches in tests: every time comes from a formula
written here, and every timing asked for is counted (a search's timings are counted, never taken).

``expected_seconds`` is the GEMM-sequence speed model of ``paramcalc.timing.predict`` written out
for one spec from the cost model's GEMM list, with the stub's times: what a design search
should predict for that configuration (the stub's GEMM formula lies in the surface's family, so
the fitted surface reproduces it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import paramcalc as pc
from paramcalc.core.costmodel import cost
from paramcalc.timing.predict import gemm_calls

T0, PADS, RATE = 2e-6, (8, 2, 1), 2e10
BANDWIDTH, OP_S, SCAN_S = 1e10, 3e-6, 5e-8


def gemm_time(m: int, k: int, n: int) -> float:
    return T0 + (m + PADS[0]) * (k + PADS[1]) * (n + PADS[2]) / RATE


def dispatch(spec: pc.RecurrentSpec) -> tuple[int, int, int]:
    """Operator calls of one forward (linear in layers, as a module's are): a scan makes none per step."""
    units = spec.num_layers * spec.num_directions
    per_step = 0 if spec.cell_type.torch.scan else (2 + spec.gates) * units
    return 4 + 3 * units, per_step, per_step + units


class StubSpeed:
    """A :class:`paramcalc.timing.surface.SpeedSource` from formulas, counting its timings."""

    device, device_name, threads, torch_version = "cpu", "stub CPU", 1, "stub"

    def __init__(self, caps: dict[str, Any] | None = None) -> None:
        self.gemms: set[tuple[tuple[int, int, int], str]] = set()
        self.others: set[Any] = set()
        self.caps = caps or {"device_type": "cpu", "onednn": True, "onednn_bf16": False, "onednn_fp16": False}

    @property
    def timed(self) -> int:
        return len(self.gemms) + len(self.others)

    def gemm_seconds(
        self, shapes: Sequence[tuple[int, int, int]], dtype: str, on_timed: Callable[[int, int], None] | None
    ) -> list[float]:
        new = [s for s in dict.fromkeys(shapes) if (s, dtype) not in self.gemms]
        for i, s in enumerate(new, 1):
            self.gemms.add((s, dtype))
            if on_timed is not None:
                on_timed(i, len(new))
        return [gemm_time(*s) for s in shapes]

    def copy_bandwidth(self) -> float:
        self.others.add("copy")
        return BANDWIDTH

    def dispatch(self, spec: pc.RecurrentSpec, dtype: str) -> tuple[int, int, int]:
        return dispatch(spec)

    def op_seconds(self, spec: pc.RecurrentSpec, dtype: str) -> float:
        self.others.add(("op", spec.cell, spec.proj_size > 0, dtype))
        return OP_S

    def scan_seconds(self, spec: pc.RecurrentSpec, dtype: str, training: bool) -> float:
        self.others.add(("scan", spec.cell, dtype, training))
        return SCAN_S

    def capabilities(self) -> dict[str, Any]:
        return dict(self.caps)

    def notes(self) -> list[str]:
        return []


def expected_seconds(spec: pc.RecurrentSpec, wl: pc.Workload) -> float:
    """The speed model of ``spec`` on ``wl`` with the stub's times (see the module docstring)."""
    passes = 3 if wl.training else 1
    gemm = sum(g.calls * gemm_time(g.m, g.k, g.n) for g in gemm_calls(spec, wl))
    if spec.cell_type.torch.scan:
        elementwise = SCAN_S * spec.hidden_size * spec.num_layers * spec.num_directions * wl.tokens
    else:
        c = cost(spec, wl)
        elementwise = passes * (c.bias_ops + c.elementwise_ops) * 2 * wl.dtype_bytes / BANDWIDTH
    once, per_step, _ = dispatch(spec)
    return gemm + elementwise + passes * (once + wl.seq_len * per_step) * OP_S
