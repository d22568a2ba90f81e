"""The sLSTM block and the gated feed-forward of the ``xlstm`` package (NX-AI), against the
package's own modules: every tensor name and shape of random small blocks built on the meta
device, the CUDA backend's recurrent-kernel layout, FLOPs of one step against
``FlopCounterMode`` and the state a step and a forward return.

The package is not a dependency of paramcalc (``transformers`` would switch its ``xlstm`` model to
it when installed): these tests skip without it. To run them, put the pure-Python wheel on the path
without its dependencies (``pip install --no-deps --target DIR xlstm`` and ``PYTHONPATH=DIR``).
This file imports no ``transformers``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from paramcalc.core.blocks import get_block
from paramcalc.core.blocks.xlstm import package_ffn_width

xlstm = pytest.importorskip("xlstm", reason="the xlstm package (NX-AI) is not installed")

from xlstm.blocks.slstm.cell import sLSTMCell_cuda, sLSTMCellConfig  # noqa: E402

PROPERTY = settings(
    max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _package_block(d: int, heads: int, kernel: int, group_norm: bool, ffn: dict[str, Any] | None) -> Any:
    layer = xlstm.sLSTMLayerConfig(
        backend="vanilla",
        embedding_dim=d,
        num_heads=heads,
        conv1d_kernel_size=kernel,
        group_norm_weight=group_norm,
    )
    feedforward = None if ffn is None else xlstm.FeedForwardConfig(**ffn)
    config = xlstm.sLSTMBlockConfig(slstm=layer, feedforward=feedforward, _num_blocks=1, _block_idx=0)
    with torch.device("meta"):
        return xlstm.sLSTMBlock(config)


def _ours(d: int, heads: int, kernel: int, group_norm: bool, ffn: dict[str, Any] | None) -> list[Any]:
    sizes = {"d_model": d, "heads": heads, "head_dim": d // heads, "conv_kernel": kernel}
    blocks = [get_block("slstm").bind({**sizes, "group_norm_weight": int(group_norm), "cuda": 0})]
    if ffn is not None:
        width = package_ffn_width(d, ffn["proj_factor"], ffn["round_proj_up_to_multiple_of"])
        blocks.append(
            get_block("xlstm_gated_ffn").bind({"d_model": d, "ffn_dim": width, "use_bias": int(ffn["bias"])})
        )
    return blocks


@st.composite
def slstm_blocks(draw: st.DrawFn) -> tuple[int, int, int, bool, dict[str, Any] | None]:
    heads = draw(st.sampled_from([1, 2, 4]))
    d = heads * draw(st.integers(1, 12))
    ffn = draw(
        st.none()
        | st.fixed_dictionaries(
            {
                "proj_factor": st.sampled_from([1.0, 1.3, 2.0, 4.0]),
                "round_proj_up_to_multiple_of": st.sampled_from([1, 8, 64]),
                "bias": st.booleans(),
            }
        )
    )
    return d, heads, draw(st.integers(0, 5)), draw(st.booleans()), ffn


@pytest.mark.slow
def test_slstm_tensors_equal_the_package() -> None:
    """100 random sLSTM blocks (heads, widths, conv kernel or none, group-norm weight, with or
    without the feed-forward and its bias) built by the package on meta."""
    seen: list[Any] = []

    @PROPERTY
    @given(slstm_blocks())
    def check(case: tuple[int, int, int, bool, dict[str, Any] | None]) -> None:
        seen.append(case)
        package = _package_block(*case)
        ours = [(t.name, t.shape) for b in _ours(*case) for t in b.tensors()]
        assert ours == [(name, tuple(p.shape)) for name, p in package.named_parameters()]

    check()
    assert len(seen) >= 100


@pytest.mark.parametrize(("d", "heads"), [(8, 1), (12, 3), (64, 4)])
def test_cuda_backend_recurrent_kernel_layout(d: int, heads: int) -> None:
    """The CUDA backend stores the recurrent kernel as (heads, head_dim, 4·head_dim); built without
    compiling its kernels."""
    with torch.device("meta"):
        cell = sLSTMCell_cuda(sLSTMCellConfig(hidden_size=d, num_heads=heads), skip_backend_init=True)
    ours = get_block("slstm").bind({"d_model": d, "heads": heads, "head_dim": d // heads, "cuda": 1})
    shapes = {t.name: t.shape for t in ours.tensors()}
    assert shapes["xlstm.slstm_cell._recurrent_kernel_"] == tuple(cell._recurrent_kernel_.shape)
    assert shapes["xlstm.slstm_cell._bias_"] == tuple(cell._bias_.shape)


@pytest.mark.parametrize("kernel", [0, 4])
def test_slstm_step_flops_and_state(kernel: int) -> None:
    d, heads = 16, 4
    config = xlstm.sLSTMLayerConfig(
        backend="vanilla", embedding_dim=d, num_heads=heads, conv1d_kernel_size=kernel
    )
    layer = xlstm.sLSTMLayer(config).eval()
    ours = get_block("slstm").bind(
        {"d_model": d, "heads": heads, "head_dim": 4, "conv_kernel": kernel, "cuda": 0}
    )
    x = torch.randn(1, 1, d)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        _, state = layer.step(x)
    # The counter sees the four headwise projections (einsum: 2·heads·4·4 each) and y_{t−1}'s
    # product with the recurrent kernel (2·heads·4·16); the step's conv is elementwise (missed).
    assert counter.get_total_flops() == 4 * 2 * heads * 4 * 4 + 2 * heads * 4 * 16
    assert counter.get_total_flops() == ours.flops_breakdown()["gemm"]
    with torch.no_grad():
        _, last = layer(torch.randn(1, 3, d), return_last_state=True)
    held = {"slstm_state": last["slstm_state"].numel()}
    if kernel:
        held["conv_state"] = state["conv_state"][0].numel()  # the step's window: kernel × d
        assert tuple(state["conv_state"][0].shape) == (1, kernel, d)
    assert tuple(last["slstm_state"].shape) == (4, 1, d)
    assert {k: v for k, v in ours.state_elements().items() if v} == held
