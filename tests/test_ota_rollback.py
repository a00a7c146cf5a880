"""Anti-rollback, end to end in gen simulate's world (each flavour's firmware on the host runtime, booted from its
own flash, the real broker and a real `gen ota serve`): a device running 1.2.0 refuses a signed 1.1.0, whether the
announcement says 1.1.0 or lies that it is newer (the version inside the signed image decides: esp_app_desc_t on
ESP-IDF, the firmware's version record on Arduino), and installs it only when the announcement is a deliberate
downgrade (what `gen ota publish --allow-downgrade` writes). Announcements here are sent as gen's OTA identity,
bypassing gen ota publish's own refusal, as a stolen publisher key would."""

from __future__ import annotations

import dataclasses

import pytest

from generator.ota.image import recorded_version
from ota_support import OLDER, ota_project
from simulate_support import CONNECTED
from test_ota_update import assert_still_running_the_old_image, run  # noqa: F401 (the run fixture)

pytestmark = pytest.mark.slow


@pytest.fixture(params=["espidf-ota", "arduino-ota"])
def ota(request, tmp_path_factory):
    return ota_project(request.param, tmp_path_factory)


def test_an_older_signed_image_is_refused_and_the_running_one_is_kept(ota, run):  # noqa: F811
    with ota.server() as server:
        broker, device = run(server)
        ota.announce(broker, ota.stage(ota.image(OLDER)))
        device.wait_for(rf"\[ota\] refused {OLDER}: it is older than the running version 1\.2\.0 \(a downgrade is "
                        r"announced with gen ota publish --allow-downgrade\)")
        assert_still_running_the_old_image(device, ota, broker)
        assert not any(f"downloading {OLDER}" in line for line in device.lines), device.output()


def test_an_older_image_announced_as_a_newer_version_is_refused_by_the_version_inside_it(ota, run):  # noqa: F811
    with ota.server() as server:
        broker, device = run(server)
        lie = dataclasses.replace(ota.stage(ota.image(OLDER)), version="1.4.0")
        ota.announce(broker, lie)
        device.wait_for(rf"\[ota\] refused 1\.4\.0: the image says it is version {OLDER}")
        assert_still_running_the_old_image(device, ota, broker)


def test_an_older_image_announced_as_a_deliberate_downgrade_is_installed_and_kept(ota, run):  # noqa: F811
    with ota.server() as server:
        broker, device = run(server)
        ota.announce(broker, dataclasses.replace(ota.stage(ota.image(OLDER)), downgrade=True))
        device.wait_for(rf"\[ota\] {OLDER} verified and installed in \w+; rebooting into it")
        device.wait_for(rf"\[sim\] boot: \w+, {OLDER} \(pending verify: on trial\)")
        device.wait_for(CONNECTED)
        device.wait_for(rf"\[ota\] {OLDER} reached the broker: confirmed, no rollback")


def test_gen_ota_publish_reads_the_version_the_firmware_records_in_its_image(ota):
    # What check_image reads from an Arduino image is the record the firmware itself reads after a download; an
    # ESP-IDF image carries none (its esp_app_desc_t says the version).
    expected = {"arduino": OLDER, "espidf": None}[ota.device_spec.framework]
    assert recorded_version(ota.image(OLDER)) == expected
