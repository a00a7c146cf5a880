"""gen simulate's plan and bookkeeping: which broker a device's connections go to, what it is told through GEN_SIM_*,
how its summary line is read, and that a device process is always stopped and accounted for."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.core.errors import UserError
from generator.firmware.log import tally_lines
from generator.simulate.device_runs import BrokerAddress, Faults, connect_to_value, device_environment, parse_broker_address, nvs_images, plan_runs, select_devices
from generator.spec import load_spec
from generator.output.manifest import read_manifest
from generator.core.paths import PROJECT_ROOT
from simulate_support import simulated_project

EXAMPLES = PROJECT_ROOT / "projects" / "examples"


def test_every_name_on_the_broker_cert_at_the_dialled_port_goes_to_the_local_broker():
    value = connect_to_value(("mqtt.example.com", "mqtt.example.com", "localhost"), 8883,
                             BrokerAddress("127.0.0.1", 40123))
    assert value == "mqtt.example.com:8883:127.0.0.1:40123,localhost:8883:127.0.0.1:40123"


def test_an_nvs_device_is_given_its_own_image_and_an_embed_device_none(tmp_path_factory):
    fleet = simulated_project("fleet-nvs", tmp_path_factory)
    images = nvs_images(fleet.out_dir, read_manifest(fleet.out_dir))
    runs = plan_runs(fleet.spec, ["sensor-01", "sensor-02"], dict.fromkeys(["sensor-01", "sensor-02"], Path("/b")),
                     images, BrokerAddress("127.0.0.1", 1))
    assert [run.env["GEN_SIM_NVS"] for run in runs] == [
        str(fleet.out_dir / "devices" / device_id / "nvs.bin") for device_id in ("sensor-01", "sensor-02")]
    assert all(Path(run.env["GEN_SIM_NVS"]).is_file() for run in runs)
    single = load_spec(EXAMPLES / "arduino-mtls" / "device.yaml")
    env = dict(device_environment(single.devices[0], address=BrokerAddress("127.0.0.1", 1), nvs_image=None))
    assert "GEN_SIM_NVS" not in env
    assert env["GEN_SIM_CONNECT_TO"].startswith("mqtt.example.com:8883:127.0.0.1:1")


def test_the_wifi_drop_switch_reaches_the_runtime_only_when_asked_for():
    device = load_spec(EXAMPLES / "arduino-mtls" / "device.yaml").devices[0]
    address = BrokerAddress("127.0.0.1", 1)
    assert "GEN_SIM_DROP_WIFI_AFTER" not in dict(device_environment(device, address=address, nvs_image=None))
    env = dict(device_environment(device, address=address, nvs_image=None,
                                  faults=Faults(drop_wifi_after=2.5, wifi_down_for=3)))
    assert (env["GEN_SIM_DROP_WIFI_AFTER"], env["GEN_SIM_WIFI_DOWN_FOR"]) == ("2.5", "3")


def test_devices_are_chosen_by_id_or_all_and_an_unknown_id_is_a_user_error():
    fleet = load_spec(EXAMPLES / "fleet-nvs" / "device.yaml")
    assert len(select_devices(fleet)) == 11
    assert select_devices(fleet, ["sensor-02", "sensor-02"]) == ("sensor-02",)
    with pytest.raises(UserError, match="no device 'sensor-99'"):
        select_devices(fleet, ["sensor-99"])
    with pytest.raises(UserError, match="exclude each other"):
        select_devices(fleet, ["sensor-01"], all_devices=True)


@pytest.mark.parametrize("text", ["localhost", "localhost:", ":8883", "host:port", "host:70000"])
def test_a_broker_address_that_is_not_host_colon_port_is_a_user_error(text):
    with pytest.raises(UserError, match="not HOST:PORT"):
        parse_broker_address(text)


ARDUINO_LOG = [
    "[mqtt] connecting to mqtt.example.com:8883 as dev-a",
    "[mqtt] connect failed: state -2 CONNECT_FAILED (TCP or TLS); TLS error -0x2700: X509 - Certificate verification failed",
    "[mqtt] connected to mqtt.example.com:8883 as dev-a",
    "[mqtt] published 6 bytes to devices/dev-a/status",
    "[mqtt] received 6 bytes on devices/dev-a/cmd",
    "[app] command on devices/dev-a/cmd: ping-1",
    "[mqtt] published 6 bytes to devices/dev-a/ack",
    "[mqtt] connection lost: state -3 CONNECTION_LOST",
    "[mqtt] connected to mqtt.example.com:8883 as dev-a",
]
IDF_LOG = [
    "I (1200) link: [mqtt] connected to mqtt.example.com:8883 as dev-b",
    "I (1210) link: [mqtt] published 6 bytes to devices/dev-b/status",
    "E (9000) link: [mqtt] connection error: ESP_ERR_ESP_TLS_TCP_CLOSED_FIN; socket errno 104 Connection reset by peer",
    "W (9001) link: [mqtt] connection lost",
]


def test_the_summary_is_what_the_firmware_log_says_on_arduino():
    tally = tally_lines(ARDUINO_LOG)
    assert (tally.connected, tally.connects, tally.reconnects) == (True, 2, 1)
    assert (tally.messages_out, tally.messages_in) == (2, 1)
    assert tally.last_error == "connection lost: state -3 CONNECTION_LOST"


def test_the_summary_is_what_the_firmware_log_says_on_esp_idf_and_keeps_the_error_behind_a_lost_session():
    tally = tally_lines(IDF_LOG)
    assert (tally.connected, tally.connects, tally.messages_out) == (False, 1, 1)
    assert tally.last_error.startswith("connection error: ESP_ERR_ESP_TLS_TCP_CLOSED_FIN")


def test_lines_that_only_mention_mqtt_are_not_counted():
    assert tally_lines(["[app] published 3 readings", "[mqtt] connecting to h:1 as a", "[mqtt] dropped 400 bytes on t",
                        "[mqtt] not sent to t: not connected"]) == tally_lines([])
