"""paramcalc: parameter counts, cost and speed of recurrent networks (RNN, LSTM, GRU).

The analytic core (``RecurrentSpec``, ``count``, ``solve_budget``, ``match``) is pure Python and
imports neither torch nor pandas; those are imported lazily by the features that need them.

>>> import paramcalc as pc
>>> pc.count(pc.RecurrentSpec("lstm", 28, 256, num_layers=2)).total
819200
"""

from __future__ import annotations

from .cells import CELLS, CellType, get_cell
from .cost import CostResult, Workload, cost
from .count import CountResult, LayerFormula, TensorRow, count, total_params
from .errors import ParamcalcError
from .solve import SolveResult, largest_hidden, match, parse_count, solve_budget
from .spec import RecurrentSpec

__version__ = "0.1.0"

__all__ = [
    "CELLS",
    "CellType",
    "CostResult",
    "CountResult",
    "LayerFormula",
    "ParamcalcError",
    "RecurrentSpec",
    "SolveResult",
    "TensorRow",
    "Workload",
    "__version__",
    "cost",
    "count",
    "get_cell",
    "largest_hidden",
    "match",
    "parse_count",
    "solve_budget",
    "total_params",
]

# --- the lazily loaded API (torch and pandas stay at the edge) ------------------------------
import importlib as _importlib
import sys as _sys
import types as _types

#: public name -> (module, attribute), loaded on first access so ``import paramcalc`` stays light.
_LAZY: dict[str, tuple[str, str]] = {
    "bench": ("paramcalc.bench", "bench"),
    "compare": ("paramcalc.compare", "compare"),
    "sweep": ("paramcalc.compare", "sweep"),
    # issue 3: cross-checks, architectures, inspect
    "check": ("paramcalc.check", "check"),
    "CheckResult": ("paramcalc.check", "CheckResult"),
    "Architecture": ("paramcalc.arch", "Architecture"),
    "load_architecture": ("paramcalc.arch", "load_architecture"),
    "count_architecture": ("paramcalc.arch", "count_architecture"),
    "analyze": ("paramcalc.inspect_", "analyze"),
    "inspect_checkpoint": ("paramcalc.inspect_", "inspect_checkpoint"),
    "register_adapter": ("paramcalc.torch_bridge", "register_adapter"),
}


def __getattr__(name: str) -> object:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'paramcalc' has no attribute {name!r}")
    value = getattr(_importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


class _Package(_types.ModuleType):
    """Keeps a lazy function from being shadowed by the submodule of the same name.

    Importing the module ``paramcalc.bench`` makes Python set the package attribute ``bench`` to
    it; this binds the function ``paramcalc.bench.bench`` instead, so ``pc.bench(...)`` works
    whatever was imported first (use ``from paramcalc.bench import ...`` for the module's names).
    """

    def __setattr__(self, name: str, value: object) -> None:
        target = _LAZY.get(name)
        if target is not None and isinstance(value, _types.ModuleType) and value.__name__ == target[0]:
            value = getattr(value, target[1])
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
