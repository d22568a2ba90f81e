"""paramcalc: parameter counts, cost and speed of recurrent networks (RNN, LSTM, GRU).

The analytic core (``RecurrentSpec``, ``count``, ``solve_budget``, ``match``) is pure Python and
imports neither torch nor pandas; those are imported lazily by the features that need them.

>>> import paramcalc as pc
>>> pc.count(pc.RecurrentSpec("lstm", 28, 256, num_layers=2)).total
819200
"""

from __future__ import annotations

from .cells import CELLS, CellType, get_cell
from .count import CountResult, LayerFormula, TensorRow, count, total_params
from .errors import ParamcalcError
from .solve import SolveResult, largest_hidden, match, parse_count, solve_budget
from .spec import RecurrentSpec

__version__ = "0.1.0"

__all__ = [
    "CELLS",
    "CellType",
    "CountResult",
    "LayerFormula",
    "ParamcalcError",
    "RecurrentSpec",
    "SolveResult",
    "TensorRow",
    "__version__",
    "count",
    "get_cell",
    "largest_hidden",
    "match",
    "parse_count",
    "solve_budget",
    "total_params",
]
