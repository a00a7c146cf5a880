"""Devices cannot reach each other's topics through the generated ACL, in every auth mode, including retained
messages. Mosquitto 2.0 grants every SUBSCRIBE and filters at delivery, so "nothing delivered" is what counts.

"Nothing arrived" is proven without waiting out a timeout: after the forbidden action the test sends a sentinel
the same client is allowed to receive; the broker delivers in order, so anything forbidden that got through would
arrive before the sentinel."""

from __future__ import annotations

import datetime as dt

import pytest

from conftest import client_tls_context, client_with_cert, issuing_ca, mqtt_session
from generator.broker.render import render_acl

ALL_MODES = ("mtls", "password", "mtls+password")


@pytest.mark.parametrize("auth", ALL_MODES)
def test_device_a_publishing_to_device_bs_topics_delivers_nothing_not_even_retained(auth, broker_project,
                                                                                  start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    with mqtt_session(broker, project.client("backend")) as backend, \
            mqtt_session(broker, project.client("sensor-b")) as device_b, \
            mqtt_session(broker, project.client("sensor-a")) as device_a:
        backend.subscribe("devices/#")
        device_b.subscribe("devices/sensor-b/cmd/#")

        device_a.publish("devices/sensor-b/cmd/unlock", b"forged", retain=True)
        device_a.publish("devices/sensor-b/telemetry", b"forged", retain=True)
        device_a.publish("devices/sensor-b/status", b"offline", retain=True)

        device_a.publish("devices/sensor-a/telemetry", b"sentinel")
        assert [m.topic for m in backend.receive_until("devices/sensor-a/telemetry")] == [
            "devices/sensor-a/telemetry"]
        backend.publish("devices/sensor-b/cmd/sentinel", b"sentinel")
        assert [m.topic for m in device_b.receive_until("devices/sensor-b/cmd/sentinel")] == [
            "devices/sensor-b/cmd/sentinel"]

    # A new subscriber finds no retained message from A on B's topics.
    with mqtt_session(broker, project.client("backend"), client_id="backend-late") as late:
        late.subscribe("devices/sensor-b/#")
        late.publish("devices/sensor-b/cmd/sentinel", b"sentinel")
        assert [m.topic for m in late.receive_until("devices/sensor-b/cmd/sentinel")] == [
            "devices/sensor-b/cmd/sentinel"]


@pytest.mark.parametrize("auth", ALL_MODES)
def test_device_a_subscribing_to_device_bs_topics_receives_nothing_not_even_retained(auth, broker_project,
                                                                                    start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    with mqtt_session(broker, project.client("backend")) as backend, \
            mqtt_session(broker, project.client("sensor-b")) as device_b:
        backend.subscribe("devices/sensor-b/#")
        device_b.publish("devices/sensor-b/telemetry", b"21.5", retain=True)
        backend.publish("devices/sensor-b/cmd/led", b"on", retain=True)
        # The backend, which may read them, got both: the messages exist and are retained.
        assert [m.topic for m in backend.receive_until("devices/sensor-b/cmd/led")] == [
            "devices/sensor-b/telemetry", "devices/sensor-b/cmd/led"]

        with mqtt_session(broker, project.client("sensor-a")) as device_a:
            for topic_filter in ("devices/sensor-b/#", "devices/+/telemetry", "#"):
                device_a.subscribe(topic_filter)
            device_a.subscribe("devices/sensor-a/cmd/#")
            device_b.publish("devices/sensor-b/telemetry", b"22.0")
            backend.publish("devices/sensor-b/cmd/led", b"off")
            backend.publish("devices/sensor-a/cmd/sentinel", b"sentinel")
            received = device_a.receive_until("devices/sensor-a/cmd/sentinel")
            # Its own command arrives once per matching subscription ("#" and its own filter); nothing of B's.
            assert {m.topic for m in received} == {"devices/sensor-a/cmd/sentinel"}


def test_a_certificate_whose_cn_holds_a_wildcard_gets_no_topic_at_all(broker_project, start_broker):
    # Our CA never issues such a cert (ids are checked); if one existed, no ACL section would match it.
    project = broker_project("mtls")
    broker = start_broker(project.broker_dir)
    # pki refuses the name, so build the cert with a valid CN and swap the subject for the broker test.
    wildcard = _cert_with_common_name(project, "sensor+")
    with mqtt_session(broker, project.client("backend")) as backend, \
            mqtt_session(broker, wildcard, context=client_tls_context(wildcard)) as intruder:
        backend.subscribe("devices/#")
        intruder.subscribe("#")
        intruder.subscribe("devices/+/cmd/#")
        intruder.publish("devices/sensor-a/cmd/unlock", b"forged")
        backend.publish("devices/sensor-a/cmd/sentinel", b"sentinel")
        assert [m.topic for m in backend.receive_until("devices/sensor-a/cmd/sentinel")] == [
            "devices/sensor-a/cmd/sentinel"]
        intruder.publish("devices/sensor-a/cmd/unlock", b"forged")  # a PUBACK round trip: the sentinel is routed
        assert intruder.messages.empty()
    broker.wait_for_log("u'sensor+'")


def _cert_with_common_name(project, common_name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    from generator.pki import profiles

    issuer = issuing_ca(project)
    base = client_with_cert(project.client("sensor-a"), issuer)
    template = x509.load_pem_x509_certificate(base.cert_pem)
    key = profiles.load_private_key_pem(base.key_pem, "test key")
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(template.issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
               .not_valid_after(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)))
    for extension in template.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    cert = builder.sign(issuer.key, hashes.SHA256())
    return type(base)(name=common_name, ca_pem=base.ca_pem,
                      cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=base.key_pem, password=None)


@pytest.mark.parametrize("device_id", ["sensor+1", "sensor#1", "#", "two words", "line\nbreak", "user:name",
                                       "a/b", " lead"])
def test_gen_check_rejects_an_id_that_would_break_or_widen_a_broker_file_line(device_id, broker_project, tmp_path):
    import json
    import subprocess
    import sys

    text = broker_project("mtls").spec.path.read_text().replace("  - id: sensor-b\n",
                                                                f"  - id: {json.dumps(device_id)}\n")
    (tmp_path / "device.yaml").write_text(text)
    result = subprocess.run([sys.executable, "-m", "generator", "check", str(tmp_path / "device.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stdout
    assert "device.yaml:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("device_id", ["sensor+1", "sensor#1", "two words", "line\nbreak", "user:name"])
def test_render_acl_refuses_an_id_that_would_break_or_widen_an_acl_line(device_id, broker_project):
    import dataclasses

    spec = broker_project("mtls").spec
    forged = dataclasses.replace(spec.devices[0], id=device_id)
    with pytest.raises(ValueError, match="must not reach Mosquitto's ACL"):
        render_acl(dataclasses.replace(spec, devices=(forged, *spec.devices[1:])))


@pytest.mark.parametrize("auth", ALL_MODES)
def test_device_a_cannot_leave_a_will_on_device_bs_status_topic(auth, broker_project, start_broker):
    from conftest import mqtt_connect_over, tls_connect

    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    device_a = project.client("sensor-a")
    with mqtt_session(broker, project.client("backend")) as backend:
        backend.subscribe("devices/sensor-b/status")
        sock = tls_connect(broker, client_tls_context(device_a))
        code = mqtt_connect_over(sock, device_a, will=("devices/sensor-b/status", b"offline"))
        sock.close()
        if code == 0:  # accepted: the will must then be dropped when the broker sends it
            broker.wait_for_log("Client sensor-a closed its connection")  # the will is handled right there
        backend.publish("devices/sensor-b/status", b"sentinel")
        assert [(m.topic, m.payload) for m in backend.receive_until("devices/sensor-b/status")] == [
            ("devices/sensor-b/status", b"sentinel")]
