"""Matching analytic tensors with stored (or actual) ones: pure, on names, shapes and identity keys.

The records (:class:`ParamInfo`, :class:`Group`, :class:`TensorReport`, :class:`ModuleReport`)
and the passes of :func:`match`: (1) exact names (or the stored names a file's group gives,
position by position; a stored tensor a second group also names is *shared*: shown there,
counted once); (2) names a wrapper renamed (``..._raw`` -> ``...``), matched by their canonical
name among tensors of the module, its children or its wrappers; (3) whatever is left is
*counted, no formula*, under the deepest group that holds it. A tensor whose identity key was
claimed before is tied: shown, counted once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from math import prod
from typing import Any, NamedTuple, overload

from ..bridge import statedict
from ..bridge.readers import Part
from ..core.architecture import Component, Recurrent
from ..core.spec import RecurrentSpec
from ..results.base import Status
from ..results.text import plural

NO_FORMULA = Status.NO_FORMULA.value


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


class TensorRows(Sequence[TensorReport]):
    """The per-tensor rows of an analysis, with the three numbers its verdict needs.

    A model has thousands of rows and its verdict and totals need none of them: a walk over a
    module may hand over ``build`` instead, run the first time the rows are read, together with
    the numbers (``counted``: the unique total, ``no_formula``: counted without a formula,
    ``problem``: a row is a mismatch).
    """

    __slots__ = ("_build", "_rows", "counted", "no_formula", "problem")

    def __init__(
        self,
        rows: Sequence[TensorReport] = (),
        *,
        build: Callable[[], Sequence[TensorReport]] | None = None,
        counted: int = 0,
        no_formula: int = 0,
        problem: bool = False,
    ) -> None:
        self._build = build
        self._rows: tuple[TensorReport, ...] | None = None
        if build is None:
            self._rows = tuple(rows)
            counted = sum(t.counted for t in self._rows)
            no_formula = sum(t.counted for t in self._rows if t.status is Status.NO_FORMULA)
            problem = any(t.problem for t in self._rows)
        self.counted, self.no_formula, self.problem = counted, no_formula, problem

    def rows(self) -> tuple[TensorReport, ...]:
        if self._rows is None:
            assert self._build is not None
            self._rows, self._build = tuple(self._build()), None
        return self._rows

    @overload
    def __getitem__(self, i: int) -> TensorReport: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[TensorReport, ...]: ...
    def __getitem__(self, i: int | slice) -> TensorReport | tuple[TensorReport, ...]:
        return self.rows()[i]

    def __len__(self) -> int:
        return len(self.rows())

    def __iter__(self) -> Iterator[TensorReport]:
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TensorRows):
            return self.rows() == other.rows()
        return isinstance(other, tuple) and self.rows() == other

    def __hash__(self) -> int:
        return hash(self.rows())

    def __repr__(self) -> str:
        return f"TensorRows({self.rows()!r})"


# --- the passes --------------------------------------------------------------------------------


def _related(owner: str, path: str) -> bool:
    """``owner`` is ``path``, inside it, or one of its ancestors (a wrapper)."""
    if owner == path or not owner:
        return True
    return owner.startswith(path + ".") or path.startswith(owner + ".") or not path


class _Acc:
    """What one group collects while the tensors are matched (slots: thousands are made)."""

    __slots__ = ("actual", "analytic", "bad", "extra", "missing", "tied")

    def __init__(self) -> None:
        self.analytic = self.actual = self.extra = 0
        self.missing: list[str] = []
        self.bad: list[str] = []
        self.tied: list[str] = []


class _Accs(dict[int, _Acc]):
    """Each group's :class:`_Acc`, made when the group first collects something."""

    def __missing__(self, gi: int) -> _Acc:
        a = self[gi] = _Acc()
        return a


_NOTHING = _Acc()  # what a group that collected nothing reports from (never written to)


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


def expected_items(groups: Sequence[Group]) -> list[list[_Item]]:
    """Per group, its analytic tensors and the stored names expected to hold each."""
    return [group_items(g) for g in groups]


def group_items(g: Group) -> list[_Item]:
    """The analytic tensors of group ``g`` and the stored names expected to hold each."""
    comp = g.component
    if comp is None:
        return []
    prefix = f"{g.path}." if g.path else ""
    ts = comp.tensors()
    parts = g.parts
    if parts is None:
        return [_new_item(((prefix + t.name,), t, "")) for t in ts]
    # by position: the i-th analytic tensor is held by the i-th stored part
    return [
        _Item(parts[i].names, t, ", ".join(parts[i].via)) if i < len(parts) else _Item((prefix + t.name,), t)
        for i, t in enumerate(ts)
    ]


def _parts_verdict(item: _Item, stored: dict[str, ParamInfo]) -> str:
    """Empty if the stored parts of a rearranged tensor hold exactly its elements."""
    have = [stored[n].numel for n in item.names if n in stored]
    t = item.tensor
    if len(have) < len(item.names) or sum(have) == t.numel:
        return ""
    held = f"{plural(len(have), 'stored tensor')} hold{'s' if len(have) == 1 else ''} {sum(have):,} elements"
    return f"{held}; {t.name} {tuple(t.shape)} needs {t.numel:,}"


def claim_exact(expected: list[list[_Item]], stored: dict[str, ParamInfo]) -> _Claims:
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


def claim_renamed(
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


class Matcher:
    """Pass 3: one report row per stored tensor, and each group's totals (see match_tensors)."""

    def __init__(self, groups: Sequence[Group], claims: _Claims, canon_of: dict[str, str]) -> None:
        self.groups, self.claims, self.canon_of = groups, claims, canon_of
        self.reparametrized = set(claims.renamed.values())
        self.acc = _Accs()
        self.rows: list[TensorReport] = []
        self.first_of_key: dict[Any, str] = {}
        self.deepest = Deepest(groups)

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
            for item in items:
                lost = [n for n in item.names if not self.claims.found(gi, n)]
                if not lost:
                    continue
                g, a, t = self.groups[gi], self.acc[gi], item.tensor
                a.missing.append(lost[0])
                if len(lost) == len(item.names) or item.names[0] in lost:
                    a.analytic += t.numel
                self.rows.append(
                    TensorReport(
                        lost[0], g.path, tuple(t.shape), t.numel, 0, t.formula, Status.MISMATCH, "missing"
                    )
                )


def module_rows(groups: Sequence[Group], expected: list[list[_Item]], acc: _Accs) -> list[ModuleReport]:
    """One report per module that holds parameters or has a formula for them."""
    out = (module_row(g, bool(expected[gi]), acc.get(gi)) for gi, g in enumerate(groups))
    return [r for r in out if r is not None]


def module_row(g: Group, has_tensors: bool, a: _Acc | None) -> ModuleReport | None:
    """The report of group ``g`` from what it collected (None: nothing to report)."""
    a = a or _NOTHING
    comp = g.component
    if comp is None:
        if a.actual:
            return ModuleReport(g.path, g.type_name, None, None, a.actual, Status.NO_FORMULA, g.note)
        return None
    if not has_tensors and a.actual == 0:
        return None  # a parameter-free layer (dropout)
    spec = comp.spec if isinstance(comp, Recurrent) else None
    if not (a.missing or a.bad or a.extra or a.tied or g.note):  # the common case: all agree
        return ModuleReport(g.path, g.type_name, comp, a.analytic, a.actual, Status.OK, "", spec)
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
    return ModuleReport(g.path, g.type_name, comp, a.analytic, a.actual, status, "; ".join(details), spec)


class Deepest:
    """The index of the deepest group whose path holds a tensor name (-1: none), memoised."""

    def __init__(self, groups: Sequence[Group]) -> None:
        self.groups = groups
        self.index: dict[str, int] | None = None  # made at the first question

    def __call__(self, name: str) -> int:
        if self.index is None:
            self.index = {g.path: i for i, g in enumerate(self.groups)}
            self.root = self.index.get("", -1)
        owner = name.rpartition(".")[0]
        while owner:
            i = self.index.get(owner)
            if i is not None:
                return i
            owner = owner.rpartition(".")[0]
        return self.root


def match(
    groups: Sequence[Group],
    params: Sequence[ParamInfo],
    *,
    buffers: frozenset[str] = frozenset(),
    not_parameters: Mapping[str, str] | None = None,
) -> tuple[list[ModuleReport], list[TensorReport]]:
    """Each group's analytic tensors matched with ``params``: a report per module and per
    stored tensor (see the module docstring for the passes). ``buffers`` and
    ``not_parameters`` (name -> why) are listed and not counted."""
    stored = {p.name: p for p in params}
    expected = expected_items(groups)
    claims = claim_exact(expected, stored)
    canon_of = claim_renamed(groups, expected, params, claims, buffers)
    m = Matcher(groups, claims, canon_of)
    m.match(params, buffers, not_parameters or {})
    m.missing(expected)
    return module_rows(groups, expected, m.acc), m.rows
