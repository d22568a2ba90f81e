"""The registry of recurrent cell types: one entry owns everything paramcalc knows about a cell.

:data:`CELLS` holds the entries by canonical name (the built-ins of
:mod:`paramcalc.core.builtin_cells` first, then the registered and plugin cells), :data:`ALIASES`
their other names. :func:`get_cell` looks a cell up (loading ``paramcalc.cells`` plugins on the
first name it does not know), :func:`register_cell` adds one; registering, replacing or removing
one clears every memoised result (:mod:`paramcalc.core.memo`). What an entry is, and the checks it
passes, are in :mod:`paramcalc.core.celltypes` (re-exported here). ``count``, ``cost``, ``solve``,
the architectures, the torch bridge, the readers, ``bench``, the flop check and the CLI read the
entry; no code outside the registry asks which cell it is looking at, and no table elsewhere is
keyed by a cell's name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ..errors import ParamcalcError, ParamcalcWarning
from . import memo
from .builtin_cells import builtin_cells
from .celltypes import (
    BLOCK_KINDS,
    CONVENTIONS,
    DEFAULT_RULES,
    GEMM_KINDS,
    MERGE_MODES,
    ONNX_NAMES,
    CellType,
    Dims,
    Layout,
    TensorTemplate,
    TorchBinding,
    _key,
    gated_templates,
    validate_cell,
)

#: What an entry is (:mod:`paramcalc.core.celltypes`) is re-exported with the registry.
__all__ = [
    "ALIASES",
    "BLOCK_KINDS",
    "CELLS",
    "CLASSIC_CELLS",
    "CONVENTIONS",
    "DEFAULT_RULES",
    "ENTRY_POINT_GROUP",
    "GEMM_KINDS",
    "MERGE_MODES",
    "ONNX_NAMES",
    "CellType",
    "Dims",
    "Layout",
    "PluginWarning",
    "TensorTemplate",
    "TorchBinding",
    "cell_for",
    "cell_names",
    "find_cell",
    "gated_templates",
    "get_cell",
    "keras_stack_class",
    "load_plugins",
    "plugin_culprit",
    "plugin_note",
    "register_cell",
    "registered_cells",
    "unregister_cell",
    "validate_cell",
]

#: Every registered cell type, by canonical name (built-ins first, in this order).
CELLS: dict[str, CellType] = {c.name: c for c in builtin_cells()}
#: Alternative names -> canonical names.
ALIASES: dict[str, str] = {a: c.name for c in CELLS.values() for a in c.aliases}
#: The three classic cells compared side by side (``compare``, ``solve`` with a reference).
CLASSIC_CELLS: tuple[str, ...] = ("rnn", "lstm", "gru")


_PLUGINS_LOADED = False
#: The entry-point group a package registers its cells under (see docs/extending.md).
ENTRY_POINT_GROUP = "paramcalc.cells"
#: Plugins that failed, by entry point: ``"name (package.module:attr)"`` -> the reason (one line).
PLUGIN_FAILURES: dict[str, str] = {}


class PluginWarning(ParamcalcWarning):
    """A ``paramcalc.cells`` plugin failed to load or gave something paramcalc cannot use."""


def load_plugins() -> None:
    """Register the cells other installed packages declare under :data:`ENTRY_POINT_GROUP`.

    Each entry point names a :class:`CellType`, or a callable returning one or a list of them.
    Loaded once, on the first lookup of a name the registry does not know. A plugin that fails
    (raises, calls ``sys.exit``, gives no :class:`CellType`, an entry the registry refuses, or a
    name already taken) is never silent: it is kept in :data:`PLUGIN_FAILURES` with the reason;
    the error of a name still unknown names it (:func:`plugin_note`), and when the name is found
    (another plugin's cell) a :class:`PluginWarning` does, once. The other plugins load.
    """
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points

    try:
        found = list(entry_points(group=ENTRY_POINT_GROUP))
    except Exception as exc:  # unreadable metadata of some installed distribution
        _plugin_failed(f"group {ENTRY_POINT_GROUP!r}", f"cannot list the entry points: {_reason(exc)}")
        return
    for ep in found:
        _load_plugin(ep)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_REPORTED: set[str] = set()


def _plugin_failed(label: str, reason: str) -> None:
    PLUGIN_FAILURES[label] = reason


def _unreported() -> list[str]:
    """The plugin failures not yet told to the user, as text, now marked told."""
    out = [
        f"plugin {label} failed: {why}" for label, why in PLUGIN_FAILURES.items() if label not in _REPORTED
    ]
    _REPORTED.update(PLUGIN_FAILURES)
    return out


def plugin_note() -> str:
    """`` (plugin 'x' (pkg.mod:attr) failed: reason)`` for an error about an unknown name, or ""."""
    failed = _unreported()
    return f" ({'; '.join(failed)})" if failed else ""


def _warn_plugin_failures() -> None:
    import warnings

    for text in _unreported():
        warnings.warn(f"paramcalc {text}; its cells are not available", PluginWarning, stacklevel=3)


def _load_plugin(ep: Any) -> None:
    """Register one entry point's cells (see :func:`load_plugins`)."""
    label = f"{ep.name!r} ({ep.value})"
    try:
        obj = ep.load()
        cells = obj() if callable(obj) and not isinstance(obj, CellType) else obj
    except (Exception, SystemExit) as exc:  # a plugin's bug, or its sys.exit(): name it, go on
        _plugin_failed(label, _reason(exc))
        return
    for cell in cells if isinstance(cells, (list, tuple)) else [cells]:
        if not isinstance(cell, CellType):
            _plugin_failed(label, f"it gave a {type(cell).__name__}, not a paramcalc.CellType")
            continue
        try:
            register_cell(cell)
        except ParamcalcError as exc:
            _plugin_failed(label, str(exc))


def reference_label(ref: Any) -> str:
    """How a ``TorchBinding.reference`` is named in messages (``package.module:attr``)."""
    return ref if isinstance(ref, str) else str(getattr(ref, "__qualname__", None) or repr(ref))


def module_failure(cell: CellType, what: str, exc: BaseException) -> str:
    """One line saying that ``cell``'s own torch module failed, and whose problem that is."""
    return (
        f"cell {cell.name}: its module {reference_label(cell.torch.reference)} failed {what}: "
        f"{_reason(exc)} (a problem of the package that registered the cell, not of paramcalc)"
    )


def _owner_packages() -> dict[str, CellType]:
    """Top-level package of each registered cell's own torch module (paramcalc's excluded)."""
    owners: dict[str, CellType] = {}
    for c in CELLS.values():
        ref = c.torch.reference
        module = ref.partition(":")[0] if isinstance(ref, str) else getattr(ref, "__module__", None)
        top = str(module or "").partition(".")[0]
        if top and top != "paramcalc":
            owners.setdefault(top, c)
    return owners


def plugin_culprit(exc: BaseException) -> str | None:
    """If ``exc`` was raised in a registered cell's own module (a frame of its traceback runs in
    that module's package, a forward for instance), one line naming the cell; else ``None``."""
    owners = _owner_packages()
    culprit = None
    tb = exc.__traceback__
    while tb is not None:  # the innermost frame in a cell's package decides
        top = str(tb.tb_frame.f_globals.get("__name__", "")).partition(".")[0]
        culprit = owners.get(top, culprit)
        tb = tb.tb_next
    return None if culprit is None else module_failure(culprit, "while running", exc)


def registered_cells() -> tuple[CellType, ...]:
    """Every registered cell, the installed plugins' included (loaded on the first call)."""
    load_plugins()
    _warn_plugin_failures()
    return tuple(CELLS.values())


def find_cell(name: Any) -> CellType | None:
    """The registered cell ``name`` names (installed plugins are looked in), or ``None``."""
    if isinstance(name, CellType):
        return name
    key = _key(name)
    key = ALIASES.get(key, key)
    if key not in CELLS:
        load_plugins()
        key = ALIASES.get(key, key)
        if key in CELLS:
            _warn_plugin_failures()  # found (another plugin's cell): still say what failed
    return CELLS.get(key)


def get_cell(name: str | CellType) -> CellType:
    """Look a cell type up by name or alias (case-insensitive); one-line error if unknown."""
    found = find_cell(name)
    if found is not None:
        return found
    known = ", ".join([*CELLS, *ALIASES])
    shown = name if len(str(name)) <= 40 else str(name)[:37] + "..."
    raise ParamcalcError(f"unknown cell {shown!r}{plugin_note()}: expected one of {known}")


def cell_names(cells: Any, what: str = "cells") -> list[str] | None:
    """Canonical names of ``cells``, each looked up (a one-line error for an unknown one).

    ``cells`` is ``None`` (returned as is), one name or a comma-separated list (``"gru"``,
    ``"rnn,lstm"``: a string is never taken apart into characters), a :class:`CellType`, or a
    sequence of names and cell types. A name given twice is kept once, where it first appears.
    """
    if cells is None:
        return None
    if isinstance(cells, str):
        items: list[Any] = [c.strip() for c in cells.split(",")]
        items = [c for c in items if c]
    elif isinstance(cells, CellType):
        items = [cells]
    elif isinstance(cells, (bytes, bytearray, Mapping)) or not isinstance(cells, Iterable):
        raise ParamcalcError(
            f"{what} must be a cell name, a comma-separated list or a list of names, "
            f"got {type(cells).__name__}"
        )
    else:
        items = list(cells)
    if not items:
        raise ParamcalcError(f"{what} is empty: name at least one cell, e.g. rnn,lstm,gru")
    out: list[str] = []
    for item in items:
        if not isinstance(item, (str, CellType)):
            raise ParamcalcError(f"{what}: a cell is named by a string, got {type(item).__name__} {item!r}")
        name = get_cell(item).name
        if name not in out:
            out.append(name)
    return out


def register_cell(cell: CellType, *, replace_existing: bool = False) -> CellType:
    """Add a cell type to the registry: ``count``, ``cost``, ``solve``, ``compare`` and the CLI see it.

    ``check``, ``bench`` and ``cost --flop-check`` need a torch module: give ``cell.torch`` a
    :class:`TorchBinding` whose ``reference`` builds it (see ``docs/extending.md``).
    """
    if not isinstance(cell, CellType):
        raise ParamcalcError(f"register_cell needs a CellType, got {type(cell).__name__}")
    key = _key(cell.name)
    if key != cell.name:
        cell = replace(cell, name=key)
    if not replace_existing and (key in CELLS or key in ALIASES):
        raise ParamcalcError(f"cell {key!r} is already registered (pass replace_existing=True)")
    for alias in map(_key, cell.aliases):
        taken = alias in CELLS or (alias in ALIASES and ALIASES[alias] != key)
        if taken:
            raise ParamcalcError(
                f"cell {key!r}: the alias {alias!r} already names cell {get_cell(alias).name!r}"
            )
    CELLS[key] = cell
    for alias in cell.aliases:
        ALIASES[_key(alias)] = key
    memo.clear()  # a name registered again may have other tensors: forget what was computed
    return cell


def unregister_cell(name: str) -> None:
    """Remove a registered cell (and its aliases); built-in cells can be removed too."""
    key = get_cell(name).name
    del CELLS[key]
    for alias in [a for a, c in ALIASES.items() if c == key]:
        del ALIASES[alias]
    memo.clear()


def cell_for(framework: str, class_name: str, activation: str | None = None) -> CellType | None:
    """The registered stack a framework's layer class is (``keras``: ``LSTM``, ``SimpleRNN``, ...;
    ``onnx``: ``LSTM``, ``GRU``, ``RNN``), the one with that ``activation`` where several share the
    class (``SimpleRNN(activation="relu")`` is ``rnn_relu``); ``None`` if none is."""
    attr = {"keras": "keras_class", "onnx": "onnx_op"}[framework]
    found = [c for c in registered_cells() if not c.single_step and getattr(c, attr) == class_name]
    if activation:
        exact = [c for c in found if c.nonlinearity == activation]
        if exact:
            return exact[0]
    return found[0] if found else None


def keras_stack_class(cell_class: str) -> str | None:
    """The Keras layer a Keras cell class runs in (``LSTMCell`` -> ``LSTM``, inside ``keras.layers.RNN``),
    from the registry: the single-step cell of that Keras class and its stack's Keras class."""
    for c in registered_cells():
        if c.single_step and c.keras_class == cell_class:
            stack = find_cell(c.stack_name)
            return stack.keras_class if stack is not None else None
    return None
