"""`gen doctor`: walk a device's path to the broker and name the first broken link."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from generator.cli.broker_override import broker_option
from generator.cli.terminal import SPEC_ARGUMENT, console, styled
from generator.firmware.security import nvs_image_protection, sdkconfig_protection
from generator.output.layout import firmware_dir
from generator.doctor.material import DoctorTarget
from generator.doctor.steps import report_json, run_doctor, select_device
from generator.spec import load_spec

_MARKS = {"ok": ("✓", "green"), "failed": ("✗", "bold red"), "skipped": ("-", "dim")}


def doctor(
    spec: Path = SPEC_ARGUMENT,
    device: Optional[str] = typer.Option(None, "--device", metavar="ID",
                                         help="The device to check (needed when the spec has several)."),
    broker: Optional[str] = typer.Option(None, "--broker", metavar="HOST:PORT",
                                         help="Dial this address instead of the spec's broker, still verifying the "
                                              "name the device dials (like curl --connect-to)."),
    as_json: bool = typer.Option(False, "--json", help="Print the steps as JSON."),
    take_over: bool = typer.Option(False, "--take-over", help="Probe as the device even when it says it is online "
                                                             "(it is disconnected once, and reconnects)."),
) -> None:
    """Check, step by step and with the device's own credentials, that the device can reach the broker: PKI, DNS,
    TCP, TLS (as mbedTLS 2.28 and OpenSSL), client cert, MQTT CONNECT, ACL. Changes nothing; a device that is
    online is left connected (see --take-over). Exit 1 at the first failure."""
    loaded = load_spec(spec)
    chosen = select_device(loaded, device)
    target = DoctorTarget.for_device(loaded, chosen, broker_option(spec, broker))
    results = run_doctor(loaded, target, spec_label=str(spec), take_over=take_over)
    protection = build_protection(loaded.default_out_dir, chosen.id)
    if as_json:
        print(json.dumps({**report_json(target, results), "protection_at_rest": protection}, indent=2))
    else:
        dial = f"{target.dial_host}:{target.dial_port}"
        via = f" (dialling {dial}, verifying {target.server_name})" if target.overridden else f" ({dial})"
        console.print(f"gen doctor: device {chosen.id} -> broker {target.server_name}{via}")
        console.print(f"protection at rest (its build): {protection}", markup=False, highlight=False)
        for number, result in enumerate(results, 1):
            console.print(styled(_MARKS[result.status], f" {number}. {result.title}: {result.summary}"))
            if result.ok is False:
                for detail in result.details:
                    console.print(f"     {detail}", style="dim")
                console.print(styled("     ", ("fix:", "bold"), f" {result.fix or ''}"))
    if any(result.ok is False for result in results):
        raise typer.Exit(1)


def build_protection(out_dir: Path, device_id: str) -> str:
    """What protects the device at rest, from its generated build (sdkconfig.defaults, nvs.bin)."""
    sdkconfig = out_dir / firmware_dir(device_id) / "sdkconfig.defaults"
    nvs = out_dir / "devices" / device_id / "nvs.bin"
    if not sdkconfig.is_file():
        return "unknown (no ESP-IDF build generated for it; Arduino builds have no protection at rest)"
    text = sdkconfig_protection(sdkconfig.read_text(encoding="utf-8"))
    image = nvs_image_protection(nvs.read_bytes()) if nvs.is_file() else None
    return f"{text}; {image}" if image else text


def register(app: typer.Typer) -> None:
    app.command()(doctor)
