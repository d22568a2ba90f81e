"""Read a safetensors file's header: tensor names, shapes, dtypes, tied tensors, ``__metadata__``.

No tensor data is read: the ``safetensors`` library validates the header and reports shapes and
dtypes (opened with the ``pread`` backend where the library has it, so nothing is memory-mapped),
and a bounded read of the header's own JSON gives each tensor's ``data_offsets`` (the library
does not expose them), which identify tied tensors. A 100 GB file is inspected in milliseconds
and constant memory. Before the library sees the file, the header length is checked against the
file size and a 100 MB ceiling, and the header must be a JSON object.

``safetensors.torch.save_model`` stores a shared tensor once and records each dropped name in
``__metadata__`` as ``{dropped: kept}``; those names are listed too, with the kept tensor's key,
so the names match the module's ``state_dict`` and :attr:`StoredModel.total` counts them once.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ...results.text import plural
from . import (
    StoredModel,
    StoredTensor,
    missing_extra,
    one_line_errors,
    refuse,
    regular_file,
    short_reason,
)

#: Largest header accepted (the safetensors library's own limit is 100 MB as well).
MAX_HEADER_BYTES = 100_000_000

#: safetensors dtype codes -> the names paramcalc reports.
DTYPES: dict[str, str] = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "U16": "uint16",
    "I16": "int16",
    "U32": "uint32",
    "I32": "int32",
    "U64": "uint64",
    "I64": "int64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",
    "F6_E2M3": "float6_e2m3fn",
    "F6_E3M2": "float6_e3m2fn",
    "F4": "float4_e2m1fn",
}

#: How many ``__metadata__`` entries a note shows.
MAX_SHOWN = 8


def _dtype(code: str) -> str:
    return DTYPES.get(code, code.lower())


def _offsets_key(entry: Any) -> tuple[str, int, int] | None:
    """``("safetensors", start, end)`` from a header entry; ``None`` for an empty span."""
    if not isinstance(entry, dict):
        return None
    offsets = entry.get("data_offsets")
    if (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        and offsets[1] > offsets[0]
    ):
        return ("safetensors", offsets[0], offsets[1])
    return None


def read_header(path: os.PathLike[str], size: int) -> dict[str, Any]:
    """The JSON header, after the length checks (read at most ``8 + MAX_HEADER_BYTES`` bytes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise refuse(
                    path,
                    f"truncated: {len(head)} bytes, a safetensors file starts with an 8-byte header length",
                )
            n = int.from_bytes(head, "little")
            if n > MAX_HEADER_BYTES:
                raise refuse(
                    path,
                    f"the header claims {n:,} bytes, over the {MAX_HEADER_BYTES:,}-byte limit "
                    "(not a safetensors file, or a hostile one)",
                )
            if 8 + n > size:
                raise refuse(
                    path,
                    f"the header claims {n:,} bytes but only {size - 8:,} follow the length "
                    "(truncated, or not a safetensors file)",
                )
            raw = f.read(n)
    except OSError as e:
        raise refuse(path, e.strerror or short_reason(e)) from None
    if len(raw) != n:
        raise refuse(path, "truncated while reading the header")
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise refuse(path, "the header is not UTF-8 text (not a safetensors file)") from None
    except json.JSONDecodeError as e:
        raise refuse(path, f"the header is not valid JSON ({e.msg} at byte {e.pos})") from None
    if not isinstance(header, dict):
        raise refuse(path, f"the header is JSON {type(header).__name__}, not an object")
    return header


def _open(path: os.PathLike[str]) -> Any:
    from safetensors import safe_open

    try:  # pread: no memory map of the (possibly huge) data section
        return safe_open(os.fspath(path), framework="numpy", backend="pread")
    except TypeError:  # an older library without backends
        return safe_open(os.fspath(path), framework="numpy")


@one_line_errors
def read_safetensors(path: str | os.PathLike[str]) -> StoredModel:
    """Names, shapes, dtypes and tied tensors of a safetensors file (header only)."""
    p, size = regular_file(path)
    try:
        import safetensors
    except ImportError:
        raise missing_extra(".safetensors", "safetensors", "safetensors") from None
    header = read_header(p, size)
    names, metadata, specs = _tensor_specs(p, safetensors.SafetensorError)
    tensors = [StoredTensor(n, *specs[n], key=_offsets_key(header.get(n))) for n in names]
    aliases = _aliases(tensors, metadata)
    notes = _metadata_notes(aliases, metadata)
    ties = len([t for t in tensors if t.key is not None]) - len({t.key for t in tensors if t.key is not None})
    if ties > len(aliases):
        notes.append("some tensors share data offsets: tied tensors are counted once")
    return StoredModel(
        source=f"safetensors file {p}",
        format="safetensors",
        tensors=tuple(tensors),
        layers=(),
        convention="torch",
        notes=tuple(notes),
    )


def _tensor_specs(
    p: os.PathLike[str], library_error: type[Exception]
) -> tuple[list[str], dict[str, str], dict[str, tuple[tuple[int, ...], str]]]:
    """The tensors' names (in file order where the library says it), the ``__metadata__``, and
    each tensor's shape and dtype, by the safetensors library."""
    try:
        with _open(p) as f:
            names = list(f.offset_keys()) if hasattr(f, "offset_keys") else sorted(f.keys())
            metadata = dict(f.metadata() or {})
            specs = {}
            for name in names:
                sl = f.get_slice(name)
                specs[name] = (tuple(int(d) for d in sl.get_shape()), _dtype(str(sl.get_dtype())))
    except library_error as e:
        raise refuse(p, f"not a valid safetensors file ({short_reason(e)})") from None
    except OSError as e:
        raise refuse(p, e.strerror or short_reason(e)) from None
    return names, metadata, specs


def _aliases(tensors: list[StoredTensor], metadata: dict[str, str]) -> list[tuple[str, str]]:
    """Names ``save_model`` dropped for a tied tensor (``__metadata__``: dropped -> kept),
    appended to ``tensors`` with the kept tensor's key."""
    by_name = {t.name: t for t in tensors}
    aliases = [(k, v) for k, v in metadata.items() if k not in by_name and v in by_name]
    for dropped, kept in aliases:
        t = by_name[kept]
        tensors.append(StoredTensor(dropped, t.shape, t.dtype, t.key))
    return aliases


def _metadata_notes(aliases: list[tuple[str, str]], metadata: dict[str, str]) -> list[str]:
    notes: list[str] = []
    if aliases:
        shown = ", ".join(f"{a} -> {b}" for a, b in aliases[:MAX_SHOWN])
        more = f" and {len(aliases) - MAX_SHOWN} more" if len(aliases) > MAX_SHOWN else ""
        notes.append(
            f"{plural(len(aliases), 'shared tensor name')} recorded in __metadata__ (safetensors "
            "save_model stores "
            f"one copy): {shown}{more}; listed with the kept tensor's key"
        )
    alias_set = set(aliases)
    plain = {k: v for k, v in metadata.items() if (k, v) not in alias_set}
    if plain:
        items = [f"{k}={v}" for k, v in list(plain.items())[:MAX_SHOWN]]
        more = f", ... ({len(plain)} entries)" if len(plain) > MAX_SHOWN else ""
        text = ", ".join(items)
        if len(text) > 300:
            text = text[:297] + "..."
        notes.append(f"__metadata__: {text}{more}")
    return notes
