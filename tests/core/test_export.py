"""Export by suffix (``result.export`` / ``--output``): every format, atomic writes, one-line errors.

Expected tables are the counts written out by hand: LSTM(28, 256, 2), layer 0 =
4(256·28 + 256·256 + 2·256) = 292,864, layer 1 = 4(2·256·256 + 2·256) = 526,336.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import stat
import threading
from pathlib import Path

import pandas as pd
import pytest

from paramcalc import ParamcalcError, RecurrentSpec, count
from paramcalc.core.writes import Terminated, atomic_write
from paramcalc.render.export import SUFFIXES, check_export_target, export_table, neutralise
from paramcalc.results.table import Column, Table
from tests.helpers import invoke, one_line_error

LAYERS = [4 * (256 * 28 + 256 * 256 + 512), 4 * (2 * 256 * 256 + 512)]
RESULT = count(RecurrentSpec("lstm", 28, 256, num_layers=2))
COUNT = ["count", "lstm", "-d", "28", "-H", "256", "-L", "2"]
ROOT_WRITES_ANYWHERE = hasattr(os, "geteuid") and os.geteuid() == 0


def leftovers(folder: Path) -> list[str]:
    """Temporary files atomic_write may have left (``.paramcalc-XXXX.tmp``)."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def read_back(path: Path) -> pd.DataFrame:
    readers = {
        ".csv": pd.read_csv,
        ".json": lambda p: pd.DataFrame(json.loads(Path(p).read_text())["rows"]),
        ".parquet": pd.read_parquet,
        ".xlsx": pd.read_excel,
    }
    return readers[path.suffix.lower()](path)


# --- every suffix -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet", ".xlsx"])
def test_data_formats_round_trip(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    if suffix == ".xlsx":
        pytest.importorskip("openpyxl")
    path = tmp_path / f"layers{suffix}"
    assert RESULT.export(path, "layer") == path
    frame = read_back(path)
    assert frame["params"].tolist() == LAYERS
    assert frame["formula"].tolist() == ["4(Dh·d + Dh·Dh + 2Dh)", "4(Dh·Dh + Dh·Dh + 2Dh)"]
    assert list(frame.columns) == RESULT.table("layer").names
    assert leftovers(tmp_path) == []


def test_json_carries_meta_and_exact_ints(tmp_path):
    RESULT.export(tmp_path / "t.json")
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["total"] == 819_200 and data["spec"]["hidden_size"] == 256
    assert len(data["rows"]) == 8 and data["rows"][0]["shape"] == [1024, 28]


@pytest.mark.parametrize(
    "suffix,needles",
    [
        (
            ".md",
            [
                "# LSTM\\(28, 256, num_layers=2\\)",
                "- **total**: 819,200",
                "| direction",
                "|--",
                "292,864",
                "total: 819,200",
            ],
        ),
        (
            ".html",
            [
                "<!DOCTYPE html>",
                "<h1>LSTM(28, 256, num_layers=2)",
                "<table",
                "<th>params",
                "292,864",
                "</html>",
            ],
        ),
        (".tex", ["\\toprule", "\\midrule", "\\bottomrule", "292,864"]),
    ],
)
def test_text_formats(tmp_path, suffix, needles):
    path = tmp_path / f"t{suffix}"
    RESULT.export(path, "layer")
    text = path.read_text()
    for needle in needles:
        assert needle in text
    assert text.endswith("\n")


def test_markdown_links_a_plot(tmp_path):
    path = tmp_path / "r.md"
    RESULT.export(path, links=[("plot", "r.png")])
    assert "![plot](r.png)" in path.read_text()


def test_suffix_is_case_insensitive(tmp_path):
    RESULT.export(tmp_path / "T.CSV", "layer")
    assert pd.read_csv(tmp_path / "T.CSV")["params"].tolist() == LAYERS


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_suffix_through_the_cli(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    if suffix == ".xlsx":
        pytest.importorskip("openpyxl")
    path = tmp_path / f"count{suffix}"
    r = invoke(*COUNT, "--by", "layer", "--output", path)
    assert r.exit_code == 0, r.output
    assert r.stderr == f"wrote {path}\n"
    assert "292,864" in r.stdout  # the table is printed as well
    assert path.stat().st_size > 0 and leftovers(tmp_path) == []
    if suffix in (".csv", ".json", ".parquet", ".xlsx"):
        assert read_back(path)["params"].tolist() == LAYERS


# --- lossless and safe --------------------------------------------------------------------------

BIG = Table(
    (Column("name", "str"), Column("n"), Column("shape", "shape")),
    (("=HYPERLINK(1)", 2**70, (3,)), ("\x1b[31mred", None, (2, 3))),
)


def test_big_integers_stay_exact(tmp_path):
    pytest.importorskip("pyarrow")
    pytest.importorskip("openpyxl")
    import openpyxl

    export_table(BIG, tmp_path / "b.parquet")
    assert pd.read_parquet(tmp_path / "b.parquet")["n"].tolist()[0] == str(2**70)
    export_table(BIG, tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text())["rows"][0]["n"] == 2**70
    export_table(BIG, tmp_path / "b.csv")
    assert (tmp_path / "b.csv").read_text().splitlines()[1].split(",")[1] == str(2**70)
    export_table(BIG, tmp_path / "b.xlsx")
    cell = openpyxl.load_workbook(tmp_path / "b.xlsx").active["B2"]
    assert cell.value == str(2**70) and cell.data_type == "s"  # text: an Excel number is a double
    export_table(BIG, tmp_path / "b.md")
    assert "integers beyond" not in (tmp_path / "b.md").read_text()  # markdown shows text anyway


def test_lossless_note_reaches_the_user(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "big.parquet"
    # LSTM(2**31 - 1, 2**31 - 1): every layer has 4(2h² + 2h) > 2**63 parameters
    r = invoke("count", "lstm", "-d", 2**31 - 1, "-H", 2**31 - 1, "-L", "2", "--by", "layer", "-o", path)
    assert r.exit_code == 0, r.output
    assert pd.read_parquet(path)["params"].tolist()[0] == str(4 * (2 * (2**31 - 1) ** 2 + 2 * (2**31 - 1)))
    metadata = b" ".join(pq.read_table(path).schema.metadata.values())
    assert b"decimal text" in metadata or "decimal text" in r.stderr


def test_spreadsheet_formulas_and_control_characters_are_neutralised(tmp_path):
    pytest.importorskip("openpyxl")
    import openpyxl

    assert [neutralise(s) for s in ("=1+1", "+1", "-1", "@x", "\tx", "\rx", "ok")] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@x",
        "'\tx",
        "'\rx",
        "ok",
    ]
    export_table(BIG, tmp_path / "b.csv")
    text = (tmp_path / "b.csv").read_text()
    assert "'=HYPERLINK(1)" in text and "\x1b" not in text and "\\x1b[31mred" in text
    export_table(BIG, tmp_path / "b.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "b.xlsx").active
    assert ws["A2"].value == "'=HYPERLINK(1)" and ws["A3"].value == "\\x1b[31mred"
    export_table(BIG, tmp_path / "b.json")
    assert "\x1b" not in (tmp_path / "b.json").read_text()


# --- atomicity --------------------------------------------------------------------------------


def test_failure_mid_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "report.csv"
    target.write_text("old contents\n")

    def half_then_crash(tmp: str) -> None:
        Path(tmp).write_text("cell,hidden_size\nrnn,")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError, match="crash mid-write"):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "old contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]


def test_disk_full_mid_export_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "report.csv"
    target.write_text("old contents\n")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(ParamcalcError) as info:
        RESULT.export(target)
    assert str(info.value) == f"cannot write {str(target)!r}: No space left on device"
    assert target.read_text() == "old contents\n" and leftovers(tmp_path) == []


def test_disk_full_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    target = tmp_path / "c.json"
    r = invoke(*COUNT, "--output", target)
    assert r.exit_code == 2 and r.stderr == f"Error: cannot write {str(target)!r}: No space left\n"
    assert not target.exists() and leftovers(tmp_path) == []


def test_failing_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("{}")

    def no_rename(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(ParamcalcError, match="Permission denied"):
        RESULT.export(target)
    assert target.read_text() == "{}" and leftovers(tmp_path) == []


def test_interrupt_mid_write_cleans_up(tmp_path):
    target = tmp_path / "r.md"

    def interrupted(tmp: str) -> None:
        Path(tmp).write_text("| cell")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals: main thread")
def test_sigterm_mid_write_cleans_up_and_exits_143(tmp_path):
    target = tmp_path / "r.csv"
    target.write_text("old")
    before = signal.getsignal(signal.SIGTERM)

    def terminated(tmp: str) -> None:
        Path(tmp).write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Terminated) as info:
        atomic_write(target, terminated)
    assert info.value.code == 143
    assert target.read_text() == "old" and leftovers(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_sigterm_during_an_export_exits_143_with_one_line(tmp_path, monkeypatch):
    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(os, "fsync", terminated)  # SIGTERM arrives while the temporary file is written
    r = invoke(*COUNT, "--output", tmp_path / "c.csv")
    assert (r.exit_code, r.stderr) == (143, "Terminated.\n")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_keeps_the_permissions(tmp_path):
    target = tmp_path / "r.csv"
    target.write_text("old")
    target.chmod(0o640)
    RESULT.export(target, "layer")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert pd.read_csv(target)["params"].tolist() == LAYERS


def test_new_file_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        RESULT.export(tmp_path / "new.csv")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.csv").stat().st_mode) == 0o644


def test_a_symlink_is_written_through(tmp_path):
    real = tmp_path / "real.csv"
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    RESULT.export(link, "layer")
    assert link.is_symlink() and pd.read_csv(real)["params"].tolist() == LAYERS


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("module,suffix", [("pyarrow", ".parquet"), ("openpyxl", ".xlsx")])
def test_missing_optional_package_is_one_line(tmp_path, monkeypatch, module, suffix):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == module else real(n, *a))
    path = tmp_path / f"t{suffix}"
    with pytest.raises(ParamcalcError, match="pip install 'paramcalc\\[export\\]'"):
        RESULT.export(path)
    line = one_line_error(invoke(*COUNT, "--output", path))
    assert line == f"Error: writing {suffix} files needs {module}: pip install 'paramcalc[export]'"
    assert not path.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "name, shown", [("table.txt", "'.txt'"), ("table", "'(none)'"), ("table.xls", "'.xls'")]
)
def test_unknown_suffix_is_one_line(tmp_path, name, shown):
    r = invoke(*COUNT, "--output", tmp_path / name)
    line = one_line_error(r)  # checked before the table is printed: stdout stays empty
    assert f"unknown suffix {shown}, expected one of .csv, .json, .md, .html, .tex, .parquet, .xlsx" in line
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_one_line(tmp_path):
    line = one_line_error(invoke(*COUNT, "--output", tmp_path / "nope" / "t.csv"))
    assert "does not exist" in line and "nope" in line


def test_a_folder_in_the_way_is_one_line(tmp_path):
    (tmp_path / "t.csv").mkdir()
    with pytest.raises(ParamcalcError, match="it is a folder"):
        RESULT.export(tmp_path / "t.csv")


def test_a_fifo_in_the_way_is_one_line(tmp_path):
    os.mkfifo(tmp_path / "t.csv")
    with pytest.raises(ParamcalcError, match="it is not a regular file"):
        RESULT.export(tmp_path / "t.csv")


def test_too_long_file_name_is_one_line(tmp_path):
    line = one_line_error(invoke(*COUNT, "--output", tmp_path / ("a" * 300 + ".csv")))
    assert "longer than" in line


@pytest.mark.skipif(ROOT_WRITES_ANYWHERE, reason="root writes anywhere")
def test_read_only_folder_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ParamcalcError, match="is not writable"):
            RESULT.export(folder / "t.csv")
    finally:
        folder.chmod(0o700)


@pytest.mark.skipif(ROOT_WRITES_ANYWHERE, reason="root writes anywhere")
def test_read_only_file_is_one_line(tmp_path):
    target = tmp_path / "t.csv"
    target.write_text("old")
    target.chmod(0o400)
    with pytest.raises(ParamcalcError, match="the file is read-only"):
        RESULT.export(target)


def test_check_export_target_runs_before_any_work(tmp_path):
    assert check_export_target(tmp_path / "A.MD") == (tmp_path / "A.MD", ".md")
    with pytest.raises(ParamcalcError, match="unknown suffix"):
        check_export_target(tmp_path / "a.docx")
