"""The per-device NVS partition (secrets: nvs): written by esp-idf-nvs-partition-gen, read back by our own reader
with every CRC checked, holding exactly the keys the firmware reads, within NVS's limits."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest

from firmware_fakes import credentials_for, example_devices, issue_leaf, pem, fake_ca
from generator.core.errors import UserError
from generator.firmware.render import render_firmware
from generator.firmware.nvs_image import (
    NVS_KEY_MAX,
    NVS_NAMESPACE,
    NVS_PARTITION_SIZES,
    device_nvs_entries,
    render_nvs_image,
)
from generator.firmware.nvs_reader import TYPE_BLOB_DATA, TYPE_SZ, NvsFormatError, read_nvs_image


def fleet_device(index: int = 0):
    return example_devices("fleet-nvs")[index]


def test_the_image_round_trips_through_our_reader():
    device = fleet_device()
    credentials = credentials_for(device)
    image = render_nvs_image(device, credentials)
    assert len(image) == NVS_PARTITION_SIZES["arduino"]
    values = read_nvs_image(image)[NVS_NAMESPACE]
    assert values["device_id"].text() == device.id
    assert values["wifi_ssid"].text() == device.wifi.ssid
    assert values["wifi_pass"].text() == device.wifi.password
    assert values["ca_pem"].type == TYPE_BLOB_DATA and values["ca_pem"].value == credentials.ca_pem + b"\0"
    assert values["cert_pem"].value == credentials.cert_pem + b"\0"
    assert values["key_pem"].value == credentials.key_pem + b"\0"
    assert values["status_topic"].text() == device.status.topic
    assert [values[f"pub_{i}"].text() for i in range(len(device.publish))] == [p.topic for p in device.publish]
    assert [values[f"sub_{i}"].text() for i in range(len(device.subscribe))] == [s.filter for s in device.subscribe]
    assert "mqtt_pass" not in values  # mtls only


def test_password_modes_store_the_mqtt_password_as_a_string():
    device = replace(fleet_device(), auth="mtls+password")
    credentials = credentials_for(device)
    values = read_nvs_image(render_nvs_image(device, credentials))[NVS_NAMESPACE]
    assert values["mqtt_pass"].type == TYPE_SZ and values["mqtt_pass"].text() == credentials.password


def test_every_key_the_firmware_reads_is_in_the_image_and_within_nvs_limits():
    device = fleet_device()
    credentials = credentials_for(device)
    keys = {entry.key for entry in device_nvs_entries(device, credentials)}
    assert all(len(key) <= NVS_KEY_MAX for key in keys)
    config = render_firmware(device, credentials).generated["include/gen_config.h"].decode()
    for key in keys:   # a constant (identity, credentials, status) or a topic's source in an X-macro list
        assert f'= "{key}";' in config or f', "{key}", ' in config, key
    assert set(read_nvs_image(render_nvs_image(device, credentials))[NVS_NAMESPACE]) == keys


def test_a_pem_chain_longer_than_an_nvs_string_is_stored_as_a_blob_across_pages():
    device = fleet_device()
    chain = b"".join([issue_leaf(f"intermediate-{i}", "rsa-2048")[0] for i in range(5)]) + pem(fake_ca()[1])
    assert len(chain) > 4000
    credentials = replace(credentials_for(device), ca_pem=chain)
    image = render_nvs_image(device, credentials)
    assert read_nvs_image(image)[NVS_NAMESPACE]["ca_pem"].value == chain + b"\0"


def test_the_image_is_the_same_every_time():
    device = fleet_device()
    credentials = credentials_for(device)
    assert render_nvs_image(device, credentials) == render_nvs_image(device, credentials)


def test_credentials_too_big_for_the_partition_are_a_user_error_not_a_traceback():
    device = fleet_device()
    huge = b"".join([issue_leaf(f"ca-{i}", "rsa-2048")[0] for i in range(20)])
    with pytest.raises(UserError, match="do not fit"):
        render_nvs_image(device, replace(credentials_for(device), ca_pem=huge))


def test_a_topic_longer_than_the_shared_firmware_holds_is_a_user_error_of_the_spec(tmp_path):
    """The spec is validated once, when it is read (gen check, gen generate): such a device never reaches the
    renderers."""
    from generator.spec import load_spec

    (tmp_path / "device.yaml").write_text(
        "project: fleet\nwifi: {ssid: w, password: abcdefgh}\nbroker: {host: mqtt.example.com}\nsecrets: nvs\n"
        f"publish: [{{name: t, topic: 'fleet/{'x' * 250}'}}]\ndevice: {{id: d1}}\n")
    with pytest.raises(UserError, match="shared firmware"):
        load_spec(tmp_path / "device.yaml")


def test_the_reader_refuses_an_image_whose_entry_crc_is_wrong():
    device = fleet_device()
    image = bytearray(render_nvs_image(device, credentials_for(device)))
    # The first entry of the first page is the namespace; flip a bit in its key.
    image[64 + 8] ^= 0x01
    with pytest.raises(NvsFormatError, match="CRC"):
        read_nvs_image(bytes(image))


def test_the_reader_checks_page_headers():
    image = bytearray(render_nvs_image(fleet_device(), credentials_for(fleet_device())))
    struct.pack_into("<I", image, 4, 99)  # sequence number changed, CRC not
    with pytest.raises(NvsFormatError, match="header CRC"):
        read_nvs_image(bytes(image))


def test_the_espidf_partition_is_the_idf_default_size():
    device = replace(fleet_device(), target=example_devices("espidf-mtls")[0].target)
    image = render_nvs_image(device, credentials_for(device))
    assert len(image) == NVS_PARTITION_SIZES["espidf"] == 0x6000
    assert read_nvs_image(image)[NVS_NAMESPACE]["device_id"].text() == device.id


def test_embedded_secrets_have_no_nvs_image():
    device = example_devices("arduino-mtls")[0]
    with pytest.raises(ValueError):
        render_nvs_image(device, credentials_for(device))
