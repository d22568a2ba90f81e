"""Large GEMM shapes timed as tiles: the plan that covers ``M×K×N`` with tiles whose operands fit
a byte budget, their MACs adding up to ``M·K·N`` exactly (:mod:`paramcalc.timing.gemm` times the
tiles and sums their times; a tiled GEMM runs at most as fast as the whole one would).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ParamcalcError

#: Bytes of ``A + B + C`` one timed GEMM may allocate on a CPU, and on an accelerator.
CPU_OPERAND_BUDGET = 128 * 2**20
ACCEL_OPERAND_BUDGET = 2**30
#: ``K`` is split only when it exceeds this many times the operand's other dimension.
SPLIT_K_RATIO = 16


@dataclass(frozen=True)
class Tile:
    """``count`` GEMMs of shape ``(m, k, n)`` that stand in for (part of) a larger one."""

    m: int
    k: int
    n: int
    count: int

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.count


def operand_bytes(m: int, k: int, n: int, elem: int) -> int:
    """Bytes of ``A (M×K)``, ``B (N×K)`` and ``C (M×N)``."""
    return (m * k + n * k + m * n) * elem


def _pieces(size: int, tile: int) -> list[tuple[int, int]]:
    """``(length, count)`` covering ``size`` with tiles of ``tile`` and one remainder."""
    full, rest = divmod(size, tile)
    out = [(tile, full)] if full else []
    if rest:
        out.append((rest, 1))
    return out


def tile_plan(m: int, k: int, n: int, elem: int, budget: int) -> tuple[Tile, ...]:
    """Tiles whose operands fit ``budget`` bytes and whose MACs add up to ``m·k·n`` exactly.

    ``((m, k, n, 1),)`` when the whole GEMM fits. Otherwise a dimension of the largest operand
    is halved (rounding up) until a tile fits: ``N`` of ``B``, ``M`` of ``A``, the larger of
    ``M`` and ``N`` of ``C``. ``K`` is halved only when it is more than :data:`SPLIT_K_RATIO`
    times the operand's other dimension (a split-K GEMM also adds its partial products, which
    the tiles' times leave out).
    """
    if min(m, k, n) < 1 or elem < 1 or budget < 3 * elem:
        raise ParamcalcError(f"cannot tile a GEMM of shape ({m}, {k}, {n}) into {budget} bytes")
    tm, tk, tn = m, k, n
    while operand_bytes(tm, tk, tn, elem) > budget:
        a, b, c = tm * tk, tn * tk, tm * tn
        if c > a and c > b:
            if tm >= tn:
                tm = -(-tm // 2)
            else:
                tn = -(-tn // 2)
            continue
        other = tn if b >= a else tm  # the operand's dimension besides K
        if other > 1 and tk <= SPLIT_K_RATIO * other:
            if b >= a:
                tn = -(-tn // 2)
            else:
                tm = -(-tm // 2)
        else:
            tk = -(-tk // 2)
    tiles = [
        Tile(pm, pk, pn, cm * ck * cn)
        for pm, cm in _pieces(m, tm)
        for pk, ck in _pieces(k, tk)
        for pn, cn in _pieces(n, tn)
    ]
    assert sum(t.macs for t in tiles) == m * k * n  # exact in MACs, by construction
    return tuple(tiles)
