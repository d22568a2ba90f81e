"""Cross-check the cost model against PyTorch's ``FlopCounterMode`` and torchinfo (torch edge).

What ``torch.utils.flop_counter.FlopCounterMode`` sees of a recurrent module (torch 2.13):

* It counts only matrix products (``aten.mm``/``aten.addmm`` at ``2·M·N·K`` FLOPs; the bias
  of ``addmm`` is not counted), so it is compared with ``2 × our GEMM MACs``.
* PyTorch's native RNN/GRU/LSTM decompose into ``addmm``/``mm`` per step, cells too: exact.
* On CPU, ``nn.LSTM`` without projection and with unpacked input runs oneDNN's fused kernel,
  which hides its matmuls (the counter reports 0); on CUDA, cuDNN's fused RNN kernels hide
  them the same way. So the check runs on the ``meta`` device by default (no data, no fused
  kernels), and on ``cpu``/``cuda`` it disables oneDNN and cuDNN unless ``fused=True``. Where
  the counter sees no matmul at all the result is *not observable*, never 0.
* Training: forward and backward run under the counter; its matmul FLOPs are compared with
  our ``backward="autograd"`` rule (see :mod:`paramcalc.core.costmodel`).
* Bounded work: every step of a recurrence runs the same GEMMs on ``B`` rows, so the counts
  are ``B`` times an affine function of the sequence length. Up to :data:`DIRECT_STEPS` steps
  and :data:`DIRECT_TOKENS` tokens the module runs the whole workload; beyond, it runs
  ``(B, T) = (1, 2), (1, 3), (1, 4), (2, 2)``, checks that the counts lie on one line in ``T``
  and double with ``B``, and extrapolates (exact, and said in the notes). A larger packed batch
  is refused. On ``cpu`` and ``cuda`` the memory of what runs is checked first.

torchinfo's mult-adds are reported beside ours, with the rule that produces them (checked by
the tests): torchinfo multiplies *every* parameter, biases included, by the product of the first
two dimensions of the layer's output. For a batched ``(T, B, ·)`` input that is our GEMM MACs
plus one per bias element and token; for a packed batch (output data ``(tokens, D·H_out)``),
unbatched input (``(T, D·H_out)``) and cells (``(B, H)`` per call) the second dimension is a
feature size, so it over-counts by that factor.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from ..bridge.build import build_module, takes_packed, torch_equivalent
from ..bridge.devices import check_run_memory, oom_as_error, resolve_device
from ..bridge.driver import Case, make_case
from ..core.coerce import as_spec
from ..core.costmodel import cost
from ..core.params import total_params
from ..core.spec import RecurrentSpec
from ..core.workload import Workload
from ..errors import ParamcalcError
from ..results.base import Result, Status
from ..results.table import Column, Table

#: Workloads up to this many steps and tokens run whole; larger ones are extrapolated.
DIRECT_STEPS = 64
DIRECT_TOKENS = 4096

TORCHINFO_RULE = (
    "torchinfo multiplies every parameter, biases included, by the first two dimensions of the "
    "layer's output: for batched (T, B) input that is our GEMM MACs + 1 per bias element per token; "
    "for packed input (tokens, D·H_out), unbatched input (T, D·H_out) and cells (B, H) per call "
    "the second dimension is a feature size, so it over-counts by that factor"
)

FLOP_COLUMNS = (
    Column("check", "str"),
    Column("ours"),
    Column("reference"),
    Column("source", "str"),
    Column("status", "str"),
)


@dataclass(frozen=True, repr=False)
class FlopCheck(Result):
    """Our matmul FLOPs beside FlopCounterMode's (and torchinfo's mult-adds) for one workload."""

    VIEWS = ("checks",)

    spec: RecurrentSpec
    workload: Workload
    device: str
    fused: bool
    ours_forward: int
    counter_forward: int | None  # None: the counter saw no matmul (not observable)
    ours_training: int | None  # forward + backward, autograd rule; None in inference mode
    counter_training: int | None
    counter_ops: dict[str, int]
    ours_macs: int
    ours_macs_with_bias: int
    torchinfo_mult_adds: int | None
    torchinfo_expected: int | None
    torchinfo_error: str = ""
    extrapolated_from: tuple[int, ...] = field(default=())

    @property
    def observable(self) -> bool:
        return self.counter_forward is not None

    @property
    def ok(self) -> bool | None:
        """True: every observable figure matches; False: a mismatch; None: not observable."""
        if not self.observable:
            return None
        if self.counter_forward != self.ours_forward:
            return False
        if self.ours_training is not None and self.counter_training is not None:
            return self.ours_training == self.counter_training
        return True

    @property
    def status(self) -> Status:
        return {True: Status.OK, False: Status.MISMATCH, None: Status.NOT_OBSERVABLE}[self.ok]

    def torchinfo_status(self) -> Status | None:
        ti = self.torchinfo_mult_adds
        if ti is None and not self.torchinfo_error:
            return None
        if ti is None:
            return Status.FAILED
        if ti == self.ours_macs:
            return Status.OK
        return Status.EXPECTED_DIFFERENCE if ti == self.torchinfo_expected else Status.UNEXPLAINED

    def _table(self, view: str) -> Table:
        def st(ours: int | None, theirs: int | None) -> str:
            if theirs is None:
                return str(Status.NOT_OBSERVABLE)
            return str(Status.OK if ours == theirs else Status.MISMATCH)

        where = f"FlopCounterMode on {self.device}" + (" (fused kernels on)" if self.fused else "")
        rows: list[tuple[Any, ...]] = [
            (
                "forward matmul FLOPs",
                self.ours_forward,
                self.counter_forward,
                where,
                st(self.ours_forward, self.counter_forward),
            )
        ]
        if self.ours_training is not None:
            rows.append(
                (
                    "forward + backward matmul FLOPs (autograd rule)",
                    self.ours_training,
                    self.counter_training,
                    where,
                    st(self.ours_training, self.counter_training),
                )
            )
        ti_status = self.torchinfo_status()
        if ti_status is not None:
            rows.append(
                (
                    "GEMM MACs vs torchinfo mult-adds",
                    self.ours_macs,
                    self.torchinfo_mult_adds,
                    "torchinfo.summary",
                    ti_status.value,
                )
            )
        return Table(FLOP_COLUMNS, tuple(rows))

    def title(self) -> str:
        return f"flop check: {self.spec.describe()} [{self.workload.describe()}] on {self.device}"

    def headline(self) -> str:
        return f"{self.spec.describe()} on {self.device}: {self.status.value}"

    def notes(self) -> list[str]:
        """Lines explaining the comparison."""
        lines = [
            "FlopCounterMode counts matmuls only (aten.mm/addmm: 2·M·N·K), so it is compared with "
            "2 × our GEMM MACs; the module ran in fp32 (FLOP counts do not depend on the dtype)"
        ]
        if self.extrapolated_from:
            lines.append(
                "the module ran B = 1 with T = 2, 3, 4 and B = 2 with T = 2: the counts lie on one line in T "
                "and double with B (every step runs the same GEMMs on B rows), so they were extrapolated "
                f"exactly to B = {self.workload.batch:,}, T = {self.workload.seq_len:,}; "
                "torchinfo was not run"
            )
        if not self.observable:
            lines.append(
                f"{Status.NOT_OBSERVABLE.value}: the counter saw no matmul on {self.device}; fused "
                "oneDNN/cuDNN kernels hide them: run on `device='meta'`, or without fused kernels"
            )
        if self.torchinfo_mult_adds is not None:
            lines.append(
                f"torchinfo's rule predicts {self.torchinfo_expected:,} (ours + one MAC per bias element "
                f"and token: {self.ours_macs_with_bias:,}): {TORCHINFO_RULE}"
            )
        if self.torchinfo_error:
            lines.append(f"torchinfo failed: {self.torchinfo_error}")
        return lines

    def meta(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "fused": self.fused,
            "status": self.status.value,
            "ours_forward": self.ours_forward,
            "counter_forward": self.counter_forward,
            "ours_training": self.ours_training,
            "counter_training": self.counter_training,
            "counter_ops": self.counter_ops,
            "ours_macs": self.ours_macs,
            "torchinfo_mult_adds": self.torchinfo_mult_adds,
            "torchinfo_expected": self.torchinfo_expected,
            "torchinfo_rule": TORCHINFO_RULE,
            "extrapolated_from": list(self.extrapolated_from),
        }

    def to_dict(self) -> dict[str, Any]:
        return self.meta()


# --- running the module ---------------------------------------------------------------------


def _count(fn: Callable[[], Any]) -> dict[str, int]:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}


@contextlib.contextmanager
def _no_fused(enabled: bool) -> Iterator[None]:
    """Disable oneDNN and cuDNN (their fused RNN kernels hide matmuls) unless ``enabled``."""
    import torch

    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")
        if not enabled:
            stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
            stack.enter_context(torch.backends.cudnn.flags(enabled=False))
        yield


def torchinfo_expected(spec: RecurrentSpec, wl: Workload) -> int:
    """What torchinfo reports, by its rule: all parameters × output.shape[0] × output.shape[1]."""
    params = total_params(torch_equivalent(spec))
    if spec.cell_type.single_step:
        # one call per step, output (b_t, H) each
        return params * sum(wl.step_batch(t) * spec.hidden_size for t in range(wl.steps))
    if wl.lengths is not None and takes_packed(spec):  # packed output (tokens, D·H_out)
        return params * wl.tokens * spec.stack_output_size
    return params * wl.seq_len * wl.batch


def _torchinfo(case: Case) -> int:
    import torch
    import torchinfo
    from torch import nn

    class _Wrap(nn.Module):
        """torchinfo cannot take a PackedSequence or a step loop as input: wrap the driver."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> Any:
            return case.objective()

    x = case.inputs.data if hasattr(case.inputs, "batch_sizes") else case.inputs
    summary = torchinfo.summary(_Wrap(case.module), input_data=[x], verbose=0, device=x.device)
    return int(summary.total_mult_adds)


def _counts(case: Case, train: bool) -> tuple[dict[str, int], dict[str, int] | None]:
    import torch

    with torch.no_grad():
        fwd = _count(case.forward)
    back = _count(lambda: case.objective().backward()) if train else None
    return fwd, back


def flop_check(
    spec: RecurrentSpec,
    workload: Workload | None = None,
    *,
    device: str = "meta",
    fused: bool = False,
    with_torchinfo: bool = True,
) -> FlopCheck:
    """Run ``spec``'s module on ``workload`` under ``FlopCounterMode`` and compare.

    The module is built in fp32 (FLOP counts do not depend on the dtype; int8 RNNs cannot be
    built). A Keras spec is built with PyTorch's names and the same layout: its weight shapes,
    hence its matmul FLOPs, are the same.
    """
    import torch

    spec = as_spec(spec, "flop_check")
    wl = workload if workload is not None else Workload()
    if not isinstance(wl, Workload):
        raise ParamcalcError(f"flop_check needs a Workload, got {type(wl).__name__}")
    dev = resolve_device(device)
    fp32 = replace(wl, dtype="fp32")
    direct = wl.steps <= DIRECT_STEPS and wl.tokens <= DIRECT_TOKENS
    if not direct and wl.lengths is not None:
        raise ParamcalcError(
            f"`flop_check` runs a packed batch of at most {DIRECT_STEPS} steps and {DIRECT_TOKENS:,} tokens "
            f"(this one has {wl.steps:,} and {wl.tokens:,}); the cost model's count stands on its own, "
            "or check a smaller batch"
        )
    points = ((1, 2), (1, 3), (1, 4), (2, 2))
    runs_on = [fp32] if direct else [replace(fp32, batch=b, seq_len=t) for b, t in points]
    if dev.type != "meta":
        for w in runs_on:
            check_run_memory(spec, w, dev, "the flop check", fused=fused)
    ours = cost(spec, wl, bias_ops=False, elementwise=False, backward="autograd")
    module = build_module(spec, dev, torch.float32)
    with _no_fused(fused), oom_as_error("running the flop check", dev):
        counted = _measure(module, spec, wl, runs_on, dev, with_torchinfo and direct)
    fwd_total = sum(counted.forward.values())
    train_total = sum(counted.training.values()) if counted.training is not None else None
    bias = sum(lc.bias_ops for lc in ours.layers) * wl.tokens
    show_ti = with_torchinfo and direct
    return FlopCheck(
        spec=spec,
        workload=wl,
        device=str(dev),
        fused=fused,
        ours_forward=2 * ours.macs,
        counter_forward=fwd_total if fwd_total > 0 else None,
        ours_training=ours.flops if wl.training else None,
        counter_training=train_total if train_total else None,
        counter_ops=counted.forward,
        ours_macs=ours.macs,
        ours_macs_with_bias=ours.macs + bias,
        torchinfo_mult_adds=counted.torchinfo,
        torchinfo_expected=torchinfo_expected(spec, wl) if show_ti else None,
        torchinfo_error=" ".join(counted.torchinfo_error.split())[:200],
        extrapolated_from=counted.extrapolated_from,
    )


class _Counted(NamedTuple):
    """What ``FlopCounterMode`` (and torchinfo) counted, per operator."""

    forward: dict[str, int]
    training: dict[str, int] | None
    torchinfo: int | None = None
    torchinfo_error: str = ""
    extrapolated_from: tuple[int, ...] = ()


def _measure(
    module: Any, spec: RecurrentSpec, wl: Workload, runs_on: list[Workload], dev: Any, with_torchinfo: bool
) -> _Counted:
    """Count ``module``'s operators on ``runs_on``: the workload itself (one run), or the small
    workloads whose counts extrapolate to it (see :func:`_extrapolate`)."""
    import torch

    if len(runs_on) > 1:
        runs = [
            _counts(make_case(spec, w, dev, dtype=torch.float32, module=module), wl.training) for w in runs_on
        ]
        fwd = _extrapolate([r[0] for r in runs], wl.batch, wl.seq_len)
        train = _extrapolate([r[1] or {} for r in runs], wl.batch, wl.seq_len) if wl.training else None
        return _Counted(fwd, train, extrapolated_from=(2, 3, 4))
    case = make_case(spec, runs_on[0], dev, dtype=torch.float32, module=module)
    fwd_ops, train_ops = _counts(case, wl.training)
    if not with_torchinfo:
        return _Counted(fwd_ops, train_ops)
    try:
        with torch.no_grad():
            return _Counted(fwd_ops, train_ops, _torchinfo(case))
    except Exception as exc:  # torchinfo is a comparison, never fatal
        return _Counted(fwd_ops, train_ops, torchinfo_error=f"{type(exc).__name__}: {exc}")


def _extrapolate(counts: list[dict[str, int]], batch: int, steps: int) -> dict[str, int]:
    """Counts at ``(B, T) = (1, 2), (1, 3), (1, 4), (2, 2)`` -> the count at ``(batch, steps)``.

    Per operator: affine in ``T`` (three points on one line) and proportional to ``B`` (the
    ``B = 2`` count is twice the ``B = 1`` one), else a one-line refusal.
    """
    keys = sorted({k for c in counts for k in c})
    out: dict[str, int] = {}
    for k in keys:
        t2, t3, t4, b2 = (c.get(k, 0) for c in counts)
        if t4 - t3 != t3 - t2 or b2 != 2 * t2:
            raise ParamcalcError(
                f"the flop counts of {k} are not B times an affine function of T ({t2}, {t3}, {t4} at B=1, "
                f"T=2..4; {b2} at B=2, T=2): cannot extrapolate; use at most {DIRECT_STEPS} steps and "
                f"{DIRECT_TOKENS:,} tokens"
            )
        out[k] = batch * (t2 + (t3 - t2) * (steps - 2))
    return out


__all__ = ["DIRECT_STEPS", "TORCHINFO_RULE", "FlopCheck", "flop_check", "torchinfo_expected"]
