"""`gen generate`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

import typer

from generator.cli.terminal import OUT_OPTION, SPEC_ARGUMENT, console, plural
from generator.core.paths import OUT_DIR_NAME
from generator.output.layout import BROKER_DIR, MANIFEST_NAME, firmware_dir
from generator.output.up_to_date import unchanged_run


def generate(
    spec: Path = SPEC_ARGUMENT,
    out: Optional[Path] = OUT_OPTION,
    device: Optional[list[str]] = typer.Option(None, "--device", metavar="ID", help="Only this device (repeatable)."),
) -> None:
    """Write the broker config, every device's firmware project and the manifest; create or reuse the PKI and
    your app source (src/app.cpp or src/app.c next to the spec, never overwritten)."""
    out_dir = out if out is not None else Path(spec).parent / OUT_DIR_NAME
    if not device:
        unchanged = unchanged_run(Path(spec), out_dir, dt.datetime.now(dt.timezone.utc))
        if unchanged is not None:      # nothing it depends on changed since the last full run: that run stands
            _say_generated(unchanged.out_dir, unchanged.devices, (), (), unchanged.apps, unchanged.pki_dir)
            return
    from generator.firmware.app_layout import USER_APP_SOURCE
    from generator.output.generate import generate as generate_output
    from generator.output.up_to_date import forget_run, input_snapshot, record_generate
    from generator.spec import load_spec_source

    forget_run(out_dir)                # until this run has finished, no earlier one stands for it
    before = input_snapshot(Path(spec), out_dir)
    loaded, source = load_spec_source(spec)
    result = generate_output(loaded, out, device_ids=device)
    for note in result.notes:
        console.print(note)
    if not device:
        _forget_departed_simulations(loaded, result.out_dir)
    frameworks = sorted({d.framework for d in loaded.devices})
    apps = tuple(str(loaded.directory / USER_APP_SOURCE[f]) for f in frameworks)
    record_generate(loaded, source.env_names, result, apps, whole_fleet=not device, before=before)
    _say_generated(result.out_dir, result.devices, result.changed, result.removed, apps, str(loaded.pki.dir))


def _forget_departed_simulations(spec, out_dir: Path) -> None:
    """A device that left the spec, or got a new key, leaves no host build (which holds its key) or simulated flash
    behind in the user's cache, whether or not the spec is simulated again."""
    from generator.simulate.departed import forget_departed

    cleared = forget_departed(spec, out_dir)
    if cleared:
        console.print(f"erased what gen simulate kept of {', '.join(cleared)} (left the spec or got a new key): "
                      "its simulated flash, and its host build unless a device of the spec still uses it")


def _say_generated(out_dir: Path, devices: tuple[str, ...], changed: tuple[str, ...], removed: tuple[str, ...],
                   apps: tuple[str, ...], pki_dir: str) -> None:
    stale = f", {plural(len(removed), 'stale file')} removed" if removed else ""
    console.print(f"generated {plural(len(devices), 'device')} and the broker into {out_dir}/ "
                  f"({plural(len(changed), 'file')} changed{stale})")
    console.print(f"  broker:   {out_dir / BROKER_DIR / 'mosquitto.conf'}")
    console.print("\n".join(f"  {device_id}: {out_dir / firmware_dir(device_id)}" for device_id in devices))
    console.print("  your app: " + ", ".join(apps) + " (yours, in git)")
    console.print(f"  manifest: {out_dir / MANIFEST_NAME}")
    console.print(f"  PKI:      {pki_dir} (reused on every run; keep pki/private/ out of git)")


def register(app: typer.Typer) -> None:
    app.command()(generate)
