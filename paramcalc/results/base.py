"""The result protocol every paramcalc result follows, and the status values they share.

A result has named views (``VIEWS``, the first is the default) and answers:

* ``table(view)``: the :class:`~paramcalc.results.table.Table` of that view (typed values);
* ``to_frame(view)``: the same table as a pandas DataFrame (nullable dtypes);
* ``meta()``: what the table was computed for (spec, workload, device, totals), JSON-ready;
* ``notes()``: conventions and warnings, one sentence each;
* ``title()`` and ``summary()``: the lines drawn above and below the table in text formats;
* ``render(fmt, view, wide)``: the text the CLI prints; ``str(result)`` is ``render()``;
* ``_repr_html_()`` for notebooks, and a short ``repr``;
* ``export(path, view)``: the table written by suffix, atomically;
* ``plot(path)``: a figure, for the kinds that have one (compare, sweep, devices).

The CLI and the exporters use nothing else, so what is printed and what is saved are the same
table in every format. Drawing, writing and plotting live in :mod:`paramcalc.render`, above every
other layer; a result reaches them through the registries of :mod:`.renderers`, keyed by its
:attr:`Result.KIND`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ParamcalcError
from .renderers import DRAW, EXPORT, HTML, PLOT
from .table import Table

if TYPE_CHECKING:  # pragma: no cover
    import os
    from pathlib import Path

    import pandas as pd


class Status(str, enum.Enum):
    """The verdict of one comparison (a tensor, a module, a FLOP figure)."""

    OK = "ok"
    MISMATCH = "mismatch"
    NOT_OBSERVABLE = "not observable"
    SKIPPED = "skipped"
    FAILED = "failed"
    EXPECTED_DIFFERENCE = "expected difference"
    UNEXPLAINED = "unexplained difference"
    NO_FORMULA = "counted, no formula"
    #: Nothing disagrees, but something could not be checked (a layer not identified).
    UNVERIFIED = "unverified"
    BUFFER = "buffer"
    TIED = "tied"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Document:
    """What surrounds a table in ``.md`` and ``.html`` exports.

    ``command``: the command line that made it (the CLI gives it); ``created``: when (filled in
    when the file is written, if empty)."""

    title: str = ""
    context: Sequence[tuple[str, str]] = ()
    summary: Sequence[str] = ()
    notes: Sequence[str] = ()
    links: Sequence[tuple[str, str]] = field(default=())
    command: str = ""
    created: str = ""


class Result:
    """Base class of every result (see the module docstring). Subclasses define ``VIEWS``,
    ``_table(view)``, and optionally ``KIND``, ``meta``, ``notes``, ``title``, ``summary``,
    ``headline``."""

    VIEWS: ClassVar[tuple[str, ...]] = ("rows",)
    #: What the renderer registries (:mod:`.renderers`) know this result by: a kind with a
    #: plot of its own says so here (``"compare"``); the rest share the generic renderers.
    KIND: ClassVar[str] = "table"

    # -- to override ----------------------------------------------------------------------
    def _table(self, view: str) -> Table:  # pragma: no cover - abstract
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        return {}

    def notes(self) -> list[str]:
        return []

    def title(self) -> str:
        return ""

    def summary(self, view: str | None = None) -> list[str]:
        """Lines drawn under the table in text formats (totals, formulas, verdicts)."""
        return []

    def headline(self) -> str:
        """A few words for ``repr``: what it is and its main number."""
        return self.title()

    # -- the protocol -----------------------------------------------------------------------
    def view(self, view: str | None) -> str:
        """The view name, checked (``None``: the default view)."""
        if view is None:
            return self.VIEWS[0]
        if view not in self.VIEWS:
            raise ParamcalcError(
                f"{type(self).__name__} has no view {view!r}: expected one of {', '.join(self.VIEWS)}"
            )
        return view

    def table(self, view: str | None = None) -> Table:
        return self._table(self.view(view))

    def to_frame(self, view: str | None = None) -> pd.DataFrame:
        """The view's table as a pandas DataFrame (pandas is imported only here)."""
        return self.table(view).to_frame()

    def header(self) -> list[str]:
        """Lines drawn above the table in text formats: the title."""
        title = self.title()
        return [title] if title else []

    def footer(self, view: str) -> list[str]:
        """Lines drawn under the table in text formats: the summary, then the notes."""
        return [*self.summary(view), *(f"note: {n}" for n in self.notes())]

    def json_meta(self) -> dict[str, Any]:
        """The JSON export's header: ``meta()`` plus the ``notes``."""
        return {**self.meta(), "notes": self.notes()}

    def render(self, fmt: str = "simple", view: str | None = None, *, wide: bool = False) -> str:
        """The text the CLI prints for ``view`` in ``fmt`` (see :mod:`paramcalc.render.draw`)."""
        return DRAW.of(self)(self, fmt, self.view(view), wide=wide)

    def context(self) -> list[tuple[str, str]]:
        """``(label, value)`` lines that say what the table was computed for (document exports)."""
        return []

    def document(
        self, view: str | None = None, links: Sequence[tuple[str, str]] = (), command: str = ""
    ) -> Document:
        """The title, context, summary and notes around the table in ``.md``/``.html`` exports
        (and the command line that made it, when given)."""
        return Document(
            self.title(), self.context(), self.summary(self.view(view)), self.notes(), links, command
        )

    def export(
        self,
        path: str | os.PathLike[str],
        view: str | None = None,
        *,
        links: Sequence[tuple[str, str]] = (),
        command: str = "",
    ) -> Path:
        """Write the view's table to ``path`` by its suffix, atomically (see
        :mod:`paramcalc.render.export`).

        ``links``: ``(label, relative path)`` of images a document shows (a plot); ``command``:
        the command line a document says it was made by."""
        import os

        if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
            raise ParamcalcError(
                "export needs a file path (a str or os.PathLike such as 'report.md'), got "
                f"{type(path).__name__}"
            )
        return EXPORT.of(self)(self, path, self.view(view), links=links, command=command)

    def plot(self, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
        """Draw the result to ``path`` (``.png``, ``.svg`` or ``.pdf``; matplotlib, the
        ``paramcalc[plot]`` extra), atomically; ``title`` replaces the figure's title. Only some
        kinds have a plot (compare, sweep, merged devices); the others say so in one line."""
        return PLOT.of(self)(self, path, title=title)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.headline()}>"

    def _repr_html_(self) -> str:
        return HTML.of(self)(self)
