"""security.rom_download_mode: the UART ROM download mode choice of ESP-IDF's Kconfig (enabled, Secure Download
Mode, disabled), allowed where the Kconfig allows it and refused with the reason elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_fakes import write_security_spec
from generator.core.errors import UserError
from generator.firmware.security import sdkconfig_protection
from generator.spec import load_spec

def load(tmp_path: Path, security: str, target: str = "esp32s3-espidf"):
    return load_spec(write_security_spec(tmp_path, security, target)).devices[0].security


def test_without_the_option_gen_leaves_the_choice_to_esp_idf(tmp_path):
    assert load(tmp_path, "  flash_encryption: release").rom_download_mode is None


def test_secure_download_mode_on_the_esp32_is_refused_at_its_line(tmp_path):
    with pytest.raises(UserError) as error:
        load(tmp_path, "  rom_download_mode: secure", "esp32-espidf")
    assert "device.yaml:9:" in str(error.value) and "no Secure Download Mode" in str(error.value)


def test_without_secure_boot_or_flash_encryption_the_option_is_refused(tmp_path):
    with pytest.raises(UserError) as error:
        load(tmp_path, "  flash_encryption: off\n  rom_download_mode: disabled")
    assert "device.yaml:10:" in str(error.value) and "SECURE_BOOT_V2_ENABLED || SECURE_FLASH_ENC_ENABLED" in str(
        error.value)


def test_an_arduino_device_refuses_the_option(tmp_path):
    with pytest.raises(UserError) as error:
        load(tmp_path, "  flash_encryption: off\n  rom_download_mode: disabled", "esp32-arduino")
    assert "Arduino-ESP32 2.0.17" in str(error.value) and "CONFIG_SECURE_UART_ROM_DL_MODE" in str(error.value)


def test_gen_inspect_reads_a_disabled_download_mode_from_the_sdkconfig():
    text = "CONFIG_SECURE_FLASH_ENC_ENABLED=y\nCONFIG_SECURE_DISABLE_ROM_DL_MODE=y\n"
    assert "UART ROM download mode disabled" in sdkconfig_protection(text)


def test_the_spec_knows_secure_download_mode_of_every_chip_the_kconfig_audit_records():
    from generator.firmware.kconfig_audit import SOC_FACTS
    from generator.spec.security import SECURE_DOWNLOAD_CHIPS
    for chip, facts in SOC_FACTS.items():
        assert (chip in SECURE_DOWNLOAD_CHIPS) == ("SOC_SUPPORTS_SECURE_DL_MODE" in facts), chip
