"""The render layer: drawing tables (:mod:`.draw`), exports by suffix (:mod:`.export`) and plots
(:mod:`.plot`), above every other layer.

Importing it registers its functions in the registries :mod:`paramcalc.results.renderers` owns,
keyed by result kind, through which every result renders, exports and plots itself;
``paramcalc/__init__.py`` imports it, so they are in place whenever paramcalc is. The import is
cheap: tabulate, pandas, pyarrow, openpyxl and matplotlib are imported only when a table is drawn,
a file written or a figure made.
"""

from . import designplot, draw, export, plot

__all__ = ["designplot", "draw", "export", "plot"]
