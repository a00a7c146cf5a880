"""Anti-rollback, end to end in gen simulate's world (each flavour's firmware on the host runtime, booted from its
own flash, the real broker and a real `gen ota serve`): a device running 1.2.0 refuses a signed 1.1.0, whether the
announcement says 1.1.0 or lies that it is newer (the version inside the signed image decides: esp_app_desc_t on
ESP-IDF, the firmware's version record on Arduino), and installs it only when the announcement is a deliberate
downgrade: a permission `gen ota publish --allow-downgrade` signs with the project's OTA signing key for this device
and this image, while it runs 1.2.0, until a date. A bare `"downgrade": true`, a permission made for another device
or another image, one signed with another key, one replayed after the device moved on to another version, one past
its date by the device's clock (or whose date was pushed back), and one in gen's older v1 form, are refused.
Announcements here are sent as gen's OTA identity, bypassing gen ota publish's own refusal, as a stolen publisher key
would, or as a captured retained announcement replayed."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import json
import re

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from generator.core.app_image import recorded_version
from generator.ota.status import collect_status
from generator.pki.ota_signing import DOWNGRADE_PADDING, DOWNGRADE_VALID_DAYS, SigningKey, sign_downgrade, signing_key
from generator.simulate.clock import shifted_environment
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


def permission(ota, device_id: str, sha256: str, key: SigningKey | None = None, *, from_version: str = "1.2.0",
               not_after: dt.datetime | None = None) -> str:
    """What `gen ota publish --allow-downgrade` signs: for a device running `from_version`, a week by default."""
    until = not_after or dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=DOWNGRADE_VALID_DAYS)
    return sign_downgrade(key or signing_key(PkiLayout(ota.spec.pki.dir)), device_id, sha256, OLDER,
                          from_version=from_version, not_after=until).text()


def refused_permission(why: str, running: str = "1.2.0") -> str:
    return rf"\[ota\] refused {OLDER}: its downgrade permission {why}; keeping {re.escape(running)}"


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


def v1_permission(ota, sha256: str) -> str:
    """A permission as gen made them before: the signature alone, of a message naming no running version or date."""
    from cryptography.hazmat.primitives import hashes, serialization

    private = serialization.load_pem_private_key(signing_key(PkiLayout(ota.spec.pki.dir)).private.read_bytes(), None)
    message = f"gen-ota-downgrade:v1:{ota.device_spec.id}:{sha256}:{OLDER}".encode()
    return base64.b64encode(private.sign(message, DOWNGRADE_PADDING, hashes.SHA256())).decode("ascii")


def test_a_captured_downgrade_replayed_after_the_device_moved_on_is_refused(ota, run):  # noqa: F811
    with ota.server() as server:
        broker, device = run(server)
        older = ota.stage(ota.image(OLDER))
        captured = dataclasses.replace(older, downgrade=permission(ota, ota.device_spec.id, older.sha256))
        ota.announce(broker, ota.stage(ota.image(UPDATE)))       # the fleet moves on to the fixed version
        device.wait_for(rf"\[ota\] {UPDATE} reached the broker: confirmed, no rollback")
        ota.announce(broker, captured)                         # the downgrade made while it ran 1.2.0, replayed
        device.wait_for(refused_permission(r"holds for a device running 1\.2\.0; this one runs 1\.3\.0", UPDATE))
        device.wait_for(r"\[mqtt\] published \d+ bytes to .*/firmware")     # the "refused" report
        (status,) = collect_status(ota.spec, (broker.host, broker.port))
        assert (status.version, status.state) == (UPDATE, "refused"), status
        assert not any(f"downloading {OLDER}" in line for line in device.lines), device.output()
        assert len(boots(device)) == 2, device.output()


@pytest.fixture
def run_days_ahead(ota, tmp_path, start_broker):
    """`broker, device = run_days_ahead(server, days)`: as `run`, the device's clock `days` ahead (libfaketime)."""
    with contextlib.ExitStack() as stack:

        def start(server, days: int):
            broker = start_broker(ota.broker_dir)
            clock = shifted_environment(dt.timedelta(days=days))
            device = stack.enter_context(ota.device(tmp_path, broker, server, clock))
            device.wait_for(r"\[ota\] listening for updates on ")
            return broker, device

        yield start


def test_a_downgrade_permission_is_refused_once_the_devices_clock_is_past_its_expiry(ota, run_days_ahead):
    with ota.server() as server:
        broker, device = run_days_ahead(server, DOWNGRADE_VALID_DAYS + 1)    # it comes online a day too late
        staged = ota.stage(ota.image(OLDER))
        ota.announce(broker, dataclasses.replace(staged, downgrade=permission(ota, ota.device_spec.id, staged.sha256)))
        refused = device.wait_for(refused_permission(r"expired at (\S+)Z; this device's clock says (\S+)Z"))
        until, clock = (dt.datetime.fromisoformat(text) for text in refused.groups())
        # A day late, give or take the seconds between signing and the device's check:
        assert dt.timedelta(days=1, seconds=-1) <= clock - until < dt.timedelta(days=1, minutes=5), refused[0]
        assert_still_running_the_old_image(device, ota, broker)


def test_a_downgrade_permission_whose_expiry_was_pushed_back_does_not_verify(ota, run):  # noqa: F811
    with ota.server() as server:
        broker, device = run(server)
        staged = ota.stage(ota.image(OLDER))
        expired = permission(ota, ota.device_spec.id, staged.sha256,
                             not_after=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1))
        _, from_version, signature = expired.split(":")
        later = int((dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=30)).timestamp())
        ota.announce(broker, dataclasses.replace(staged, downgrade=f"{later}:{from_version}:{signature}"))
        device.wait_for(REFUSED_PERMISSION)
        assert_still_running_the_old_image(device, ota, broker)


def test_a_permission_in_the_old_v1_form_is_refused(ota, run):  # noqa: F811
    with ota.server() as server:
        broker, device = run(server)
        staged = ota.stage(ota.image(OLDER))
        ota.announce(broker, dataclasses.replace(staged, downgrade=v1_permission(ota, staged.sha256)))
        device.wait_for(refused_permission(r"is not <not after>:<from version>:<signature> \(an older gen made it: "
                                           r"announce it again with this one\)"))
        assert_still_running_the_old_image(device, ota, broker)
