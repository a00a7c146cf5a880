"""The `gen` command line. `gen --version` answers here at once; everything else is generator.cli.commands, where
each concept's commands are imported only when one of them runs."""

from __future__ import annotations

import sys

from generator import __version__


def gen_version() -> str:
    return __version__


def __getattr__(name: str) -> object:
    """`generator.cli.app`: the typer app (generator.cli.commands), made when first asked for."""
    if name == "app":
        from generator.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """Runs gen (see generator.cli.commands.run)."""
    if (sys.argv[1:] if argv is None else argv) == ["--version"]:
        print(f"gen {gen_version()}")
        sys.exit(0)
    from generator.cli.commands import run

    run(argv)
