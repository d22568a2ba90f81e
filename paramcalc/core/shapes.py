"""Shape rules: a tensor's shape as expressions over named sizes, parsed once, then evaluated,
written out as formulas, and compiled into plain arithmetic.

A rule is one expression per dimension, e.g. ``("G·Dh", "d")`` for PyTorch's ``weight_ih``. An
expression is built from

* the sizes of the entry (for a recurrent cell :data:`CELL_SIZES`: ``G`` the gate blocks the
  tensor stacks, ``Dh`` the hidden size, ``d`` the layer's input features, ``P`` the projection
  (0 without one), ``R`` = ``P or Dh``, the width of the recurrent input),
* non-negative integers, ``+``, ``·`` (or ``*``), ``//`` by a positive integer, ``min(a, b)``,
  ``max(a, b)``, parentheses,
* and ``a if x == y else b`` with a comparison (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``).

There is no subtraction: with sizes >= 0 no dimension can be negative. ``G`` is a constant of
the entry (the number of gate blocks): formulas show its value (``4Dh·d``), the other sizes as
symbols. A block of another kind (a Mamba mixer, issue 18) names its own sizes (``d_model``,
``d_inner``, ``d_state``, ``d_conv``, ``dt_rank``, ...): the parser, the formulas and the
compiler take the size names as an argument and know nothing of recurrent cells.

Every rule is parsed with :mod:`ast` and checked node by node against the grammar above when
the template is made; :func:`compile_sum` and :func:`compile_tuple` then build a Python lambda
from the checked nodes, so counting is one call of plain arithmetic per layer.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ParamcalcError

#: The sizes a recurrent cell's rules may name (see the module docstring).
CELL_SIZES: tuple[str, ...] = ("G", "Dh", "d", "P", "R")
#: Sizes shown by their value in formulas (constants of an entry, not of a spec).
CONSTANT_SIZES = frozenset({"G"})
#: The sizes of a layer, as the compiled functions take them (``G`` is folded in).
LAYER_ARGS: tuple[str, ...] = ("Dh", "d", "P", "R")

_COMPARE = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_GRAMMAR = "sizes, integers, +, ·, // by an integer, min(a, b), max(a, b), (a if x == y else b)"
_FUNCTIONS: dict[str, Callable[..., int]] = {"min": min, "max": max}


def parse_rule(rule: Sequence[str], sizes: Sequence[str] = CELL_SIZES) -> tuple[ast.expr, ...]:
    """The checked expression of each dimension of ``rule`` (one-line error naming a bad one)."""
    if isinstance(rule, str) or not isinstance(rule, (tuple, list)):
        raise ParamcalcError(f"a shape rule is a tuple of dimension expressions, got {type(rule).__name__}")
    if not rule:
        raise ParamcalcError("a shape rule needs at least one dimension")
    return tuple(parse_dim(text, sizes) for text in rule)


def parse_dim(text: str, sizes: Sequence[str] = CELL_SIZES) -> ast.expr:
    """One dimension expression, parsed and checked."""
    if not isinstance(text, str) or not text.strip():
        raise ParamcalcError(f"a dimension of a shape rule must be a non-empty string, got {text!r}")
    source = text.replace("·", "*").replace("×", "*").strip()
    try:
        node = ast.parse(source, mode="eval").body
    except SyntaxError:
        raise ParamcalcError(f"shape rule {text!r} is not an expression of {_GRAMMAR}") from None
    _check(node, text, frozenset(sizes))
    return node


def _check(node: ast.AST, text: str, sizes: frozenset[str]) -> None:
    """Refuse anything outside the grammar (the module docstring), naming it."""
    check = _CHECKS.get(type(node))
    if check is None:
        raise _bad(text, f"{type(node).__name__} is not allowed")
    for part in check(node, text, sizes):
        _check(part, text, sizes)


def _bad(text: str, what: str) -> ParamcalcError:
    return ParamcalcError(f"shape rule {text!r}: {what} (a rule uses {_GRAMMAR})")


def _constant(node: Any, text: str, sizes: frozenset[str]) -> list[ast.expr]:
    if type(node.value) is not int or node.value < 0:
        raise _bad(text, f"{node.value!r} is not a non-negative integer")
    return []


def _name(node: Any, text: str, sizes: frozenset[str]) -> list[ast.expr]:
    if node.id not in sizes:
        raise _bad(text, f"unknown size {node.id!r}: expected one of {', '.join(sorted(sizes))}")
    return []


def _binop(node: Any, text: str, sizes: frozenset[str]) -> list[ast.expr]:
    if not isinstance(node.op, (ast.Add, ast.Mult, ast.FloorDiv)):
        raise _bad(text, f"the operator {type(node.op).__name__} is not allowed")
    right = node.right
    if isinstance(node.op, ast.FloorDiv) and not (
        isinstance(right, ast.Constant) and type(right.value) is int and right.value > 0
    ):
        raise _bad(text, "// divides by a positive integer only")
    return [node.left, node.right]


def _ifexp(node: Any, text: str, sizes: frozenset[str]) -> list[ast.expr]:
    test = node.test
    if not (isinstance(test, ast.Compare) and all(isinstance(op, _COMPARE) for op in test.ops)):
        raise _bad(text, "a condition must compare sizes (==, !=, <, <=, >, >=)")
    return [test.left, *test.comparators, node.body, node.orelse]


def _call(node: Any, text: str, sizes: frozenset[str]) -> list[ast.expr]:
    name = node.func.id if isinstance(node.func, ast.Name) else ""
    if name not in _FUNCTIONS or node.keywords or len(node.args) < 2:
        raise _bad(text, "the only functions are min(a, b, ...) and max(a, b, ...)")
    return list(node.args)


#: The node types of the grammar: each check refuses what it must and gives the parts to check.
_CHECKS: dict[type, Callable[[Any, str, frozenset[str]], list[ast.expr]]] = {
    ast.Constant: _constant,
    ast.Name: _name,
    ast.BinOp: _binop,
    ast.IfExp: _ifexp,
    ast.Call: _call,
}


# --- evaluation and formulas ---------------------------------------------------------------------


def _compare(op: ast.cmpop, a: int, b: int) -> bool:
    return {
        ast.Eq: a == b,
        ast.NotEq: a != b,
        ast.Lt: a < b,
        ast.LtE: a <= b,
        ast.Gt: a > b,
        ast.GtE: a >= b,
    }[type(op)]


def _true(test: ast.Compare, env: Mapping[str, int]) -> bool:
    left = evaluate(test.left, env)
    for op, comparator in zip(test.ops, test.comparators, strict=True):
        right = evaluate(comparator, env)
        if not _compare(op, left, right):
            return False
        left = right
    return True


def _resolve(node: ast.expr, env: Mapping[str, int]) -> ast.expr:
    """``node`` with its conditions and min/max decided by the values in ``env``."""
    while isinstance(node, (ast.IfExp, ast.Call)):
        if isinstance(node, ast.IfExp):
            assert isinstance(node.test, ast.Compare)
            node = node.body if _true(node.test, env) else node.orelse
        else:
            assert isinstance(node.func, ast.Name)
            values = [evaluate(a, env) for a in node.args]
            best = (min if node.func.id == "min" else max)(values)
            node = node.args[values.index(best)]
    return node


def _int(node: ast.Constant) -> int:
    value = node.value
    assert type(value) is int  # checked by the parser
    return value


def evaluate(node: ast.expr, env: Mapping[str, int]) -> int:
    """The value of a checked expression (slow path: formulas and messages; counts are compiled)."""
    node = _resolve(node, env)
    if isinstance(node, ast.Constant):
        return _int(node)
    if isinstance(node, ast.Name):
        return env[node.id]
    assert isinstance(node, ast.BinOp)
    a, b = evaluate(node.left, env), evaluate(node.right, env)
    if isinstance(node.op, ast.Add):
        return a + b
    if isinstance(node.op, ast.Mult):
        return a * b
    return a // b


def product(nodes: Sequence[ast.expr]) -> ast.expr:
    """The product of ``nodes`` (a tensor's elements from its dimensions)."""
    out = nodes[0]
    for node in nodes[1:]:
        out = ast.BinOp(left=out, op=ast.Mult(), right=node)
    return out


def factors(node: ast.expr) -> list[ast.expr]:
    """The factors of a product, flattened (``G·Dh·d`` -> ``G``, ``Dh``, ``d``)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        return factors(node.left) + factors(node.right)
    return [node]


#: A symbol's text in a formula and its value (``("2Dh", 512)`` for the input of layer 1).
Symbols = Mapping[str, str]


def _monomial(node: ast.expr, sym: Symbols, env: Mapping[str, int]) -> tuple[int, list[tuple[str, str]]]:
    """A product as its integer coefficient and its other factors' (symbolic, substituted) texts."""
    coef, parts = 1, []  # type: int, list[tuple[str, str]]
    for f in factors(_resolve(node, env)):
        f = _resolve(f, env)
        if isinstance(f, ast.BinOp) and isinstance(f.op, ast.Mult):
            c, more = _monomial(f, sym, env)
            coef, parts = coef * c, parts + more
        elif isinstance(f, ast.Constant):
            coef *= _int(f)
        elif isinstance(f, ast.Name) and f.id in CONSTANT_SIZES:
            coef *= env[f.id]
        elif isinstance(f, ast.Name):
            parts.append((sym.get(f.id, f.id), str(env[f.id])))
        elif isinstance(f, ast.BinOp) and isinstance(f.op, ast.Add):
            s, n = render(f, sym, env)
            parts.append((f"({s})", f"({n})"))
        else:  # a // k
            assert isinstance(f, ast.BinOp)
            s, n = render(f.left, sym, env)
            k = evaluate(f.right, env)
            left = s if isinstance(f.left, (ast.Name, ast.Constant)) else f"({s})"
            parts.append((f"{left}//{k}", f"{n if left == s else f'({n})'}//{k}"))
    return coef, parts


def monomial_text(coef: int, parts: list[tuple[str, str]], lead: int = 1) -> tuple[str, str]:
    """``(4Dh·d, 4·256·28)``: coefficient first, then the factors; ``lead`` stacks copies
    (``2·4·256`` for two bias vectors of four gate blocks)."""
    numbers = [str(n) for n in (lead, coef) if n != 1]
    c = lead * coef
    if not parts:
        return str(c), "·".join(numbers) or str(c)
    text = "·".join(s for s, _ in parts)
    if c != 1:
        text = f"{c}·{text}" if text[0].isdigit() else f"{c}{text}"
    return text, "·".join([*numbers, *(n for _, n in parts)])


def render(node: ast.expr, sym: Symbols, env: Mapping[str, int], lead: int = 1) -> tuple[str, str]:
    """``(symbolic, substituted)`` of an expression: ``4Dh·d`` and ``4·256·28``."""
    node = _resolve(node, env)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        terms = []
        for side in (node.left, node.right):
            s, n = render(side, sym, env)
            terms.append((s, n))
        s, n = " + ".join(s for s, _ in terms), " + ".join(n for _, n in terms)
        return (s, n) if lead == 1 else (f"{lead}({s})", f"{lead}·({n})")
    return monomial_text(*_monomial(node, sym, env), lead=lead)


def text(node: ast.expr) -> str:
    """A checked expression written back (``·`` for products), for messages and notes."""
    return ast.unparse(node).replace(" * ", "·")


# --- compiled arithmetic -------------------------------------------------------------------------


class _Fold(ast.NodeTransformer):
    """Replace the constant sizes (``G``) by their values."""

    def __init__(self, constants: Mapping[str, int]) -> None:
        self.constants = constants

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in self.constants:
            return ast.Constant(self.constants[node.id])
        return node


def fold(node: ast.expr, constants: Mapping[str, int]) -> ast.expr:
    """A copy of ``node`` with ``constants`` put in."""
    import copy

    out = _Fold(constants).visit(copy.deepcopy(node))
    assert isinstance(out, ast.expr)
    return out


def _lambda(body: ast.expr, args: Sequence[str], label: str) -> Callable[..., Any]:
    """``lambda *args: body``, compiled from checked nodes (nothing else can appear in them)."""
    fn = ast.Lambda(
        args=ast.arguments(
            posonlyargs=[],
            args=[ast.arg(arg=a) for a in args],
            kwonlyargs=[],
            kw_defaults=[],
            defaults=[],
        ),
        body=body,
    )
    tree = ast.fix_missing_locations(ast.Expression(body=fn))
    code = compile(tree, f"<shape rules of {label}>", "eval")
    made = eval(code, {"__builtins__": {}, **_FUNCTIONS})  # checked nodes only (see _check)
    assert callable(made)
    return made  # type: ignore[no-any-return]


def sum_node(terms: Sequence[ast.expr]) -> ast.expr:
    """The sum of ``terms`` as one expression (``0`` for none)."""
    if not terms:
        return ast.Constant(0)
    out = terms[0]
    for term in terms[1:]:
        out = ast.BinOp(left=out, op=ast.Add(), right=term)
    return out


def compile_sum(terms: Sequence[ast.expr], args: Sequence[str], label: str) -> Callable[..., int]:
    """One function of ``args`` returning the sum of ``terms`` (0 for none)."""
    return _lambda(sum_node(terms), args, label)


def compile_tuple(
    items: Sequence[ast.expr], args: Sequence[str], label: str
) -> Callable[..., tuple[Any, ...]]:
    """One function of ``args`` returning the tuple of ``items``."""
    return _lambda(ast.Tuple(elts=list(items), ctx=ast.Load()), args, label)


def numel(shape: Sequence[int]) -> int:
    """Elements of a shape (``math.prod``)."""
    return math.prod(shape)
