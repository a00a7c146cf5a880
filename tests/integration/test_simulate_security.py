"""What a simulated device refuses, as the device itself would (mbedTLS 2.28 in the host runtime, the name it dials
verified): a broker it was given a foreign CA for, and a broker whose certificate lacks the dialled name. And what
the broker refuses the device: another device's topics (the ACL), for a fleet of ten running together.

The devices here keep their secrets in NVS (the fleet-nvs example for Arduino, the espidf-mtls example moved to NVS
for ESP-IDF): a doctored NVS image gives one a foreign CA or another device's filter without compiling anything new;
the TLS and MQTT code path is the same as with embedded secrets."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil

import pytest
from cryptography.hazmat.primitives import serialization

from conftest import mqtt_session
from generator.pki import profiles
from generator.broker.render import CERT_FILE, KEY_FILE
from generator.firmware.nvs_image import render_nvs_image
from generator.simulate.processes import stop_devices, started_devices
from simulate_support import SimDevice, send_command, simulated_project

FLEET = "fleet-nvs"
VERIFY_FAILED = "-0x2700"        # MBEDTLS_ERR_X509_CERT_VERIFY_FAILED, as the firmware logs it
# One NVS device per flavour: the fleet's first sensor (Arduino), and the ESP-IDF mtls example moved to NVS.
NVS_DEVICES = {"arduino": (FLEET, None, "sensor-01"), "espidf": ("espidf-mtls", "nvs", "greenhouse-idf-01")}
# How each flavour's log names the verify reason (Arduino: mbedTLS's text, cut at 128 bytes as on the board;
# ESP-IDF: the esp-tls verify flags); the summary's last error is that log line.
NOT_TRUSTED = {"arduino": "not correctly signed", "espidf": "NOT_TRUSTED"}
NAME_MISMATCH = {"arduino": "Common Name (CN) does not match", "espidf": "CN_MISMATCH"}


@pytest.fixture
def fleet(tmp_path_factory):
    return simulated_project(FLEET, tmp_path_factory)


@pytest.fixture(params=sorted(NVS_DEVICES))
def nvs_device(request, tmp_path_factory):
    """(flavour, project, device id) of a `secrets: nvs` device."""
    name, secrets, device_id = NVS_DEVICES[request.param]
    return request.param, simulated_project(name, tmp_path_factory, secrets=secrets), device_id


def foreign_ca() -> profiles.CertificateAuthority:
    key = profiles.generate_key("ec-p256")
    cert = profiles.build_root_ca(key, project="someone-else", validity_days=30, now=dt.datetime.now(dt.timezone.utc))
    return profiles.CertificateAuthority(cert, key)


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def doctored_nvs(project, device_id: str, tmp_path, *, device=None, ca_pem: bytes | None = None):
    """The device's NVS image with a different CA or different settings, written next to the test."""
    device = device or project.spec.device(device_id)
    credentials = project.credentials.devices[device_id]
    if ca_pem is not None:
        credentials = dataclasses.replace(credentials, ca_pem=ca_pem)
    path = tmp_path / f"{device_id}-doctored-nvs.bin"
    path.write_bytes(render_nvs_image(device, credentials))
    return path


def test_a_device_given_a_foreign_ca_reports_the_mbedtls_verify_reason_and_never_connects(nvs_device, start_broker,
                                                                                            tmp_path):
    flavour, project, device_id = nvs_device
    broker = start_broker(project.broker_dir)
    nvs = doctored_nvs(project, device_id, tmp_path, ca_pem=pem(foreign_ca().cert))
    with SimDevice.start(project.run_for(device_id, broker, GEN_SIM_NVS=str(nvs))) as device:
        failure = device.wait_for(r"\[mqtt\] connect failed.*")
        device.wait_for(r"\[mqtt\] connect failed")              # and again after its backoff: never gives in
        summary = device.stop()
    assert VERIFY_FAILED in failure.group(0) and NOT_TRUSTED[flavour] in failure.group(0)
    assert not any("[mqtt] connected" in line for line in device.lines)
    assert summary.connects == 0 and summary.last_error == failure.group(0).split("[mqtt] ", 1)[1]


def test_a_broker_certificate_without_the_dialled_name_is_rejected_as_on_the_device(nvs_device, start_broker,
                                                                                      tmp_path):
    # The broker presents a certificate for other.example.com, signed by a CA the device trusts; the device dials
    # mqtt.example.com (sent to 127.0.0.1 by GEN_SIM_CONNECT_TO, but TLS still checks the dialled name).
    flavour, project, device_id = nvs_device
    issuer = foreign_ca()
    broker_key = profiles.generate_key("ec-p256")
    broker_cert = profiles.issue_broker_cert(broker_key.public_key(), ["other.example.com"], issuer=issuer,
                                        validity_days=30, now=dt.datetime.now(dt.timezone.utc), project="x")
    broker_dir = tmp_path / "broker"
    shutil.copytree(project.broker_dir, broker_dir)
    (broker_dir / CERT_FILE).write_bytes(pem(broker_cert))
    (broker_dir / KEY_FILE).write_bytes(profiles.private_key_pem(broker_key))
    broker = start_broker(broker_dir)
    nvs = doctored_nvs(project, device_id, tmp_path, ca_pem=pem(issuer.cert))
    with SimDevice.start(project.run_for(device_id, broker, GEN_SIM_NVS=str(nvs))) as device:
        failure = device.wait_for(r"\[mqtt\] connect failed.*")
        summary = device.stop()
    assert VERIFY_FAILED in failure.group(0) and NAME_MISMATCH[flavour] in failure.group(0)
    assert summary.connects == 0 and NAME_MISMATCH[flavour] in summary.last_error


def test_ten_devices_of_one_firmware_run_as_a_fleet_each_answering_only_its_own_commands(fleet, start_broker):
    ids = [device.id for device in fleet.spec.devices if device.target == fleet.spec.devices[0].target][:10]
    assert len(ids) == 10 and len({fleet.binary(i) for i in ids}) == 1    # one firmware for all ten
    broker = start_broker(fleet.broker_dir)
    lines: dict[str, list[str]] = {device_id: [] for device_id in ids}
    with mqtt_session(broker, fleet.credentials.backend) as backend:
        backend.subscribe("fleet/+/ack")
        runs = [fleet.run_for(device_id, broker) for device_id in ids]
        with started_devices(runs) as processes:
            devices = [SimDevice(process) for process in processes]
            for device in devices:
                device.wait_for(r"\[mqtt\] subscribed to ")
            for device in devices:
                send_command(backend, device, f"fleet/{device.device_id}/cmd", f"hello {device.device_id}")
            acks = set()
            while len(acks) < len(ids):
                ack = backend.next_message()
                acks.add((ack.topic, ack.payload))
            summaries = stop_devices(processes, on_line=lambda device_id, line: lines[device_id].append(line))
    assert acks == {(f"fleet/{device_id}/ack", f"hello {device_id}".encode()) for device_id in ids}
    for device, summary in zip(devices, summaries):
        commands = [line for line in device.lines + lines[device.device_id] if line.startswith("[app] command")]
        assert set(commands) == {f"[app] command on fleet/{device.device_id}/cmd: hello {device.device_id}"}
        assert summary.connects == 1 and summary.messages_in >= 1


def test_a_device_that_asks_for_another_devices_topic_receives_nothing_from_it(fleet, start_broker, tmp_path):
    # sensor-01's own identity (its cert CN is its MQTT username), but an NVS image subscribing to sensor-02's
    # command topic. Mosquitto 2.0 grants the SUBSCRIBE and filters at delivery: sensor-02 gets the command,
    # sensor-01 gets nothing.
    spy = fleet.spec.device("sensor-01")
    spy = dataclasses.replace(spy, subscribe=tuple(dataclasses.replace(s, filter="fleet/sensor-02/cmd")
                                                   for s in spy.subscribe))
    nvs = doctored_nvs(fleet, "sensor-01", tmp_path, device=spy)
    broker = start_broker(fleet.broker_dir)
    with mqtt_session(broker, fleet.credentials.backend) as backend:
        backend.subscribe("fleet/sensor-02/ack")
        with SimDevice.start(fleet.run_for("sensor-01", broker, GEN_SIM_NVS=str(nvs))) as intruder, \
                SimDevice.start(fleet.run_for("sensor-02", broker)) as victim:
            intruder.wait_for(r"\[mqtt\] subscribed to fleet/sensor-02/cmd")
            victim.wait_for(r"\[mqtt\] subscribed to fleet/sensor-02/cmd")
            backend.publish("fleet/sensor-02/cmd", b"for sensor-02 only")
            assert backend.next_message().payload == b"for sensor-02 only"    # delivered to sensor-02
            intruder_summary = intruder.stop()
    assert intruder_summary.ever_connected and intruder_summary.messages_in == 0
    assert not any(line.startswith("[app] command") for line in intruder.lines)
