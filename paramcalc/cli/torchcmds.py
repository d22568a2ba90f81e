"""The commands that meet torch: check, report (TOML architectures), inspect (modules, files)."""

from __future__ import annotations

import os
from typing import Any

import click

from ..errors import ParamcalcError
from .options import (
    build_spec,
    check_targets,
    cli_args,
    device_option,
    emit,
    output_options,
    spec_options,
    torchinfo_option,
)


@click.command("check")
@spec_options()
@device_option("meta")
@torchinfo_option
@output_options
@click.pass_context
def check_cmd(
    ctx: click.Context,
    /,
    cell: str,
    device: str,
    use_torchinfo: bool,
    fmt: str,
    wide: bool,
    output: str | None,
    **kw: Any,
) -> None:
    """Build CELL in torch and compare it with the formulas, tensor by tensor.

    Builds the module on --device: the real torch.nn module (nn.RNN, nn.LSTM,
    nn.GRU or a cell) where the layout is PyTorch's, else the cell's reference
    module (paramcalc's step-by-step implementation, tested against the paper's
    equations), and compares every tensor of named_parameters() with the
    analytic row: name, order, shape, element count, then the totals, and
    torchinfo's total. On meta (the default) nothing is allocated, so even a
    17-billion-parameter stack checks in a second.

    \b
    Exit status: 0 all agree, 1 any disagreement (listed), 2 a user error.

    \b
    Examples:
      paramcalc check lstm -d 28 -H 256 -L 2
      paramcalc check lstm -d 16384 -H 16384 -L 8        # ~17 billion parameters, on meta
      paramcalc check gru -d 64 -H 128 --bidirectional --device cpu
      paramcalc check mgu -d 28 -H 64 -L 2
      paramcalc check gru -d 64 -H 256 --convention keras --no-reset-after
      paramcalc check lstm -d 28 -H 256 --format json
    """
    from ..checks.tensorcheck import check_spec

    check_targets(output)
    spec = build_spec(cell, kw)
    result = check_spec(spec, device, use_torchinfo=use_torchinfo)
    emit(result, fmt, output, wide=wide)
    if not result.ok:
        ctx.exit(1)


@click.command("report")
@click.argument("file", metavar="NAME_OR_FILE", required=False)
@click.option(
    "--by",
    "view",
    type=click.Choice(["tensor", "component", "total"]),
    default="tensor",
    show_default=True,
    help="One row per tensor, per component, or in total.",
)
@click.option("--list", "do_list", is_flag=True, help="List the bundled architectures (no NAME_OR_FILE).")
@click.option("--check", "do_check", is_flag=True, help="Also build it in torch and compare every tensor.")
@click.option("--device", default=None, help="With --check: meta (default), cpu, cuda, cuda:N or mps.")
@torchinfo_option
@output_options
@click.pass_context
def report_cmd(
    ctx: click.Context,
    file: str | None,
    view: str,
    do_list: bool,
    do_check: bool,
    device: str | None,
    use_torchinfo: bool,
    fmt: str,
    wide: bool,
    output: str | None,
) -> None:
    """Count a whole architecture described in a TOML file, with formulas.

    NAME_OR_FILE is a TOML file, or the name of an architecture bundled with
    paramcalc (--list shows them: the seed's mnist_rows_lstm, awd_lstm_lm,
    deepspeech2, gnmt, ...). A file lists components: recurrent stacks (any
    registered cell), embedding, linear, layernorm, dropout, conv1d, conv2d,
    batchnorm1d, batchnorm2d, attention. A linear may tie its weight to an
    embedding (tie = "encoder"): the tensor is shown under both and counted
    once. The schema is in docs/architectures.md. With --check the same model
    is built in torch on --device and compared tensor by tensor (exit 1 on any
    disagreement).

    \b
    Examples:
      paramcalc report --list
      paramcalc report mnist_rows_lstm
      paramcalc report awd_lstm_lm --by component
      paramcalc report awd_lstm_lm --check
      paramcalc report mnist_rows_lstm --check --device cpu
      paramcalc report my_model.toml --format json --output report.json
    """
    from ..core.architecture import count_architecture, find_architecture, load_architecture

    check_targets(output)
    if device is not None and not do_check:
        raise ParamcalcError("--device only applies with --check")
    if not use_torchinfo and not do_check:
        raise ParamcalcError("--no-torchinfo only applies with --check")
    if do_list:
        if file is not None or do_check or view != "tensor":
            raise ParamcalcError("--list takes no NAME_OR_FILE, --by or --check")
        from ..core.architecture import BundledArchitectures

        emit(BundledArchitectures(), fmt, output, wide=wide)
        return
    if file is None:
        raise click.UsageError("Missing argument 'NAME_OR_FILE'.", ctx)
    path, source = find_architecture(file)
    arch = load_architecture(path)
    counted = count_architecture(arch, source=source)
    result = None
    if do_check:
        from ..checks.tensorcheck import check_architecture

        result = check_architecture(arch, device or "meta", use_torchinfo=use_torchinfo)
    emit(counted, fmt, output, view=view, wide=wide)
    if result is not None:
        from ..render.draw import MACHINE_FORMATS

        if fmt in MACHINE_FORMATS:
            from ..results.text import safe_text

            click.echo("\n".join(map(safe_text, result.summary())), err=True)
        else:
            click.echo("")
            click.echo(result.render(fmt, wide=wide))
        if not result.ok:
            ctx.exit(1)


@click.command("inspect")
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
@click.option(
    "--by",
    "view",
    type=click.Choice(["module", "tensor", "formula", "context", "model"]),
    default=None,
    help="One row per module (analytic vs actual; the default) or per tensor; for a config.json "
    "one row per tensor of a layer with its formula (formula, the default) or every tensor; for a "
    "comparison one row per model and context (context, the default) or per model.",
)
@click.option("--device", default=None, help="For package.module:factory: cpu (default) or meta.")
@click.option(
    "--check",
    is_flag=True,
    help="For a config.json: build the transformers model on the meta device and compare every "
    "tensor's name and shape ([hf] extra).",
)
@click.option(
    "--context",
    "contexts",
    type=click.IntRange(min=1),
    multiple=True,
    help="Compare config.json models at this context length (repeat it; default 2048 and 32768 "
    "when several models are given).",
)
@click.option(
    "--dtype",
    default="bf16",
    show_default=True,
    help="With several models or --context: the dtype of the state and KV cache (fp32, fp16, bf16).",
)
@output_options
@click.pass_context
def inspect_cmd(
    ctx: click.Context,
    targets: tuple[str, ...],
    view: str | None,
    device: str | None,
    check: bool,
    contexts: tuple[int, ...],
    dtype: str,
    fmt: str,
    wide: bool,
    output: str | None,
) -> None:
    """Analyse a saved model FILE or a model built by package.module:factory.

    \b
    TARGET is either
      a file, told by its content:
        a torch checkpoint (a state dict, or a dict holding one under
        state_dict, model, ...; torch.load(weights_only=True): nothing in it
        is executed) or a .safetensors file (header only, [safetensors]):
        every recurrent layer is read back from names and shapes;
        an ONNX model ([onnx]): its LSTM/GRU/RNN nodes and their attributes;
        a Keras .keras or .h5 file ([keras]): its layers from the config;
      a Hugging Face config.json (model_type mamba, falcon_mamba, mamba2,
        rwkv, ...): the model's tensors with their formulas and totals;
        --check builds it with transformers on the meta device ([hf]) and
        compares every tensor (docs/blocks.md);
    or
      package.module:factory, a callable (or an nn.Module) that is imported and
      called with no arguments, under --device (meta builds it with no memory).

    \b
    Several config.json files (or names of the bundled ones: mamba-130m,
    rwkv-4-169m, ...; data/hf), or one with --context, are compared side by
    side: parameters, FLOPs per token, the state at each context and the KV
    cache of an attention model of the same width and depth (--by context or
    --by model).

    Per module: the analytic count (formula) vs the actual (stored) one; layers
    with no adapter are "counted, no formula". Nothing in a file is trusted
    beyond its names and shapes (docs/inspect.md).

    \b
    Exit status: 0 ok (every stored parameter explained by a formula or counted
    with none), 1 a formula disagrees, 2 a user error or unreadable file, 4
    unverified (no disagreement, but a recurrent layer could not be identified
    or ties cannot be seen; the reasons are listed).

    \b
    Examples:
      paramcalc inspect checkpoint.pt
      paramcalc inspect checkpoint.pt --by tensor
      paramcalc inspect data/models/rows_lstm.safetensors
      paramcalc inspect data/models/rows_lstm.onnx
      paramcalc inspect data/models/rows_lstm.keras
      paramcalc inspect data/hf/mamba-130m.json --check
      paramcalc inspect mamba-130m rwkv-4-169m --context 2048 --context 32768
      paramcalc inspect mypkg.models:build_lm
      paramcalc inspect mypkg.models:build_lm --device meta --format json
    """
    check_targets(output)
    if len(targets) > 1 or contexts:
        _inspect_models(targets, view, device, check, contexts, dtype, fmt, wide, output)
        return
    target, bundled = _bundled_target(targets[0])
    if target.lower().endswith(".json") and os.path.lexists(target):
        code = _inspect_config(target, bundled, view, device, check, fmt, wide, output)
    else:
        code = _inspect_analysis(target, view, device, check, fmt, wide, output)
    if code:
        ctx.exit(code)


def _inspect_models(
    targets: tuple[str, ...],
    view: str | None,
    device: str | None,
    check: bool,
    contexts: tuple[int, ...],
    dtype: str,
    fmt: str,
    wide: bool,
    output: str | None,
) -> None:
    """``inspect a.json b.json --context N``: language models side by side."""
    from ..studies.modelcompare import compare_models

    if check or device is not None:
        raise ParamcalcError("--check and --device apply to one TARGET, not to a comparison")
    if view not in (None, "context", "model"):
        raise ParamcalcError("a comparison of models is shown --by context or --by model")
    compared = compare_models(list(targets), contexts or (2048, 32768), dtype)
    emit(compared, fmt, output, view=view or "context", wide=wide)


def _bundled_target(target: str) -> tuple[str, str]:
    """``target``, or the path of the bundled config.json it names (``mamba-130m``), and that name."""
    if os.path.lexists(target) or target.lower().endswith(".json") or ":" in target:
        return target, ""
    from ..bridge.readers.hf_config import bundled_configs

    found = bundled_configs().get(target)
    return (os.fspath(found), target) if found is not None else (target, "")


def _inspect_config(
    target: str,
    bundled: str,
    view: str | None,
    device: str | None,
    check: bool,
    fmt: str,
    wide: bool,
    output: str | None,
) -> int:
    """``inspect config.json``: the model's tensors with their formulas (``--check``: against
    transformers); the exit code."""
    from ..checks.hfcheck import inspect_config

    if device is not None:
        raise ParamcalcError("--device applies to package.module:factory, not to a file")
    if view == "module":
        raise ParamcalcError("a config.json is shown --by formula or --by tensor")
    report = inspect_config(target, check=check)
    if bundled:
        import dataclasses

        model = dataclasses.replace(report.model, source=f"bundled data/hf/{bundled}.json")
        report = dataclasses.replace(report, model=model)
    emit(report, fmt, output, view=view or "formula", wide=wide)
    return 0 if report.ok else 1


def _inspect_analysis(
    target: str,
    view: str | None,
    device: str | None,
    check: bool,
    fmt: str,
    wide: bool,
    output: str | None,
) -> int:
    """``inspect FILE`` or ``inspect package.module:factory``: every layer, analytic vs stored;
    the exit code of the verdict."""
    if check:
        raise ParamcalcError("--check applies to a config.json")
    if view in ("formula", "context", "model"):
        raise ParamcalcError(f"--by {view} applies to a config.json")
    view = view or "module"
    from ..checks.inspection import Analysis, analyze, inspect, load_factory, spec_line
    from ..core.blocks.report import ModelReport

    if os.path.lexists(target):
        if device is not None:
            raise ParamcalcError("--device applies to package.module:factory, not to a file")
        if target.lower().endswith(".toml"):
            raise ParamcalcError(f"{target}: a TOML architecture; use paramcalc report {target}")
        found = inspect(target)
        if isinstance(found, ModelReport):  # a language model recognised from its tensors
            emit(found, fmt, output, view="tensor" if view == "tensor" else "formula", wide=wide)
            return 0 if found.ok else 1
        analysis: Analysis = found
    elif ":" in target and "/" not in target.partition(":")[0]:
        analysis = analyze(load_factory(target, device or "cpu"))
    else:
        raise ParamcalcError(f"{target}: no such file (and not package.module:factory)")
    # each recurrent stack found, with the count command that describes it
    stacks = {
        spec_line(p, s): f"{spec_line(p, s)}  ->  paramcalc count {cli_args(s)}"
        for p, s in analysis.specs.items()
    }
    emit(analysis, fmt, output, view=view, wide=wide, lines=lambda line: stacks.get(line, line))
    return _verdict_exit(analysis.status)


def _verdict_exit(status: Any) -> int:
    """The exit code of an ``inspect`` verdict: 0 ok, 1 mismatch, 4 unverified."""
    from ..results.base import Status
    from . import EXIT_MISMATCH, EXIT_UNVERIFIED

    return {Status.MISMATCH: EXIT_MISMATCH, Status.UNVERIFIED: EXIT_UNVERIFIED}.get(status, 0)
