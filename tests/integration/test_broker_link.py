"""The generated broker files work: for every auth mode a device connects with its generated credentials,
publishes to its topics and receives on its filter, and the backend sees all of it. Clients: paho-mqtt
(OpenSSL), the mosquitto_pub/mosquitto_sub command-line clients with the tutorial's flags, and python-mbedtls
(mbedTLS 2.28, the ESP32's TLS stack) for the handshake."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import BROKER_NAME, WAIT_S, mbedtls_connect, mqtt_connect_over, mqtt_session

AUTH_MODES = ("mtls", "password", "mtls+password")


@pytest.mark.parametrize("auth", AUTH_MODES)
def test_a_device_publishes_to_its_topic_and_the_backend_receives_it(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    with mqtt_session(broker, project.client("backend")) as backend, \
            mqtt_session(broker, project.client("sensor-a")) as device:
        backend.subscribe("devices/#")
        device.publish("devices/sensor-a/telemetry", b"21.5")
        device.publish("devices/sensor-a/status", b"online", retain=True)
        assert [(m.topic, m.payload) for m in (backend.next_message(), backend.next_message())] == [
            ("devices/sensor-a/telemetry", b"21.5"), ("devices/sensor-a/status", b"online")]


@pytest.mark.parametrize("auth", AUTH_MODES)
def test_a_device_receives_a_command_the_backend_sends_on_its_filter(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    with mqtt_session(broker, project.client("backend")) as backend, \
            mqtt_session(broker, project.client("sensor-b")) as device:
        device.subscribe("devices/sensor-b/cmd/#")
        backend.publish("devices/sensor-b/cmd/led", b"on")
        message = device.next_message()
        assert (message.topic, message.payload) == ("devices/sensor-b/cmd/led", b"on")


@pytest.mark.parametrize("auth", AUTH_MODES)
def test_mosquitto_pub_and_sub_work_with_the_tutorials_flags(auth, broker_project, start_broker, tmp_path):
    if not shutil.which("mosquitto_pub"):
        pytest.skip("mosquitto-clients is not installed")
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)

    def flags(name: str) -> list[str]:
        client, files = project.client(name), project.client_files(name)
        args = ["-h", BROKER_NAME, "-p", str(broker.port), "--cafile", str(files.ca), "-i", f"{name}-cli"]
        if files.cert is not None:
            args += ["--cert", str(files.cert), "--key", str(files.key)]
        if client.password is not None:
            args += ["-u", name, "-P", client.password]
        return args

    subscriber = subprocess.Popen(
        ["mosquitto_sub", *flags("backend"), "-t", "devices/sensor-a/telemetry", "-C", "1", "-W", str(int(WAIT_S)),
         "-q", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Publish until the subscriber (which may still be connecting) has received one message.
        for _ in range(50):
            subprocess.run(["mosquitto_pub", *flags("sensor-a"), "-t", "devices/sensor-a/telemetry", "-m", "21.5",
                            "-q", "1"], check=True, timeout=WAIT_S, capture_output=True)
            try:
                out, err = subscriber.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            raise AssertionError("mosquitto_sub received nothing")
    finally:
        subscriber.kill()
    assert subscriber.returncode == 0, err
    assert out == "21.5\n"


@pytest.mark.parametrize("auth", AUTH_MODES)
def test_mbedtls_like_the_esp32_completes_the_handshake_and_gets_connack_0(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    sock = mbedtls_connect(broker, project.client("sensor-a"))
    try:
        assert mqtt_connect_over(sock, project.client("sensor-a")) == 0
    finally:
        sock.close()


@pytest.mark.parametrize("auth", AUTH_MODES)
def test_mbedtls_dialling_the_ip_address_accepts_the_broker_certificate(auth, broker_project, start_broker):
    # mbedTLS 2.28 ignores iPAddress SANs: the cert carries the IP as a dNSName too, so dialling 127.0.0.1 works.
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    sock = mbedtls_connect(broker, project.client("sensor-a"), server_hostname="127.0.0.1")
    try:
        assert mqtt_connect_over(sock, project.client("sensor-a")) == 0
    finally:
        sock.close()


@pytest.mark.parametrize("auth", AUTH_MODES)
def test_a_device_that_drops_off_has_its_offline_will_delivered_to_the_backend(auth, broker_project, start_broker):
    # The firmware sets a last will on its status topic; the ACL must let the broker publish it for the device.
    from conftest import client_tls_context, tls_connect

    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    device = project.client("sensor-a")
    with mqtt_session(broker, project.client("backend")) as backend:
        backend.subscribe("devices/sensor-a/status")
        sock = tls_connect(broker, client_tls_context(device))
        assert mqtt_connect_over(sock, device, will=("devices/sensor-a/status", b"offline")) == 0
        sock.close()  # no DISCONNECT: the broker publishes the will
        message = backend.next_message()
        assert (message.topic, message.payload) == ("devices/sensor-a/status", b"offline")
