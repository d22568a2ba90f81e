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
import functools
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..bridge import adapters, statedict
from ..bridge.devices import resolve_device
from ..bridge.readers import Part, StoredModel
from ..core.architecture import Component, Recurrent
from ..core.spec import RecurrentSpec
from ..errors import ParamcalcError
from ..results.base import Result, Status
from ..results.table import Column, Table
from ..results.text import plural

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
    #: The stored tensors that hold each of the component's tensors, in its order (files whose
    #: names differ from the analytic ones: ONNX initializers, Keras weight paths; an ONNX graph
    #: may build one input from several stored tensors); ``None``: match by name.
    parts: tuple[Part, ...] | None = None


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

    @property
    def no_formula_total(self) -> int:
        return sum(t.counted for t in self.tensors if t.status is Status.NO_FORMULA)

    @property
    def mismatch(self) -> bool:
        """A formula disagrees with the tensors (a missing tensor, a shape)."""
        return not all(m.ok for m in self.modules) or any(t.problem for t in self.tensors)

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


class _Item(NamedTuple):
    """One analytic tensor of a group and the stored names expected to hold it."""

    names: tuple[str, ...]
    tensor: Any  # a TensorFormula: name, shape, numel, formula
    #: How the file's graph builds the tensor from the stored ones; empty: stored as it is.
    via: str = ""


class _Claim(NamedTuple):
    """A stored tensor claimed by a group's analytic tensor."""

    group: int
    item: _Item
    #: Empty, or why a rearranged tensor's stored parts do not add up (a mismatch).
    verdict: str = ""


#: ``_Item`` and ``_Claim`` without their Python-level ``__new__`` (thousands are made per model).
_new_item = functools.partial(tuple.__new__, _Item)
_new_claim = functools.partial(tuple.__new__, _Claim)


class _Claims:
    """Which group's analytic tensor each stored tensor is: the first claim, then any other group
    that takes the same stored tensor (an ONNX initializer shared by two nodes)."""

    __slots__ = ("first", "hits", "renamed", "shared")

    def __init__(self) -> None:
        self.first: dict[str, _Claim] = {}
        self.shared: dict[str, list[_Claim]] = {}
        self.renamed: dict[str, str] = {}  # stored name -> the analytic name it was matched to
        self.hits: set[tuple[int, str]] = set()  # (group, analytic name) matched under another name

    def found(self, gi: int, name: str) -> bool:
        claim = self.first.get(name)
        if (claim is not None and claim.group == gi) or (gi, name) in self.hits:
            return True
        return any(c.group == gi for c in self.shared.get(name, ()))


def _expected(groups: Sequence[Group]) -> list[list[_Item]]:
    """Per group, its analytic tensors and the stored names expected to hold each."""
    out: list[list[_Item]] = []
    for g in groups:
        comp = g.component
        if comp is None:
            out.append([])
            continue
        prefix = f"{g.path}." if g.path else ""
        ts = comp.tensors()
        parts = g.parts
        if parts is None:
            out.append([_new_item(((prefix + t.name,), t, "")) for t in ts])
            continue
        # by position: the i-th analytic tensor is held by the i-th stored part
        out.append(
            [
                _Item(parts[i].names, t, ", ".join(parts[i].via))
                if i < len(parts)
                else _Item((prefix + t.name,), t)
                for i, t in enumerate(ts)
            ]
        )
    return out


def _parts_verdict(item: _Item, stored: dict[str, ParamInfo]) -> str:
    """Empty if the stored parts of a rearranged tensor hold exactly its elements."""
    have = [stored[n].numel for n in item.names if n in stored]
    t = item.tensor
    if len(have) < len(item.names) or sum(have) == t.numel:
        return ""
    held = f"{plural(len(have), 'stored tensor')} hold{'s' if len(have) == 1 else ''} {sum(have):,} elements"
    return f"{held}; {t.name} {tuple(t.shape)} needs {t.numel:,}"


def _claim_exact(expected: list[list[_Item]], stored: dict[str, ParamInfo]) -> _Claims:
    """Pass 1: every stored tensor named by an analytic tensor (its own name or the file's)."""
    claims = _Claims()
    first, shared = claims.first, claims.shared
    for gi, items in enumerate(expected):
        for item in items:
            verdict = _parts_verdict(item, stored) if item.via else ""
            for name in item.names:
                if name not in stored:
                    continue
                held = first.get(name)
                if held is None:
                    first[name] = _new_claim((gi, item, verdict))
                elif held.group != gi:
                    shared.setdefault(name, []).append(_Claim(gi, item, verdict))
    return claims


def _claim_renamed(
    groups: Sequence[Group],
    expected: list[list[_Item]],
    params: Sequence[ParamInfo],
    claims: _Claims,
    buffers: frozenset[str],
) -> dict[str, str]:
    """Pass 2: tensors a wrapper renamed (``..._raw`` -> ``...``), matched by their canonical name
    among the tensors of the module, its children or its wrappers. Returns ``canonical_of``."""
    by_leaf: dict[str, list[ParamInfo]] = {}
    canon_of: dict[str, str] = {}
    for p in params:
        if p.name in claims.first or p.name in buffers:
            continue
        canon = statedict.canonical_name(p.name)
        if canon != p.name:
            canon_of[p.name] = canon
            by_leaf.setdefault(canon.rpartition(".")[2], []).append(p)
    if not by_leaf:
        return canon_of
    for gi, g in enumerate(groups):
        for item in expected[gi]:
            full, t = item.names[0], item.tensor
            if len(item.names) != 1 or item.via or claims.found(gi, full):
                continue
            # weight norm stores two tensors for one weight: the one of the weight's shape is it
            candidates = sorted(by_leaf.get(t.name, ()), key=lambda p: p.shape != tuple(t.shape))
            for p in candidates:
                if p.name not in claims.first and _related(canon_of[p.name].rpartition(".")[0], g.path):
                    claims.first[p.name] = _Claim(gi, item)
                    claims.renamed[p.name] = full
                    claims.hits.add((gi, full))
                    break
    return canon_of


def _via_detail(item: _Item) -> str:
    t = item.tensor
    where = f"{t.name} {tuple(t.shape)}"
    if len(item.names) == 1:
        return f"the graph builds {where} from it ({item.via})"
    return f"one of {len(item.names)} stored parts of {where} ({item.via})"


class _Matcher:
    """Pass 3: one report row per stored tensor, and each group's totals (see match_tensors)."""

    def __init__(self, groups: Sequence[Group], claims: _Claims, canon_of: dict[str, str]) -> None:
        self.groups, self.claims, self.canon_of = groups, claims, canon_of
        self.reparametrized = set(claims.renamed.values())
        self.acc = [_Acc() for _ in groups]
        self.rows: list[TensorReport] = []
        self.first_of_key: dict[Any, str] = {}
        self.deepest = _Deepest(groups)

    def claimed(self, claim: _Claim, p: ParamInfo, counted: int, tied_to: str | None) -> None:
        name, shape = p.name, p.shape
        item, a = claim.item, self.acc[claim.group]
        t = item.tensor
        status, detail = Status.OK, ""
        if name in self.claims.renamed:
            detail = f"renamed: matched to {self.claims.renamed[name]}"
        if item.via:
            if claim.verdict:
                status, detail = Status.MISMATCH, claim.verdict
                a.bad.append(name)
            else:
                detail = _via_detail(item)
        elif t.shape != shape and tuple(t.shape) != shape:
            status, detail = Status.MISMATCH, f"formula shape {tuple(t.shape)}"
            a.bad.append(name)
        if tied_to is not None:
            status, detail = Status.TIED, f"tied to {tied_to} (counted once)"
            a.tied.append(f"{name} tied to {tied_to}, counted once")
        elif len(item.names) == 1 or name == item.names[0]:
            a.analytic += t.numel
        a.actual += counted
        path = self.groups[claim.group].path
        self.rows.append(TensorReport(name, path, shape, prod(shape), counted, t.formula, status, detail))

    def shared(self, first: _Claim, claim: _Claim, p: ParamInfo) -> None:
        """Another group takes a stored tensor a first group claimed: shown there, counted once."""
        t, a = claim.item.tensor, self.acc[claim.group]
        owner = self.groups[first.group].path or "(root)"
        bad = claim.verdict or (
            "" if claim.item.via or tuple(t.shape) == p.shape else f"formula shape {t.shape}"
        )
        if bad:
            status, detail = Status.MISMATCH, bad
            a.bad.append(p.name)
        else:
            status, detail = Status.TIED, f"shared with {owner} (counted once there)"
            a.tied.append(f"{p.name} shared with {owner}, counted once")
        path = self.groups[claim.group].path
        self.rows.append(TensorReport(p.name, path, p.shape, prod(p.shape), 0, t.formula, status, detail))

    def unclaimed(self, gi: int, p: ParamInfo, counted: int, tied_to: str | None) -> None:
        name = p.name
        canon = self.canon_of.get(name, name)
        if tied_to is not None:
            status, detail = Status.TIED, f"tied to {tied_to} (counted once)"
        elif canon != name and canon in self.reparametrized:
            status, detail = (
                Status.NO_FORMULA,
                f"re-parametrization of {canon} (e.g. weight norm's magnitude)",
            )
        else:
            status, detail = Status.NO_FORMULA, ""
        if gi >= 0:
            self.acc[gi].extra += counted
            self.acc[gi].actual += counted
        path = self.groups[gi].path if gi >= 0 else ""
        self.rows.append(TensorReport(name, path, p.shape, prod(p.shape), counted, None, status, detail))

    def add(self, p: ParamInfo, not_parameter: str | None) -> None:
        claim = self.claims.first.get(p.name)
        if not_parameter is not None:
            gi = claim.group if claim is not None else self.deepest(p.name)
            path = self.groups[gi].path if gi >= 0 else ""
            self.rows.append(
                TensorReport(p.name, path, p.shape, prod(p.shape), 0, None, Status.BUFFER, not_parameter)
            )
            return
        tied_to = self.first_of_key.get(p.key)
        if tied_to is None:
            self.first_of_key[p.key] = p.name
        counted = 0 if tied_to is not None else prod(p.shape)
        if claim is None:
            self.unclaimed(self.deepest(p.name), p, counted, tied_to)
            return
        self.claimed(claim, p, counted, tied_to)
        for other in self.claims.shared.get(p.name, ()):
            self.shared(claim, other, p)

    def match(self, params: Sequence[ParamInfo], buffers: frozenset[str], extra: Mapping[str, str]) -> None:
        """A row per stored tensor. The common case (a tensor of the formula's name and shape,
        not tied, shared, renamed or rearranged) is inline: a model has thousands of them."""
        first, shared, renamed = self.claims.first, self.claims.shared, self.claims.renamed
        first_of_key, acc, append = self.first_of_key, self.acc, self.rows.append
        paths = [g.path for g in self.groups]
        ok = Status.OK
        for p in params:
            name = p.name
            if name in buffers or name in extra:
                self.add(p, extra.get(name, "not a parameter"))
                continue
            claim = first.get(name)
            if claim is None or name in shared or name in renamed or p.key in first_of_key:
                self.add(p, None)
                continue
            item = claim.item
            t = item.tensor
            if item.via or t.shape != p.shape:
                self.add(p, None)
                continue
            first_of_key[p.key] = name
            a, n = acc[claim.group], t.numel
            a.analytic += n
            a.actual += n
            append(TensorReport(name, paths[claim.group], p.shape, n, n, t.formula, ok, ""))

    def missing(self, expected: list[list[_Item]]) -> None:
        """Analytic tensors no stored tensor holds: a mismatch each."""
        for gi, items in enumerate(expected):
            g, a = self.groups[gi], self.acc[gi]
            for item in items:
                lost = [n for n in item.names if not self.claims.found(gi, n)]
                if not lost:
                    continue
                t = item.tensor
                a.missing.append(lost[0])
                if len(lost) == len(item.names) or item.names[0] in lost:
                    a.analytic += t.numel
                self.rows.append(
                    TensorReport(
                        lost[0], g.path, tuple(t.shape), t.numel, 0, t.formula, Status.MISMATCH, "missing"
                    )
                )


def _module_rows(groups: Sequence[Group], expected: list[list[_Item]], acc: list[_Acc]) -> list[ModuleReport]:
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
            modules.append(ModuleReport(g.path, g.type_name, comp, a.analytic, a.actual, Status.OK, "", spec))
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
        status = Status.MISMATCH if bits else Status.OK
        modules.append(
            ModuleReport(g.path, g.type_name, comp, a.analytic, a.actual, status, "; ".join(details), spec)
        )
    return modules


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
    stored = {p.name: p for p in params}
    expected = _expected(groups)
    claims = _claim_exact(expected, stored)
    canon_of = _claim_renamed(groups, expected, params, claims, buffers)
    m = _Matcher(groups, claims, canon_of)
    m.match(params, buffers, not_parameters or {})
    m.missing(expected)
    modules = _module_rows(groups, expected, m.acc)
    total = sum(t.counted for t in m.rows)
    return Analysis(
        source, tuple(modules), tuple(m.rows), total, tuple(notes), actual_label, unverified=tuple(unverified)
    )


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
    their layers in their own metadata (node attributes, the model config), whose tensors are
    checked against the analytic ones of that layout, position by position. The verdict is
    ``unverified`` (not ``ok``) when something could not be checked: a recurrent layer the
    reader could not identify, ties a meta-device checkpoint cannot show.
    """
    from ..bridge.readers import model_path, read_model

    model = read_model(model_path(path, "inspect"))
    constants = {t.name: t.not_parameter for t in model.tensors if t.not_parameter}
    found = {n for layer in model.layers for n in layer.tensors}
    found.update(n for c in model.components for n in c.tensors)
    rest = {t.name: t.shape for t in model.tensors if t.name not in found and t.name not in constants}
    groups = _file_groups(model)
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
        notes.append(f"{model.format} file: layers from its metadata, checked position by position")
    analysis = match_tensors(
        groups,
        params,
        source=model.source,
        buffers=buffers,
        not_parameters=constants,
        notes=notes,
        actual_label="stored",
        unverified=[*model.unverified, *_unread_recurrent(inferred, rest)],
    )
    return dataclasses.replace(analysis, ties_unknown=ties_unknown)


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


def inspect_checkpoint(path: str | Path) -> Analysis:
    """Deprecated alias of :func:`inspect` (renamed in 0.2.0)."""
    import warnings

    warnings.warn("inspect_checkpoint is deprecated: use paramcalc.inspect", DeprecationWarning, stacklevel=2)
    return inspect(path)


def _renamed(c: Component | None, prefix: str) -> Component | None:
    if c is None:
        return None
    return dataclasses.replace(c, name=prefix or "(root)")
