"""Read a Hugging Face ``config.json`` into a :class:`~paramcalc.core.blocks.LanguageModel`.

Offline, without weights and without ``transformers``: the file is read as JSON (a regular file
of at most :data:`MAX_BYTES`, so a FIFO or ``/dev/zero`` is one line, not a hang), its
``model_type`` picks the reader registered for it (:func:`~paramcalc.core.blocks.model_reader`),
and the reader assembles the model from the registry's blocks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...core.blocks import LanguageModel, model_reader
from ...core.files import read_text
from ...errors import ParamcalcError

#: Largest config.json read (published ones are a few kB).
MAX_BYTES = 1 << 20


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object of ``path`` (one line when it is missing, not JSON or not an object)."""
    text = read_text(path, MAX_BYTES, "config.json")
    try:
        data = json.loads(text)
    except RecursionError:
        raise ParamcalcError(f"{os.fspath(path)} is not a config.json: JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ParamcalcError(f"{os.fspath(path)} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise ParamcalcError(
            f"{os.fspath(path)}: a config.json holds a JSON object, got {type(data).__name__}"
        )
    return data


def model_from_config(config: Mapping[str, Any], source: str = "") -> LanguageModel:
    """The model a configuration describes (one line naming a missing or unsupported
    ``model_type``)."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ParamcalcError(f"{source or 'config'}: no model_type, so it is not a Hugging Face config.json")
    model = model_reader(model_type)(config)
    if source:
        from dataclasses import replace

        model = replace(model, source=source)
    return model


def read_hf_config(path: str | os.PathLike[str]) -> LanguageModel:
    """The model of the ``config.json`` at ``path``, named by its ``_name_or_path``, else by the
    file (``mamba-130m.json``: ``mamba-130m``; ``.../mamba-130m-hf/config.json``: the folder)."""
    config = load_config(path)
    model = model_from_config(config, os.fspath(path))
    if not config.get("_name_or_path"):
        from dataclasses import replace

        p = Path(os.fspath(path)).resolve()
        name = p.parent.name if p.stem == "config" and p.parent.name else p.stem
        model = replace(model, name=name)
    return model


def bundled_configs() -> dict[str, Path]:
    """The published configs installed with paramcalc (``data/hf``), by name (the file's stem):
    ``mamba-130m``, ``falcon-mamba-7b``, ``mamba-codestral-7b``, ``rwkv-4-169m``, ... (their
    published sizes are in ``data/hf/index.json``)."""
    from importlib.resources import files

    folder = files("paramcalc").joinpath("data").joinpath("hf")
    out = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".json") and entry.name != "index.json" and entry.is_file():
            out[entry.name[: -len(".json")]] = Path(str(entry))
    return dict(sorted(out.items()))


def find_config(name_or_path: str | os.PathLike[str]) -> Path:
    """``name_or_path`` if such a file exists, else the bundled config of that name
    (``mamba-130m``); one line naming the bundled ones otherwise."""
    if os.path.lexists(name_or_path):
        return Path(name_or_path)
    bundled = bundled_configs()
    key = os.fspath(name_or_path).removesuffix(".json")
    if key in bundled:
        return bundled[key]
    raise ParamcalcError(
        f"{os.fspath(name_or_path)}: no such file, and no bundled config of that name "
        f"(bundled: {', '.join(bundled)})"
    )


def read_published(name_or_path: str | os.PathLike[str]) -> LanguageModel:
    """The model of a config.json path, or of a bundled config named ``name_or_path``."""
    path = find_config(name_or_path)
    model = read_hf_config(path)
    if not os.path.lexists(name_or_path):
        from dataclasses import replace

        model = replace(model, name=path.stem, source=f"bundled {path.stem}")
    return model
