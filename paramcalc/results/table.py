"""Typed tables: the one shape every result hands to the terminal, to pandas and to files.

A :class:`Table` is a tuple of :class:`Column` (name, kind, unit, whether it is shown only with
``--wide``) and rows of plain Python values: exact ``int``, ``float``, ``str``, ``bool``,
tuples of ints (tensor shapes) and ``None`` for a missing value. Numbers are never formatted
here; :mod:`paramcalc.render.draw` formats them when a table is drawn, and
:meth:`Table.to_frame` gives pandas the same columns with nullable dtypes (``Int64``,
``Float64``, ``string``, ``boolean``; tuples stay tuples). Pure Python: pandas is imported only
by :meth:`Table.to_frame`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

Kind = Literal["int", "float", "str", "bool", "shape"]

INT64_MAX = 2**63 - 1

#: pandas dtype of each column kind (``shape`` columns hold tuples in an object column).
FRAME_DTYPES: dict[str, str] = {
    "int": "Int64",
    "float": "Float64",
    "str": "string",
    "bool": "boolean",
    "shape": "object",
}


@dataclass(frozen=True)
class Column:
    """A column: its name, value kind, unit (for headers and docs) and visibility.

    ``wide`` columns are left out of the default terminal table (``--wide`` shows them); a
    ``fold`` column is left out when every row of a table of several rows holds the same value,
    which is then stated once under the table (a configuration column of a comparison). Files and
    frames always hold every column. ``digits``: significant digits a float is drawn with
    (measured values carry 4). ``doc``: what the column holds, for documents' column lists.
    """

    name: str
    kind: Kind = "int"
    unit: str = ""
    wide: bool = False
    digits: int = 4
    doc: str = ""
    fold: bool = False


@dataclass(frozen=True)
class Table:
    """Columns and rows of plain values (see the module docstring)."""

    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))
        n = len(self.columns)
        for r in self.rows:
            if len(r) != n:
                raise ValueError(f"row has {len(r)} values for {n} columns: {r!r}")

    @classmethod
    def from_records(cls, columns: Sequence[Column], records: Iterable[dict[str, Any]]) -> Table:
        """Rows from dicts keyed by column name (a missing key is ``None``)."""
        cols = tuple(columns)
        return cls(cols, tuple(tuple(rec.get(c.name) for c in cols) for rec in records))

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> list[Any]:
        i = self.names.index(name)
        return [r[i] for r in self.rows]

    def records(self) -> list[dict[str, Any]]:
        """Rows as dicts of the raw values (tuples stay tuples, missing values are ``None``)."""
        names = self.names
        return [dict(zip(names, r, strict=True)) for r in self.rows]

    def folded(self) -> list[tuple[Column, Any]]:
        """The ``fold`` columns every row of this table (of several rows) holds one value of."""
        if len(self.rows) < 2:
            return []
        out = []
        for i, c in enumerate(self.columns):
            if c.fold and not c.wide and len({r[i] for r in self.rows}) == 1:
                out.append((c, self.rows[0][i]))
        return out

    def select(self, wide: bool) -> Table:
        """The table without its ``wide`` and :meth:`folded` columns, unless ``wide``."""
        if wide:
            return self
        folded = {c.name for c, _ in self.folded()}
        keep = [i for i, c in enumerate(self.columns) if not c.wide and c.name not in folded]
        if len(keep) == len(self.columns):
            return self
        return Table(
            tuple(self.columns[i] for i in keep), tuple(tuple(r[i] for i in keep) for r in self.rows)
        )

    def overflowing(self) -> list[str]:
        """Integer columns holding a value beyond int64 (they cannot be ``Int64``)."""
        out = []
        for i, c in enumerate(self.columns):
            if c.kind == "int" and any(r[i] is not None and abs(r[i]) > INT64_MAX for r in self.rows):
                out.append(c.name)
        return out

    def to_frame(self) -> pd.DataFrame:
        """The table as a pandas DataFrame with nullable dtypes (``Int64``, ``Float64``, ...).

        An integer column with a value beyond int64 keeps exact Python ints (``object`` dtype).
        """
        import pandas as pd

        big = set(self.overflowing())
        data: dict[str, Any] = {}
        for i, c in enumerate(self.columns):
            values = [r[i] for r in self.rows]
            if c.kind == "shape" or c.name in big:
                data[c.name] = pd.Series(values, dtype="object")
            elif c.kind == "str":
                data[c.name] = pd.Series([_storable(v) for v in values], dtype=FRAME_DTYPES[c.kind])
            else:
                data[c.name] = pd.Series(values, dtype=FRAME_DTYPES[c.kind])
        frame: pd.DataFrame = pd.DataFrame(data, columns=self.names)
        return frame


def _storable(value: Any) -> Any:
    """Text a UTF-8 store takes: a lone surrogate (from a file's malformed names) is escaped."""
    if value is None:
        return None
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
