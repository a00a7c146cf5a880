"""Where everything lies in OUT/ (by default build/ next to the spec): the one place these names are spelled.
Paths are relative to OUT, POSIX-style, as the manifest records them.

    OUT/manifest.json
    OUT/broker/                      what the broker machine needs
    OUT/devices/<id>/                the device's certificates, key, nvs.bin
    OUT/devices/<id>/firmware/       its PlatformIO project (secrets: nvs: a link to the project of its image)
    OUT/firmware/<image>/project/    secrets: nvs: one PlatformIO project per distinct app image, shared
    OUT/images/<env>-<key>/          a built image, once for every device that shares it (gen build)
    OUT/artifacts/<id>/              a device's images ready to flash, flash.json (gen build)
    OUT/logs/                        PlatformIO's whole output (gen build)
    OUT/ota/<id>/<sha256>.bin        an image announced to a device, served by `gen ota serve` (gen ota publish)
    OUT/simulate/<id>/               a simulated device's flash and the images it boots (gen simulate, with ota:)
"""

from __future__ import annotations

MANIFEST_NAME = "manifest.json"
BROKER_DIR = "broker"
DEVICES_DIR = "devices"
IMAGES_DIR = "images"
SHARED_FIRMWARE_DIR = "firmware"
ARTIFACTS_DIR = "artifacts"
LOGS_DIR = "logs"
OTA_DIR = "ota"
SIMULATE_DIR = "simulate"
BROKER_UP_RECORD = "run/broker-up.json"   # where `gen broker up`'s broker lives, while it runs (gen broker apply)
CLUSTER_UP_RECORD = "run/broker-cluster-up.json"   # where `gen broker up`'s RabbitMQ cluster runs (apply, gen ota)

DEVICE_CA = "ca.pem"
DEVICE_CERT = "client.pem"
DEVICE_KEY = "client.key"
DEVICE_NVS = "nvs.bin"


def device_dir(device_id: str) -> str:
    return f"{DEVICES_DIR}/{device_id}"


def firmware_dir(device_id: str) -> str:
    return f"{device_dir(device_id)}/firmware"


def shared_firmware_dir(image: str) -> str:
    """A project every `secrets: nvs` device of one image builds from; as deep as firmware_dir, so each relative
    path in it means the same from either."""
    return f"{SHARED_FIRMWARE_DIR}/{image}/project"


def device_file(device_id: str, name: str) -> str:
    return f"{device_dir(device_id)}/{name}"


def artifacts_dir(device_id: str) -> str:
    return f"{ARTIFACTS_DIR}/{device_id}"


def ota_image(device_id: str, sha256: str) -> str:
    """Where `gen ota publish` puts an image it announces, and `gen ota serve` serves it from."""
    return f"{OTA_DIR}/{device_id}/{sha256}.bin"


def simulated_device_dir(device_id: str) -> str:
    return f"{SIMULATE_DIR}/{device_id}"
