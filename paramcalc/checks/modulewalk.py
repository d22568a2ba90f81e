"""The walk of :func:`~paramcalc.checks.inspection.analyze` over a module tree.

One pass collects every parameter, in ``named_parameters(remove_duplicate=False)`` order, and
the groups an adapter reads (a module with its whole subtree). A group whose parameters are
exactly its component's tensors (names, shapes and order), none tied to an earlier one, is
*clean*: each of its rows is OK with the formula's count, so its report is made at once and
its rows are written only when the tensor view is read. Every other parameter and group goes
through the matching passes (:func:`paramcalc.checks.matching.match`, the reference), whose rows
take their places in parameter order. A model of many regular layers (the common case) thus
costs about one dictionary look-up per module and a comparison per tensor.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..bridge import adapters
from ..core.architecture import Component, Recurrent
from ..errors import ParamcalcError
from ..results.base import Status
from ..results.text import plural
from .matching import (
    Deepest,
    Group,
    Matcher,
    ModuleReport,
    ParamInfo,
    TensorReport,
    TensorRows,
    claim_exact,
    claim_renamed,
    group_items,
    match,
    module_row,
)

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

_new_row = functools.partial(tuple.__new__, TensorReport)
_new_module = functools.partial(tuple.__new__, ModuleReport)
_new_group = functools.partial(tuple.__new__, Group)
_shape = operator.attrgetter("shape")


class _Expect(NamedTuple):
    """A component's tensors as a walk compares them: local names, shapes, counts, formulas."""

    leaves: list[str]
    shapes: list[tuple[int, ...]]
    numels: tuple[int, ...]
    formulas: tuple[str, ...]
    total: int


def _expect(comp: Component) -> _Expect:
    ts = comp.tensors()
    numels = tuple(t.numel for t in ts)
    return _Expect(
        [t.name for t in ts],
        [tuple(t.shape) for t in ts],
        numels,
        tuple(t.formula for t in ts),
        sum(numels),
    )


class _Tree:
    """One pass over a module tree: parameters in order, groups, and each read group's span
    (the parameters its subtree holds: a walk is depth-first, so they are contiguous), checked
    for cleanness as it closes (see the module docstring)."""

    def __init__(self, module: nn.Module) -> None:
        self.names: list[str] = []
        self.tensors: list[Any] = []
        self.groups: list[Group] = []
        self.starts: dict[int, int] = {}  # read group -> [start, end) of its parameters
        self.ends: dict[int, int] = {}
        self.clean: dict[int, _Expect] = {}  # clean group -> its expectation, in walk order
        self._expects: dict[int, _Expect] = {}  # per configuration
        self.packed: list[ParamInfo] = []  # quantized modules' packed weights, after the rest
        self.packed_paths: list[str] = []
        self._walk(module)
        ties = self._ties()
        if ties:  # a tensor a group holds under a second name: the passes tell the tie
            for gi in [gi for gi in self.clean if any(self.starts[gi] <= i < self.ends[gi] for i in ties)]:
                del self.clean[gi]

    def _walk(self, module: nn.Module) -> None:
        read = adapters.ComponentReader()
        quantized = adapters.quantized_rnn_types() + adapters.quantized_linear_types()
        is_quantized: dict[type, bool] = {}
        # bound methods in locals: this loop runs once per module and its inner one per tensor
        add_name, add_tensor, add_group = self.names.append, self.tensors.append, self.groups.append
        names, groups = self.names, self.groups
        covered: str | None = None  # the last path an adapter read: its subtree is its group's
        inside_of = ""
        opened: tuple[int, Any, int, int] | None = None  # group, module, own parameters, config
        paths, mods = [""], [module]
        pop_path, pop_mod, push_path, push_mod = paths.pop, mods.pop, paths.append, mods.append
        while paths:
            path, m = pop_path(), pop_mod()
            prefix = f"{path}." if path else ""
            if m._modules:
                for k, c in reversed(m._modules.items()):
                    if c is not None:
                        push_path(prefix + k)
                        push_mod(c)
            inside = covered is not None and (path == covered or path.startswith(inside_of))
            if opened is not None and not inside:
                self._close(*opened)
                opened = None
            here = len(names)
            for leaf, p in m._parameters.items():
                if p is not None:
                    add_name(prefix + leaf)
                    add_tensor(p)
            kind = type(m)
            q = is_quantized.get(kind)
            if q is None:
                q = is_quantized[kind] = bool(quantized) and isinstance(m, quantized)
            if q:
                self._packed(m, path, prefix)
            if inside:
                continue  # inside a module an adapter already read
            comp, config = read(m, path or kind.__name__)
            if comp is not None:  # an adapter covers the module's whole subtree; its name is the path
                covered, inside_of = path, path + "."  # not prefix: "" at the root
                opened = (len(groups), m, len(names) - here, config)
                self.starts[len(groups)] = here
            add_group(_new_group((path, kind.__name__, comp, "", None)))
        if opened is not None:
            self._close(*opened)

    def _close(self, gi: int, m: Any, own: int, config: int) -> None:
        """Group ``gi``'s span ends here: it is clean if its parameters are its component's
        tensors (names, shapes, order; ties are checked once the walk is over)."""
        start, end = self.starts[gi], len(self.names)
        self.ends[gi] = end
        exp = self._expects.get(config) if config >= 0 else None
        if exp is None:
            comp = self.groups[gi].component
            assert comp is not None
            exp = _expect(comp)
            if config >= 0:
                self._expects[config] = exp
        if end - start != len(exp.leaves):
            return
        if own == end - start:  # its module's own parameters (the common case)
            params = m._parameters
            named = list(params) if len(params) == own else [k for k, p in params.items() if p is not None]
        else:
            path = self.groups[gi].path
            named = [n[len(path) + 1 :] if path else n for n in self.names[start:end]]
        if named == exp.leaves and list(map(_shape, self.tensors[start:end])) == exp.shapes:
            self.clean[gi] = exp

    def _packed(self, m: Any, path: str, prefix: str) -> None:
        for leaf, shape, dtype in adapters.packed_tensors(m):
            full = prefix + leaf
            self.packed.append(ParamInfo(full, shape, ("packed", full), dtype))
            self.packed_paths.append(path)

    def check_initialised(self) -> None:
        from torch import nn

        lazy_type = nn.parameter.UninitializedParameter
        if not any(issubclass(k, lazy_type) for k in set(map(type, self.tensors))):
            return
        lazy = [n for n, p in zip(self.names, self.tensors, strict=True) if issubclass(type(p), lazy_type)]
        raise ParamcalcError(
            f"{plural(len(lazy), 'parameter')} {'is' if len(lazy) == 1 else 'are'} not initialised yet "
            f"(a Lazy module, e.g. {lazy[0]}): "
            "run one forward pass first so their shapes are known"
        )

    def _ties(self) -> list[int]:
        """Indices of parameters that are an earlier one (the same tensor under a second name)."""
        ids = list(map(id, self.tensors))
        if len(set(ids)) == len(ids):
            return []
        seen: set[int] = set()
        out = []
        for i, k in enumerate(ids):
            if k in seen:
                out.append(i)
            seen.add(k)
        return out

    def packed_note(self) -> list[str]:
        if not self.packed_paths:
            return []
        where = ", ".join(sorted({p or "(root)" for p in self.packed_paths}))
        dtypes = ", ".join(sorted({p.dtype for p in self.packed}))
        return [
            f"{where}: dynamically quantized; their packed weights ({dtypes}) are not parameters() but are "
            "counted here, with the float layer's formula"
        ]

    def infos(self, start: int, end: int) -> list[ParamInfo]:
        return [
            ParamInfo(n, tuple(p.shape), id(p))
            for n, p in zip(self.names[start:end], self.tensors[start:end], strict=True)
        ]


def _items(tree: _Tree) -> list[list[Any]]:
    """The matching passes' expected tensors: none for a clean group. A group left to the
    passes that names a clean group's tensor makes that group unclean too (a wrapper read at
    the root whose children are read again): the passes then see both."""
    groups, clean = tree.groups, tree.clean
    items = [[] if gi in clean else group_items(g) for gi, g in enumerate(groups)]
    todo = [gi for gi, its in enumerate(items) if its]
    deepest = Deepest(groups)
    while todo:
        for item in items[todo.pop()]:
            for name in item.names:
                owner = deepest(name)
                if owner in clean:
                    del clean[owner]
                    items[owner] = group_items(groups[owner])
                    todo.append(owner)
    return items


def analyze_tree(module: nn.Module) -> tuple[tuple[ModuleReport, ...], TensorRows, list[str]]:
    """The module reports, the rows (built when read) and the notes of ``analyze(module)``."""
    tree = _Tree(module)
    tree.check_initialised()
    items = _items(tree)
    runs = _runs(tree)
    rest = [p for _, params in runs for p in params]
    claims = claim_exact(items, {p.name: p for p in rest})
    matcher = Matcher(tree.groups, claims, claim_renamed(tree.groups, items, rest, claims, frozenset()))
    for gi in tree.clean if rest else ():  # a clean group's tensors are the first holders of theirs
        start, end = tree.starts[gi], tree.ends[gi]
        matcher.first_of_key.update(zip(map(id, tree.tensors[start:end]), tree.names[start:end], strict=True))
    bounds = []  # where each run's rows end among the passes' rows
    for _, params in runs:
        matcher.match(params, frozenset(), {})
        bounds.append(len(matcher.rows))
    matcher.missing(items)
    if not matcher.acc.keys().isdisjoint(tree.clean):  # never expected: the passes alone, then
        reports, rows = match(tree.groups, tree.infos(0, len(tree.names)) + tree.packed)
        return tuple(reports), TensorRows(rows), tree.packed_note()
    general = matcher.rows
    runs_at = [(start, bound) for (start, _), bound in zip(runs, bounds, strict=True)]
    return (
        _module_reports(tree, items, matcher),
        TensorRows(
            build=functools.partial(
                _rows, tree.names, tree.starts, tree.clean, [g.path for g in tree.groups], runs_at, general
            ),
            counted=sum(e.total for e in tree.clean.values()) + sum(r.counted for r in general),
            no_formula=sum(r.counted for r in general if r.status is Status.NO_FORMULA),
            problem=any(r.problem for r in general),
        ),
        tree.packed_note(),
    )


def _runs(tree: _Tree) -> list[tuple[int, list[ParamInfo]]]:
    """The runs of parameters outside clean spans: where each starts, and its parameters (the
    packed weights of quantized modules last)."""
    out: list[tuple[int, list[ParamInfo]]] = []
    at = 0
    for gi in tree.clean:  # in walk order, as the spans are
        start = tree.starts[gi]
        if start > at:
            out.append((at, tree.infos(at, start)))
        at = tree.ends[gi]
    n = len(tree.names)
    if at < n or tree.packed:
        out.append((at, tree.infos(at, n) + tree.packed))
    return out


def _module_reports(tree: _Tree, items: list[list[Any]], matcher: Matcher) -> tuple[ModuleReport, ...]:
    out: list[ModuleReport] = []
    ok = Status.OK
    for gi, g in enumerate(tree.groups):
        exp = tree.clean.get(gi)
        if exp is None:
            row = module_row(g, bool(items[gi]), matcher.acc.get(gi))
            if row is not None:
                out.append(row)
        elif exp.leaves:  # a parameter-free layer (dropout) has no report
            comp = g.component
            spec = comp.spec if isinstance(comp, Recurrent) else None
            out.append(_new_module((g.path, g.type_name, comp, exp.total, exp.total, ok, "", spec)))
    return tuple(out)


def _rows(
    names: list[str],
    starts: dict[int, int],
    clean: dict[int, _Expect],
    paths: list[str],
    runs: Sequence[tuple[int, int]],
    general: Sequence[TensorReport],
) -> list[TensorReport]:
    """Every row in parameter order, then the missing tensors: the clean spans' rows written
    here, the runs' rows (``(start, end among general)``) taken from the passes. (It keeps
    no more of the walk than it needs: the rest is freed with the analysis made.)"""
    out: list[TensorReport] = []
    ok = Status.OK
    done = r = 0
    for gi, exp in clean.items():
        start, path = starts[gi], paths[gi]
        while r < len(runs) and runs[r][0] < start:
            out.extend(general[done : runs[r][1]])
            done, r = runs[r][1], r + 1
        span = names[start : start + len(exp.leaves)]
        for name, shape, n, formula in zip(span, exp.shapes, exp.numels, exp.formulas, strict=True):
            out.append(_new_row((name, path, shape, n, n, formula, ok, "")))
    out.extend(general[done:])
    return out
