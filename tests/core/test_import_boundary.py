"""The import boundary: the analytic core and the analytic commands import neither torch nor pandas.

Each case runs in a fresh interpreter and lists which heavy modules it ended up importing.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ARCHS, ROOT

HEAVY = ("torch", "torchinfo", "pandas", "numpy", "matplotlib")

API = """
import paramcalc as pc
s = pc.RecurrentSpec("lstm", 28, 256, num_layers=2)
assert pc.count(s).total == 819200
pc.count(s).render("json"); pc.count(s).render("csv"); pc.count(s).render("github", "layer")
pc.cost(s, pc.Workload(batch=64, seq_len=28, mode="training")).render("simple", "memory")
pc.solve_budget(s, "1.5M", cells=["rnn", "gru", "mgu"]).render()
pc.match_hidden(s).table().records()
pc.explain(s).render()
pc.compare(s, equal="params").render(); pc.sweep(s, hidden_sizes=range(64, 257, 64)).table().records()
pc.count_architecture(pc.load_architecture(ARCH)).render("simple", "component")
"""

EXPORT = """
import paramcalc as pc, tempfile, os
r = pc.count(pc.RecurrentSpec("gru", 4, 8))
with tempfile.TemporaryDirectory() as d:
    for suffix in (".csv", ".json", ".md", ".html", ".tex"):
        r.export(os.path.join(d, "t" + suffix))
"""

#: modules whose functions import torch when called, not when imported
TORCH_EDGE = """
import paramcalc.checks.tensorcheck, paramcalc.checks.flopcount, paramcalc.checks.inspection
import paramcalc.timing.benchmark, paramcalc.bridge.build, paramcalc.bridge.devices
import paramcalc.bridge.statedict, paramcalc.bridge.readers.pickle_reader, paramcalc.cli
import paramcalc.studies.design, paramcalc.cli.designcmd
import paramcalc as pc
assert callable(pc.check) and callable(pc.bench) and callable(pc.flop_check) and callable(pc.inspect)
assert callable(pc.design)
"""


def cli(*args: str) -> str:
    return f"from paramcalc.cli import run\ncode = run({list(args)!r})\nassert code == 0, code\n"


CASES = {
    "import paramcalc": "import paramcalc",
    "api": API,
    "export": EXPORT,
    "torch edge, imported only": TORCH_EDGE,
    "cli help": cli(),
    "cli count": cli("count", "lstm", "-d", "28", "-H", "256", "-L", "2"),
    "cli count --batch": cli(
        "count",
        "lstm",
        "-d",
        "28",
        "-H",
        "256",
        "-L",
        "2",
        "--batch",
        "64",
        "--seq-len",
        "28",
        "--by",
        "layer",
    ),
    "cli solve": cli("solve", "gru", "-d", "28", "-L", "2", "--budget", "1.5M", "-f", "json"),
    "cli solve match": cli("solve", "lstm", "-d", "28", "-H", "256", "-L", "2"),
    "cli cost": cli(
        "cost", "lstm", "-d", "28", "-H", "256", "--batch", "64", "--seq-len", "28", "--by", "gemm"
    ),
    "cli explain": cli("explain", "gru", "-d", "28", "-H", "256", "--convention", "keras"),
    "cli compare": cli("compare", "-d", "28", "-H", "256", "-L", "2", "--equal", "params", "-f", "csv"),
    "cli sweep": cli("sweep", "-d", "28", "-H", "64:256:64", "--cells", "lstm,mingru"),
    "cli report": cli("report", str(ARCHS / "awd_lstm_lm.toml"), "--by", "component"),
    "cli design help": cli("design", "--help"),
    "cli inspect config.json": cli("inspect", str(ROOT / "data" / "hf" / "mamba-130m.json")),
    "cli inspect models": cli("inspect", "mamba-130m", "rwkv-4-169m", "--context", "4096"),
    "cli explain block": cli("explain", "mamba2"),
}


@pytest.mark.parametrize("code", list(CASES.values()), ids=list(CASES))
def test_analytic_paths_import_neither_torch_nor_pandas(code):
    program = (
        "import sys\n"
        f"ARCH = {str(ARCHS / 'awd_lstm_lm.toml')!r}\n"
        f"{code}\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    p = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == "HEAVY []", p.stdout.splitlines()[-1]
