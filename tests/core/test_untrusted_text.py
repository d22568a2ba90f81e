"""Untrusted text is data in every format (issue 22): names from files reach Markdown escaped,
spreadsheets neutralised (CSV and TSV on stdout as in files) and terminals without a control or
Unicode format character. The hostile inputs are built here: an architecture TOML with a hostile
name and description, a ``compare --from`` JSON export with a hostile device name. The file
readers' tensor names (safetensors) go through the same paths in tests/torch/test_untrusted_files.py.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import unicodedata

import pytest

from paramcalc.render.draw import md_text, neutralise
from paramcalc.results.text import safe_text
from tests.helpers import invoke

SCRIPT = "<script>alert(1)</script>"
LINK = "[click](javascript:alert(1))"
FORMULAS = ('=HYPERLINK("http://evil","x")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3+cmd|x")
INVISIBLE = ("\x1b[31m", "\u202e", "\u2066", "\u2069", "\u200b", "\u200d", "\ufeff", "\x9b", "\u2028")
HOSTILE = " ".join([SCRIPT, LINK, *INVISIBLE])

#: What no Markdown output may hold raw (an HTML tag, a link, an entity).
MARKDOWN_RAW = re.compile(r"(?<!\\)<script|(?<!\\)\[click(?<!\\)\]|(?<!\\)\]\(javascript|(?<!\\)&\w+;")


def no_invisible(text: str) -> None:
    """No control (but newline/tab), no Unicode format character, no separator reaches the output."""
    for ch in text:
        if ch in "\n\t":
            continue
        assert unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp", "Cs"), (hex(ord(ch)), text[:200])


def no_live_formula(rows: list[list[str]], columns: set[str] | None = None) -> None:
    """No cell of a text column starts a spreadsheet formula (numbers may be negative)."""
    header = rows[0]
    for row in rows:
        for name, cell in zip(header, row, strict=True):
            if columns is None or name in columns:
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (name, cell)


# --- the escaping functions -------------------------------------------------------------------


def test_safe_text_escapes_every_unicode_format_character():
    # every code point Unicode calls a format character (Cf), a control (Cc), a separator of
    # lines or paragraphs (Zl, Zp) or a surrogate, per this Python's Unicode database
    bad = [
        chr(cp)
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) in ("Cc", "Cf", "Zl", "Zp", "Cs")
    ]
    assert len(bad) > 200  # 65 controls, 2 separators, 2,048 surrogates, 160+ format characters
    text = safe_text("".join(bad))
    assert text.isascii() and text.isprintable()
    assert safe_text("a\u202eb") == "a\\u202eb" and safe_text("\U000e0041") == "\\U000e0041"
    assert safe_text("σ(x·Wᵀ) ⊙ h − 2·Dh µs ×") == "σ(x·Wᵀ) ⊙ h − 2·Dh µs ×"  # symbols stay


def test_markdown_escaping_leaves_no_tag_link_or_entity():
    text = md_text(f"{SCRIPT} {LINK} &amp; a|b `code` *em* \\")
    assert "<" not in text.replace("\\<", "") and ">" not in text.replace("\\>", "")
    assert text == (
        "\\<script\\>alert\\(1\\)\\</script\\> \\[click\\]\\(javascript:alert\\(1\\)\\) "
        "\\&amp; a\\|b \\`code\\` \\*em\\* \\\\"
    )


def test_neutralise_rule():
    assert [neutralise(f) for f in FORMULAS] == ["'" + f for f in FORMULAS]
    assert neutralise("lstm") == "lstm"


# --- a TOML architecture with a hostile name and description ------------------------------------


@pytest.fixture
def hostile_toml(tmp_path):
    path = tmp_path / "hostile.toml"
    name = FORMULAS[0] + " " + SCRIPT
    path.write_text(
        f"name = {json.dumps(name)}\n"
        f"description = {json.dumps(HOSTILE + ' ' + FORMULAS[1])}\n"
        "[[component]]\nname = 'rnn'\nkind = 'lstm'\ninput_size = 4\nhidden_size = 8\n"
        "[[component]]\nname = 'head'\nkind = 'linear'\nout_features = 2\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    "fmt", ["simple", "grid", "plain", "github", "pipe", "markdown", "html", "unsafehtml"]
)
def test_toml_title_in_every_table_format(hostile_toml, fmt):
    r = invoke("report", hostile_toml, "--by", "total", "-f", fmt)
    assert r.exit_code == 0, r.output
    no_invisible(r.stdout)
    if fmt in ("github", "pipe", "markdown"):
        assert not MARKDOWN_RAW.search(r.stdout), r.stdout
        assert "\\<script\\>" in r.stdout  # the name is there, as text
    if fmt in ("html", "unsafehtml"):
        assert "<script>" not in r.stdout and "&lt;script&gt;" in r.stdout


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_toml_name_on_stdout_is_no_live_formula(hostile_toml, fmt):
    r = invoke("report", hostile_toml, "--by", "total", "-f", fmt)
    assert r.exit_code == 0, r.output
    no_invisible(r.stdout.replace("\t", " "))
    delimiter = "," if fmt == "csv" else "\t"
    rows = [[c.strip() for c in row] for row in csv.reader(io.StringIO(r.stdout), delimiter=delimiter)]
    assert rows[1][0] == "'" + FORMULAS[0] + " " + SCRIPT  # the name, neutralised
    no_live_formula(rows, {"architecture"})


def test_csv_on_stdout_is_the_csv_file(hostile_toml, tmp_path):
    out = tmp_path / "a.csv"
    r = invoke("report", hostile_toml, "--by", "total", "-f", "csv", "-o", out)
    assert r.exit_code == 0, r.output
    assert r.stdout == out.read_text(encoding="utf-8")  # one writer: stdout and file agree


@pytest.mark.parametrize("suffix", [".md", ".html", ".csv", ".json", ".tex"])
def test_toml_title_in_every_document_export(hostile_toml, tmp_path, suffix):
    out = tmp_path / f"report{suffix}"
    r = invoke("report", hostile_toml, "--by", "component", "-o", out)
    assert r.exit_code == 0, r.output
    text = out.read_text(encoding="utf-8")
    no_invisible(text)
    if suffix == ".html":  # HTML-escaped (a Markdown link in HTML text is only text)
        assert "<script" not in text and "&lt;script&gt;" in text
    if suffix == ".md":
        assert not MARKDOWN_RAW.search(text), text
        assert "# \\=HYPERLINK" not in text and "\\<script\\>alert\\(1\\)" in text
    if suffix == ".csv":
        no_live_formula(list(csv.reader(io.StringIO(text))))


# --- device names from a compare --from JSON export ---------------------------------------------


@pytest.fixture
def hostile_runs(tmp_path):
    run = {
        "spec": {"cell": "lstm", "input_size": 4, "hidden_size": 8},
        "workload": {"batch": 2, "seq_len": 3},
        "device": "cpu",
        "device_name": FORMULAS[2] + " " + HOSTILE,
        "threads": 1,
        "torch": "2.13.0",
        "kernel": "native",
        "measured_s": 0.002,
        "predicted_s": 0.001,
        "bound_applies": True,
    }
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({"runs_schema": 1, "runs": [run, {**run, "device_name": FORMULAS[3]}]}))
    return path


@pytest.mark.parametrize("fmt", ["simple", "github", "markdown", "csv", "tsv", "json"])
def test_device_names_from_json_are_data(hostile_runs, fmt):
    r = invoke("compare", "--from", hostile_runs, "-f", fmt)
    assert r.exit_code == 0, r.output
    no_invisible(r.stdout.replace("\t", " "))
    if fmt in ("github", "markdown"):
        assert not MARKDOWN_RAW.search(r.stdout), r.stdout
    if fmt in ("csv", "tsv"):
        delimiter = "," if fmt == "csv" else "\t"
        rows = [[c.strip() for c in row] for row in csv.reader(io.StringIO(r.stdout), delimiter=delimiter)]
        no_live_formula(rows, {"device_name", "device", "cell", "kernel", "torch", "spec", "file"})
        assert {row[0] for row in rows[1:]} == {
            "'" + FORMULAS[2] + " " + safe_text(HOSTILE),
            "'" + FORMULAS[3],
        }


def test_device_names_in_a_markdown_report(hostile_runs, tmp_path):
    out = tmp_path / "devices.md"
    r = invoke("compare", "--from", hostile_runs, "-o", out)
    assert r.exit_code == 0, r.output
    text = out.read_text(encoding="utf-8")
    no_invisible(text)
    assert not MARKDOWN_RAW.search(text), text
