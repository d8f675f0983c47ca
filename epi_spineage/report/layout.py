"""How a displayed table is laid out on paper: which tables need a landscape page or a smaller font.

The print stylesheet (``templates/report.css.j2``) wraps header cells at spaces and text cells freely but
keeps a number with its interval on one line, so a table's printed width is about the sum of, per column,
its longest header word, its longest number cell and its (capped) longest text cell. Tables wider than a
portrait A4 line at the print font get the class ``wide`` (their own landscape page, ``@page wide``);
wider than a landscape line, ``xwide`` (a smaller font as well). Tables with many rows get ``long``: they
may break across pages (header row repeated) instead of being kept whole on one page.
"""

from __future__ import annotations

import re

import pandas as pd

#: characters of the print font (8.5 pt) across a portrait / landscape A4 text block (12 mm margins)
PORTRAIT_CHARS = 118
LANDSCAPE_CHARS = 172
#: a text cell wraps in print; this is the width it is allowed before it does
TEXT_CELL_CAP = 26
#: per-column padding, in characters
PAD_CHARS = 2
#: rows above which a table may break across pages
LONG_ROWS = 28

_NUMERIC = re.compile(r"^\s*[-−<>≤≥+]?\s*\d")


def printed_width(display: pd.DataFrame) -> int:
    """The estimated printed width of ``display`` (the strings the reader sees), in characters."""
    total = 0
    for col in display.columns:
        words = str(col).split()
        width = max((len(w) for w in words), default=1)
        for v in display[col]:
            s = "" if v is None else str(v)
            if not s:
                continue
            if _NUMERIC.match(s):
                width = max(width, len(s))
            else:
                longest_word = max((len(w) for w in s.split()), default=0)
                width = max(width, min(len(s), max(TEXT_CELL_CAP, longest_word)))
        total += width + PAD_CHARS
    return total


def table_classes(display: pd.DataFrame) -> str:
    """CSS classes for a displayed table: ``wide``/``xwide`` by printed width, ``long`` by rows."""
    classes = []
    width = printed_width(display)
    if width > LANDSCAPE_CHARS:
        classes += ["wide", "xwide"]
    elif width > PORTRAIT_CHARS:
        classes.append("wide")
    if len(display) > LONG_ROWS:
        classes.append("long")
    return " ".join(classes)
