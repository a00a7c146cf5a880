"""The `gen` command line. `gen --version` answers here at once; everything else is generator.cli.app, where each
concept's commands are imported only when one of them runs."""

from __future__ import annotations

import sys

from generator import __version__


def gen_version() -> str:
    return __version__


def main(argv: list[str] | None = None) -> None:
    """Runs gen (see generator.cli.app.run)."""
    if (sys.argv[1:] if argv is None else argv) == ["--version"]:
        print(f"gen {gen_version()}")
        sys.exit(0)
    from generator.cli.app import run

    run(argv)
