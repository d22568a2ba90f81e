"""PyTorch checkpoints (``torch.save`` files): the state dict's names and shapes, loaded safely.

The file is loaded with ``torch.load(..., weights_only=True, mmap=True)``: nothing in it is
executed (a pickle that would run code is refused), and with ``mmap`` no tensor data is read.
The pickled metadata itself is capped (:data:`MAX_PICKLE_BYTES`), and only regular files are
opened (a FIFO or a device would block or never end).
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...core.files import check_regular_file
from ...errors import ParamcalcError
from ...results.text import plural
from . import StoredModel, StoredTensor, one_line_errors, zip_members

#: Keys under which training scripts commonly nest the state dict in a checkpoint.
NEST_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "model_state", "weights")
#: Largest pickled object graph (``data.pkl`` in a zip checkpoint, or a legacy file) accepted.
MAX_PICKLE_BYTES = 256 * 2**20


def _pickle_size(p: Path) -> int:
    """Bytes of the pickled metadata: ``data.pkl`` of a zip checkpoint, else the whole file.

    A zip checkpoint's members are checked first, as the ``.keras`` reader checks its archive
    (:func:`~paramcalc.bridge.readers.zip_members`: unsafe names, duplicates, zip bombs)."""
    if zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as zf:
                members = zip_members(p, zf)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return 0  # torch.load reports the broken archive
        return max((i.file_size for n, i in members.items() if n.endswith("data.pkl")), default=0)
    return p.stat().st_size


def load_state_dict(path: str | Path) -> tuple[dict[str, Any], str]:
    """Load a state dict safely (``weights_only=True``): ``(tensors by name, where it was found)``.

    Refuses, with one line, a missing file, a file that is not a torch checkpoint, a truncated
    one, one whose pickle names anything but tensors and plain containers (it would run code;
    nothing is executed), and one that holds no state dict.
    """
    import torch

    p = check_regular_file(path, "checkpoint")
    if _pickle_size(p) > MAX_PICKLE_BYTES:
        raise ParamcalcError(
            f"{p}: refused: its pickled metadata is larger than {MAX_PICKLE_BYTES // 2**20} MiB "
            "(a state dict's names and shapes take far less)"
        )
    obj = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kw in ({"mmap": True}, {}):  # mmap: nothing is read until used; legacy files need {}
            try:
                obj = torch.load(p, map_location="cpu", weights_only=True, **kw)
                break
            except pickle_errors() as exc:
                raise ParamcalcError(f"{p}: refused: {_refusal(exc)}") from None
            except RuntimeError as exc:
                if kw and "mmap can only be used" in str(exc):
                    continue
                raise ParamcalcError(f"{p}: not a readable torch checkpoint: {_reason(exc)}") from None
            except Exception as exc:
                raise ParamcalcError(
                    f"{p}: not a readable torch checkpoint (truncated or another format): "
                    f"{type(exc).__name__}: {_first(exc)[:160]}"
                ) from None
    return _find_state_dict(obj, p)


def pickle_errors() -> tuple[type[BaseException], ...]:
    import pickle

    return (pickle.UnpicklingError,)


#: Where a state dict of a dynamically quantized model can be read: the model itself.
QUANTIZED_HINT = (
    "the packed weights of a quantized model, which a weights-only load cannot read; nothing in "
    "the file was executed. Inspect the model instead: paramcalc.analyze(model), or paramcalc "
    "inspect package.module:factory with a factory that quantizes it"
)
#: The end of every other refusal.
UNSAFE = (
    "which torch.load(weights_only=True) does not allow (loading it could run code); nothing in "
    "the file was executed"
)
#: Globals that torch itself pickles into a checkpoint and that are not a user's class.
_TORCH_INTERNAL = ("torch._utils.", "torch.storage.", "torch._tensor.", "collections.", "builtins.")


def _refusal(exc: BaseException) -> str:
    import re

    text = str(exc)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m:
        return _global_refusal(m.group(1))
    m = re.search(r"Unsupported operand (\d+)", text)
    if m:
        return f"its pickle uses opcode {m.group(1)}, {UNSAFE}"
    return f"its pickle holds objects other than tensors and plain containers, {UNSAFE}"


def _global_refusal(name: str) -> str:
    """Why a pickle naming ``name`` is refused, with the way out that works."""
    if name in ("torch.ScriptObject", "torch._C.ScriptObject") or ".quantized." in name:
        return f"its pickle names {name}: {QUANTIZED_HINT}"
    if name.startswith("torch.nn."):
        return f"its pickle names {name} (a whole module; save model.state_dict() instead), {UNSAFE}"
    if not name.startswith(_TORCH_INTERNAL) and name.rpartition(".")[2][:1].isupper():
        return (
            f"its pickle names {name} (an object of that class; if it is a whole model, save "
            f"model.state_dict() instead), {UNSAFE}"
        )
    return f"its pickle names {name}, {UNSAFE}"


def _reason(exc: BaseException) -> str:
    text = _first(exc)
    if "central directory" in text or "zip archive" in text:
        return "the zip archive is damaged or truncated"
    return text[:160]


def _is_state_dict(obj: Any) -> bool:
    import torch

    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and any(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _find_state_dict(obj: Any, p: Path) -> tuple[dict[str, Any], str]:
    import torch

    if _is_state_dict(obj):
        where = "top level"
    elif isinstance(obj, Mapping):
        for key in NEST_KEYS:
            if key in obj and _is_state_dict(obj[key]):
                obj, where = obj[key], f"nested under {key!r}"
                break
        else:
            keys = ", ".join(map(repr, list(obj)[:8])) or "none"
            raise ParamcalcError(
                f"{p}: not a state dict: a dict with keys {keys} and no tensors at the top level or "
                f"under {', '.join(NEST_KEYS)}"
            )
    else:
        raise ParamcalcError(f"{p}: not a state dict: it holds a {type(obj).__name__}, not a dict of tensors")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    return tensors, where


def _identity(t: Any) -> Any:
    """Equal for two names of one tied tensor (same storage, offset, shape and stride)."""
    try:
        ptr = t.untyped_storage().data_ptr()
    except Exception:  # pragma: no cover - exotic tensors
        ptr = 0
    if ptr == 0 or t.numel() == 0:
        return ("own", id(t))
    return (ptr, t.storage_offset(), tuple(t.shape), tuple(t.stride()))


def _first(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


@one_line_errors
def read_pickle(path: Path) -> StoredModel:
    """The tensors of a checkpoint's state dict as a :class:`StoredModel` (names, shapes, ties).

    Tensors saved from the meta device have no storage: their identity key is ``None`` (ties
    cannot be seen), and a note says so.
    """
    tensors, where = load_state_dict(path)
    stored = []
    meta = 0
    for name, t in tensors.items():
        is_meta = bool(getattr(t, "is_meta", False))
        meta += is_meta
        key = None if is_meta else _identity(t)
        stored.append(StoredTensor(name, tuple(t.shape), str(t.dtype).removeprefix("torch."), key))
    notes = [f"state dict {where}: {plural(len(tensors), 'tensor')}"]
    if meta:
        notes.append(
            f"{plural(meta, 'tensor')} {'was' if meta == 1 else 'were'} saved from the meta device: no "
            "storage survives, so tied weights "
            "cannot be seen"
        )
    return StoredModel(f"checkpoint {path}", "pytorch", tuple(stored), (), "torch", tuple(notes))
