"""The bridge to torch and to files: devices, building modules, reading them back, checkpoints.

Importing it registers the coercion of a recurrent ``torch.nn`` module into a spec in the core's
hook table (:func:`paramcalc.core.coerce.register_coercion`); ``paramcalc/__init__.py`` imports
it, so every public function that takes a spec takes a module too. The import is cheap: torch
and the adapters are imported when a module is first read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.coerce import is_module, register_coercion

if TYPE_CHECKING:  # pragma: no cover
    from ..core.spec import RecurrentSpec


def _spec_from_module(module: Any) -> RecurrentSpec:
    from .adapters import spec_from_module

    return spec_from_module(module)


register_coercion(is_module, _spec_from_module)
