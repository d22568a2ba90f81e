"""Memory a run needs: the peak a forward (inference) or forward+backward (training) holds.

Pure Python. This first version is the cost model's estimate (parameters, state, activations
kept for backward, the working set of the largest layer) plus the input and output tensors;
``bench``, ``compare --bench``, ``sweep --bench`` and ``cost --flop-check`` refuse a run by it.
"""

from __future__ import annotations

from .costmodel import cost
from .spec import RecurrentSpec
from .workload import Workload


def peak_bytes(spec: RecurrentSpec, workload: Workload) -> int:
    """Estimated peak bytes of one timed call (see the module docstring)."""
    c = cost(spec, workload)
    base = c.training_bytes if workload.training else c.inference_bytes
    nb = workload.dtype_bytes
    tokens_in = workload.seq_len * workload.batch * spec.input_size
    out = workload.tokens * spec.stack_output_size
    # the recurrent GEMM's operands of one step, as a reference GEMM would allocate them
    r, n = spec.output_size, spec.gates * spec.hidden_size
    gemm = workload.batch * r + r * n + workload.batch * n
    return int(base + (tokens_in + out + gemm) * nb)
