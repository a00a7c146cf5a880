"""All of gen's terminal output goes through these two consoles. Rich markup is off: values from specs, files
and tools are printed as they are (a topic `dev/[b]x` stays `dev/[b]x`), and styling is applied with `styled`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, cast

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

# Pipes and logs get 160 columns (rich would assume 80 and cut serials, dates and histories short).
_WIDTH = None if sys.stdout.isatty() else 160


class _ConsoleOnFirstUse:
    """A rich Console made when something is first printed: `gen --help` never imports rich."""

    def __init__(self, **options: Any):
        self._options = options
        self._console: Console | None = None

    def made(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.made(), name)

    # What rich itself asks of a console it is handed (Live, Progress): `with console:` buffers the output.
    def __enter__(self) -> Console:
        return self.made().__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        self.made().__exit__(*exc_info)


console = cast("Console", _ConsoleOnFirstUse(highlight=False, soft_wrap=True, markup=False, emoji=False,
                                             width=_WIDTH))
err_console = cast("Console", _ConsoleOnFirstUse(stderr=True, highlight=False, soft_wrap=True, markup=False,
                                                 emoji=False))


def styled(*parts: str | tuple[str, str]) -> Text:
    """Plain strings and (text, style) pairs as one line; no part is read as markup."""
    from rich.text import Text

    return Text.assemble(*parts)


def print_table(table: Table, *, on: Console | None = None) -> None:
    """A rich table as lines without the trailing spaces rich pads its last column with (they end up in logs,
    diffs and copied text); styles are kept on a terminal."""
    from rich.text import Text

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
