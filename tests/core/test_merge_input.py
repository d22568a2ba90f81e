"""``compare --from``: a saved-runs JSON is untrusted input (issue 22). Every malformed or absurd
value is one line and exit 2; device names are kept as data, whatever they hold.

The exports are written by hand here (the ``runs`` schema of ``paramcalc.timing.runs``), so
these tests need no torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paramcalc import ParamcalcError, RecurrentSpec, Workload
from paramcalc.timing.merge import merge_files
from paramcalc.timing.runs import MAX_SECONDS, MAX_THREADS, load_runs
from tests.helpers import invoke, one_line_error


def run_record(**changes: object) -> dict[str, object]:
    rec: dict[str, object] = {
        "spec": RecurrentSpec("lstm", 4, 8).to_dict(),
        "workload": Workload(2, 3).to_dict(),
        "device": "cpu",
        "device_name": "Some CPU",
        "threads": 2,
        "torch": "2.13.0",
        "kernel": None,
        "measured_s": 0.001,
        "iqr_s": 0.0001,
        "times_s": [0.001],
        "predicted_s": 0.0008,
        "bound_applies": True,
    }
    rec.update(changes)
    return rec


def export(tmp_path: Path, text: str, name: str = "runs.json") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def doc_text(*runs: dict[str, object]) -> str:
    return json.dumps({"runs_schema": 1, "runs": list(runs)})


def with_raw(field: str, literal: str) -> str:
    """A valid export whose run 0 has ``field`` set to a raw JSON literal (no Python float)."""
    return doc_text(run_record(**{field: "@@"})).replace('"@@"', literal)


def test_a_hand_written_export_loads(tmp_path):
    (run,) = load_runs(export(tmp_path, doc_text(run_record())))
    assert run.measured_s == 0.001 and run.predicted_s == 0.0008 and run.threads == 2


@pytest.mark.parametrize(
    ("field", "literal", "words"),
    [
        ("measured_s", "1" + "0" * 400, "finite number of seconds"),  # was OverflowError (exit 3)
        ("predicted_s", "-" + "9" * 400, "finite number of seconds"),
        ("measured_s", "1e300", "positive number of seconds"),
        ("measured_s", "1e-300", "positive number of seconds"),
        ("predicted_s", "0", "positive number of seconds"),
        ("measured_s", "NaN", "finite number of seconds"),
        ("measured_s", "Infinity", "finite number of seconds"),
        ("measured_s", "-1", "positive"),
        ("iqr_s", "-0.5", "positive number of seconds"),
        ("iqr_s", "1e300", "positive number of seconds"),
        ("measured_s", '"fast"', "finite number of seconds"),
        ("threads", "1" + "0" * 400, "'threads' must be an integer"),
        ("threads", str(MAX_THREADS + 1), "'threads' must be an integer"),
        ("threads", "-1", "'threads' must be an integer"),
        ("measured_s", "1" + "0" * 5000, "not valid JSON"),  # beyond Python's digit limit
    ],
)
def test_absurd_numbers_are_one_line(tmp_path, field, literal, words):
    path = export(tmp_path, with_raw(field, literal))
    with pytest.raises(ParamcalcError, match=words) as err:
        load_runs(path)
    msg = str(err.value)
    assert "\n" not in msg and ("run 0" in msg or "not valid JSON" in msg)
    line = one_line_error(invoke("compare", "--from", path))
    assert words in line


@pytest.mark.parametrize(
    ("spec_changes", "words"),
    [
        ({"hidden_size": 10**400}, "run 0"),
        ({"hidden_size": 1.5}, "run 0"),
        ({"hidden_size": True}, "run 0"),
        ({"num_layers": -1}, "run 0"),
        ({"cell": ["lstm"]}, "run 0"),
    ],
)
def test_absurd_specs_are_one_line(tmp_path, spec_changes, words):
    spec = {**RecurrentSpec("lstm", 4, 8).to_dict(), **spec_changes}
    path = export(tmp_path, doc_text(run_record(spec=spec)))
    assert words in one_line_error(invoke("compare", "--from", path))


@pytest.mark.parametrize(
    "workload",
    [
        {"batch": 10**400},
        {"lengths": [1, "2"]},
        {"lengths": {"a": 1}},
        {"dtype": None},
        {"batch": 2, "lengths": [1] * 3},
    ],
)
def test_absurd_workloads_are_one_line(tmp_path, workload):
    wl = {**Workload(2, 3).to_dict(), **workload}
    path = export(tmp_path, doc_text(run_record(workload=wl)))
    assert "run 0" in one_line_error(invoke("compare", "--from", path))


def test_deeply_nested_json_is_one_line(tmp_path):
    path = export(tmp_path, "[" * 100_000 + "]" * 100_000)
    assert "nested too deeply" in one_line_error(invoke("compare", "--from", path))


def test_a_seconds_bound_is_physical_not_arbitrary():
    # a day-long training call is a real measurement; a billion seconds (31 years) is not
    assert 86_400 < MAX_SECONDS <= 1e9


def test_device_names_from_a_file_stay_data(tmp_path):
    hostile = "<script>alert(1)</script> [x](javascript:alert(1)) |\x1b[31m|=HYPERLINK(1)"
    path = export(tmp_path, doc_text(run_record(device_name=hostile, torch="2.13.0\u202e")))
    merged = merge_files([path])
    assert merged.devices == [hostile]  # kept as it was: each renderer escapes it for its format
    assert merged.table().column("device_name") == [hostile]
    assert merged.runs[0].torch == "2.13.0\u202e"
