"""The analytic commands: count, solve, cost, explain (no torch unless --flop-check)."""

from __future__ import annotations

from typing import Any

import click

from ..errors import ParamcalcError
from ..results.text import plural
from .options import (
    build_spec,
    check_targets,
    emit,
    output_options,
    spec_options,
    workload_from_flags,
    workload_options,
)

CELL_HELP = (
    "CELL is a registered cell: rnn (alias rnn_tanh), rnn_relu, lstm, gru, the single-step "
    "rnn_cell, rnn_relu_cell, lstm_cell, gru_cell, and cifg, mgu, indrnn, mingru, minlstm "
    "(paramcalc explain CELL shows its equations)."
)


@click.command()
@spec_options()
@click.option(
    "--head",
    type=int,
    default=None,
    metavar="N",
    help="Add a classifier nn.Linear with N outputs on the stack's output (out·in + out "
    "parameters; in = P or Dh, twice that for concatenated directions).",
)
@click.option(
    "--by",
    "view",
    type=click.Choice(["tensor", "layer", "component", "total"]),
    default="tensor",
    show_default=True,
    help="One row per tensor, per layer and direction (without --head), per component "
    "(with --head), or in total.",
)
@workload_options()
@output_options
def count(
    cell: str, head: int | None, view: str, fmt: str, wide: bool, output: str | None, **kw: Any
) -> None:
    """Count the parameters of CELL, tensor by tensor, with formulas.

    CELL is a registered cell: rnn (alias rnn_tanh), rnn_relu, lstm, gru, the
    single-step rnn_cell, rnn_relu_cell, lstm_cell, gru_cell, and cifg, mgu,
    indrnn, mingru, minlstm. --head N adds a classifier nn.Linear on the
    stack's output (components rnn and head, as paramcalc report counts a
    model). With --batch/--seq-len the cost model's totals of the recurrent
    stack are added under the table (paramcalc cost has the details).

    \b
    Examples:
      paramcalc count lstm -d 28 -H 256 -L 2
      paramcalc count lstm -d 28 -H 256 -L 2 --head 10      # + Linear(256, 10): 821,770
      paramcalc count lstm -d 12 -H 16 -L 2 --bidirectional --proj-size 6
      paramcalc count lstm -d 40 -H 512 --proj-size 128 --bias-vectors 1   # TF num_proj LSTMP
      paramcalc count lstm -d 28 -H 256 --peephole
      paramcalc count gru -d 64 -H 256 --convention keras --no-reset-after
      paramcalc count lstm -d 32 -H 64 -L 2 --bidirectional --merge-mode sum --convention keras
      paramcalc count mgu -d 28 -H 256 --by layer --format github
      paramcalc count gru -d 28 -H 256 --format json --output gru.json
    """
    from ..core.counting import count as count_

    check_targets(output)
    if head is None and view == "component":
        raise ParamcalcError("--by component applies with --head (the stack and its head); use --by layer")
    if head is not None and view == "layer":
        raise ParamcalcError("--by layer lists the recurrent layers: with --head, use --by component")
    workload = workload_from_flags(kw)
    spec = build_spec(cell, kw)
    result: Any = count_(spec, head=head)
    footer: list[str] = []
    if workload is not None:
        from ..core.costmodel import cost

        c = cost(spec, workload)
        what = "cost of the recurrent stack" if head is not None else "cost"
        footer = [
            f"{what} ({workload.describe()}): {c.macs:,} GEMM MACs, {c.flops:,} FLOPs, "
            f"critical path {plural(c.critical_path_steps, 'step')} (paramcalc cost for the details)"
        ]
    emit(result, fmt, output, view=view, wide=wide, extra_footer=footer)


@click.command()
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
    wide: bool,
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
      paramcalc solve lstm -d 28 -H 256 -L 2 --cells gru,mgu,mingru
    """
    from ..core.solver import match_hidden, solve_budget
    from .ranges import parse_cells

    check_targets(output)
    hidden = kw["hidden_size"]
    if budget is not None and hidden is not None:
        raise ParamcalcError(
            "give either --budget (find a hidden size) or -H (a reference to match), not both"
        )
    if budget is None and hidden is None:
        raise ParamcalcError("give --budget (find a hidden size) or -H (a reference spec to match)")
    if multiple_of < 1 or multiple_of > 2**31 - 1:
        raise ParamcalcError(f"--multiple-of must be in 1..{2**31 - 1:,}, got {multiple_of}")
    cell_list = parse_cells(cells)
    proj = kw["proj_size"]
    spec = build_spec(cell, kw, hidden_size=None if hidden is not None else max(proj, 0) + 1)
    if budget is not None:
        result = solve_budget(spec, budget, cells=cell_list, multiple_of=multiple_of)
    else:
        result = match_hidden(spec, cell_list, multiple_of=multiple_of)
    emit(result, fmt, output, wide=wide)


@click.command()
@spec_options()
@workload_options(defaults=True)
@click.option(
    "--by",
    "view",
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
    help="Cross-check matmul FLOPs with torch's FlopCounterMode (and torchinfo's mult-adds); "
    "exit 1 on a mismatch. Imports torch.",
)
@click.option(
    "--flop-device",
    "device",
    default="meta",
    show_default=True,
    help="Device for --flop-check: meta, cpu, cuda[:N].",
)
@click.option(
    "--fused", is_flag=True, help="--flop-check with oneDNN/cuDNN fused RNN kernels on (they hide matmuls)."
)
@output_options
def cost(
    cell: str,
    view: str,
    backward: str,
    no_input_proj: bool,
    no_recurrent: bool,
    no_projection: bool,
    no_bias_ops: bool,
    no_elementwise: bool,
    flop_check: bool,
    device: str,
    fused: bool,
    fmt: str,
    wide: bool,
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
      paramcalc cost mingru -d 28 -H 256 -L 2 --batch 64 --seq-len 1024
      paramcalc cost lstm -d 28 -H 256 -L 2 --batch 4 --seq-len 10 --train --flop-check
    """
    from ..core.costmodel import cost as cost_

    check_targets(output)
    workload = workload_from_flags(kw, always=True)
    spec = build_spec(cell, kw)
    if (fused or device != "meta") and not flop_check:
        raise ParamcalcError("--flop-device and --fused only apply with --flop-check")
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
    check = None
    if flop_check:
        from ..checks.flopcount import flop_check as run_flop_check

        check = run_flop_check(spec, workload, device=device, fused=fused)
    emit(result, fmt, output, view=view, wide=wide)
    if check is not None:
        from ..render.draw import MACHINE_FORMATS

        if fmt in MACHINE_FORMATS:
            click.echo(check.render("simple"), err=True)
        else:
            click.echo("")
            click.echo(check.render(fmt, wide=wide))
        if check.ok is None:
            click.echo(f"warning: flop check {check.status.value} on {check.device}", err=True)
        elif not check.ok:
            click.echo(f"flop check: {check.status.value}", err=True)
            click.get_current_context().exit(1)


@click.command()
@spec_options(hidden_required=False, input_required=False)
@output_options
def explain(cell: str, fmt: str, wide: bool, output: str | None, **kw: Any) -> None:
    """The equations of CELL and what every tensor multiplies, for the given sizes.

    Shows the update equations of the cell (in the layout the flags choose:
    peepholes, reset-before GRU, bias vectors) and, for the first layer, each
    tensor with its shape, the term it enters and why it has that shape: the
    seed note's "weight_ih is (1024, 28) because four gate blocks" as a command.

    CELL may also name a block of today's recurrent language models (mamba,
    mamba2, rwkv, ...): its equations, numbered, and the tensor behind each
    term, with its shape rule over the block's sizes (no -d/-H needed).

    \b
    Examples:
      paramcalc explain lstm -d 28 -H 256
      paramcalc explain gru -d 28 -H 256 --convention keras --no-reset-after
      paramcalc explain mgu -d 28 -H 256
      paramcalc explain lstm -d 40 -H 512 --proj-size 128 --peephole
      paramcalc explain mamba
    """
    from ..core.blocks import registered_blocks

    check_targets(output)
    key = cell.strip().lower().replace("-", "_")
    block = next((b for b in registered_blocks() if b.name == key), None)
    if block is not None:
        from ..core.blocks.explainblock import explain_block

        emit(explain_block(block), fmt, output, wide=wide)
        return
    from ..core.cells import find_cell, get_cell
    from ..core.explain import explain as explain_

    if find_cell(cell) is None:
        blocks = ", ".join(b.name for b in registered_blocks())
        try:
            get_cell(cell)  # the registry's one line, with the blocks named too
        except ParamcalcError as exc:
            raise ParamcalcError(f"{exc}; or a block: {blocks}") from None
    if kw["input_size"] is None:
        raise ParamcalcError("give the input size: -d/--input-size")
    emit(explain_(build_spec(cell, kw)), fmt, output, wide=wide)
