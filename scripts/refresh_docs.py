"""Re-run the `$ paramcalc ...` examples of README.md and docs/*.md and paste their real output.

The examples are golden text for formatting (tests/core/test_docs_examples.py checks that each
still prints exactly what the page shows); the numbers inside are checked by the other tests.
Only deterministic commands are run: not --bench, --predict, --from, --device cpu/cuda timings,
nor bench or predict.

    python scripts/refresh_docs.py [FILE ...]
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from click.testing import CliRunner

from paramcalc.cli import cli

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(```console\n)(.*?)(```)", re.S)
DETERMINISTIC = {"count", "solve", "cost", "report", "check", "compare", "sweep", "explain", "inspect"}


def runnable(cmd: str) -> bool:
    args = shlex.split(cmd)[1:]
    timed = {"--bench", "--predict", "--from", "--output", "--plot"}
    return bool(args) and args[0] in DETERMINISTIC and not timed & set(args)


def refresh_block(block: str) -> str:
    out = []
    for chunk in re.split(r"^(?=\$ )", block, flags=re.M):
        if not chunk.startswith("$ paramcalc ") or not runnable(chunk.partition("\n")[0][2:]):
            out.append(chunk)
            continue
        cmd = chunk.partition("\n")[0][2:]
        res = CliRunner().invoke(cli, shlex.split(cmd)[1:])
        text = res.output if res.output.endswith("\n") else res.output + "\n"
        out.append(f"$ {cmd}\n{text}")
    return "".join(out)


def main(paths: list[str]) -> int:
    files = [Path(p).resolve() for p in paths] or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    import os

    os.chdir(ROOT)
    for f in files:
        text = f.read_text(encoding="utf-8")
        new = BLOCK.sub(lambda m: m.group(1) + refresh_block(m.group(2)) + m.group(3), text)
        if new != text:
            f.write_text(new, encoding="utf-8")
            print(f"refreshed {f.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
