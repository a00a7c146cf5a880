"""All of gen's terminal output goes through these two consoles. Rich markup is off: values from specs, files
and tools are printed as they are (a topic `dev/[b]x` stays `dev/[b]x`), and styling is applied with `styled`."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Pipes and logs get 160 columns (rich would assume 80 and cut serials, dates and histories short).
_WIDTH = None if sys.stdout.isatty() else 160

console = Console(highlight=False, soft_wrap=True, markup=False, emoji=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """Plain strings and (text, style) pairs as one line; no part is read as markup."""
    return Text.assemble(*parts)


def print_table(table: Table, *, on: Console | None = None) -> None:
    """A rich table as lines without the trailing spaces rich pads its last column with (they end up in logs,
    diffs and copied text); styles are kept on a terminal."""
    target = on or console
    with target.capture() as captured:
        target.print(table)
    for line in captured.get().splitlines():
        target.print(Text.from_ansi(line.rstrip()))


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# The arguments every command that reads a spec shares (DESIGN.md: the spec first, --out defaults to build/).
SPEC_ARGUMENT = typer.Argument(..., metavar="SPEC", help="The spec, e.g. projects/NAME/device.yaml.")
OUT_OPTION = typer.Option(None, "--out", metavar="DIR", help="Output directory (default: build/ next to the spec).")
