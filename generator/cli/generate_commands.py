"""`gen generate`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from generator.cli.terminal import OUT_OPTION, SPEC_ARGUMENT, console, plural
from generator.firmware.app_layout import USER_APP_SOURCE
from generator.output.generate import generate as generate_output
from generator.output.layout import BROKER_DIR, firmware_dir
from generator.spec import load_spec


def generate(
    spec: Path = SPEC_ARGUMENT,
    out: Optional[Path] = OUT_OPTION,
    device: Optional[list[str]] = typer.Option(None, "--device", metavar="ID", help="Only this device (repeatable)."),
) -> None:
    """Write the broker config, every device's firmware project and the manifest; create or reuse the PKI and
    your app source (src/app.cpp or src/app.c next to the spec, never overwritten)."""
    loaded = load_spec(spec)
    result = generate_output(loaded, out, device_ids=device)
    for note in result.notes:
        console.print(note)
    removed = f", {plural(len(result.removed), 'stale file')} removed" if result.removed else ""
    console.print(f"generated {plural(len(result.devices), 'device')} and the broker into {result.out_dir}/ "
                  f"({plural(len(result.changed), 'file')} changed{removed})")
    console.print(f"  broker:   {result.out_dir / BROKER_DIR / 'mosquitto.conf'}")
    console.print("\n".join(f"  {device_id}: {result.out_dir / firmware_dir(device_id)}"
                            for device_id in result.devices))
    frameworks = sorted({d.framework for d in loaded.devices})
    console.print("  your app: " + ", ".join(str(loaded.directory / USER_APP_SOURCE[f]) for f in frameworks)
                  + " (yours, in git)")
    console.print(f"  manifest: {result.manifest_path}")
    console.print(f"  PKI:      {loaded.pki.dir} (reused on every run; keep pki/private/ out of git)")


def register(app: typer.Typer) -> None:
    app.command()(generate)
