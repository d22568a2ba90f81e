"""Meet users where they are: turn what a public function was given into a ``RecurrentSpec``.

A :class:`~paramcalc.core.spec.RecurrentSpec` passes through; anything else is offered to the
coercions registered here (:func:`register_coercion`), in order; what none accepts is a one-line
:class:`~paramcalc.errors.ParamcalcError` naming what was expected. The core knows no torch: the
bridge registers the coercion of a recurrent ``torch.nn`` module (``nn.LSTM``, ``nn.GRUCell``, a
paramcalc reference module, anything a registered cell's binding recognises) when it is imported,
and ``paramcalc/__init__.py`` imports the bridge, so it is in place whenever paramcalc is. torch
is never imported here: a module can only exist if torch was imported by whoever built it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ParamcalcError

if TYPE_CHECKING:  # pragma: no cover
    from .spec import RecurrentSpec

EXPECTED = "a RecurrentSpec or a recurrent torch.nn module (nn.RNN, nn.LSTM, nn.GRU or a cell)"

#: ``(accepts, convert)`` pairs :func:`as_spec` tries in order (see the module docstring).
_COERCIONS: list[tuple[Callable[[Any], bool], Callable[[Any], RecurrentSpec]]] = []


def register_coercion(accepts: Callable[[Any], bool], convert: Callable[[Any], RecurrentSpec]) -> None:
    """Let :func:`as_spec` turn what ``accepts(obj)`` recognises into ``convert(obj)``
    (registered once: the same pair again changes nothing)."""
    if (accepts, convert) not in _COERCIONS:
        _COERCIONS.append((accepts, convert))


def is_module(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.nn.Module`` (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def as_spec(obj: Any, what: str) -> RecurrentSpec:
    """``obj`` as a spec for the function named ``what`` (see the module docstring)."""
    from .spec import RecurrentSpec

    if isinstance(obj, RecurrentSpec):
        return obj
    for accepts, convert in _COERCIONS:
        if accepts(obj):
            return convert(obj)
    raise ParamcalcError(f"{what} needs {EXPECTED}, got {_type_name(obj)}")


def _type_name(obj: Any) -> str:
    if isinstance(obj, str):
        shown = obj if len(obj) <= 30 else obj[:27] + "..."
        return f"the string {shown!r}"
    return type(obj).__name__


def spec_from_arguments(
    cell: Any, args: tuple[Any, ...], options: dict[str, Any], what: str
) -> RecurrentSpec:
    """A spec from ``RecurrentSpec``'s own arguments given to ``what``: ``("lstm", 28, 256, 2)``.

    Only a cell name starts them; anything else with extra arguments is one line naming the two
    ways to call ``what``."""
    usage = (
        f"{what}(spec) takes a RecurrentSpec (or a recurrent torch.nn module) alone, or a cell name "
        f"and RecurrentSpec's arguments: {what}('lstm', 28, 256, 2) = "
        f"{what}(RecurrentSpec('lstm', input_size=28, hidden_size=256, num_layers=2))"
    )
    from .spec import RecurrentSpec

    if not isinstance(cell, str):
        from ..results.text import plural

        more = plural(len(args) + len(options), "more argument")
        raise ParamcalcError(f"{usage}; got {_type_name(cell)} and {more}")
    try:
        return RecurrentSpec(cell, *args, **options)
    except TypeError as exc:  # a missing, surplus or unknown argument
        raise ParamcalcError(
            f"{usage}: {str(exc).replace('RecurrentSpec.__init__()', 'RecurrentSpec()')}"
        ) from None
