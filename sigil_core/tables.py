"""Tables and counts for command output, shared by the core's commands and plugins' commands.

rich lays the tables out (aligned columns, wrapping between words, an ellipsis where a value
must be cut) so every ``sigil ... list`` reads the same; it is imported only when a table is
printed, so ``sigil --help`` does not pay for it.
"""

from __future__ import annotations

import sys
from typing import Any


def plural(n: int, noun: str) -> str:
    """``1 LLM call``, ``2 LLM calls``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters, cut between words with an ellipsis."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(",;:.") + "…"


def table(*headers: str, right: tuple[int, ...] = (), wrap: tuple[int, ...] = ()) -> Any:
    """A borderless rich table with aligned columns. Columns in ``wrap`` wrap between words;
    the others stay on one line, cut with an ellipsis only when the terminal is too narrow."""
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for i, h in enumerate(headers):
        # Wrapping columns take what is left (ratio): ids and numbers are never cut first.
        t.add_column(h, justify="right" if i in right else "left", no_wrap=i not in wrap,
                     overflow="fold" if i in wrap else "ellipsis",
                     ratio=1 if i in wrap else None)
    return t


def print_table(renderable: Any) -> None:
    """Print a rich renderable on stdout: fitted to a terminal, else at its natural width
    (a pipe or a file gets whole values, not values cut to 80 columns, and no padding)."""
    from rich.console import Console

    if sys.stdout.isatty():
        Console(soft_wrap=False, highlight=False).print(renderable)
        return
    import io

    buffer = io.StringIO()
    Console(file=buffer, width=1000, soft_wrap=False, highlight=False,
            color_system=None).print(renderable)
    for line in buffer.getvalue().splitlines():
        sys.stdout.write(line.rstrip() + "\n")
    sys.stdout.flush()
