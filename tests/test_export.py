"""Export by suffix (report.export / --output): every format, atomic writes, one-line errors."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import stat
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from paramcalc import ParamcalcError
from paramcalc.cli import cli
from paramcalc.report import SUFFIXES, atomic_write, check_export_target, export
from tests.conftest import one_line_error

FRAME = pd.DataFrame(
    [
        {"cell": "rnn", "hidden_size": 256, "params": 204_800, "time_ms": 5.104},
        {"cell": "lstm", "hidden_size": 256, "params": 819_200, "time_ms": 6.503},
    ]
)
META = {"equal": "hidden", "total": 3}
COUNT = ["count", "lstm", "-d", "28", "-H", "256", "-L", "2"]


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, list(args))


def leftovers(folder: Path) -> list[str]:
    """Temporary files atomic_write may have left (``.NAME.XXXX.tmp``)."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def read_back(path: Path) -> pd.DataFrame:
    readers = {
        ".csv": pd.read_csv,
        ".json": lambda p: pd.DataFrame(json.loads(Path(p).read_text())["rows"]),
        ".parquet": pd.read_parquet,
        ".xlsx": pd.read_excel,
    }
    return readers[path.suffix](path)


# --- every suffix -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".json", ".parquet", ".xlsx"])
def test_data_formats_round_trip(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    if suffix == ".xlsx":
        pytest.importorskip("openpyxl")
    path = tmp_path / f"table{suffix}"
    assert export(FRAME, path, META) == path
    pd.testing.assert_frame_equal(read_back(path), FRAME, check_dtype=False)
    assert leftovers(tmp_path) == []


def test_json_carries_meta(tmp_path):
    export(FRAME, tmp_path / "t.json", META)
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["equal"] == "hidden" and data["total"] == 3 and len(data["rows"]) == 2


@pytest.mark.parametrize(
    "suffix,needles",
    [
        (".md", ["| cell", "|:--", "| lstm", "819200"]),
        (".html", ["<table", "<th>params</th>", "<td>819200</td>", "</table>"]),
        (".tex", ["\\toprule", "\\midrule", "\\bottomrule", "lstm", "819200"]),
    ],
)
def test_text_formats(tmp_path, suffix, needles):
    path = tmp_path / f"t{suffix}"
    export(FRAME, path)
    text = path.read_text()
    for needle in needles:
        assert needle in text
    assert text.endswith("\n")


def test_suffix_is_case_insensitive(tmp_path):
    export(FRAME, tmp_path / "T.CSV")
    assert pd.read_csv(tmp_path / "T.CSV")["params"].tolist() == [204_800, 819_200]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_every_suffix_through_the_cli(run, tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    if suffix == ".xlsx":
        pytest.importorskip("openpyxl")
    path = tmp_path / f"count{suffix}"
    r = run(*COUNT, "--by", "layer", "--output", str(path))
    assert r.exit_code == 0, r.output
    assert f"wrote {path}" in r.stderr
    assert path.stat().st_size > 0 and leftovers(tmp_path) == []
    if suffix in (".csv", ".json", ".parquet", ".xlsx"):
        frame = read_back(path)
        # LSTM(28, 256, 2): layer 0 = 4(256·28 + 256·256 + 2·256), layer 1 = 4(2·256·256 + 2·256)
        assert frame["params"].tolist() == [4 * (256 * 28 + 256 * 256 + 512), 4 * (2 * 256 * 256 + 512)]


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

    def disk_full(self, path, **kwargs):
        Path(path).write_text("cell,hi")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", disk_full)
    with pytest.raises(ParamcalcError) as info:
        export(FRAME, target)
    assert str(info.value) == f"cannot write {str(target)!r}: No space left on device"
    assert target.read_text() == "old contents\n" and leftovers(tmp_path) == []


def test_failing_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("{}")

    def no_rename(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(ParamcalcError, match="Permission denied"):
        export(FRAME, target, META)
    assert target.read_text() == "{}" and leftovers(tmp_path) == []


def test_interrupt_mid_write_cleans_up(tmp_path):
    target = tmp_path / "r.md"

    def interrupted(tmp: str) -> None:
        Path(tmp).write_text("| cell")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert list(tmp_path.iterdir()) == []


def test_overwrite_keeps_the_permissions(tmp_path):
    target = tmp_path / "r.csv"
    target.write_text("old")
    target.chmod(0o640)
    export(FRAME, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert pd.read_csv(target)["cell"].tolist() == ["rnn", "lstm"]


def test_new_file_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        export(FRAME, tmp_path / "new.csv")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.csv").stat().st_mode) == 0o644


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("module,suffix", [("pyarrow", ".parquet"), ("openpyxl", ".xlsx")])
def test_missing_optional_package_is_one_line(run, tmp_path, monkeypatch, module, suffix):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == module else real(n, *a))
    path = tmp_path / f"t{suffix}"
    with pytest.raises(ParamcalcError, match=f"pip install {module}"):
        export(FRAME, path)
    line = one_line_error(run(*COUNT, "--output", str(path)))
    assert line == f"Error: writing {suffix} files needs {module}: pip install {module}"
    assert not path.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["table.txt", "table", "table.xls"])
def test_unknown_suffix_is_one_line(run, tmp_path, name):
    r = run(*COUNT, "--output", str(tmp_path / name))
    assert r.stdout == ""  # checked before the table is printed
    line = one_line_error(r)
    assert "unknown suffix" in line and ".csv, .json, .md, .html, .tex, .parquet, .xlsx" in line
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_one_line(run, tmp_path):
    line = one_line_error(run(*COUNT, "--output", str(tmp_path / "nope" / "t.csv")))
    assert "does not exist" in line and "nope" in line


def test_a_folder_in_the_way_is_one_line(tmp_path):
    (tmp_path / "t.csv").mkdir()
    with pytest.raises(ParamcalcError, match="it is a folder"):
        export(FRAME, tmp_path / "t.csv")


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root writes anywhere")
def test_read_only_folder_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ParamcalcError, match="cannot write"):
            export(FRAME, folder / "t.csv")
    finally:
        folder.chmod(0o700)


def test_check_export_target_runs_before_any_work(tmp_path):
    assert check_export_target(tmp_path / "A.MD") == (tmp_path / "A.MD", ".md")
    with pytest.raises(ParamcalcError, match="unknown suffix"):
        check_export_target(tmp_path / "a.docx")
