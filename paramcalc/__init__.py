"""paramcalc: parameter counts, cost and speed of recurrent networks (RNN, LSTM, GRU and more).

The analytic core (``RecurrentSpec``, ``count``, ``cost``, ``solve_budget``, ``match_hidden``,
the cell registry) is pure Python and imports neither torch nor pandas; the functions that need
them (``check``, ``bench``, ``inspect``, ...) import them when called. Every public name is
loaded on first use, so ``import paramcalc`` (and the CLI's start-up) costs almost nothing.

Importing paramcalc fills the two hook tables the lower layers own: the bridge registers the
coercion of a ``torch.nn`` module into a spec (:mod:`paramcalc.core.coerce`), and the render
layer its table drawers, exporters and plotters (:mod:`paramcalc.results.renderers`). Both
imports are cheap: neither imports torch, pandas, tabulate or matplotlib.

>>> import paramcalc as pc
>>> pc.count(pc.RecurrentSpec("lstm", 28, 256, num_layers=2)).total
819200
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING

# the two hook tables of the lower layers, filled (see the module docstring)
from . import bridge as bridge  # the nn.Module -> spec coercion of paramcalc.core.coerce
from . import render as render  # the drawers, exporters and plotters of paramcalc.results.renderers
from .errors import Interrupted, ParamcalcError, ParamcalcWarning
from .version import __version__

#: public name -> (module, attribute), loaded on first access so ``import paramcalc`` stays light.
_LAZY: dict[str, tuple[str, str]] = {
    # the analytic core (pure Python)
    "CELLS": ("paramcalc.core.cells", "CELLS"),
    "CellType": ("paramcalc.core.cells", "CellType"),
    "TensorTemplate": ("paramcalc.core.cells", "TensorTemplate"),
    "TorchBinding": ("paramcalc.core.cells", "TorchBinding"),
    "gated_templates": ("paramcalc.core.cells", "gated_templates"),
    "get_cell": ("paramcalc.core.cells", "get_cell"),
    "register_cell": ("paramcalc.core.cells", "register_cell"),
    "unregister_cell": ("paramcalc.core.cells", "unregister_cell"),
    "RecurrentSpec": ("paramcalc.core.spec", "RecurrentSpec"),
    "Workload": ("paramcalc.core.workload", "Workload"),
    "count": ("paramcalc.core.counting", "count"),
    "total_params": ("paramcalc.core.params", "total_params"),
    "CountResult": ("paramcalc.core.params", "CountResult"),
    "LayerFormula": ("paramcalc.core.params", "LayerFormula"),
    "TensorRow": ("paramcalc.core.params", "TensorRow"),
    "cost": ("paramcalc.core.costmodel", "cost"),
    "CostResult": ("paramcalc.core.costmodel", "CostResult"),
    "solve_budget": ("paramcalc.core.solver", "solve_budget"),
    "largest_hidden": ("paramcalc.core.solver", "largest_hidden"),
    "match_hidden": ("paramcalc.core.solver", "match_hidden"),
    "match": ("paramcalc.core.solver", "match"),
    "parse_count": ("paramcalc.core.solver", "parse_count"),
    "SolveResult": ("paramcalc.core.solver", "SolveResult"),
    "Result": ("paramcalc.results.base", "Result"),
    "Status": ("paramcalc.results.base", "Status"),
    # the rest
    "explain": ("paramcalc.core.explain", "explain"),
    "explain_block": ("paramcalc.core.blocks.explainblock", "explain_block"),
    "compare": ("paramcalc.studies.compare", "compare"),
    "sweep": ("paramcalc.studies.sweep", "sweep"),
    "CompareResult": ("paramcalc.studies.compare", "CompareResult"),
    "SweepResult": ("paramcalc.studies.sweep", "SweepResult"),
    "design": ("paramcalc.studies.design", "design"),
    "compare_models": ("paramcalc.studies.modelcompare", "compare_models"),
    "ModelComparison": ("paramcalc.studies.modelcompare", "ModelComparison"),
    "ModelReport": ("paramcalc.core.blocks.report", "ModelReport"),
    "DesignResult": ("paramcalc.studies.designresult", "DesignResult"),
    "Architecture": ("paramcalc.core.architecture", "Architecture"),
    "ArchitectureCount": ("paramcalc.core.architecture", "ArchitectureCount"),
    "load_architecture": ("paramcalc.core.architecture", "load_architecture"),
    "count_architecture": ("paramcalc.core.architecture", "count_architecture"),
    "bench": ("paramcalc.studies.timed", "bench"),
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
    "Analysis",
    "Architecture",
    "ArchitectureCount",
    "BenchResult",
    "CellType",
    "CheckResult",
    "CompareResult",
    "CostResult",
    "CountResult",
    "DesignResult",
    "FlopCheck",
    "Interrupted",
    "LayerFormula",
    "ModelComparison",
    "ModelReport",
    "ParamcalcError",
    "ParamcalcWarning",
    "PredictResult",
    "RecurrentSpec",
    "Result",
    "SolveResult",
    "Status",
    "SweepResult",
    "TensorRow",
    "TensorTemplate",
    "TorchBinding",
    "Workload",
    "__version__",
    "analyze",
    "bench",
    "build_module",
    "check",
    "compare",
    "compare_models",
    "cost",
    "count",
    "count_architecture",
    "design",
    "explain",
    "explain_block",
    "flop_check",
    "gated_templates",
    "get_cell",
    "inspect",
    "inspect_checkpoint",
    "largest_hidden",
    "load_architecture",
    "match",
    "match_hidden",
    "parse_count",
    "predict",
    "register_adapter",
    "register_cell",
    "solve_budget",
    "spec_from_module",
    "sweep",
    "total_params",
    "unregister_cell",
]

if TYPE_CHECKING:  # pragma: no cover - the names type checkers see
    from .bridge.adapters import register_adapter, spec_from_module
    from .bridge.build import build_module
    from .checks.flopcount import FlopCheck, flop_check
    from .checks.inspection import Analysis, analyze, inspect, inspect_checkpoint
    from .checks.tensorcheck import CheckResult, check
    from .core.architecture import Architecture, ArchitectureCount, count_architecture, load_architecture
    from .core.blocks.explainblock import explain_block
    from .core.blocks.report import ModelReport
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
    from .core.counting import count
    from .core.explain import explain
    from .core.params import CountResult, LayerFormula, TensorRow, total_params
    from .core.solver import SolveResult, largest_hidden, match, match_hidden, parse_count, solve_budget
    from .core.spec import RecurrentSpec
    from .core.workload import Workload
    from .results.base import Result, Status
    from .studies.compare import CompareResult, compare
    from .studies.design import design
    from .studies.designresult import DesignResult
    from .studies.modelcompare import ModelComparison, compare_models
    from .studies.sweep import SweepResult, sweep
    from .studies.timed import bench
    from .timing.benchmark import BenchResult
    from .timing.predict import PredictResult, predict


def __getattr__(name: str) -> object:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'paramcalc' has no attribute {name!r}")
    value = getattr(_importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
