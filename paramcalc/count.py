"""Closed-form parameter counts, tensor by tensor, named as PyTorch (or Keras) names them.

Per layer and direction, with ``G`` gate blocks, hidden size ``Dh``, layer input ``d``,
projection ``P`` (0 for none) and ``B`` bias vectors per gate block::

    params = G(Dh·d + Dh·R + B·Dh) + P·Dh        where R = P if P else Dh

PyTorch stores ``weight_ih (G·Dh, d)``, ``weight_hh (G·Dh, R)``, ``bias_ih (G·Dh)``,
``bias_hh (G·Dh)``, ``weight_hr (P, Dh)``; Keras stores ``kernel (d, G·u)``,
``recurrent_kernel (u, G·u)`` and ``bias (G·u)`` or ``(2, G·u)``. Layer ``k > 0`` takes
``num_directions · (P or Dh)`` inputs. Everything is exact Python ``int`` arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING, Any

from .spec import RecurrentSpec

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

DIRECTIONS = ("forward", "reverse")

TENSOR_COLUMNS = ("name", "shape", "numel", "layer", "direction", "role")
LAYER_COLUMNS = ("layer", "direction", "input_size", "formula", "substituted", "params")


@dataclass(frozen=True)
class TensorRow:
    """One parameter tensor: its name, stored shape and element count."""

    name: str
    shape: tuple[int, ...]
    numel: int
    layer: int
    direction: str
    role: str  # weight_ih, weight_hh, bias_ih, bias_hh, weight_hr (torch); kernel, ... (keras)

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": str(self.shape),
            "numel": self.numel,
            "layer": self.layer,
            "direction": self.direction,
            "role": self.role,
        }


@dataclass(frozen=True)
class LayerFormula:
    """The closed form of one layer and direction, symbolic and with numbers substituted."""

    layer: int
    direction: str
    input_size: int
    symbolic: str
    substituted: str
    params: int

    def record(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "direction": self.direction,
            "input_size": self.input_size,
            "formula": self.symbolic,
            "substituted": self.substituted,
            "params": self.params,
        }

    def __str__(self) -> str:
        return f"{self.symbolic} = {self.substituted} = {self.params:,}"


def layer_params(spec: RecurrentSpec, layer: int) -> int:
    """Parameters of one direction of one layer: ``G(Dh·d + Dh·R + B·Dh) + P·Dh``."""
    g, h, p = spec.gates, spec.hidden_size, spec.proj_size
    d = spec.layer_input_size(layer)
    r = p or h
    return g * (h * d + h * r + spec.bias_vectors * h) + p * h


def total_params(spec: RecurrentSpec) -> int:
    """Total parameters of the spec, without building the per-tensor rows (fast path)."""
    first = layer_params(spec, 0)
    rest = layer_params(spec, 1) if spec.num_layers > 1 else 0
    return spec.num_directions * (first + (spec.num_layers - 1) * rest)


def _formula(spec: RecurrentSpec, layer: int) -> tuple[str, str]:
    g, h, p, b = spec.gates, spec.hidden_size, spec.proj_size, spec.bias_vectors
    d = spec.layer_input_size(layer)
    if layer == 0:
        d_sym = "d"
    else:
        nd = spec.num_directions
        d_sym = f"{nd if nd > 1 else ''}{'P' if p else 'Dh'}"
    r_sym, r = ("P", p) if p else ("Dh", h)
    sym = [f"Dh·{d_sym}", f"Dh·{r_sym}"]
    num = [f"{h}·{d}", f"{h}·{r}"]
    if b:
        sym.append(f"{b}Dh" if b > 1 else "Dh")
        num.append(f"{b}·{h}" if b > 1 else f"{h}")
    s, n = " + ".join(sym), " + ".join(num)
    if g > 1:
        s, n = f"{g}({s})", f"{g}({n})"
    if p:
        s, n = f"{s} + P·Dh", f"{n} + {p}·{h}"
    return s, n


def _torch_tensors(spec: RecurrentSpec, layer: int, direction: int) -> Iterator[TensorRow]:
    g, h, p = spec.gates, spec.hidden_size, spec.proj_size
    d = spec.layer_input_size(layer)
    suffix = "" if spec.cell_type.single_step else f"_l{layer}" + ("_reverse" if direction else "")
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("weight_ih", (g * h, d)),
        ("weight_hh", (g * h, p or h)),
    ]
    if spec.bias:
        shapes += [("bias_ih", (g * h,)), ("bias_hh", (g * h,))]
    if p:
        shapes.append(("weight_hr", (p, h)))
    for role, shape in shapes:
        yield TensorRow(role + suffix, shape, prod(shape), layer, DIRECTIONS[direction], role)


def _keras_tensors(spec: RecurrentSpec, layer: int, direction: int) -> Iterator[TensorRow]:
    g, h = spec.gates, spec.hidden_size
    d = spec.layer_input_size(layer)
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("kernel", (d, g * h)),
        ("recurrent_kernel", (h, g * h)),
    ]
    if spec.bias:
        shapes.append(("bias", (2, g * h) if spec.bias_vectors == 2 else (g * h,)))
    for role, shape in shapes:
        yield TensorRow(role, shape, prod(shape), layer, DIRECTIONS[direction], role)


@dataclass(frozen=True)
class CountResult:
    """Parameter count of a spec: per-tensor rows, per-layer formulas and the exact total."""

    spec: RecurrentSpec
    rows: tuple[TensorRow, ...]
    formulas: tuple[LayerFormula, ...]
    total: int

    @property
    def convention_note(self) -> str:
        s = self.spec
        if s.convention == "torch":
            bias = "two bias vectors (b_ih, b_hh) per gate block" if s.bias else "no biases"
            return f"PyTorch/cuDNN convention: {bias}"
        if not s.bias:
            return "Keras convention: no biases"
        if s.bias_vectors == 2:
            return "Keras convention: GRU with reset_after=True keeps an input and a recurrent bias"
        return "Keras convention: one bias vector per gate block"

    def records(self, by: str = "tensor") -> list[dict[str, Any]]:
        """Plain rows for rendering: ``by`` is ``tensor``, ``layer`` or ``total``."""
        if by == "tensor":
            return [r.record() for r in self.rows]
        if by == "layer":
            return [f.record() for f in self.formulas]
        if by == "total":
            return [{"spec": self.spec.describe(), "tensors": len(self.rows), "params": self.total}]
        raise ValueError(f"by must be tensor, layer or total, got {by!r}")

    def to_frame(self, by: str = "tensor") -> pd.DataFrame:
        """The rows as a pandas DataFrame (pandas is imported only here)."""
        import pandas as pd

        cols = {"tensor": TENSOR_COLUMNS, "layer": LAYER_COLUMNS}.get(by)
        return pd.DataFrame(self.records(by), columns=list(cols) if cols else None)


def count(spec: RecurrentSpec) -> CountResult:
    """Count every parameter tensor of ``spec`` with its closed-form formula."""
    tensors = _keras_tensors if spec.convention == "keras" else _torch_tensors
    rows: list[TensorRow] = []
    formulas: list[LayerFormula] = []
    for layer in range(spec.num_layers):
        sym, num = _formula(spec, layer)
        n = layer_params(spec, layer)
        for direction in range(spec.num_directions):
            layer_rows = list(tensors(spec, layer, direction))
            assert sum(r.numel for r in layer_rows) == n  # the formula and the tensors agree
            rows.extend(layer_rows)
            formulas.append(
                LayerFormula(layer, DIRECTIONS[direction], spec.layer_input_size(layer), sym, num, n)
            )
    total = sum(f.params for f in formulas)
    return CountResult(spec, tuple(rows), tuple(formulas), total)
