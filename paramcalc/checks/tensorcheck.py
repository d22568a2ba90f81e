"""Cross-checks: the analytic rows against real torch modules, tensor by tensor, and torchinfo.

:func:`check` builds the module of a spec (the real ``torch.nn`` class where the layout is
PyTorch's, else the cell's reference module) or of a whole
:class:`~paramcalc.core.architecture.Architecture` on a device, default ``meta`` (shapes only,
no memory allocated), and compares every tensor of ``named_parameters()`` with the analytic row
of the same name: position, shape and element count, then the totals. It also asks torchinfo's
``summary(model, verbose=0)`` for its total: with no input data torchinfo runs no forward pass
and only adds up parameters, so it is cheap on any device. torchinfo counts a tied weight once
per module that holds it; the expected torchinfo total adds those duplicates back.

A disagreement is a result (``CheckResult.ok`` is False; the CLI exits 1), not an exception.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import prod
from typing import TYPE_CHECKING, Any

from ..bridge import build
from ..bridge.devices import resolve_device
from ..core.architecture import Architecture, count_architecture
from ..core.coerce import EXPECTED, as_spec, is_module
from ..core.params import count as count_spec
from ..core.spec import RecurrentSpec
from ..errors import ParamcalcError
from ..results.base import Result, Status
from ..results.table import Column, Table
from ..results.text import plural

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

CHECK_COLUMNS = (
    Column("index", doc="position in the analytic order"),
    Column("name", "str"),
    Column("shape", "shape"),
    Column("torch_shape", "shape"),
    Column("numel"),
    Column("torch_numel"),
    Column("status", "str"),
    Column("detail", "str"),
)


@dataclass(frozen=True)
class TensorCheck:
    """One tensor, analytic vs torch. ``None`` on a side means the tensor is absent there."""

    index: int | None  # position in the analytic order
    name: str
    shape: tuple[int, ...] | None
    torch_shape: tuple[int, ...] | None
    numel: int | None
    torch_numel: int | None
    problems: tuple[str, ...] = ()
    note: str = ""  # e.g. "tied to encoder.weight (counted once)"

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def status(self) -> Status:
        return Status.MISMATCH if self.problems else Status.OK

    @property
    def detail(self) -> str:
        return "; ".join(self.problems) if self.problems else self.note


@dataclass(frozen=True)
class TorchinfoCheck:
    """torchinfo's total, what it should be, or why it was skipped."""

    total: int | None
    expected: int | None
    note: str

    @property
    def status(self) -> Status:
        if self.total is None:
            return Status.SKIPPED
        return Status.OK if self.total == self.expected else Status.MISMATCH

    def line(self) -> str:
        if self.total is None:
            return f"torchinfo: skipped: {self.note}"
        verdict = "agrees" if self.status is Status.OK else f"DIFFERS from the expected {self.expected:,}"
        return f"torchinfo summary(model, verbose=0): total_params {self.total:,} ({self.note}): {verdict}"


@dataclass(frozen=True, repr=False)
class CheckResult(Result):
    """Analytic vs torch for one spec or architecture on one device. View: ``tensor``."""

    VIEWS = ("tensor",)

    subject: str  # what was built, e.g. "LSTM(28, 256, num_layers=2)"
    requested: RecurrentSpec | Architecture  # what the caller asked to check
    checked: RecurrentSpec | Architecture  # what was built (a keras spec's torch-named twin)
    device: str
    tensors: tuple[TensorCheck, ...]
    analytic_total: int
    torch_total: int
    torchinfo: TorchinfoCheck
    module: str = ""  # torch.nn.LSTM or the reference module
    extra_notes: tuple[str, ...] = field(default=())

    @property
    def spec(self) -> RecurrentSpec | None:
        """The spec that was checked (``None`` for an architecture)."""
        return self.checked if isinstance(self.checked, RecurrentSpec) else None

    @property
    def ok(self) -> bool:
        return (
            all(t.ok for t in self.tensors)
            and self.analytic_total == self.torch_total
            and self.torchinfo.status is not Status.MISMATCH
        )

    @property
    def status(self) -> Status:
        return Status.OK if self.ok else Status.MISMATCH

    def problems(self) -> list[str]:
        """One line per disagreement (empty when everything agrees)."""
        out = [f"{t.name}: {'; '.join(t.problems)}" for t in self.tensors if t.problems]
        if self.analytic_total != self.torch_total:
            out.append(f"total: analytic {self.analytic_total:,} vs torch {self.torch_total:,}")
        if self.torchinfo.status is Status.MISMATCH:
            out.append(f"torchinfo: {self.torchinfo.total:,} vs expected {self.torchinfo.expected:,}")
        return out

    def _table(self, view: str) -> Table:
        return Table(
            CHECK_COLUMNS,
            tuple(
                (
                    t.index,
                    t.name,
                    t.shape,
                    t.torch_shape,
                    t.numel,
                    t.torch_numel,
                    t.status.value,
                    t.detail or None,
                )
                for t in self.tensors
            ),
        )

    def title(self) -> str:
        return f"check: {self.subject} on {self.device}" + (f" ({self.module})" if self.module else "")

    def headline(self) -> str:
        return f"{self.subject} on {self.device}: {self.status.value}"

    def notes(self) -> list[str]:
        return list(self.extra_notes)

    def summary(self, view: str | None = None) -> list[str]:
        n = len(self.tensors)
        verdict = (
            f"OK: {'the' if n == 1 else 'all'} {plural(n, 'tensor')} (name, order, shape, numel) and "
            "the totals agree"
            if self.ok
            else f"MISMATCH ({len(self.problems())}): " + " | ".join(self.problems())
        )
        agree = "agree" if self.analytic_total == self.torch_total else "DIFFER"
        return [
            f"analytic total: {self.analytic_total:,}; torch total (sum of numel over "
            f"named_parameters()): {self.torch_total:,}: {agree}",
            self.torchinfo.line(),
            verdict,
        ]

    def meta(self) -> dict[str, Any]:
        checked = self.checked
        return {
            "subject": self.subject,
            "device": self.device,
            "module": self.module,
            "spec": checked.to_dict() if isinstance(checked, RecurrentSpec) else None,
            "analytic_total": self.analytic_total,
            "torch_total": self.torch_total,
            "torchinfo_total": self.torchinfo.total,
            "torchinfo_note": self.torchinfo.note,
            "ok": self.ok,
            "status": self.status.value,
            "problems": self.problems(),
        }

    def context(self) -> list[tuple[str, str]]:
        return [("subject", self.subject), ("device", self.device), ("module", self.module)]


# --- comparison (pure) -------------------------------------------------------------------------


def compare_tensors(
    expected: Sequence[tuple[str, tuple[int, ...]]], actual: Sequence[tuple[str, tuple[int, ...]]]
) -> list[TensorCheck]:
    """Compare analytic ``(name, shape)`` rows with torch's, by name; flag order, shape, numel.

    Order is compared among the names both sides have, so one missing tensor does not make
    every later one "out of order". Tensors torch has that the formula lacks come last.
    """
    where = {name: (i, tuple(shape)) for i, (name, shape) in enumerate(actual)}
    common_actual = sorted(where[n][0] for n, _ in expected if n in where)
    rank_actual = {pos: r for r, pos in enumerate(common_actual)}
    out: list[TensorCheck] = []
    rank = 0
    for i, (name, shape) in enumerate(expected):
        shape = tuple(shape)
        numel = prod(shape)
        if name not in where:
            out.append(TensorCheck(i, name, shape, None, numel, None, ("missing in torch",)))
            continue
        j, tshape = where[name]
        problems = []
        if rank_actual[j] != rank:
            problems.append(f"out of order: torch has it at position {j}")
        if tshape != shape:
            problems.append(f"shape differs: torch {tshape}")
        if prod(tshape) != numel:
            problems.append(f"numel differs: torch {prod(tshape):,}")
        out.append(TensorCheck(i, name, shape, tshape, numel, prod(tshape), tuple(problems)))
        rank += 1
    known = {n for n, _ in expected}
    for j, (name, tshape) in enumerate(actual):
        if name not in known:
            t = tuple(tshape)
            out.append(
                TensorCheck(None, name, None, t, None, prod(t), (f"not in the formula (torch position {j})",))
            )
    return out


# --- torchinfo --------------------------------------------------------------------------------


def torchinfo_total(module: nn.Module) -> tuple[int | None, str]:
    """torchinfo's parameter total with no input data (no forward pass), or why it was skipped."""
    try:
        import torchinfo
    except ImportError:
        return None, "torchinfo is not installed (pip install torchinfo)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats = torchinfo.summary(module, verbose=0)
    except Exception as exc:  # torchinfo is a third party: any failure is a skip, with its reason
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, f"torchinfo failed: {type(exc).__name__}: {first}"
    return int(stats.total_params), "no input data, so no forward pass: parameters only"


# --- the checks --------------------------------------------------------------------------------


def _named(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(n, tuple(p.shape)) for n, p in module.named_parameters()]


def _device_label(dev: torch.device) -> str:
    return "meta (shapes only: no memory allocated)" if dev.type == "meta" else str(dev)


def check_spec(
    spec: RecurrentSpec,
    device: str | torch.device = "meta",
    *,
    dtype: torch.dtype | None = None,
    use_torchinfo: bool = True,
    module: nn.Module | None = None,
) -> CheckResult:
    """Build ``spec``'s module on ``device`` and compare it with ``count(spec)``, tensor by tensor.

    A Keras-convention spec is built with PyTorch's tensor names and the same layout (so the
    same count); a note says so. Where the layout is not PyTorch's, the module is paramcalc's
    reference module of the cell (a note says which). Given a ``module``, that module's own
    tensors are compared (nothing is built).
    """
    dev = (
        resolve_device(device)
        if module is None
        else next((p.device for p in module.parameters()), resolve_device(device))
    )
    target = build.torch_equivalent(spec)
    notes: list[str] = []
    if target is not spec:
        notes.append(
            f"{spec.describe()} uses Keras' tensor names; its twin with PyTorch's names and the same "
            f"layout ({plural(count_spec(spec).total, 'parameter')}) is checked"
        )
    label = build.module_label(target) if module is None else f"the given {type(module).__name__}"
    if module is None and not build.is_torch_native(target):
        notes.append(
            f"this layout is not a torch.nn module's, so it is checked against {label}, whose forward "
            "is tested against the paper's equations"
        )
    if module is None:
        module = build.build_module(target, dev, dtype)
    rows = count_spec(target).rows
    checks = compare_tensors([(r.name, r.shape) for r in rows], _named(module))
    torch_total = sum(p.numel() for p in module.parameters())
    analytic = sum(r.numel for r in rows)
    info = _torchinfo_check(module, analytic, 0, use_torchinfo)
    return CheckResult(
        target.describe(),
        spec,
        target,
        _device_label(dev),
        tuple(checks),
        analytic,
        torch_total,
        info,
        label,
        tuple(notes),
    )


def check_architecture(
    arch: Architecture,
    device: str | torch.device = "meta",
    *,
    dtype: torch.dtype | None = None,
    use_torchinfo: bool = True,
) -> CheckResult:
    """Build ``arch`` in torch and compare every tensor; tied weights must be one Parameter."""
    dev = resolve_device(device)
    counted = count_architecture(arch)
    module = build.build_architecture(arch, dev, dtype)
    unique = counted.unique_rows
    base = compare_tensors([(r.name, r.shape) for r in unique], _named(module))
    by_name = {c.name: c for c in base if c.index is not None}
    extra = [c for c in base if c.index is None]
    merged: list[TensorCheck] = []
    tied_numel = 0
    for i, row in enumerate(counted.rows):
        if row.tied_to is None:
            c = by_name[row.name]
            merged.append(TensorCheck(i, c.name, c.shape, c.torch_shape, c.numel, c.torch_numel, c.problems))
            continue
        tied_numel += row.numel
        mine = _get_param(module, row.name)
        theirs = _get_param(module, row.tied_to)
        problems: tuple[str, ...] = ()
        if mine is None or theirs is None or mine is not theirs:
            problems = (f"not tied in torch: {row.name} is not the same Parameter as {row.tied_to}",)
        tshape = None if mine is None else tuple(mine.shape)
        merged.append(
            TensorCheck(
                i,
                row.name,
                row.shape,
                tshape,
                row.numel,
                None if mine is None else mine.numel(),
                problems,
                f"tied to {row.tied_to}, counted once",
            )
        )
    merged.extend(extra)
    torch_total = sum(p.numel() for p in module.parameters())
    info = _torchinfo_check(module, counted.total, tied_numel, use_torchinfo)
    notes = []
    if counted.tied:
        notes.append(
            f"{plural(len(counted.tied), 'tied tensor')}: each is one Parameter held by two modules, "
            "counted once"
        )
    subject = f"architecture {arch.name!r}"
    return CheckResult(
        subject,
        arch,
        arch,
        _device_label(dev),
        tuple(merged),
        counted.total,
        torch_total,
        info,
        "",
        tuple(notes),
    )


def _get_param(module: nn.Module, name: str) -> Any:
    try:
        return module.get_parameter(name)
    except AttributeError:
        return None


def _torchinfo_check(module: nn.Module, analytic: int, tied_numel: int, enabled: bool) -> TorchinfoCheck:
    if not enabled:
        return TorchinfoCheck(None, None, "turned off (`use_torchinfo=False`)")
    total, note = torchinfo_total(module)
    if total is None:
        return TorchinfoCheck(None, None, note)
    if tied_numel:
        note += f"; it counts a tied weight once per holder: expect {analytic:,} + {tied_numel:,} tied"
    return TorchinfoCheck(total, analytic + tied_numel, note)


def check(
    target: RecurrentSpec | Architecture,
    device: str | torch.device = "meta",
    *,
    dtype: torch.dtype | None = None,
    use_torchinfo: bool = True,
) -> CheckResult:
    """Cross-check a :class:`RecurrentSpec`, a recurrent ``nn.Module`` or an :class:`Architecture`.

    >>> import paramcalc as pc
    >>> pc.check(pc.RecurrentSpec("lstm", 28, 256, num_layers=2)).ok
    True
    """
    if isinstance(target, Architecture):
        return check_architecture(target, device, dtype=dtype, use_torchinfo=use_torchinfo)
    if isinstance(target, RecurrentSpec):
        return check_spec(target, device, dtype=dtype, use_torchinfo=use_torchinfo)
    if is_module(target):  # that module's own tensors, against the formulas of its spec
        try:
            spec = as_spec(target, "check")
        except ParamcalcError as exc:
            raise ParamcalcError(
                f"{exc}: check compares one recurrent module (nn.LSTM, nn.GRU, a cell, ...) with its "
                "formulas; for a whole model use paramcalc.analyze(model)"
            ) from None
        return check_spec(spec, device, dtype=dtype, use_torchinfo=use_torchinfo, module=target)
    raise ParamcalcError(f"check needs {EXPECTED} or an Architecture, got {type(target).__name__}")
