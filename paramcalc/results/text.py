"""Text every layer writes into its messages: counts with their nouns, bytes, durations, and
untrusted text made safe for a terminal.

These sit at the bottom of the house (the core's messages use them); drawing tables, exports
and plots are :mod:`paramcalc.render`'s. Pure Python, no imports beyond ``re``.

>>> plural(1, "thread"), plural(1792, "real step"), plural(2, "entry", "entries")
('1 thread', '1,792 real steps', '2 entries')
>>> fmt_bytes(3 * 2**20 + 2**17), fmt_seconds(0.001234)
('3.12 MiB', '1.234 ms')
>>> safe_text("evil\\x1b[31m name")
'evil\\\\x1b[31m name'
"""

from __future__ import annotations

import re


def plural(n: int, word: str, many: str = "") -> str:
    """``1 thread``, ``2 threads``, ``1,792 real steps``: a count and its noun, in agreement.

    ``word`` is the singular; ``many`` the plural when it is not ``word + "s"``
    (``plural(n, "entry", "entries")``)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def fmt_bytes(n: float) -> str:
    """``3.12 MiB``: bytes with a binary unit (for text only; tables keep exact byte counts)."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,.0f} B"


def fmt_seconds(s: float) -> str:
    """``1.234 ms`` or ``56.7 µs``: a duration with 4 significant digits."""
    if s >= 1:
        return f"{s:.4g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.4g} ms"
    return f"{s * 1e6:.4g} µs"


#: What a terminal must not receive raw: C0 and C1 controls (escape sequences start with them),
#: line and paragraph separators, lone surrogates, noncharacters, and every Unicode format
#: character (category Cf: soft hyphen, bidi marks, embeddings, overrides and isolates, zero-width
#: space/joiners, word joiner, invisible operators, BOM, interlinear annotations, tags).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff\ufffe\uffff"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e007f]"
)


def safe_text(text: str) -> str:
    """``text`` with control characters, escape sequences, Unicode format characters (bidi
    overrides, zero-width characters) and lone surrogates shown escaped: ``\\x1b``, ``\\u202e``."""
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(lambda m: _escape(m.group()), text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
