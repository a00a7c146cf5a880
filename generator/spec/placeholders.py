"""The WiFi values `gen new` writes into secrets.yaml for the user to replace, and the check that they were: a
device flashed with them never joins a network, so `gen check` refuses them (exit 2, file:line and the fix)."""

from __future__ import annotations

from pathlib import Path

from generator.core.errors import UserError
from generator.spec.model import Spec

PLACEHOLDER_SSID = "your-wifi-name"
PLACEHOLDER_PASSWORD = "your-wifi-passphrase"
PLACEHOLDERS = {PLACEHOLDER_SSID: "wifi_ssid", PLACEHOLDER_PASSWORD: "wifi_password"}


def placeholder_lines(secrets_text: str, values: set[str]) -> list[int]:
    """1-based lines of secrets.yaml that hold one of `values`."""
    return [number for number, line in enumerate(secrets_text.splitlines(), 1) if any(v in line for v in values)]


def check_no_placeholders(spec: Spec, secrets_file: Path) -> None:
    """Raises UserError when a device's WiFi SSID or passphrase is still what `gen new` wrote."""
    found = {value for device in spec.devices for value in (device.wifi.ssid, device.wifi.password)
             if value in PLACEHOLDERS}
    if not found:
        return
    try:
        lines = placeholder_lines(secrets_file.read_text(), found)
    except OSError:
        lines = []
    where = ", ".join(f"{secrets_file}:{line}" for line in lines) or str(secrets_file)
    names = " and ".join(PLACEHOLDERS[value] for value in sorted(found, key=lambda v: PLACEHOLDERS[v], reverse=True))
    raise UserError(f"{where}: {names} still hold the placeholder `gen new` wrote; a device flashed with it never "
                    "joins your network", hint=f"put your WiFi's name and passphrase in {secrets_file}")
