"""The spec's `ota:` and `firmware.version`, as the rest of gen reads them: the version from git when the spec gives
none, each device's OTA topics expanded (and in its NVS image with `secrets: nvs`), and an MQTT buffer that holds the
largest announcement gen ota publish can send."""

from __future__ import annotations

import subprocess

from generator.pki.ota_signing import DowngradePermission
from generator.spec.device_limits import (OTA_ANNOUNCEMENT_CAPACITY, OTA_DOWNGRADE_CAPACITY,
                                          OTA_DOWNGRADE_SIGNATURE_TEXT, mqtt_buffer_size)
from generator.firmware.nvs_reader import read_nvs_image
from generator.firmware.nvs_image import render_nvs_image
from firmware_fakes import credentials_for
from generator.ota.announce import Announcement
from generator.spec import load_spec

SPEC = """\
project: {project}
target: esp32-arduino
wifi: {{ssid: w, password: passphrase1}}
broker: {{host: {host}}}
secrets: {secrets}
ota: {{}}
{firmware}devices:
  - id: a-device-id-of-23-chars
"""


def spec(tmp_path, *, firmware: str = "", secrets: str = "embed", project: str = "greenhouse",
         host: str = "mqtt.example.com"):
    (tmp_path / "device.yaml").write_text(SPEC.format(firmware=firmware, secrets=secrets, project=project, host=host))
    return load_spec(tmp_path / "device.yaml")


def git(directory, *args):
    subprocess.run(["git", "-C", str(directory), *args], check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


def test_without_firmware_version_the_version_is_the_projects_git_describe(tmp_path):
    spec(tmp_path)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "device.yaml")
    git(tmp_path, "commit", "-q", "-m", "spec")
    git(tmp_path, "tag", "v1.4.0")
    assert load_spec(tmp_path / "device.yaml").devices[0].firmware_version == "v1.4.0"
    (tmp_path / "device.yaml").write_text((tmp_path / "device.yaml").read_text() + "\n")
    assert load_spec(tmp_path / "device.yaml").devices[0].firmware_version == "v1.4.0-dirty"


def test_outside_git_and_without_firmware_version_the_version_is_0_0_0(tmp_path):
    assert spec(tmp_path).devices[0].firmware_version == "0.0.0"


def test_firmware_version_wins_over_git(tmp_path):
    assert spec(tmp_path, firmware="firmware: {version: 2.0.0-rc1}\n").devices[0].firmware_version == "2.0.0-rc1"


def test_the_ota_topics_are_the_devices_own_and_its_nvs_image_carries_them(tmp_path):
    device = spec(tmp_path, secrets="nvs").devices[0]
    assert (device.ota.topic, device.ota.firmware_topic) == ("devices/a-device-id-of-23-chars/ota",
                                                             "devices/a-device-id-of-23-chars/firmware")
    entries = read_nvs_image(render_nvs_image(device, credentials_for(device)))["gen"]
    assert (entries["ota_topic"].text(), entries["fw_topic"].text()) == (device.ota.topic, device.ota.firmware_topic)


def test_the_mqtt_buffer_holds_the_largest_announcement(tmp_path):
    host = ".".join(["a" * 63] * 3) + "." + "b" * 61            # a 253-character broker name
    device = spec(tmp_path, project="p" * 63, host=host).devices[0]
    largest = Announcement(version="v" * 31, size=4_294_967_295, sha256="f" * 64,
                           url=f"https://{host}:65535/{device.id}/{'f' * 64}.bin", target="esp32s3-espidf",
                           project="p" * 63, downgrade=DowngradePermission(9_999_999_999, "v" * 31,
                                                                           "A" * OTA_DOWNGRADE_SIGNATURE_TEXT).text())
    assert len(largest.payload()) <= OTA_ANNOUNCEMENT_CAPACITY
    assert len(largest.downgrade) < OTA_DOWNGRADE_CAPACITY
    assert mqtt_buffer_size(device) >= 5 + 2 + len(device.ota.topic) + 2 + len(largest.payload())
