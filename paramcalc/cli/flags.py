"""Python parameter names -> this CLI's flags, read from click's own option lists.

The library speaks Python: a message (an error, a warning, a note) that names a parameter marks
it with backticks, as Python code: ```min_run_time```, ```threads=1```, ```device='meta'```,
```use_torchinfo=False```, or a call of another command's function, ```predict(refresh=True)```
(:mod:`paramcalc.errors`). Every option of a command is declared under the name of the library's
parameter it sets (``--min-time`` sets ``min_run_time``), so the CLI shows the flag in its
place, found by walking the command's ``click.Option`` objects (``opt.name -> opt.opts``):

>>> import click
>>> @click.command()
... @click.option("--min-time", "min_run_time", type=float)
... @click.option("--threads", type=int)
... @click.option("--torchinfo/--no-torchinfo", "use_torchinfo", default=True)
... def bench(min_run_time: float, threads: int, use_torchinfo: bool) -> None: ...
>>> reword("noisy: try `min_run_time=1` or `threads=1`", bench)
'noisy: try --min-time 1 or --threads 1'
>>> reword("raise `min_run_time`; turned off (`use_torchinfo=False`)", bench)
'raise --min-time; turned off (--no-torchinfo)'

A name the command has no option for, and any other backticked text, stays as it is.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import click

#: Python code in a message: a parameter, ``name=value``, or ``command(name=value, ...)``.
_CODE = re.compile(r"`([^`\n]+)`")
_MISSING = object()


@lru_cache(maxsize=64)
def options(command: click.Command) -> dict[str, click.Option]:
    """The command's options by the name of the library parameter each sets."""
    return {p.name: p for p in command.params if isinstance(p, click.Option) and p.name}


def flag(option: click.Option, value: Any = _MISSING) -> str | None:
    """How the command line says ``name=value`` (``name`` alone: the flag itself): ``--threads
    1``, ``--bidirectional``, ``--no-torchinfo``; ``None`` when it cannot (a false flag without
    a ``--no-`` form)."""
    long = [o for o in option.opts if o.startswith("--")] or option.opts
    if value is _MISSING:
        return long[0]
    if option.is_flag or option.secondary_opts:
        if value is True:
            return long[0]
        off = [o for o in option.secondary_opts if o.startswith("--")]
        return off[0] if value is False and off else None
    return f"{long[0]} {value}"


def _keywords(code: str) -> tuple[str | None, list[tuple[str, Any]]] | None:
    """``(function, [(name, value), ...])`` of ``code``: ``name``, ``name=value`` (function
    ``None``) or ``function(name=value, ...)``; ``None`` for anything else."""
    try:
        tree = ast.parse(code.strip(), mode="eval").body
    except SyntaxError:
        try:
            tree = ast.parse(f"_({code.strip()})", mode="eval").body
        except SyntaxError:
            return None
        assert isinstance(tree, ast.Call)
        tree.func = ast.Name("")
    if isinstance(tree, ast.Name):
        return None, [(tree.id, _MISSING)]
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, ast.Name) or tree.args:
        return None
    try:
        pairs = [(k.arg, ast.literal_eval(k.value)) for k in tree.keywords if k.arg]
    except ValueError:
        return None
    return (tree.func.id or None), pairs


def _flags(command: click.Command, pairs: list[tuple[str, Any]]) -> str | None:
    found = options(command)
    out = []
    for name, value in pairs:
        option = found.get(name)
        said = None if option is None else flag(option, value)
        if said is None:
            return None
        out.append(said)
    return " ".join(out)


def reword(
    text: str, command: click.Command | None, find: Callable[[str], click.Command | None] | None = None
) -> str:
    """``text`` with each backticked parameter of ``command`` replaced by its flag, and each
    backticked call of a command that ``find(name)`` returns by ``paramcalc NAME FLAGS``."""
    if "`" not in text or command is None:
        return text

    def one(m: re.Match[str]) -> str:
        parsed = _keywords(m.group(1))
        if parsed is None:
            return m.group(0)
        function, pairs = parsed
        if function is None:
            return _flags(command, pairs) or m.group(0)
        other = find(function) if find is not None else None
        said = None if other is None else _flags(other, pairs)
        return f"paramcalc {function} {said}".rstrip() if said is not None else m.group(0)

    return _CODE.sub(one, text)


def say(text: str) -> str:
    """A library message as this CLI says it, inside a running command: each Python parameter it
    names (```threads=1```) replaced by the command's flag (``--threads 1``; :func:`reword`)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or "`" not in text:
        return text
    root = ctx.find_root()
    group = root.command

    def find(name: str) -> click.Command | None:
        return group.get_command(root, name) if isinstance(group, click.Group) else None

    return reword(text, ctx.command, find)
