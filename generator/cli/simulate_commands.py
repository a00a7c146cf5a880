"""`gen simulate`: run the generated firmware on this machine against the generated broker."""

from __future__ import annotations

import contextlib

from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import typer
from rich.table import Table
from rich.text import Text

from generator.cli.progress import ProgressLines
from generator.cli.broker_override import broker_option
from generator.cli.terminal import OUT_OPTION, SPEC_ARGUMENT, console, print_table
from generator.simulate.device_runs import DEFAULT_WIFI_DOWN_FOR_S, Faults, parse_broker_address, select_devices
from generator.simulate.processes import RunInterrupted
from generator.simulate.run import SimulateOptions
from generator.simulate.run import simulate as run_simulation
from generator.spec import load_spec

# Each device's prefix gets its own colour, so interleaved output stays readable.
_PREFIX_STYLES = ("cyan", "green", "magenta", "yellow", "blue", "bright_cyan", "bright_green", "bright_magenta")


def _line_printer(device_ids: Sequence[str]):
    width = max((len(device_id) for device_id in device_ids), default=0)
    styles = {device_id: _PREFIX_STYLES[i % len(_PREFIX_STYLES)] for i, device_id in enumerate(device_ids)}

    def print_line(device_id: str, line: str) -> None:
        console.print(Text.assemble((f"{device_id:<{width}} | ", styles.get(device_id, "")), line))

    return print_line


def _print_event(message: str) -> None:
    console.print(Text.assemble(("gen  ", "bold"), message))


def summary_table(summaries) -> Table:
    table = Table(title="simulated devices", title_justify="left")
    table.add_column("device", no_wrap=True)
    table.add_column("connected", no_wrap=True)
    table.add_column("broker", no_wrap=True)
    for column in ("connects", "reconnects", "out", "in"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("last error", overflow="fold")
    for summary in summaries:
        if summary.connected:
            state = Text("yes", style="green")
        elif summary.ever_connected:
            state = Text("earlier", style="yellow")
        else:
            state = Text("never", style="bold red")
        table.add_row(summary.device_id, state, summary.broker or "-", str(summary.connects), str(summary.reconnects),
                      str(summary.messages_out), str(summary.messages_in), Text(summary.last_error or "-"))
    return table


def simulate(
    spec: Path = SPEC_ARGUMENT,
    device: Optional[list[str]] = typer.Option(None, "--device", metavar="ID",
                                               help="Simulate only this device (repeatable)."),
    all_devices: bool = typer.Option(False, "--all", help="Simulate every device of the spec (the default)."),
    duration: Optional[float] = typer.Option(None, "--duration", min=0.1, metavar="S",
                                             help="Stop after S seconds (default: run until Ctrl-C)."),
    broker: Optional[str] = typer.Option(None, "--broker", metavar="HOST:PORT",
                                         help="Use this running broker instead of starting the generated one."),
    drop_wifi_after: Optional[float] = typer.Option(
        None, "--drop-wifi-after", min=0, metavar="S",
        help=f"Drop every device's WiFi after S seconds, for {DEFAULT_WIFI_DOWN_FOR_S:g} s."),
    restart_broker_after: Optional[float] = typer.Option(None, "--restart-broker-after", min=0, metavar="S",
                                                         help="Restart the broker once, after S seconds."),
    kill_node_after: Optional[float] = typer.Option(None, "--kill-node-after", min=0, metavar="S",
                                                    help="broker.engine: rabbitmq: kill the first cluster node "
                                                         "(kill -9) after S seconds; every device fails over."),
    days_ahead: float = typer.Option(0.0, "--days-ahead", min=0, max=36500, metavar="N",
                                     help="Run the broker, the devices and the provisioning service N days in the "
                                          "future (libfaketime): certificates due by then renew."),
    ota_server: Optional[str] = typer.Option(None, "--ota-server", metavar="HOST:PORT",
                                             help="Where the devices' update downloads go (default: `gen ota serve` "
                                                  "on this machine, 127.0.0.1 at ota.port)."),
    build_only: bool = typer.Option(False, "--build-only", help="Compile (and with ota: pack and sign the host "
                                    "images into OUT/simulate/<id>/), start nothing."),
    out: Optional[Path] = OUT_OPTION,
) -> None:
    """Compile the generated firmware for this machine and run it against the generated broker over TLS.
    Exits 0 when every device connected, 1 otherwise."""
    loaded = load_spec(spec)
    chosen_broker = broker_option(spec, broker)
    options = SimulateOptions(
        device_ids=tuple(device or ()),
        all_devices=all_devices,
        duration=duration,
        broker=parse_broker_address(chosen_broker) if chosen_broker else None,
        faults=Faults(drop_wifi_after=drop_wifi_after, restart_broker_after=restart_broker_after,
                      kill_node_after=kill_node_after),
        out_dir=out,
        days_ahead=days_ahead,
        ota_server=parse_broker_address(ota_server) if ota_server else None,
        build_only=build_only,
    )
    device_ids = select_devices(loaded, options.device_ids, all_devices=all_devices)
    try:
        result = run_simulation(loaded, options, on_line=_line_printer(device_ids), on_event=_print_event,
                                progress=_host_build_progress)
    except RunInterrupted as interrupted:   # Ctrl-C: devices and broker are stopped; show what happened, exit 130
        print_table(summary_table(interrupted.summaries))
        raise
    if build_only:
        return
    print_table(summary_table(result.summaries))
    if not result.ok:
        never = [s.device_id for s in result.summaries if not s.ever_connected]
        console.print(Text(f"not connected: {', '.join(never)} (see its last error above)", style="bold red"))
        raise typer.Exit(1)


@contextlib.contextmanager
def _host_build_progress() -> Iterator[Callable[[str], None]]:
    """The host build's steps: a status line on a terminal, a line at least every 10 s in a pipe or CI log."""
    with ProgressLines("host build") as lines:
        yield lines.step


def register(app: typer.Typer) -> None:
    app.command()(simulate)
