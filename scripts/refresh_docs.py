"""Re-run the `$ paramcalc ...` examples of README.md and docs/*.md and paste their real output.

The examples are golden text for formatting (tests/core/test_docs_examples.py and
tests/torch/test_docs_examples_torch.py check that each still prints exactly what the page
shows); the numbers inside are checked by the other tests. Timed examples (bench, --bench,
--predict) are left as they are. Run from a checkout:

    python scripts/refresh_docs.py [FILE ...]
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import invoke  # noqa: E402  (a development script, run from a checkout)

BLOCK = re.compile(r"(```console\n)(.*?)(```)", re.S)
TIMED = ("bench", "--bench", "--predict", "--from", "predict")


def run(cmd: str) -> str:
    import shlex

    args = shlex.split(cmd)[1:]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if (args and args[0] in ("check", "inspect")) or "--check" in args or "--flop-check" in args:
            from tests.torch.test_docs_examples_torch import make_workspace

            make_workspace(folder, args)
        else:
            (folder / "data").symlink_to(ROOT / "data")
        here = os.getcwd()
        os.chdir(folder)
        try:
            return invoke(*args).output
        finally:
            os.chdir(here)


def refresh_block(block: str) -> str:
    out = []
    for chunk in re.split(r"^(?=\$ )", block, flags=re.M):
        cmd = chunk.partition("\n")[0][2:]
        words = cmd.split()
        if not chunk.startswith("$ paramcalc ") or ("--help" not in words and any(t in words for t in TIMED)):
            out.append(chunk)
            continue
        text = run(cmd)
        out.append(f"$ {cmd}\n{text if text.endswith(chr(10)) or not text else text + chr(10)}")
    return "".join(out)


def main(paths: list[str]) -> int:
    files = [Path(p).resolve() for p in paths] or [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for f in files:
        text = f.read_text(encoding="utf-8")
        new = BLOCK.sub(lambda m: m.group(1) + refresh_block(m.group(2)) + m.group(3), text)
        if new != text:
            f.write_text(new, encoding="utf-8")
            print(f"refreshed {f.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
