"""`gen run`: the one-command loop of a device on the desk, as `esphome run` does: build (unless --no-build),
flash, then follow its serial output, all through one port, picked as `gen flash` picks it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from generator.firmware_build.flashing import check_port_free, choose_port
from generator.cli.build_commands import PORT_OPTION, build, flash, monitor
from generator.cli.terminal import OUT_OPTION, SPEC_ARGUMENT, console
from generator.spec import load_spec


def run(
    spec: Path = SPEC_ARGUMENT,
    device: str = typer.Option(..., "--device", metavar="ID", help="The device on the desk."),
    port: Optional[str] = PORT_OPTION,
    no_build: bool = typer.Option(False, "--no-build", help="Flash the last build as it is (gen build skipped)."),
    out: Optional[Path] = OUT_OPTION,
) -> None:
    """Build the device's firmware, flash it and show its serial output until Ctrl-C. The port is chosen (and
    checked free) first, so a missing or busy board says so before a minute of building."""
    load_spec(spec).device(device)             # an unknown device: exit 2 before anything runs
    chosen = choose_port(port)
    check_port_free(chosen)
    if no_build:
        console.print(f"--no-build: flashing the last build of {device}")
    else:
        build(spec, device=[device], jobs=1, out=out, without_pki=False, credentials=None)
    flash(spec, device=device, port=chosen, method="esptool", out=out, artifacts=None, dry_run=False,
          burn_efuses=False, release_irreversible=False, disable_download_mode=False)
    monitor(spec, device=device, port=chosen, out=out)


def register(app: typer.Typer) -> None:
    app.command()(run)
