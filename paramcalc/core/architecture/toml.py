"""Architectures written as TOML: the schema (keys per kind) and the parser.

See :func:`load_architecture` and docs/architectures.md; the example architectures shipped with
paramcalc are found by :func:`find_architecture`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ...errors import ParamcalcError
from ..cells import ALIASES, CELLS, find_cell, get_cell, plugin_note
from ..spec import RecurrentSpec
from .components import (
    Attention,
    BatchNorm1d,
    BatchNorm2d,
    BlockStack,
    Component,
    Conv1d,
    Conv2d,
    Dropout,
    Embedding,
    LayerNorm,
    Linear,
    Recurrent,
)
from .graph import Architecture, Input, Tracer, Wiring

_RECURRENT_KEYS = {
    "input_size",
    "hidden_size",
    "num_layers",
    "bidirectional",
    "bias",
    "proj_size",
    "nonlinearity",
    "dropout",
    "batch_first",
    "bias_vectors",
    "peephole",
    "merge_mode",
    "reset_after",
}
#: Keys each kind accepts besides ``name`` and ``kind`` (some are accepted and ignored: they
#: change behaviour, not parameter counts).
KIND_KEYS: dict[str, set[str]] = {
    "embedding": {"num_embeddings", "embedding_dim", "padding_idx", "max_norm", "tie"},
    "linear": {"in_features", "out_features", "bias", "tie"},
    "layernorm": {"normalized_shape", "eps", "elementwise_affine", "bias"},
    "dropout": {"p"},
    "conv1d": {
        "in_channels",
        "out_channels",
        "kernel_size",
        "groups",
        "bias",
        "stride",
        "padding",
        "dilation",
    },
    "batchnorm1d": {"num_features", "affine", "eps", "momentum", "track_running_stats"},
    "batchnorm2d": {"num_features", "affine", "eps", "momentum", "track_running_stats"},
    "conv2d": {
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "dilation",
        "groups",
        "bias",
        "height",
        "padding_mode",
    },
    "attention": {"query_size", "key_size", "attn_size", "normalize"},
}
#: Keys every component accepts: where its input comes from (see :class:`Wiring`).
WIRING_KEYS = {"from", "merge", "stack"}
TOP_KEYS = {"name", "description", "component", "input"}
INPUT_KEYS = {"name", "size", "channels", "height"}
#: Largest architecture file read (a real one is a few kB).
MAX_TOML_BYTES = 1 << 20


def recurrent_kinds() -> list[str]:
    return [*CELLS, *ALIASES]


def with_nonlinearity(kind: str, nonlinearity: Any) -> str:
    """The registered cell that is ``kind`` with PyTorch's ``nonlinearity=`` argument.

    ``rnn`` with ``"relu"`` is ``rnn_relu``, ``rnn_cell`` with ``"relu"`` is ``rnn_relu_cell``:
    the cells sharing a ``torch.nn`` class that differ in their constructor's nonlinearity.
    """
    base = get_cell(kind)
    if nonlinearity is None:
        return base.name
    siblings = {
        c.torch.nonlinearity: c.name
        for c in CELLS.values()
        if c.torch.nonlinearity and c.torch.nn_class == base.torch.nn_class
    }
    if not base.torch.nonlinearity or not siblings:
        takes = ", ".join(c.name for c in CELLS.values() if c.torch.nonlinearity)
        raise ParamcalcError(f"nonlinearity applies only to {takes}, not {base.name}")
    if nonlinearity not in siblings:
        raise ParamcalcError(
            f"nonlinearity must be one of {', '.join(map(repr, siblings))}, got {nonlinearity!r}"
        )
    return siblings[nonlinearity]


def _required(table: Mapping[str, Any], key: str, why: str = "") -> Any:
    if key not in table:
        raise ParamcalcError(f"missing {key}{why}")
    return table[key]


def _inferred(table: Mapping[str, Any], key: str, incoming: int | None) -> Any:
    if key in table:
        return table[key]
    if incoming is None:
        raise ParamcalcError(
            f"missing {key} (it may be left out only after a component whose output size is known)"
        )
    return incoming


def _str(table: Mapping[str, Any], key: str) -> str | None:
    v = table.get(key)
    if v is not None and not isinstance(v, str):
        raise ParamcalcError(f"{key} must be a string, got {v!r}")
    return v


#: What a layer's builder reads: the component's table (wiring keys removed), its name, and
#: the features (or the 2-D plane) it receives, from which sizes left out are inferred.
_Builder = Callable[[Mapping[str, Any], str, "int | None", "tuple[int, int] | None"], Component]


def _embedding(t: Mapping[str, Any], name: str, incoming: int | None, plane: Any) -> Component:
    return Embedding(name, _required(t, "num_embeddings"), _required(t, "embedding_dim"), _str(t, "tie"))


def _linear(t: Mapping[str, Any], name: str, incoming: int | None, plane: Any) -> Component:
    return Linear(
        name,
        _inferred(t, "in_features", incoming),
        _required(t, "out_features"),
        t.get("bias", True),
        _str(t, "tie"),
    )


def _layernorm(t: Mapping[str, Any], name: str, incoming: int | None, plane: Any) -> Component:
    return LayerNorm(
        name,
        _inferred(t, "normalized_shape", incoming),
        t.get("elementwise_affine", True),
        t.get("bias", True),
    )


def _dropout(t: Mapping[str, Any], name: str, incoming: int | None, plane: Any) -> Component:
    return Dropout(name, t.get("p", 0.5))


def _conv1d(t: Mapping[str, Any], name: str, incoming: int | None, plane: Any) -> Component:
    return Conv1d(
        name,
        _inferred(t, "in_channels", incoming),
        _required(t, "out_channels"),
        _required(t, "kernel_size"),
        t.get("groups", 1),
        t.get("bias", True),
    )


def _batchnorm1d(t: Mapping[str, Any], name: str, incoming: int | None, plane: Any) -> Component:
    return BatchNorm1d(name, _inferred(t, "num_features", incoming), t.get("affine", True))


def _batchnorm2d(
    t: Mapping[str, Any], name: str, incoming: int | None, plane: tuple[int, int] | None
) -> Component:
    channels = plane[0] if plane else None
    return BatchNorm2d(name, _inferred(t, "num_features", channels), t.get("affine", True))


def _conv2d(
    t: Mapping[str, Any], name: str, incoming: int | None, plane: tuple[int, int] | None
) -> Component:
    return Conv2d(
        name,
        _inferred(t, "in_channels", plane[0] if plane else None),
        _required(t, "out_channels"),
        _required(t, "kernel_size"),
        t.get("stride", 1),
        t.get("padding", 0),
        t.get("dilation", 1),
        t.get("groups", 1),
        t.get("bias", True),
        t.get("height", plane[1] if plane else None),
    )


def _attention(t: Mapping[str, Any], name: str, incoming: int | None, plane: Any) -> Component:
    return Attention(
        name,
        _required(t, "query_size"),
        _required(t, "key_size"),
        _required(t, "attn_size"),
        t.get("normalize", False),
    )


#: One builder per layer kind of :data:`KIND_KEYS`.
_BUILDERS: dict[str, _Builder] = {
    "embedding": _embedding,
    "linear": _linear,
    "layernorm": _layernorm,
    "dropout": _dropout,
    "conv1d": _conv1d,
    "batchnorm1d": _batchnorm1d,
    "batchnorm2d": _batchnorm2d,
    "conv2d": _conv2d,
    "attention": _attention,
}


def _component_from_table(
    table: Mapping[str, Any],
    name: str,
    kind: str,
    incoming: int | None,
    plane: tuple[int, int] | None = None,
) -> Component:
    table = {k: v for k, v in table.items() if k not in WIRING_KEYS}
    # a registered cell (an installed plugin's too: looked up only if the kind is no layer's)
    if kind in CELLS or kind in ALIASES or (kind not in KIND_KEYS and find_cell(kind) is not None):
        return _recurrent_from_table(table, name, kind, incoming)
    keys = KIND_KEYS.get(kind)
    if keys is None and kind in block_kinds():
        return _block_from_table(table, name, kind, incoming)
    if keys is None:
        raise ParamcalcError(
            f"unknown kind {kind!r}{plugin_note()}: expected one of "
            f"{', '.join([*recurrent_kinds(), *KIND_KEYS, *block_kinds()])}"
        )
    _no_unknown(set(table) - keys - {"name", "kind"}, keys)
    return _BUILDERS[kind](table, name, incoming, plane)


def block_kinds() -> list[str]:
    """The registered blocks (:mod:`paramcalc.core.blocks`), each a component kind."""
    from ..blocks import registered_blocks

    return [b.name for b in registered_blocks()]


def _block_from_table(table: Mapping[str, Any], name: str, kind: str, incoming: int | None) -> BlockStack:
    """A stack of a registered block: ``num_layers`` and the block's sizes (``d_model`` taken
    from the source when left out; the entry's defaults fill the rest)."""
    from ..blocks import get_block

    entry = get_block(kind)
    keys = {"num_layers", *entry.sizes}
    _no_unknown(set(table) - keys - {"name", "kind"}, keys)
    sizes = {k: v for k, v in table.items() if k in entry.sizes}
    if "d_model" in entry.sizes and "d_model" not in sizes and incoming is not None:
        sizes["d_model"] = incoming
    return BlockStack(
        name, block=entry.name, sizes=tuple(sizes.items()), num_layers=table.get("num_layers", 1)
    )


def _recurrent_from_table(table: Mapping[str, Any], name: str, kind: str, incoming: int | None) -> Recurrent:
    _no_unknown(set(table) - _RECURRENT_KEYS - {"name", "kind"}, _RECURRENT_KEYS)
    spec = RecurrentSpec(
        cell=with_nonlinearity(kind, table.get("nonlinearity")),
        input_size=_inferred(table, "input_size", incoming),
        hidden_size=_required(table, "hidden_size"),
        num_layers=table.get("num_layers", 1),
        bidirectional=table.get("bidirectional", False),
        bias=table.get("bias", True),
        proj_size=table.get("proj_size", 0),
        bias_vectors=table.get("bias_vectors"),
        peephole=table.get("peephole"),
        merge_mode=table.get("merge_mode", "concat"),
        reset_after=table.get("reset_after", True),
    )
    return Recurrent(name, spec)


def _no_unknown(unknown: set[str], known: set[str]) -> None:
    if unknown:
        raise ParamcalcError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(sorted(unknown))} "
            f"(known: name, kind, {', '.join(sorted(known))})"
        )


def architecture_from_dict(data: Mapping[str, Any], default_name: str = "architecture") -> Architecture:
    """Build an :class:`Architecture` from parsed TOML (or any mapping of the same shape)."""
    name, description, tables = _top_level(data)
    inputs = _inputs(data.get("input"))
    components: list[Component] = []
    wiring: dict[str, Wiring] = {}
    tracer = Tracer(inputs)
    for i, table in enumerate(tables):
        comp, w = _component_at(i, table, tracer)
        if w != Wiring():
            wiring[comp.name] = w
        tracer.add(comp, w)
        components.append(comp)
    return Architecture(name or default_name, tuple(components), description, inputs, wiring)


def _top_level(data: Any) -> tuple[str | None, str, list[dict[str, Any]]]:
    """The name, description and ``[[component]]`` tables of ``data``, its top-level keys checked."""
    if not isinstance(data, Mapping):
        raise ParamcalcError(f"an architecture is a mapping (parsed TOML), got {type(data).__name__}")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ParamcalcError(
            f"unknown top-level key{'s' if len(unknown) > 1 else ''} {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(TOP_KEYS))}; components go in [[component]] tables)"
        )
    name = _str(data, "name")
    description = _str(data, "description") or ""
    tables = data.get("component")
    if not tables:
        raise ParamcalcError("no components: add at least one [[component]] table")
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ParamcalcError("component must be an array of tables: write each as [[component]]")
    return name, description, tables


def _component_at(i: int, table: Mapping[str, Any], tracer: Tracer) -> tuple[Component, Wiring]:
    """The ``i``-th component table made into a component (every error names it) and its wiring."""
    kind_raw = table.get("kind")
    cname = table.get("name", f"{kind_raw or 'component'}_{i}")
    where = f"component {cname!r}" + (f" ({kind_raw})" if isinstance(kind_raw, str) else f" (#{i + 1})")
    try:
        if not isinstance(cname, str):
            raise ParamcalcError(f"name must be a string, got {cname!r}")
        if not isinstance(kind_raw, str):
            raise ParamcalcError(
                "missing kind" if kind_raw is None else f"kind must be a string, got {kind_raw!r}"
            )
        kind = kind_raw.strip().lower().replace("-", "_")
        w = _wiring(table)
        incoming, plane = tracer.incoming(cname, w)
        return _component_from_table(table, cname, kind, incoming, plane), w
    except ParamcalcError as exc:
        raise ParamcalcError(f"{where}: {exc}") from None


def _inputs(raw: Any) -> tuple[Input, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ParamcalcError("input must be an array of tables: write each as [[input]]")
    out = []
    seen: set[str] = set()
    for t in raw:
        unknown = set(t) - INPUT_KEYS
        if unknown:
            raise ParamcalcError(
                f"input: unknown {'key' if len(unknown) == 1 else 'keys'} {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(INPUT_KEYS))})"
            )
        name = t.get("name")
        if not isinstance(name, str):
            raise ParamcalcError(f"input: name must be a string, got {name!r}")
        if name in seen:
            raise ParamcalcError(f"input {name!r}: the name is used twice (two [[input]] tables)")
        seen.add(name)
        try:
            out.append(Input(name, t.get("size"), t.get("channels"), t.get("height")))
        except ParamcalcError as exc:
            raise ParamcalcError(f"input {name!r}: {exc}") from None
    return tuple(out)


def _wiring(table: Mapping[str, Any]) -> Wiring:
    src = table.get("from", ())
    if isinstance(src, str):
        src = (src,)
    if not isinstance(src, (list, tuple)) or not all(isinstance(x, str) for x in src):
        raise ParamcalcError(f"from must be a name or a list of names, got {src!r}")
    merge = table.get("merge", "concat")
    if not isinstance(merge, str):
        raise ParamcalcError(f"merge must be a string, got {merge!r}")
    return Wiring(tuple(src), merge, table.get("stack", 1))


def _toml_loads(text: str) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as exc:
        raise ParamcalcError(f"invalid TOML: {exc}") from None
    except RecursionError:
        raise ParamcalcError("invalid TOML: arrays or tables nested too deeply") from None


def load_architecture(path: str | Path) -> Architecture:
    """Read an architecture TOML file. Every error names the file (and the component)."""
    import os

    from ..files import read_text

    if not isinstance(path, (str, os.PathLike)):
        raise ParamcalcError(f"load_architecture needs a file path (str or Path), got {type(path).__name__}")
    p = Path(path)
    text = read_text(p, MAX_TOML_BYTES, "TOML file")
    try:
        return architecture_from_dict(_toml_loads(text), default_name=p.stem)
    except ParamcalcError as exc:
        raise ParamcalcError(f"{p}: {exc}") from None


#: Where the example architectures ship inside the package (``paramcalc report NAME``).
BUNDLED = ("data", "architectures")


def bundled_architectures() -> dict[str, Path]:
    """The example architectures installed with paramcalc, by name (the file's stem):
    ``mnist_rows_lstm`` (the seed's classifier), ``awd_lstm_lm``, ``deepspeech2``, ..."""
    from importlib.resources import files

    folder = files("paramcalc")
    for part in BUNDLED:
        folder = folder.joinpath(part)
    out = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".toml") and entry.is_file():
            out[entry.name[: -len(".toml")]] = Path(str(entry))
    return dict(sorted(out.items()))


def find_architecture(name_or_path: str | Path) -> tuple[Path, str]:
    """A TOML file to load: ``name_or_path`` if such a file exists, else the bundled example of
    that name (``mnist_rows_lstm``, also ``mnist-rows-lstm`` or ``mnist_rows_lstm.toml``).
    Returns the path and how to name it in a title."""
    import os

    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ParamcalcError(
            f"an architecture is a TOML file path or a bundled name, got {type(name_or_path).__name__}"
        )
    given = os.fspath(name_or_path)
    if os.path.lexists(given) or os.sep in given or (os.altsep and os.altsep in given):
        return Path(given), given
    key = given[: -len(".toml")] if given.lower().endswith(".toml") else given
    key = key.strip().lower().replace("-", "_")
    bundled = bundled_architectures()
    if key in bundled:
        return bundled[key], f"bundled {key}"
    raise ParamcalcError(
        f"{given}: no such file, nor a bundled architecture (bundled: {', '.join(bundled)}; "
        "BundledArchitectures() describes them)"
    )
