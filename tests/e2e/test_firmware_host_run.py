"""The generated firmware, compiled for Linux against the host runtime, against the real Mosquitto the generator
configures: each project's own test/test_device.py passes (boot, connect, a command round trip), and a broken
setup is logged in words."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_fakes import EXAMPLES
from generator.firmware.render import CONFIG_DIR, credentials_header
from generator.output.generate import generate
from generator.pki.spec_credentials import spec_credentials
from generator.simulate.host_build import compile_firmware
from generator.output.layout import firmware_dir
from generator.broker.runner import running_broker
from generator.simulate.device_runs import LOCAL_ADDRESS
from generator.simulate.run import free_local_port
from generator.spec import load_spec

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                                 reason="needs mosquitto")]


@pytest.fixture(scope="module")
def build_cache() -> Path:
    from generator.simulate.device_runs import default_host_build_cache

    return default_host_build_cache()


def generated_example(name: str, tmp_path: Path, **overrides):
    """The example copied into tmp_path (top-level settings replaced by `overrides`), generated for its first
    device."""
    shutil.copytree(EXAMPLES / name, tmp_path / name, ignore=shutil.ignore_patterns("pki", "build"))
    if overrides:
        import yaml

        spec_file = tmp_path / name / "device.yaml"
        data = yaml.safe_load(spec_file.read_text().replace("!secret ", "secret-"))
        data.update(overrides)
        for entry in data.get("devices", []):
            entry.pop("target", None)
        text = yaml.safe_dump(data, sort_keys=False)
        spec_file.write_text(text.replace("secret-", "!secret "))
    spec = load_spec(tmp_path / name / "device.yaml", {})
    out = tmp_path / name / "build"
    generate(spec, out, device_ids=[spec.devices[0].id])
    return spec, out


@pytest.mark.parametrize("name, overrides", [
    ("arduino-mtls-password", {}), ("espidf-mtls-password", {}), ("fleet-nvs", {}),
    ("fleet-nvs", {"target": "esp32-espidf", "auth": "mtls+password"}),
], ids=["arduino", "espidf", "arduino-nvs", "espidf-nvs-mtls+password"])
def test_the_projects_own_device_test_passes_on_the_host_build(name, overrides, tmp_path, build_cache):
    spec, out = generated_example(name, tmp_path, **overrides)
    project = out / firmware_dir(spec.devices[0].id)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "generator.simulate.pytest_host_dut", "test/", "-q", "-rs",
                             "-p", "no:cacheprovider", "--host-build-cache", str(build_cache)],
                            cwd=project, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout and "skipped" not in result.stdout, result.stdout


def start_device(binary: Path, dialled: str, port: int, host: str, to_port: int) -> subprocess.Popen:
    """The host-built firmware, its TCP connects to dialled:port sent to host:to_port (names are still verified)."""
    env = {**os.environ, "GEN_SIM_CONNECT_TO": f"{dialled}:{port}:{host}:{to_port}"}
    return subprocess.Popen([str(binary)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_until(process: subprocess.Popen, marker: str, timeout_s: float = 60) -> list[str]:
    """Lines of the device's output up to and including the first one containing `marker`."""
    lines = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if marker in line:
            return lines
    raise AssertionError(f"no line with {marker!r}:\n" + "\n".join(lines))


@pytest.mark.parametrize("name", ["arduino-mtls", "espidf-mtls"])
def test_a_broker_name_the_certificate_does_not_carry_is_logged_in_words(name, tmp_path, build_cache):
    spec, out = generated_example(name, tmp_path)
    device = spec.devices[0]
    project = out / firmware_dir(device.id)
    config = project / CONFIG_DIR[device.framework] / "gen_config.h"
    config.write_text(config.read_text().replace('"mqtt.example.com"', '"wrong.example.com"'))
    binary = compile_firmware(project, device.framework, build_cache)
    with running_broker(out / "broker", port=free_local_port(), bind_address=LOCAL_ADDRESS,
                        provision_port=free_local_port()) as broker:
        process = start_device(binary, "wrong.example.com", device.broker.port, broker.host, broker.port)
        try:
            lines = read_until(process, "[mqtt] connect failed")
            failure = lines[-1]
            retry = read_until(process, "retrying in", timeout_s=30)[-1]
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert "verif" in failure.lower() or "CN_MISMATCH" in failure, failure
    assert "[mqtt] retrying in" in retry


def backend_client(spec, broker, folder: Path):
    """A paho client with the spec's backend identity, dialling the broker by a name its certificate carries."""
    import ssl

    import paho.mqtt.client as mqtt

    from generator.pki.spec_credentials import spec_credentials

    backend = spec_credentials(spec).backend
    (folder / "ca.pem").write_bytes(backend.ca_pem)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="firmware-test-backend")
    certfile = keyfile = None
    if backend.cert_pem is not None:
        (folder / "client.pem").write_bytes(backend.cert_pem)
        (folder / "client.key").write_bytes(backend.key_pem)
        certfile, keyfile = str(folder / "client.pem"), str(folder / "client.key")
    client.tls_set(ca_certs=str(folder / "ca.pem"), certfile=certfile, keyfile=keyfile, cert_reqs=ssl.CERT_REQUIRED)
    if backend.password is not None:
        client.username_pw_set(backend.name, backend.password)
    client.connect("localhost", broker.port)
    return client


@pytest.mark.parametrize("name", ["arduino-mtls-password", "espidf-password"])
def test_the_device_announces_itself_retained_and_echoes_a_command_on_its_ack_topic(name, tmp_path, build_cache):
    import queue

    spec, out = generated_example(name, tmp_path)
    device = spec.devices[0]
    binary = compile_firmware(out / firmware_dir(device.id), device.framework, build_cache)
    ack_topic = next(p.topic for p in device.publish if p.name == "ack")
    command_topic = device.subscribe[0].filter.replace("#", "reboot")
    with running_broker(out / "broker", port=free_local_port(), bind_address=LOCAL_ADDRESS,
                        provision_port=free_local_port()) as broker:
        process = start_device(binary, device.broker.host, device.broker.port, broker.host, broker.port)
        try:
            read_until(process, "[mqtt] subscribed to")
            received: queue.Queue = queue.Queue()
            client = backend_client(spec, broker, tmp_path)
            client.on_message = lambda _c, _u, message: received.put((message.topic, message.payload, message.retain))
            client.subscribe([(device.status.topic, 1), (ack_topic, 1)])
            client.loop_start()
            try:
                assert received.get(timeout=10) == (device.status.topic, b"online", True)
                client.publish(command_topic, b'{"cmd":"reboot"}', qos=1)
                handled = read_until(process, "[app] command on")[-1]
                assert handled.endswith(f'[app] command on {command_topic}: {{"cmd":"reboot"}}')
                assert received.get(timeout=10) == (ack_topic, b'{"cmd":"reboot"}', False)
            finally:
                client.loop_stop()
                client.disconnect()
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.mark.parametrize("name", ["arduino-password", "espidf-mtls"])
def test_the_broker_publishes_the_retained_offline_will_when_the_device_dies(name, tmp_path, build_cache):
    import queue
    import signal

    spec, out = generated_example(name, tmp_path, keepalive=5)
    device = spec.devices[0]
    binary = compile_firmware(out / firmware_dir(device.id), device.framework, build_cache)
    with running_broker(out / "broker", port=free_local_port(), bind_address=LOCAL_ADDRESS,
                        provision_port=free_local_port()) as broker:
        process = start_device(binary, device.broker.host, device.broker.port, broker.host, broker.port)
        try:
            read_until(process, "[mqtt] subscribed to")
        finally:
            process.send_signal(signal.SIGKILL)  # no DISCONNECT packet: the broker must send the will
            process.wait(timeout=10)
        received: queue.Queue = queue.Queue()
        client = backend_client(spec, broker, tmp_path)
        client.on_message = lambda _c, _u, message: received.put(message.payload)
        client.subscribe(device.status.topic, 1)
        client.loop_start()
        try:
            payload = received.get(timeout=20)
            while payload == b"online":           # the retained birth, before the broker noticed
                payload = received.get(timeout=20)
        finally:
            client.loop_stop()
            client.disconnect()
    assert payload == device.status.offline.encode()


@pytest.mark.parametrize("name", ["arduino-mtls", "espidf-mtls"])
def test_an_unreachable_broker_is_logged_in_words_and_retried_with_growing_backoff(name, tmp_path, build_cache):
    import re

    spec, out = generated_example(name, tmp_path)
    device = spec.devices[0]
    binary = compile_firmware(out / firmware_dir(device.id), device.framework, build_cache)
    closed_port = free_local_port()  # nothing listens there
    process = start_device(binary, device.broker.host, device.broker.port, "127.0.0.1", closed_port)
    try:
        failures, delays = [], []
        for _ in range(3):
            lines = read_until(process, "[mqtt] retrying in", timeout_s=30)
            failures += [line for line in lines if "[mqtt] connect failed" in line]
            delays.append(int(re.search(r"retrying in (\d+) ms", lines[-1]).group(1)))
    finally:
        process.terminate()
        process.wait(timeout=10)
    # PubSubClient only learns "no TCP connection" from WiFiClientSecure; esp-tls reports the socket's errno.
    expected = "could not resolve or reach mqtt.example.com:8883" if device.framework == "arduino" else "Connection refused"
    assert failures and all(expected in line for line in failures), failures
    # Each delay is drawn from [d/2, d] with d doubling: never shorter than the one before, within the bounds.
    assert 500 <= delays[0] <= 1000 and 1000 <= delays[1] <= 2000 and 2000 <= delays[2] <= 4000, delays


@pytest.mark.parametrize("name", ["arduino-mtls", "espidf-mtls"])
def test_a_broker_name_that_does_not_resolve_is_said_as_such(name, tmp_path, build_cache):
    # Arduino-ESP32 3.x's WiFiClientSecure returns 0 without touching lastError when the name does not resolve, so
    # the firmware checks the name itself before it trusts a TLS code: never a previous attempt's TLS message.
    spec, out = generated_example(name, tmp_path, broker={"host": "no-such-broker.invalid"})
    device = spec.devices[0]
    binary = compile_firmware(out / firmware_dir(device.id), device.framework, build_cache)
    process = start_device(binary, "some-other-name.example.com", 8883, "127.0.0.1", free_local_port())
    try:
        failure = read_until(process, "[mqtt] connect failed", timeout_s=30)[-1]
    finally:
        process.terminate()
        process.wait(timeout=10)
    expected = ("could not resolve or reach no-such-broker.invalid:8883" if device.framework == "arduino"
                else "ESP_ERR_ESP_TLS_CANNOT_RESOLVE_HOSTNAME")
    assert expected in failure and "TLS error" not in failure, failure


@pytest.mark.parametrize("name", ["arduino-password", "espidf-password"])
def test_a_wrong_mqtt_password_is_logged_with_the_brokers_connack_in_words(name, tmp_path, build_cache):
    spec, out = generated_example(name, tmp_path)
    device = spec.devices[0]
    project = out / firmware_dir(device.id)
    credentials = project / credentials_header(device.framework)
    text = credentials.read_text()
    start = text.index("MQTT_PASSWORD[] = ") + len("MQTT_PASSWORD[] = ")
    credentials.write_text(text[:start] + '"not-the-password"' + text[text.index(";", start):])
    binary = compile_firmware(project, device.framework, build_cache)
    with running_broker(out / "broker", port=free_local_port(), bind_address=LOCAL_ADDRESS,
                        provision_port=free_local_port()) as broker:
        process = start_device(binary, device.broker.host, device.broker.port, broker.host, broker.port)
        try:
            failure = read_until(process, "[mqtt] connect failed")[-1]
        finally:
            process.terminate()
            process.wait(timeout=10)
    assert any(words in failure for words in ("UNAUTHORIZED", "NOT_AUTHORIZED", "BAD_CREDENTIALS",
                                              "BAD_USERNAME_OR_PASSWORD")), failure
