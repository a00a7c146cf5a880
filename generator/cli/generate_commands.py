"""`gen generate`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from generator.cli.output import OUT_OPTION, SPEC_ARGUMENT, console



def generate(
    spec: Path = SPEC_ARGUMENT,
    out: Optional[Path] = OUT_OPTION,
    device: Optional[list[str]] = typer.Option(None, "--device", help="Only this device (repeatable)."),
) -> None:
    """Write the broker config, every device's firmware project and the manifest; create or reuse the PKI."""
    from generator.generate import generate as generate_output
    from generator.spec import load_spec

    loaded = load_spec(spec)
    result = generate_output(loaded, out, device_ids=device)
    console.print(f"generated {len(result.devices)} device{'s' if len(result.devices) != 1 else ''} and the broker "
                  f"into {result.out_dir}/ ({len(result.changed)} file{'s' if len(result.changed) != 1 else ''} changed)")
    console.print(f"  broker:   {result.out_dir / 'broker' / 'mosquitto.conf'}")
    for device_id in result.devices:
        console.print(f"  {device_id}: {result.out_dir / 'devices' / device_id / 'firmware'}")
    console.print(f"  manifest: {result.manifest_path}")
    console.print(f"  PKI:      {loaded.pki.dir} (reused on every run; keep pki/private/ out of git)")


def register(app: typer.Typer) -> None:
    app.command()(generate)
