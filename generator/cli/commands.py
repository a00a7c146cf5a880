"""The `gen` command line, assembled: each concept registers its own commands from its own module, imported only
when one of its commands runs (or shows its help); this file turns our errors into exit codes (0 ok, 2 user input,
1 external tool). `gen --version` does not even come here (generator.cli.main)."""

from __future__ import annotations

import errno
import importlib
import logging
import signal
import sys
from typing import Optional, Sequence

import typer
from typer import _click as click  # typer carries its own click (pyproject.toml)
from typer.core import TyperGroup
from typer.main import get_group

from generator.cli import gen_version
from generator.cli.fix_lines import filled
from generator.cli.terminal import err_console, styled
from generator.core.errors import GenError, ToolError, UserError

# Every top-level command: the module that registers it (register(app)), and the first sentence of its help, which
# `gen --help` lists without importing the module (tests/unit/test_cli_commands.py holds it equal to the command's
# own help). The order is the order of `gen --help`: commands, then groups.
COMMANDS: dict[str, tuple[str, str]] = {
    "new": ("spec_commands", "Scaffold projects/NAME/ with a commented device.yaml, a secrets.yaml template and a "
                             ".gitignore."),
    "check": ("spec_commands", "Validate a spec and print it resolved: defaults filled, {id} expanded, secrets "
                               "masked."),
    "generate": ("generate_commands", "Write the broker config, every device's firmware project and the manifest; "
                                      "create or reuse the PKI and your app source (src/app.cpp or src/app.c next "
                                      "to the spec, never overwritten)."),
    "inspect": ("pki_commands", "Explain a certificate, key, CSR or CRL in plain words; check chain (--ca) and key "
                                "(--key); convert."),
    "build": ("build_commands", "Generate, then build each distinct firmware image once with PlatformIO and collect "
                                "every device's artifacts (firmware, bootloader, partitions, merged factory image, "
                                "nvs.bin, flash.json) into OUT/artifacts/<id>/."),
    "flash": ("build_commands", "Write a built device's images (and its nvs.bin) to the board on the serial port."),
    "monitor": ("build_commands", "Show the device's serial output (`pio device monitor`) at its baud rate, decoding "
                                  "crash backtraces with the firmware built here when there is one."),
    "run": ("run_commands", "Build the device's firmware, flash it and show its serial output until Ctrl-C."),
    "logs": ("logs_commands", "Follow a device's log over MQTT: the lines its serial log shows, at the spec's "
                              "log.level, from its log topic (read as gen's read-only identity gen.logs)."),
    "simulate": ("simulate_commands", "Compile the generated firmware for this machine and run it against the "
                                      "generated broker over TLS."),
    "doctor": ("doctor_commands", "Check, step by step and with the device's own credentials, that the device can "
                                  "reach the broker: PKI, DNS, TCP, TLS (as mbedTLS 2.28 and OpenSSL), client cert, "
                                  "MQTT CONNECT, ACL."),
    "pki": ("pki_commands", "The project's private PKI: CA, broker, device and client certs, CRL."),
    "broker": ("broker_commands", "The Mosquitto broker side: print its config, or run it."),
    "provision": ("provision_commands", "Devices that make their own key: sign their certificate requests over MQTT, "
                                        "and rotate their certificates in the field."),
    "ci": ("build_commands", "Continuous integration: workflows that build the fleet."),
    "ota": ("ota_commands", "Firmware updates over the air: announce an image, serve it, see what devices run."),
}
APP_SETTINGS = dict(no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)


class CommandsOnDemand(TyperGroup):
    """gen's top-level group: lists COMMANDS, and imports a command's module only when that command is asked for."""

    _loaded: dict[str, TyperGroup] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name = COMMANDS[cmd_name][0]
        if module_name not in self._loaded:
            commands = typer.Typer(**APP_SETTINGS)  # type: ignore[arg-type]
            importlib.import_module(f"generator.cli.{module_name}").register(commands)
            self._loaded[module_name] = get_group(commands)
        return self._loaded[module_name].get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's own listing (the first sentence of each help, cut to the width), from COMMANDS."""
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, click.utils.make_default_short_help(summary, limit)) for name, (_, summary) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="gen",
    help="Generate a secure ESP32 <-> Mosquitto MQTT link (firmware, broker, PKI) from one YAML spec.",
    cls=CommandsOnDemand,
    add_completion=True,
    **APP_SETTINGS,  # type: ignore[arg-type]
)


def _print_version(requested: bool) -> None:
    if requested:
        print(f"gen {gen_version()}")
        raise typer.Exit()


@app.callback()
def _options(version: Optional[bool] = typer.Option(None, "--version", is_eager=True, callback=_print_version,
                                                    help="Print gen's version and exit.")) -> None:
    """Generate a secure ESP32 <-> Mosquitto MQTT link (firmware, broker, PKI) from one YAML spec."""


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


def run(argv: list[str] | None = None) -> None:
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
