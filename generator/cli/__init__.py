"""The `gen` command line. Each concept registers its own commands from its own module here;
this file only assembles them and turns our errors into exit codes (0 ok, 2 user input, 1 external tool)."""

from __future__ import annotations

import logging
import signal
import sys

import click
import typer
from rich.console import Console

from generator.errors import GenError

app = typer.Typer(
    name="gen",
    help="Generate a secure ESP32 <-> Mosquitto MQTT link (firmware, broker, PKI) from one YAML spec.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _register_commands() -> None:
    # One module per concept; each exposes register(app).
    from generator.cli import (
        broker_commands,
        build_commands,
        doctor_commands,
        generate_commands,
        pki_commands,
        simulate_commands,
        spec_commands,
    )

    for module in (
        spec_commands,
        generate_commands,
        pki_commands,
        broker_commands,
        build_commands,
        simulate_commands,
        doctor_commands,
    ):
        module.register(app)


_register_commands()


def report_error(error: GenError) -> None:
    err_console.print(f"[bold red]error:[/] {error.message}", markup=True)
    if error.hint:
        err_console.print(f"  [bold]fix:[/] {error.hint}", markup=True)


def _interrupt_on_termination_signals() -> None:
    """SIGTERM (kill, a supervisor) and SIGHUP (the terminal closed) stop gen the way Ctrl-C does, so the commands
    that run processes (broker up, simulate) stop their broker and devices instead of leaving them running."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for termination in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(termination, interrupt)


class _NotesHandler(logging.Handler):
    """Prints each note on stderr (the one of the moment: rich looks it up on every print)."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"gen: {record.getMessage()}", markup=False)


def _print_notes() -> None:
    """What gen's modules say the user should know while it works (e.g. "reading the CA passphrase from $X to
    issue ...") goes to stderr as `gen: ...`; never a secret."""
    notes = logging.getLogger("generator")
    if not any(isinstance(handler, _NotesHandler) for handler in notes.handlers):
        notes.addHandler(_NotesHandler())
        notes.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    _print_notes()
    if argv is None:  # the real program, not a test calling main([...]) in-process
        _interrupt_on_termination_signals()
    try:
        result = app(args=argv, standalone_mode=False, prog_name="gen")
    except GenError as error:
        report_error(error)
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(2 if isinstance(error, click.UsageError) else error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
