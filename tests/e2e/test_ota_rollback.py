"""Anti-rollback, end to end in gen simulate's world (each flavour's firmware on the host runtime, booted from its
own flash, the real broker and a real `gen ota serve`): a device running 1.2.0 refuses a signed 1.1.0, whether the
announcement says 1.1.0 or lies that it is newer (the version inside the signed image decides: esp_app_desc_t on
ESP-IDF, the firmware's version record on Arduino), and installs it only when the announcement is a deliberate
downgrade: a permission `gen ota publish --allow-downgrade` signs with the project's OTA signing key for this device
and this image. A bare `"downgrade": true`, a permission made for another device or another image, or one signed
with another key, is refused. Announcements here are sent as gen's OTA identity, bypassing gen ota publish's own
refusal, as a stolen publisher key would."""

from __future__ import annotations

import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from generator.core.app_image import recorded_version
from generator.pki.ota_signing import SigningKey, sign_downgrade, signing_key
from generator.pki.layout import PkiLayout
from ota_support import OLDER, UPDATE, ota_project
from simulate_support import CONNECTED
from test_ota_update import assert_still_running_the_old_image, boots, run  # noqa: F401 (the run fixture)

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


REFUSED_PERMISSION = (rf"\[ota\] refused {OLDER}: its downgrade permission does not verify: it was not signed with "
                      r"this project's OTA key for this device and image; keeping 1\.2\.0")


def permission(ota, device_id: str, sha256: str, key: SigningKey | None = None) -> str:
    return sign_downgrade(key or signing_key(PkiLayout(ota.spec.pki.dir)), device_id, sha256, OLDER)


class RawAnnouncement:
    """An announcement as an attacker writes it, key by key."""

    def __init__(self, fields: dict):
        self.fields = fields

    def payload(self) -> bytes:
        return json.dumps(self.fields).encode()


def test_an_older_image_with_a_signed_downgrade_permission_is_installed_and_kept(ota, run):  # noqa: F811
    with ota.server() as server:
        broker, device = run(server)
        staged = ota.stage(ota.image(OLDER))
        ota.announce(broker, dataclasses.replace(staged, downgrade=permission(ota, ota.device_spec.id, staged.sha256)))
        device.wait_for(rf"\[ota\] {OLDER} verified and installed in \w+; rebooting into it")
        device.wait_for(rf"\[sim\] boot: \w+, {OLDER} \(pending verify: on trial\)")
        device.wait_for(CONNECTED)
        device.wait_for(rf"\[ota\] {OLDER} reached the broker: confirmed, no rollback")


def test_gen_ota_publish_reads_the_version_the_firmware_records_in_its_image(ota):
    # What check_image reads from an Arduino image is the record the firmware itself reads after a download; an
    # ESP-IDF image carries none (its esp_app_desc_t says the version).
    expected = {"arduino": OLDER, "espidf": None}[ota.device_spec.framework]
    assert recorded_version(ota.image(OLDER)) == expected


def test_a_bare_downgrade_flag_is_refused(ota, run):  # noqa: F811
    with ota.server() as server:
        broker, device = run(server)
        staged = ota.stage(ota.image(OLDER))
        fields = {**{k: v for k, v in dataclasses.asdict(staged).items() if k != "downgrade"}, "downgrade": True}
        ota.announce(broker, RawAnnouncement(fields))
        device.wait_for(r"\[ota\] ignored an announcement: downgrade is not a signed permission \(gen ota publish "
                        r"--allow-downgrade signs one; a flag is refused\)")
        assert len(boots(device)) == 1 and device.process.process.poll() is None, device.output()
        assert not any(f"downloading {OLDER}" in line for line in device.lines), device.output()


def test_a_downgrade_permission_signed_for_another_device_is_refused(ota, run):  # noqa: F811
    with ota.server() as server:
        broker, device = run(server)
        staged = ota.stage(ota.image(OLDER))
        ota.announce(broker, dataclasses.replace(staged, downgrade=permission(ota, "another-device", staged.sha256)))
        device.wait_for(REFUSED_PERMISSION)
        assert_still_running_the_old_image(device, ota, broker)


def test_a_downgrade_permission_signed_for_another_image_is_refused(ota, run):  # noqa: F811
    with ota.server() as server:
        broker, device = run(server)
        staged = ota.stage(ota.image(OLDER))
        other = ota.stage(ota.image(UPDATE)).sha256
        ota.announce(broker, dataclasses.replace(staged, downgrade=permission(ota, ota.device_spec.id, other)))
        device.wait_for(REFUSED_PERMISSION)
        assert_still_running_the_old_image(device, ota, broker)


def test_a_downgrade_permission_signed_with_another_key_is_refused(ota, run, tmp_path):  # noqa: F811
    from cryptography.hazmat.primitives import serialization

    other = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    key = SigningKey(tmp_path / "other-key.pem", tmp_path / "other.pem")
    key.private.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    key.private.chmod(0o600)
    key.public.write_bytes(other.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
    with ota.server() as server:
        broker, device = run(server)
        staged = ota.stage(ota.image(OLDER))
        ota.announce(broker, dataclasses.replace(staged, downgrade=permission(ota, ota.device_spec.id, staged.sha256,
                                                                              key)))
        device.wait_for(REFUSED_PERMISSION)
        assert_still_running_the_old_image(device, ota, broker)
