"""The renderer registries: results/ owns them, :mod:`paramcalc.render` fills them.

A result is data; drawing it (tabulate), writing it to a file (pandas, pyarrow, openpyxl) and
plotting it (matplotlib) sit above every other layer, in :mod:`paramcalc.render`. So that a
result can still say ``result.render()``, ``result.export(path)`` and ``result.plot(path)``
without importing the layer above it, that layer registers its functions here when it is
imported (``paramcalc/__init__.py`` imports it, so they are in place whenever any part of
paramcalc is). Each registry is keyed by a result's :attr:`~paramcalc.results.base.Result.KIND`
(``"compare"``, ``"sweep"``, ``"devices"``, ...); ``"*"`` serves every kind without its own:

* :data:`DRAW`: the text of a view in a table format (``Result.render``, ``str(result)``);
* :data:`HTML`: the HTML a notebook shows (``Result._repr_html_``);
* :data:`EXPORT`: a view written to a file by its suffix, atomically (``Result.export``);
* :data:`PLOT`: a figure of the result (``Result.plot``); only some kinds have one;
* :data:`CHECK_EXPORT`: an export target checked before any work (:func:`check_export`).

A kind with no function, and no ``"*"`` one, is one line: ``nothing to plot for a CountResult``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from ..errors import ParamcalcError

F = TypeVar("F")

#: The key of the function that serves every kind without its own.
ANY_KIND = "*"


class Registry(Generic[F]):
    """Functions keyed by result kind (see the module docstring); ``verb`` names the action in
    the one-line error for a kind without a function."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self._by_kind: dict[str, F] = {}

    def register(self, kind: str, fn: F) -> F:
        """Serve results of ``kind`` (``"*"``: every kind without its own) with ``fn``."""
        self._by_kind[kind] = fn
        return fn

    def kinds(self) -> list[str]:
        """The kinds served, in the order they were registered."""
        return list(self._by_kind)

    def find(self, kind: str, what: str = "") -> F:
        """The function for ``kind`` (else the ``"*"`` one); ``what`` names the result in the
        error when there is none."""
        fn = self._by_kind.get(kind)
        if fn is None:
            fn = self._by_kind.get(ANY_KIND)
        if fn is None:
            raise ParamcalcError(f"nothing to {self.verb} for a {what or kind}")
        return fn

    def of(self, result: Any) -> F:
        """The function for ``result``'s kind (a :class:`~paramcalc.results.base.Result`; this
        module does not import it, the base imports this one)."""
        return self.find(result.KIND, type(result).__name__)


#: Re-words a message line for its reader (the CLI names its flags where the library names a
#: Python parameter); ``None`` keeps every line as the library wrote it.
Say = Callable[[str], str] | None


class Drawer(Protocol):
    def __call__(self, result: Any, fmt: str, view: str, *, wide: bool, say: Say = None) -> str: ...


class HtmlDrawer(Protocol):
    def __call__(self, result: Any) -> str: ...


class Exporter(Protocol):
    def __call__(
        self,
        result: Any,
        path: str | os.PathLike[str],
        view: str,
        *,
        links: Sequence[tuple[str, str]],
        command: str,
        say: Say = None,
    ) -> Path: ...


class Plotter(Protocol):
    def __call__(self, result: Any, path: str | os.PathLike[str], *, title: str | None) -> Path: ...


class ExportCheck(Protocol):
    def __call__(self, path: str | os.PathLike[str], timed_rows: int | None) -> None: ...


DRAW: Registry[Drawer] = Registry("draw")
HTML: Registry[HtmlDrawer] = Registry("show")
EXPORT: Registry[Exporter] = Registry("export")
PLOT: Registry[Plotter] = Registry("plot")
CHECK_EXPORT: Registry[ExportCheck] = Registry("check an export")


def check_export(path: str | os.PathLike[str], timed_rows: int | None = None, kind: str = ANY_KIND) -> None:
    """Check ``path`` as an export target before any work is done (suffix, folder, links,
    writability, the package its format needs); with ``timed_rows``, also that its folder has
    room for a timed table of that many rows. One line when it cannot be written."""
    CHECK_EXPORT.find(kind)(path, timed_rows)
