"""The `gen` command line. Each concept registers its own commands from its own module here;
this file only assembles them and turns our errors into exit codes (0 ok, 2 user input, 1 external tool)."""

from __future__ import annotations

import errno
import logging
import signal
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Optional, Sequence

import typer

from generator.cli import (
    broker_commands,
    build_commands,
    doctor_commands,
    generate_commands,
    logs_commands,
    ota_commands,
    pki_commands,
    provision_commands,
    run_commands,
    simulate_commands,
    spec_commands,
)
from generator.cli.fix_lines import filled
from generator.cli.terminal import err_console, styled
from generator.core.errors import GenError, ToolError, UserError

DISTRIBUTION = "esp32-mqtt-gen"

app = typer.Typer(
    name="gen",
    help="Generate a secure ESP32 <-> Mosquitto MQTT link (firmware, broker, PKI) from one YAML spec.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def gen_version() -> str:
    try:
        return package_version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed; run ./scripts/setup)"


def _print_version(requested: bool) -> None:
    if requested:
        print(f"gen {gen_version()}")
        raise typer.Exit()


@app.callback()
def _options(version: Optional[bool] = typer.Option(None, "--version", is_eager=True, callback=_print_version,
                                                    help="Print gen's version and exit.")) -> None:
    """Generate a secure ESP32 <-> Mosquitto MQTT link (firmware, broker, PKI) from one YAML spec."""


# One module per concept; each exposes register(app). The order is the order of `gen --help`.
for _commands in (spec_commands, generate_commands, pki_commands, broker_commands, provision_commands,
                  build_commands, run_commands, logs_commands, simulate_commands, ota_commands, doctor_commands):
    _commands.register(app)


def report_error(error: GenError, argv: Sequence[str] = ()) -> None:
    """The error and its fix line, with the fix's SPEC and ID spelled as this command line names them."""
    err_console.print(styled(("error:", "bold red"), " ", error.message))
    if error.hint:
        err_console.print(styled("  ", ("fix:", "bold"), " ", filled(error.hint, argv)))


def _interrupt_on_termination_signals() -> None:
    """SIGTERM (kill, a supervisor) and SIGHUP (the terminal closed) stop gen the way Ctrl-C does, so the commands
    that run processes (broker up, simulate) stop their broker and devices instead of leaving them running."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    for termination in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(termination, interrupt)


class _NotesHandler(logging.Handler):
    """Prints each note on stderr (the one of the moment: rich looks it up on every print), its SPEC and ID spelled
    as the command line names them."""

    argv: Sequence[str] = ()

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"gen: {filled(record.getMessage(), self.argv)}")


def _print_notes() -> None:
    """What gen's modules say the user should know while it works (e.g. "reading the CA passphrase from $X to
    issue ...") goes to stderr as `gen: ...`; never a secret."""
    notes = logging.getLogger("generator")
    if not any(isinstance(handler, _NotesHandler) for handler in notes.handlers):
        notes.addHandler(_NotesHandler())
        notes.setLevel(logging.INFO)


def _file_error(error: OSError) -> GenError:
    """A file the command had to read or write could not be: the user's to fix (a path, a mode, a full disk)."""
    where = f" {error.filename}" if error.filename else ""
    reason = error.strerror or str(error)
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UserError(f"cannot write or read{where}: {reason}",
                         hint="check the folder's owner and mode, or pass --out DIR to write elsewhere")
    if error.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        return UserError(f"{where.strip() or 'a path'}: {reason}", hint="check the path")
    return ToolError(f"file system error{where}: {reason}")


def main(argv: list[str] | None = None) -> None:
    """Runs gen. Usage mistakes (unknown command or option, a bad value) are click's: usage, the error, exit 2.
    Our errors: exit 2 (UserError) or 1 (ToolError), one message and the fix. Ctrl-C: 130, after cleaning up."""
    typed = list(sys.argv[1:] if argv is None else argv)
    _NotesHandler.argv = typed
    _print_notes()
    if argv is None:  # the real program, not a test calling main([...]) in-process
        _interrupt_on_termination_signals()
    try:
        app(args=argv, prog_name="gen")
    except GenError as error:
        report_error(error, typed)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as error:
        failure = _file_error(error)
        report_error(failure, typed)
        sys.exit(failure.exit_code)
    sys.exit(0)
