"""Shared click options and the one way a command prints and exports its result."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from ..errors import ParamcalcError

F = TypeVar("F", bound=Callable[..., Any])


def _apply(f: F, opts: Sequence[Callable[[F], F]]) -> F:
    for opt in reversed(opts):
        f = opt(f)
    return f


# --- the spec -------------------------------------------------------------------------------


def spec_options(
    *,
    hidden_required: bool = True,
    cell_argument: bool = True,
    ranges: bool = False,
    input_required: bool = True,
) -> Callable[[F], F]:
    """The flags that describe a ``RecurrentSpec``: ``CELL -d -H -L --bidirectional ...``.

    With ``ranges=True`` (``sweep``), ``-H`` and ``-L`` are range texts such as ``64:1024:64``.
    ``input_required=False`` leaves ``-d`` optional (``compare --from`` reads no spec).
    """

    def deco(f: F) -> F:
        opts: list[Callable[[F], F]] = [
            click.option("-d", "--input-size", type=int, required=input_required, help="Input features d."),
            *_size_options(ranges, hidden_required),
            click.option("--bidirectional", is_flag=True, help="Two directions per layer."),
            click.option(
                "--proj-size",
                type=int,
                default=0,
                show_default=True,
                help="LSTM projection size P (0 = none).",
            ),
            click.option("--no-bias", "no_bias", is_flag=True, help="Layers without bias vectors."),
            click.option(
                "--bias-vectors",
                type=click.IntRange(0, 2),
                default=None,
                help="Bias vectors per gate block: 0, 1 or 2 (default: the convention's).",
            ),
            click.option(
                "--convention",
                type=click.Choice(["torch", "keras", "onnx"]),
                default="torch",
                show_default=True,
                help="Tensor names and default bias layout: torch (2 per block), keras (1), onnx (W R B P).",
            ),
            click.option(
                "--peephole/--no-peephole",
                default=None,
                help="LSTM/CIFG peephole connections (diagonal c -> gate weights).",
            ),
            click.option(
                "--merge-mode",
                type=click.Choice(["concat", "sum", "ave", "mul"]),
                default=None,
                help="How a bidirectional layer merges its directions (Keras); default concat.",
            ),
            click.option(
                "--reset-after/--no-reset-after",
                default=None,
                help="GRU: reset gate after (default) or before the recurrent matmul.",
            ),
        ]
        if cell_argument:
            opts.insert(0, click.argument("cell", shell_complete=_complete_cell))
        return _apply(f, opts)

    return deco


def _size_options(ranges: bool, hidden_required: bool) -> list[Callable[[F], F]]:
    """``-H`` and ``-L``: one size each, or (``ranges``) range texts such as ``64:1024:64``."""
    if ranges:
        return [
            click.option(
                "-H",
                "--hidden-size",
                required=True,
                help="Hidden sizes: start:stop:step (inclusive) or a,b,c.",
            ),
            click.option("-L", "--num-layers", default="1", show_default=True, help="Layers: 1:4 or 1,2."),
        ]
    return [
        click.option("-H", "--hidden-size", type=int, required=hidden_required, help="Hidden size Dh."),
        click.option("-L", "--num-layers", type=int, default=1, show_default=True, help="Stacked layers."),
    ]


def _complete_cell(ctx: Any, param: Any, incomplete: str) -> list[Any]:
    """Shell completion of CELL: every registered cell and alias."""
    from click.shell_completion import CompletionItem

    from ..core.cells import ALIASES, CELLS

    return [CompletionItem(name) for name in sorted({*CELLS, *ALIASES}) if name.startswith(incomplete)]


SPEC_KEYS = (
    "input_size",
    "hidden_size",
    "num_layers",
    "bidirectional",
    "proj_size",
    "no_bias",
    "bias_vectors",
    "convention",
    "peephole",
    "merge_mode",
    "reset_after",
)


def build_spec(cell: str, kw: dict[str, Any], hidden_size: int | None = None) -> Any:
    """Turn the parsed spec flags into a validated ``RecurrentSpec`` (pops them from ``kw``)."""
    from ..core.cells import get_cell
    from ..core.spec import RecurrentSpec

    ct = get_cell(cell)
    reset_after = kw.pop("reset_after")
    if reset_after is not None and not ct.reset_after_option:
        raise ParamcalcError(f"--reset-after/--no-reset-after applies only to GRU cells, not {ct.name}")
    h: int | None = kw.pop("hidden_size")
    if h is None:
        h = hidden_size
    if h is None:
        raise ParamcalcError("give the hidden size: -H/--hidden-size")
    no_bias, bias_vectors = kw.pop("no_bias"), kw.pop("bias_vectors")
    if no_bias and bias_vectors:
        raise ParamcalcError(f"--no-bias contradicts --bias-vectors {bias_vectors}")
    merge = kw.pop("merge_mode")
    return RecurrentSpec(
        cell=ct.name,
        input_size=kw.pop("input_size"),
        hidden_size=h,
        num_layers=kw.pop("num_layers"),
        bidirectional=kw.pop("bidirectional"),
        bias=not no_bias,
        proj_size=kw.pop("proj_size"),
        convention=kw.pop("convention"),
        reset_after=True if reset_after is None else reset_after,
        bias_vectors=bias_vectors,
        peephole=kw.pop("peephole"),
        merge_mode=merge or "concat",
    )


def template_spec(cells: list[str], kw: dict[str, Any], hidden_size: int | None = None) -> Any:
    """One spec the compared cells are derived from: the first cell that takes every given knob."""
    from ..core.cells import CellType, get_cell

    wants: dict[str, tuple[bool, Callable[[CellType], bool]]] = {
        "--proj-size": (kw["proj_size"] > 0, lambda c: c.projection),
        "--peephole": (kw["peephole"] is True, lambda c: bool(c.peephole_gates)),
        "--reset-after/--no-reset-after": (kw["reset_after"] is not None, lambda c: c.reset_after_option),
    }
    for cell in cells:
        ct = get_cell(cell)
        if all(ok(ct) for given, ok in wants.values() if given):
            return build_spec(cell, kw, hidden_size=hidden_size)
    flags = [name for name, (given, _) in wants.items() if given]
    raise ParamcalcError(f"no cell in --cells takes {' and '.join(flags)} together: compare them separately")


# --- formats and output -----------------------------------------------------------------------


class FormatChoice(click.ParamType):  # type: ignore[type-arg]
    """Every tabulate table format plus csv, json and ``markdown`` (an alias of ``github``),
    listed lazily (for completion too) and validated on use."""

    name = "format"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from difflib import get_close_matches

        from ..render.draw import resolve_format, table_formats

        formats = table_formats()
        if value not in formats:
            shown = repr(str(value)[:40])
            close = get_close_matches(str(value), formats, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.fail(
                f"{shown} is not a table format{hint}; use simple, github (alias markdown), grid, plain, "
                "tsv, csv, json, html, latex or another of tabulate's formats (docs/cli.md lists all)",
                param,
                ctx,
            )
        return resolve_format(str(value))

    def shell_complete(self, ctx: Any, param: Any, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        from ..render.draw import table_formats

        return [CompletionItem(f) for f in table_formats() if f.startswith(incomplete)]


def cli_args(spec: Any) -> str:
    """The ``paramcalc count`` arguments that describe ``spec`` (a ``RecurrentSpec``): the
    inverse of :func:`build_spec`."""
    parts = [spec.cell, f"-d {spec.input_size}", f"-H {spec.hidden_size}"]
    if spec.num_layers != 1:
        parts.append(f"-L {spec.num_layers}")
    if spec.bidirectional:
        parts.append("--bidirectional")
    if spec.proj_size:
        parts.append(f"--proj-size {spec.proj_size}")
    if spec.convention != "torch":
        parts.append(f"--convention {spec.convention}")
    if not spec.bias:
        parts.append("--no-bias")
    elif spec.bias_vectors != spec.default_bias_vectors:
        parts.append(f"--bias-vectors {spec.bias_vectors}")
    if spec.peephole != spec.cell_type.default_peephole:
        parts.append("--peephole" if spec.peephole else "--no-peephole")
    if spec.merge_mode != "concat":
        parts.append(f"--merge-mode {spec.merge_mode}")
    if not spec.reset_after:
        parts.append("--no-reset-after")
    return " ".join(parts)


def output_options(f: F) -> F:
    """``--format`` for stdout, ``--wide`` for every column, ``--output FILE`` for an export."""
    return _apply(
        f,
        [
            click.option(
                "-f",
                "--format",
                "fmt",
                type=FormatChoice(),
                default="simple",
                show_default=True,
                help="simple, github (alias markdown), grid, plain, tsv, csv, json or any tabulate format.",
            ),
            click.option(
                "-w", "--wide", is_flag=True, help="Show every column (files always hold every column)."
            ),
            click.option(
                "-o",
                "--output",
                type=click.Path(dir_okay=False),
                default=None,
                help="Also write the table to FILE (.csv .json .md .html .tex .parquet .xlsx), atomically.",
            ),
        ],
    )


def check_targets(output: str | None, plot: str | None = None) -> None:
    """Fail on a bad --output or --plot path before anything is computed or timed."""
    if output:
        from ..render.export import check_export_target

        check_export_target(output)
    if plot:
        from ..render.plot import check_plot_target

        check_plot_target(plot)
    if output and plot:
        import os

        if os.path.realpath(output) == os.path.realpath(plot):
            raise ParamcalcError("--output and --plot name the same file")


def emit(
    result: Any,
    fmt: str,
    output: str | None,
    *,
    view: str | None = None,
    wide: bool = False,
    links: Sequence[tuple[str, str]] = (),
    extra_footer: Sequence[str] = (),
    lines: Callable[[str], str] | None = None,
) -> None:
    """Print ``result``'s view and export it if asked: one table, whatever the format. The lines
    around the table name this CLI's flags where the library names Python parameters, after
    ``lines`` re-words them as the command needs."""
    from ..render.draw import MACHINE_FORMATS
    from ..results.renderers import EXPORT
    from .flags import say as say_flags

    def say(line: str) -> str:
        return say_flags(lines(line) if lines is not None else line)

    v = result.view(view)
    text = shown(result, fmt, v, wide=wide, lines=lines)
    if extra_footer and fmt not in MACHINE_FORMATS:
        from ..results.text import safe_text

        text = "\n".join([text, *(safe_text(say(line)) for line in extra_footer)])
    click.echo(text)
    if output:
        from pathlib import Path

        from ..render.export import lossless_notes

        EXPORT.of(result)(result, output, v, links=links, command=command_line(), say=say)
        for note in lossless_notes(result.table(view), Path(output).suffix.lower()):
            click.echo(f"note: {note}", err=True)
        click.echo(f"wrote {output}", err=True)


def shown(
    result: Any,
    fmt: str,
    view: str | None = None,
    *,
    wide: bool = False,
    lines: Callable[[str], str] | None = None,
) -> str:
    """The text of ``result``'s view in ``fmt``, as the CLI prints it: the lines around the table
    re-worded by ``lines`` (when given), then with the command's flags where the library names
    Python parameters."""
    from ..results.renderers import DRAW
    from .flags import say

    def said(line: str) -> str:
        return say(lines(line) if lines is not None else line)

    return DRAW.of(result)(result, fmt, result.view(view), wide=wide, say=said)


def command_line() -> str:
    """The command line being run (``paramcalc compare -d 28 ...``), as a shell would take it."""
    import shlex

    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    argv = root.obj.get("argv") if root is not None and isinstance(root.obj, dict) else None
    return "paramcalc " + shlex.join(argv) if argv else ""


# --- the workload (cost model) ------------------------------------------------------------------


def workload_options(*, defaults: bool = False) -> Callable[[F], F]:
    """``--batch --seq-len --lengths --dtype --train``: the workload of the cost model."""
    one = "1" if defaults else "1, or len(--lengths)"
    return lambda f: _apply(
        f,
        [
            click.option("--batch", type=int, default=None, help=f"Sequences per batch B (default {one})."),
            click.option(
                "--seq-len", type=int, default=None, help="Time steps T (default 1, or max of --lengths)."
            ),
            click.option(
                "--lengths",
                default=None,
                help="Real lengths of a packed batch, comma-separated (e.g. 12,9,3).",
            ),
            click.option("--dtype", default=None, help="fp32 (default), fp16, bf16 or int8."),
            click.option("--train", is_flag=True, help="Training: add the backward pass."),
        ],
    )


def workload_from_flags(kw: dict[str, Any], *, always: bool = False) -> Any:
    """Pop the workload flags from ``kw``; a ``Workload``, or None when none was given."""
    batch, seq_len, text, dtype = kw.pop("batch"), kw.pop("seq_len"), kw.pop("lengths"), kw.pop("dtype")
    train = kw.pop("train")
    if not always and batch is None and seq_len is None and text is None and dtype is None and not train:
        return None
    from ..core.workload import Workload

    lengths = None
    if text is not None:
        if len(text) > 100_000:
            raise ParamcalcError("--lengths is longer than 100,000 characters")
        try:
            lengths = tuple(int(p) for p in text.split(",") if len(p.strip()) <= 12)
            if len(lengths) != len(text.split(",")):
                raise ValueError
        except ValueError:
            raise ParamcalcError(
                "--lengths must be comma-separated integers of at most 12 digits, e.g. 12,9,3; "
                f"got {text[:40]!r}"
            ) from None
    return Workload(
        batch=batch if batch is not None else (len(lengths) if lengths else 1),
        seq_len=seq_len if seq_len is not None else (max(lengths) if lengths else 1),
        lengths=lengths,
        dtype=dtype or "fp32",
        mode="training" if train else "inference",
    )


# --- timing ---------------------------------------------------------------------------------


def timing_options(*, bench_flag: bool) -> Callable[[F], F]:
    """``[--bench] --device --threads --min-time --seed``: how a configuration is timed."""

    def deco(f: F) -> F:
        opts: list[Callable[[F], F]] = [
            click.option("--device", default=None, help="cpu (default), cuda, cuda:N or mps."),
            click.option(
                "--threads", type=int, default=None, help="CPU threads for torch (default: torch's setting)."
            ),
            click.option(
                "--min-time",
                "min_run_time",
                type=float,
                default=None,
                help=f"Seconds of timing per measurement (default {0.2 if bench_flag else 0.5}).",
            ),
            click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights and data."),
        ]
        if bench_flag:
            opts.insert(0, click.option("--bench", is_flag=True, help="Also time every row."))
        return _apply(f, opts)

    return deco


def timing_from_flags(
    kw: dict[str, Any], *, timed: bool, default_min_time: float, hint: str = "add --bench"
) -> dict[str, Any]:
    """Pop the timing flags from ``kw``: keyword arguments for bench/compare/sweep."""
    device, threads, seed = kw.pop("device"), kw.pop("threads"), kw.pop("seed")
    min_time = kw.pop("min_run_time")
    if not timed:
        given = [
            n
            for n, v in (
                ("--device", device),
                ("--threads", threads),
                ("--min-time", min_time),
                ("--seed", seed or None),
            )
            if v is not None
        ]
        if given:
            verb = "only applies" if len(given) == 1 else "only apply"
            raise ParamcalcError(f"{', '.join(given)} {verb} when timing: {hint}")
        return {}
    from ..timing.base import check_min_run_time, check_threads

    check_threads(threads)
    if min_time is not None:
        check_min_run_time(min_time)
    if not 0 <= seed < 2**63:
        raise ParamcalcError(f"--seed must be in [0, 2**63), got a {len(str(abs(seed)))}-digit number")
    return {
        "device": device or "cpu",
        "threads": threads,
        "min_run_time": min_time if min_time is not None else default_min_time,
        "seed": seed,
    }


def progress(total: int, label: str, quiet: bool, clock: Callable[[], float] | None = None) -> Any:
    """Progress of a timed run on stderr, with an estimate of the time left: a context giving an
    ``advance(row)`` callback, or None.

    On a terminal, click's progress bar (its ``eta`` is the mean time per finished row times the
    rows left); elsewhere (a log file), one line per finished row with the same estimate. None
    when ``quiet`` or when there is nothing to time.
    """
    import contextlib

    if quiet or total <= 0:
        return contextlib.nullcontext(None)
    if not sys.stderr.isatty():
        return _progress_lines(total, label, clock)

    @contextlib.contextmanager
    def bar_ctx() -> Any:
        with click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True) as bar:
            yield lambda _row: bar.update(1)

    return bar_ctx()


def _progress_lines(total: int, label: str, clock: Callable[[], float] | None) -> Any:
    import contextlib
    import time

    tick = clock or time.monotonic

    @contextlib.contextmanager
    def lines_ctx() -> Any:
        start, done = tick(), [0]

        def advance(_row: Any) -> None:
            done[0] += 1
            n, elapsed = done[0], tick() - start
            left = elapsed / n * (total - n)
            tail = f", about {_duration(left)} left" if n < total else ""
            click.echo(f"{label}: {n:,} of {total:,} done, {_duration(elapsed)} elapsed{tail}", err=True)

        yield advance

    return lines_ctx()


def _duration(seconds: float) -> str:
    """``14 s``, ``3 min 05 s``, ``2 h 07 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def gemm_progress(quiet: bool, label: str = "timing GEMMs") -> Any:
    """A context giving an ``on_timed(done, total)`` callback for GEMM timings, or None.

    The bar (on stderr, as :func:`progress` draws it) appears at the first shape that has to
    be timed, when the total is known; none when ``quiet``, when every shape is cached, or when
    stderr is not a terminal.
    """
    import contextlib

    if quiet or not sys.stderr.isatty():
        return contextlib.nullcontext(None)

    @contextlib.contextmanager
    def bar_ctx() -> Any:
        state: dict[str, Any] = {}

        def on_timed(done: int, total: int) -> None:
            bar = state.get("bar")
            if bar is None:
                bar = click.progressbar(length=total, label=label, file=sys.stderr)
                bar.__enter__()
                state["bar"] = bar
            bar.update(done - bar.pos)

        try:
            yield on_timed
        finally:
            if "bar" in state:
                state["bar"].__exit__(None, None, None)

    return bar_ctx()


def plot_options(f: F) -> F:
    """``--plot FILE`` and ``--quiet`` (no progress bar) of ``compare`` and ``sweep``."""
    return _apply(
        f,
        [
            click.option(
                "--plot",
                type=click.Path(dir_okay=False),
                default=None,
                help="Also draw FILE (.png .svg .pdf).",
            ),
            click.option("-q", "--quiet", is_flag=True, help="No progress output."),
        ],
    )


def device_option(default: str) -> Callable[[F], F]:
    return click.option(
        "--device",
        default=default,
        show_default=True,
        help="meta (shapes only, no memory), cpu, cuda, cuda:N or mps.",
    )


def torchinfo_option(f: F) -> F:
    return click.option(
        "--torchinfo/--no-torchinfo",
        "use_torchinfo",
        default=True,
        show_default=True,
        help="Also compare the total with torchinfo's summary(model, verbose=0).",
    )(f)
