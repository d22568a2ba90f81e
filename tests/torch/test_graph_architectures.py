"""TOML architectures beyond a chain: each example equals the torch model it describes.

The torch models are written here by hand from the papers and reference implementations
(deepspeech.pytorch's DeepSpeech2, LAS section 4, NVIDIA's GNMT v2), and their totals are
torch's ``sum(p.numel())``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import paramcalc as pc
from paramcalc.core.architecture import architecture_from_dict, count_architecture, load_architecture
from tests.helpers import DATA


def deepspeech2() -> nn.Module:
    class BatchRNN(nn.Module):
        def __init__(self, d: int, h: int, batch_norm: bool) -> None:
            super().__init__()
            self.batch_norm = nn.BatchNorm1d(d) if batch_norm else None
            self.rnn = nn.LSTM(d, h, bidirectional=True, bias=True)

    class DeepSpeech(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(1, 32, kernel_size=(41, 11), stride=(2, 2), padding=(20, 5)),
                nn.BatchNorm2d(32),
                nn.Hardtanh(0, 20, inplace=True),
                nn.Conv2d(32, 32, kernel_size=(21, 11), stride=(2, 1), padding=(10, 5)),
                nn.BatchNorm2d(32),
                nn.Hardtanh(0, 20, inplace=True),
            )
            size = math.floor(16000 * 0.02 / 2) + 1  # 161 frequency bins
            size = math.floor((size + 2 * 20 - 41) / 2 + 1)
            size = math.floor((size + 2 * 10 - 21) / 2 + 1)
            size *= 32
            self.rnns = nn.Sequential(
                BatchRNN(size, 1024, batch_norm=False),
                *(BatchRNN(1024, 1024, batch_norm=True) for _ in range(4)),
            )
            self.fc = nn.Sequential(nn.BatchNorm1d(1024), nn.Linear(1024, 29, bias=False))

    with torch.device("meta"):
        return DeepSpeech()


def las() -> nn.Module:
    class LAS(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.listener = nn.ModuleList(
                [nn.LSTM(40, 256, bidirectional=True)]
                + [nn.LSTM(1024, 256, bidirectional=True) for _ in range(3)]
            )
            self.embed = nn.Embedding(48, 256)
            self.speller = nn.LSTM(256 + 512, 512, num_layers=2)
            self.phi, self.psi = nn.Linear(512, 512), nn.Linear(512, 512)
            self.char_distribution = nn.Linear(512 + 512, 48)

    with torch.device("meta"):
        return LAS()


def gnmt() -> nn.Module:
    class Bahdanau(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear_q = nn.Linear(1024, 1024, bias=False)
            self.linear_k = nn.Linear(1024, 1024, bias=False)
            self.linear_att = nn.Parameter(torch.empty(1024))
            self.normalize_scalar = nn.Parameter(torch.empty(1))
            self.normalize_bias = nn.Parameter(torch.empty(1024))

    class GNMT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedder = nn.Embedding(32317, 1024)
            self.encoder = nn.ModuleList(
                [
                    nn.LSTM(1024, 1024, bidirectional=True),
                    nn.LSTM(2048, 1024),
                    nn.LSTM(1024, 1024),
                    nn.LSTM(1024, 1024),
                ]
            )
            self.decoder_embedder = self.embedder  # share_embedding=True
            self.att_rnn = nn.LSTM(1024, 1024)
            self.attn = Bahdanau()
            self.decoder = nn.ModuleList([nn.LSTM(2048, 1024) for _ in range(3)])
            self.classifier = nn.Linear(1024, 32317)

    with torch.device("meta"):
        return GNMT()


@pytest.mark.parametrize("name,build", [("deepspeech2", deepspeech2), ("las", las), ("gnmt", gnmt)])
def test_example_equals_its_torch_model(name, build):
    arch = load_architecture(DATA / "architectures" / f"{name}.toml")
    counted = count_architecture(arch)
    model = build()
    assert counted.total == sum(p.numel() for p in model.parameters())  # tied weights once
    checked = pc.check(arch)
    assert checked.ok, checked.problems()


def test_deepspeech2_by_hand():
    # conv 32·1·41·11+32, bn 64, conv 32·32·21·11+32, bn 64; LSTM(1312): 2·4(1024·1312+1024²+2·1024);
    # four LSTM(1024) with their batch norms; the classifier's batch norm and 1024·29 weights
    conv = 14_464 + 64 + 236_576 + 64
    first = 2 * 4 * (1024 * 1312 + 1024 * 1024 + 2 * 1024)
    rest = 4 * (2 * 1024 + 2 * 4 * (1024 * 1024 + 1024 * 1024 + 2 * 1024))
    fc = 2 * 1024 + 1024 * 29
    total = count_architecture(load_architecture(DATA / "architectures" / "deepspeech2.toml")).total
    assert total == conv + first + rest + fc == 86_618_400


def test_the_flow_is_checked():
    base = {"input": [{"name": "x", "size": 10}], "component": []}

    def arch(*components):
        return architecture_from_dict({**base, "component": list(components)})

    # concat adds sizes, sum needs equal ones, stack multiplies
    a = arch(
        {"name": "a", "kind": "lstm", "from": "x", "hidden_size": 4},
        {"name": "b", "kind": "gru", "from": "x", "hidden_size": 6},
        {"name": "c", "kind": "linear", "from": ["a", "b"], "out_features": 3},
        {"name": "d", "kind": "rnn", "from": "c", "hidden_size": 5, "stack": 4},
    )
    flows = a.flows()
    assert flows["c"].incoming == 10 and flows["d"].incoming == 12
    with pytest.raises(pc.ParamcalcError, match="merge = 'sum' needs equal sizes"):
        arch(
            {"name": "a", "kind": "lstm", "from": "x", "hidden_size": 4},
            {"name": "b", "kind": "gru", "from": "x", "hidden_size": 6},
            {"name": "c", "kind": "linear", "from": ["a", "b"], "merge": "sum", "out_features": 3},
        )
    with pytest.raises(pc.ParamcalcError, match="expects 7 input features"):
        arch({"name": "a", "kind": "lstm", "from": "x", "input_size": 7, "hidden_size": 4})
    with pytest.raises(pc.ParamcalcError, match="no such input or component before this one"):
        arch(
            {"name": "a", "kind": "lstm", "from": "b", "hidden_size": 4},
            {"name": "b", "kind": "gru", "hidden_size": 4},
        )
    with pytest.raises(pc.ParamcalcError, match="no such input or component"):
        arch({"name": "a", "kind": "lstm", "from": "nope", "hidden_size": 4})
    with pytest.raises(pc.ParamcalcError, match="attention takes two sources"):
        arch(
            {
                "name": "att",
                "kind": "attention",
                "from": "x",
                "query_size": 10,
                "key_size": 10,
                "attn_size": 4,
            }
        )
