"""State dicts -> layers: read specs back from tensor names and shapes alone (no torch needed).

Recurrent stacks are recognised by the registry: every registered cell whose tensors (built
from its templates for the sizes, layers, directions, bias vectors, peepholes and projection
the names and shapes imply) equal the group's names and shapes exactly is a candidate; the
first in registry order is chosen and the others are named in the note (an RNN with tanh and
one with ReLU have the same tensors). Other layers come from the usual ``weight``/``bias``/
running-stat patterns; a lone 2-D ``weight`` reads as an embedding when the name says so, else
as a bias-free linear (their counts are the same).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache

from ..core.architecture import (
    BatchNorm1d,
    BatchNorm2d,
    Component,
    Conv1d,
    Conv2d,
    Embedding,
    LayerNorm,
    Linear,
    Recurrent,
)
from ..core.cells import CellType, registered_cells
from ..core.params import count
from ..core.spec import RecurrentSpec
from ..errors import ParamcalcError

_PARAMETRIZED = re.compile(r"^(.*?)(?:^|\.)parametrizations\.(\w+)\.original\d*$")
#: Suffixes that wrappers add to a renamed parameter: weight-drop's ``_raw``, pruning's and
#: spectral norm's ``_orig``, the legacy ``weight_norm``'s direction ``_v`` and magnitude ``_g``.
RENAME_SUFFIXES = ("_raw", "_orig", "_v", "_g")
#: Names that are buffers, not parameters, in the layers paramcalc knows.
BUFFER_NAMES = ("running_mean", "running_var", "num_batches_tracked")
EMBEDDING_HINTS = ("emb", "encoder", "lookup", "token", "wte", "wpe", "vocab")


@lru_cache(maxsize=8)
def _rnn_key(roles: frozenset[str]) -> re.Pattern[str]:
    alternatives = "|".join(sorted(roles, key=len, reverse=True))
    return re.compile(rf"^({alternatives})(?:_l(\d+)(_reverse)?)?$")


def rnn_key() -> re.Pattern[str]:
    """The pattern of a recurrent tensor name: any registered template's PyTorch name, suffixed."""
    return _rnn_key(frozenset(t.torch_name for c in registered_cells() for t in c.templates))


def canonical_name(name: str) -> str:
    """The name a wrapper-renamed parameter had: ``rnn.weight_hh_l0_raw`` -> ``rnn.weight_hh_l0``.

    Handles weight-drop (``_raw``), pruning/spectral norm (``_orig``), the legacy weight norm
    (``_v``, ``_g``) and ``torch.nn.utils.parametrize`` (``parametrizations.weight.original``,
    ``original0``/``original1`` for weight norm's magnitude and direction).
    """
    if "parametrizations." not in name and not name.endswith(RENAME_SUFFIXES):
        return name  # the common case, without a regular expression
    m = _PARAMETRIZED.match(name)
    if m:
        head, leaf = m.group(1), m.group(2)
        name = f"{head}.{leaf}" if head else leaf
    for suffix in RENAME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _split(name: str) -> tuple[str, str]:
    head, _, leaf = name.rpartition(".")
    return head, leaf


@dataclass(frozen=True)
class Inferred:
    """A group of state-dict tensors read back as one layer (``component`` None: unknown)."""

    prefix: str
    component: Component | None
    type_name: str
    note: str = ""


def infer_components(shapes: Mapping[str, tuple[int, ...]]) -> list[Inferred]:
    """Read layers back from a state dict's names and shapes, in first-appearance order."""
    groups: dict[str, dict[str, tuple[int, ...]]] = {}
    for full, shape in shapes.items():
        head, leaf = _split(canonical_name(full))
        groups.setdefault(head, {})[leaf] = tuple(shape)
    _adopt_orphans(groups)
    out: list[Inferred] = []
    for prefix, leaves in groups.items():
        try:
            inferred = _infer_group(prefix, leaves, out[-1] if out else None)
        except ParamcalcError as exc:  # shapes that contradict themselves: no formula, say why
            inferred = Inferred(prefix, None, "unknown", f"not read as a layer: {exc}")
        out.append(inferred)
    return out


def _adopt_orphans(groups: dict[str, dict[str, tuple[int, ...]]]) -> None:
    """Move a wrapper's renamed recurrent tensor (fastai's weight-drop keeps ``weight_hh_l0_raw``
    on the wrapper) into the child group that lacks it."""
    key = rnn_key()
    for prefix in list(groups):
        leaves = groups[prefix]
        for leaf in [k for k in leaves if key.match(k)]:
            for other, its in groups.items():
                if other != prefix and other.startswith(f"{prefix}." if prefix else "") and leaf not in its:
                    if any(key.match(k) and k != leaf for k in its) and all(key.match(k) for k in leaves):
                        its[leaf] = leaves.pop(leaf)
                        break
        if not leaves:
            del groups[prefix]


def _infer_group(
    prefix: str, leaves: Mapping[str, tuple[int, ...]], previous: Inferred | None = None
) -> Inferred:
    name = prefix or "(root)"
    key = rnn_key()
    rnn = {k: v for k, v in leaves.items() if key.match(k)}
    if rnn and len(rnn) == len(leaves) and ("weight_ih" in rnn or "weight_ih_l0" in rnn):
        return infer_recurrent(prefix, name, rnn)
    keys = set(leaves)
    if keys <= {"weight", "bias", *BUFFER_NAMES} and keys & {"running_mean", "running_var"}:
        return _infer_batchnorm(prefix, name, leaves, previous)
    w = leaves.get("weight")
    if w is not None and keys <= {"weight", "bias"}:
        inferred = _infer_weighted(prefix, name, w, leaves.get("bias"))
        if inferred is not None:
            return inferred
    return Inferred(prefix, None, "unknown")


def _infer_batchnorm(
    prefix: str, name: str, leaves: Mapping[str, tuple[int, ...]], previous: Inferred | None
) -> Inferred:
    """A batch norm (it has running statistics): 2-D after a Conv2d of as many channels."""
    w = leaves.get("weight")
    c = (w or leaves.get("bias") or leaves.get("running_mean") or (0,))[0]
    before = previous.component if previous is not None else None
    if isinstance(before, Conv2d) and before.out_channels == c:
        return Inferred(prefix, BatchNorm2d(name, c, w is not None), "BatchNorm2d", "2-D: after a Conv2d")
    if isinstance(before, Conv1d) and before.out_channels == c:
        return Inferred(prefix, BatchNorm1d(name, c, w is not None), "BatchNorm1d")
    return Inferred(
        prefix,
        BatchNorm1d(name, c, w is not None),
        "BatchNorm",
        "BatchNorm1d or BatchNorm2d: the same tensors (2C parameters)",
    )


_GROUPS_ASSUMED = "groups=1 assumed (in_channels = weight.shape[1])"


def _infer_weighted(prefix: str, name: str, w: tuple[int, ...], b: tuple[int, ...] | None) -> Inferred | None:
    """A ``weight`` (and ``bias``) by the weight's rank: linear/embedding, conv, layer norm."""
    if len(w) in (2, 3, 4) and (b is None or b == (w[0],)):
        if len(w) == 2:
            return _infer_matrix(prefix, name, w, b is not None)
        if len(w) == 4:
            conv2 = Conv2d(name, w[1], w[0], (w[2], w[3]), bias=b is not None)
            return Inferred(prefix, conv2, "Conv2d", _GROUPS_ASSUMED)
        return Inferred(prefix, Conv1d(name, w[1], w[0], w[2], 1, b is not None), "Conv1d", _GROUPS_ASSUMED)
    if b is None or b == w:
        note = "" if b is not None else "weight only: LayerNorm(bias=False) or RMSNorm, the same count"
        return Inferred(prefix, LayerNorm(name, w, True, b is not None), "LayerNorm", note)
    return None


def _infer_matrix(prefix: str, name: str, w: tuple[int, ...], bias: bool) -> Inferred:
    """A 2-D weight: a linear layer, or an embedding when bias-free and the name says so."""
    if bias:
        return Inferred(prefix, Linear(name, w[1], w[0], True), "Linear")
    if any(h in prefix.lower() for h in EMBEDDING_HINTS):
        return Inferred(prefix, Embedding(name, w[0], w[1]), "Embedding")
    return Inferred(
        prefix,
        Linear(name, w[1], w[0], False),
        "Linear",
        "a lone 2-D weight: Linear(bias=False) or Embedding, the same count",
    )


@dataclass(frozen=True)
class _Parsed:
    role: str
    layer: int | None
    reverse: bool
    shape: tuple[int, ...]


@dataclass(frozen=True)
class _Layout:
    """What a recurrent group's names and shapes say, before any cell is tried."""

    single: bool  # cell-style names (weight_ih), not stack-style (weight_ih_l0)
    suffix0: str  # "" or "_l0": the first layer's suffix
    ih: tuple[int, ...]  # the first layer's weight_ih shape: (gates·Dh, d)
    num_layers: int
    bidirectional: bool
    bias_vectors: int
    peephole: bool
    proj: int
    l1: tuple[int, ...] | None  # weight_ih_l1's shape (tells summed directions apart)


def _parse(rnn: Mapping[str, tuple[int, ...]]) -> dict[str, _Parsed]:
    key = rnn_key()
    parsed: dict[str, _Parsed] = {}
    for k, shape in rnn.items():
        m = key.match(k)
        assert m is not None
        parsed[k] = _Parsed(
            m.group(1), None if m.group(2) is None else int(m.group(2)), bool(m.group(3)), shape
        )
    return parsed


def _layout(rnn: Mapping[str, tuple[int, ...]]) -> _Layout:
    """The layout a recurrent group's names imply (one line when they contradict themselves)."""
    parsed = _parse(rnn).values()
    single, layers = _numbering(parsed)
    suffix0 = "" if single else "_l0"
    ih = rnn.get(f"weight_ih{suffix0}")
    if ih is None or len(ih) != 2:
        raise ParamcalcError(f"needs a 2-D weight_ih{suffix0} to read the sizes")
    if not single and layers != list(range(len(layers))):
        raise ParamcalcError(f"layers {layers} are not numbered 0..{len(layers) - 1}")
    roles0 = {p.role for p in parsed if p.layer in (None, 0) and not p.reverse}
    hr = rnn.get(f"weight_hr{suffix0}")
    return _Layout(
        single=single,
        suffix0=suffix0,
        ih=ih,
        num_layers=1 if single else len(layers),
        bidirectional=any(p.reverse for p in parsed),
        bias_vectors=sum(1 for r in ("bias_ih", "bias_hh") if r in roles0),
        peephole=any(r.startswith("weight_c") for r in roles0),
        proj=hr[0] if hr is not None and len(hr) == 2 else 0,
        l1=rnn.get("weight_ih_l1"),
    )


def _numbering(parsed: Collection[_Parsed]) -> tuple[bool, list[int]]:
    """Whether the names are cell-style (no layer suffix), and the layer numbers they carry."""
    single = all(p.layer is None for p in parsed)
    if not single and any(p.layer is None for p in parsed):
        raise ParamcalcError("cell-style and stack-style recurrent names mixed")
    return single, sorted({p.layer for p in parsed if p.layer is not None})


def infer_recurrent(prefix: str, name: str, rnn: Mapping[str, tuple[int, ...]]) -> Inferred:
    """Read one recurrent stack (or cell) back from its tensors, by matching the registry."""
    lay = _layout(rnn)
    wanted = {k: tuple(v) for k, v in rnn.items()}
    matches: list[RecurrentSpec] = []
    reasons: list[str] = []
    for ct in registered_cells():
        for spec in _candidates(ct, lay):
            if {r.name: r.shape for r in count(spec).rows} == wanted:
                matches.append(spec)
            else:
                reasons.append(ct.name)
    if not matches:
        raise ParamcalcError(
            f"no registered cell has these tensors (weight_ih{lay.suffix0} {lay.ih}; "
            f"tried {', '.join(reasons) or 'none'})"
        )
    spec = matches[0]
    notes = []
    same = [s.cell for s in matches[1:]]
    if same:
        notes.append(f"{spec.cell} or {' or '.join(same)}: the same tensors")
    if spec.merge_mode != "concat":
        notes.append("directions merged (sum, ave or mul: the same tensors), not concatenated")
    return Inferred(prefix, Recurrent(name, spec), spec.display_class, "; ".join(notes))


def _candidates(ct: CellType, lay: _Layout) -> list[RecurrentSpec]:
    """The specs of cell ``ct`` that the layout allows (none when its gates do not divide)."""
    if ct.single_step != lay.single or lay.ih[0] % ct.gates:
        return []
    hidden = lay.ih[0] // ct.gates
    l1 = lay.l1
    summed = lay.bidirectional and l1 is not None and len(l1) == 2 and l1[1] == (lay.proj or hidden)
    spec = _candidate(
        ct,
        lay.ih[1],
        hidden,
        lay.num_layers,
        lay.bidirectional,
        lay.bias_vectors,
        lay.proj,
        lay.peephole,
        "sum" if summed else "concat",
    )
    return [] if spec is None else [spec]


def _candidate(
    ct: CellType,
    d: int,
    hidden: int,
    layers: int,
    bidirectional: bool,
    bias_vectors: int,
    proj: int,
    peephole: bool,
    merge: str,
) -> RecurrentSpec | None:
    try:
        return RecurrentSpec(
            ct.name,
            d,
            hidden,
            num_layers=layers,
            bidirectional=bidirectional,
            bias_vectors=bias_vectors,
            proj_size=proj,
            peephole=peephole,
            merge_mode=merge,
        )
    except ParamcalcError:
        return None
