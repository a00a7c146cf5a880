"""`pki.key_origin: device` with `security.nvs_encryption`: an ESP-IDF device encrypts the partition it keeps its own
key in (gen_cred) with the NVS encryption keys, so the spec accepts the pair; Arduino-ESP32 cannot encrypt NVS at all
and still refuses it with the reason, at the option's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_fakes import write_security_spec
from generator.core.errors import UserError
from generator.spec import load_spec


def spec_for(tmp_path: Path, target: str) -> Path:
    return write_security_spec(tmp_path, "  nvs_encryption: true", target, key_origin="device")


@pytest.mark.parametrize("target, scheme", [("esp32s3-espidf", "hmac"), ("esp32-espidf", "flash_encryption")])
def test_an_esp_idf_device_that_makes_its_key_may_encrypt_its_nvs(tmp_path, target, scheme):
    device = load_spec(spec_for(tmp_path, target)).devices[0]
    assert device.makes_own_key
    assert device.security.nvs_encryption and device.security.nvs_keys_from_hmac == (scheme == "hmac")


def test_an_arduino_device_that_makes_its_key_still_refuses_nvs_encryption_at_its_line(tmp_path):
    with pytest.raises(UserError) as error:
        load_spec(spec_for(tmp_path, "esp32-arduino"))
    message = str(error.value)
    assert "device.yaml:11:" in message and "security.nvs_encryption" in message
    assert "Arduino-ESP32 2.0.17" in message and "CONFIG_NVS_ENCRYPTION" in message
