"""The ``paramcalc`` command line: parse flags, call the library, render. Nothing else.

torch and pandas are imported only by the commands (and options) that need them, so analytic
queries such as ``paramcalc count`` start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from . import __version__
from .errors import ParamcalcError

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """A click group whose every user error is one line on stderr and exit code 2."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, **extra: Any) -> Any:
        standalone = extra.pop("standalone_mode", True)
        try:
            rv = super().main(args, prog_name or "paramcalc", standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:  # pragma: no cover - click returns these
            rv = exc.exit_code
        except click.ClickException as exc:
            where = f"{exc.ctx.command_path}: " if getattr(exc, "ctx", None) else ""
            _fail(f"{where}{exc.format_message()}", standalone)
        except ParamcalcError as exc:
            _fail(str(exc), standalone)
        except click.Abort:
            click.echo("Aborted.", err=True)
            rv = 130
        if not standalone:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, standalone: bool) -> None:
    click.echo("Error: " + " ".join(message.split()), err=True)
    if standalone:
        sys.exit(2)
    raise SystemExit(2)


# --- shared options -------------------------------------------------------------------------


def spec_options(*, hidden_required: bool = True, cell_argument: bool = True) -> Callable[[F], F]:
    """The flags that describe a ``RecurrentSpec``: ``CELL -d -H -L --bidirectional ...``."""

    def deco(f: F) -> F:
        opts = [
            click.option("-d", "--input-size", type=int, required=True, help="Input features d."),
            click.option("-H", "--hidden-size", type=int, required=hidden_required, help="Hidden size Dh."),
            click.option(
                "-L", "--num-layers", type=int, default=1, show_default=True, help="Stacked layers."
            ),
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
                "--convention",
                type=click.Choice(["torch", "keras"]),
                default="torch",
                show_default=True,
                help="torch: 2 bias vectors per gate block; keras: 1.",
            ),
            click.option(
                "--reset-after/--no-reset-after",
                default=None,
                help="Keras GRU bias layout (default: reset_after=True).",
            ),
        ]
        if cell_argument:
            opts.insert(0, click.argument("cell"))
        for opt in reversed(opts):
            f = opt(f)
        return f

    return deco


def build_spec(cell: str, kw: dict[str, Any], hidden_size: int | None = None) -> Any:
    """Turn the parsed spec flags into a validated ``RecurrentSpec`` (pops them from ``kw``)."""
    from .cells import get_cell
    from .spec import RecurrentSpec

    reset_after = kw.pop("reset_after")
    ct = get_cell(cell)
    if reset_after is not None and ct.family != "gru":
        raise ParamcalcError(f"--reset-after/--no-reset-after applies only to GRU cells, not {ct.name}")
    h = kw.pop("hidden_size")
    return RecurrentSpec(
        cell=cell,
        input_size=kw.pop("input_size"),
        hidden_size=h if h is not None else hidden_size,
        num_layers=kw.pop("num_layers"),
        bidirectional=kw.pop("bidirectional"),
        bias=not kw.pop("no_bias"),
        proj_size=kw.pop("proj_size"),
        convention=kw.pop("convention"),
        reset_after=True if reset_after is None else reset_after,
    )


class _FormatChoice(click.ParamType):
    """Every tabulate table format plus csv and json (listed lazily, validated on use)."""

    name = "format"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from .report import table_formats

        formats = table_formats()
        if value not in formats:
            self.fail(f"{value!r} is not a table format; use one of {', '.join(formats)}", param, ctx)
        return str(value)


def output_options(f: F) -> F:
    """``--format`` for stdout and ``--output FILE`` for an export chosen by suffix."""
    f = click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False),
        default=None,
        help="Also write the table to FILE (.csv .json .md .html .tex .parquet .xlsx), atomically.",
    )(f)
    return click.option(
        "-f",
        "--format",
        "fmt",
        type=_FormatChoice(),
        default="simple",
        show_default=True,
        help="Any tabulate format (simple, github, grid, ...), csv or json.",
    )(f)


def emit(
    records: list[dict[str, Any]],
    fmt: str,
    output: str | None,
    *,
    meta: dict[str, Any] | None = None,
    header: Sequence[str] = (),
    footer: Sequence[str] = (),
) -> None:
    """Print a table (header/footer lines only in text formats) and export it if asked."""
    from .report import MACHINE_FORMATS, render

    text_fmt = fmt not in MACHINE_FORMATS
    body = render(records, fmt, meta=meta, footer=footer if text_fmt else ())
    if text_fmt and header:
        body = "\n".join([*header, body])
    click.echo(body)
    if output:
        import pandas as pd

        from .report import export

        export(pd.DataFrame(records), output, meta)
        click.echo(f"wrote {output}", err=True)


# --- the group ------------------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="paramcalc")
def cli() -> None:
    """paramcalc: what a recurrent network (RNN, LSTM, GRU) costs before you train it.

    \b
    Examples:
      paramcalc count lstm -d 28 -H 256 -L 2
      paramcalc solve gru -d 28 -L 2 --budget 1.5M
      paramcalc solve lstm -d 28 -H 256 -L 2          # match RNN and GRU to it
    """


@cli.command(context_settings={"help_option_names": ["-h", "--help"]})
@spec_options()
@click.option(
    "--by",
    type=click.Choice(["tensor", "layer", "total"]),
    default="tensor",
    show_default=True,
    help="One row per tensor, per layer and direction, or in total.",
)
@output_options
def count(cell: str, by: str, fmt: str, output: str | None, **kw: Any) -> None:
    """Count the parameters of CELL, tensor by tensor, with formulas.

    CELL is rnn (alias rnn_tanh), rnn_relu, lstm, gru, rnn_cell, lstm_cell or gru_cell.

    \b
    Examples:
      paramcalc count lstm -d 28 -H 256 -L 2
      paramcalc count lstm -d 12 -H 16 -L 2 --bidirectional --proj-size 6
      paramcalc count gru -d 64 -H 256 --convention keras --no-reset-after
      paramcalc count lstm -d 28 -H 256 -L 2 --by layer --format github
      paramcalc count gru -d 28 -H 256 --format json
    """
    from .count import count as count_

    spec = build_spec(cell, kw)
    result = count_(spec)
    footer = []
    if by == "tensor":
        footer = [f"layer {f.layer} {f.direction}: {f}" for f in result.formulas]
    emit(
        result.records(by),
        fmt,
        output,
        meta={"spec": spec.to_dict(), "total": result.total, "convention": result.convention_note},
        header=[f"{spec.describe()}  [{result.convention_note}]"],
        footer=[*footer, f"total: {result.total:,} parameters"],
    )


@cli.command(context_settings={"help_option_names": ["-h", "--help"]})
@spec_options(hidden_required=False)
@click.option("--budget", default=None, help="Parameter budget: 250k, 1.5M, 2e6, 1000000.")
@click.option("--cells", default=None, help="Comma-separated cells to solve for (e.g. rnn,lstm,gru).")
@click.option(
    "--multiple-of", type=int, default=1, show_default=True, help="Only hidden sizes that are multiples of N."
)
@output_options
def solve(
    cell: str,
    budget: str | None,
    cells: str | None,
    multiple_of: int,
    fmt: str,
    output: str | None,
    **kw: Any,
) -> None:
    """Find hidden sizes: the largest that fits a budget, or those matching a reference.

    \b
    With --budget: the largest hidden size of CELL (or of each of --cells) whose
    total parameter count fits the budget.
    With -H (a reference spec): for each other cell type, the hidden size whose
    count comes closest to the reference's, with the relative difference.

    \b
    Examples:
      paramcalc solve lstm -d 28 -L 2 --budget 1.5M
      paramcalc solve lstm -d 28 -L 2 --budget 250k --multiple-of 8 --cells rnn,lstm,gru
      paramcalc solve lstm -d 28 -H 256 -L 2              # RNN and GRU sized like it
      paramcalc solve lstm -d 28 -H 256 -L 2 --cells gru,rnn_relu
    """
    from .solve import match, solve_budget

    hidden = kw["hidden_size"]
    if budget is not None and hidden is not None:
        raise ParamcalcError(
            "give either --budget (find a hidden size) or -H (a reference to match), not both"
        )
    if budget is None and hidden is None:
        raise ParamcalcError("give --budget (find a hidden size) or -H (a reference spec to match)")
    cell_list = [c.strip() for c in cells.split(",") if c.strip()] if cells else None
    if cells is not None and not cell_list:
        raise ParamcalcError("--cells is empty: name at least one cell, e.g. --cells rnn,gru")
    proj = kw["proj_size"]
    spec = build_spec(cell, kw, hidden_size=None if hidden is not None else proj + 1)
    if budget is not None:
        result = solve_budget(spec, budget, cells=cell_list, multiple_of=multiple_of)
        header = [f"largest hidden size within a budget of {result.target:,} parameters"]
    else:
        result = match(spec, cell_list, multiple_of=multiple_of)
        header = [f"hidden sizes matching {spec.describe()} = {result.target:,} parameters"]
    emit(result.records(), fmt, output, meta={"mode": result.mode, "total": result.target}, header=header)


def main() -> None:  # console-script entry point
    cli.main(prog_name="paramcalc")


if __name__ == "__main__":  # pragma: no cover
    main()
