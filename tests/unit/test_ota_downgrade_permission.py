"""A downgrade permission (`gen ota publish --allow-downgrade`) binds what the device must run and until when: the
signed message names the device, the image, its version, the version the device must be running and the expiry; the
announcement carries `<not after>:<from version>:<signature>`; and `--downgrade-valid-for` takes 1 to 365 days,
anything else is refused with exit 2 before anything is written."""

from __future__ import annotations

import base64
import datetime as dt

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

from generator.cli import main
from generator.pki.layout import PkiLayout
from generator.pki.ota_signing import DOWNGRADE_PADDING, ensure_signing_key, downgrade_message, sign_downgrade
from generator.spec.device_limits import OTA_DOWNGRADE_CAPACITY

SHA256 = "ab" * 32
NOT_AFTER = dt.datetime(2027, 1, 8, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return ensure_signing_key(PkiLayout(tmp_path_factory.mktemp("pki")))


def verifies(key, signature: str, message: bytes) -> bool:
    public = serialization.load_pem_public_key(key.public_pem())
    try:
        public.verify(base64.b64decode(signature), message, DOWNGRADE_PADDING, hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def test_the_signed_message_names_device_image_version_the_version_it_must_run_and_the_expiry():
    assert downgrade_message("sensor-a", SHA256, "1.1.0", "1.2.0", 1799409600) == (
        f"gen-ota-downgrade:v2:sensor-a:{SHA256}:1.1.0:1.2.0:1799409600".encode())


def test_a_permission_carries_its_expiry_and_from_version_before_the_signature_of_the_v2_message(key):
    permission = sign_downgrade(key, "sensor-a", SHA256, "1.1.0", from_version="1.2.0", not_after=NOT_AFTER)
    not_after, from_version, signature = permission.text().split(":")
    assert (int(not_after), from_version) == (int(NOT_AFTER.timestamp()), "1.2.0")
    assert permission.expires == NOT_AFTER
    assert verifies(key, signature, downgrade_message("sensor-a", SHA256, "1.1.0", "1.2.0", int(not_after)))
    assert len(permission.text()) < OTA_DOWNGRADE_CAPACITY


def test_a_permission_does_not_verify_for_another_running_version_or_a_later_expiry(key):
    permission = sign_downgrade(key, "sensor-a", SHA256, "1.1.0", from_version="1.2.0", not_after=NOT_AFTER)
    seconds = int(NOT_AFTER.timestamp())
    assert not verifies(key, permission.signature, downgrade_message("sensor-a", SHA256, "1.1.0", "1.3.0", seconds))
    assert not verifies(key, permission.signature, downgrade_message("sensor-a", SHA256, "1.1.0", "1.2.0",
                                                                     seconds + 86400))


def test_a_v1_message_is_not_what_a_permission_signs(key):
    permission = sign_downgrade(key, "sensor-a", SHA256, "1.1.0", from_version="1.2.0", not_after=NOT_AFTER)
    assert not verifies(key, permission.signature, f"gen-ota-downgrade:v1:sensor-a:{SHA256}:1.1.0".encode())


def publish(tmp_path, *options: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(["ota", "publish", str(tmp_path / "device.yaml"), "--device", "sensor-a", *options])
    return done.value.code


@pytest.mark.parametrize("days", ["0", "366", "-1", "seven"])
def test_a_validity_outside_1_to_365_days_is_refused_with_exit_2(days, tmp_path, capsys):
    assert publish(tmp_path, "--allow-downgrade", "--downgrade-valid-for", days) == 2
    err = capsys.readouterr().err
    assert "--downgrade-valid-for" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
