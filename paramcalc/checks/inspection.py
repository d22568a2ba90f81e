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
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..bridge import adapters, statedict
from ..bridge.devices import resolve_device
from ..core.architecture import Component, Recurrent
from ..core.spec import RecurrentSpec
from ..errors import ParamcalcError
from ..results.base import Result, Status
from ..results.render import plural
from ..results.table import Column, Table

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

NO_FORMULA = Status.NO_FORMULA.value
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


class ParamInfo(NamedTuple):
    """One stored tensor: name, shape, and an identity key (equal keys = one tied tensor).

    Named tuples, not dataclasses, for the per-tensor records: a model has thousands of them.
    """

    name: str
    shape: tuple[int, ...]
    key: Any
    dtype: str = ""

    @property
    def numel(self) -> int:
        return prod(self.shape)


class Group(NamedTuple):
    """A module (or an inferred layer): path, type name and its analytic component, if any."""

    path: str
    type_name: str
    component: Component | None
    note: str = ""
    #: The stored names of the component's tensors, in its order (files whose names differ
    #: from the analytic ones: ONNX initializers, Keras weight paths); ``None``: match by name.
    stored_names: tuple[str, ...] | None = None


class TensorReport(NamedTuple):
    name: str
    module: str
    shape: tuple[int, ...]
    numel: int
    counted: int  # 0 for the second holder of a tied tensor and for buffers
    formula: str | None
    status: Status
    detail: str = ""

    @property
    def problem(self) -> bool:
        return self.status is Status.MISMATCH


class ModuleReport(NamedTuple):
    path: str
    type_name: str
    component: Component | None  # None: no formula for this module
    analytic: int | None  # None: no formula for this module
    actual: int
    status: Status
    detail: str = ""
    spec: RecurrentSpec | None = None

    @property
    def ok(self) -> bool:
        return self.status is not Status.MISMATCH

    @property
    def layer(self) -> str | None:
        """The module as code, e.g. ``LSTM(400, 1150)`` (drawn when the table is)."""
        return None if self.component is None else self.component.describe()

    @property
    def formula(self) -> str | None:
        return None if self.component is None else self.component.formula()


@dataclass(frozen=True, repr=False)
class Analysis(Result):
    """Per module and per tensor: the analytic count (where there is a formula) vs the actual one.

    Views: ``module`` (default), ``tensor``. For a saved file ``actual`` is what it stores.
    """

    VIEWS = ("module", "tensor")

    source: str
    modules: tuple[ModuleReport, ...]
    tensors: tuple[TensorReport, ...]
    actual_total: int  # unique parameters (tied once; buffers excluded where known)
    extra_notes: tuple[str, ...] = field(default=())
    actual_label: str = "actual"  # "stored" for a file
    ties_unknown: bool = False  # saved without storage (meta): ties cannot be seen

    @property
    def specs(self) -> dict[str, RecurrentSpec]:
        """The recurrent stacks found, by module path."""
        return {m.path: m.spec for m in self.modules if m.spec is not None}

    @property
    def analytic_total(self) -> int:
        """Parameters explained by a formula."""
        return sum(m.analytic or 0 for m in self.modules)

    @property
    def no_formula_total(self) -> int:
        return sum(t.counted for t in self.tensors if t.status is Status.NO_FORMULA)

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.modules) and not any(t.problem for t in self.tensors)

    @property
    def status(self) -> Status:
        return Status.OK if self.ok else Status.MISMATCH

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
            lines.append(f"{path or '(root)'}: {spec.describe()}  ->  paramcalc count {cli_args(spec)}")
        problems = [m for m in self.modules if not m.ok]
        lines.append(
            f"OK: every formula matches the {self.actual_label} tensors"
            if self.ok
            else f"MISMATCH in {plural(len(problems), 'module')}: "
            + ", ".join(m.path or "(root)" for m in problems)
        )
        if self.ties_unknown:
            lines.append(
                f"UNVERIFIED total: ties could not be seen (meta tensors); {self.actual_total:,} counts a "
                "shared weight once per name"
            )
        return lines

    def meta(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "analytic_total": self.analytic_total,
            "no_formula_total": self.no_formula_total,
            "actual_total": self.actual_total,
            "ok": self.ok,
            "status": self.status.value,
            "ties_unknown": self.ties_unknown,
            "specs": {p or "(root)": s.to_dict() for p, s in self.specs.items()},
        }

    def summary_lines(self) -> list[str]:
        return self.summary()


def cli_args(spec: RecurrentSpec) -> str:
    """The ``paramcalc count`` arguments that describe ``spec``."""
    parts = [spec.cell, f"-d {spec.input_size}", f"-H {spec.hidden_size}"]
    if spec.num_layers != 1:
        parts.append(f"-L {spec.num_layers}")
    if spec.bidirectional:
        parts.append("--bidirectional")
    if spec.proj_size:
        parts.append(f"--proj-size {spec.proj_size}")
    if spec.convention != "torch":
        parts.append(f"--convention {spec.convention}")
    default_b = spec.default_bias_vectors
    if not spec.bias:
        parts.append("--no-bias")
    elif spec.bias_vectors != default_b:
        parts.append(f"--bias-vectors {spec.bias_vectors}")
    if spec.peephole != spec.cell_type.default_peephole:
        parts.append("--peephole" if spec.peephole else "--no-peephole")
    if spec.merge_mode != "concat":
        parts.append(f"--merge-mode {spec.merge_mode}")
    if not spec.reset_after:
        parts.append("--no-reset-after")
    return " ".join(parts)


# --- matching (pure: names, shapes, identity keys) --------------------------------------------


def _related(owner: str, path: str) -> bool:
    """``owner`` is ``path``, inside it, or one of its ancestors (a wrapper)."""
    if owner == path or not owner:
        return True
    return owner.startswith(path + ".") or path.startswith(owner + ".") or not path


def _join(path: str, leaf: str) -> str:
    return f"{path}.{leaf}" if path else leaf


class _Acc:
    """What one group collects while the tensors are matched (slots: thousands are made)."""

    __slots__ = ("actual", "analytic", "bad", "extra", "missing", "tied")

    def __init__(self) -> None:
        self.analytic = self.actual = self.extra = 0
        self.missing: list[str] = []
        self.bad: list[str] = []
        self.tied: list[str] = []


def match_tensors(
    groups: Sequence[Group],
    params: Sequence[ParamInfo],
    *,
    source: str,
    buffers: frozenset[str] = frozenset(),
    notes: Sequence[str] = (),
    actual_label: str = "actual",
) -> Analysis:
    """Match each group's analytic tensors with the stored/actual ones and report both counts.

    Passes: (1) exact names; (2) names a wrapper renamed, matched by their canonical name
    (``..._raw`` -> ``...``) among tensors of the module, its children or its wrappers;
    (3) whatever is left is *counted, no formula*, under the deepest group that holds it.
    A tensor whose identity key was claimed before is tied: shown, counted once.
    """
    by_name = {p.name for p in params}
    claimed: dict[str, tuple[int, Any]] = {}  # param name -> (group index, expected tensor)
    expected: list[list[tuple[str, Any]]] = []
    for gi, g in enumerate(groups):
        comp = g.component
        if comp is None:
            expected.append([])
            continue
        prefix = f"{g.path}." if g.path else ""
        items = [(prefix + t.name, t) for t in comp.tensors()]
        if g.stored_names is not None:  # match by position: the i-th analytic tensor is the i-th stored one
            names = list(g.stored_names) + [full for full, _ in items[len(g.stored_names) :]]
            items = [(names[i], t) for i, (_, t) in enumerate(items)]
        expected.append(items)
        for full, t in items:
            if full in by_name and full not in claimed:
                claimed[full] = (gi, t)

    renamed_hits: set[tuple[int, str]] = set()  # (group, analytic name) matched under another name

    def found(gi: int, full: str) -> bool:
        claim = claimed.get(full)
        return (claim is not None and claim[0] == gi) or (gi, full) in renamed_hits

    # renamed tensors, indexed by the leaf of their canonical name (one pass over the params)
    renamed_by_leaf: dict[str, list[ParamInfo]] = {}
    canon_of: dict[str, str] = {}
    for p in params:
        if p.name in claimed or p.name in buffers:
            continue
        canon = statedict.canonical_name(p.name)
        if canon != p.name:
            canon_of[p.name] = canon
            renamed_by_leaf.setdefault(canon.rpartition(".")[2], []).append(p)
    renamed: dict[str, str] = {}
    if renamed_by_leaf:
        for gi, g in enumerate(groups):
            for full, t in expected[gi]:
                if found(gi, full):
                    continue
                # weight norm stores two tensors for one weight: the one of the weight's shape is it
                candidates = sorted(renamed_by_leaf.get(t.name, ()), key=lambda p: p.shape != tuple(t.shape))
                for p in candidates:
                    if p.name in claimed:
                        continue
                    owner = canon_of[p.name].rpartition(".")[0]
                    if _related(owner, g.path):
                        claimed[p.name] = (gi, t)
                        renamed[p.name] = full
                        renamed_hits.add((gi, full))
                        break

    reparametrized = set(renamed.values())
    first_of_key: dict[Any, str] = {}
    tensors: list[TensorReport] = []
    acc = [_Acc() for _ in groups]
    deepest = _Deepest(groups)
    ok, no_formula = Status.OK, Status.NO_FORMULA
    for p in params:
        name, shape, key = p.name, p.shape, p.key
        numel = prod(shape)
        claim = claimed.get(name)
        gi = claim[0] if claim is not None else deepest(name)
        gpath = groups[gi].path if gi >= 0 else ""
        if name in buffers:
            tensors.append(TensorReport(name, gpath, shape, numel, 0, None, Status.BUFFER, "not a parameter"))
            continue
        first = first_of_key.get(key)
        tied = first is not None
        counted = 0 if tied else numel
        if not tied:
            first_of_key[key] = name
        if claim is not None:
            t = claim[1]
            a = acc[gi]
            status, detail = ok, ""
            if renamed and name in renamed:
                detail = f"renamed: matched to {renamed[name]}"
            if t.shape != shape and tuple(t.shape) != shape:
                status, detail = Status.MISMATCH, f"formula shape {tuple(t.shape)}"
                a.bad.append(name)
            if tied:
                status, detail = Status.TIED, f"tied to {first} (counted once)"
                a.tied.append(f"{name} tied to {first}, counted once")
            else:
                a.analytic += t.numel
            a.actual += counted
            tensors.append(TensorReport(name, gpath, shape, numel, counted, t.formula, status, detail))
        else:
            canon = canon_of.get(name, name)
            if tied:
                status, detail = Status.TIED, f"tied to {first} (counted once)"
            elif canon != name and canon in reparametrized:
                status, detail = (
                    Status.NO_FORMULA,
                    f"re-parametrization of {canon} (e.g. weight norm's magnitude)",
                )
            else:
                status, detail = no_formula, ""
            if gi >= 0:
                acc[gi].extra += counted
                acc[gi].actual += counted
            tensors.append(TensorReport(name, gpath, shape, numel, counted, None, status, detail))

    for gi, g in enumerate(groups):
        for full, t in expected[gi]:
            claim = claimed.get(full)
            if (claim is None or claim[0] != gi) and (gi, full) not in renamed_hits:
                acc[gi].missing.append(full)
                acc[gi].analytic += t.numel
                tensors.append(
                    TensorReport(
                        full, g.path, tuple(t.shape), t.numel, 0, t.formula, Status.MISMATCH, "missing"
                    )
                )

    modules: list[ModuleReport] = []
    for gi, g in enumerate(groups):
        a = acc[gi]
        comp = g.component
        if comp is None:
            if a.actual:
                modules.append(
                    ModuleReport(g.path, g.type_name, None, None, a.actual, Status.NO_FORMULA, g.note)
                )
            continue
        if not expected[gi] and a.actual == 0:
            continue  # a parameter-free layer (dropout)
        spec = comp.spec if isinstance(comp, Recurrent) else None
        if not (a.missing or a.bad or a.extra or a.tied or g.note):  # the common case: all agree
            modules.append(ModuleReport(g.path, g.type_name, comp, a.analytic, a.actual, ok, "", spec))
            continue
        bits = []
        if a.missing:
            bits.append("missing " + ", ".join(a.missing))
        if a.bad:
            bits.append("shape differs: " + ", ".join(a.bad))
        details = list(bits)
        if not bits and a.extra:  # the formula part agrees; the extra tensors have no formula
            details.append(f"plus {a.extra:,} {NO_FORMULA}")
        details += a.tied
        if g.note:
            details.append(g.note)
        status = Status.MISMATCH if bits else ok
        modules.append(
            ModuleReport(g.path, g.type_name, comp, a.analytic, a.actual, status, "; ".join(details), spec)
        )
    total = sum(t.counted for t in tensors)
    return Analysis(source, tuple(modules), tuple(tensors), total, tuple(notes), actual_label)


class _Deepest:
    """The index of the deepest group whose path holds a tensor name (-1: none), memoised."""

    def __init__(self, groups: Sequence[Group]) -> None:
        self.index = {g.path: i for i, g in enumerate(groups)}
        self.root = self.index.get("", -1)

    def __call__(self, name: str) -> int:
        owner = name.rpartition(".")[0]
        while owner:
            i = self.index.get(owner)
            if i is not None:
                return i
            owner = owner.rpartition(".")[0]
        return self.root


# --- nn.Module ---------------------------------------------------------------------------------


def walk(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """``named_modules(remove_duplicate=False)`` without recursion: any nesting depth works."""
    out: list[tuple[str, nn.Module]] = []
    stack: list[tuple[str, nn.Module]] = [("", module)]
    while stack:
        path, m = stack.pop()
        out.append((path, m))
        for name, child in reversed(list(m._modules.items())):
            if child is not None:
                stack.append((_join(path, name), child))
    return out


def analyze(module: nn.Module) -> Analysis:
    """Walk ``module``: analytic rows where an adapter knows the type, counted tensors elsewhere.

    The walk is iterative (any nesting depth); each module is read by its adapter once. The
    garbage collector pauses meanwhile: the walk makes thousands of small records, and a
    collection would traverse every tensor of the model for nothing.
    """
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        return _analyze(module)
    finally:
        if enabled:
            gc.enable()


def _analyze(module: nn.Module) -> Analysis:
    from torch import nn

    if not isinstance(module, nn.Module):
        raise ParamcalcError(f"analyze needs a torch.nn.Module, got {type(module).__name__}")
    groups: list[Group] = []
    covered: list[str] = []  # paths whose subtree an adapter read
    params: list[ParamInfo] = []
    named: list[tuple[str, Any]] = []
    packed: list[str] = []
    notes: list[str] = []
    quantized = adapters.quantized_rnn_types() + adapters.quantized_linear_types()
    for path, m in walk(module):
        prefix = f"{path}." if path else ""
        for leaf, p in m._parameters.items():
            if p is not None:
                named.append((prefix + leaf, p))
        if quantized and isinstance(m, quantized):
            for leaf, shape, dtype in adapters.packed_tensors(m):
                full = prefix + leaf
                params.append(ParamInfo(full, shape, ("packed", full), dtype))
                packed.append(path)
        if covered and (path == covered[-1] or path.startswith(covered[-1] + ".")):
            continue  # inside a module an adapter already read
        comp = adapters.component_from_module(m, path or type(m).__name__)
        groups.append(Group(path, type(m).__name__, comp))
        if comp is not None:  # an adapter covers the module's whole subtree; its name is the path
            covered.append(path)
    lazy = [n for n, p in named if issubclass(type(p), nn.parameter.UninitializedParameter)]
    if lazy:
        raise ParamcalcError(
            f"{plural(len(lazy), 'parameter')} {'is' if len(lazy) == 1 else 'are'} not initialised yet "
            f"(a Lazy module, e.g. {lazy[0]}): "
            "run one forward pass first so their shapes are known"
        )
    params = [ParamInfo(n, tuple(p.shape), id(p)) for n, p in named] + params
    if packed:
        where = ", ".join(sorted({p or "(root)" for p in packed}))
        dtypes = ", ".join(
            sorted({p.dtype for p in params if isinstance(p.key, tuple) and p.key[0] == "packed"})
        )
        notes.append(
            f"{where}: dynamically quantized; their packed weights ({dtypes}) are not parameters() but are "
            "counted here, with the float layer's formula"
        )
    return match_tensors(groups, params, source=f"module {type(module).__name__}", notes=notes)


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


def inspect(path: str | Path) -> Analysis:
    """Read every layer of a saved model back as specs, with analytic vs stored counts.

    PyTorch checkpoints and safetensors files are read from tensor names and shapes (layers
    inferred by :func:`paramcalc.bridge.statedict.infer_components`); ONNX and Keras files name
    their recurrent layers in their own metadata (node attributes, the model config), whose
    tensors are checked against the analytic ones of that layout, position by position.
    """
    from ..bridge.readers import read_model

    model = read_model(path)
    found = {n for layer in model.layers for n in layer.tensors}
    rest = {t.name: t.shape for t in model.tensors if t.name not in found}
    groups: list[Group] = []
    for layer in model.layers:
        spec = _file_layout(layer.spec, model.format)
        comp = Recurrent(layer.path, spec)
        stored = model.layer_tensors(layer)
        names = tuple(t.name for t in stored)
        groups.append(Group(layer.path, spec.display_class, comp, layer.note, names))
    inferred = statedict.infer_components(rest) if rest else []
    groups += [Group(i.prefix, i.type_name, _renamed(i.component, i.prefix), i.note) for i in inferred]
    buffers = frozenset(k for k in rest if k.rpartition(".")[2] in statedict.BUFFER_NAMES)
    unseen = [t for t in model.tensors if t.key is None]
    params = [
        ParamInfo(t.name, t.shape, ("file", t.key) if t.key is not None else ("own", t.name), t.dtype)
        for t in model.tensors
    ]
    notes = list(model.notes)
    ties_unknown = model.format == "pytorch" and bool(unseen)
    if ties_unknown:
        notes.append(unseen_ties_note(rest, buffers))
    if model.format in ("onnx", "keras"):
        notes.append(f"{model.format} file: recurrent layers from its metadata, checked position by position")
    analysis = match_tensors(
        groups, params, source=model.source, buffers=buffers, notes=notes, actual_label="stored"
    )
    return dataclasses.replace(analysis, ties_unknown=ties_unknown)


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


def inspect_checkpoint(path: str | Path) -> Analysis:
    """Deprecated alias of :func:`inspect` (renamed in 0.2.0)."""
    import warnings

    warnings.warn("inspect_checkpoint is deprecated: use paramcalc.inspect", DeprecationWarning, stacklevel=2)
    return inspect(path)


def _renamed(c: Component | None, prefix: str) -> Component | None:
    if c is None:
        return None
    return dataclasses.replace(c, name=prefix or "(root)")
