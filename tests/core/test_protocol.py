"""The result protocol, for every analytic result: readable printing, typed frames, every export.

Independent ground truth: the seed's model (nn.LSTM(28, 256, num_layers=2) = 819,200 parameters,
821,770 with its Linear(256, 10) head) and values written by hand here; the exported files are
read back with pandas/json and compared with the result's own table, value by value.
"""

from __future__ import annotations

import json
import math

import pytest

import paramcalc as pc
from paramcalc.core.architecture import load_architecture
from paramcalc.core.explain import explain
from paramcalc.render.export import SUFFIXES
from paramcalc.studies.compare import compare
from paramcalc.studies.sweep import sweep
from tests.helpers import DATA

SEED = pc.RecurrentSpec("lstm", 28, 256, num_layers=2)
WL = pc.Workload(batch=64, seq_len=28)


def analytic_results() -> dict[str, pc.Result]:
    return {
        "count": pc.count(SEED),
        "solve-budget": pc.solve_budget(SEED, "1.5M", cells=["rnn", "lstm", "gru"]),
        "solve-match": pc.match_hidden(SEED),
        "cost": pc.cost(SEED, WL),
        "cost-packed-training": pc.cost(SEED, pc.Workload.packed([12, 9, 3], mode="training")),
        "architecture": pc.count_architecture(
            load_architecture(DATA / "architectures" / "mnist_rows_lstm.toml")
        ),
        "compare": compare(SEED, workload=WL, equal="params"),
        "sweep": sweep(SEED, cells="rnn,lstm,gru", hidden_sizes=(128, 256), seq_lens=28, batches=64),
        "explain": explain(SEED),
    }


RESULTS = analytic_results()


@pytest.mark.parametrize("name", RESULTS)
def test_print_is_a_readable_table_under_2000_characters(name):
    r = RESULTS[name]
    text = str(r)
    assert len(text) < 2000, (name, len(text))
    assert "\n" in text and "---" in text  # a drawn table, not a dataclass dump
    assert "Result(" not in text and "spec=RecurrentSpec" not in text
    assert len(repr(r)) < 200 and repr(r).startswith("<")
    html = r._repr_html_()
    assert "<table" in html and "</table>" in html


def test_the_seed_numbers_in_print():
    text = str(pc.count(SEED))
    assert "total: 819,200 parameters" in text
    arch = str(RESULTS["architecture"])
    assert "821,770" in arch  # 819,200 + 256·10 + 10


@pytest.mark.parametrize("name", RESULTS)
def test_every_view_has_typed_columns_and_no_display_strings(name):
    r = RESULTS[name]
    for view in r.VIEWS:
        t = r.table(view)
        for i, col in enumerate(t.columns):
            for row in t.rows:
                v = row[i]
                if v is None:
                    continue
                kind = {"int": int, "float": float, "str": str, "bool": bool, "shape": tuple}[col.kind]
                assert isinstance(v, kind) and not (kind is int and isinstance(v, bool)), (name, view, col, v)
                assert v not in ("", "-"), (name, view, col.name)
        frame = r.to_frame(view)
        assert list(frame.columns) == t.names
        for col in t.columns:
            want = {"int": "Int64", "float": "Float64", "str": "string", "bool": "boolean", "shape": "object"}
            assert str(frame[col.name].dtype) in (want[col.kind], "object"), (name, view, col.name)


def test_cost_gemm_view_of_a_packed_batch_is_integers():
    # the old table put '3→1' into an integer column; rows shrink 3 -> 1 over 12 steps
    r = pc.cost(pc.RecurrentSpec("gru", 4, 6), pc.Workload.packed([12, 9, 3]))
    t = r.table("gemm")
    rec = next(x for x in t.records() if x["gemm"] == "recurrent")
    assert (rec["M"], rec["M_last"], rec["calls"]) == (3, 1, 12)
    # real steps: 12 + 9 + 3 = 24 rows of 6x18 each
    assert rec["macs"] == 24 * 6 * 18


def _read_back(path, suffix):
    import pandas as pd

    if suffix == ".csv":
        return pd.read_csv(path, keep_default_na=True)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".xlsx":
        return pd.read_excel(path)
    return None


def _same(a, b, suffix="") -> bool:
    if isinstance(a, str) and suffix in (".csv", ".xlsx") and a.startswith(("=", "+", "-", "@")):
        return b == "'" + a  # a spreadsheet must not run it as a formula
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b)) or b is pd_na()
    if isinstance(a, tuple):
        return (
            list(b) == list(a) or str(b) == "(" + ", ".join(map(str, a)) + ("," if len(a) == 1 else "") + ")"
        )
    if isinstance(a, bool):
        return bool(b) == a or str(b) in (str(a), "yes" if a else "no")
    if isinstance(a, float):
        return math.isclose(float(b), a, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, int):
        return int(b) == a
    return str(b) == a


def pd_na():
    import pandas as pd

    return pd.NA


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("name", RESULTS)
def test_every_result_view_and_suffix_exports_and_reads_back(name, suffix, tmp_path):
    pytest.importorskip("pandas")
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    if suffix == ".xlsx":
        pytest.importorskip("openpyxl")
    r = RESULTS[name]
    for view in r.VIEWS:
        path = tmp_path / f"{name}-{view}{suffix}"
        r.export(path, view)
        t = r.table(view)
        if suffix == ".json":
            data = json.loads(path.read_text())
            assert data["rows"] == [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in rec.items()} for rec in t.records()
            ]
            continue
        if suffix in (".md", ".html", ".tex"):
            text = path.read_text()
            for col in t.names:
                assert col.replace("_", "\\_") in text or col in text, (name, view, col)
            continue
        frame = _read_back(path, suffix)
        assert list(frame.columns) == t.names
        assert len(frame) == len(t.rows)
        for i, col in enumerate(t.columns):
            for j, row in enumerate(t.rows):
                got = frame.iloc[j, i]
                got = None if got is pd_na() or (isinstance(got, float) and math.isnan(got)) else got
                if row[i] is None:
                    assert got is None or got == "", (name, view, col.name, got)
                else:
                    assert _same(row[i], got, suffix), (name, view, suffix, col.name, row[i], got)
        if suffix == ".parquet":  # the dtypes survive
            for col in t.columns:
                if col.kind == "int":
                    assert str(frame[col.name].dtype) == "Int64"
                if col.kind == "float":
                    assert str(frame[col.name].dtype) == "Float64"


def test_integers_beyond_int64_are_written_losslessly(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    huge = pc.RecurrentSpec("lstm", 2**31 - 1, 2**31 - 1, num_layers=10_000, bidirectional=True)
    r = pc.count(huge)
    # by hand: per layer and direction 4(Dh·d + Dh·Dh + 2Dh), layers > 0 take 2Dh
    h = 2**31 - 1
    want = 2 * (4 * (h * h + h * h + 2 * h) + 9_999 * 4 * (h * 2 * h + h * h + 2 * h))
    assert r.total == want > 2**63
    path = tmp_path / "big.parquet"
    r.export(path, "total")
    back = pd.read_parquet(path)
    assert int(back["params"][0]) == want
    meta = json.loads((r.export(tmp_path / "big.json", "total")).read_text())
    assert meta["rows"][0]["params"] == want and meta["total"] == want


WRONG = [
    (pc.count, ("lstm",), "count(spec) takes a RecurrentSpec"),
    (pc.count, (28,), "count needs a RecurrentSpec"),
    (pc.total_params, ({},), "total_params needs a RecurrentSpec"),
    (pc.cost, ("lstm", None), "cost needs a RecurrentSpec"),
    (pc.cost, (SEED, "64x28"), "cost needs a Workload"),
    (pc.solve_budget, (None, "1M"), "solve_budget needs a RecurrentSpec"),
    (pc.solve_budget, (SEED, 3.5), "budget must be"),
    (pc.match_hidden, ([1, 2],), "match_hidden needs a RecurrentSpec"),
    (compare, (3.5,), "compare needs a RecurrentSpec"),
    (sweep, ("lstm",), "sweep needs a RecurrentSpec"),
    (explain, (None,), "explain needs a RecurrentSpec"),
    (pc.count_architecture, (SEED,), "count_architecture needs an Architecture"),
    (pc.parse_count, (object(),), "budget must be a number"),
]


@pytest.mark.parametrize(
    "fn,args,message", WRONG, ids=[f"{f.__name__}-{i}" for i, (f, _, _) in enumerate(WRONG)]
)
def test_a_wrong_type_is_one_paramcalc_error_line(fn, args, message):
    with pytest.raises(pc.ParamcalcError) as info:
        fn(*args)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_dir_lists_the_lazy_functions():
    names = dir(pc)
    for name in ("check", "analyze", "compare", "sweep", "bench", "inspect", "spec_from_module", "explain"):
        assert name in names
