"""The result protocol for the results that need torch: check, flop check, analysis, bench.

Ground truth: the seed's model, built in torch here (nn.LSTM(28, 256, 2) + nn.Linear(256, 10):
torch's own sum of numel is 821,770); exported files are read back and compared value by value.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

import paramcalc as pc
from paramcalc.render.export import SUFFIXES
from tests.core.test_protocol import _read_back, _same, pd_na

SEED = pc.RecurrentSpec("lstm", 28, 256, num_layers=2)


class Seed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(28, 256, num_layers=2, batch_first=True)
        self.lin = nn.Linear(256, 10)


@pytest.fixture(scope="module")
def results():
    model = Seed()
    assert sum(p.numel() for p in model.parameters()) == 821_770
    return {
        "check": pc.check(SEED),
        "flop-check": pc.flop_check(SEED, pc.Workload(batch=4, seq_len=6, mode="training")),
        "analysis": pc.analyze(model),
        "bench": steady(pc.bench(pc.RecurrentSpec("gru", 8, 16), pc.Workload(2, 3), min_run_time=0.01)),
    }


def steady(r: pc.BenchResult) -> pc.BenchResult:
    """``r`` as if timed on a quiet machine exactly as predicted: its text (noise and busy-machine
    warnings) then does not depend on the load while the test ran."""
    p = r.prediction.seconds
    return dataclasses.replace(r, times=(p,) * 5, median_s=p, iqr_s=0.0, measurement=None, other_load=None)


def test_print_html_repr(results):
    for name, r in results.items():
        text = str(r)
        assert len(text) < 2000 and "---" in text, (name, len(text))
        assert "<table" in r._repr_html_()
        assert len(repr(r)) < 200
    assert "821,770" in str(results["analysis"])


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_exports_read_back(results, suffix, tmp_path):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    if suffix == ".xlsx":
        pytest.importorskip("openpyxl")
    for name, r in results.items():
        for view in r.VIEWS:
            path = tmp_path / f"{name}-{view}{suffix}"
            r.export(path, view)
            t = r.table(view)
            if suffix == ".json":
                rows = json.loads(path.read_text())["rows"]
                assert rows == [
                    {k: (list(v) if isinstance(v, tuple) else v) for k, v in rec.items()}
                    for rec in t.records()
                ]
                continue
            if suffix in (".md", ".html", ".tex"):
                assert path.stat().st_size > 0
                continue
            frame = _read_back(path, suffix)
            assert list(frame.columns) == t.names and len(frame) == len(t.rows)
            for i in range(len(t.columns)):
                for j, row in enumerate(t.rows):
                    got = frame.iloc[j, i]
                    got = None if got is pd_na() or (isinstance(got, float) and got != got) else got
                    if row[i] is None:
                        assert got is None or got == ""
                    else:
                        assert _same(row[i], got, suffix), (name, view, suffix, t.names[i], row[i], got)


WRONG = [
    (pc.check, ("lstm",), "check needs a RecurrentSpec"),
    (pc.check, (SEED, None), "device must be a name"),
    (pc.bench, ({},), "bench needs a RecurrentSpec"),
    (pc.bench, (SEED, "64"), "bench needs a Workload"),
    (pc.flop_check, (nn.Linear(2, 2),), "not a recurrent module"),
    (pc.analyze, ("model",), "analyze needs a torch.nn.Module"),
    (pc.spec_from_module, (3,), "spec_from_module needs a torch.nn module"),
    (pc.count, (nn.Linear(3, 4),), "not a recurrent module"),
]


@pytest.mark.parametrize(
    "fn,args,message", WRONG, ids=[f"{f.__name__}-{i}" for i, (f, _, _) in enumerate(WRONG)]
)
def test_a_wrong_type_is_one_line(fn, args, message):
    with pytest.raises(pc.ParamcalcError) as info:
        fn(*args)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_modules_are_accepted_where_specs_are():
    lstm = nn.LSTM(28, 256, num_layers=2)
    assert pc.spec_from_module(lstm) == SEED
    assert pc.count(lstm).total == sum(p.numel() for p in lstm.parameters()) == 819_200
    assert pc.cost(lstm, pc.Workload(2, 3)).macs == pc.cost(SEED, pc.Workload(2, 3)).macs
    assert pc.check(lstm).ok
    r = pc.compare(nn.GRU(28, 64), equal="params")
    assert r.rows[0].spec.cell == "gru" and r.rows[0].spec.hidden_size == 64  # the given cell stays first
    with torch.device("meta"):
        big = nn.LSTM(1024, 1024, 4)
    assert pc.count(big).total == sum(p.numel() for p in big.parameters())
