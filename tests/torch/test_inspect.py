"""``pc.analyze(module)``, ``pc.inspect(checkpoint)`` and `paramcalc inspect`.

Expected counts come from the torch modules themselves (``parameters()``, ``state_dict()``), and
the specs that checkpoints are read back into are compared with the constructor arguments used
here.
"""

from __future__ import annotations

import json
import pickle
import sys
import textwrap
import zipfile

import pytest
import torch
from torch import nn

import paramcalc as pc
from paramcalc import Status
from paramcalc.checks.inspection import analyze, inspect
from paramcalc.core.architecture import Custom, tensor_formula
from tests.helpers import invoke, one_line_error


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


class Gate(nn.Module):
    """A module paramcalc has no adapter for."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n))


class FastaiWeightDropout(nn.Module):
    """fastai-style weight drop: the raw weight lives on the wrapper, renamed ``*_raw``."""

    def __init__(self, module: nn.Module, names: tuple[str, ...] = ("weight_hh_l0",)) -> None:
        super().__init__()
        self.module = module
        for n in names:
            w = getattr(module, n)
            delattr(module, n)
            self.register_parameter(f"{n}_raw", nn.Parameter(w.data))
            setattr(module, n, w.detach().clone())


class SalesforceWeightDrop(nn.Module):
    """AWD-LSTM-style weight drop: the inner module's parameter is renamed ``*_raw`` in place."""

    def __init__(self, module: nn.Module, names: tuple[str, ...] = ("weight_hh_l0",)) -> None:
        super().__init__()
        self.module = module
        for n in names:
            w = getattr(module, n)
            del module._parameters[n]
            module.register_parameter(f"{n}_raw", nn.Parameter(w.data))


class LM(nn.Module):
    def __init__(self, v: int = 50, e: int = 8, h: int = 12) -> None:
        super().__init__()
        self.encoder = nn.Embedding(v, e)
        self.rnn = FastaiWeightDropout(nn.LSTM(e, h, 2, proj_size=e))
        self.norm = nn.LayerNorm(e)
        self.gate = Gate(7)
        self.decoder = nn.Linear(e, v)
        self.decoder.weight = self.encoder.weight


# --- analyze(module) ----------------------------------------------------------------------------


def test_analyze_language_model():
    m = LM()
    a = analyze(m)
    assert a.ok and a.status is Status.OK
    assert a.actual_total == n_params(m)  # tied weight once
    mods = {r.path: r for r in a.modules}
    assert mods["rnn.module"].spec == pc.RecurrentSpec("lstm", 8, 12, num_layers=2, proj_size=8)
    lstm = n_params(nn.LSTM(8, 12, 2, proj_size=8))
    assert mods["rnn.module"].analytic == mods["rnn.module"].actual == lstm
    gate = mods["gate"]
    assert (gate.analytic, gate.actual, gate.status) == (None, 7, Status.NO_FORMULA)
    assert mods["decoder"].analytic == mods["decoder"].actual == 50  # the bias; the weight is tied
    assert mods["decoder"].detail == "decoder.weight tied to encoder.weight, counted once"
    tensors = {t.name: t for t in a.tensors}
    tied = tensors["decoder.weight"]
    assert (tied.status, tied.detail, tied.counted) == (
        Status.TIED,
        "tied to encoder.weight (counted once)",
        0,
    )
    raw = tensors["rnn.weight_hh_l0_raw"]
    assert (raw.status, raw.detail) == (Status.OK, "renamed: matched to rnn.module.weight_hh_l0")
    assert tensors["gate.scale"].status is Status.NO_FORMULA
    assert a.no_formula_total == 7
    assert a.analytic_total + a.no_formula_total == n_params(m)


def test_analyze_salesforce_weight_drop_and_parametrize():
    from torch.nn.utils import parametrize

    class Double(nn.Module):
        def forward(self, x):
            return 2 * x

    lstm = nn.LSTM(4, 6)
    parametrize.register_parametrization(lstm, "weight_ih_l0", Double())
    m = nn.Sequential(SalesforceWeightDrop(lstm))
    names = [n for n, _ in m.named_parameters()]
    assert "0.module.weight_hh_l0_raw" in names and "0.module.parametrizations.weight_ih_l0.original" in names
    a = analyze(m)
    assert a.ok, a.table("tensor").records()
    assert a.specs == {"0.module": pc.RecurrentSpec("lstm", 4, 6)}
    assert a.analytic_total == n_params(m) == n_params(nn.LSTM(4, 6))
    renamed = [t for t in a.tensors if t.detail.startswith("renamed")]
    assert len(renamed) == 2


def test_analyze_common_layers_and_subclass():
    class MyLSTM(nn.LSTM):
        pass

    m = nn.Sequential(
        nn.Conv1d(8, 16, 3, groups=2),
        nn.BatchNorm1d(16),
        MyLSTM(16, 32, bidirectional=True),
        nn.GRUCell(64, 5),
        nn.RNN(5, 3, nonlinearity="relu"),
        nn.RNNCell(3, 2, nonlinearity="relu"),
        nn.Dropout(0.1),
    )
    a = analyze(m)
    assert a.ok and a.no_formula_total == 0
    assert a.analytic_total == n_params(m)
    assert a.specs["2"] == pc.RecurrentSpec("lstm", 16, 32, bidirectional=True)
    assert a.specs["3"] == pc.RecurrentSpec("gru_cell", 64, 5)
    assert a.specs["4"] == pc.RecurrentSpec("rnn_relu", 5, 3)
    assert a.specs["5"] == pc.RecurrentSpec("rnn_relu_cell", 3, 2)
    assert {r.path for r in a.modules} == {"0", "1", "2", "3", "4", "5"}  # dropout has no parameters


def test_register_adapter_for_own_module():
    class Scaler(nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.n = n
            self.alpha = nn.Parameter(torch.zeros(n, 2))

    @pc.register_adapter(Scaler)
    def _(m: Scaler, name: str):
        return Custom(name, f"Scaler({m.n})", (tensor_formula("alpha", (m.n, 2), "2n", f"2·{m.n}"),))

    a = analyze(nn.Sequential(nn.Linear(3, 4), Scaler(4)))
    assert a.ok and a.no_formula_total == 0
    row = next(r for r in a.modules if r.path == "1")
    assert row.layer == "Scaler(4)" and row.analytic == row.actual == 8


def test_adapter_disagreement_is_reported():
    class Lying(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3, 3))

    @pc.register_adapter(Lying)
    def _(m: Lying, name: str):
        return Custom(
            name, "Lying", (tensor_formula("w", (3, 4), "n·m", "3·4"), tensor_formula("v", (2,), "2", "2"))
        )

    a = analyze(nn.Sequential(Lying()))
    assert not a.ok and a.status is Status.MISMATCH
    (row,) = a.modules
    assert row.status is Status.MISMATCH
    assert "missing 0.v" in row.detail and "shape differs: 0.w" in row.detail


def test_failing_adapter_is_one_line_naming_the_module():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(2))

    @pc.register_adapter(Odd)
    def odd_adapter(m: Odd, name: str):
        raise KeyError("boom")

    with pytest.raises(
        pc.ParamcalcError, match=r"module '1' \(Odd\): adapter 'odd_adapter' failed: KeyError"
    ):
        analyze(nn.Sequential(nn.Linear(2, 2), Odd()))


def test_lazy_modules_must_run_first():
    with pytest.raises(pc.ParamcalcError, match=r"not initialised yet .* run one forward pass first"):
        analyze(nn.Sequential(nn.LazyLinear(3)))


def test_analyze_rejects_non_modules():
    with pytest.raises(pc.ParamcalcError, match=r"needs a torch\.nn\.Module"):
        analyze("not a module")  # type: ignore[arg-type]


def test_register_adapter_needs_a_class():
    with pytest.raises(pc.ParamcalcError, match="register_adapter needs a class"):
        pc.register_adapter("Linear")  # type: ignore[arg-type]


def test_views_and_frame():
    a = analyze(LM())
    df = a.to_frame()
    assert list(df.columns) == [
        "module",
        "type",
        "layer",
        "formula",
        "analytic",
        "actual",
        "status",
        "detail",
    ]
    assert int(df["actual"].sum()) == n_params(LM())
    assert a.table("tensor").names[:3] == ["name", "module", "shape"]


# --- inspect a factory ----------------------------------------------------------------------------


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    name = "pc_test_models_factory"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import sys
            import torch
            from torch import nn

            def build():
                return nn.Sequential(nn.Embedding(100, 16), nn.GRU(16, 32, 2, bidirectional=True))

            def broken():
                raise ValueError("bad config\\nmore")

            def exits():
                sys.exit(3)

            def not_a_module():
                return 42

            MODEL = nn.Linear(3, 2)
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_cli_inspect_factory(factory_module):
    r = invoke("inspect", f"{factory_module}:build")
    assert r.exit_code == 0, r.output
    expected = n_params(nn.Sequential(nn.Embedding(100, 16), nn.GRU(16, 32, 2, bidirectional=True)))
    assert f"actual: {expected:,} parameters" in r.stdout
    assert "GRU(16, 32, num_layers=2, bidirectional=True)" in r.stdout
    assert "paramcalc count gru -d 16 -H 32 -L 2 --bidirectional" in r.stdout


def test_cli_inspect_factory_on_meta(factory_module):
    r = invoke("inspect", f"{factory_module}:build", "--device", "meta", "--by", "tensor")
    assert r.exit_code == 0, r.output
    assert "1.weight_hh_l1_reverse" in r.stdout


def test_cli_inspect_module_instance(factory_module):
    r = invoke("inspect", f"{factory_module}:MODEL")
    assert r.exit_code == 0 and "Linear(3, 2)" in r.stdout


@pytest.mark.parametrize(
    "attr, problem",
    [
        ("broken", "calling broken() failed: ValueError: bad config"),
        ("exits", "calling exits() failed: it called sys.exit(3)"),
        ("not_a_module", "not_a_module() returned int, not an nn.Module"),
        ("missing", "has no attribute 'missing'"),
    ],
)
def test_cli_inspect_factory_errors(factory_module, attr, problem):
    assert problem in one_line_error(invoke("inspect", f"{factory_module}:{attr}"))


def test_cli_inspect_import_error():
    assert "cannot import 'no_such_pkg_xyz'" in one_line_error(invoke("inspect", "no_such_pkg_xyz:f"))


# --- checkpoints ---------------------------------------------------------------------------------


SPECS = [
    # (module, the spec it must be read back as)
    (lambda: nn.LSTM(10, 20, 3, bidirectional=True), pc.RecurrentSpec("lstm", 10, 20, 3, bidirectional=True)),
    (
        lambda: nn.LSTM(10, 20, 2, proj_size=7, bias=False),
        pc.RecurrentSpec("lstm", 10, 20, 2, bias=False, proj_size=7),
    ),
    (lambda: nn.GRU(5, 9), pc.RecurrentSpec("gru", 5, 9)),
    (lambda: nn.RNN(5, 9, 2), pc.RecurrentSpec("rnn", 5, 9, 2)),
    (lambda: nn.RNN(5, 9, nonlinearity="relu"), pc.RecurrentSpec("rnn", 5, 9)),  # same tensors as tanh
    (lambda: nn.LSTMCell(4, 1), pc.RecurrentSpec("lstm_cell", 4, 1)),
    (lambda: nn.GRUCell(4, 6, bias=False), pc.RecurrentSpec("gru_cell", 4, 6, bias=False)),
    (lambda: nn.RNNCell(4, 6), pc.RecurrentSpec("rnn_cell", 4, 6)),
    (lambda: nn.GRU(1, 1), pc.RecurrentSpec("gru", 1, 1)),
]


@pytest.mark.parametrize("make, spec", SPECS, ids=[s.describe() for _, s in SPECS])
def test_checkpoint_reads_specs_back(tmp_path, make, spec):
    m = nn.Sequential(make())
    path = tmp_path / "m.pt"
    torch.save(m.state_dict(), path)
    a = inspect(path)
    assert a.ok
    assert a.specs == {"0": spec}
    assert a.actual_total == a.analytic_total == n_params(m)


def test_checkpoint_of_newer_layouts_reads_back_by_shape(tmp_path):
    """A state dict written with PyTorch names for layouts torch.nn cannot build (peepholes, one
    bias vector, IndRNN's diagonal weight) reads back as the registered cell with those tensors."""
    sd = {
        "peep.weight_ih_l0": torch.zeros(28, 5),
        "peep.weight_hh_l0": torch.zeros(28, 7),
        "peep.bias_ih_l0": torch.zeros(28),
        "peep.bias_hh_l0": torch.zeros(28),
        "peep.weight_ci_l0": torch.zeros(7),
        "peep.weight_cf_l0": torch.zeros(7),
        "peep.weight_co_l0": torch.zeros(7),
        "ind.weight_ih_l0": torch.zeros(7, 5),
        "ind.weight_hh_l0": torch.zeros(7),
        "ind.bias_ih_l0": torch.zeros(7),
    }
    path = tmp_path / "new.pt"
    torch.save(sd, path)
    a = inspect(path)
    assert a.ok
    assert a.specs["peep"] == pc.RecurrentSpec("lstm", 5, 7, peephole=True)
    assert a.specs["ind"] == pc.RecurrentSpec("indrnn", 5, 7)
    assert a.actual_total == sum(t.numel() for t in sd.values())


def test_checkpoint_nested_language_model_with_tie_and_buffers(tmp_path):
    m = nn.ModuleDict(
        {"emb": nn.Embedding(30, 6), "rnn": nn.GRU(6, 6), "bn": nn.BatchNorm1d(6), "out": nn.Linear(6, 30)}
    )
    m["out"].weight = m["emb"].weight
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": m.state_dict(), "optimizer": {"lr": 0.1}}, path)
    a = inspect(path)
    assert a.ok
    assert a.notes()[0] == f"state dict nested under 'state_dict': {len(m.state_dict())} tensors"
    assert a.actual_total == n_params(m)  # tied once; running stats are buffers
    tensors = {t.name: t for t in a.tensors}
    assert (tensors["out.weight"].status, tensors["out.weight"].detail) == (
        Status.TIED,
        "tied to emb.weight (counted once)",
    )
    assert (tensors["bn.running_mean"].status, tensors["bn.running_mean"].detail) == (
        Status.BUFFER,
        "not a parameter",
    )
    kinds = {r.path: r.type_name for r in a.modules}
    # a batch norm alone (no Conv before it) may be 1d or 2d: the same tensors, and the note says so
    assert kinds == {"emb": "Embedding", "rnn": "GRU", "bn": "BatchNorm", "out": "Linear"}
    assert "BatchNorm1d or BatchNorm2d" in next(m.detail for m in a.modules if m.path == "bn")


def test_checkpoint_under_model_key_and_unknown_tensors(tmp_path):
    m = nn.Sequential(nn.LSTM(3, 4), Gate(5))
    sd = m.state_dict()
    sd["pos"] = torch.zeros(2, 3, 4)  # nothing paramcalc can name
    path = tmp_path / "c.pt"
    torch.save({"model": sd}, path)
    a = inspect(path)
    assert a.ok
    assert a.no_formula_total == 5 + 24
    assert a.analytic_total == n_params(nn.LSTM(3, 4))


def test_checkpoint_weight_drop_renamed(tmp_path):
    m = nn.Sequential(FastaiWeightDropout(nn.LSTM(4, 5, 2)))
    path = tmp_path / "wd.pt"
    torch.save(m.state_dict(), path)
    a = inspect(path)
    assert a.ok, a.table("tensor").records()
    assert a.specs == {"0.module": pc.RecurrentSpec("lstm", 4, 5, 2)}
    assert a.analytic_total == n_params(m)


def test_legacy_format_checkpoint(tmp_path):
    path = tmp_path / "old.pt"
    torch.save(nn.GRU(3, 4).state_dict(), path, _use_new_zipfile_serialization=False)
    a = inspect(path)
    assert a.specs == {"": pc.RecurrentSpec("gru", 3, 4)}


def test_inspect_checkpoint_is_a_deprecated_alias(tmp_path):
    path = tmp_path / "g.pt"
    torch.save(nn.GRU(3, 4).state_dict(), path)
    with pytest.warns(DeprecationWarning, match="use paramcalc.inspect"):
        old = pc.inspect_checkpoint(path)
    assert old.table().records() == pc.inspect(path).table().records()


def test_cli_inspect_checkpoint(tmp_path):
    m = nn.Sequential(nn.Embedding(30, 6), nn.LSTM(6, 8, 2))
    path = tmp_path / "m.pt"
    torch.save(m.state_dict(), path)
    r = invoke("inspect", path)
    assert r.exit_code == 0, r.output
    assert f"stored: {n_params(m):,} parameters" in r.stdout
    assert "1: LSTM(6, 8, num_layers=2)  ->  paramcalc count lstm -d 6 -H 8 -L 2" in r.stdout
    r = invoke("inspect", path, "--by", "tensor", "--format", "csv")
    assert r.exit_code == 0 and r.stdout.startswith("name,module,shape,numel,counted,formula,status,detail")


def test_cli_inspect_checkpoint_no_cell_fits_is_counted_without_a_formula(tmp_path):
    # an LSTM stack whose second layer has the wrong input width cannot be any registered cell
    sd = nn.LSTM(4, 6, 2).state_dict()
    sd["weight_ih_l1"] = torch.zeros(24, 5)
    path = tmp_path / "bad.pt"
    torch.save({"rnn." + k: v for k, v in sd.items()}, path)
    r = invoke("inspect", path)
    # no formula fits: counted, not a mismatch, but a recurrent layer went unidentified: unverified
    assert r.exit_code == 4, r.output
    text = " ".join(r.stdout.split())  # a long detail wraps in its cell
    assert "counted, no formula" in text and "no registered cell has these tensors" in text
    assert "UNVERIFIED" in text and "unverified: rnn: recurrent tensors weight_ih_l0" in text
    r = invoke("inspect", path, "--format", "json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 4 and doc["status"] == "unverified" and doc["ok"] is False
    assert len(doc["unverified"]) == 1


# --- refusals: one line, exit 2, nothing executed --------------------------------------------------


class MakesMarker:
    """A pickle payload whose loading would create a file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "PWNED"
    # Control: unpickling this payload with plain pickle really does create the file.
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(MakesMarker(str(control)))).close()
    assert control.exists()

    for i, payload in enumerate(
        [
            {"state_dict": nn.Linear(2, 2).state_dict(), "x": MakesMarker(str(marker))},
            MakesMarker(str(marker)),
        ]
    ):
        path = tmp_path / f"evil{i}.pt"
        torch.save(payload, path)
        line = one_line_error(invoke("inspect", path))
        assert "refused" in line and "nothing in the file was executed" in line
        assert not marker.exists()
    raw = tmp_path / "evil.pkl"  # a bare pickle, not a torch zip
    raw.write_bytes(pickle.dumps(MakesMarker(str(marker))))
    assert "refused" in one_line_error(invoke("inspect", raw))
    assert not marker.exists()


def test_whole_module_pickle_is_refused_with_hint(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(nn.Linear(2, 2), path)
    line = one_line_error(invoke("inspect", path))
    assert "refused: its pickle names torch.nn.modules.linear.Linear" in line
    assert "save model.state_dict() instead" in line


def test_truncated_checkpoint(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(nn.LSTM(3, 4).state_dict(), good)
    data = good.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[: len(data) // 2])
    assert "damaged or truncated" in one_line_error(invoke("inspect", bad))


@pytest.mark.parametrize(
    "payload, problem",
    [
        ([1, 2, 3], "not a state dict: it holds a list"),
        (torch.zeros(3), "not a state dict: it holds a Tensor"),
        ({"epoch": 1, "lr": 0.1}, "not a state dict: a dict with keys 'epoch', 'lr'"),
        ({}, "not a state dict"),
    ],
)
def test_not_a_state_dict(tmp_path, payload, problem):
    path = tmp_path / "x.pt"
    torch.save(payload, path)
    assert problem in one_line_error(invoke("inspect", path))


def test_not_a_checkpoint_at_all(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello world")
    assert "not a readable torch checkpoint" in one_line_error(invoke("inspect", text))
    z = tmp_path / "other.pt"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "not torch")
    assert "not a readable torch checkpoint" in one_line_error(invoke("inspect", z))


def test_not_a_regular_file(tmp_path):
    import os

    os.mkfifo(tmp_path / "fifo.pt")
    assert "only regular files are read" in one_line_error(invoke("inspect", tmp_path / "fifo.pt"))
    assert "is a folder" in one_line_error(invoke("inspect", tmp_path))


def test_missing_target_and_toml(tmp_path):
    assert "no such file" in one_line_error(invoke("inspect", tmp_path / "nope.pt"))
    toml = tmp_path / "a.toml"
    toml.write_text("")
    assert "use paramcalc report" in one_line_error(invoke("inspect", toml))
    assert "--device applies to package.module:factory" in one_line_error(
        invoke("inspect", toml, "--device", "meta")
    )


def test_cli_inspect_help_has_examples():
    r = invoke("inspect", "--help")
    assert r.exit_code == 0 and "paramcalc inspect checkpoint.pt" in r.stdout


def test_untrusted_tensor_names_are_printed_escaped(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"\x1b[2Jevil\nname.weight": torch.zeros(3, 4), "ok.weight": torch.zeros(2)}, path)
    for args in ([], ["--by", "tensor"], ["-f", "json"], ["-f", "csv"]):
        r = invoke("inspect", path, *args)
        assert r.exit_code == 0, r.output
        assert "\x1b" not in r.stdout and "\\x1b[2Jevil\\x0aname" in r.stdout.replace("\\\\", "\\")
