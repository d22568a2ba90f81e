"""``pc.analyze``'s walk (paramcalc.checks.modulewalk) against the matching passes alone.

The walk reads a regular layer once per configuration and writes a clean group's rows only
when they are read; everything else goes through the matching passes. The reference here is
an independent, plain walk (``named_modules(remove_duplicate=False)``, every module through
its adapter, every parameter through ``match_tensors``): on every model below, ordinary and
adversarial (ties, renamed and re-parametrized weights, a wrapper read at the root whose
children are read again, adapters that name a child's tensors, shared submodules), both must
give the same reports, rows, totals and verdict.
"""

from __future__ import annotations

import random
import warnings

import pytest
import torch
import torch.nn.utils.parametrize
import torch.nn.utils.prune
from torch import nn

import paramcalc as pc
from paramcalc.bridge import adapters
from paramcalc.checks.inspection import Analysis, analyze, match_tensors
from paramcalc.checks.matching import Group, ParamInfo
from paramcalc.core.architecture import Custom, Linear, tensor_formula


def reference(module: nn.Module) -> Analysis:
    groups: list[Group] = []
    covered: list[str] = []
    named: list[tuple[str, nn.Parameter]] = []
    for path, m in module.named_modules(remove_duplicate=False):
        prefix = f"{path}." if path else ""
        named += [(prefix + k, p) for k, p in m._parameters.items() if p is not None]
        if covered and (path == covered[-1] or path.startswith(covered[-1] + ".")):
            continue
        comp = adapters.component_from_module(m, path or type(m).__name__)
        groups.append(Group(path, type(m).__name__, comp))
        if comp is not None:
            covered.append(path)
    params = [ParamInfo(n, tuple(p.shape), id(p)) for n, p in named]
    return match_tensors(groups, params, source=f"module {type(module).__name__}")


def facts(a: Analysis) -> tuple[object, ...]:
    return (
        a.modules,
        tuple(a.tensors),
        a.actual_total,
        a.analytic_total,
        a.no_formula_total,
        a.status,
        a.notes(),
    )


class Scaled(nn.Module):
    """Its adapter names a child's tensors (``inner.weight``): the group covers its subtree."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(n))
        self.inner = nn.Linear(n, n)


class Shell(nn.Module):
    """Its adapter claims ``weight`` and ``bias`` of its own, which its child holds."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.c = nn.Linear(n, n)


class Skewed(nn.Module):
    """Its adapter gets a child's shape wrong for n = 3 (a mismatch to report)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.a = nn.Linear(n, n)
        self.b = nn.Parameter(torch.zeros(n))


@pytest.fixture(scope="module", autouse=True)
def _adapters() -> None:
    @adapters.register_adapter(Scaled)
    def _scaled(m: Scaled, name: str) -> Custom:
        n = m.scale.shape[0]
        return Custom(
            name,
            f"Scaled({n})",
            (
                tensor_formula("scale", (n,), "n", f"{n}"),
                tensor_formula("inner.weight", (n, n), "n·n", f"{n}·{n}"),
                tensor_formula("inner.bias", (n,), "n", f"{n}"),
            ),
        )

    @adapters.register_adapter(Shell)
    def _shell(m: Shell, name: str) -> Custom:
        n = m.c.in_features
        return Custom(
            name,
            "Shell",
            (tensor_formula("weight", (n, n), "n·n", "x"), tensor_formula("bias", (n,), "n", "x")),
        )

    @adapters.register_adapter(Skewed)
    def _skewed(m: Skewed, name: str) -> Custom:
        n = m.a.in_features
        k = n + 1 if n == 3 else n
        return Custom(
            name,
            "Skewed",
            (tensor_formula("a.weight", (k, k), "k·k", "x"), tensor_formula("b", (n,), "n", "x")),
        )


def _leaf(rng: random.Random, n: int) -> nn.Module:
    makers = [
        lambda: nn.Linear(n, rng.choice([n, 3]), bias=rng.random() < 0.7),
        lambda: nn.LSTM(n, rng.choice([2, 3]), rng.choice([1, 2]), bidirectional=rng.random() < 0.3),
        lambda: nn.LSTM(n, 3, proj_size=2),
        lambda: nn.GRU(n, 3),
        lambda: nn.RNN(n, 2, nonlinearity=rng.choice(["tanh", "relu"])),
        lambda: nn.LSTMCell(n, 3),
        lambda: nn.GRUCell(n, 2),
        lambda: nn.RNNCell(n, 2, nonlinearity="relu"),
        lambda: nn.LayerNorm(n, elementwise_affine=rng.random() < 0.8),
        lambda: nn.Embedding(5, n),
        lambda: nn.Conv1d(n, 4, 3),
        lambda: nn.Conv2d(2, 4, (3, 2)),
        lambda: nn.BatchNorm1d(n),
        lambda: nn.BatchNorm2d(3, affine=rng.random() < 0.5),
        lambda: nn.Dropout(0.1),
        lambda: nn.ReLU(),
        lambda: nn.MultiheadAttention(4, 2),
        lambda: Scaled(n),
        lambda: Shell(n),
        lambda: Skewed(n),
    ]
    return rng.choice(makers)()


def _tree(rng: random.Random, depth: int = 0) -> nn.Module:
    if depth > 2 or rng.random() < 0.3:
        return _leaf(rng, rng.choice([2, 3, 4]))
    s = nn.Sequential(*(_tree(rng, depth + 1) for _ in range(rng.randint(1, 4))))
    if rng.random() < 0.2:
        s.register_parameter("extra", nn.Parameter(torch.zeros(2)))
    return s


def _mutate(rng: random.Random, m: nn.Module) -> nn.Module:
    """One of: a tie, a re-parametrization, pruning, a renamed weight, an extra parameter, a
    shared submodule, a tie held outside any group."""
    mods = list(m.modules())
    linears = [x for x in mods if type(x) is nn.Linear]
    lstms = [x for x in mods if type(x) is nn.LSTM]
    choice = rng.randrange(7)
    if choice == 0 and len(linears) >= 2 and linears[0].weight.shape == linears[1].weight.shape:
        linears[1].weight = linears[0].weight
    elif choice == 1 and linears:
        torch.nn.utils.parametrize.register_parametrization(linears[0], "weight", nn.Identity())
    elif choice == 2 and linears:
        torch.nn.utils.prune.random_unstructured(linears[-1], "weight", 0.5)  # type: ignore[no-untyped-call]
    elif choice == 3 and lstms:
        w = lstms[0]._parameters.pop("weight_hh_l0")
        lstms[0].register_parameter("weight_hh_l0_raw", w)
    elif choice == 4 and linears:
        linears[0].register_parameter("bias2", nn.Parameter(torch.zeros(1)))
    elif choice == 5 and isinstance(m, nn.Sequential) and len(m) > 1:
        m.append(m[0])
    elif choice == 6 and linears:
        holders = [x for x in mods if isinstance(x, nn.Sequential)]
        if holders:
            holders[-1].register_parameter("shared_w", linears[0].weight)  # type: ignore[arg-type]
    return m


def _models() -> list[nn.Module]:
    rng = random.Random(17)
    out: list[nn.Module] = [Scaled(3), Shell(3), Skewed(3), Skewed(2)]
    for _ in range(300):
        m = _tree(rng)
        out.append(_mutate(rng, m) if rng.random() < 0.6 else m)
    return out


def test_the_walk_gives_what_the_passes_alone_give() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pruning and parametrize warn about their own APIs
        models = _models()
    seen = set()
    for m in models:
        got, want = analyze(m), reference(m)
        assert facts(got) == facts(want), m
        seen.add(got.status)
    assert seen == {pc.Status.OK, pc.Status.MISMATCH}  # the models exercise both verdicts


def test_identical_layers_share_one_reading_yet_differ_where_their_configuration_does() -> None:
    m = nn.Sequential(
        nn.Linear(4, 4), nn.Linear(4, 4, bias=False), nn.Linear(4, 4), nn.LSTM(4, 3), nn.LSTM(4, 3, 2)
    )
    a = analyze(m)
    comps = {r.path: r.component for r in a.modules}
    assert comps["0"] == Linear("0", 4, 4, True) and comps["2"] == Linear("2", 4, 4, True)
    assert comps["1"] == Linear("1", 4, 4, False)
    assert comps["3"].spec.num_layers == 1 and comps["4"].spec.num_layers == 2  # type: ignore[union-attr]
    lstm1 = 4 * 3 * (4 + 3) + 2 * 4 * 3  # 4 gates: W_ih (4H, d), W_hh (4H, H), two biases (4H)
    lstm2 = lstm1 + 4 * 3 * (3 + 3) + 2 * 4 * 3  # layer 1 reads the 3 features of layer 0
    assert [r.analytic for r in a.modules] == [20, 16, 20, lstm1, lstm2]


def test_rows_are_built_when_first_read() -> None:
    m = nn.Sequential(*(nn.Linear(8, 8) for _ in range(5)))
    a = analyze(m)
    assert a.status is pc.Status.OK and a.actual_total == 5 * (64 + 8) and a.no_formula_total == 0
    assert a.tensors._rows is None  # the verdict and totals needed none of them
    assert [t.name for t in a.tensors] == [n for n, _ in m.named_parameters()]
    assert a.tensors._rows is not None
