"""Read a Keras model file: ``.keras`` archives (Keras 3) and legacy ``.h5`` files.

Nothing in the file is executed and Keras itself is not imported: the model config is plain
JSON, and the weights are HDF5 datasets whose shapes and dtypes are read with ``h5py`` (the
``keras`` extra) without reading their data. libhdf5 is not hardened against hostile files (a
corrupt attribute can crash it), so the HDF5 part is read in a child process: a crash or a hang
there is a one-line refusal, not the end of the caller (:data:`ISOLATE_HDF5`).

* ``.keras``: a zip archive with ``config.json``, ``metadata.json`` and ``model.weights.h5``.
  Member names are checked first (an absolute path or a ``..`` component refuses the archive),
  then the declared sizes (``config.json`` at most 16 MB, no member inflating more than 200-fold
  beyond 1 MB); only then is anything read, and never more than declared. Keras stores
  ``model.weights.h5`` uncompressed, so h5py reads it through a window onto the archive (only the
  HDF5 metadata it needs; nothing is extracted to disk); a compressed one is inflated in memory
  (at most 1 GiB). Weights live at ``layers/<snake_case(class)>[_n]/...`` in the order of the
  model's layers (Keras' ``saving_lib`` naming), e.g. ``layers/lstm/cell/vars/0`` (the kernel).
* legacy ``.h5``: the ``model_config`` attribute (JSON) and ``model_weights/<layer name>/...``.

Each LSTM, GRU, SimpleRNN (and ``RNN`` wrapping one of their cells) is one :class:`FoundLayer`
with ``num_layers=1`` (a stack of Keras layers is several layers); ``Bidirectional`` gives one
bidirectional layer with its ``merge_mode``; models nested in models are searched too. The spec
follows the Keras convention (one bias vector per gate block; two, stored ``(2, 3u)``, for
``GRU(reset_after=True)``); ``input_size`` comes from the stored kernel ``(d, G·u)``. Optimizer
state in the file is not listed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.architecture import Component, Custom, tensor_formula
from ...core.cells import cell_for, get_cell, keras_stack_class
from ...core.params import count
from ...core.spec import RecurrentSpec
from ...errors import ParamcalcError
from ...results.text import plural
from . import (
    HDF5_MAGIC,
    ZIP_MAGICS,
    FoundComponent,
    FoundLayer,
    StoredModel,
    StoredTensor,
    is_hdf5,
    missing_extra,
    one_line_errors,
    read_head,
    read_member,
    refuse,
    regular_file,
    short_reason,
    zip_archive,
)
from .keras_h5 import MAX_CONFIG_BYTES, MAX_DEPTH, inspect_h5

MAX_METADATA_BYTES = 2**20
MODEL_CLASSES = frozenset({"Sequential", "Functional", "Model"})
#: Keras 2's cuDNN layer classes -> the layer class of the same tensors.
CUDNN_LAYERS = {"CuDNNLSTM": "LSTM", "CuDNNGRU": "GRU"}


# --- the model config ------------------------------------------------------------------------------


def _snake(name: str) -> str:
    """Keras' ``naming.to_snake_case`` (the weights-file names of a model's layers)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _unique(name: str, used: dict[str, int]) -> str:
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def _layer_list(cfg: Any) -> list[dict[str, Any]] | None:
    """The layer configs of a model config (``None`` if it has no layer list)."""
    if isinstance(cfg, list):
        return [c for c in cfg if isinstance(c, dict)]
    if not isinstance(cfg, dict):
        return None
    conf = cfg.get("config")
    if isinstance(conf, list):
        return [c for c in conf if isinstance(c, dict)]
    if isinstance(conf, dict) and isinstance(conf.get("layers"), list):
        return [c for c in conf["layers"] if isinstance(c, dict)]
    return None


@dataclass(frozen=True)
class _Entry:
    """A layer of the config and where its weights are."""

    name: str
    cls: str
    cfg: dict[str, Any]
    #: ``.keras``: the layer's group; legacy ``.h5``: the top-level layer's group.
    group: str
    #: legacy ``.h5`` nested layers: the path segment that names the layer.
    segment: str | None = None


def _entries_keras3(
    layers: list[dict[str, Any]], group: str, prefix: str, out: list[_Entry], depth: int
) -> None:
    used: dict[str, int] = {}
    for cfg in layers:
        cls = str(cfg.get("class_name", ""))
        conf = _conf(cfg)
        path = f"{group}/{_unique(_snake(cls), used)}"
        name = f"{prefix}{conf.get('name', path.rsplit('/', 1)[-1])}"
        inner = _layer_list(cfg)
        if cls in MODEL_CLASSES and inner is not None and depth < MAX_DEPTH:
            _entries_keras3(inner, f"{path}/layers", f"{name}/", out, depth + 1)
        else:
            out.append(_Entry(name, cls, cfg, path))


def _entries_h5(
    layers: list[dict[str, Any]], top: str | None, prefix: str, out: list[_Entry], depth: int
) -> None:
    for cfg in layers:
        cls = str(cfg.get("class_name", ""))
        conf = _conf(cfg)
        own = str(conf.get("name", ""))
        inner = _layer_list(cfg)
        if cls in MODEL_CLASSES and inner is not None and depth < MAX_DEPTH:
            _entries_h5(inner, top or own, f"{prefix}{own}/", out, depth + 1)
        else:
            group = f"model_weights/{top or own}"
            out.append(_Entry(f"{prefix}{own}", cls, cfg, group, own if top else None))


@dataclass
class _Rnn:
    """A recurrent Keras layer's config, as paramcalc's cell and layout."""

    cls: str
    cell: str
    gates: int
    units: int
    bias_vectors: int
    reset_after: bool
    notes: list[str]

    def same(self, other: _Rnn) -> bool:
        return (self.cell, self.units, self.bias_vectors, self.reset_after) == (
            other.cell,
            other.units,
            other.bias_vectors,
            other.reset_after,
        )


def _conf(cfg: Any) -> dict[str, Any]:
    conf = cfg.get("config") if isinstance(cfg, dict) else None
    return conf if isinstance(conf, dict) else {}


def _activation(value: Any) -> str:
    if isinstance(value, dict):  # a serialized activation: {"class_name": ..., "config": ...}
        value = value.get("config", {}).get("name") if isinstance(value.get("config"), dict) else None
        value = value or "custom"
    return str(value)


def _describe(path: Path, name: str, cfg: dict[str, Any]) -> _Rnn | None:
    """The recurrent layer ``cfg`` describes, or ``None`` if it is not one paramcalc models."""
    cls = str(cfg.get("class_name", ""))
    conf = _conf(cfg)
    if cls == "RNN":
        cell = conf.get("cell")
        stack = keras_stack_class(str(cell.get("class_name"))) if isinstance(cell, dict) else None
        if stack is None:
            return None
        cls, conf = stack, _conf(cell)
    act = _activation(conf.get("activation", "tanh"))
    ct = cell_for("keras", CUDNN_LAYERS.get(cls, cls), act)
    if ct is None:
        return None
    cell_name, gates = ct.name, ct.gates
    units = conf.get("units")
    if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
        raise refuse(path, f"layer {name!r} ({cls}): units must be a positive integer, got {units!r}")
    notes: list[str] = []
    use_bias = conf.get("use_bias", True) is not False
    bias_vectors = 1 if use_bias else 0
    reset_after = True
    if cls.startswith("CuDNN"):
        bias_vectors = 2
        notes.append(f"{cls} keeps two bias vectors per gate block (cuDNN layout)")
    if ct.reset_after_option:
        reset_after = bool(conf.get("reset_after", cls == "CuDNNGRU"))
        if use_bias and reset_after:
            bias_vectors = 2
    if act != "tanh" and act != ct.nonlinearity:
        notes.append(f"activation={act!r} (the activation does not change the count)")
    return _Rnn(cls, cell_name, gates, units, bias_vectors, reset_after, notes)


def _build_input(cfg: dict[str, Any]) -> int | None:
    """The input features recorded in a layer's build config (fallback when no kernel is stored)."""
    conf = _conf(cfg)
    for shape in (
        (cfg.get("build_config") or {}).get("input_shape")
        if isinstance(cfg.get("build_config"), dict)
        else None,
        conf.get("batch_input_shape"),
        conf.get("batch_shape"),
    ):
        if isinstance(shape, list) and shape and isinstance(shape[-1], int) and shape[-1] > 0:
            return int(shape[-1])
    return None


# --- matching config layers to stored weights -------------------------------------------------------


def _segments(name: str) -> list[str]:
    return [s.split(":")[0] for s in name.split("/")]


@dataclass
class _Store:
    """The stored tensors, with lookups by the layout of ``.keras`` or legacy ``.h5`` files."""

    tensors: list[StoredTensor]
    legacy: bool

    def under(self, entry: _Entry) -> list[StoredTensor]:
        group = entry.group + "/"
        found = [t for t in self.tensors if t.name.startswith(group)]
        if self.legacy and entry.segment is not None:
            found = [t for t in found if entry.segment in _segments(t.name[len(group) :])]
        return found

    def side(self, entry: _Entry, side: str, side_name: str) -> list[StoredTensor]:
        """The tensors of one direction of a Bidirectional (``side``: ``forward``/``backward``).

        ``.keras`` files keep them under ``forward_layer``/``backward_layer``; legacy ``.h5``
        files under the inner layer's own name (``forward_lstm``, or any name for a custom
        backward layer).
        """
        found = self.under(entry)
        if not self.legacy:
            return [t for t in found if t.name.startswith(f"{entry.group}/{side}_layer/")]
        group = entry.group + "/"
        by_name = [t for t in found if side_name and side_name in _segments(t.name[len(group) :])]
        if by_name:
            return by_name
        return [t for t in found if any(s.startswith(side) for s in _segments(t.name[len(group) :]))]

    def kernel(self, entry: _Entry, side: str = "", side_name: str = "") -> StoredTensor | None:
        """The input kernel of a layer, or of one direction of a Bidirectional."""
        found = self.side(entry, side, side_name) if side else self.under(entry)
        if not self.legacy:
            cands = [t for t in found if "/cell/vars/" in t.name]
            return cands[0] if cands else None
        group = entry.group + "/"
        for t in found:
            if _segments(t.name[len(group) :])[-1] == "kernel":
                return t
        return None


def _name(cfg: dict[str, Any]) -> str:
    return str(_conf(cfg).get("name", ""))


def _input_size(store: _Store, entry: _Entry, rnn: _Rnn, side: str, cfg: dict[str, Any]) -> int | None:
    k = store.kernel(entry, side, _name(cfg))
    if k is not None and len(k.shape) == 2 and k.shape[1] == rnn.gates * rnn.units:
        return k.shape[0]
    return _build_input(cfg)


def _reset_from_bias(store: _Store, entry: _Entry, rnn: _Rnn) -> None:
    """A stored ``(2, 3u)`` GRU bias settles ``reset_after`` when an old config leaves it out."""
    if (
        not get_cell(rnn.cell).reset_after_option
        or "reset_after" in _conf(entry.cfg)
        or rnn.bias_vectors == 0
    ):
        return
    for t in store.under(entry):
        if t.shape == (2, 3 * rnn.units):
            rnn.reset_after, rnn.bias_vectors = True, 2
            return


def _spec(path: Path, name: str, rnn: _Rnn, d: int, bidirectional: bool, merge: str) -> RecurrentSpec:
    extra: dict[str, Any] = {"reset_after": rnn.reset_after} if get_cell(rnn.cell).reset_after_option else {}
    try:
        return RecurrentSpec(
            rnn.cell,
            d,
            rnn.units,
            bidirectional=bidirectional,
            convention="keras",
            bias_vectors=rnn.bias_vectors,
            merge_mode=merge if bidirectional else "concat",
            **extra,
        )
    except ParamcalcError as e:
        raise refuse(path, f"layer {name!r}: {e}") from None


def _checked(spec: RecurrentSpec, stored: list[StoredTensor], notes: list[str]) -> None:
    """Note when the stored shapes are not the ones the config implies."""
    rows = count(spec).rows
    expected = sorted(r.shape for r in rows)
    got = sorted(t.shape for t in stored)
    if not stored or expected == got:
        return
    if sum(t.numel for t in stored) == sum(r.numel for r in rows):
        notes.append(f"stored as {got} (the Keras layout is {expected}; the same count)")
    else:
        notes.append(f"stored shapes {got} differ from the config's {expected}")


@dataclass
class _Findings:
    """The layers a Keras config names, matched to the stored tensors."""

    layers: list[FoundLayer] = field(default_factory=list)
    components: list[FoundComponent] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)


def _found(path: Path, store: _Store, entries: list[_Entry]) -> _Findings:
    out = _Findings()
    for entry in entries:
        done = (
            _bidirectional(path, store, entry, out)
            if entry.cls == "Bidirectional"
            else _recurrent(path, store, entry, out)
        )
        if not done:
            _component(store, entry, out)
    return out


def _recurrent(path: Path, store: _Store, entry: _Entry, out: _Findings) -> bool:
    """A recurrent layer (or ``RNN`` of a cell); ``False`` if it is not one paramcalc models."""
    cfg, name = entry.cfg, entry.name
    one = _describe(path, name, cfg)
    if one is None:
        if any(k in entry.cls.upper() for k in ("LSTM", "GRU", "RNN")):
            out.unverified.append(
                f"layer {name!r} ({entry.cls}) is not a recurrent layer paramcalc models; "
                "its tensors are counted, not identified"
            )
        return False
    _reset_from_bias(store, entry, one)
    d = _input_size(store, entry, one, "", cfg)
    if d is None:
        out.unverified.append(f"layer {name!r} ({entry.cls}): input size unknown (no stored kernel)")
        return False
    spec = _spec(path, name, one, d, False, "concat")
    stored = store.under(entry)
    lnotes = [f"Keras {one.cls}" if entry.cls != "RNN" else f"Keras RNN({one.cls}Cell)", *one.notes]
    _layout_note(spec, lnotes)
    _checked(spec, stored, lnotes)
    out.layers.append(FoundLayer(name, spec, tuple(t.name for t in stored), "; ".join(lnotes)))
    return True


def _bidirectional(path: Path, store: _Store, entry: _Entry, out: _Findings) -> bool:
    """A ``Bidirectional`` layer: one layer, or one per direction when they differ."""
    name, conf = entry.name, _conf(entry.cfg)
    fwd_cfg = conf.get("layer")
    bwd_cfg = conf.get("backward_layer") or fwd_cfg
    if not isinstance(fwd_cfg, dict) or not isinstance(bwd_cfg, dict):
        out.unverified.append(f"layer {name!r} (Bidirectional) has no inner layer config; not identified")
        return False
    fwd, bwd = _describe(path, name, fwd_cfg), _describe(path, name, bwd_cfg)
    if fwd is None or bwd is None:
        inner = fwd_cfg.get("class_name") if fwd is None else bwd_cfg.get("class_name")
        out.unverified.append(f"layer {name!r}: Bidirectional({inner}) is not a layer paramcalc models")
        return False
    _reset_from_bias(store, entry, fwd)
    _reset_from_bias(store, entry, bwd)
    merge_raw = conf.get("merge_mode", "concat")
    merge = "concat" if merge_raw is None else str(merge_raw)
    if not fwd.same(bwd):
        return _two_directions(path, store, entry, (fwd, fwd_cfg), (bwd, bwd_cfg), merge_raw, out)
    d = _input_size(store, entry, fwd, "forward", fwd_cfg)
    if d is None:
        out.unverified.append(f"layer {name!r} (Bidirectional): input size unknown (no stored kernel)")
        return False
    spec = _spec(path, name, fwd, d, True, merge)
    lnotes = [f"Keras Bidirectional(merge_mode={merge_raw!r})", *fwd.notes]
    if merge_raw is None:
        lnotes.append("merge_mode=None returns both directions separately (counted as concat)")
    _layout_note(spec, lnotes)
    stored = store.under(entry)
    _checked(spec, stored, lnotes)
    out.layers.append(FoundLayer(name, spec, tuple(t.name for t in stored), "; ".join(lnotes)))
    return True


def _two_directions(
    path: Path,
    store: _Store,
    entry: _Entry,
    fwd: tuple[_Rnn, dict[str, Any]],
    bwd: tuple[_Rnn, dict[str, Any]],
    merge_raw: Any,
    out: _Findings,
) -> bool:
    """A ``Bidirectional`` with a different backward layer: one found layer per direction."""
    name = entry.name
    for side, (rnn, side_cfg) in (("forward", fwd), ("backward", bwd)):
        d = _input_size(store, entry, rnn, side, side_cfg)
        if d is None:
            out.unverified.append(f"layer {name!r} {side}: input size unknown (no stored kernel)")
            continue
        spec = _spec(path, name, rnn, d, False, "concat")
        part = store.side(entry, side, _name(side_cfg))
        lnotes = [
            f"Keras Bidirectional(merge_mode={merge_raw!r}) with a different backward layer: "
            f"its {side} direction",
            *rnn.notes,
        ]
        _layout_note(spec, lnotes)
        _checked(spec, part, lnotes)
        out.layers.append(
            FoundLayer(f"{name}/{side}_layer", spec, tuple(t.name for t in part), "; ".join(lnotes))
        )
    return True


def _positive(conf: dict[str, Any], key: str) -> int | None:
    value = conf.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _dense(entry: _Entry, stored: list[StoredTensor]) -> Component | None:
    """``Dense(units)``: ``kernel (in, units)`` and ``bias (units,)``; ``in`` from the build
    config, else from the stored kernel."""
    conf = _conf(entry.cfg)
    units = _positive(conf, "units")
    if units is None:
        return None
    d = _build_input(entry.cfg)
    if d is None:
        kernels = [t.shape[0] for t in stored if len(t.shape) == 2 and t.shape[1] == units]
        d = kernels[0] if kernels else None
    if d is None:
        return None
    items = [tensor_formula("kernel", (d, units), "in·units", f"{d}·{units}")]
    bias = conf.get("use_bias", True) is not False
    if bias:
        items.append(tensor_formula("bias", (units,), "units", f"{units}"))
    label = f"keras Dense({d}, {units}{'' if bias else ', use_bias=False'})"
    return Custom(entry.name, label, tuple(items))


def _embedding(entry: _Entry) -> Component | None:
    """``Embedding(input_dim, output_dim)``: ``embeddings (input_dim, output_dim)``."""
    conf = _conf(entry.cfg)
    v, e = _positive(conf, "input_dim"), _positive(conf, "output_dim")
    if v is None or e is None:
        return None
    return Custom(
        entry.name, f"keras Embedding({v}, {e})", (tensor_formula("embeddings", (v, e), "V·E", f"{v}·{e}"),)
    )


def _component(store: _Store, entry: _Entry, out: _Findings) -> None:
    """Any other layer with weights: its own row (a formula for ``Dense`` and ``Embedding``)."""
    stored = store.under(entry)
    if not stored:
        return
    comp = (
        _dense(entry, stored)
        if entry.cls == "Dense"
        else _embedding(entry)
        if entry.cls == "Embedding"
        else None
    )
    names = tuple(t.name for t in stored)
    out.components.append(FoundComponent(entry.name, entry.cls or "unknown", comp, names))


def _layout_note(spec: RecurrentSpec, notes: list[str]) -> None:
    if spec.cell_type.reset_after_option and spec.reset_after and spec.bias_vectors == 2:
        notes.append("GRU(reset_after=True): bias (2, 3u) holds an input and a recurrent bias")
    elif spec.cell_type.reset_after_option and not spec.reset_after:
        notes.append("GRU(reset_after=False): one bias vector per gate block")


# --- the two container formats ------------------------------------------------------------------------


def _parse_json(path: Path, data: bytes | str, what: str) -> Any:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text)
    except UnicodeDecodeError:
        raise refuse(path, f"{what} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise refuse(path, f"{what} is not valid JSON ({e.msg} at {e.pos})") from None
    except RecursionError:
        raise refuse(path, f"{what} nests too deeply") from None


# --- the HDF5 inspection, isolated in a child process --------------------------------------------------

#: libhdf5 is not hardened against hostile files: a corrupt attribute can crash the process. The
#: HDF5 part is therefore read in a child process, so a crash or a hang is a one-line refusal
#: instead of the end of the caller. The child runs isolated (``python -I``): neither the current
#: folder nor ``PYTHONPATH`` is on its import path, so a ``json.py`` where the user stands is never
#: imported; the folders holding paramcalc, h5py and numpy are appended after the standard library
#: and site-packages (:func:`_child_path`). ``False`` reads it in this process (debugging).
ISOLATE_HDF5 = True
HDF5_TIMEOUT_S = 300.0
_CHILD = (
    "import sys; sys.path.extend(p for p in sys.argv[1:-2] if p not in sys.path); "
    "from paramcalc.bridge.readers.keras_reader import _child_main; "
    "sys.exit(_child_main(sys.argv[-2:]))"
)


def _child_path() -> list[str]:
    """Absolute folders the child needs beyond its isolated default path (where h5py, numpy and
    paramcalc were imported from here), paramcalc's last: appended, they never shadow the
    standard library or site-packages."""
    import h5py
    import numpy

    package = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "__init__.py")
    out: list[str] = []
    for where in (getattr(h5py, "__file__", None), getattr(numpy, "__file__", None), package):
        if where:
            folder = os.path.dirname(os.path.dirname(os.path.normpath(os.path.abspath(where))))
            if folder not in out:
                out.append(folder)
    return out


def _child_main(argv: list[str]) -> int:
    """The child process: inspect, print one JSON object (``ok`` or a one-line ``error``)."""
    kind, path = argv
    try:
        result: dict[str, Any] = {"ok": inspect_h5(Path(path), kind)}
    except ParamcalcError as e:
        result = {"error": str(e)}
    except Exception as e:  # anything h5py raises on a malformed file
        result = {"error": str(refuse(path, f"{type(e).__name__}: {short_reason(e)}"))}
    sys.stdout.write(json.dumps(result))
    return 0


def _run_h5(path: Path, kind: str) -> dict[str, Any]:
    """:func:`~paramcalc.bridge.readers.keras_h5.inspect_h5` in a child process (see :data:`ISOLATE_HDF5`)."""
    if not ISOLATE_HDF5 or not sys.executable:
        return inspect_h5(path, kind)
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-c", _CHILD, *_child_path(), kind, os.fspath(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=HDF5_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise refuse(
            path, f"reading its HDF5 data took over {HDF5_TIMEOUT_S:g} s (a hostile file?)"
        ) from None
    except OSError as e:
        raise refuse(path, f"cannot start the HDF5 inspector ({short_reason(e)})") from None
    if proc.returncode < 0:
        raise refuse(
            path,
            f"the HDF5 library crashed on it (signal {-proc.returncode}): the file is corrupt or hostile",
        )
    try:
        message = json.loads(proc.stdout)
    except ValueError:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        raise refuse(path, f"the HDF5 inspector failed ({short_reason(ValueError(why))})") from None
    if "error" in message:
        raise ParamcalcError(str(message["error"]))
    result: dict[str, Any] = message["ok"]
    return result


def _tensors(found: dict[str, Any]) -> list[StoredTensor]:
    return [
        StoredTensor(str(n), tuple(int(d) for d in shape), str(dtype), tuple(key) if key else None)
        for n, shape, dtype, key in found["tensors"]
    ]


def _found_notes(found: dict[str, Any], notes: list[str]) -> None:
    for group, n in found["skipped"].items():
        notes.append(f"{group}: {plural(n, 'tensor')} of training state not listed")
    if found["links"]:
        notes.append(f"{plural(found['links'], 'soft or external HDF5 link')} not followed")


def _read_zip(path: Path) -> StoredModel:
    notes: list[str] = []
    unverified: list[str] = []
    with zip_archive(path) as (zf, members):
        if "config.json" not in members:
            raise refuse(path, "the archive has no config.json (not a Keras .keras file)")
        cfg = _parse_json(
            path, read_member(path, zf, members["config.json"], MAX_CONFIG_BYTES), "config.json"
        )
        if "metadata.json" in members:
            data = read_member(path, zf, members["metadata.json"], MAX_METADATA_BYTES)
            meta = _parse_json(path, data, "metadata.json")
            if isinstance(meta, dict) and meta.get("keras_version"):
                notes.append(f"saved by Keras {meta['keras_version']}")
    tensors: list[StoredTensor] = []
    if "model.weights.h5" in members:
        found = _run_h5(path, "zip")
        tensors = _tensors(found)
        _found_notes(found, notes)
        if found.get("bytes_read") is not None:
            notes.append(
                f"read {found['bytes_read']:,} of the {found['bytes_total']:,} bytes of model.weights.h5 "
                "(HDF5 metadata only)"
            )
        else:
            notes.append("model.weights.h5 is compressed in the archive: inflated in memory")
    elif "model.weights.npz" in members:
        unverified.append("weights are stored as model.weights.npz, which is not read; no tensors listed")
    else:
        unverified.append("the archive holds no model.weights.h5; no tensors listed")
    entries: list[_Entry] = []
    layer_cfgs = _layer_list(cfg)
    if layer_cfgs is None:
        unverified.append("config.json has no layer list (a subclassed model?); layers not identified")
    else:
        _entries_keras3(layer_cfgs, "layers", "", entries, 0)
    return _model(
        f"Keras file {path}", path, tensors, _Store(tensors, legacy=False), entries, notes, unverified
    )


def _model(
    source: str,
    path: Path,
    tensors: list[StoredTensor],
    store: _Store,
    entries: list[_Entry],
    notes: list[str],
    unverified: list[str],
) -> StoredModel:
    found = _found(path, store, entries)
    return StoredModel(
        source,
        "keras",
        tuple(tensors),
        tuple(found.layers),
        "keras",
        tuple(notes),
        components=tuple(found.components),
        unverified=(*unverified, *found.unverified),
        order=tuple(e.name for e in entries),
    )


def _read_legacy_h5(path: Path) -> StoredModel:
    notes: list[str] = []
    unverified: list[str] = []
    found = _run_h5(path, "h5")
    cfg = None if found["model_config"] is None else _parse_json(path, found["model_config"], "model_config")
    notes.extend(f"{k}: {v}" for k, v in found["attrs"].items())
    tensors = _tensors(found)
    _found_notes(found, notes)
    entries: list[_Entry] = []
    if cfg is None:
        unverified.append("weights only (no model_config): tensors listed, layers not identified")
    else:
        layer_cfgs = _layer_list(cfg)
        if layer_cfgs is None:
            unverified.append("model_config has no layer list (a subclassed model?); layers not identified")
        elif found["root"]:
            _entries_h5(layer_cfgs, None, "", entries, 0)
        else:
            unverified.append("no model_weights group: layers not identified")
    store = _Store(tensors, legacy=True)
    return _model(f"Keras HDF5 file {path}", path, tensors, store, entries, notes, unverified)


@one_line_errors
def read_keras(path: str | os.PathLike[str]) -> StoredModel:
    """Tensors and recurrent layers of a ``.keras`` archive or a legacy Keras ``.h5`` file."""
    p, size = regular_file(path)
    head = read_head(p, 8)
    is_zip = head[:4] in ZIP_MAGICS
    if not is_zip and not is_hdf5(p, size):
        shown = head[:8].hex(" ")
        raise refuse(
            p,
            f"neither a .keras zip archive (PK\\x03\\x04) nor an HDF5 file ({HDF5_MAGIC!r}): "
            f"wrong magic {shown}",
        )
    try:
        import h5py  # noqa: F401  (read in a child process; checked here for a clear message)
    except ImportError:
        raise missing_extra("Keras .keras/.h5", "h5py", "keras") from None
    return _read_zip(p) if is_zip else _read_legacy_h5(p)
