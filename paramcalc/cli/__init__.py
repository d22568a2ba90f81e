"""The ``paramcalc`` command line: parse flags, call the library, render. Nothing else.

Exit codes: 0 ok; 1 a cross-check found a mismatch; 2 a usage or input error (one line on
stderr); 3 an unexpected internal error (one line asking for a report; the traceback with
``--debug`` or ``PARAMCALC_DEBUG=1``); 4 ``inspect`` found no mismatch but could not verify
everything (a recurrent layer not identified, ties not visible); 130 interrupted; 143
terminated. No traceback reaches a user otherwise. torch and pandas are imported only by the
commands that need them, so analytic queries such as ``paramcalc count`` start fast.

The library's messages name Python parameters (```min_run_time```); the CLI is the one place
that speaks flags, and :func:`.flags.say` re-words each message with the running command's own
(``--min-time``; :mod:`.flags`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import click

from ..errors import ParamcalcError, Terminated
from ..version import __version__
from .flags import reword, say

ISSUES_URL = "https://github.com/paramcalc/paramcalc/issues"
#: The variable click's shell completion sets: ``eval "$(_PARAMCALC_COMPLETE=bash_source paramcalc)"``.
COMPLETE_VAR = "_PARAMCALC_COMPLETE"
#: Exit codes (see the module docstring and docs/cli.md).
EXIT_MISMATCH = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_UNVERIFIED = 4

#: command name -> (module, attribute): a command's module is imported only when it runs (or for
#: the help listing), so ``paramcalc count`` loads the analytic commands and nothing else.
COMMANDS: dict[str, tuple[str, str]] = {
    "count": ("paramcalc.cli.analytic", "count"),
    "solve": ("paramcalc.cli.analytic", "solve"),
    "cost": ("paramcalc.cli.analytic", "cost"),
    "explain": ("paramcalc.cli.analytic", "explain"),
    "check": ("paramcalc.cli.torchcmds", "check_cmd"),
    "report": ("paramcalc.cli.torchcmds", "report_cmd"),
    "inspect": ("paramcalc.cli.torchcmds", "inspect_cmd"),
    "bench": ("paramcalc.cli.timingcmds", "bench"),
    "predict": ("paramcalc.cli.predictcmds", "predict"),
    "compare": ("paramcalc.cli.timingcmds", "compare"),
    "sweep": ("paramcalc.cli.timingcmds", "sweep"),
    "design": ("paramcalc.cli.designcmd", "design"),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (see :data:`COMMANDS`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            import importlib

            module, attr = COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """click's resolution, with "did you mean" drawn from every command (loaded or not)."""
        name = click.utils.make_str(args[0])
        if self.get_command(ctx, name) is None and not name.startswith("-") and not ctx.resilient_parsing:
            no_such = getattr(click.exceptions, "NoSuchCommand", None)  # click >= 8.4
            if no_such is not None:
                raise no_such(name, possibilities=self.list_commands(ctx), ctx=ctx)
            from difflib import get_close_matches

            close = get_close_matches(name, self.list_commands(ctx))
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise click.UsageError(f"No such command {name!r}.{hint}", ctx)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a library error it raises is re-worded with the command's flags."""
        try:
            return super().invoke(ctx)
        except ParamcalcError as exc:
            name = ctx.invoked_subcommand
            command = self.get_command(ctx, name) if name else None
            exc.args = (reword(str(exc), command, lambda other: self.get_command(ctx, other)),)
            raise


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="paramcalc")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
def cli(debug: bool) -> None:
    """paramcalc: what a recurrent network costs before you train it.

    \b
    Examples:
      paramcalc count lstm -d 28 -H 256 -L 2
      paramcalc explain gru -d 28 -H 256
      paramcalc solve gru -d 28 -L 2 --budget 1.5M
      paramcalc cost lstm -d 28 -H 256 -L 2 --batch 64 --seq-len 28
      paramcalc check lstm -d 28 -H 256 -L 2
      paramcalc compare -d 28 -H 256 -L 2 --batch 64 --seq-len 28 --bench
      paramcalc predict lstm -d 28 -H 256 -L 2 --batch 64 --seq-len 28
      paramcalc design -d 80 --batch 32 --seq-len 200 --train --max-params 5M --max-memory 1GiB
    """


#: Longest message printed whole; a longer one (a 5,000-digit number echoed back) is cut.
MAX_MESSAGE = 400


def _line(message: str) -> str:
    from ..results.text import safe_text

    text = safe_text(" ".join(str(message).split()))
    if len(text) > MAX_MESSAGE:
        text = f"{text[: MAX_MESSAGE - 40]}... ({len(text):,} characters in all)"
    return text


def _err(message: str) -> None:
    try:
        click.echo(message, err=True)
    except OSError:  # stderr is gone too: nothing more to say
        pass


def _usage_hint(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    if ctx is None or not isinstance(exc, click.UsageError):
        return ""
    path = ctx.command_path
    if getattr(exc, "possibilities", None):  # "Did you mean ...?" says it already
        return ""
    return f"; try '{path} -h'"


def _stdout_failed(exc: OSError) -> int:
    """stdout could not be written (a closed pipe, a full device): end cleanly, non-zero."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    if exc.errno == errno.EPIPE:
        return 141  # the reader went away (`| head`): stop quietly, as shell tools do
    _err(f"Error: cannot write the output: {exc.strerror or exc}")
    return 2


def run(args: Sequence[str] | None = None) -> int:
    """Run the CLI on ``args`` (default ``sys.argv[1:]``) and return the exit code."""
    with _one_line_warnings():
        return _run(args)


def _run(args: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if args is None else args)
    debug = "--debug" in argv or os.environ.get("PARAMCALC_DEBUG", "") not in ("", "0")
    if sys.stdout is None:  # started with stdout closed (`>&-`): every result would be lost
        _err("Error: standard output is closed: nothing could be printed")
        return 2
    if COMPLETE_VAR in os.environ:  # the shell asks for completions (docs/cli.md: shell completion)
        try:
            cli.main(argv, prog_name="paramcalc", complete_var=COMPLETE_VAR)
        except SystemExit as exc:  # click ends completion with sys.exit
            return exc.code if isinstance(exc.code, int) else 0
        return 0
    if not argv:
        ctx = click.Context(cli, info_name="paramcalc", help_option_names=["-h", "--help"])
        click.echo(cli.get_help(ctx))
        return 0
    try:
        rv = cli.main(argv, prog_name="paramcalc", standalone_mode=False, obj={"argv": argv})
        sys.stdout.flush()
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc_ctx = getattr(exc, "ctx", None)
        where = f"{exc_ctx.command_path}: " if exc_ctx is not None else ""
        message = _line(exc.format_message())
        hint = _usage_hint(exc)
        _err(f"Error: {where}{message.rstrip('.') if hint else message}{hint}")
        return 2
    except ParamcalcError as exc:
        _err(f"Error: {_line(str(exc))}")
        return 2
    except Terminated:
        _err("Terminated.")
        return 143
    except (click.Abort, KeyboardInterrupt):
        _err("Aborted.")
        return 130
    except OSError as exc:
        if exc.errno in (errno.EPIPE, errno.ENOSPC, errno.EBADF, errno.EIO) or isinstance(
            exc, BrokenPipeError
        ):
            return _stdout_failed(exc)
        return _internal(exc, debug)
    except Exception as exc:  # anything else is our bug: one line, exit 3
        return _internal(exc, debug)


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """paramcalc's own warnings (a plugin that failed to load) as one ``warning:`` line each."""
    import warnings

    from ..errors import ParamcalcWarning

    shown = warnings.showwarning

    def show(
        message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        if isinstance(category, type) and issubclass(category, ParamcalcWarning):
            _err(f"warning: {_line(say(str(message)))}")
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def _internal(exc: BaseException, debug: bool) -> int:
    if debug:
        import traceback

        traceback.print_exception(exc)
    from ..core.cells import plugin_culprit

    culprit = plugin_culprit(exc)  # a registered cell's own module failed: not our bug
    if culprit is not None:
        _err(f"Error: {_line(culprit)}")
        return 2
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    _err(
        f"Error: internal error: {type(exc).__name__}: {_line(first)} "
        f"(please report it at {ISSUES_URL}; rerun with --debug for the traceback)"
    )
    return 3


def main() -> None:  # console-script entry point
    code = run()
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError as exc:
        code = _stdout_failed(exc) if code == 0 else code
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
