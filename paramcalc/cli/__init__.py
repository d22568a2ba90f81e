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


def spec_options(
    *, hidden_required: bool = True, cell_argument: bool = True, ranges: bool = False
) -> Callable[[F], F]:
    """The flags that describe a ``RecurrentSpec``: ``CELL -d -H -L --bidirectional ...``.

    With ``ranges=True`` (``sweep``), ``-H`` and ``-L`` are range texts such as ``64:1024:64``.
    """

    def deco(f: F) -> F:
        if ranges:
            sizes = [
                click.option(
                    "-H",
                    "--hidden-size",
                    required=True,
                    help="Hidden sizes: start:stop:step (inclusive) or a,b,c.",
                ),
                click.option(
                    "-L", "--num-layers", default="1", show_default=True, help="Layers: 1:4 or 1,2."
                ),
            ]
        else:
            sizes = [
                click.option(
                    "-H", "--hidden-size", type=int, required=hidden_required, help="Hidden size Dh."
                ),
                click.option(
                    "-L", "--num-layers", type=int, default=1, show_default=True, help="Stacked layers."
                ),
            ]
        opts = [
            click.option("-d", "--input-size", type=int, required=True, help="Input features d."),
            *sizes,
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
    from .report import MACHINE_FORMATS, check_export_target, render

    if output:  # a bad --output fails before anything is printed
        check_export_target(output)
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


# --- workload options (cost model; used by count and cost) ---------------------------------


def workload_options() -> Callable[[F], F]:
    """``--batch --seq-len --lengths --dtype --train``: the workload of the cost model."""

    def deco(f: F) -> F:
        opts = [
            click.option(
                "--batch",
                type=int,
                default=None,
                help="Sequences per batch B (default 1, or len(--lengths)).",
            ),
            click.option(
                "--seq-len", type=int, default=None, help="Time steps T (default 1, or max of --lengths)."
            ),
            click.option(
                "--lengths",
                default=None,
                help="Real lengths of a packed batch, comma-separated (e.g. 12,9,3), any order.",
            ),
            click.option("--dtype", default=None, help="fp32 (default), fp16, bf16 or int8."),
            click.option("--train", is_flag=True, help="Training: add the backward pass."),
        ]
        for opt in reversed(opts):
            f = opt(f)
        return f

    return deco


def workload_from_flags(kw: dict[str, Any], *, always: bool = False) -> Any:
    """Pop the workload flags from ``kw``; a ``Workload``, or None when none was given."""
    from .cost import Workload

    batch, seq_len, text, dtype = kw.pop("batch"), kw.pop("seq_len"), kw.pop("lengths"), kw.pop("dtype")
    train = kw.pop("train")
    if not always and batch is None and seq_len is None and text is None and dtype is None and not train:
        return None
    lengths = None
    if text is not None:
        try:
            lengths = tuple(int(p) for p in text.split(","))
        except ValueError:
            raise ParamcalcError(
                f"--lengths must be comma-separated integers, e.g. 12,9,3; got {text!r}"
            ) from None
    return Workload(
        batch=batch if batch is not None else (len(lengths) if lengths else 1),
        seq_len=seq_len if seq_len is not None else (max(lengths) if lengths else 1),
        lengths=lengths,
        dtype=dtype or "fp32",
        mode="training" if train else "inference",
    )


def _with_cost(
    spec: Any, workload: Any, by: str, records: list[dict[str, Any]], meta: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """``count`` with a workload: MACs/FLOPs columns on the layer and total views."""
    from .cost import cost

    res = cost(spec, workload)
    if by == "layer":
        records = [
            {**r, "macs_per_step": lc.gemm_macs, "macs": lc.gemm_macs * workload.tokens, "flops": fl}
            for r, lc, fl in zip(records, res.layers, res.layer_flops, strict=True)
        ]
    elif by == "total":
        records = [
            {**r, "macs_per_step": res.macs_per_step, "macs": res.macs, "flops": res.flops} for r in records
        ]
    lines = [
        f"cost ({workload.describe()}): {res.macs:,} GEMM MACs, {res.flops:,} FLOPs, "
        f"critical path {res.critical_path_steps:,} steps",
        f"cost convention: {res.convention}",
    ]
    return records, {**meta, "cost": res.to_dict()}, lines


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


@cli.command()
@spec_options()
@click.option(
    "--by",
    type=click.Choice(["tensor", "layer", "total"]),
    default="tensor",
    show_default=True,
    help="One row per tensor, per layer and direction, or in total.",
)
@workload_options()
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
      paramcalc count lstm -d 28 -H 256 -L 2 --by layer --batch 64 --seq-len 28
    """
    from .count import count as count_

    workload = workload_from_flags(kw)
    spec = build_spec(cell, kw)
    result = count_(spec)
    footer = []
    if by == "tensor":
        footer = [f"layer {f.layer} {f.direction}: {f}" for f in result.formulas]
    records = result.records(by)
    meta = {"spec": spec.to_dict(), "total": result.total, "convention": result.convention_note}
    if workload is not None:  # MACs/FLOPs columns (paramcalc.cost, pure Python)
        records, meta, cost_lines = _with_cost(spec, workload, by, records, meta)
        footer = [*footer, *cost_lines]
    emit(
        records,
        fmt,
        output,
        meta=meta,
        header=[f"{spec.describe()}  [{result.convention_note}]"],
        footer=[*footer, f"total: {result.total:,} parameters"],
    )


@cli.command()
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


@cli.command()
@spec_options()
@workload_options()
@click.option(
    "--by",
    type=click.Choice(["layer", "part", "gemm", "memory", "total"]),
    default="layer",
    show_default=True,
    help="Rows per layer and direction, per part (GEMMs, bias, elementwise), per GEMM, "
    "memory item, or in total.",
)
@click.option(
    "--backward",
    type=click.Choice(["2x", "autograd"]),
    default="2x",
    show_default=True,
    help="Training rule: backward = 2x forward, or the GEMMs autograd runs (data input, h0 = 0).",
)
@click.option("--no-input-proj", is_flag=True, help="Leave the input-projection GEMM out of FLOPs.")
@click.option("--no-recurrent", is_flag=True, help="Leave the recurrent GEMM out of FLOPs.")
@click.option("--no-projection", is_flag=True, help="Leave the LSTM projection GEMM out of FLOPs.")
@click.option("--no-bias-ops", is_flag=True, help="Leave bias additions out of FLOPs.")
@click.option("--no-elementwise", is_flag=True, help="Leave elementwise ops (σ, tanh, ⊙, +) out of FLOPs.")
@click.option(
    "--flop-check",
    is_flag=True,
    help="Cross-check matmul FLOPs with torch's FlopCounterMode (and show torchinfo's "
    "mult-adds); exit 1 on a mismatch. Imports torch.",
)
@click.option(
    "--flop-device", default="meta", show_default=True, help="Device for --flop-check: meta, cpu, cuda[:N]."
)
@click.option(
    "--fused", is_flag=True, help="--flop-check with oneDNN/cuDNN fused RNN kernels on (they hide matmuls)."
)
@output_options
def cost(
    cell: str,
    by: str,
    backward: str,
    no_input_proj: bool,
    no_recurrent: bool,
    no_projection: bool,
    no_bias_ops: bool,
    no_elementwise: bool,
    flop_check: bool,
    flop_device: str,
    fused: bool,
    fmt: str,
    output: str | None,
    **kw: Any,
) -> None:
    """MACs, FLOPs, critical path and memory of CELL on a workload.

    MAC = one multiply-add of a GEMM (x·W_ihᵀ, h·W_hhᵀ, h·W_hrᵀ); FLOPs = 2·MACs
    + bias additions + elementwise ops, each part switchable. A packed batch
    (--lengths) costs its real steps. The output states the convention used.
    Conventions and equations: docs/cost-model.md.

    \b
    Examples:
      paramcalc cost lstm -d 28 -H 256 -L 2 --batch 64 --seq-len 28
      paramcalc cost lstm -d 28 -H 256 -L 2 --batch 64 --seq-len 28 --by part
      paramcalc cost gru -d 64 -H 512 --bidirectional --lengths 12,9,3 --by gemm
      paramcalc cost lstm -d 28 -H 256 --batch 64 --seq-len 28 --train --dtype bf16 --by memory
      paramcalc cost rnn -d 28 -H 128 --batch 8 --seq-len 50 --no-elementwise --no-bias-ops
      paramcalc cost lstm -d 28 -H 256 -L 2 --batch 4 --seq-len 10 --train --flop-check
    """
    from .cost import cost as cost_

    workload = workload_from_flags(kw, always=True)
    spec = build_spec(cell, kw)
    result = cost_(
        spec,
        workload,
        input_proj=not no_input_proj,
        recurrent=not no_recurrent,
        projection=not no_projection,
        bias_ops=not no_bias_ops,
        elementwise=not no_elementwise,
        backward=backward,
    )
    meta: dict[str, Any] = result.to_dict()
    footer = result.summary()
    check = None
    if flop_check:
        from .flopcheck import flop_check as run_flop_check
        from .report import render

        check = run_flop_check(spec, workload, device=flop_device, fused=fused)
        meta["flop_check"] = check.to_dict()
        rows = [{k: f"{v:,}" if isinstance(v, int) else v for k, v in r.items()} for r in check.records()]
        lines = ["", render(rows, "simple"), *check.notes()]
        if fmt == "csv":
            click.echo("\n".join(lines), err=True)
        else:
            footer = [*footer, *lines]
    emit(
        result.records(by),
        fmt,
        output,
        meta=meta,
        header=[f"{spec.describe()}  [{workload.describe()}]"],
        footer=footer,
    )
    if check is not None:
        if check.ok is None:
            click.echo(f"warning: flop check {check.status} on {check.device}", err=True)
        elif not check.ok:
            click.echo(f"flop check: {check.status}", err=True)
            click.get_current_context().exit(1)


def _device_option(default: str) -> Callable[[F], F]:
    return click.option(
        "--device",
        default=default,
        show_default=True,
        help="meta (shapes only, no memory), cpu, cuda, cuda:N or mps.",
    )


def _torchinfo_option(f: F) -> F:
    return click.option(
        "--torchinfo/--no-torchinfo",
        "use_torchinfo",
        default=True,
        show_default=True,
        help="Also compare the total with torchinfo's summary(model, verbose=0).",
    )(f)


def _emit_check(result: Any, fmt: str, output: str | None) -> None:
    header = [f"check: {result.subject} on {result.device}", *(f"note: {n}" for n in result.notes)]
    emit(result.records(), fmt, output, meta=result.meta(), header=header, footer=result.summary_lines())


@cli.command("check")
@spec_options()
@_device_option("meta")
@_torchinfo_option
@output_options
@click.pass_context
def check_cmd(
    ctx: click.Context, cell: str, device: str, use_torchinfo: bool, fmt: str, output: str | None, **kw: Any
) -> None:
    """Build CELL in torch and compare it with the formulas, tensor by tensor.

    Builds the real nn.RNN / nn.LSTM / nn.GRU (or cell) on --device and compares
    every tensor of named_parameters() with the analytic row: name, order, shape,
    element count, then the totals, and torchinfo's total. On meta (the default)
    nothing is allocated, so even a 17-billion-parameter stack checks in a second.
    With --convention keras the torch-equivalent spec is checked (torch has no
    Keras bias layout), and the output says so.

    \b
    Exit status: 0 all agree, 1 any disagreement (listed), 2 a user error.

    \b
    Examples:
      paramcalc check lstm -d 28 -H 256 -L 2
      paramcalc check lstm -d 16384 -H 16384 -L 8        # ~17 billion parameters, on meta
      paramcalc check gru -d 64 -H 128 --bidirectional --device cpu
      paramcalc check lstm -d 12 -H 16 -L 2 --proj-size 6 --device cuda:0
      paramcalc check gru -d 64 -H 256 --convention keras  # checks the torch equivalent
      paramcalc check lstm -d 28 -H 256 --format json
    """
    from .check import check_spec

    spec = build_spec(cell, kw)
    result = check_spec(spec, device, use_torchinfo=use_torchinfo)
    _emit_check(result, fmt, output)
    if not result.ok:
        ctx.exit(1)


@cli.command("report")
@click.argument("file")
@click.option(
    "--by",
    type=click.Choice(["tensor", "component", "total"]),
    default="tensor",
    show_default=True,
    help="One row per tensor, per component, or in total.",
)
@click.option("--check", "do_check", is_flag=True, help="Also build it in torch and compare every tensor.")
@_device_option("meta")
@_torchinfo_option
@output_options
@click.pass_context
def report_cmd(
    ctx: click.Context,
    file: str,
    by: str,
    do_check: bool,
    device: str,
    use_torchinfo: bool,
    fmt: str,
    output: str | None,
) -> None:
    """Count a whole architecture described in a TOML FILE, with formulas.

    FILE lists components in order: recurrent stacks (lstm, gru, rnn, ...),
    embedding, linear, layernorm, dropout, conv1d, batchnorm1d. A linear may
    tie its weight to an embedding (tie = "encoder"): the tensor is shown under
    both and counted once. The schema is in the README; data/architectures/ has
    examples. With --check the same model is built in torch on --device and
    compared tensor by tensor (exit 1 on any disagreement).

    \b
    Examples:
      paramcalc report data/architectures/mnist_rows_lstm.toml
      paramcalc report data/architectures/awd_lstm_lm.toml --by component
      paramcalc report data/architectures/awd_lstm_lm.toml --check
      paramcalc report data/architectures/mnist_rows_lstm.toml --check --device cpu
      paramcalc report my_model.toml --format json --output report.json
    """
    from .arch import count_architecture, load_architecture

    arch = load_architecture(file)
    counted = count_architecture(arch)
    result = None
    if do_check:
        from .check import check_architecture

        result = check_architecture(arch, device, use_torchinfo=use_torchinfo)
    footer = []
    for c in counted.components if by == "tensor" else ():
        counted_as = f"{c.formula} = {c.all_params:,}" if c.tensors else "no parameters"
        line = f"{c.component}: {c.module}: {counted_as}"
        if c.all_params != c.params:
            line += f"; counted here {c.params:,}"
        footer.append(line + (f"  [{c.note}]" if c.note else ""))
    tied = f" ({len(counted.tied)} tied tensor(s) counted once)" if counted.tied else ""
    footer.append(f"total: {counted.total:,} parameters{tied}")
    meta: dict[str, Any] = {"architecture": arch.name, "file": file, "total": counted.total}
    if result is not None and fmt == "json":
        meta["check"] = {**result.meta(), "rows": result.records()}
    header = [f"architecture {arch.name!r} ({file})" + (f": {arch.description}" if arch.description else "")]
    emit(counted.records(by), fmt, output, meta=meta, header=header, footer=footer)
    if result is not None:
        if fmt not in ("csv", "json"):
            click.echo("")
            _emit_check(result, fmt, None)
        elif fmt == "csv":
            click.echo("\n".join(result.summary_lines()), err=True)
        if not result.ok:
            ctx.exit(1)


@cli.command("inspect")
@click.argument("target")
@click.option(
    "--by",
    type=click.Choice(["module", "tensor"]),
    default="module",
    show_default=True,
    help="One row per module (analytic vs actual) or per tensor.",
)
@_device_option("cpu")
@output_options
@click.pass_context
def inspect_cmd(ctx: click.Context, target: str, by: str, device: str, fmt: str, output: str | None) -> None:
    """Analyse a checkpoint FILE.pt or a model built by package.module:factory.

    \b
    TARGET is either
      a file saved with torch.save: a state dict, or a dict holding one under
      state_dict, model, ...; it is loaded with torch.load(weights_only=True), so
      nothing in it is executed, and a pickle that would run code is refused;
      every recurrent stack is read back from names and shapes (cell, sizes,
      projection, layers, directions, bias);
    or
      package.module:factory, a callable (or an nn.Module) that is imported and
      called with no arguments, under --device (meta builds it with no memory).

    Per module: the analytic count (formula) vs the actual (stored) one; layers
    with no adapter are "counted, no formula". Exit 1 if a formula disagrees.

    \b
    Examples:
      paramcalc inspect checkpoint.pt
      paramcalc inspect checkpoint.pt --by tensor
      paramcalc inspect mypkg.models:build_lm
      paramcalc inspect mypkg.models:build_lm --device meta --format json
    """
    from pathlib import Path

    from .inspect_ import analyze, inspect_checkpoint, load_factory

    path = Path(target)
    if path.exists():
        if path.suffix.lower() == ".toml":
            raise ParamcalcError(f"{target}: a TOML architecture; use paramcalc report {target}")
        analysis = inspect_checkpoint(path)
    elif ":" in target and not target.endswith((".pt", ".pth", ".bin", ".ckpt")):
        analysis = analyze(load_factory(target, device))
    else:
        raise ParamcalcError(f"{target}: no such file (and not package.module:factory)")
    header = [f"{analysis.source}", *(f"note: {n}" for n in analysis.notes)]
    footer = analysis.summary_lines()
    emit(analysis.records(by), fmt, output, meta=analysis.meta(), header=header, footer=footer)
    if not analysis.ok:
        ctx.exit(1)


# --- timing (issue 5): bench, compare, sweep ---------------------------------------------------


def timing_options(*, bench_flag: bool) -> Callable[[F], F]:
    """``[--bench] --device --threads --min-time --seed``: how a configuration is timed."""

    def deco(f: F) -> F:
        opts = [
            click.option("--device", default=None, help="cpu (default), cuda, cuda:N or mps."),
            click.option(
                "--threads", type=int, default=None, help="CPU threads for torch (default: torch's setting)."
            ),
            click.option(
                "--min-time",
                type=float,
                default=None,
                help="Seconds of timing per measurement, module and GEMM each "
                f"(default {0.2 if bench_flag else 0.5}).",
            ),
            click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights and data."),
        ]
        if bench_flag:
            opts.insert(0, click.option("--bench", "do_bench", is_flag=True, help="Also time every row."))
        for opt in reversed(opts):
            f = opt(f)
        return f

    return deco


def timing_from_flags(kw: dict[str, Any], *, timed: bool, default_min_time: float) -> dict[str, Any]:
    """Pop the timing flags from ``kw``: keyword arguments for bench/compare/sweep."""
    device, threads, min_time, seed = kw.pop("device"), kw.pop("threads"), kw.pop("min_time"), kw.pop("seed")
    if not timed:
        given = [
            n
            for n, v in (("--device", device), ("--threads", threads), ("--min-time", min_time))
            if v is not None
        ]
        if given:
            raise ParamcalcError(f"{', '.join(given)} only apply when timing: add --bench")
        return {}
    if min_time is not None and not 0 < min_time <= 600:
        raise ParamcalcError(f"--min-time must be in (0, 600] seconds, got {min_time}")
    return {
        "device": device or "cpu",
        "threads": threads,
        "min_run_time": min_time if min_time is not None else default_min_time,
        "seed": seed,
    }


def _stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def progress(total: int, label: str, quiet: bool) -> Any:
    """A progress bar on stderr (a context giving an ``advance(row)`` callback), or None.

    None when ``quiet``, when there is nothing to time, or when stderr is not a terminal.
    """
    import contextlib

    if quiet or total <= 0 or not _stderr_is_tty():
        return contextlib.nullcontext(None)

    @contextlib.contextmanager
    def bar_ctx() -> Any:
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            yield lambda _row: bar.update(1)

    return bar_ctx()


def check_targets(output: str | None, plot: str | None = None) -> None:
    """Fail on a bad --output or --plot path before anything is computed or timed."""
    if output:
        from .report import check_export_target

        check_export_target(output)
    if plot:
        from .plot import check_plot_target

        check_plot_target(plot)


def template_spec(cells: list[str], kw: dict[str, Any], hidden_size: int | None = None) -> Any:
    """One spec the cells are derived from: --proj-size goes to LSTM rows, --reset-after to GRU rows."""
    from .cells import get_cell

    proj, reset_after = kw["proj_size"], kw["reset_after"]
    cell = cells[0]
    if proj:
        lstm = [c for c in cells if get_cell(c).supports_proj]
        if not lstm:
            raise ParamcalcError("--proj-size applies only to LSTM, and --cells has no lstm")
        cell = lstm[0]
    if reset_after is not None:
        gru = [c for c in cells if get_cell(c).family == "gru"]
        if not gru:
            raise ParamcalcError("--reset-after/--no-reset-after applies only to GRU, and --cells has no gru")
        if proj:
            raise ParamcalcError("--proj-size (LSTM) and --reset-after (GRU) cannot be combined here")
        cell = gru[0]
    return build_spec(cell, kw, hidden_size=hidden_size)


@cli.command()
@spec_options()
@workload_options()
@timing_options(bench_flag=False)
@output_options
def bench(cell: str, fmt: str, output: str | None, **kw: Any) -> None:
    """Time the real torch module of CELL: throughput, FLOP/s and efficiency.

    Inference is one forward pass in eval mode under torch.inference_mode();
    --train times zero_grad + forward + backward. After a warm-up,
    torch.utils.benchmark's blocked_autorange repeats the call (device
    synchronised) for --min-time seconds; the table gives the median time per
    batch and its IQR, tokens/s, sequences/s, the achieved FLOP/s (FLOPs from
    the cost model) and the efficiency against a plain GEMM of the recurrent
    shape (B, R) @ (R, G·Dh), same dtype, timed on the same device in the same
    run. It also names the kernel path (cuDNN, oneDNN, native), the device, the
    thread count and the torch version. The memory the run needs is estimated
    first: a run the device cannot hold is refused.

    \b
    Examples:
      paramcalc bench lstm -d 28 -H 256 -L 2 --batch 64 --seq-len 28
      paramcalc bench gru -d 28 -H 256 -L 2 --batch 64 --seq-len 28 --train
      paramcalc bench lstm -d 28 -H 256 --batch 64 --seq-len 28 --dtype bf16 --threads 1
      paramcalc bench lstm -d 512 -H 1024 -L 4 --batch 128 --seq-len 100 --device cuda --dtype fp16
      paramcalc bench gru -d 64 -H 256 --lengths 50,41,12,3 --min-time 1
      paramcalc bench lstm -d 28 -H 256 -L 2 --batch 64 --seq-len 28 --output bench.json
    """
    from .bench import bench as bench_

    check_targets(output)
    if kw["batch"] is None and kw["lengths"] is None:
        raise ParamcalcError("give --batch B and --seq-len T (or --lengths) of the batch to time")
    workload = workload_from_flags(kw, always=True)
    timing = timing_from_flags(kw, timed=True, default_min_time=0.5)
    spec = build_spec(cell, kw)
    result = bench_(spec, workload, **timing)
    warn_noisy([result])
    meta = {
        "spec": spec.to_dict(),
        "workload": workload.to_dict(),
        **result.environment(),
        "cost_convention": result.cost.convention,
    }
    from .report import MACHINE_FORMATS

    if fmt in MACHINE_FORMATS:
        emit(result.records(), fmt, output, meta=meta)
        return
    header = [f"{spec.describe()}  [{workload.describe()}]"]
    footer = [f"FLOPs: {result.cost.convention}"]
    emit(result.summary(), fmt, None, header=header, footer=footer)
    if output:
        emit_file(result.records(), output, meta)


def warn_noisy(results: Sequence[Any]) -> None:
    """One stderr line when timings scatter (IQR > 10% of the median): the machine may be busy."""
    noisy = [r for r in results if r is not None and r.noisy]
    if noisy:
        worst = max(r.iqr_s / r.median_s for r in noisy)
        click.echo(
            f"warning: {len(noisy)} of {len(results)} timings are noisy (IQR up to {100 * worst:.0f}% "
            "of the median): is something else running? try --min-time 1 or --threads",
            err=True,
        )


def plot_options(f: F) -> F:
    """``--plot FILE`` and ``--quiet`` (no progress bar) of ``compare`` and ``sweep``."""
    f = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")(f)
    return click.option(
        "--plot", type=click.Path(dir_okay=False), default=None, help="Also draw FILE (.png .svg .pdf)."
    )(f)


def emit_file(records: list[dict[str, Any]], output: str, meta: dict[str, Any]) -> None:
    """Export ``records`` to ``output`` (by suffix, atomically) without printing them."""
    import pandas as pd

    from .report import export

    export(pd.DataFrame(records), output, meta)
    click.echo(f"wrote {output}", err=True)


@cli.command()
@spec_options(cell_argument=False)
@click.option(
    "--cells", default="rnn,lstm,gru", show_default=True, help="Comma-separated cells, one row each."
)
@click.option(
    "--equal",
    type=click.Choice(["hidden", "params"]),
    default="hidden",
    show_default=True,
    help="hidden: every cell gets -H; params: cells after the first get the hidden size "
    "matching the first one's parameter count.",
)
@click.option(
    "--multiple-of", type=int, default=1, show_default=True, help="With --equal params: hidden sizes of N·k."
)
@workload_options()
@timing_options(bench_flag=True)
@plot_options
@output_options
def compare(
    cells: str,
    equal: str,
    multiple_of: int,
    do_bench: bool,
    plot: str | None,
    quiet: bool,
    fmt: str,
    output: str | None,
    **kw: Any,
) -> None:
    """RNN vs LSTM vs GRU (or --cells) side by side: one row per cell type.

    Parameters, GEMM MACs per step, FLOPs per sequence, parameter and training
    memory (cost model, for --batch/--seq-len/--dtype/--train); with --bench also
    the measured time per batch (median, IQR), tokens/s, achieved GFLOP/s, the
    kernel path and the time relative to the first row. --equal params sizes
    every cell after the first (the reference) to the reference's parameter
    count, so the comparison is fair. --proj-size applies to LSTM rows only.

    \b
    Examples:
      paramcalc compare -d 28 -H 256 -L 2 --batch 64 --seq-len 28
      paramcalc compare -d 28 -H 256 -L 2 --equal params
      paramcalc compare -d 28 -H 256 -L 2 --batch 64 --seq-len 28 --bench --device cpu --output report.md
      paramcalc compare -d 28 -H 256 --cells lstm,gru --equal params --batch 32 --seq-len 50 --bench
      paramcalc compare -d 28 -H 256 -L 2 --batch 64 --seq-len 28 --bench --plot compare.png
    """
    from .compare import compare as compare_
    from .compare import parse_cells

    check_targets(output, plot)
    cell_list = parse_cells(cells) or []
    workload = workload_from_flags(kw, always=True)
    timing = timing_from_flags(kw, timed=do_bench, default_min_time=0.2)
    spec = template_spec(cell_list, kw)
    with progress(len(cell_list) if do_bench else 0, "timing", quiet) as advance:
        result = compare_(
            spec,
            cell_list,
            equal=equal,
            workload=workload,
            bench=do_bench,
            multiple_of=multiple_of,
            on_row=advance,
            **timing,
        )
    warn_noisy([r.bench for r in result.rows if r.bench is not None])
    names = " vs ".join(c.upper() for c in cell_list)
    what = (
        f"equal hidden size {spec.hidden_size}"
        if equal == "hidden"
        else (f"equal parameters: {result.rows[0].params:,} ({result.reference.cell})")
    )
    header = [f"{names}: d={spec.input_size}, L={spec.num_layers}, {workload.describe()}; {what}"]
    footer = [f"FLOPs: {result.rows[0].cost.convention}"]
    if result.benched:
        b = result.rows[0].bench
        footer.append(
            f"timed on {b.device} ({b.device_name}), {b.threads} threads, torch {b.torch_version}; "
            "time_ms = median per batch, iqr_ms = its interquartile range, "
            "time_vs_first = time / first row's time"
        )
    emit(result.records(), fmt, output, meta=result.meta(), header=header, footer=footer)
    if plot:
        result.plot(plot)
        click.echo(f"wrote {plot}", err=True)


@cli.command()
@spec_options(cell_argument=False, ranges=True)
@click.option("--cells", default="rnn,lstm,gru", show_default=True, help="Comma-separated cells.")
@click.option("--batch", "batches", default="1", show_default=True, help="Batch sizes: 32,64 or 16:128:16.")
@click.option(
    "--seq-len", "seq_lens", default="1", show_default=True, help="Sequence lengths: 28 or 10:100:10."
)
@click.option("--dtype", default="fp32", show_default=True, help="fp32, fp16, bf16 or int8.")
@click.option("--train", is_flag=True, help="Training: backward in FLOPs (and timed with --bench).")
@timing_options(bench_flag=True)
@plot_options
@output_options
def sweep(
    cells: str,
    batches: str,
    seq_lens: str,
    dtype: str,
    train: bool,
    do_bench: bool,
    plot: str | None,
    quiet: bool,
    fmt: str,
    output: str | None,
    **kw: Any,
) -> None:
    """A tidy table over ranges: one row per cell x hidden x layers x batch x seq_len.

    Ranges are start:stop:step with stop included (64:1024:64), start:stop (1:4)
    or comma lists (32,64,128); items can be mixed (16,32:128:32). Each row has
    parameters, MACs per step, FLOPs (per sequence and for the batch), parameter
    and training memory; with --bench also the measured time, tokens/s, GFLOP/s
    and kernel path, with a progress bar on stderr (not with --quiet or when
    stderr is not a terminal). At most 10,000 configurations, 500 when timing.

    \b
    Examples:
      paramcalc sweep -d 28 -H 64:1024:64 -L 1:4 --cells lstm,gru
      paramcalc sweep -d 28 -H 128,256,512 --batch 64 --seq-len 28 --format github
      paramcalc sweep -d 28 -H 64:512:64 -L 2 --batch 64 --seq-len 28 --bench --plot sweep.png
      paramcalc sweep -d 28 -H 256 --cells lstm --batch 1,8,64 --seq-len 28 --bench --output sweep.csv
    """
    from .compare import parse_cells, parse_range, sweep_configs
    from .compare import sweep as sweep_

    check_targets(output, plot)
    cell_list = parse_cells(cells) or []
    hs = parse_range(kw.pop("hidden_size"), "hidden sizes")
    layers = kw.pop("num_layers")
    timing = timing_from_flags(kw, timed=do_bench, default_min_time=0.2)
    kw.update(hidden_size=max(hs), num_layers=1)
    spec = template_spec(cell_list, kw)
    ranges: dict[str, Any] = {
        "cells": cell_list,
        "hidden_sizes": hs,
        "num_layers": layers,
        "batches": batches,
        "seq_lens": seq_lens,
        "dtype": dtype,
        "mode": "training" if train else "inference",
    }
    n = len(sweep_configs(spec, **ranges, timed=do_bench))
    with progress(n if do_bench else 0, "timing", quiet) as advance:
        result = sweep_(spec, **ranges, bench=do_bench, on_row=advance, **timing)
    warn_noisy([r.bench for r in result.rows if r.bench is not None])
    header = [f"sweep: {len(result.rows):,} configurations, {result.title()}"]
    footer = []
    if result.rows:
        footer.append(f"FLOPs: {result.rows[0].cost.convention}")
    emit(result.records(), fmt, output, meta=result.meta(), header=header, footer=footer)
    if plot:
        result.plot(plot)
        click.echo(f"wrote {plot}", err=True)


def main() -> None:  # console-script entry point
    cli.main(prog_name="paramcalc")


if __name__ == "__main__":  # pragma: no cover
    main()
