"""The one driver that runs a spec's module over a workload (bench, flop check, dtype probes).

A :class:`Case` holds a built module and its seeded input, prepared the way the cell's torch
binding says the module runs (:attr:`paramcalc.core.cells.TorchBinding.runner`):

* ``stack``: ``module(x)`` on a ``(T, B, d)`` tensor; when the workload has per-sequence
  lengths, ``module(packed)`` on a ``PackedSequence`` (packed once, outside anything timed) for
  ``torch.nn`` and paramcalc's own modules (:func:`~paramcalc.bridge.build.takes_packed`), and
  ``module(x, lengths)`` for a registered cell's module: ``x`` padded ``(T, B, d)`` with the
  sequences sorted longest first, ``lengths`` a CPU int64 tensor ``(B,)`` (so the sequences
  still running at step ``t`` are the first ``(lengths > t).sum()`` rows);
* ``cell``: one call per step with the state carried by the driver; with lengths the batch is
  sorted longest first and step ``t`` runs only the sequences still running, so a packed batch
  runs exactly the real tokens the cost model counts (``Workload.tokens``).

``Case.forward()`` is one forward pass; ``Case.train_step()`` is ``zero_grad`` + forward +
backward of the summed output. :func:`kernel_ops` records which aten operators a forward
dispatches to (the kernel path: cuDNN, oneDNN or native) with torch's lightweight autograd
profiler, which needs no ``torch._dynamo``. :func:`dispatched_ops` counts the operator calls of
a forward that are not GEMMs, per sequence and per step, for the speed model's dispatch term.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core import memo
from ..core.cells import reference_label
from ..core.spec import RecurrentSpec
from ..core.workload import Workload
from ..errors import ParamcalcError
from .build import build_module, takes_packed
from .devices import resolve_device, torch_dtype

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

#: aten operator seen during a forward -> the kernel path it belongs to (first match wins).
KERNEL_PATHS: dict[str, str] = {
    "_cudnn_rnn": "cuDNN",
    "miopen_rnn": "MIOpen",
    "mkldnn_rnn_layer": "oneDNN",
    "mkldnn_rnn": "oneDNN",
    "_lstm_mps": "MPS",
    "_thnn_fused_lstm_cell": "native fused cell",
    "_thnn_fused_gru_cell": "native fused cell",
}
#: ATen's own matmul + pointwise decomposition (no fused RNN kernel).
NATIVE_PATH = "native"
#: paramcalc's reference module: the cell's equations, step by step, in Python.
REFERENCE_PATH = "reference"


@dataclass
class Case:
    """A module, its prepared input and how to run it (see the module docstring)."""

    module: nn.Module
    spec: RecurrentSpec
    workload: Workload
    inputs: Any  # a (T, B, d) tensor or a PackedSequence
    step_batches: tuple[int, ...]  # rows per step (cells); the batch for every step otherwise
    lengths: Any = None  # the CPU int64 lengths a registered stack module gets beside padded input

    @property
    def runner(self) -> str:
        return self.spec.cell_type.torch.runner

    def forward(self) -> Any:
        """One forward pass; returns the output tensor(s) whose sum is the training objective."""
        if self.runner == "stack":
            out = (
                self.module(self.inputs)[0]
                if self.lengths is None
                else self.module(self.inputs, self.lengths)[0]
            )
            return out.data if hasattr(out, "batch_sizes") else out
        x, state, outs = self.inputs, None, []
        for t, b in enumerate(self.step_batches):
            if state is not None and b < _rows(state):
                state = tuple(s[:b] for s in state) if isinstance(state, tuple) else state[:b]
            state = self.module(x[t, :b], state)
            outs.append(state[0] if isinstance(state, tuple) else state)
        return outs

    def objective(self) -> Any:
        out = self.forward()
        if isinstance(out, list):
            total = out[0].float().sum()
            for o in out[1:]:
                total = total + o.float().sum()
            return total
        return out.float().sum()

    def train_step(self) -> None:
        self.module.zero_grad(set_to_none=True)
        self.objective().backward()

    def first(self, steps: int) -> Case:
        """The same module on the first ``steps`` steps of the input (a padded input only)."""
        lengths = None if self.lengths is None else self.lengths.clamp(max=steps)
        return Case(
            self.module, self.spec, self.workload, self.inputs[:steps], self.step_batches[:steps], lengths
        )

    def callable(self, train: bool) -> Callable[[], Any]:
        return self.train_step if train else self.forward

    def resident_bytes(self) -> int:
        """Bytes the case already holds before a call: parameters, buffers and the input."""
        tensors = [*self.module.parameters(), *self.module.buffers()]
        data = getattr(self.inputs, "data", self.inputs)
        tensors.append(data)
        seen: dict[int, int] = {}
        for t in tensors:
            if t.device.type == "meta":
                continue
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        return sum(seen.values())


def flatten_weights(module: nn.Module) -> None:
    """Put the weights of every ``torch.nn`` RNN in ``module`` into the one buffer cuDNN runs
    from, as they are now (device and dtype): call this after any cast, or each call copies them.

    ``flatten_parameters()`` does it for fp32 and fp16; it skips bf16 (cuDNN's RNN runs bf16,
    but ``torch.backends.cudnn.CUDNN_TENSOR_DTYPES`` lacks it), so each bf16 call would copy the
    weights into a fresh buffer and warn ("not part of single contiguous chunk of memory"):
    here bf16 weights are flattened by the same ATen operator ``flatten_parameters`` calls. A
    no-op off CUDA or without cuDNN.
    """
    import torch
    from torch import nn

    for m in module.modules():
        if not isinstance(m, nn.RNNBase):
            continue
        m.flatten_parameters()
        weights = [w for w in m._flat_weights if isinstance(w, torch.Tensor)]
        if (
            len(weights) != len(m._flat_weights_names)
            or not weights
            or not all(w.is_cuda and w.dtype == torch.bfloat16 for w in weights)
            or len({w.untyped_storage().data_ptr() for w in weights}) == 1  # flat already
            or len({w.data_ptr() for w in weights}) != len(weights)  # aliased: torch's own rule
            or not (torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled)  # type: ignore[no-untyped-call]
            or not torch._use_cudnn_rnn_flatten_weight()
        ):
            continue
        from torch.backends.cudnn import rnn

        with torch.cuda.device_of(weights[0]), torch.no_grad():  # type: ignore[no-untyped-call]
            torch._cudnn_rnn_flatten_weight(
                weights,  # the module's own tensors: flattened in place, as flatten_parameters does
                (4 if m.bias else 2) + (1 if m.proj_size > 0 else 0),
                m.input_size,
                rnn.get_cudnn_mode(m.mode),  # type: ignore[no-untyped-call]
                m.hidden_size,
                m.proj_size,
                m.num_layers,
                m.batch_first,
                bool(m.bidirectional),
            )


def _rows(state: Any) -> int:
    return int((state[0] if isinstance(state, tuple) else state).shape[0])


def make_case(
    spec: RecurrentSpec,
    workload: Workload,
    device: str | torch.device = "cpu",
    *,
    dtype: torch.dtype | None = None,
    seed: int = 0,
    module: nn.Module | None = None,
) -> Case:
    """Build (or take) the module and its seeded input: the same seed gives the same weights and data.

    ``dtype`` defaults to the workload's. The caller's global RNG state is left untouched.
    """
    import torch

    dev = resolve_device(device)
    dt = dtype if dtype is not None else torch_dtype(workload.dtype)
    steps, batch = workload.seq_len, workload.batch
    fork_devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices, device_type="cuda" if dev.type == "cuda" else "cpu"):
        torch.manual_seed(seed)
        if module is None:
            module = build_module(spec, dev, dt)
        flatten_weights(module)
        if dev.type == "meta":
            x = torch.empty(steps, batch, spec.input_size, device=dev, dtype=dt)
        else:
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn(steps, batch, spec.input_size, generator=gen, dtype=torch.float32)
            x = x.to(device=dev, dtype=dt)
    step_batches = tuple(workload.step_batch(t) for t in range(workload.steps))
    lengths = workload.lengths
    if lengths is None:
        return Case(module, spec, workload, x, step_batches)
    if spec.cell_type.torch.runner == "stack" and takes_packed(spec):
        from torch.nn.utils.rnn import pack_padded_sequence

        packed = pack_padded_sequence(x, torch.tensor(lengths, dtype=torch.int64), enforce_sorted=False)
        return Case(module, spec, workload, packed, step_batches)
    # sequences sorted longest first, so step t runs rows [0, b_t)
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    x = x[:, order]
    if spec.cell_type.torch.runner == "cell":
        return Case(module, spec, workload, x, step_batches)
    _check_takes_lengths(spec, module)
    ordered = torch.tensor([lengths[i] for i in order], dtype=torch.int64)
    return Case(module, spec, workload, x, step_batches, ordered)


def _check_takes_lengths(spec: RecurrentSpec, module: nn.Module) -> None:
    """A registered stack module with lengths is called ``forward(x, lengths)``: say so in one line
    if its ``forward`` cannot take them (rather than a ``TypeError`` from inside torch)."""
    import inspect

    try:
        inspect.signature(module.forward).bind(None, None)
    except TypeError:
        ct = spec.cell_type
        raise ParamcalcError(
            f"cell {ct.name}: its module {reference_label(ct.torch.reference)} takes no sequence lengths: "
            "with lengths a stack module is called as forward(x, lengths), x padded (T, B, d) with the "
            "longest sequence first (see docs/extending.md), or its TorchBinding says packed_input=True"
        ) from None
    except ValueError:  # no signature to read: let the call decide
        return


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    """Silence the C++ profiler's own log lines on file descriptor 2 while it runs."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # pragma: no cover - no fd 2
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def kernel_ops(case: Case, train: bool) -> tuple[str, ...]:
    """The aten operators one forward dispatches to (a one-step forward for long sequences).

    Recorded outside ``inference_mode`` (which hides the decomposition of ``aten::lstm``) with
    the same module, device, dtype and batch, so the same kernel is chosen.
    """

    probe = case
    if not hasattr(case.inputs, "batch_sizes") and case.workload.seq_len > 1:
        probe = case.first(1)  # a packed batch is recorded whole: its first step can take another path
    ops: list[str] = []
    for e in _record(probe, train):
        name = str(e.name).removeprefix("aten::")
        if name not in ops:
            ops.append(name)
    return tuple(ops)


def _record(case: Case, train: bool = False) -> Any:
    """The events torch's lightweight autograd profiler records during one forward of ``case``
    (its C++ log lines silenced)."""
    import torch

    grad = torch.enable_grad() if train else torch.no_grad()
    with grad, _quiet_fd2(), torch.autograd.profiler.profile(use_kineto=False) as prof:
        case.forward()
    return prof.function_events


#: aten operators whose time the speed model's GEMM timings already hold (torch.mm with out=).
GEMM_OPS = frozenset({"addmm", "mm", "bmm", "baddbmm", "addmv", "mv", "matmul", "linear", "addbmm"})


def tiny_spec(spec: RecurrentSpec) -> RecurrentSpec:
    """``spec`` with 4 input features and 4 hidden units (a projection of 2): the same operator
    sequence per step, at sizes where every call costs only its dispatch."""
    proj = min(spec.proj_size, 2) if spec.proj_size else 0
    return spec.replace(input_size=4, hidden_size=4, proj_size=proj)


def step_case(spec: RecurrentSpec, dtype: str, device: str | torch.device, steps: int) -> Case:
    """A :class:`Case` of :func:`tiny_spec`, batch 2, ``steps`` steps (to count and time dispatch)."""
    return make_case(tiny_spec(spec), Workload(batch=2, seq_len=steps, dtype=dtype), device)


def dispatched_ops(spec: RecurrentSpec, dtype: str, device: str | torch.device) -> tuple[int, int, int]:
    """Operator calls of one forward of ``spec``: ``(once, per_step, all_per_step)``.

    A forward of ``T`` steps dispatches ``once + T · per_step`` calls that are not GEMMs (views,
    pointwise ops, splits, fused-RNN kernels; each costs the device's per-call overhead however
    small its tensors) and ``all_per_step`` calls per step counting the GEMMs too. A call is one
    the caller's code makes (a Python module's ``forward``, or ATen's recurrent entry point such
    as ``aten::gru`` for a ``torch.nn`` stack); what a call runs inside is its own cost. Recorded
    with torch's lightweight autograd profiler (no ``torch._dynamo``) on :func:`tiny_spec` (the
    call sequence does not depend on the sizes), one step and two, in ``dtype`` on ``device``,
    so the kernel path is the one a real run takes: oneDNN's and cuDNN's fused layers make no
    call per step, ATen's native GRU layer a dozen. Memoised per spec shape, dtype and device.
    """
    from .devices import resolve_device

    return _dispatched_ops(tiny_spec(spec), dtype, str(resolve_device(device)))


#: ATen's recurrent entry points: their own calls are what a step costs (see :func:`dispatched_ops`).
RNN_DRIVERS = frozenset(
    {"lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell"}
)


@memo.memoise(maxsize=256)
def _dispatched_ops(spec: RecurrentSpec, dtype: str, device: str) -> tuple[int, int, int]:
    case = step_case(spec, dtype, device, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "LSTM with projections is not supported with oneDNN"
        (ops1, gemms1), (ops2, gemms2) = (_calls(_record(case.first(steps))) for steps in (1, 2))
    per_step = max(ops2 - ops1, 0)
    return max(ops1 - per_step, 0), per_step, per_step + max(gemms2 - gemms1, 0)


def _calls(events: Any) -> tuple[int, int]:
    """(non-GEMM, GEMM) calls among the recorded events: the calls the caller's code made (top
    level), with an ATen recurrent entry point replaced by the calls it made itself."""
    ops = gemms = 0
    for e in events:
        name = str(e.name).removeprefix("aten::")
        parent = e.cpu_parent
        top = parent is None or (
            parent.cpu_parent is None and str(parent.name).removeprefix("aten::") in RNN_DRIVERS
        )
        if not top or (parent is None and name in RNN_DRIVERS):
            continue
        if name in GEMM_OPS:
            gemms += 1
        else:
            ops += 1
    return ops, gemms


def kernel_path(ops: tuple[str, ...] | list[str], native: bool = True) -> str:
    """Name the kernel path from the recorded operators (see :data:`KERNEL_PATHS`)."""
    for op, path in KERNEL_PATHS.items():
        if op in ops:
            return path
    return NATIVE_PATH if native else REFERENCE_PATH
