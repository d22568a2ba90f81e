"""Analyse any ``nn.Module`` or a saved state dict: analytic count vs actual, per module and tensor.

:func:`analyze` walks a module tree. A module whose type has an adapter (see
:func:`paramcalc.torch_bridge.register_adapter`; built in: RNN/LSTM/GRU and their cells,
Embedding, Linear, LayerNorm, Conv1d, BatchNorm1d) gets analytic rows with formulas; the
tensors of anything else are *counted, no formula* (never dropped, never zeroed). A tied
Parameter counts once, where it first appears. A parameter a wrapper renamed (weight-drop's
``weight_hh_l0_raw``, pruning's ``weight_orig``, ``parametrizations.weight.original``) is still
matched to its formula.

:func:`inspect_checkpoint` does the same for a file saved with ``torch.save``: it loads it with
``torch.load(..., weights_only=True)`` (nothing in the file is executed: a pickle that would run
code is refused), finds the state dict (top level or under ``state_dict``, ``model``, ...), and
reads every layer back from names and shapes (:func:`paramcalc.torch_bridge.infer_components`).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import torch_bridge
from .arch import Component, Recurrent
from .errors import ParamcalcError
from .spec import RecurrentSpec

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from torch import nn

NO_FORMULA = "counted, no formula"
MODULE_COLUMNS = ("module", "type", "layer", "formula", "analytic", "actual", "status")
TENSOR_COLUMNS = ("name", "module", "shape", "numel", "counted", "formula", "status")
#: Keys under which training scripts commonly nest the state dict in a checkpoint.
NEST_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "model_state", "weights")


@dataclass(frozen=True)
class ParamInfo:
    """One stored tensor: name, shape, and an identity key (equal keys = one tied tensor)."""

    name: str
    shape: tuple[int, ...]
    key: Any

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class Group:
    """A module (or an inferred layer): path, type name and its analytic component, if any."""

    path: str
    type_name: str
    component: Component | None
    note: str = ""


@dataclass(frozen=True)
class TensorReport:
    name: str
    module: str
    shape: tuple[int, ...]
    numel: int
    counted: int  # 0 for the second holder of a tied tensor and for buffers
    formula: str
    status: str
    problem: bool = False

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "shape": str(self.shape),
            "numel": self.numel,
            "counted": self.counted,
            "formula": self.formula,
            "status": self.status,
        }


@dataclass(frozen=True)
class ModuleReport:
    path: str
    type_name: str
    layer: str  # e.g. "LSTM(400, 1150)" or "-" without a formula
    formula: str
    analytic: int | None  # None: no formula for this module
    actual: int
    status: str
    spec: RecurrentSpec | None = None

    @property
    def ok(self) -> bool:
        return not self.status.startswith("DIFFERS")

    def record(self) -> dict[str, Any]:
        return {
            "module": self.path or "(root)",
            "type": self.type_name,
            "layer": self.layer,
            "formula": self.formula,
            "analytic": "" if self.analytic is None else self.analytic,
            "actual": self.actual,
            "status": self.status,
        }


@dataclass(frozen=True)
class Analysis:
    """Per module and per tensor: the analytic count (where there is a formula) vs the actual one."""

    source: str
    modules: tuple[ModuleReport, ...]
    tensors: tuple[TensorReport, ...]
    actual_total: int  # unique parameters (tied once; buffers excluded where known)
    notes: tuple[str, ...] = field(default=())
    actual_label: str = "actual"  # "stored" for a checkpoint

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
        return sum(t.counted for t in self.tensors if t.status == NO_FORMULA)

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.modules) and not any(t.problem for t in self.tensors)

    def summary_lines(self) -> list[str]:
        lines = [
            f"analytic (formulas): {self.analytic_total:,}; {NO_FORMULA}: {self.no_formula_total:,}; "
            f"{self.actual_label}: {self.actual_total:,} parameters",
        ]
        for path, spec in self.specs.items():
            lines.append(f"{path or '(root)'}: {spec.describe()}  ->  paramcalc count {_cli_args(spec)}")
        problems = [m for m in self.modules if not m.ok]
        lines.append(
            f"OK: every formula matches the {self.actual_label} tensors"
            if self.ok
            else f"MISMATCH in {len(problems)} module(s): " + ", ".join(m.path or "(root)" for m in problems)
        )
        return lines

    def records(self, by: str = "module") -> list[dict[str, Any]]:
        if by == "module":
            return [_relabel(m.record(), self.actual_label) for m in self.modules]
        if by == "tensor":
            return [t.record() for t in self.tensors]
        raise ValueError(f"by must be module or tensor, got {by!r}")

    def meta(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "analytic_total": self.analytic_total,
            "no_formula_total": self.no_formula_total,
            "actual_total": self.actual_total,
            "ok": self.ok,
            "specs": {p or "(root)": s.to_dict() for p, s in self.specs.items()},
            "notes": list(self.notes),
        }

    def to_frame(self, by: str = "module") -> pd.DataFrame:
        import pandas as pd

        cols = MODULE_COLUMNS if by == "module" else TENSOR_COLUMNS
        cols = tuple(self.actual_label if c == "actual" else c for c in cols)
        return pd.DataFrame(self.records(by), columns=list(cols))


def _relabel(record: dict[str, Any], label: str) -> dict[str, Any]:
    if label == "actual":
        return record
    return {(label if k == "actual" else k): v for k, v in record.items()}


def _cli_args(spec: RecurrentSpec) -> str:
    parts = [spec.cell, f"-d {spec.input_size}", f"-H {spec.hidden_size}"]
    if spec.num_layers != 1:
        parts.append(f"-L {spec.num_layers}")
    if spec.bidirectional:
        parts.append("--bidirectional")
    if spec.proj_size:
        parts.append(f"--proj-size {spec.proj_size}")
    if not spec.bias:
        parts.append("--no-bias")
    return " ".join(parts)


# --- matching (pure: names, shapes, identity keys) --------------------------------------------


def _related(owner: str, path: str) -> bool:
    """``owner`` is ``path``, inside it, or one of its ancestors (a wrapper)."""
    if owner == path or not owner:
        return True
    return owner.startswith(path + ".") or path.startswith(owner + ".") or not path


def _join(path: str, leaf: str) -> str:
    return f"{path}.{leaf}" if path else leaf


def match(
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
    by_name = {p.name: p for p in params}
    claimed: dict[str, tuple[int, Any]] = {}  # param name -> (group index, expected tensor)
    expected: list[list[tuple[str, Any]]] = []
    for gi, g in enumerate(groups):
        items = [] if g.component is None else [(_join(g.path, t.name), t) for t in g.component.tensors()]
        expected.append(items)
        for full, t in items:
            if full in by_name and full not in claimed:
                claimed[full] = (gi, t)
    found = {(gi, full) for full, (gi, t) in claimed.items() if full == _join(groups[gi].path, t.name)}
    renamed: dict[str, str] = {}
    for gi, g in enumerate(groups):
        for full, t in expected[gi]:
            if (gi, full) in found:
                continue
            for p in params:
                if p.name in claimed or p.name in buffers:
                    continue
                canon = torch_bridge.canonical_name(p.name)
                owner, leaf = canon.rpartition(".")[0], canon.rpartition(".")[2]
                if leaf == t.name and p.name != canon and _related(owner, g.path):
                    claimed[p.name] = (gi, t)
                    renamed[p.name] = full
                    found.add((gi, full))
                    break

    first_of_key: dict[Any, str] = {}
    tensors: list[TensorReport] = []
    per_group: list[dict[str, Any]] = [
        {"analytic": 0, "actual": 0, "extra": 0, "missing": [], "bad": [], "tied": []} for _ in groups
    ]
    group_of_param: dict[str, int] = {}
    for p in params:
        if p.name in claimed:
            group_of_param[p.name] = claimed[p.name][0]
        else:
            group_of_param[p.name] = _deepest(groups, p.name)

    for p in params:
        gi = group_of_param[p.name]
        gpath = groups[gi].path if gi >= 0 else ""
        if p.name in buffers:
            tensors.append(TensorReport(p.name, gpath, p.shape, p.numel, 0, "-", "buffer, not a parameter"))
            continue
        tied = p.key in first_of_key
        counted = 0 if tied else p.numel
        if not tied:
            first_of_key[p.key] = p.name
        if p.name in claimed:
            _, t = claimed[p.name]
            status, problem = "formula", False
            if p.name in renamed:
                status = f"formula (renamed: matched to {renamed[p.name]})"
            if tuple(t.shape) != p.shape:
                status, problem = f"DIFFERS: formula shape {tuple(t.shape)}", True
                per_group[gi]["bad"].append(p.name)
            if tied:
                status = f"tied to {first_of_key[p.key]} (counted once)"
                per_group[gi]["tied"].append(f"{p.name} tied to {first_of_key[p.key]}, counted once")
            else:
                per_group[gi]["analytic"] += t.numel
            per_group[gi]["actual"] += counted
            tensors.append(TensorReport(p.name, gpath, p.shape, p.numel, counted, t.formula, status, problem))
        else:
            status = f"tied to {first_of_key[p.key]} (counted once)" if tied else NO_FORMULA
            if gi >= 0:
                per_group[gi]["extra"] += counted
                per_group[gi]["actual"] += counted
            tensors.append(TensorReport(p.name, gpath, p.shape, p.numel, counted, "-", status))

    for gi, g in enumerate(groups):
        for full, t in expected[gi]:
            if (gi, full) not in found:
                per_group[gi]["missing"].append(full)
                per_group[gi]["analytic"] += t.numel
                tensors.append(
                    TensorReport(
                        full, g.path, tuple(t.shape), t.numel, 0, t.formula, "DIFFERS: missing", True
                    )
                )

    modules: list[ModuleReport] = []
    for gi, g in enumerate(groups):
        acc = per_group[gi]
        comp = g.component
        if comp is None and acc["actual"] == 0:
            continue
        if comp is not None and not comp.tensors() and acc["actual"] == 0:
            continue  # a parameter-free layer (dropout)
        spec = comp.spec if isinstance(comp, Recurrent) else None
        if comp is None:
            status = NO_FORMULA + (f" ({g.note})" if g.note else "")
            modules.append(ModuleReport(g.path, g.type_name, "-", "-", None, acc["actual"], status))
            continue
        bits = []
        if acc["missing"]:
            bits.append("missing " + ", ".join(acc["missing"]))
        if acc["bad"]:
            bits.append("shape differs: " + ", ".join(acc["bad"]))
        analytic = acc["analytic"]
        if bits:
            status = "DIFFERS: " + "; ".join(bits)
        elif acc["extra"]:  # the formula part agrees; the extra tensors have no formula
            status = f"ok; plus {acc['extra']:,} {NO_FORMULA}"
        else:
            status = "ok"
        if acc["tied"]:
            status += f" ({'; '.join(acc['tied'])})"
        if g.note:
            status += f" ({g.note})"
        actual_formula_part = acc["actual"] - acc["extra"]
        if not bits and analytic != actual_formula_part:  # pragma: no cover - defensive
            status = f"DIFFERS: analytic {analytic:,} vs actual {actual_formula_part:,}"
        modules.append(
            ModuleReport(
                g.path, g.type_name, comp.describe(), comp.formula(), analytic, acc["actual"], status, spec
            )
        )
    total = sum(t.counted for t in tensors)
    return Analysis(source, tuple(modules), tuple(tensors), total, tuple(notes), actual_label)


def _deepest(groups: Sequence[Group], name: str) -> int:
    """The index of the deepest group whose path holds ``name`` (-1: none)."""
    best, depth = -1, -1
    owner = name.rpartition(".")[0]
    for gi, g in enumerate(groups):
        if g.path == owner or (not g.path) or owner.startswith(g.path + "."):
            d = len(g.path)
            if d > depth:
                best, depth = gi, d
    return best


# --- nn.Module ---------------------------------------------------------------------------------


def analyze(module: nn.Module) -> Analysis:
    """Walk ``module``: analytic rows where an adapter knows the type, counted tensors elsewhere."""
    from torch import nn

    if not isinstance(module, nn.Module):
        raise ParamcalcError(f"analyze needs a torch.nn.Module, got {type(module).__name__}")
    groups: list[Group] = []

    def visit(path: str, m: nn.Module) -> None:
        comp = torch_bridge.component_from_module(m, path or type(m).__name__)
        if comp is not None:
            # An adapter covers the module's whole subtree; its name is the module path.
            groups.append(Group(path, type(m).__name__, comp))
            return
        groups.append(Group(path, type(m).__name__, None))
        for child_name, child in m.named_children():
            visit(_join(path, child_name), child)

    visit("", module)
    params = [ParamInfo(n, tuple(p.shape), id(p)) for n, p in module.named_parameters(remove_duplicate=False)]
    return match(groups, params, source=f"module {type(module).__name__}")


# --- import a factory ---------------------------------------------------------------------------


def load_factory(target: str, device: str = "cpu") -> nn.Module:
    """Import ``package.module:factory`` and return the module it names or builds.

    ``factory`` may be an ``nn.Module`` instance, a class or a function taking no arguments.
    With ``device="meta"`` it is called under ``torch.device("meta")``: no memory is allocated.
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
    except Exception as exc:  # the user's import: any failure is one line
        raise ParamcalcError(
            f"{target}: cannot import {mod_name!r}: {type(exc).__name__}: {_first(exc)}"
        ) from None
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ParamcalcError(f"{target}: module {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise ParamcalcError(f"{target}: {attr!r} is neither an nn.Module nor callable")
        dev = torch_bridge.resolve_device(device)
        try:
            with dev:
                obj = obj()
        except ParamcalcError:
            raise
        except Exception as exc:
            raise ParamcalcError(
                f"{target}: calling {attr}() failed: {type(exc).__name__}: {_first(exc)}"
            ) from None
    if not isinstance(obj, nn.Module):
        raise ParamcalcError(f"{target}: {attr}() returned {type(obj).__name__}, not an nn.Module")
    return obj


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


# --- checkpoints -------------------------------------------------------------------------------


def load_state_dict(path: str | Path) -> tuple[dict[str, Any], str]:
    """Load a state dict safely (``weights_only=True``): ``(tensors by name, where it was found)``.

    Refuses, with one line, a missing file, a file that is not a torch checkpoint, a truncated
    one, one whose pickle names anything but tensors and plain containers (it would run code;
    nothing is executed), and one that holds no state dict.
    """
    import torch

    p = Path(path)
    if not p.exists():
        raise ParamcalcError(f"{p}: no such file")
    if p.is_dir():
        raise ParamcalcError(f"{p}: is a folder, not a checkpoint")
    obj = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kw in ({"mmap": True}, {}):  # mmap: nothing is read until used; legacy files need {}
            try:
                obj = torch.load(p, map_location="cpu", weights_only=True, **kw)
                break
            except pickle_errors() as exc:
                raise ParamcalcError(
                    f"{p}: refused: {_refusal(exc)}, which torch.load(weights_only=True) does not "
                    "allow (loading it could run code); nothing in the file was executed"
                ) from None
            except RuntimeError as exc:
                if kw and "mmap can only be used" in str(exc):
                    continue
                raise ParamcalcError(f"{p}: not a readable torch checkpoint: {_reason(exc)}") from None
            except Exception as exc:
                raise ParamcalcError(
                    f"{p}: not a readable torch checkpoint (truncated or another format): "
                    f"{type(exc).__name__}: {_first(exc)[:160]}"
                ) from None
    return _find_state_dict(obj, p)


def pickle_errors() -> tuple[type[BaseException], ...]:
    import pickle

    return (pickle.UnpicklingError,)


def _refusal(exc: BaseException) -> str:
    import re

    text = str(exc)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m and m.group(1).startswith("torch.nn."):
        return f"its pickle names {m.group(1)} (a whole module; save model.state_dict() instead)"
    if m:
        return f"its pickle names {m.group(1)}"
    m = re.search(r"Unsupported operand (\d+)", text)
    if m:
        return f"its pickle uses opcode {m.group(1)}"
    return "its pickle holds objects other than tensors and plain containers"


def _reason(exc: BaseException) -> str:
    text = _first(exc)
    if "central directory" in text or "zip archive" in text:
        return "the zip archive is damaged or truncated"
    return text[:160]


def _is_state_dict(obj: Any) -> bool:
    import torch

    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and any(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _find_state_dict(obj: Any, p: Path) -> tuple[dict[str, Any], str]:
    import torch

    if _is_state_dict(obj):
        where = "top level"
    elif isinstance(obj, Mapping):
        for key in NEST_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                obj, where = obj[key], f"nested under {key!r}"
                break
        else:
            keys = ", ".join(map(repr, list(obj)[:8])) or "none"
            raise ParamcalcError(
                f"{p}: not a state dict: a dict with keys {keys} and no tensors at the top level or "
                f"under {', '.join(NEST_KEYS)}"
            )
    else:
        raise ParamcalcError(f"{p}: not a state dict: it holds a {type(obj).__name__}, not a dict of tensors")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return tensors, where


def _identity(t: Any) -> Any:
    """Equal for two names of one tied tensor (same storage, offset, shape and stride)."""
    try:
        ptr = t.untyped_storage().data_ptr()
    except Exception:  # pragma: no cover - exotic tensors
        ptr = 0
    if ptr == 0 or t.numel() == 0:
        return ("own", id(t))
    return (ptr, t.storage_offset(), tuple(t.shape), tuple(t.stride()))


def inspect_checkpoint(path: str | Path) -> Analysis:
    """Read every layer of a saved state dict back as specs, with analytic vs stored counts."""
    tensors, where = load_state_dict(path)
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    inferred = torch_bridge.infer_components(shapes)
    groups = [Group(i.prefix, i.type_name, _renamed(i.component, i.prefix), i.note) for i in inferred]
    buffers = frozenset(k for k in tensors if k.rpartition(".")[2] in torch_bridge.BUFFER_NAMES)
    params = [ParamInfo(k, shapes[k], _identity(v)) for k, v in tensors.items()]
    notes = [f"state dict {where}: {len(tensors)} tensors"]
    return match(
        groups, params, source=f"checkpoint {path}", buffers=buffers, notes=notes, actual_label="stored"
    )


def _renamed(c: Component | None, prefix: str) -> Component | None:
    if c is None:
        return None
    import dataclasses

    return dataclasses.replace(c, name=prefix or "(root)")
