"""The one registry of memoised functions: cleared together when the cell registry changes.

Specs, counts and tensor lists are immutable, so paramcalc memoises what it computes from them
(a model of many identical layers is counted once per distinct layer). Every memoised function
is made with :func:`memoise`, which registers it here; :func:`clear` empties all of them at
once. The cell registry calls it whenever an entry is added, replaced or removed
(:func:`paramcalc.core.cells.register_cell`), so nothing computed from an old entry is served
after the change, whatever the cache is keyed by. A spec's identity holds the entry it was made
with too (:class:`paramcalc.core.spec.RecurrentSpec`), so two specs of the same fields made
before and after a re-registration are different keys.

:func:`disabled` turns memoisation off (a block of code sees every call computed afresh): the
benchmark of one call's cost (``benchmarks/bench_count.py``) and tests use it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])

_CACHED: list[Any] = []
_enabled = True


def memoise(maxsize: int = 4096) -> Callable[[F], F]:
    """``functools.lru_cache(maxsize)`` registered for :func:`clear` and :func:`disabled`."""

    def wrap(fn: F) -> F:
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def call(*args: Any) -> Any:
            if _enabled:
                return cached(*args)
            return fn(*args)

        call.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        call.cache_info = cached.cache_info  # type: ignore[attr-defined]
        _CACHED.append(cached)
        return cast(F, call)

    return wrap


def clear() -> None:
    """Empty every memoised function's cache (the cell registry changed)."""
    for cached in _CACHED:
        cached.cache_clear()


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Compute every memoised call afresh inside the block (caches are neither read nor filled)."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before
