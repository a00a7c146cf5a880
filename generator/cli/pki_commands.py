"""`gen` commands for pki."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Adds this concept's commands to the `gen` app."""
