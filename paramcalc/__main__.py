"""``python -m paramcalc`` and the ``paramcalc`` console script.

Nothing but the standard library is imported before the guard: a Ctrl-C (SIGINT) that lands
while the command line is still being imported ends the way one at any later moment does,
"Aborted." on stderr and exit status 130, never a traceback.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line (:func:`paramcalc.cli.main`), Ctrl-C included at any moment."""
    try:
        from .cli import main as cli_main

        cli_main()
    except KeyboardInterrupt:
        aborted()


def aborted() -> None:
    """End after a Ctrl-C: one line on stderr, exit status 130 (a second Ctrl-C is ignored)."""
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # pragma: no cover - not the main thread
        pass
    try:
        sys.stderr.write("Aborted.\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # stderr is gone: the exit status says it
        pass
    sys.exit(130)


if __name__ == "__main__":
    main()
