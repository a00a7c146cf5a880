"""`gen simulate` runs the encrypted NVS path: the host runtime's nvs_flash_init() (CONFIG_NVS_ENCRYPTION from the
generated sdkconfig.defaults) reads the keys of the nvs_keys partition and decrypts nvs.bin with them, as the board
does, so the device connects with its keys and reads nothing with wrong keys or a plain image."""

from __future__ import annotations

import dataclasses

from conftest import mqtt_session
from generator.firmware.nvs_image import render_nvs_image
from generator.firmware.security import NVS_HMAC_KEY_ID, nvs_keys_partition
from simulate_support import CONNECTED, SimDevice, simulated_project

EXAMPLE = "espidf-secure-ota"


def with_env(run, **changes):
    """`run` with these environment variables set (None: unset)."""
    environment = tuple((name, value) for name, value in run.environment if name not in changes)
    return dataclasses.replace(run, environment=environment + tuple((k, v) for k, v in changes.items() if v))


def assert_halts_without_settings(run, *lines: str) -> None:
    """The device prints `lines` (patterns, in order), then halts with its settings unreadable, never connected."""
    with SimDevice.start(run) as device:
        for line in lines:
            device.wait_for(line)
        device.wait_for(r"\[boot\] halted: the device settings are incomplete")
        summary = device.stop()
    assert not summary.connected


def test_with_its_keys_the_device_reads_its_encrypted_nvs_and_connects(tmp_path_factory, start_broker):
    project = simulated_project(EXAMPLE, tmp_path_factory)
    device_id = project.device().id
    broker = start_broker(project.broker_dir)
    run = project.run_for(device_id, broker)
    assert "GEN_SIM_NVS_KEYS" in dict(run.environment)
    with mqtt_session(broker, project.credentials.backend):
        with SimDevice.start(run) as device:
            device.wait_for(r'NVS partition "nvs" is encrypted')
            device.wait_for(CONNECTED + rf"mqtt\.example\.com:8883 as {device_id}")
            device.stop()


def test_with_wrong_keys_the_device_finds_no_settings(tmp_path_factory, start_broker, tmp_path):
    project = simulated_project(EXAMPLE, tmp_path_factory)
    device_id = project.device().id
    broker = start_broker(project.broker_dir)
    wrong = tmp_path / "wrong-keys.bin"
    wrong.write_bytes(nvs_keys_partition(b"\x11" * 32, b"\x22" * 32))
    run = with_env(project.run_for(device_id, broker), GEN_SIM_NVS_KEYS=str(wrong))
    assert_halts_without_settings(run, r'NVS partition "nvs" is encrypted', r'cannot open namespace "gen": ESP_ERR_NVS_NOT_FOUND')


def test_a_plain_nvs_image_fails_like_on_the_board(tmp_path_factory, start_broker, tmp_path):
    project = simulated_project(EXAMPLE, tmp_path_factory)
    device = project.device()
    broker = start_broker(project.broker_dir)
    plain = tmp_path / "plain-nvs.bin"
    plain.write_bytes(render_nvs_image(device, project.credentials.devices[device.id]))
    run = with_env(project.run_for(device.id, broker), GEN_SIM_NVS=str(plain))
    assert_halts_without_settings(run, r'cannot open namespace "gen": ESP_ERR_NVS_NOT_FOUND')


def test_without_keys_the_device_makes_new_ones_and_reads_nothing(tmp_path_factory, start_broker):
    project = simulated_project(EXAMPLE, tmp_path_factory)
    device_id = project.device().id
    broker = start_broker(project.broker_dir)
    run = with_env(project.run_for(device_id, broker), GEN_SIM_NVS_KEYS=None)
    assert_halts_without_settings(run, r"Failed to read NVS security cfg: \[0x1116\]; generating NVS encr-keys")


# --- the HMAC scheme (the same example on an ESP32-S3: its NVS keys are derived from the HMAC key in eFuse) ---------

def hmac_project(tmp_path_factory):
    return simulated_project(EXAMPLE, tmp_path_factory, target="esp32s3-espidf")


def test_with_its_hmac_key_in_efuse_the_device_derives_the_keys_reads_its_nvs_and_connects(tmp_path_factory,
                                                                                           start_broker):
    project = hmac_project(tmp_path_factory)
    device_id = project.device().id
    assert project.device().security.nvs_keys_from_hmac
    broker = start_broker(project.broker_dir)
    run = project.run_for(device_id, broker)
    environment = dict(run.environment)
    assert "GEN_SIM_NVS_KEYS" not in environment
    assert environment["GEN_SIM_EFUSE_HMAC_UP_KEY"].startswith(f"{NVS_HMAC_KEY_ID}:")
    with mqtt_session(broker, project.credentials.backend):
        with SimDevice.start(run) as device:
            device.wait_for(r'NVS partition "nvs" is encrypted')
            device.wait_for(CONNECTED + rf"mqtt\.example\.com:8883 as {device_id}")
            device.stop()
    assert not any("Failed to read NVS security cfg" in line for line in device.lines)


def test_with_another_hmac_key_in_efuse_the_device_finds_no_settings(tmp_path_factory, start_broker, tmp_path):
    project = hmac_project(tmp_path_factory)
    broker = start_broker(project.broker_dir)
    wrong = tmp_path / "other-hmac-key.bin"
    wrong.write_bytes(b"\x42" * 32)
    run = with_env(project.run_for(project.device().id, broker), GEN_SIM_EFUSE_HMAC_UP_KEY=f"{NVS_HMAC_KEY_ID}:{wrong}")
    assert_halts_without_settings(run, r'NVS partition "nvs" is encrypted', r'cannot open namespace "gen": ESP_ERR_NVS_NOT_FOUND')


def test_with_the_key_in_another_efuse_block_the_device_burns_its_own_and_reads_nothing(tmp_path_factory,
                                                                                       start_broker):
    project = hmac_project(tmp_path_factory)
    broker = start_broker(project.broker_dir)
    run = project.run_for(project.device().id, broker)
    key_file = dict(run.environment)["GEN_SIM_EFUSE_HMAC_UP_KEY"].split(":", 1)[1]
    run = with_env(run, GEN_SIM_EFUSE_HMAC_UP_KEY=f"{NVS_HMAC_KEY_ID + 1}:{key_file}")
    assert_halts_without_settings(run, r"Failed to read NVS security cfg: \[0xF001\]; generating NVS encr-keys")
