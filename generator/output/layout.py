"""Where everything lies in OUT/ (by default build/ next to the spec): the one place these names are spelled.
Paths are relative to OUT, POSIX-style, as the manifest records them.

    OUT/manifest.json
    OUT/broker/                      what the broker machine needs
    OUT/devices/<id>/                the device's certificates, key, nvs.bin
    OUT/devices/<id>/firmware/       its PlatformIO project
    OUT/images/<env>-<key>/          a built image, once for every device that shares it (gen build)
    OUT/artifacts/<id>/              a device's images ready to flash, flash.json (gen build)
    OUT/logs/                        PlatformIO's whole output (gen build)
"""

from __future__ import annotations

MANIFEST_NAME = "manifest.json"
BROKER_DIR = "broker"
DEVICES_DIR = "devices"
IMAGES_DIR = "images"
ARTIFACTS_DIR = "artifacts"
LOGS_DIR = "logs"

DEVICE_CA = "ca.pem"
DEVICE_CERT = "client.pem"
DEVICE_KEY = "client.key"
DEVICE_NVS = "nvs.bin"


def device_dir(device_id: str) -> str:
    return f"{DEVICES_DIR}/{device_id}"


def firmware_dir(device_id: str) -> str:
    return f"{device_dir(device_id)}/firmware"


def device_file(device_id: str, name: str) -> str:
    return f"{device_dir(device_id)}/{name}"


def artifacts_dir(device_id: str) -> str:
    return f"{ARTIFACTS_DIR}/{device_id}"
