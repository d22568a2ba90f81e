"""Whole architectures: recurrent stacks plus the layers around them, with tied weights.

An :class:`Architecture` is a tuple of components (recurrent stacks of any registered cell,
``embedding``, ``linear``, ``layernorm``, ``dropout``, ``conv1d``, ``conv2d``, ``batchnorm1d``,
``batchnorm2d``, ``attention``) and their wiring: by default each takes the previous one's
output; a component may name its sources (named inputs or earlier components) and how they
merge (``concat``, ``sum``), and stack consecutive frames (pyramidal and time-reduction layers).
Every component knows its parameter tensors, named and shaped as the matching ``torch.nn``
module stores them, with a formula per tensor. Pure Python: no torch, no pandas.

The package, one concern a module:

* :mod:`.components`: the component classes and their tensors;
* :mod:`.graph`: inputs, wiring, the flow of features (:func:`trace`) and :class:`Architecture`;
* :mod:`.toml`: the TOML schema and parser, and the bundled example files;
* :mod:`.count`: :class:`ArchitectureCount` and :func:`count_architecture`.

Counting conventions:

* recurrent stacks use PyTorch's tensor names (their layout knobs: bias vectors, peepholes,
  merge mode, as in :mod:`paramcalc.core.params`);
* a **tied** weight (``tie = "encoder"`` on a decoder ``linear``) is one tensor held by two
  modules: it is listed under both, counted once, at its first appearance in component order,
  exactly as ``nn.Module.parameters()`` deduplicates it;
* only parameters count: ``batchnorm1d``'s running statistics are buffers, not parameters.

Architectures are written as TOML files, see :func:`load_architecture` and docs/architectures.md.
"""

from __future__ import annotations

from .components import (
    Attention,
    BatchNorm1d,
    BatchNorm2d,
    BlockStack,
    Component,
    Conv1d,
    Conv2d,
    Custom,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Recurrent,
    TensorFormula,
    tensor_formula,
)
from .count import (
    ARCH_COMPONENT_COLUMNS,
    ARCH_TENSOR_COLUMNS,
    ARCH_TOTAL_COLUMNS,
    BUNDLED_COLUMNS,
    ArchComponentRow,
    ArchitectureCount,
    ArchTensorRow,
    BundledArchitectures,
    count_architecture,
)
from .graph import MERGES, Architecture, Flow, Input, Wiring, trace, with_head
from .toml import (
    BUNDLED,
    INPUT_KEYS,
    KIND_KEYS,
    MAX_TOML_BYTES,
    TOP_KEYS,
    WIRING_KEYS,
    architecture_from_dict,
    bundled_architectures,
    find_architecture,
    load_architecture,
    recurrent_kinds,
    with_nonlinearity,
)

__all__ = [
    "ARCH_COMPONENT_COLUMNS",
    "ARCH_TENSOR_COLUMNS",
    "ARCH_TOTAL_COLUMNS",
    "BUNDLED",
    "BUNDLED_COLUMNS",
    "INPUT_KEYS",
    "KIND_KEYS",
    "MAX_TOML_BYTES",
    "MERGES",
    "TOP_KEYS",
    "WIRING_KEYS",
    "ArchComponentRow",
    "ArchTensorRow",
    "Architecture",
    "ArchitectureCount",
    "Attention",
    "BatchNorm1d",
    "BatchNorm2d",
    "BlockStack",
    "BundledArchitectures",
    "Component",
    "Conv1d",
    "Conv2d",
    "Custom",
    "Dropout",
    "Embedding",
    "Flow",
    "Input",
    "LayerNorm",
    "Linear",
    "Recurrent",
    "TensorFormula",
    "Wiring",
    "architecture_from_dict",
    "bundled_architectures",
    "count_architecture",
    "find_architecture",
    "load_architecture",
    "recurrent_kinds",
    "tensor_formula",
    "trace",
    "with_head",
    "with_nonlinearity",
]
