"""Analyse any ``nn.Module`` or a saved model: analytic count vs actual, per module and tensor.

:func:`analyze` walks a module tree. A module whose type has an adapter (see
:func:`paramcalc.bridge.adapters.register_adapter`; built in: every registered recurrent cell,
Embedding, Linear, LayerNorm, Conv1d, BatchNorm1d) gets analytic rows with formulas; the
tensors of anything else are *counted, no formula* (never dropped, never zeroed). A tied
Parameter counts once, where it first appears. A parameter a wrapper renamed (weight-drop's
``weight_hh_l0_raw``, pruning's ``weight_orig``, ``parametrizations.weight.original``) is still
matched to its formula.

:func:`inspect` does the same for a saved file: it reads the tensors' names and shapes (never
executing anything in the file) and reads every layer back from them
(:func:`paramcalc.bridge.statedict.infer_components`).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bridge import statedict
from ..bridge.devices import resolve_device
from ..bridge.readers import Part, StoredModel
from ..core.architecture import Component, Recurrent
from ..core.blocks.report import ModelReport
from ..core.spec import RecurrentSpec
from ..errors import ParamcalcError
from ..results.base import Result, Status
from ..results.table import Column, Table
from ..results.text import plural
from .matching import NO_FORMULA, Group, ModuleReport, ParamInfo, TensorRows, match
from .modulewalk import analyze_tree

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

MODULE_COLUMNS = (
    Column("module", "str"),
    Column("type", "str"),
    Column("layer", "str"),
    Column("formula", "str", wide=True),
    Column("analytic"),
    Column("actual"),
    Column("status", "str"),
    Column("detail", "str"),
)
TENSOR_COLUMNS = (
    Column("name", "str"),
    Column("module", "str"),
    Column("shape", "shape"),
    Column("numel"),
    Column("counted"),
    Column("formula", "str", wide=True),
    Column("status", "str"),
    Column("detail", "str"),
)


@dataclass(frozen=True, repr=False)
class Analysis(Result):
    """Per module and per tensor: the analytic count (where there is a formula) vs the actual one.

    Views: ``module`` (default), ``tensor``. For a saved file ``actual`` is what it stores.
    """

    VIEWS = ("module", "tensor")

    source: str
    modules: tuple[ModuleReport, ...]
    #: Built when first read (``analyze`` of a large model): the verdict needs none of them.
    tensors: TensorRows
    actual_total: int  # unique parameters (tied once; buffers excluded where known)
    extra_notes: tuple[str, ...] = field(default=())
    actual_label: str = "actual"  # "stored" for a file
    ties_unknown: bool = False  # saved without storage (meta): ties cannot be seen
    #: What could not be verified, one sentence each (empty: everything stored is explained).
    unverified: tuple[str, ...] = ()

    @property
    def specs(self) -> dict[str, RecurrentSpec]:
        """The recurrent stacks found, by module path."""
        return {m.path: m.spec for m in self.modules if m.spec is not None}

    @property
    def analytic_total(self) -> int:
        """Parameters explained by a formula."""
        return sum(m.analytic or 0 for m in self.modules)

    def __post_init__(self) -> None:
        if not isinstance(self.tensors, TensorRows):
            object.__setattr__(self, "tensors", TensorRows(self.tensors))

    @property
    def no_formula_total(self) -> int:
        return self.tensors.no_formula

    @property
    def mismatch(self) -> bool:
        """A formula disagrees with the tensors (a missing tensor, a shape)."""
        return not all(m.ok for m in self.modules) or self.tensors.problem

    @property
    def unverified_reasons(self) -> list[str]:
        """Why the verdict is not OK although no formula disagrees (empty when it is OK)."""
        reasons = list(self.unverified)
        if self.ties_unknown:
            reasons.append(
                f"ties could not be seen (meta tensors): {self.actual_total:,} counts a shared weight "
                "once per name"
            )
        return reasons

    @property
    def status(self) -> Status:
        """``ok``: every stored parameter is explained by a formula or counted with none declared;
        ``mismatch``: a formula disagrees; ``unverified``: something could not be checked (a
        recurrent layer not identified, ties not visible), see :attr:`unverified_reasons`."""
        if self.mismatch:
            return Status.MISMATCH
        return Status.UNVERIFIED if self.unverified or self.ties_unknown else Status.OK

    @property
    def ok(self) -> bool:
        """The verdict is OK: nothing disagrees and nothing is left unverified."""
        return self.status is Status.OK

    def _table(self, view: str) -> Table:
        if view == "module":
            return Table(
                MODULE_COLUMNS,
                tuple(
                    (
                        m.path or "(root)",
                        m.type_name,
                        m.layer,
                        m.formula,
                        m.analytic,
                        m.actual,
                        m.status.value,
                        m.detail or None,
                    )
                    for m in self.modules
                ),
            )
        return Table(
            TENSOR_COLUMNS,
            tuple(
                (t.name, t.module, t.shape, t.numel, t.counted, t.formula, t.status.value, t.detail or None)
                for t in self.tensors
            ),
        )

    def title(self) -> str:
        return self.source

    def headline(self) -> str:
        return f"{self.source}: {plural(self.actual_total, 'parameter')}, {self.status.value}"

    def notes(self) -> list[str]:
        return [*self.extra_notes, f"actual = the {self.actual_label} tensors, tied ones counted once"]

    def summary(self, view: str | None = None) -> list[str]:
        lines = [
            f"analytic (formulas): {self.analytic_total:,}; {NO_FORMULA}: {self.no_formula_total:,}; "
            f"{self.actual_label}: {plural(self.actual_total, 'parameter')}",
        ]
        for path, spec in self.specs.items():
            lines.append(spec_line(path, spec))
        problems = [m for m in self.modules if not m.ok]
        reasons = self.unverified_reasons
        if self.mismatch:
            lines.append(
                f"MISMATCH in {plural(len(problems), 'module')}: "
                + ", ".join(m.path or "(root)" for m in problems)
            )
        elif reasons:
            lines.append(
                f"UNVERIFIED: the formulas found match the {self.actual_label} tensors, but "
                f"{plural(len(reasons), 'thing')} could not be verified:"
            )
        else:
            lines.append(f"OK: every formula matches the {self.actual_label} tensors")
        lines += [f"unverified: {r}" for r in reasons]
        return lines

    def meta(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "analytic_total": self.analytic_total,
            "no_formula_total": self.no_formula_total,
            "actual_total": self.actual_total,
            "ok": self.ok,
            "status": self.status.value,
            "unverified": self.unverified_reasons,
            "ties_unknown": self.ties_unknown,
            "specs": {p or "(root)": s.to_dict() for p, s in self.specs.items()},
        }


def spec_line(path: str, spec: RecurrentSpec) -> str:
    """The summary line of a recurrent stack found at ``path``: ``rnn: LSTM(28, 64, num_layers=2)``."""
    return f"{path or '(root)'}: {spec.describe()}"


def match_tensors(
    groups: Sequence[Group],
    params: Sequence[ParamInfo],
    *,
    source: str,
    buffers: frozenset[str] = frozenset(),
    not_parameters: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
    actual_label: str = "actual",
    unverified: Sequence[str] = (),
) -> Analysis:
    """Match each group's analytic tensors with the stored/actual ones and report both counts.

    Passes: (1) exact names (or the stored names a file's group gives, position by position;
    a stored tensor a second group also names is *shared*: shown there, counted once);
    (2) names a wrapper renamed (``..._raw`` -> ``...``), matched by their canonical name among
    tensors of the module, its children or its wrappers; (3) whatever is left is *counted, no
    formula*, under the deepest group that holds it. A tensor whose identity key was claimed
    before is tied: shown, counted once. ``buffers`` and ``not_parameters`` (name -> why) are
    listed and not counted. ``unverified`` says what the reader could not verify.
    """
    modules, rows = match(groups, params, buffers=buffers, not_parameters=not_parameters)
    tensors = TensorRows(rows)
    return Analysis(
        source,
        tuple(modules),
        tensors,
        tensors.counted,
        tuple(notes),
        actual_label,
        unverified=tuple(unverified),
    )


# --- nn.Module ---------------------------------------------------------------------------------


def analyze(module: nn.Module) -> Analysis:
    """Walk ``module``: analytic rows where an adapter knows the type, counted tensors elsewhere.

    The walk is iterative (any nesting depth); each module is read by its adapter once, and a
    model's identical layers share one reading (:mod:`paramcalc.checks.modulewalk`). The
    garbage collector pauses meanwhile: the walk makes thousands of small records, and a
    collection would traverse every tensor of the model for nothing.
    """
    import gc

    from torch import nn

    if not isinstance(module, nn.Module):
        raise ParamcalcError(f"analyze needs a torch.nn.Module, got {type(module).__name__}")
    enabled = gc.isenabled()
    gc.disable()
    try:
        modules, tensors, notes = analyze_tree(module)
    finally:
        if enabled:
            gc.enable()
    return Analysis(f"module {type(module).__name__}", modules, tensors, tensors.counted, tuple(notes))


# --- import a factory ---------------------------------------------------------------------------


def load_factory(target: str, device: str = "cpu") -> nn.Module:
    """Import ``package.module:factory`` and return the module it names or builds.

    ``factory`` may be an ``nn.Module`` instance, a class or a function taking no arguments.
    With ``device="meta"`` it is called under ``torch.device("meta")``: no memory is allocated.
    A factory (or the import) that calls ``sys.exit()`` or raises anything is one line.
    """
    from torch import nn

    mod_name, sep, attr = target.partition(":")
    if not sep or not mod_name or not attr:
        raise ParamcalcError(f"{target!r}: expected a file or package.module:factory")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        mod = importlib.import_module(mod_name)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # the user's import: one line
        raise ParamcalcError(f"{target}: cannot import {mod_name!r}: {_describe(exc)}") from None
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ParamcalcError(f"{target}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise ParamcalcError(f"{target}: {attr!r} is neither an nn.Module nor callable")
        dev = resolve_device(device)
        try:
            with dev:
                obj = obj()
        except ParamcalcError:
            raise
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            raise ParamcalcError(f"{target}: calling {attr}() failed: {_describe(exc)}") from None
    if not isinstance(obj, nn.Module):
        raise ParamcalcError(f"{target}: {attr}() returned {type(obj).__name__}, not an nn.Module")
    return obj


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


# --- saved files -------------------------------------------------------------------------------


def inspect(path: str | Path, *, check: bool = False) -> Analysis | ModelReport:
    """Read every layer of a saved model back as specs, with analytic vs stored counts.

    A safetensors file of a Mamba, Mamba-2, RWKV-4, xLSTM or RecurrentGemma language model
    (Hugging Face names) is recognised from its tensors
    (:mod:`paramcalc.core.blocks.fromtensors`): the result is then a ``ModelReport`` checked
    against the stored tensors.

    A Hugging Face ``config.json`` (a ``.json`` file, or the name of a bundled published one:
    ``"mamba-130m"``) is read by its ``model_type`` into a
    :class:`~paramcalc.core.blocks.report.ModelReport` instead (formulas per tensor, totals);
    ``check=True`` compares it with ``transformers``' model built on the meta device
    (:func:`paramcalc.checks.hfcheck.inspect_config`). ``check`` applies to those files only.

    PyTorch checkpoints and safetensors files are read from tensor names and shapes (layers
    inferred by :func:`paramcalc.bridge.statedict.infer_components`); ONNX and Keras files name
    their layers in their own metadata (node attributes, the model config), whose tensors are
    checked against the analytic ones of that layout, position by position. The verdict is
    ``unverified`` (not ``ok``) when something could not be checked: a recurrent layer the
    reader could not identify, ties a meta-device checkpoint cannot show.
    """

    import os

    from ..bridge.readers.hf_config import bundled_configs

    if isinstance(path, str) and not os.path.lexists(path) and path in bundled_configs():
        path = bundled_configs()[path]  # a bundled published config, by name
    if str(path).lower().endswith(".json"):
        from .hfcheck import inspect_config

        return inspect_config(path, check=check)
    if check:
        raise ParamcalcError("`check=True` applies to a config.json; a saved model is checked as it is read")
    from ..bridge.readers import model_path, read_model
    from ..core.blocks.fromtensors import model_from_tensors

    stored = read_model(model_path(path, "inspect"))
    if stored.format == "safetensors":
        shapes = {t.name: t.shape for t in stored.tensors}
        lm = model_from_tensors(shapes, stored.source)
        if lm is not None:
            return ModelReport(lm, shapes, "the stored tensors")
    return inspect_saved(path, stored)


def inspect_saved(path: str | Path, model: StoredModel | None = None) -> Analysis:
    """:func:`inspect` of a saved model (not a ``config.json``); ``model``: the file already read."""
    from ..bridge.readers import model_path, read_model

    if model is None:
        model = read_model(model_path(path, "inspect"))
    constants = {t.name: t.not_parameter for t in model.tensors if t.not_parameter}
    found = {n for layer in model.layers for n in layer.tensors}
    found.update(n for c in model.components for n in c.tensors)
    rest = {t.name: t.shape for t in model.tensors if t.name not in found and t.name not in constants}
    inferred = statedict.infer_components(rest) if rest else []
    groups = _file_groups(model)
    groups += [Group(i.prefix, i.type_name, _renamed(i.component, i.prefix), i.note) for i in inferred]
    buffers = frozenset(k for k in rest if k.rpartition(".")[2] in statedict.BUFFER_NAMES)
    params = [
        ParamInfo(t.name, t.shape, ("file", t.key) if t.key is not None else ("own", t.name), t.dtype)
        for t in model.tensors
    ]
    ties_unknown = model.format == "pytorch" and any(t.key is None for t in model.tensors)
    analysis = match_tensors(
        groups,
        params,
        source=model.source,
        buffers=buffers,
        not_parameters=constants,
        notes=_file_notes(model, ties_unknown, rest, buffers),
        actual_label="stored",
        unverified=[*model.unverified, *_unread_recurrent(inferred, rest)],
    )
    return dataclasses.replace(analysis, ties_unknown=ties_unknown)


def _file_notes(
    model: StoredModel, ties_unknown: bool, rest: dict[str, tuple[int, ...]], buffers: frozenset[str]
) -> list[str]:
    """The reader's notes, and what the file's kind leaves unseen or checks differently."""
    notes = list(model.notes)
    if ties_unknown:
        notes.append(unseen_ties_note(rest, buffers))
    if model.format in ("onnx", "keras"):
        notes.append(f"{model.format} file: layers from its metadata, checked position by position")
    return notes


def _file_groups(model: StoredModel) -> list[Group]:
    """Groups for the layers and components a file's metadata names, with their stored parts."""
    groups: list[Group] = []
    for layer in model.layers:
        spec = _file_layout(layer.spec, model.format)
        parts = layer.parts or tuple(Part((t.name,)) for t in model.layer_tensors(layer))
        groups.append(Group(layer.path, spec.display_class, Recurrent(layer.path, spec), layer.note, parts))
    by_name = {t.name for t in model.tensors}
    for c in model.components:
        parts = tuple(Part((n,)) for n in c.tensors if n in by_name)
        groups.append(Group(c.path, c.type_name, c.component, c.note, parts))
    if model.order:  # the model's own layer order (a Bidirectional's directions stay together)
        rank = {path: i for i, path in enumerate(model.order)}
        groups.sort(key=lambda g: rank.get(g.path, rank.get(g.path.rpartition("/")[0], len(rank))))
    return groups


def _unread_recurrent(inferred: Sequence[statedict.Inferred], rest: Mapping[str, Any]) -> list[str]:
    """A group with recurrent tensor names (``weight_ih_l0``, ...) that no cell explains."""
    key = statedict.rnn_key()
    out: list[str] = []
    for i in inferred:
        if i.component is not None:
            continue
        prefix = f"{i.prefix}." if i.prefix else ""
        leaves = [
            n[len(prefix) :]
            for n in rest
            if n.startswith(prefix) and "." not in n[len(prefix) :] and key.match(n[len(prefix) :])
        ]
        if leaves:
            shown = ", ".join(leaves[:4]) + (", ..." if len(leaves) > 4 else "")
            why = i.note or "not read as a layer"
            out.append(f"{i.prefix or '(root)'}: recurrent tensors {shown} {why}")
    return out


def _file_layout(spec: RecurrentSpec, fmt: str) -> RecurrentSpec:
    """The spec with the tensor names and grouping of the file's framework (ONNX: W, R, B, P)."""
    if fmt == "onnx" and spec.convention != "onnx":
        try:
            return spec.replace(convention="onnx", bias_vectors=spec.bias_vectors, peephole=spec.peephole)
        except ParamcalcError:
            return spec
    return spec


def unseen_ties_note(shapes: dict[str, tuple[int, ...]], buffers: frozenset[str]) -> str:
    """The note for tensors saved without storage (meta device): ties cannot be seen."""
    by_shape: dict[tuple[int, ...], list[str]] = {}
    for name, shape in shapes.items():
        if len(shape) == 2 and name not in buffers:
            by_shape.setdefault(shape, []).append(name)
    pairs = [names for names in by_shape.values() if len(names) > 1]
    maybe = "; ".join(" and ".join(n[:3]) for n in pairs[:3])
    return "ties cannot be seen, so each name is counted" + (
        f"; same-shaped weights that may be one tensor: {maybe}" if maybe else ""
    )


def inspect_checkpoint(path: str | Path) -> Analysis | ModelReport:
    """Deprecated alias of :func:`inspect` (renamed in 0.2.0)."""
    import warnings

    warnings.warn("inspect_checkpoint is deprecated: use paramcalc.inspect", DeprecationWarning, stacklevel=2)
    return inspect(path)


def _renamed(c: Component | None, prefix: str) -> Component | None:
    if c is None:
        return None
    return dataclasses.replace(c, name=prefix or "(root)")
