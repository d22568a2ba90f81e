"""FLOPs and inference state of the block registry's models against transformers' torch path on
the CPU: torch.utils.flop_counter.FlopCounterMode counts only matrix products and convolutions,
so the GEMM and convolution part is compared exactly (the counter does not see the scan's
elementwise work: exp, the decay and input products, the sums, softplus, SiLU, the gates, the
norms; nor the WKV recurrence of RWKV); the state is compared with the cache transformers
returns after a forward with use_cache=True."""

from __future__ import annotations

from typing import Any

import pytest

transformers = pytest.importorskip("transformers", reason="the [hf] extra builds the reference models")
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from paramcalc.bridge.readers.hf_config import model_from_config  # noqa: E402

T = 7  # tokens in the prompt
L = 2  # layers


def build(config: dict[str, Any]) -> Any:
    cfg = {k: v for k, v in config.items() if k != "model_type"}
    hf = transformers.AutoConfig.for_model(config["model_type"], **cfg)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(hf).eval().requires_grad_(False)


def counted(model: Any, **inputs: Any) -> tuple[dict[str, int], Any]:
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(**inputs)
    return {str(k).removeprefix("aten."): v for k, v in counter.get_flop_counts()["Global"].items()}, out


MAMBA = {
    "model_type": "mamba",
    "hidden_size": 32,
    "num_hidden_layers": L,
    "vocab_size": 50,
    "state_size": 4,
    "conv_kernel": 3,
}
MAMBA2 = {
    "model_type": "mamba2",
    "hidden_size": 32,
    "num_hidden_layers": L,
    "vocab_size": 50,
    "state_size": 4,
    "num_heads": 8,
    "head_dim": 8,
    "n_groups": 2,
    "chunk_size": 4,
}
RWKV = {"model_type": "rwkv", "hidden_size": 32, "num_hidden_layers": L, "vocab_size": 50}


def assert_step_used_cache(model: Any, ids: Any, step_out: Any) -> None:
    """The cached step's logits are those of the whole prompt plus the token: the cache was used."""
    full = model(torch.cat([ids, ids[:, :1]], dim=1)).logits[:, -1]
    assert torch.allclose(step_out.logits[:, -1], full, atol=1e-4)


def gemm_per_token(config: dict[str, Any]) -> int:
    m = model_from_config(config)
    return sum(b.flops_breakdown()["gemm"] for b in m.blocks) + m.head_flops_per_token()


def test_mamba_flops_and_state() -> None:
    d_inner, d_state, k = 64, 4, 3
    model = build(MAMBA)
    ids = torch.randint(0, 50, (1, T))
    counts, out = counted(model, input_ids=ids, use_cache=True)
    # by hand: in_proj 128·32, x_proj (2 + 8)·64, dt_proj 64·2, out_proj 32·64; head 50·32
    assert gemm_per_token(MAMBA) == 2 * (L * (4096 + 640 + 128 + 2048) + 1600)
    # the reference scan computes y = C·h as a batched matrix product, 2·d_inner·d_state a token
    assert counts["mm"] + counts["bmm"] == T * gemm_per_token(MAMBA) + L * T * 2 * d_inner * d_state
    # the causal conv runs over the T + k - 1 padded positions (paramcalc prices T: 2·d_inner·k each)
    conv = model_from_config(MAMBA).blocks[0].flops_breakdown()["conv"]
    assert conv == 2 * d_inner * k
    assert counts["convolution"] == L * conv * (T + k - 1)
    # one generated token with the cache: the GEMMs, the head and C·h
    step, step_out = counted(model, input_ids=ids[:, :1], cache=out.cache_params, use_cache=True)
    assert step["mm"] + step["bmm"] == gemm_per_token(MAMBA) + L * 2 * d_inner * d_state
    assert_step_used_cache(model, ids, step_out)
    # the scan's elementwise work is what the counter cannot see
    scan = model_from_config(MAMBA).blocks[0].flops_breakdown()["scan"]
    assert scan > 2 * d_inner * d_state
    # state: conv_states (batch, d_inner, k) and recurrent_states (batch, d_inner, d_state) per layer
    ours = model_from_config(MAMBA)
    layer = out.cache_params.layers[0]
    assert tuple(layer.conv_states[0].shape) == (1, d_inner, k)
    assert tuple(layer.recurrent_states[0].shape) == (1, d_inner, d_state)
    elements = sum(
        lay.conv_states[0].numel() + lay.recurrent_states[0].numel() for lay in out.cache_params.layers
    )
    assert ours.state_elements() == elements
    assert ours.state_bytes(dtype="float32") == elements * layer.conv_states[0].element_size()


def test_mamba2_flops_and_state() -> None:
    d_inner, d_state, channels, k = 64, 4, 64 + 2 * 2 * 4, 4
    model = build(MAMBA2)
    ids = torch.randint(0, 50, (1, T))
    counts, out = counted(model, input_ids=ids, use_cache=True)
    # by hand: in_proj (2·64 + 2·2·4 + 8)·32, out_proj 32·64; head 50·32
    assert gemm_per_token(MAMBA2) == 2 * (L * (152 * 32 + 2048) + 1600)
    assert counts["mm"] == T * gemm_per_token(MAMBA2)
    assert counts["convolution"] == L * 2 * channels * k * (T + k - 1)
    # the chunked SSD prefill's bmm work depends on the chunk size: not the per-token form priced
    step, step_out = counted(model, input_ids=ids[:, :1], cache=out.cache_params, use_cache=True)
    assert step["mm"] == gemm_per_token(MAMBA2)
    assert_step_used_cache(model, ids, step_out)
    assert step["bmm"] == L * 2 * d_inner * d_state  # y = C·h, one token
    ours = model_from_config(MAMBA2)
    layer = out.cache_params.layers[0]
    assert tuple(layer.conv_states[0].shape) == (1, channels, k)
    assert tuple(layer.recurrent_states[0].shape) == (1, 8, 8, d_state)
    elements = sum(
        lay.conv_states[0].numel() + lay.recurrent_states[0].numel() for lay in out.cache_params.layers
    )
    assert ours.state_elements() == elements


def test_rwkv_flops_and_state() -> None:
    model = build(RWKV)
    ids = torch.randint(0, 50, (1, T))
    counts, out = counted(model, input_ids=ids, use_cache=True)
    # by hand: key, value, receptance, output 32·32 each; ffn key 128·32, receptance 32·32, value 32·128
    assert gemm_per_token(RWKV) == 2 * (L * (4 * 1024 + 4096 + 1024 + 4096) + 1600)
    assert counts == {"mm": T * gemm_per_token(RWKV)}
    step, step_out = counted(model, input_ids=ids[:, :1], state=out.state, use_cache=True)
    assert step == {"mm": gemm_per_token(RWKV)}
    assert_step_used_cache(model, ids, step_out)
    # state: five (batch, hidden, layers) tensors (x_prev of both mixes, num, den, max)
    ours = model_from_config(RWKV)
    assert [tuple(s.shape) for s in out.state] == [(1, 32, L)] * 5
    assert ours.state_elements() == sum(s.numel() for s in out.state)
    assert ours.state_bytes(dtype="float32") == sum(s.numel() * s.element_size() for s in out.state)


def test_forward_generate_training_conventions() -> None:
    m = model_from_config(MAMBA)
    assert m.forward_flops(T) == T * m.flops_per_token()
    assert m.training_flops(T) == 3 * T * m.flops_per_token()
