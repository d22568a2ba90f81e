"""The HDF5 side of the Keras reader: a weights file's datasets, names, shapes and dtypes.

What runs in the reader's child process (:data:`paramcalc.bridge.readers.keras_reader.ISOLATE_HDF5`):
``model.weights.h5`` read through a window onto the ``.keras`` archive (nothing extracted; a
compressed one inflated in memory up to :data:`MAX_INFLATE_BYTES`), or a legacy ``.h5`` file
with its ``model_config`` attribute; hard links only, training state counted but not listed.
The result is plain data (lists and dicts) for the parent to read back as JSON.
"""

from __future__ import annotations

import io
import os
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import StoredTensor, read_member, refuse, short_reason, zip_archive

#: ``config.json`` and ``model_config`` are refused beyond this size.
MAX_CONFIG_BYTES = 16 * 2**20
#: A compressed ``model.weights.h5`` is inflated in memory up to this size.
MAX_INFLATE_BYTES = 2**30
#: HDF5 objects visited at most, and the deepest group nesting followed.
MAX_OBJECTS = 1_000_000
MAX_DEPTH = 64
#: Chunks of a long list attribute (``weight_names0``, ``weight_names1``, ...) joined at most.
MAX_CHUNKS = 1024
#: Top-level groups of a weights file that hold training state, not parameters.
NON_PARAMETER_GROUPS = frozenset(
    {"optimizer", "optimizer_weights", "compile_metrics", "compile_loss", "metrics"}
)


# --- reading the zip archive without extracting it ----------------------------------------------


class _MemberView(io.RawIOBase):
    """A read-only, seekable window onto an uncompressed zip member (no copy, nothing extracted)."""

    def __init__(self, raw: io.BufferedReader, start: int, size: int) -> None:
        super().__init__()
        self._raw, self._start, self._size, self._pos = raw, start, size, 0
        #: Bytes h5py has read through the window (HDF5 metadata, not the weights).
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        if not n:
            return 0
        self._raw.seek(self._start + self._pos)
        got = self._raw.readinto(view[:n])
        got = got or 0
        self._pos += got
        self.bytes_read += got
        return got


def _weights_file(
    path: Path, raw: io.BufferedReader, zf: zipfile.ZipFile, info: zipfile.ZipInfo
) -> io.IOBase:
    """``model.weights.h5`` as a seekable file object: a window when stored, else inflated in memory."""
    if info.flag_bits & 0x1:
        raise refuse(path, f"zip member {info.filename!r} is encrypted")
    if info.compress_type != zipfile.ZIP_STORED:
        if info.file_size > MAX_INFLATE_BYTES:
            raise refuse(
                path,
                f"{info.filename} is compressed and {info.file_size:,} bytes inflated (limit "
                f"{MAX_INFLATE_BYTES:,}; Keras stores it uncompressed)",
            )
        return io.BytesIO(read_member(path, zf, info, MAX_INFLATE_BYTES))
    raw.seek(0, io.SEEK_END)
    size = raw.tell()
    raw.seek(info.header_offset)
    local = raw.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise refuse(path, f"zip member {info.filename!r} has a broken local header")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    if info.compress_size != info.file_size or start + info.file_size > size:
        raise refuse(
            path, f"zip member {info.filename!r} claims more bytes than the archive holds (truncated?)"
        )
    return _MemberView(raw, start, info.file_size)


# --- walking the HDF5 weights ---------------------------------------------------------------------


def _natural(name: str) -> list[Any]:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


@dataclass
class _Weights:
    tensors: list[StoredTensor] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    links: int = 0


def _walk_h5(
    h5py: Any, path: Path, group: Any, prefix: str, out: _Weights, seen: set[int], depth: int
) -> None:
    """Datasets under ``group`` (hard links only; soft and external links are not followed)."""
    if depth > MAX_DEPTH:
        raise refuse(path, f"HDF5 groups nest deeper than {MAX_DEPTH} levels")
    for name in sorted(group.keys(), key=_natural):
        full = f"{prefix}{name}"
        if depth == 0 and name in NON_PARAMETER_GROUPS:
            out.skipped[name] = _count_datasets(h5py, group[name])
            continue
        link = group.get(name, getlink=True)
        if not isinstance(link, h5py.HardLink):
            out.links += 1
            continue
        obj = group[name]
        try:
            addr: int | None = int(h5py.h5o.get_info(obj.id).addr)
        except Exception:  # pragma: no cover - HDF5 builds without object addresses
            addr = None
        if isinstance(obj, h5py.Group):
            if addr is not None:
                if addr in seen:
                    continue  # a group hard-linked into itself: visit once
                seen.add(addr)
            _walk_h5(h5py, path, obj, f"{full}/", out, seen, depth + 1)
        elif isinstance(obj, h5py.Dataset):
            if len(out.tensors) >= MAX_OBJECTS:
                raise refuse(path, f"more than {MAX_OBJECTS:,} HDF5 datasets")
            try:
                dtype = str(obj.dtype.name)
            except Exception:
                dtype = "unknown"
            shape = tuple(int(d) for d in (obj.shape or ()))
            out.tensors.append(StoredTensor(full, shape, dtype, ("hdf5", addr) if addr is not None else None))


def _count_datasets(h5py: Any, group: Any) -> int:
    n = 0

    def visit(_name: str, obj: Any) -> None:
        nonlocal n
        n += isinstance(obj, h5py.Dataset)

    if isinstance(group, h5py.Group):
        group.visititems(visit)
    return n


def _open_h5(h5py: Any, path: Path, target: Any, what: str) -> Any:
    try:
        return h5py.File(target, "r")
    except OSError as e:
        raise refuse(path, f"{what} is not a readable HDF5 file ({short_reason(e)})") from None


def _weights(h5py: Any, path: Path, h5: Any, root: str) -> _Weights:
    out = _Weights()
    group = h5[root] if root else h5
    _walk_h5(h5py, path, group, f"{root}/" if root else "", out, set(), 0)
    return out


def _text_attr(value: Any) -> Any:
    """An HDF5 string attribute as ``str`` (h5py gives ``str``, ``bytes`` or a numpy scalar)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value


def _model_config(path: Path, attrs: Any) -> str:
    """The ``model_config`` attribute, refused beyond :data:`MAX_CONFIG_BYTES`.

    A fixed-length string declares its size, checked before it is read; a variable-length one
    (h5py's default) only stores a 16-byte descriptor in the object header, so its text is
    measured once read (its bytes live in the file, so the file's size bounds the read).
    """
    try:
        declared = int(attrs.get_id("model_config").get_storage_size())
    except Exception:
        declared = 0
    if declared > MAX_CONFIG_BYTES:
        raise refuse(path, f"model_config is {declared:,} bytes (limit {MAX_CONFIG_BYTES:,})")
    raw = attrs["model_config"]
    value = _text_attr(raw)
    if not isinstance(value, str):
        raise refuse(path, "model_config is not a JSON string")
    size = len(raw) if isinstance(raw, bytes) else len(value.encode("utf-8", "replace"))
    if size > MAX_CONFIG_BYTES:
        raise refuse(path, f"model_config is {size:,} bytes (limit {MAX_CONFIG_BYTES:,})")
    return value


def _name_list(group: Any, name: str) -> list[str]:
    """A list-of-names attribute of a legacy Keras HDF5 group (empty if absent).

    Keras splits a long list over ``name0``, ``name1``, ... (its legacy format's
    ``load_attributes_from_hdf5_group``); the chunks are joined here the same way.
    """
    attrs = group.attrs
    keys = [name] if name in attrs else []
    if not keys:
        while f"{name}{len(keys)}" in attrs and len(keys) < MAX_CHUNKS:
            keys.append(f"{name}{len(keys)}")
    out: list[str] = []
    for key in keys:
        value = attrs[key]
        items = value.tolist() if hasattr(value, "tolist") else value
        for item in items if isinstance(items, list) else [items]:
            if len(out) >= MAX_OBJECTS:
                return out
            out.append(item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item))
    return out


def _in_weight_order(h5py: Any, group: Any, root: str, tensors: list[StoredTensor]) -> list[StoredTensor]:
    """Each layer's datasets in the order of its ``weight_names`` attribute, the order Keras
    writes and loads them in (``kernel``, ``recurrent_kernel``, ``bias``), not alphabetical."""
    rank: dict[str, int] = {}
    for layer in group.keys():
        if not isinstance(group.get(layer, getlink=True), h5py.HardLink):
            continue
        sub = group[layer]
        if isinstance(sub, h5py.Group):
            for i, wn in enumerate(_name_list(sub, "weight_names")):
                rank.setdefault(f"{root}/{layer}/{wn}", i)
    if not rank:
        return tensors

    def layer_of(t: StoredTensor) -> str:
        return t.name[len(root) + 1 :].partition("/")[0]

    first: dict[str, int] = {}
    for i, t in enumerate(tensors):
        first.setdefault(layer_of(t), i)
    order = sorted(
        range(len(tensors)),
        key=lambda i: (first[layer_of(tensors[i])], rank.get(tensors[i].name, len(rank)), i),
    )
    return [tensors[i] for i in order]


def _summary(h5py: Any, path: Path, h5: Any, legacy: bool) -> dict[str, Any]:
    """What an open HDF5 file holds, as plain data: weights, and for legacy files the config."""
    out: dict[str, Any] = {"model_config": None, "attrs": {}, "root": ""}
    if legacy:
        attrs = h5.attrs
        if "model_config" in attrs:
            out["model_config"] = _model_config(path, attrs)
            for key in ("keras_version", "backend"):
                if key in attrs:
                    out["attrs"][key] = str(_text_attr(attrs[key]))
        out["root"] = "model_weights" if "model_weights" in h5 else ""
    w = _weights(h5py, path, h5, out["root"])
    if out["root"]:
        w.tensors = _in_weight_order(h5py, h5[out["root"]], out["root"], w.tensors)
        if "optimizer_weights" in h5:
            w.skipped["optimizer_weights"] = _count_datasets(h5py, h5["optimizer_weights"])
    out["tensors"] = [[t.name, list(t.shape), t.dtype, t.key] for t in w.tensors]
    out["skipped"], out["links"] = w.skipped, w.links
    return out


def inspect_h5(path: Path, kind: str) -> dict[str, Any]:
    """The HDF5 part of a ``.keras`` archive (``kind="zip"``) or of a legacy ``.h5`` file."""
    import h5py

    if kind != "zip":
        with _open_h5(h5py, path, os.fspath(path), "the file") as h5:
            return _summary(h5py, path, h5, legacy=True)
    with open(path, "rb") as raw, zip_archive(path, raw) as (zf, members):
        info = members["model.weights.h5"]
        fileobj = _weights_file(path, raw, zf, info)
        with fileobj, _open_h5(h5py, path, fileobj, "model.weights.h5") as h5:
            out = _summary(h5py, path, h5, legacy=False)
        out["bytes_read"] = getattr(fileobj, "bytes_read", None)
        out["bytes_total"] = info.file_size
        return out
