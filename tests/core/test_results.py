"""The result protocol, typed tables and rendering, for every analytic result.

What is printed and what is saved are the same table: each view's JSON and CSV renderings hold
exactly ``table(view)``'s rows, and every text format draws its non-wide columns.
"""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
from tabulate import tabulate_formats

import paramcalc as pc
from paramcalc import RecurrentSpec, Status, Workload
from paramcalc.core.architecture import count_architecture, load_architecture
from paramcalc.render.draw import (
    MACHINE_FORMATS,
    MARKDOWN_FORMATS,
    cell_text,
    fmt_float,
    render,
    sig,
    table_formats,
)
from paramcalc.results.table import Column, Table
from paramcalc.results.text import fmt_bytes, fmt_seconds, safe_text
from tests.helpers import ARCHS

LSTM = RecurrentSpec("lstm", 28, 256, num_layers=2)


def analytic_results() -> list[pc.Result]:
    return [
        pc.count(LSTM),
        pc.cost(LSTM, Workload(batch=64, seq_len=28, mode="training")),
        pc.solve_budget(LSTM, "1.5M", cells=["rnn", "lstm"]),
        pc.match_hidden(LSTM),
        pc.compare(LSTM, equal="params"),
        pc.sweep(LSTM, cells="rnn,gru", hidden_sizes=[64, 128]),
        count_architecture(load_architecture(ARCHS / "awd_lstm_lm.toml")),
        pc.explain(LSTM),
    ]


CASES = [(r, v) for r in analytic_results() for v in r.VIEWS]
IDS = [f"{type(r).__name__}-{v}" for r, v in CASES]


@pytest.mark.parametrize("result, view", CASES, ids=IDS)
def test_json_holds_the_table(result, view):
    data = json.loads(result.render("json", view))
    table = result.table(view)
    expected = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in rec.items()} for rec in table.records()
    ]
    assert data["rows"] == expected
    assert {k: v for k, v in data.items() if k != "rows"} == json.loads(
        json.dumps(result.json_meta(), default=str)
    )


@pytest.mark.parametrize("result, view", CASES, ids=IDS)
def test_csv_holds_every_column(result, view):
    rows = list(csv.reader(io.StringIO(result.render("csv", view))))
    table = result.table(view)
    assert rows[0] == table.names and len(rows) == len(table.rows) + 1
    for rec, line in zip(table.records(), rows[1:], strict=True):
        for (name, value), text in zip(rec.items(), line, strict=True):
            if isinstance(value, int) and not isinstance(value, bool):
                assert int(text) == value, name  # exact, no thousands separators


@pytest.mark.parametrize("result, view", CASES, ids=IDS)
def test_text_shows_title_and_the_non_wide_columns(result, view):
    text = result.render("simple", view)
    table = result.table(view)
    header = result.header()
    assert text.splitlines()[: len(header)] == header
    first_row = text.splitlines()[len(header)]
    shown = [c.name for c in table.columns if not c.wide]
    hidden = [c.name for c in table.columns if c.wide]
    assert first_row.split() == shown
    assert all(name not in first_row.split() for name in hidden)
    assert result.render("simple", view, wide=True).splitlines()[len(header)].split() == table.names
    for line in result.footer(view):
        assert line in text
    assert str(result) == result.render()


@pytest.mark.parametrize("fmt", tabulate_formats)
def test_every_tabulate_format(fmt):
    r = pc.count(RecurrentSpec("rnn", 3, 4))
    text = r.render(fmt)
    assert "weight_ih_l0" in text.replace("\\_", "_")
    if fmt in MACHINE_FORMATS:
        assert "total:" not in text  # markup stays clean for pasting into a document
        assert not text.startswith("RNN(3, 4)")
    elif fmt in MARKDOWN_FORMATS:  # the title and footer lines are Markdown-escaped too
        assert text.startswith("RNN\\(3, 4\\)  \\[") and text.endswith("total: 36 parameters")
    else:
        assert text.startswith("RNN(3, 4)  [") and text.endswith("total: 36 parameters")  # 4·3 + 4·4 + 2·4


def test_table_formats_lists_csv_and_json():
    assert table_formats() == [*tabulate_formats, "csv", "json", "markdown"]


def test_unknown_view_is_one_line():
    with pytest.raises(pc.ParamcalcError) as info:
        pc.count(LSTM).render("simple", "memory")
    assert str(info.value) == "CountResult has no view 'memory': expected one of tensor, layer, total"


def test_repr_and_html():
    r = pc.cost(LSTM, Workload(batch=64, seq_len=28))
    assert (
        repr(r) == "<CostResult: LSTM(28, 256, num_layers=2), B=64 T=28 fp32 inference: 2,940,600,320 FLOPs>"
    )
    html = r._repr_html_()
    assert html.startswith("<p><b>LSTM(28, 256, num_layers=2)  [B=64 T=28 fp32 inference]</b></p><table>")
    assert "input_size" in html  # notebooks see every column


def test_status_values():
    assert Status.OK == "ok" and str(Status.NOT_OBSERVABLE) == "not observable"
    assert Status("counted, no formula") is Status.NO_FORMULA


# --- tables ------------------------------------------------------------------------------------

T = Table(
    (
        Column("a", "str"),
        Column("n"),
        Column("f", "float"),
        Column("b", "bool"),
        Column("s", "shape"),
        Column("w", wide=True),
    ),
    (("x", 1_234_567, 0.5, True, (3,), 1), (None, None, None, False, (2, 3), 2)),
)


def test_table_accessors():
    assert T.names == ["a", "n", "f", "b", "s", "w"]
    assert T.column("s") == [(3,), (2, 3)]
    assert T.records()[1] == {"a": None, "n": None, "f": None, "b": False, "s": (2, 3), "w": 2}
    assert T.select(wide=False).names == ["a", "n", "f", "b", "s"]
    assert T.select(wide=True) is T
    assert Table.from_records(T.columns[:2], [{"a": "y"}]).rows == (("y", None),)
    with pytest.raises(ValueError, match="row has 2 values for 1 columns"):
        Table((Column("a"),), ((1, 2),))


def test_to_frame_has_nullable_dtypes_and_exact_big_ints():
    df = T.to_frame()
    assert [str(t) for t in df.dtypes] == ["string", "Int64", "Float64", "boolean", "object", "Int64"]
    assert df["s"].tolist() == [(3,), (2, 3)]
    big = Table((Column("n"),), ((2**70,), (1,)))
    assert big.overflowing() == ["n"]
    assert big.to_frame()["n"].tolist() == [2**70, 1]  # exact Python ints in an object column


def test_render_text_csv_json():
    assert render(T).splitlines() == [
        "a            n       f  b    s",
        "---  ---------  ------  ---  ------",
        "x    1,234,567  0.5000  yes  (3,)",
        "                        no   (2, 3)",
    ]
    assert render(T, "csv").splitlines() == [
        "a,n,f,b,s,w",
        'x,1234567,0.5,True,"(3,)",1',
        ',,,False,"(2, 3)",2',
    ]
    assert json.loads(render(T, "json", meta={"k": 1})) == {
        "k": 1,
        "rows": [
            {"a": "x", "n": 1_234_567, "f": 0.5, "b": True, "s": [3], "w": 1},
            {"a": None, "n": None, "f": None, "b": False, "s": [2, 3], "w": 2},
        ],
    }


@pytest.mark.parametrize(
    "x, text",
    [
        (0.0, "0"),
        (12345.6, "12,350"),
        (0.51234, "0.5123"),
        (0.000123456, "0.0001235"),
        (99999.9, "100,000"),
        (-2.5, "-2.500"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (-float("inf"), "-inf"),
    ],
)
def test_fmt_float_four_significant_digits(x, text):
    assert fmt_float(x) == text


def test_sig_and_units():
    assert sig(123456, 2) == 120000 and sig(0.012345, 3) == 0.0123 and math.isnan(sig(float("nan")))
    assert [fmt_bytes(n) for n in (1023, 1024, 3 * 2**20 + 5, 3 * 2**40)] == [
        "1,023 B",
        "1.00 KiB",
        "3.00 MiB",
        "3.00 TiB",
    ]
    assert [fmt_seconds(s) for s in (2.5, 0.0012345, 5.67e-5)] == ["2.5 s", "1.234 ms", "56.7 µs"]


def test_untrusted_text_is_escaped():
    assert safe_text("a\x1b[31mb\u2028c\ud800\x7f") == "a\\x1b[31mb\\u2028c\\ud800\\x7f"
    assert safe_text("plain ⊙ text") == "plain ⊙ text"
    assert cell_text("\x07bell", Column("x", "str")) == "\\x07bell"
    table = Table((Column("name", "str"),), (("evil\x1b]0;title\x07",),))
    for fmt in ("simple", "csv", "json", "html"):
        out = render(table, fmt, header=["head\x1b[2J"], footer=["foot\r"])
        assert "\x1b" not in out and "\x07" not in out and "\r" not in out
