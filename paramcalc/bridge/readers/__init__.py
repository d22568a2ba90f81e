"""Read stored models (safetensors, ONNX, Keras, PyTorch checkpoints) into one neutral structure.

:func:`read_model` picks a reader by the file's content (its magic bytes) first and its suffix
second, and returns a :class:`StoredModel`: every stored tensor (name, shape, dtype and an
identity key for tied tensors) and the recurrent layers the file's own metadata describes
(ONNX node attributes, the Keras model config), each as a :class:`RecurrentSpec`.

The readers are inspectors, not loaders: they read headers and metadata, never tensor data they
do not need, never execute anything stored in the file, and never extract to disk. Every broken
or hostile file (truncated, wrong magic, a header that claims more than the file holds, a zip
with ``..`` members or inflated size claims, a FIFO or device) is one
:class:`~paramcalc.errors.ParamcalcError` line. A missing optional library is one line naming
the extra to install (``pip install 'paramcalc[onnx]'``).

Formats and readers:

* ``safetensors`` -> :func:`paramcalc.bridge.readers.safetensors_reader.read_safetensors`
* ``onnx`` -> :func:`paramcalc.bridge.readers.onnx_reader.read_onnx`
* ``keras`` (``.keras`` zip archives and legacy ``.h5``) ->
  :func:`paramcalc.bridge.readers.keras_reader.read_keras` (its HDF5 side, run in a child
  process, is :mod:`paramcalc.bridge.readers.keras_h5`)
* ``pytorch`` (``.pt``, ``.pth``, ``.bin``, ``.ckpt``; zip archives holding ``data.pkl``; raw
  pickles): dispatched to ``read_pickle(path: pathlib.Path) -> StoredModel`` imported lazily
  from ``paramcalc.bridge.readers.pickle_reader`` (a separate module, not part of this package
  yet). Until it exists, such files are refused with one line.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import IO, TypeVar

from ...core.architecture import Component
from ...core.spec import RecurrentSpec
from ...errors import ParamcalcError

__all__ = [
    "FORMATS",
    "BadShape",
    "FoundComponent",
    "FoundLayer",
    "Part",
    "StoredModel",
    "StoredTensor",
    "detect_format",
    "model_path",
    "read_model",
]

#: The formats :func:`read_model` knows.
FORMATS = ("safetensors", "onnx", "keras", "pytorch")

#: Suffixes used when the content does not say what a file is.
SUFFIXES: dict[str, str] = {
    ".safetensors": "safetensors",
    ".onnx": "onnx",
    ".keras": "keras",
    ".h5": "keras",
    ".hdf5": "keras",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".bin": "pytorch",
    ".ckpt": "pytorch",
}

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Offsets where HDF5 looks for its signature (a user block shifts it by a power of two >= 512).
HDF5_OFFSETS = (0, 512, 1024, 2048)
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
#: Longest library message kept in an error line.
MAX_REASON = 240
#: Most elements one stored tensor may claim (2**50, about 10**15: 4 PB of float32). A header or
#: graph claiming more, or a negative dimension, is a hostile or broken file, not a model.
MAX_TENSOR_ELEMENTS = 2**50
MAX_TENSOR_DIMS = 64


class BadShape(ParamcalcError):
    """A stored tensor claims an impossible shape (the reader adds the file's name)."""


@dataclass(frozen=True)
class StoredTensor:
    """One tensor as the file stores it (shape and dtype only; its data is never read)."""

    #: As stored: safetensors key, ONNX initializer name, HDF5 dataset path of a Keras weight.
    name: str
    shape: tuple[int, ...]
    #: e.g. ``float32``, ``bfloat16``, ``int8``.
    dtype: str
    #: Identity: equal keys are one tied tensor (safetensors data offsets, ONNX external data
    #: location, HDF5 object address); ``None`` if unknown.
    key: object = None
    #: Why the tensor is stored but is not a parameter (an ONNX graph constant, a recurrent
    #: node's initial state); empty for a parameter.
    not_parameter: str = ""

    def __post_init__(self) -> None:
        shape = self.shape
        if len(shape) > MAX_TENSOR_DIMS:
            raise BadShape(f"tensor {self.name!r} claims {len(shape)} dimensions (limit {MAX_TENSOR_DIMS})")
        n = 1
        for d in shape:
            if d < 0:
                raise BadShape(f"tensor {self.name!r} has a negative dimension: shape {list(shape)}")
            n *= d
            if n > MAX_TENSOR_ELEMENTS:
                raise BadShape(
                    f"tensor {self.name!r} claims shape {list(shape)}, over {MAX_TENSOR_ELEMENTS:,} "
                    "elements (not a real tensor)"
                )

    @property
    def numel(self) -> int:
        return prod(self.shape)


@dataclass(frozen=True)
class Part:
    """The stored tensors that hold one analytic tensor of a layer."""

    names: tuple[str, ...]
    #: The graph operations that build the layer's input from them (ONNX ``Slice``, ``Concat``,
    #: ...); empty: the layer takes the stored tensor as it is (its shape is checked).
    via: tuple[str, ...] = ()


@dataclass(frozen=True)
class FoundLayer:
    """A recurrent layer identified from the file's own metadata."""

    #: Module, layer or node name.
    path: str
    spec: RecurrentSpec
    #: Names of the :class:`StoredTensor` entries that belong to this layer.
    tensors: tuple[str, ...]
    note: str = ""
    #: Where the graph builds the layer's inputs from other stored tensors: one :class:`Part` per
    #: analytic tensor of the file's layout, in its order. Empty: ``tensors`` are the layer's
    #: inputs themselves, position by position.
    parts: tuple[Part, ...] = ()


@dataclass(frozen=True)
class FoundComponent:
    """A non-recurrent layer named by the file's metadata (a Keras ``Dense``, ``Embedding``)."""

    path: str
    #: The framework's class name, e.g. ``Dense``.
    type_name: str
    #: Its analytic tensors, in the stored order; ``None``: counted, no formula.
    component: Component | None
    tensors: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class StoredModel:
    """What a stored model file holds: its tensors and the recurrent layers its metadata names."""

    #: e.g. ``"safetensors file x.safetensors"``.
    source: str
    #: ``safetensors``, ``onnx``, ``keras`` or ``pytorch``.
    format: str
    tensors: tuple[StoredTensor, ...]
    #: Recurrent layers identified from metadata (empty for safetensors: names and shapes only).
    layers: tuple[FoundLayer, ...]
    #: Whose tensor names and layouts the file uses: ``torch``, ``keras`` or ``onnx``.
    convention: str
    notes: tuple[str, ...] = ()
    #: Non-recurrent layers the metadata names (Keras files), each with its own tensors.
    components: tuple[FoundComponent, ...] = ()
    #: What the reader could not verify, one sentence each (a recurrent node whose weights are
    #: computed at run time, a recurrent module exported as elementary operators, ...).
    unverified: tuple[str, ...] = ()
    #: Layer paths in the model's own order (Keras: the config's), for reports; may be empty.
    order: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        """Elements of the stored parameters, each tied tensor (equal ``key``) counted once."""
        seen: set[object] = set()
        total = 0
        for t in self.tensors:
            if t.not_parameter:
                continue
            if t.key is not None:
                if t.key in seen:
                    continue
                seen.add(t.key)
            total += t.numel
        return total

    def tensor(self, name: str) -> StoredTensor:
        """The stored tensor called ``name`` (one-line error if there is none)."""
        for t in self.tensors:
            if t.name == name:
                return t
        raise ParamcalcError(f"{self.source} has no tensor named {name!r}")

    def layer_tensors(self, layer: FoundLayer) -> tuple[StoredTensor, ...]:
        """The stored tensors of one found layer, in the layer's order."""
        by_name = {t.name: t for t in self.tensors}
        return tuple(by_name[n] for n in layer.tensors if n in by_name)


# --- shared helpers for the readers -------------------------------------------------------------


def refuse(path: str | os.PathLike[str], reason: str) -> ParamcalcError:
    """The one-line error for an unreadable file."""
    return ParamcalcError(f"cannot read {os.fspath(path)}: {reason}")


def short_reason(exc: BaseException) -> str:
    """A library exception as a short one-line reason."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > MAX_REASON:
        text = text[: MAX_REASON - 3] + "..."
    return text


def missing_extra(what: str, library: str, extra: str) -> ParamcalcError:
    """The one-line error for an optional library that is not installed."""
    return ParamcalcError(f"reading {what} files needs {library}: pip install 'paramcalc[{extra}]'")


def regular_file(path: str | os.PathLike[str]) -> tuple[Path, int]:
    """``(path, size)`` of a readable regular file; refuses FIFOs, devices, directories up front.

    Uses ``os.stat`` (which follows symlinks and never blocks) before anything opens the path,
    so a FIFO or ``/dev/zero`` is refused instead of blocking or reading forever.
    """
    from ...core.files import check_regular_file

    p = check_regular_file(path, "model file")
    st = os.stat(p)
    if st.st_size == 0:
        raise refuse(p, "the file is empty")
    return p, st.st_size


def read_head(path: Path, n: int, offset: int = 0) -> bytes:
    """At most ``n`` bytes at ``offset`` of a regular file (one-line error on an OS failure)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(n)
    except OSError as e:
        raise refuse(path, e.strerror or short_reason(e)) from None


def is_hdf5(path: Path, size: int) -> bool:
    return any(off + 8 <= size and read_head(path, 8, off) == HDF5_MAGIC for off in HDF5_OFFSETS)


# --- zip archives (``.keras`` files and PyTorch checkpoints) -----------------------------------

#: A member inflating more than this ratio (and beyond ``BOMB_FLOOR`` bytes) is a zip bomb.
MAX_RATIO = 200
BOMB_FLOOR = 2**20
MAX_MEMBERS = 100_000


def unsafe_member_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return (
        name.startswith(("/", "\\"))
        or "\x00" in name
        or bool(re.match(r"^[A-Za-z]:", name))
        or any(part == ".." for part in parts)
    )


def zip_members(path: Path, zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """A zip archive's members by name, checked before any is read: their count, no absolute
    path or ``..`` component, no name twice, no member inflating like a zip bomb (the Keras
    ``.keras`` reader and the PyTorch checkpoint reader share it)."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise refuse(path, f"the archive has {len(infos):,} members (limit {MAX_MEMBERS:,})")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        name = info.filename
        if unsafe_member_name(name) or unsafe_member_name(info.orig_filename):
            raise refuse(
                path, f"zip member {name!r} has an unsafe path (absolute or '..'); refusing the archive"
            )
        if name in members:
            raise refuse(path, f"zip member {name!r} appears twice; refusing the archive")
        if (
            info.compress_type != zipfile.ZIP_STORED
            and info.file_size > BOMB_FLOOR
            and info.file_size > MAX_RATIO * max(info.compress_size, 1)
        ):
            raise refuse(
                path,
                f"zip member {name!r} claims {info.file_size:,} bytes from {info.compress_size:,} compressed "
                "(a zip bomb?); refusing the archive",
            )
        members[name] = info
    return members


@contextlib.contextmanager
def zip_archive(
    path: Path, fileobj: IO[bytes] | None = None
) -> Iterator[tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]]:
    """The archive at ``path`` (read from ``fileobj`` if given) and its members, checked by
    :func:`zip_members` before any is read; a file that is not a zip archive is one line."""
    try:
        zf = zipfile.ZipFile(fileobj if fileobj is not None else path)
    except (zipfile.BadZipFile, EOFError, ValueError) as e:
        raise refuse(path, f"not a valid zip archive ({short_reason(e)})") from None
    with zf:
        yield zf, zip_members(path, zf)


def read_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """A small member's bytes: its declared size is checked first, and no more than that is read."""
    if info.flag_bits & 0x1:
        raise refuse(path, f"zip member {info.filename!r} is encrypted")
    if info.file_size > cap:
        raise refuse(path, f"{info.filename} is {info.file_size:,} bytes uncompressed (limit {cap:,})")
    with zf.open(info) as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise refuse(path, f"{info.filename} inflates beyond {cap:,} bytes")
    return data


F = TypeVar("F", bound=Callable[..., "StoredModel"])


def one_line_errors(func: F) -> F:
    """Turn anything a hostile file makes a library raise into one ParamcalcError line."""

    @functools.wraps(func)
    def wrapper(path: str | os.PathLike[str], *args: object, **kwargs: object) -> StoredModel:
        try:
            return func(path, *args, **kwargs)
        except BadShape as e:
            raise refuse(path, str(e)) from None
        except ParamcalcError:
            raise
        except RecursionError:
            raise refuse(path, "the file nests too deeply to inspect") from None
        except MemoryError:
            raise refuse(path, "the file needs more memory to inspect than is available") from None
        except Exception as e:  # a library choking on a malformed file: one line, no traceback
            raise refuse(path, f"{type(e).__name__}: {short_reason(e)}") from None

    return wrapper  # type: ignore[return-value]


# --- format detection and dispatch ---------------------------------------------------------------


def _zip_kind(path: Path) -> str | None:
    """``keras`` or ``pytorch`` from a zip archive's member names (its central directory only)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None  # the suffix decides; that reader reports the broken archive
    if "config.json" in names or "model.weights.h5" in names:
        return "keras"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "pytorch"
    return None


#: Tags of the ModelProto fields writers put right after ``ir_version``.
_ONNX_NEXT_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72})


def _looks_onnx(head: bytes) -> bool:
    """A serialized ModelProto: ``ir_version`` (field 1, a small varint), then another field."""
    return len(head) >= 3 and head[0] == 0x08 and 0 < head[1] < 0x80 and head[2] in _ONNX_NEXT_TAGS


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of a model file: content magic first, suffix second (one-line error if neither)."""
    p, size = regular_file(path)
    head = read_head(p, 16)
    suffix = p.suffix.lower()
    if len(head) >= 9 and head[8:9] == b"{":
        # an 8-byte little-endian header length, then the JSON header
        if 8 + int.from_bytes(head[:8], "little") <= size or suffix == ".safetensors":
            return "safetensors"
    if head[:4] in ZIP_MAGICS:
        kind = _zip_kind(p)
        if kind:
            return kind
    elif is_hdf5(p, size):
        return "keras"
    elif head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pytorch"  # a pickle (legacy torch.save)
    elif _looks_onnx(head):
        return "onnx"
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    if head[:4] in ZIP_MAGICS:
        raise refuse(p, "a zip archive that is neither a Keras .keras file nor a PyTorch checkpoint")
    raise refuse(
        p,
        "unrecognised format (expected safetensors, ONNX, Keras .keras/.h5 or a PyTorch checkpoint "
        ".pt/.pth/.bin/.ckpt)",
    )


def _read_pytorch(path: Path) -> StoredModel:
    """The hook for PyTorch checkpoints: ``pickle_reader.read_pickle`` (imported lazily)."""
    module = f"{__name__}.pickle_reader"
    try:
        from .pickle_reader import read_pickle
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise refuse(
            path, f"reading PyTorch checkpoints is not available yet ({module} is not installed)"
        ) from None
    result: StoredModel = read_pickle(path)
    return result


def model_path(path: object, what: str = "read_model") -> Path:
    """``path`` as a :class:`~pathlib.Path`; a wrong type (``None``, a number, bytes) is one line."""
    if isinstance(path, (str, os.PathLike)):
        fs = os.fspath(path)
        if isinstance(fs, str):
            if not fs:
                raise ParamcalcError(f"{what} needs a file path, got an empty string")
            return Path(fs)
    raise ParamcalcError(f"{what} needs a file path (str or pathlib.Path), got {type(path).__name__}")


def read_model(path: str | os.PathLike[str]) -> StoredModel:
    """Inspect a stored model file: its tensors and its recurrent layers (see the module docs)."""
    p = model_path(path)
    fmt = detect_format(p)
    if fmt == "safetensors":
        from .safetensors_reader import read_safetensors

        return read_safetensors(p)
    if fmt == "onnx":
        from .onnx_reader import read_onnx

        return read_onnx(p)
    if fmt == "keras":
        from .keras_reader import read_keras

        return read_keras(p)
    return _read_pytorch(p)
