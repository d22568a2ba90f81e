"""paramcalc: parameter counts, cost and speed of recurrent networks (RNN, LSTM, GRU and more).

The analytic core (``RecurrentSpec``, ``count``, ``cost``, ``solve_budget``, ``match_hidden``,
the cell registry) is pure Python and imports neither torch nor pandas; the functions that need
them (``check``, ``bench``, ``inspect``, ...) are loaded on first use.

>>> import paramcalc as pc
>>> pc.count(pc.RecurrentSpec("lstm", 28, 256, num_layers=2)).total
819200
"""

from __future__ import annotations

import importlib as _importlib

from .core.cells import (
    CELLS,
    CellType,
    TensorTemplate,
    TorchBinding,
    gated_templates,
    get_cell,
    register_cell,
    unregister_cell,
)
from .core.costmodel import CostResult, cost
from .core.params import CountResult, LayerFormula, TensorRow, count, total_params
from .core.solver import SolveResult, largest_hidden, match, match_hidden, parse_count, solve_budget
from .core.spec import RecurrentSpec
from .core.workload import Workload
from .errors import ParamcalcError
from .results.base import Result, Status

__version__ = "0.2.0"

#: public name -> (module, attribute), loaded on first access so ``import paramcalc`` stays light.
_LAZY: dict[str, tuple[str, str]] = {
    "explain": ("paramcalc.core.explain", "explain"),
    "compare": ("paramcalc.core.comparison", "compare"),
    "sweep": ("paramcalc.core.comparison", "sweep"),
    "CompareResult": ("paramcalc.core.comparison", "CompareResult"),
    "SweepResult": ("paramcalc.core.comparison", "SweepResult"),
    "Architecture": ("paramcalc.core.architecture", "Architecture"),
    "ArchitectureCount": ("paramcalc.core.architecture", "ArchitectureCount"),
    "load_architecture": ("paramcalc.core.architecture", "load_architecture"),
    "count_architecture": ("paramcalc.core.architecture", "count_architecture"),
    "bench": ("paramcalc.timing.benchmark", "bench"),
    "BenchResult": ("paramcalc.timing.benchmark", "BenchResult"),
    "predict": ("paramcalc.timing.predict", "predict"),
    "PredictResult": ("paramcalc.timing.predict", "PredictResult"),
    "check": ("paramcalc.checks.tensorcheck", "check"),
    "CheckResult": ("paramcalc.checks.tensorcheck", "CheckResult"),
    "flop_check": ("paramcalc.checks.flopcount", "flop_check"),
    "FlopCheck": ("paramcalc.checks.flopcount", "FlopCheck"),
    "analyze": ("paramcalc.checks.inspection", "analyze"),
    "Analysis": ("paramcalc.checks.inspection", "Analysis"),
    "inspect": ("paramcalc.checks.inspection", "inspect"),
    "inspect_checkpoint": ("paramcalc.checks.inspection", "inspect_checkpoint"),
    "spec_from_module": ("paramcalc.bridge.adapters", "spec_from_module"),
    "register_adapter": ("paramcalc.bridge.adapters", "register_adapter"),
    "build_module": ("paramcalc.bridge.build", "build_module"),
}

__all__ = [
    "CELLS",
    "CellType",
    "CostResult",
    "CountResult",
    "LayerFormula",
    "ParamcalcError",
    "RecurrentSpec",
    "Result",
    "SolveResult",
    "Status",
    "TensorRow",
    "TensorTemplate",
    "TorchBinding",
    "Workload",
    "__version__",
    "cost",
    "count",
    "gated_templates",
    "get_cell",
    "largest_hidden",
    "match",
    "match_hidden",
    "parse_count",
    "register_cell",
    "solve_budget",
    "total_params",
    "unregister_cell",
    *_LAZY,
]


def __getattr__(name: str) -> object:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'paramcalc' has no attribute {name!r}")
    value = getattr(_importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
