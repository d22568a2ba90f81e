"""The built-in cells: RNN, LSTM, GRU (and their single-step cells), CIFG, MGU, IndRNN, minGRU
and minLSTM, each one :class:`~paramcalc.core.celltypes.CellType` with its equations, tensor
templates, cost rules, memory rules and torch binding. Elementwise ops are counted from the
equations written here; the registry (:mod:`paramcalc.core.cells`) starts with these entries.
"""

from __future__ import annotations

from .celltypes import CellType, TorchBinding, gated_templates
from .memrules import CudaCell, CudnnRule, MemoryRules, Saved

# --- equations ---------------------------------------------------------------------------------

_RNN_EQ = "h_t = {act}(x_t·W_ihᵀ + b_ih + h_{{t-1}}·W_hhᵀ + b_hh)"
_LSTM_EQ = (
    "i_t = σ(x_t·W_iiᵀ + b_ii + h_{t-1}·W_hiᵀ + b_hi)",
    "f_t = σ(x_t·W_ifᵀ + b_if + h_{t-1}·W_hfᵀ + b_hf)",
    "g_t = tanh(x_t·W_igᵀ + b_ig + h_{t-1}·W_hgᵀ + b_hg)",
    "o_t = σ(x_t·W_ioᵀ + b_io + h_{t-1}·W_hoᵀ + b_ho)",
    "c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t",
    "h_t = o_t ⊙ tanh(c_t)            (with proj_size: h_t = (o_t ⊙ tanh(c_t))·W_hrᵀ)",
)
_LSTM_PEEPHOLE_EQ = (
    "i_t = σ(x_t·W_iiᵀ + h_{t-1}·W_hiᵀ + p_i ⊙ c_{t-1} + b_i)",
    "f_t = σ(x_t·W_ifᵀ + h_{t-1}·W_hfᵀ + p_f ⊙ c_{t-1} + b_f)",
    "g_t = tanh(x_t·W_igᵀ + h_{t-1}·W_hgᵀ + b_g)",
    "c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t",
    "o_t = σ(x_t·W_ioᵀ + h_{t-1}·W_hoᵀ + p_o ⊙ c_t + b_o)",
    "h_t = o_t ⊙ tanh(c_t)            (with proj_size: h_t = (o_t ⊙ tanh(c_t))·W_hrᵀ)",
)
_GRU_EQ = (
    "r_t = σ(x_t·W_irᵀ + b_ir + h_{t-1}·W_hrᵀ + b_hr)",
    "z_t = σ(x_t·W_izᵀ + b_iz + h_{t-1}·W_hzᵀ + b_hz)",
    "n_t = tanh(x_t·W_inᵀ + b_in + r_t ⊙ (h_{t-1}·W_hnᵀ + b_hn))   (reset after the matmul)",
    "h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}",
)
_GRU_RESET_BEFORE_EQ = (
    "r_t = σ(x_t·W_irᵀ + h_{t-1}·W_hrᵀ + b_r)",
    "z_t = σ(x_t·W_izᵀ + h_{t-1}·W_hzᵀ + b_z)",
    "n_t = tanh(x_t·W_inᵀ + b_n + (r_t ⊙ h_{t-1})·W_hnᵀ)   (reset before the matmul)",
    "h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}",
)
_CIFG_EQ = (
    "i_t = σ(x_t·W_iᵀ + h_{t-1}·R_iᵀ + p_i ⊙ c_{t-1} + b_i)",
    "g_t = tanh(x_t·W_gᵀ + h_{t-1}·R_gᵀ + b_g)              (block input z_t in Greff et al.)",
    "f_t = 1 - i_t                                        (coupled input and forget gate)",
    "c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t",
    "o_t = σ(x_t·W_oᵀ + h_{t-1}·R_oᵀ + p_o ⊙ c_t + b_o)",
    "h_t = o_t ⊙ tanh(c_t)            (peephole terms p_i, p_o only with peepholes on)",
)
_MGU_EQ = (
    "f_t = σ(x_t·W_fᵀ + h_{t-1}·U_fᵀ + b_f)",
    "n_t = tanh(x_t·W_nᵀ + (f_t ⊙ h_{t-1})·U_nᵀ + b_n)      (the candidate h̃_t; waits for f_t)",
    "h_t = (1 - f_t) ⊙ h_{t-1} + f_t ⊙ n_t",
)
_INDRNN_EQ = (
    "h_t = ReLU(x_t·W_ihᵀ + u ⊙ h_{t-1} + b)      (u: one recurrent weight per unit; "
    "b = b_ih, or b_ih + b_hh with two bias vectors)",
)
_MINGRU_EQ = (
    "z_t = σ(x_t·W_zᵀ + b_z)                   (gates from x_t only)",
    "n_t = x_t·W_nᵀ + b_n                      (the candidate h̃_t)",
    "h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ n_t     (linear in h: a parallel scan)",
)
_MINLSTM_EQ = (
    "f_t = σ(x_t·W_fᵀ + b_f),  i_t = σ(x_t·W_iᵀ + b_i)   (gates from x_t only)",
    "n_t = x_t·W_nᵀ + b_n                              (the candidate h̃_t)",
    "f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)",
    "h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ n_t                  (linear in h: a parallel scan)",
)

# Elementwise ops per unit and step, counted from the equations (bias additions apart):
# RNN: 1 sum joining the matmuls + 1 activation. LSTM: 4 joining sums, 3 σ, tanh(g),
# c_t = f⊙c + i⊙g (2 ⊙, 1 +), h_t = o⊙tanh(c_t) (1 tanh, 1 ⊙). GRU (either form): 3 joining
# sums, 2 σ, 1 tanh, r⊙(...) (1 ⊙), (1 - z)⊙n + z⊙h (1 -, 2 ⊙, 1 +). CIFG: 3 joining sums,
# 2 σ, tanh(g), f = 1 - i (1 -), c (2 ⊙, 1 +), h (1 tanh, 1 ⊙). MGU: 2 joining sums, 1 σ,
# f⊙h (1 ⊙), 1 tanh, (1 - f)⊙h + f⊙n (1 -, 2 ⊙, 1 +). IndRNN: u⊙h (1 ⊙), 1 joining sum, ReLU.
# minGRU: 1 σ, (1 - z)⊙h + z⊙n (1 -, 2 ⊙, 1 +). minLSTM: 2 σ, f + i (1 +), 2 divisions,
# f'⊙h + i'⊙n (2 ⊙, 1 +).
_LSTM_OPS = (("add", 5), ("mul", 3), ("sigmoid", 3), ("tanh", 2))
_GRU_OPS = (("add", 4), ("sub", 1), ("mul", 3), ("sigmoid", 2), ("tanh", 1))


def _rnn(name: str, act: str, single: bool) -> CellType:
    mode = "RNN_TANH" if act == "tanh" else "RNN_RELU"
    return CellType(
        name=name,
        family="rnn",
        gate_names=("h",),
        templates=gated_templates(),
        equations=(_RNN_EQ.format(act=act),),
        display_name="RNNCell" if single else "RNN",
        single_step=single,
        keras_class="SimpleRNNCell" if single else "SimpleRNN",
        onnx_op=None if single else "RNN",
        torch=TorchBinding(
            nn_class="RNNCell" if single else "RNN",
            mode=None if single else mode,
            nonlinearity=act,
            runner="cell" if single else "stack",
            step=_step("rnn"),
            packed_input=True,
        ),
        nonlinearity=act,
        elementwise_ops=(("add", 1), (act, 1)),
        memory=MemoryRules(
            native=Saved(0, 1, "tanh/ReLU's output is h_t itself"),
            reference=Saved(0, 1, "act(...) is h_t itself"),
            cuda_cell=CudaCell(1, (1, 1, 1), lt=True, what="the activation's output h_t") if single else None,
            cudnn=None if single else CudnnRule("rnn", reserve=1, standard=3, persistent=4),
        ),
        aliases=("rnn_tanh",) if name == "rnn" else ("rnn_tanh_cell",) if name == "rnn_cell" else (),
    )


def _lstm(name: str, single: bool) -> CellType:
    return CellType(
        name=name,
        family="lstm",
        gate_names=("i", "f", "g", "o"),
        templates=gated_templates(peephole_gates=("i", "f", "o"), projection=not single),
        equations=_LSTM_EQ,
        peephole_equations=_LSTM_PEEPHOLE_EQ,
        display_name="LSTMCell" if single else "LSTM",
        single_step=single,
        keras_class="LSTMCell" if single else "LSTM",
        onnx_op=None if single else "LSTM",
        onnx_gate_names=("i", "o", "f", "c"),
        torch=TorchBinding(
            nn_class="LSTMCell" if single else "LSTM",
            mode=None if single else "LSTM",
            runner="cell" if single else "stack",
            step=_step("lstm"),
            packed_input=True,
        ),
        projection=not single,
        peephole_gates=("i", "f", "o"),
        elementwise_ops=_LSTM_OPS,
        memory=MemoryRules(
            native=Saved(6, 0, "the gates i, f, g, o after σ/tanh (4·Dh, one tensor), c_{t-1}, tanh(c_t)"),
            reference=Saved(6, 0, "i, f, g, o, c_{t-1}, tanh(c_t) (peepholes: c_0 as well)"),
            cuda_cell=CudaCell(14, (4, 4, 4, 1, 1), what="igates, hgates, the kernel's workspace, c_t, h_t")
            if single
            else None,
            cudnn=None if single else CudnnRule("lstm", reserve=5, standard=10, persistent=8),
        ),
        state_names=("h", "c"),
    )


def _gru(name: str, single: bool) -> CellType:
    return CellType(
        name=name,
        family="gru",
        gate_names=("r", "z", "n"),
        templates=gated_templates(),
        equations=_GRU_EQ,
        reset_before_equations=_GRU_RESET_BEFORE_EQ,
        display_name="GRUCell" if single else "GRU",
        single_step=single,
        keras_class="GRUCell" if single else "GRU",
        onnx_op=None if single else "GRU",
        onnx_gate_names=("z", "r", "h"),
        torch=TorchBinding(
            nn_class="GRUCell" if single else "GRU",
            mode=None if single else "GRU",
            runner="cell" if single else "stack",
            step=_step("gru"),
            packed_input=True,
        ),
        reset_before_blocks=1,  # n waits for r_t ⊙ h_{t-1}
        reset_after_option=True,
        elementwise_ops=_GRU_OPS,
        memory=MemoryRules(
            native=Saved(6, 0, "h·W_hhᵀ + b_hh (3·Dh, kept whole for its n block), r_t, z_t, n_t"),
            reference=Saved(7, 0, "h·W_hhᵀ + b_hh (3·Dh), r_t, z_t, n_t, 1 - z_t"),
            reference_reset_before=Saved(
                5, -1, "r_t, z_t, n_t, r_t ⊙ h_{t-1}, 1 - z_t (none of it on the zero first state)"
            ),
            cuda_cell=CudaCell(
                12, (3, 3, 5), what="igates, hgates (3·Dh each), the kernel's workspace (5·Dh), h_t"
            )
            if single
            else None,
            cudnn=None if single else CudnnRule("gru", reserve=6, standard=5, persistent=4),
        ),
    )


def _step(name: str) -> str:
    """Where paramcalc's reference module finds the step function of a built-in cell."""
    return f"paramcalc.bridge.modules:{name}_step"


def _scan(name: str) -> str:
    """Where paramcalc's reference module finds the parallel scan of a built-in linear recurrence."""
    return f"paramcalc.bridge.modules:{name}_scan"


def builtin_cells() -> tuple[CellType, ...]:
    """The built-in entries, in the registry's order."""
    return (*_torch_cells(), *_paper_cells(), *_scan_cells())


def _torch_cells() -> tuple[CellType, ...]:
    """The cells ``torch.nn`` builds (in their PyTorch layout), stacks first."""
    return (
        _rnn("rnn", "tanh", False),
        _rnn("rnn_relu", "relu", False),
        _lstm("lstm", False),
        _gru("gru", False),
        _rnn("rnn_cell", "tanh", True),
        _rnn("rnn_relu_cell", "relu", True),
        _lstm("lstm_cell", True),
        _gru("gru_cell", True),
    )


def _paper_cells() -> tuple[CellType, ...]:
    """Gated cells outside ``torch.nn``, each in its paper's layout (paramcalc's reference modules)."""
    return (
        CellType(
            name="cifg",
            family="cifg",
            gate_names=("i", "g", "o"),
            templates=gated_templates(peephole_gates=("i", "o")),
            equations=_CIFG_EQ,
            display_name="CIFG",
            torch=TorchBinding(step=_step("cifg"), packed_input=True),
            peephole_gates=("i", "o"),
            default_peephole=True,
            default_bias_vectors=1,
            source="Greff et al. 2017 (CIFG: f = 1 - i): one bias per gate block, peepholes on i and o",
            elementwise_ops=(("add", 4), ("sub", 1), ("mul", 3), ("sigmoid", 2), ("tanh", 2)),
            memory=MemoryRules(reference=Saved(6, 0, "i, g, o, 1 - i, c_{t-1}, tanh(c_t)")),
            state_names=("h", "c"),
        ),
        CellType(
            name="mgu",
            family="mgu",
            gate_names=("f", "n"),
            templates=gated_templates(),
            equations=_MGU_EQ,
            display_name="MGU",
            torch=TorchBinding(step=_step("mgu"), packed_input=True),
            default_bias_vectors=1,
            reset_before_blocks=1,  # n's recurrent matmul waits for f_t ⊙ h_{t-1}
            source="Zhou et al. 2016 (MGU): one bias per gate block",
            elementwise_ops=(("add", 3), ("sub", 1), ("mul", 3), ("sigmoid", 1), ("tanh", 1)),
            memory=MemoryRules(reference=Saved(4, -2, "f_t, f_t ⊙ h_{t-1}, n_t, 1 - f_t")),
        ),
        CellType(
            name="indrnn",
            family="indrnn",
            gate_names=("h",),
            templates=gated_templates(recurrent="diagonal"),
            equations=_INDRNN_EQ,
            display_name="IndRNN",
            torch=TorchBinding(step=_step("indrnn"), packed_input=True),
            nonlinearity="relu",
            # two (b_ih and a recurrent b_hh, as nn.Linear(d, Dh) plus a recurrent bias store it)
            # is the layout of several third-party modules; the paper's is one
            default_bias_vectors=1,
            source="Li et al. 2018 (IndRNN): W·x + u ⊙ h + b, one bias",
            elementwise_ops=(("add", 1), ("mul", 1), ("relu", 1)),
            memory=MemoryRules(reference=Saved(0, 1, "u ⊙ h_{t-1} keeps h_{t-1}; ReLU keeps h_t")),
        ),
    )


def _scan_cells() -> tuple[CellType, ...]:
    """The linear recurrences (a parallel scan can run them), in their paper's layout."""
    return (
        CellType(
            name="mingru",
            family="mingru",
            gate_names=("z", "n"),
            templates=gated_templates(recurrent="none"),
            equations=_MINGRU_EQ,
            display_name="minGRU",
            torch=TorchBinding(step=_step("mingru"), packed_input=True, scan=_scan("mingru")),
            bias_vectors_allowed=(0, 1),
            default_bias_vectors=1,
            recurrence="scan",
            source="Feng et al. 2024 (minGRU): one nn.Linear(d, Dh) per block (z, h̃), stored stacked",
            elementwise_ops=(("add", 1), ("sub", 1), ("mul", 2), ("sigmoid", 1)),
            memory=MemoryRules(
                reference=Saved(
                    14,
                    0,
                    "the log-space scan's intermediates (the projection, the gates, log a, A, log|b|, and "
                    "per sign of b its mask, log-cumsum-exp and exp)",
                )
            ),
        ),
        CellType(
            name="minlstm",
            family="minlstm",
            gate_names=("f", "i", "n"),
            templates=gated_templates(recurrent="none"),
            equations=_MINLSTM_EQ,
            display_name="minLSTM",
            torch=TorchBinding(step=_step("minlstm"), packed_input=True, scan=_scan("minlstm")),
            bias_vectors_allowed=(0, 1),
            default_bias_vectors=1,
            recurrence="scan",
            source="Feng et al. 2024 (minLSTM): one nn.Linear(d, Dh) per block (f, i, h̃), stored stacked",
            elementwise_ops=(("add", 2), ("div", 2), ("mul", 2), ("sigmoid", 2)),
            memory=MemoryRules(
                reference=Saved(
                    17,
                    0,
                    "the log-space scan's intermediates (the projection, log f, log i, their log-sum, "
                    "log a, A, i', b, log|b|, and per sign of b its mask, log-cumsum-exp and exp)",
                )
            ),
        ),
    )
