"""The public ``count``: the parameters of a recurrent stack, alone or with a classifier head.

It stands above the two modules it joins, so neither imports the other back:
:mod:`.params` counts a stack by its closed-form formulas, and :mod:`.architecture` counts a
stack with an ``nn.Linear`` head on its output (:func:`~paramcalc.core.architecture.with_head`),
which is an architecture of two components.

>>> count("lstm", 28, 256, 2).total
819200
>>> count("lstm", 28, 256, 2, head=10).total  # + 10·256 weights + 10 biases
821770
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, overload

from . import params

if TYPE_CHECKING:  # pragma: no cover
    from .architecture import ArchitectureCount
    from .params import CountResult


@overload
def count(spec: Any, *args: Any, head: None = None, **options: Any) -> CountResult: ...
@overload
def count(spec: Any, *args: Any, head: int, **options: Any) -> ArchitectureCount: ...
def count(spec: Any, *args: Any, head: int | None = None, **options: Any) -> CountResult | ArchitectureCount:
    """Count every parameter tensor of ``spec`` with its closed-form formula.

    ``spec`` is a :class:`~paramcalc.core.spec.RecurrentSpec` or a recurrent ``torch.nn``
    module; a cell name with ``RecurrentSpec``'s arguments builds one: ``count("lstm", 28, 256,
    2)`` is ``count(RecurrentSpec("lstm", 28, 256, num_layers=2))``. With ``head=N`` the stack
    gets a classifier ``nn.Linear`` on its output (:func:`~paramcalc.core.architecture.with_head`)
    and the result is the architecture's count: ``count("lstm", 28, 256, 2, head=10).total`` is
    819,200 + (10·256 + 10) = 821,770.

    Results are memoised by spec (they are immutable), so a model with many identical layers
    is counted once per distinct layer.
    """
    if head is None:
        return params.count(spec, *args, **options)
    from .architecture import count_architecture, with_head
    from .coerce import as_spec, spec_from_arguments

    if args or options or isinstance(spec, str):
        spec = spec_from_arguments(spec, args, options, "count")
    return count_architecture(with_head(as_spec(spec, "count"), head))
