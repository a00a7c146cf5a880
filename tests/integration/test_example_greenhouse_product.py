"""projects/examples/greenhouse-product, the example that looks like a product: an app of several files, a library
of its own, a registry library stubbed in the host build as documented, and vars: that each device reads from its
own nvs.bin while the fleet keeps one image."""

from __future__ import annotations

import json

import pytest

from conftest import mqtt_session
from simulate_support import CONNECTED, SimDevice, simulated_project
from generator.firmware.fingerprint import firmware_fingerprint
from generator.output.layout import firmware_dir

NAME = "greenhouse-product"


@pytest.fixture
def project(tmp_path_factory):
    return simulated_project(NAME, tmp_path_factory)


def test_both_devices_of_the_example_share_one_firmware_image(project):
    fingerprints = {firmware_fingerprint(project.out_dir / firmware_dir(d.id)) for d in project.spec.devices}
    assert len(fingerprints) == 1


@pytest.mark.slow
@pytest.mark.parametrize("device_id, room, pin", [("house-north", "north house", 34), ("house-south", "south house", 35)])
def test_each_device_reads_its_own_vars_and_reports_its_room_once_connected(project, start_broker, device_id, room,
                                                                          pin):
    device = project.device(device_id)
    broker = start_broker(project.broker_dir)
    telemetry = device.publish[0].topic
    with mqtt_session(broker, project.credentials.backend) as backend:
        backend.subscribe(telemetry)
        with SimDevice.start(project.run_for(device_id, broker)) as running:
            running.wait_for(rf"\[app\] {room}: soil sensor on pin {pin}")
            running.wait_for(r"\[climate\] host build: a stand-in BME280 at 0x76")
            running.wait_for(CONNECTED + rf"mqtt\.example\.com:8883 as {device_id}")
            message = backend.next_message()
            running.stop()
    report = json.loads(message.payload)
    assert message.topic == telemetry and report["room"] == room and report["temperature_c"] == 24.5
    assert 0 <= report["soil_pct"] <= 100 and "pressure_hpa" in report


ESPIDF_NAME = "greenhouse-product-espidf"


@pytest.fixture
def espidf_project(tmp_path_factory):
    return simulated_project(ESPIDF_NAME, tmp_path_factory)


def test_the_espidf_example_keeps_one_image_with_its_component_and_the_registry_one_in_its_manifest(espidf_project):
    roots = {(espidf_project.out_dir / firmware_dir(d.id)).resolve() for d in espidf_project.spec.devices}
    assert len(roots) == 1
    root = roots.pop()
    assert '"espressif/led_strip": "^3.0.0"' in (root / "main" / "idf_component.yml").read_text()
    assert (root / "CMakeLists.txt").read_text().count("/components\")   # your own components") == 1


@pytest.mark.slow
@pytest.mark.parametrize("device_id, room, channel", [("house-east", "east house", 3), ("house-west", "west house", 5)])
def test_each_espidf_device_reads_its_adc_channel_from_its_vars_and_reports_its_room(espidf_project, start_broker,
                                                                                      device_id, room, channel):
    device = espidf_project.device(device_id)
    broker = start_broker(espidf_project.broker_dir)
    telemetry = device.publish[0].topic
    with mqtt_session(broker, espidf_project.credentials.backend) as backend:
        backend.subscribe(telemetry)
        with SimDevice.start(espidf_project.run_for(device_id, broker)) as running:
            running.wait_for(rf"app: {room}: soil probe on ADC1 channel {channel}$")
            running.wait_for(r"light: host build: a stand-in status light on GPIO 48")   # build_flags: reached it
            running.wait_for(CONNECTED + rf"mqtt\.example\.com:8883 as {device_id}")
            message = backend.next_message()
            running.stop()
    report = json.loads(message.payload)
    assert message.topic == telemetry and report["room"] == room and 0 <= report["soil_pct"] <= 100
