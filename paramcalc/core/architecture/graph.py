"""The wiring of an architecture and the flow of features through it.

By default each component takes the previous one's output; a component may name its sources
(named inputs or earlier components) and how they merge (``concat``, ``sum``), and stack
consecutive frames (pyramidal and time-reduction layers). :func:`trace` follows the features
through the components, one line per mistake; :class:`Architecture` is the checked whole, its
tied weights included.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import ParamcalcError
from ..spec import RecurrentSpec, check_size
from .components import NAME_RE, Attention, BatchNorm2d, Component, Conv2d, Embedding, Linear, Recurrent

MERGES = ("concat", "sum")


@dataclass(frozen=True)
class Input:
    """A named input of the model: ``size`` features per frame, or a ``(channels, height)`` plane."""

    name: str
    size: int | None = None
    channels: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ParamcalcError(f"input {self.name!r}: a name must be a Python identifier")
        for key in ("size", "channels", "height"):
            if getattr(self, key) is not None:
                object.__setattr__(self, key, check_size(key, getattr(self, key)))
        if (self.channels is None) != (self.height is None):
            raise ParamcalcError(f"input {self.name!r}: give channels and height together (a 2-D input)")
        if self.channels is not None and self.height is not None:
            plane = self.channels * self.height
            if self.size is not None and self.size != plane:
                raise ParamcalcError(
                    f"input {self.name!r}: size {self.size} is not channels·height = {plane}"
                )
            object.__setattr__(self, "size", plane)
        if self.size is None:
            raise ParamcalcError(f"input {self.name!r}: give its size (features per frame)")

    @property
    def plane(self) -> tuple[int, int] | None:
        return None if self.channels is None or self.height is None else (self.channels, self.height)


@dataclass(frozen=True)
class Wiring:
    """Where a component's input comes from: sources (inputs or earlier components), how several
    are merged (``concat``: features add up; ``sum``: equal sizes, kept), and how many consecutive
    frames are stacked into one first (pyramidal/time-reduction layers: the features multiply)."""

    sources: tuple[str, ...] = ()
    merge: str = "concat"
    stack: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        if self.merge not in MERGES:
            raise ParamcalcError(f"merge must be one of {', '.join(MERGES)}, got {self.merge!r}")
        object.__setattr__(self, "stack", check_size("stack", self.stack, maximum=1024))


@dataclass(frozen=True)
class Flow:
    """What a component receives and hands on (features per frame; a plane for 2-D layers)."""

    sources: tuple[str, ...]
    incoming: int | None
    plane_in: tuple[int, int] | None
    outgoing: int | None
    plane_out: tuple[int, int] | None


def _default_source(last: str | None, inputs: Mapping[str, Input]) -> tuple[str, ...]:
    if last is not None:
        return (last,)
    if len(inputs) == 1:
        return (next(iter(inputs)),)
    return ()


def _merged(
    name: str, wiring: Wiring, sources: tuple[str, ...], known: Mapping[str, tuple[int | None, Any]]
) -> tuple[int | None, tuple[int, int] | None]:
    sizes = [known[src][0] for src in sources]
    planes = [known[src][1] for src in sources]
    if not sources:
        return None, None
    if len(sources) == 1:
        size, plane = sizes[0], planes[0]
    elif wiring.merge == "concat":
        size = None if any(x is None for x in sizes) else sum(x for x in sizes if x is not None)
        plane = None
    else:
        known_sizes = {x for x in sizes if x is not None}
        if len(known_sizes) > 1:
            shown = ", ".join(f"{src} {x}" for src, x in zip(sources, sizes, strict=True))
            raise ParamcalcError(f"merge = 'sum' needs equal sizes, got {shown}")
        size, plane = (known_sizes.pop() if known_sizes and None not in sizes else None), None
    if wiring.stack > 1:
        size = None if size is None else size * wiring.stack
        plane = None
    return size, plane


class Tracer:
    """The flow of features, one component after the other (linear in components).

    :func:`trace` runs it over a whole architecture; :func:`architecture_from_dict` asks it for
    the input of each component before making it (sizes left out are inferred from it).
    """

    def __init__(self, inputs: tuple[Input, ...], names: Collection[str] = ()) -> None:
        self.inputs = {i.name: i for i in inputs}
        self.known: dict[str, tuple[int | None, Any]] = {i.name: (i.size, i.plane) for i in inputs}
        self.flows: dict[str, Flow] = {}
        self.last: str | None = None
        self.names = names  # every component's name, to tell "comes later" from "no such"

    def sources(self, w: Wiring, where: str = "") -> tuple[str, ...]:
        """The sources of a component wired by ``w``, each checked to come before it."""
        sources = w.sources or _default_source(self.last, self.inputs)
        for src in sources:
            if src not in self.known:
                later = src in self.names
                raise ParamcalcError(
                    f"{where}from = {src!r}: "
                    + ("it comes later; a source must come first" if later else "no such input or component")
                    + ("" if where or later else " before this one")
                )
        return sources

    def incoming(self, name: str, w: Wiring) -> tuple[int | None, tuple[int, int] | None]:
        """The merged input of the next component (before it is made)."""
        return _merged(name, w, self.sources(w), self.known)

    def add(self, c: Component, w: Wiring) -> Flow:
        """Check what ``c`` receives against what it expects, and record what it hands on."""
        where = f"component {c.name!r} ({c.kind})"
        sources = self.sources(w, f"{where}: ")
        try:
            incoming, plane = self._received(c, w, sources)
        except ParamcalcError as exc:
            raise ParamcalcError(f"{where}: {exc}") from None
        expected = c.in_features
        if expected is not None and incoming is not None and expected != incoming:
            what = (
                " + ".join(f"{s} ({self.known[s][0]})" for s in sources)
                if len(sources) > 1
                else repr(sources[0])
            )
            stacked = f" x {w.stack} stacked frames" if w.stack > 1 else ""
            raise ParamcalcError(
                f"{where}: expects {expected} input features but {what}{stacked} gives {incoming}"
            )
        _check_plane(c, plane, where)
        out = c.out_features(incoming)
        out_plane = c.out_plane(plane) if isinstance(c, (Conv2d, BatchNorm2d)) else None
        if isinstance(c, BatchNorm2d):
            out = incoming
        self.known[c.name] = (out, out_plane)
        self.flows[c.name] = flow = Flow(sources, incoming, plane, out, out_plane)
        self.last = c.name
        return flow

    def _received(
        self, c: Component, w: Wiring, sources: tuple[str, ...]
    ) -> tuple[int | None, tuple[int, int] | None]:
        if not isinstance(c, Attention):
            return _merged(c.name, w, sources, self.known)
        if len(sources) != 2:
            raise ParamcalcError("attention takes two sources: from = [query, keys]")
        (q, _), (k, _) = self.known[sources[0]], self.known[sources[1]]
        for label, src, got, want in (
            ("query", sources[0], q, c.query_size),
            ("key", sources[1], k, c.key_size),
        ):
            if got is not None and got != want:
                raise ParamcalcError(f"{label}_size is {want} but {src!r} outputs {got}")
        return None, None


def _check_plane(c: Component, plane: tuple[int, int] | None, where: str) -> None:
    """A 2-D layer's channels (and a Conv2d's height) against the plane it receives."""
    channels = getattr(c, "in_channels", None) if isinstance(c, (Conv2d, BatchNorm2d)) else None
    if isinstance(c, BatchNorm2d):
        channels = c.num_features
    if channels is not None and plane is not None:
        if plane[0] != channels:
            raise ParamcalcError(f"{where}: expects {channels} channels but its input has {plane[0]}")
        if isinstance(c, Conv2d) and c.height is not None and c.height != plane[1]:
            raise ParamcalcError(f"{where}: height = {c.height} but its input is {plane[1]} high")


def trace(
    components: tuple[Component, ...], inputs: tuple[Input, ...], wiring: Mapping[str, Wiring]
) -> dict[str, Flow]:
    """The flow of features through the components, checked (one line per mistake)."""
    tracer = Tracer(inputs, {c.name for c in components})
    for c in components:
        tracer.add(c, wiring.get(c.name, Wiring()))
    return tracer.flows


@dataclass(frozen=True)
class Architecture:
    """A validated set of components with tied weights and matching sizes.

    Components run in order; each takes the previous one's output unless its :class:`Wiring`
    names other sources (named inputs or earlier components: encoder and decoder
    branches, an attention context fed to a decoder, summed directions, stacked frames).
    """

    name: str
    components: tuple[Component, ...]
    description: str = ""
    inputs: tuple[Input, ...] = ()
    wiring: Mapping[str, Wiring] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "components", tuple(self.components))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "wiring", dict(self.wiring))
        if not self.components:
            raise ParamcalcError("an architecture needs at least one component")
        by_name = self._by_name()
        for name in self.wiring:
            if name not in by_name:
                raise ParamcalcError(f"wiring names no component {name!r}")
        for c in self.components:
            self._check_tie(c, by_name)
        trace(self.components, self.inputs, self.wiring)

    def _by_name(self) -> dict[str, Component]:
        """The components by name, each checked to be a component with a name of its own."""
        by_name: dict[str, Component] = {}
        taken: set[str] = set()
        for i in self.inputs:
            if i.name in taken:
                raise ParamcalcError(f"input {i.name!r}: the name is used twice")
            taken.add(i.name)
        for c in self.components:
            if not isinstance(c, Component):
                raise ParamcalcError(f"not a component: {c!r}")
            if not NAME_RE.match(c.name):
                raise ParamcalcError(
                    f"component {c.name!r} ({c.kind}): a name must be a Python identifier "
                    "(letters, digits, underscores), as torch module names are"
                )
            if c.name in by_name or c.name in taken:
                raise ParamcalcError(f"component {c.name!r} ({c.kind}): the name is used twice")
            by_name[c.name] = c
        return by_name

    def flows(self) -> dict[str, Flow]:
        """What each component receives and hands on."""
        return trace(self.components, self.inputs, self.wiring)

    @staticmethod
    def _check_tie(c: Component, by_name: Mapping[str, Component]) -> None:
        tie = c.tie
        if tie is None:
            return
        where = f"component {c.name!r} ({c.kind})"
        if tie == c.name:
            raise ParamcalcError(f"{where}: tie = {tie!r} names the component itself")
        target = by_name.get(tie)
        if target is None:
            raise ParamcalcError(
                f"{where}: tie = {tie!r}, but there is no component {tie!r} "
                f"(components: {', '.join(by_name)})"
            )
        if not isinstance(target, (Embedding, Linear)):
            raise ParamcalcError(
                f"{where}: tie = {tie!r} is a {target.kind}; only embedding or linear weights tie"
            )
        if target.tie is not None:
            raise ParamcalcError(
                f"{where}: tie = {tie!r}, which is itself tied to {target.tie!r}; tie both to one"
            )
        mine = next(t for t in c.tensors() if t.name == "weight").shape
        theirs = next(t for t in target.tensors() if t.name == "weight").shape
        if mine != theirs:
            raise ParamcalcError(
                f"{where}: tie = {tie!r} needs equal weight shapes, but {c.name}.weight is "
                f"{mine} and {tie}.weight is {theirs}"
            )

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise ParamcalcError(f"no component {name!r} in architecture {self.name!r}")

    @property
    def specs(self) -> dict[str, RecurrentSpec]:
        """The recurrent stacks, by component name."""
        return {c.name: c.spec for c in self.components if isinstance(c, Recurrent)}


def with_head(spec: RecurrentSpec, head: int) -> Architecture:
    """The recurrent stack ``spec`` (component ``rnn``) with a classifier ``nn.Linear`` on its
    output (component ``head``): the seed's ``nn.LSTM(28, 256, 2)`` + ``nn.Linear(256, 10)``.

    The head reads the stack's output features: ``P or Dh`` per direction, both directions
    concatenated (``2·(P or Dh)``) unless they are merged (``merge_mode`` sum, ave, mul); for a
    single-step cell, ``P or Dh``. It has ``out·in + out`` parameters (weight and bias).
    """
    if not isinstance(spec, RecurrentSpec):
        from ..coerce import as_spec

        spec = as_spec(spec, "with_head")
    rnn = Recurrent("rnn", spec)
    width = rnn.out_features(None)
    assert width is not None
    linear = Linear("head", width, check_size("head", head))
    note = spec.cell_type.layout_note(spec)
    return Architecture(
        f"{spec.cell}_head", (rnn, linear), f"{spec.describe()} + {linear.describe()}  [{note}]"
    )
