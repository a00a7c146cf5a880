"""`gen flash` for a device with `security:` (generator.firmware_build.secure_flash): shows the plan, refuses
irreversible steps without their named flags, reads the chip's eFuses and runs what is still to do."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from generator.firmware_build.flashing import (
    BuiltDevice,
    bootloader_offset,
    choose_port,
    read_flash_layout,
    run_flashing_tool,
)
from generator.firmware_build.secure_flash import SecureFlashPlan, pending_steps, refusal, secure_flash_plan
from generator.core.external_tools import require_espsecure, require_esptool
from generator.cli.terminal import console
from generator.core.errors import ToolError
from generator.firmware.security import (
    ensure_flash_encryption_key,
    flash_encryption_key_path,
    nvs_hmac_key_path,
    nvs_keys_path,
)
from generator.pki.ota_signing import signing_key
from generator.pki.layout import PkiLayout
from generator.spec import Device, Spec

SUMMARY_TIMEOUT_S = 120


def device_plan(spec: Spec, device: Device, built: BuiltDevice, *, make_keys: bool = True) -> SecureFlashPlan:
    """The device's plan; `make_keys`: make its flash encryption key now if it has none (not for --dry-run)."""
    layout = read_flash_layout(built.artifacts_dir)
    pki = PkiLayout(spec.pki.dir)
    security = device.security
    assert security is not None
    flash_key = (ensure_flash_encryption_key(pki.private, device.id) if security.encrypts_flash and make_keys
                 else flash_encryption_key_path(pki.private, device.id))
    key = signing_key(pki)
    images = tuple((image.offset, (built.artifacts_dir / image.file).resolve()) for image in layout.images)
    return secure_flash_plan(device, images=images, flash_key=flash_key, signing_key=key.private,
                             signing_public=key.public,
                             nvs_keys=nvs_keys_path(pki.private, device.id) if security.nvs_keys_partition else None,
                             nvs_hmac_key=nvs_hmac_key_path(pki.private, device.id)
                             if security.nvs_keys_from_hmac else None,
                             signed_dir=built.artifacts_dir.resolve(),
                             bootloader_offset=bootloader_offset(device.chip),
                             flash_args=tuple(layout.settings.esptool_args()))


def show_plan(plan: SecureFlashPlan, port: str) -> None:
    console.print(f"protecting and flashing {plan.device} ({plan.chip}):", markup=False, highlight=False)
    for number, step in enumerate(plan.steps, 1):
        mark = f"   [irreversible: needs {step.needs}]" if step.needs else ""
        console.print(f"{number}. {step.what}{mark}\n   {step.command(plan.chip, port)}", markup=False,
                      highlight=False)
    for line in plan.first_boot:
        console.print(f"on first boot: {line}", markup=False, highlight=False)


def flash_protected(spec: Spec, device: Device, built: BuiltDevice, *, port: str | None, dry_run: bool,
                    flags: set[str]) -> None:
    plan = device_plan(spec, device, built, make_keys=not dry_run)
    show_plan(plan, port or "PORT")
    if dry_run:
        return
    error = refusal(plan, flags)
    if error is not None:
        raise error
    port = choose_port(port)
    tools = {"esptool": require_esptool(), "espsecure": require_espsecure()}
    tools["espefuse"] = str(Path(tools["esptool"]).with_name("espefuse"))
    summary = subprocess.run([tools["espefuse"], "--chip", plan.chip, "--port", port, "summary", "--format",
                              "json"], capture_output=True, text=True, timeout=SUMMARY_TIMEOUT_S)
    if summary.returncode != 0 or "{" not in summary.stdout:
        raise ToolError(f"espefuse could not read {port}'s eFuses:\n{summary.stdout[-1500:]}{summary.stderr[-1500:]}")
    for step in pending_steps(plan, json.loads(summary.stdout[summary.stdout.index("{"):])):
        argv = step.argv(plan.chip, port)
        run_flashing_tool([tools[step.tool], *argv[1:]], port=port, echo=lambda line: console.print(
            line, markup=False, highlight=False))
    console.print(f"flashed {device.id} with its protections; see the README's \"Production checklist\"")
