"""The generated broker's limits hold against the real Mosquitto: oversize packets and client ids, connection
floods, CBC suites, keepalive. One scenario per test; where Mosquitto 2.0.11 cannot close an attack by
configuration, the test shows what it really does (and the README says so)."""

from __future__ import annotations

import re
import socket
import ssl

import pytest

from conftest import (WAIT_S, client_tls_context, mbedtls_connect, mqtt_connack_code, mqtt_connect_over,
                      mqtt_connect_packet, tls_connect)
from generator.broker.render import TLS12_CIPHERS, max_packet_size
from generator.core.mqtt_wire import ConnectionClosed, MqttSession, publish_packet

ALL_MODES = ("mtls", "password", "mtls+password")
DEVICE = "sensor-a"
TELEMETRY = f"devices/{DEVICE}/telemetry"


def configured(broker_dir, option: str) -> int:
    match = re.search(rf"^{option} (\d+)$", (broker_dir / "mosquitto.conf").read_text(), re.MULTILINE)
    assert match, f"no {option} in mosquitto.conf"
    return int(match.group(1))


def logged_in_session(broker, client) -> tuple[ssl.SSLSocket, MqttSession]:
    sock = tls_connect(broker, client_tls_context(client))
    session = MqttSession(sock)
    assert session.connect(client.name, username=client.name if client.password else None,
                           password=client.password) == 0
    return sock, session


def closed_by_broker(sock) -> bool:
    """The broker has closed the connection: the next read ends (a ping gets no answer)."""
    try:
        MqttSession(sock).ping()
        return False
    except ConnectionClosed:
        return True


# ---------------------------------------------------------------------------------------------- packet size


def test_max_packet_size_is_the_largest_packet_a_device_of_the_spec_uses(broker_project):
    project = broker_project("mtls")
    assert configured(project.broker_dir, "max_packet_size") == max_packet_size(project.spec)
    # 256-byte payloads and short topics: the CONNECT, the publishes and the commands all fit in 1 KiB
    assert max_packet_size(project.spec) == 1024


@pytest.mark.parametrize("auth", ALL_MODES)
def test_a_publish_one_byte_over_max_packet_size_disconnects_its_sender(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    limit = configured(project.broker_dir, "max_packet_size")
    sock, session = logged_in_session(broker, project.client(DEVICE))
    with sock:
        largest_allowed = b"x" * (limit - 1 - 2 - len(TELEMETRY))   # 1 + remaining length == limit
        session.publish(TELEMETRY, largest_allowed, qos=0)
        session.ping()                                               # still connected
        sock.sendall(publish_packet(TELEMETRY, largest_allowed + b"y"))
        assert closed_by_broker(sock)


def test_a_64_kib_client_id_is_refused_before_the_broker_reads_or_logs_it(broker_project, start_broker):
    project = broker_project("password")
    broker = start_broker(project.broker_dir)
    client = project.client(DEVICE)
    huge_id = "i" * 65535
    with tls_connect(broker, client_tls_context(client)) as sock:
        try:
            sock.sendall(mqtt_connect_packet(huge_id, username=client.name, password=client.password))
        except OSError:
            pass        # the broker closed the connection while the rest of the packet was still being sent
        assert mqtt_connack_code(sock) is None
    assert "i" * 100 not in broker.log_text()


# ---------------------------------------------------------------------------------------------- connections


def test_max_connections_counts_connections_that_never_finish_their_handshake(broker_project, copy_project,
                                                                              start_broker):
    project = copy_project(broker_project("mtls"))
    project.spec.path.write_text(project.spec.path.read_text().replace("  port: 8883\n",
                                                                       "  port: 8883\n  max_connections: 3\n"))
    project = project.regenerate()
    broker = start_broker(project.broker_dir)
    stalled = [socket.create_connection((broker.host, broker.port), timeout=WAIT_S) for _ in range(3)]
    try:
        with pytest.raises(OSError):      # ssl.SSLError and ConnectionResetError both are
            tls_connect(broker, client_tls_context(project.client(DEVICE))).close()
        broker.wait_for_log("denied: max_connections exceeded")
    finally:
        for sock in stalled:
            sock.close()
    with tls_connect(broker, client_tls_context(project.client(DEVICE))) as sock:   # the slots are free again
        assert mqtt_connect_over(sock, project.client(DEVICE)) == 0


# ---------------------------------------------------------------------------------------------- TLS suites


CBC_ONLY = "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA"


@pytest.mark.parametrize("auth", ALL_MODES)
def test_a_tls_1_2_client_offering_only_cbc_suites_is_refused(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    context = client_tls_context(project.client(DEVICE), max_version=ssl.TLSVersion.TLSv1_2)
    context.set_ciphers(CBC_ONLY)
    with pytest.raises(ssl.SSLError):
        tls_connect(broker, context).close()
    broker.wait_for_log("no shared cipher")


@pytest.mark.parametrize("auth", ALL_MODES)
def test_openssl_negotiates_an_aead_suite_in_tls_1_2_and_1_3(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    client = project.client(DEVICE)
    with tls_connect(broker, client_tls_context(client)) as sock:
        assert sock.version() == "TLSv1.2" and sock.cipher()[0] in TLS12_CIPHERS
        assert mqtt_connect_over(sock, client) == 0
    with tls_connect(broker, client_tls_context(client, max_version=None)) as sock:
        assert sock.version() == "TLSv1.3" and sock.cipher()[0].startswith(("TLS_AES_", "TLS_CHACHA20_"))


@pytest.mark.parametrize("auth", ALL_MODES)
def test_mbedtls_2_28_the_esp32s_stack_still_completes_the_handshake_and_connects(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    client = project.client(DEVICE)
    sock = mbedtls_connect(broker, client)
    try:
        suite = str(sock.cipher())
        assert "ECDHE-ECDSA" in suite and ("GCM" in suite or "CHACHA20" in suite), suite
        assert mqtt_connect_over(sock, client) == 0
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------------- keepalive


def test_max_keepalive_binds_mqtt_5_clients_only_as_mosquitto_2_0_11_does(broker_project, start_broker):
    import paho.mqtt.client as paho

    project = broker_project("password")
    broker = start_broker(project.broker_dir)
    client = project.client(DEVICE)
    limit = configured(project.broker_dir, "max_keepalive")
    # MQTT 5 asking for keepalive 0 (never time out) is told the server keepalive.
    v5 = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client.name, protocol=paho.MQTTv5)
    v5.tls_set_context(client_tls_context(client))
    v5.username_pw_set(client.name, client.password)
    told = []
    v5.on_connect = lambda _c, _u, _f, reason, properties: told.append((str(reason), properties))
    v5.connect(broker.host, broker.port, keepalive=0)
    while not told:
        v5.loop(timeout=WAIT_S)
    v5.disconnect()
    assert told[0][0] == "Success" and told[0][1].ServerKeepAlive == limit
    # MQTT 3.1.1 with keepalive 0 is accepted as it is: 2.0.11 has no option to refuse or shorten it.
    with tls_connect(broker, client_tls_context(client)) as sock:
        sock.sendall(mqtt_connect_packet(client.name, username=client.name, password=client.password, keepalive=0))
        assert mqtt_connack_code(sock) == 0
    broker.wait_for_log(f"as {DEVICE} (p2, c1, k0")  # 2.0.11 logs 3.1.1 as p2
