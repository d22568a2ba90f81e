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
  our ``backward="autograd"`` rule (see :mod:`paramcalc.cost`).

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .cost import Workload, cost
from .count import total_params
from .spec import RecurrentSpec
from .torch_bridge import build_module, resolve_device, torch_equivalent

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

NOT_OBSERVABLE = "not observable"

TORCHINFO_RULE = (
    "torchinfo multiplies every parameter, biases included, by the first two dimensions of the "
    "layer's output: for batched (T, B) input that is our GEMM MACs + 1 per bias element per token; "
    "for packed input (tokens, D·H_out), unbatched input (T, D·H_out) and cells (B, H) per call "
    "the second dimension is a feature size, so it over-counts by that factor"
)


@dataclass(frozen=True)
class FlopCheck:
    """Our matmul FLOPs beside FlopCounterMode's (and torchinfo's mult-adds) for one workload."""

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
    def status(self) -> str:
        return {True: "match", False: "MISMATCH", None: NOT_OBSERVABLE}[self.ok]

    def records(self) -> list[dict[str, Any]]:
        def st(ours: int | None, theirs: int | None) -> str:
            if theirs is None:
                return NOT_OBSERVABLE
            return "match" if ours == theirs else "MISMATCH"

        where = f"FlopCounterMode on {self.device}" + (" (fused kernels on)" if self.fused else "")
        rows: list[dict[str, Any]] = [
            {
                "check": "forward matmul FLOPs",
                "ours": self.ours_forward,
                "reference": self.counter_forward if self.observable else NOT_OBSERVABLE,
                "source": where,
                "status": st(self.ours_forward, self.counter_forward),
            }
        ]
        if self.ours_training is not None:
            rows.append(
                {
                    "check": "forward + backward matmul FLOPs (autograd rule)",
                    "ours": self.ours_training,
                    "reference": self.counter_training
                    if self.counter_training is not None
                    else NOT_OBSERVABLE,
                    "source": where,
                    "status": st(self.ours_training, self.counter_training),
                }
            )
        if self.torchinfo_mult_adds is not None or self.torchinfo_error:
            ti = self.torchinfo_mult_adds
            if ti is None:
                status = "failed"
            elif ti == self.ours_macs:
                status = "match"
            else:
                status = "expected difference" if ti == self.torchinfo_expected else "unexplained difference"
            rows.append(
                {
                    "check": "GEMM MACs vs torchinfo mult-adds",
                    "ours": self.ours_macs,
                    "reference": ti if ti is not None else f"error: {self.torchinfo_error}",
                    "source": "torchinfo.summary",
                    "status": status,
                }
            )
        return rows

    def notes(self) -> list[str]:
        """Lines explaining the comparison (for text output)."""
        lines = [
            "FlopCounterMode counts matmuls only (aten.mm/addmm: 2·M·N·K), so it is compared with "
            "2 × our GEMM MACs; the module ran in fp32 (FLOP counts do not depend on the dtype)"
        ]
        if not self.observable:
            lines.append(
                f"{NOT_OBSERVABLE}: the counter saw no matmul on {self.device}; fused oneDNN/cuDNN "
                "kernels hide them: run on --flop-device meta, or without fused kernels"
            )
        if self.torchinfo_mult_adds is not None:
            lines.append(
                f"torchinfo's rule predicts {self.torchinfo_expected:,} (ours + one MAC per bias element "
                f"and token: {self.ours_macs_with_bias:,}): {TORCHINFO_RULE}"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "fused": self.fused,
            "status": self.status,
            "ours_forward": self.ours_forward,
            "counter_forward": self.counter_forward,
            "ours_training": self.ours_training,
            "counter_training": self.counter_training,
            "counter_ops": self.counter_ops,
            "ours_macs": self.ours_macs,
            "torchinfo_mult_adds": self.torchinfo_mult_adds,
            "torchinfo_expected": self.torchinfo_expected,
            "torchinfo_rule": TORCHINFO_RULE,
        }


# --- running the module ---------------------------------------------------------------------


def _inputs(spec: RecurrentSpec, wl: Workload, dev: torch.device) -> torch.Tensor:
    import torch

    return torch.randn(wl.seq_len, wl.batch, spec.input_size, device=dev)


def _run(module: nn.Module, spec: RecurrentSpec, wl: Workload, x: torch.Tensor) -> torch.Tensor:
    """Forward ``x`` through ``module``; return a scalar to differentiate."""
    import torch

    if spec.cell_type.single_step:
        # a cell runs step by step; a packed batch shrinks as sequences end (rows sorted
        # longest first, which changes no count: the data is random)
        state: Any = None
        total = x.new_zeros(())
        for t in range(wl.steps):
            b = wl.step_batch(t)
            if state is not None and b < _state_rows(state):
                state = tuple(s[:b] for s in state) if isinstance(state, tuple) else state[:b]
            state = module(x[t, :b], state)
            h = state[0] if isinstance(state, tuple) else state
            total = total + h.sum()
        return total
    if wl.lengths is not None:
        from torch.nn.utils.rnn import pack_padded_sequence

        packed = pack_padded_sequence(x, torch.tensor(wl.lengths), enforce_sorted=False)
        return module(packed)[0].data.sum()
    return module(x)[0].sum()


def _state_rows(state: Any) -> int:
    return int((state[0] if isinstance(state, tuple) else state).shape[0])


def _count(fn: Any) -> dict[str, int]:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}


@contextlib.contextmanager
def _no_fused(enabled: bool) -> Any:
    """Disable oneDNN and cuDNN (their fused RNN kernels hide matmuls) unless ``enabled``."""
    import torch

    with contextlib.ExitStack() as stack:
        # torch warns about TF32 on Intel GPUs whenever the oneDNN flags are set: not our business
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
    if wl.lengths is not None:
        return params * wl.tokens * spec.num_directions * spec.output_size
    return params * wl.seq_len * wl.batch


def _torchinfo(module: nn.Module, spec: RecurrentSpec, wl: Workload, x: torch.Tensor) -> int:
    import torchinfo
    from torch import nn

    class _Wrap(nn.Module):
        """torchinfo cannot take a PackedSequence or a step loop as input: wrap the module."""

        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return _run(self.inner, spec, wl, x)

    summary = torchinfo.summary(_Wrap(module), input_data=[x], verbose=0, device=x.device)
    return int(summary.total_mult_adds)


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
    built). A Keras spec is built as its torch equivalent: its weight shapes, hence its matmul
    FLOPs, are the same.
    """
    import torch

    wl = workload if workload is not None else Workload()
    dev = resolve_device(device)
    module = build_module(spec, dev, torch.float32)
    x = _inputs(spec, wl, dev)

    ours = cost(spec, wl, bias_ops=False, elementwise=False, backward="autograd")
    ours_fwd = 2 * ours.macs
    with _no_fused(fused):
        with torch.no_grad():
            fwd_ops = _count(lambda: _run(module, spec, wl, x))
        train_ops: dict[str, int] | None = None
        if wl.training:
            train_ops = _count(lambda: _run(module, spec, wl, x).backward())
        ti: int | None = None
        ti_err = ""
        if with_torchinfo:
            try:
                with torch.no_grad():
                    ti = _torchinfo(module, spec, wl, x)
            except Exception as exc:  # torchinfo is a comparison, never fatal
                ti_err = f"{type(exc).__name__}: {exc}"
    fwd_total = sum(fwd_ops.values())
    observable = fwd_total > 0
    train_total = sum(train_ops.values()) if train_ops is not None else None
    bias = sum(lc.bias_ops for lc in ours.layers) * wl.tokens
    return FlopCheck(
        spec=spec,
        workload=wl,
        device=str(dev),
        fused=fused,
        ours_forward=ours_fwd,
        counter_forward=fwd_total if observable else None,
        ours_training=ours.flops if wl.training else None,
        counter_training=train_total if train_total else None,
        counter_ops=fwd_ops,
        ours_macs=ours.macs,
        ours_macs_with_bias=ours.macs + bias,
        torchinfo_mult_adds=ti,
        torchinfo_expected=torchinfo_expected(spec, wl) if with_torchinfo else None,
        torchinfo_error=" ".join(ti_err.split())[:200],
    )


__all__ = ["NOT_OBSERVABLE", "TORCHINFO_RULE", "FlopCheck", "flop_check", "torchinfo_expected"]
