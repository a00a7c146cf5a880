"""`gen logs`: a device's log without a cable (its log topic over MQTT, as gen.logs), or with one (--serial, as
`gen monitor`, the port picked as `gen flash` picks it)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from generator.cli.broker_override import broker_option
from generator.cli.build_commands import PORT_OPTION, monitor
from generator.cli.terminal import OUT_OPTION, SPEC_ARGUMENT, err_console
from generator.logs.follow import follow_log
from generator.simulate.device_runs import parse_broker_address
from generator.spec import load_spec


def _echo(line: str) -> None:
    sys.stdout.write(line + "\n")      # the device's own words, unstyled (rich would read [mqtt] as markup)
    sys.stdout.flush()


def logs(
    spec: Path = SPEC_ARGUMENT,
    device: str = typer.Option(..., "--device", metavar="ID", help="The device whose log to follow."),
    serial: bool = typer.Option(False, "--serial", help="Read the serial port instead (as gen monitor does)."),
    port: Optional[str] = PORT_OPTION,
    broker: Optional[str] = typer.Option(None, "--broker", metavar="HOST:PORT", help="Where the broker is, when not "
                                         "at broker.host:broker.port (its certificate is still checked for "
                                         "broker.host)."),
    lines: Optional[int] = typer.Option(None, "--lines", metavar="N", min=1, help="Stop after N lines (default: "
                                        "follow until Ctrl-C)."),
    out: Optional[Path] = OUT_OPTION,
) -> None:
    """Follow a device's log over MQTT: the lines its serial log shows, at the spec's log.level, from its log topic
    (read as gen's read-only identity gen.logs). --serial reads the board's serial port instead."""
    loaded = load_spec(spec)
    chosen = loaded.device(device)
    if serial:
        if broker is not None or lines is not None:
            raise typer.BadParameter("--serial reads the serial port: --broker and --lines do not apply")
        monitor(spec, device=device, port=port, out=out)
        return
    address = broker_option(spec, broker)
    parsed = parse_broker_address(address) if address is not None else None

    def ready() -> None:
        assert chosen.log is not None
        err_console.print(f"following {device}'s log on {chosen.log.topic} (level {chosen.log.level} and more "
                          "severe); Ctrl-C stops", markup=False)

    follow_log(loaded, chosen, _echo, (parsed.host, parsed.port) if parsed is not None else None, lines=lines,
               ready=ready)


def register(app: typer.Typer) -> None:
    app.command()(logs)
