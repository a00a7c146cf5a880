"""NVS encryption with the HMAC scheme (chips with the HMAC peripheral): the spec chooses it by chip, the device's
HMAC key is kept in pki/private/nvs-keys/, the XTS-AES keys are derived from it as nvs_sec_provider does on the
device (cross-checked with esp-idf-nvs-partition-gen's --key_protect_hmac), and the partition table has no
nvs_keys partition."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pytest
from esp_idf_nvs_partition_gen import nvs_partition_gen as nvs_gen

from firmware_fakes import credentials_for, example_devices, write_firmware_project, write_security_spec
from generator.core.errors import UserError
from generator.firmware.kconfig_audit import SOC_FACTS
from generator.firmware.nvs_image import NVS_NAMESPACE, render_nvs_image
from generator.firmware.nvs_reader import NvsFormatError, read_nvs_image
from generator.firmware.security import (
    NVS_HMAC_KEY_ID,
    decrypt_nvs_image,
    device_nvs_image,
    device_nvs_keys,
    ensure_nvs_hmac_key,
    nvs_hmac_key_path,
    nvs_keys_from_hmac,
    nvs_keys_path,
    read_nvs_keys,
)
from generator.spec import load_spec
from generator.spec.catalogue import load_catalogue
from generator.spec.model import Security
from generator.spec.security import HMAC_CHIPS

def spec_security(tmp_path: Path, security: str, target: str) -> Security:
    return load_spec(write_security_spec(tmp_path, security, target)).devices[0].security


def hmac_device(target: str = "esp32s3-espidf"):
    device = example_devices("espidf-secure-ota")[0]
    return replace(device, target=load_catalogue()[target],
                   security=Security(flash_encryption="off", nvs_encryption=True, nvs_key_protection="hmac"))


# --- the spec ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["esp32s3-espidf", "esp32c3-espidf"])
def test_nvs_encryption_on_a_chip_with_the_hmac_peripheral_is_protected_by_hmac(tmp_path, target):
    security = spec_security(tmp_path, "  nvs_encryption: true", target)
    assert security.nvs_key_protection == "hmac" and security.nvs_keys_from_hmac


def test_nvs_encryption_on_the_esp32_keeps_its_keys_in_nvs_keys(tmp_path):
    security = spec_security(tmp_path, "  nvs_encryption: true", "esp32-espidf")
    assert security.nvs_key_protection == "flash_encryption" and security.nvs_keys_partition


def test_with_hmac_nvs_encryption_does_not_need_flash_encryption(tmp_path):
    security = spec_security(tmp_path, "  flash_encryption: off\n  nvs_encryption: true", "esp32c3-espidf")
    assert not security.encrypts_flash and security.nvs_keys_from_hmac


def test_the_spec_may_keep_the_keys_in_nvs_keys_on_a_chip_with_hmac(tmp_path):
    security = spec_security(tmp_path, "  nvs_encryption: true\n  nvs_key_protection: flash_encryption",
                             "esp32s3-espidf")
    assert security.nvs_keys_partition and not security.nvs_keys_from_hmac


def test_hmac_on_the_esp32_is_refused_at_its_line(tmp_path):
    with pytest.raises(UserError) as error:
        spec_security(tmp_path, "  nvs_encryption: true\n  nvs_key_protection: hmac", "esp32-espidf")
    assert "device.yaml:10:" in str(error.value) and "HMAC peripheral" in str(error.value)
    assert "fix: use nvs_key_protection: flash_encryption" in str(error.value)


def test_nvs_key_protection_without_nvs_encryption_is_refused(tmp_path):
    with pytest.raises(UserError) as error:
        spec_security(tmp_path, "  nvs_key_protection: hmac", "esp32s3-espidf")
    assert "device.yaml:9:" in str(error.value) and "nvs_encryption is off" in str(error.value)


def test_the_spec_knows_the_hmac_peripheral_of_every_chip_the_kconfig_audit_records():
    for chip, facts in SOC_FACTS.items():
        assert (chip in HMAC_CHIPS) == ("SOC_HMAC_SUPPORTED" in facts), chip


# --- the keys and the image --------------------------------------------------------------------------------------

def test_the_derived_keys_are_the_ones_esp_idf_nvs_partition_gen_derives_from_the_hmac_key(tmp_path):
    hmac_key = ensure_nvs_hmac_key(tmp_path / "private", "shed-01")
    args = argparse.Namespace(keyfile="keys.bin", outdir=str(tmp_path / "out"), key_protect_hmac=True,
                              kp_hmac_keygen=False, kp_hmac_keyfile=None,
                              kp_hmac_inputkey=str(nvs_hmac_key_path(tmp_path / "private", "shed-01")))
    nvs_gen.generate_key(args)
    theirs = read_nvs_keys((tmp_path / "out/keys/keys.bin").read_bytes())
    assert nvs_keys_from_hmac(hmac_key) == theirs
    data_key, tweak_key = theirs
    assert data_key != tweak_key and hmac_key not in (data_key, tweak_key)


def test_decrypted_with_the_keys_derived_from_its_hmac_key_the_image_holds_the_credentials(tmp_path):
    device = hmac_device()
    credentials = credentials_for(device)
    keys = device_nvs_keys(device, tmp_path / "private")
    image = device_nvs_image(device, credentials, keys)
    hmac_key = nvs_hmac_key_path(tmp_path / "private", device.id).read_bytes()
    values = read_nvs_image(decrypt_nvs_image(image, nvs_keys_from_hmac(hmac_key)))[NVS_NAMESPACE]
    assert values["wifi_pass"].text() == device.wifi.password
    assert values["key_pem"].value == credentials.key_pem + b"\0"


def test_without_the_hmac_key_the_image_shows_no_secret_and_another_key_reads_nothing(tmp_path):
    device = hmac_device("esp32c3-espidf")
    credentials = credentials_for(device)
    image = device_nvs_image(device, credentials, device_nvs_keys(device, tmp_path / "private"))
    assert device.wifi.password.encode() in render_nvs_image(device, credentials)
    for secret in (device.wifi.password.encode(), credentials.key_pem[40:80], b"PRIVATE KEY", b"wifi_pass"):
        assert secret not in image
    with pytest.raises(NvsFormatError):
        read_nvs_image(decrypt_nvs_image(image, nvs_keys_from_hmac(b"\x42" * 32)))


def test_the_hmac_key_is_made_once_0600_in_a_0700_folder_and_no_nvs_keys_partition_is_made(tmp_path):
    device = hmac_device()
    private = tmp_path / "private"
    first = device_nvs_keys(device, private)
    path = nvs_hmac_key_path(private, device.id)
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert len(path.read_bytes()) == 32 and device_nvs_keys(device, private) == first
    assert not nvs_keys_path(private, device.id).exists()


def test_an_hmac_device_has_no_nvs_keys_partition_and_reads_its_key_from_the_block_gen_burns(tmp_path):
    root = write_firmware_project(tmp_path / "fw", hmac_device(), credentials_for(hmac_device()))
    table = (root / "partitions.csv").read_text()
    assert "nvs_keys" not in table and "\nnvs," in table
    sdkconfig = (root / "sdkconfig.defaults").read_text()
    assert f"CONFIG_NVS_SEC_HMAC_EFUSE_KEY_ID={NVS_HMAC_KEY_ID}" in sdkconfig
    assert "CONFIG_SECURE_FLASH_ENC_ENABLED" not in sdkconfig
