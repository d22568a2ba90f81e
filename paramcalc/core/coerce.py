"""Meet users where they are: turn what a public function was given into a ``RecurrentSpec``.

A :class:`~paramcalc.core.spec.RecurrentSpec` passes through; a recurrent ``torch.nn`` module
(``nn.LSTM``, ``nn.GRUCell``, a paramcalc reference module, anything a registered cell's
binding recognises) is read through the adapters; anything else is a one-line
:class:`~paramcalc.errors.ParamcalcError` naming what was expected. torch is never imported
here: a module can only exist if torch was imported by whoever built it.
"""

from __future__ import annotations

import sys
from typing import Any

from ..errors import ParamcalcError
from .spec import RecurrentSpec

EXPECTED = "a RecurrentSpec or a recurrent torch.nn module (nn.RNN, nn.LSTM, nn.GRU or a cell)"


def is_module(obj: Any) -> bool:
    """Whether ``obj`` is a ``torch.nn.Module`` (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def as_spec(obj: Any, what: str) -> RecurrentSpec:
    """``obj`` as a spec for the function named ``what`` (see the module docstring)."""
    if isinstance(obj, RecurrentSpec):
        return obj
    if is_module(obj):
        from ..bridge.adapters import spec_from_module

        return spec_from_module(obj)
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
    if not isinstance(cell, str):
        from ..results.render import plural

        more = plural(len(args) + len(options), "more argument")
        raise ParamcalcError(f"{usage}; got {_type_name(cell)} and {more}")
    try:
        return RecurrentSpec(cell, *args, **options)
    except TypeError as exc:  # a missing, surplus or unknown argument
        raise ParamcalcError(
            f"{usage}: {str(exc).replace('RecurrentSpec.__init__()', 'RecurrentSpec()')}"
        ) from None
