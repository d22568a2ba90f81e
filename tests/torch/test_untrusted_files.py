"""Tensor names from a file are data in every output (issue 22): a safetensors file whose names
hold an HTML script, a Markdown link, spreadsheet formulas, an escape sequence and bidi and
zero-width characters goes through ``inspect`` to every table format and export; no raw
``<script>`` in markup, no live link or formula, no control or format character comes out. The
file is written here (safetensors' own writer), beside a real LSTM so the table is not only
hostile."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.core.test_untrusted_text import (
    FORMULAS,
    INVISIBLE,
    LINK,
    MARKDOWN_RAW,
    SCRIPT,
    no_invisible,
    no_live_formula,
)
from tests.helpers import invoke

np = pytest.importorskip("numpy")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

NAMES = [SCRIPT, LINK, *FORMULAS, *(f"x{ch}y" for ch in INVISIBLE)]
TEXT_COLUMNS = {"module", "type", "layer", "formula", "status", "detail", "name"}
MARKUP = ("github", "markdown", "pipe", "html", "unsafehtml")


@pytest.fixture(scope="module")
def hostile_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "hostile.safetensors"
    tensors = {f"{n}.weight": np.zeros((2, 3), dtype=np.float32) for n in NAMES}
    tensors |= {
        "lstm.weight_ih_l0": np.zeros((16, 3), np.float32),
        "lstm.weight_hh_l0": np.zeros((16, 4), np.float32),
        "lstm.bias_ih_l0": np.zeros((16,), np.float32),
        "lstm.bias_hh_l0": np.zeros((16,), np.float32),
    }
    safetensors_numpy.save_file(tensors, str(path))
    return path


def table_rows(text: str, fmt: str) -> list[list[str]]:
    if fmt == "csv":
        return list(csv.reader(io.StringIO(text)))
    rows = [[c.strip() for c in line.split("\t")] for line in text.splitlines()]
    return [r + [""] * (len(rows[0]) - len(r)) for r in rows]  # tabulate drops trailing empty cells


@pytest.mark.parametrize("by", ["module", "tensor"])
@pytest.mark.parametrize("fmt", ["simple", "grid", *MARKUP])
def test_tensor_names_in_every_table_format(hostile_file, fmt, by):
    r = invoke("inspect", hostile_file, "--by", by, "-f", fmt)
    assert r.exit_code == 0, r.output
    no_invisible(r.stdout)
    if fmt in MARKUP:  # markup: no tag, no link
        assert "<script" not in r.stdout.replace("\\<script", "")
    if fmt in ("github", "markdown", "pipe"):
        assert not MARKDOWN_RAW.search(r.stdout), r.stdout
    if by == "module":
        assert "lstm" in r.stdout and "144" in r.stdout  # 4·(4·3 + 4·4 + 2·4): the real layer is read


def test_tensor_names_in_json_are_the_names(hostile_file):
    r = invoke("inspect", hostile_file, "--by", "tensor", "-f", "json")
    assert r.exit_code == 0, r.output
    no_invisible(r.stdout)
    names = {row["name"] for row in json.loads(r.stdout)["rows"]}
    assert {f"{n}.weight" for n in (SCRIPT, LINK, *FORMULAS)} <= names  # data, kept as it is
    assert "x\\u202ey.weight" in names  # a format character, shown escaped


@pytest.mark.parametrize("by", ["module", "tensor"])
@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_tensor_names_on_stdout_are_no_live_formulas(hostile_file, fmt, by):
    r = invoke("inspect", hostile_file, "--by", by, "-f", fmt)
    assert r.exit_code == 0, r.output
    no_invisible(r.stdout.replace("\t", " "))
    rows = table_rows(r.stdout, fmt)
    no_live_formula(rows, TEXT_COLUMNS)
    first = {row[0] for row in rows[1:]}
    assert "'" + FORMULAS[0] + (".weight" if by == "tensor" else "") in first


@pytest.mark.parametrize("suffix", [".md", ".html", ".csv", ".json", ".tex", ".xlsx"])
def test_tensor_names_in_every_export(hostile_file, tmp_path, suffix):
    if suffix == ".xlsx":
        pytest.importorskip("openpyxl")
    out = tmp_path / f"inspect{suffix}"
    r = invoke("inspect", hostile_file, "--by", "tensor", "-o", out)
    assert r.exit_code == 0, r.output
    if suffix == ".xlsx":
        import openpyxl

        sheet = openpyxl.load_workbook(out).active
        cells = [str(c.value) for row in sheet.iter_rows() for c in row if c.value]
        no_invisible("\n".join(cells))
        assert not any(c.startswith(("=", "+", "@")) for c in cells)
        return
    text = out.read_text(encoding="utf-8")
    no_invisible(text)
    if suffix in (".md", ".html"):
        assert "<script" not in text.replace("\\<script", "")
    if suffix == ".md":
        assert not MARKDOWN_RAW.search(text), text
    if suffix == ".csv":
        no_live_formula(list(csv.reader(io.StringIO(text))), TEXT_COLUMNS)
