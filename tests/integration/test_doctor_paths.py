"""`gen doctor` against the real Mosquitto: a healthy link passes every step in each auth mode, and each broken
setup (one per test) is named at the right step with the right reason. Projects and PKIs are built once per
session (conftest); a test that breaks something breaks a private copy of the broker files or the PKI."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import LOOPBACK, BrokerProject, build_broker_project, find_free_port
from generator.pki import profiles
from generator.doctor.material import DoctorTarget, load_material
from generator.doctor.results import StepResult
from generator.doctor.steps import run_doctor
from generator.doctor.tls_steps import run_client_cert_step
from generator.pki.store import PkiStore

AUTH_MODES = ("mtls", "password", "mtls+password")
STEP_NAMES = ["pki", "resolve", "tcp", "tls", "client-cert", "mqtt-connect", "acl"]
DEVICE = "sensor-a"


# ---------------------------------------------------------------------------------------------- helpers


def doctor(project: BrokerProject, port: int, device_id: str = DEVICE) -> list[StepResult]:
    spec = project.spec
    target = DoctorTarget.for_device(spec, spec.device(device_id), f"{LOOPBACK}:{port}")
    return run_doctor(spec, target)


def first_failure(results: list[StepResult]) -> StepResult:
    failures = [result for result in results if result.ok is False]
    assert len(failures) == 1, [(r.step, r.status, r.summary) for r in results]
    failure = failures[0]
    after = results[STEP_NAMES.index(failure.step) + 1:]
    assert all(result.status == "skipped" for result in after)
    assert all(result.ok for result in results[:STEP_NAMES.index(failure.step)])
    assert failure.fix
    return failure


def broker_files_copy(project: BrokerProject, tmp_path: Path) -> Path:
    """A private copy of OUT/broker/ a test may break."""
    target = tmp_path / "broker"
    shutil.copytree(project.broker_dir, target)
    return target


def issuing_ca(project: BrokerProject) -> profiles.CertificateAuthority:
    store = PkiStore.open(project.spec.pki.dir, project=project.spec.project, create=False)
    key = profiles.load_private_key_pem(store.layout.issuing_key.read_bytes(), "issuing key")
    return profiles.CertificateAuthority(store.issuing_ca_cert, key)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def serve_broker_cert(broker_dir: Path, cert: x509.Certificate, key: profiles.PrivateKey,
                      *chain: x509.Certificate) -> None:
    (broker_dir / "broker.pem").write_bytes(pem(cert) + b"".join(pem(c) for c in chain))
    (broker_dir / "broker.key").write_bytes(profiles.private_key_pem(key))


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@pytest.fixture(scope="session")
def ip_project(tmp_path_factory) -> BrokerProject:
    """One mtls device whose spec dials the broker by IP address (127.0.0.1)."""
    directory = tmp_path_factory.mktemp("doctor-ip")
    (directory / "device.yaml").write_text(f"""\
project: doctor-ip
target: esp32-arduino
wifi:
  ssid: test-wifi
  password: test-passphrase
broker:
  host: {LOOPBACK}
  port: 8883
auth: mtls
status:
  topic: devices/{{id}}/status
publish:
  - name: telemetry
    topic: devices/{{id}}/telemetry
subscribe:
  - name: command
    filter: devices/{{id}}/cmd/+
device:
  id: {DEVICE}
""")
    return build_broker_project(directory / "device.yaml")


# ---------------------------------------------------------------------------------------------- healthy


@pytest.mark.parametrize("auth", AUTH_MODES)
def test_a_healthy_link_passes_every_step(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    results = doctor(project, broker.port)
    assert [result.step for result in results] == STEP_NAMES
    assert all(result.ok for result in results), [(r.step, r.summary, r.fix) for r in results]
    assert "Denied" not in broker.log_text()


def test_a_healthy_link_dialled_by_ip_passes_every_step_and_leaves_no_retained_message(ip_project, start_broker,
                                                                                       broker_project):
    broker = start_broker(ip_project.broker_dir)
    results = doctor(ip_project, broker.port)
    assert all(result.ok for result in results), [(r.step, r.summary, r.fix) for r in results]
    # a wildcard filter (cmd/+) was proven with a concrete topic; nothing was published retained
    assert any("cmd/+" in detail for detail in results[-1].details)
    from conftest import mqtt_session

    with mqtt_session(broker, ip_project.client("backend"), client_id="retained-check") as backend:
        backend.subscribe("devices/#")
        backend.publish("devices/sensor-a/status", b"sentinel")
        assert backend.next_message().payload == b"sentinel"   # the first message is ours: nothing was retained


@pytest.mark.parametrize("auth", AUTH_MODES)
def test_a_device_that_says_it_is_online_stays_connected_while_doctor_runs(auth, broker_project, start_broker):
    # The broker binds the client id to the user name: probing as the device would disconnect it. Like the firmware,
    # the device publishes a retained `online` after connecting; the doctor reads it and leaves the device alone.
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    from conftest import mqtt_session

    with mqtt_session(broker, project.client(DEVICE)) as device:
        device.publish(f"devices/{DEVICE}/status", b"online", retain=True)
        results = doctor(project, broker.port)
        assert all(result.ok for result in results), [(r.step, r.summary) for r in results]
        assert "connected right now" in results[-2].summary
        device.publish("devices/sensor-a/telemetry", b"still connected")  # PUBACK: the session was not taken over
    assert f"Client {DEVICE} already connected" not in broker.log_text()


def test_the_doctor_never_logs_in_as_the_backend_so_a_running_backend_stays_connected(broker_project, start_broker):
    project = broker_project("password")
    broker = start_broker(project.broker_dir)
    from conftest import mqtt_session

    with mqtt_session(broker, project.client("backend")) as backend:
        assert all(result.ok for result in doctor(project, broker.port))
        backend.publish("devices/sensor-a/cmd/still-here", b"x")   # PUBACK: still connected
    assert "Client backend already connected" not in broker.log_text()


# ---------------------------------------------------------------------------------------------- TLS, server side


def test_a_broker_serving_another_cas_cert_fails_the_tls_step_showing_both_issuers(broker_project, start_broker,
                                                                                   tmp_path):
    project = broker_project("mtls")
    broker_dir = broker_files_copy(project, tmp_path)
    foreign_key = profiles.generate_key("ec-p256")
    foreign = profiles.CertificateAuthority(profiles.build_root_ca(foreign_key, project="someone-else", validity_days=30,
                                                         now=now()), foreign_key)
    server_key = profiles.generate_key("ec-p256")
    server_cert = profiles.issue_broker_cert(server_key.public_key(), ["localhost", LOOPBACK], issuer=foreign,
                                        validity_days=30, now=now(), project="someone-else")
    serve_broker_cert(broker_dir, server_cert, server_key)
    broker = start_broker(broker_dir)
    failure = first_failure(doctor(project, broker.port))
    assert failure.step == "tls"
    assert "another CA" in failure.summary
    assert "someone-else Root CA" in failure.summary and "broker-test Root CA" in failure.summary


def test_a_broker_cert_without_the_dialled_name_fails_the_tls_step_listing_what_it_holds(broker_project,
                                                                                        start_broker, tmp_path):
    project = broker_project("mtls")
    broker_dir = broker_files_copy(project, tmp_path)
    server_key = profiles.generate_key("ec-p256")
    server_cert = profiles.issue_broker_cert(server_key.public_key(), ["other.example.com"], issuer=issuing_ca(project),
                                        validity_days=30, now=now(), project="broker-test")
    serve_broker_cert(broker_dir, server_cert, server_key, issuing_ca(project).cert)
    broker = start_broker(broker_dir)
    failure = first_failure(doctor(project, broker.port))
    assert failure.step == "tls"
    assert "localhost" in failure.summary and "not in the broker's certificate" in failure.summary
    assert "DNS:other.example.com" in failure.summary


def test_an_ip_only_san_cert_is_named_as_rejected_by_mbedtls_but_accepted_by_openssl(ip_project, start_broker,
                                                                                     tmp_path):
    broker_dir = broker_files_copy(ip_project, tmp_path)
    issuer = issuing_ca(ip_project)
    server_key = profiles.generate_key("ec-p256")
    start = now() - dt.timedelta(minutes=5)
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]))
        .issuer_name(issuer.cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
        .add_extension(issuer.authority_key_id, critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    serve_broker_cert(broker_dir, server_cert, server_key, issuer.cert)
    broker = start_broker(broker_dir)
    failure = first_failure(doctor(ip_project, broker.port))
    assert failure.step == "tls"
    assert "mbedTLS 2.28" in failure.summary and "OpenSSL accepts" in failure.summary
    assert "iPAddress" in failure.summary
    assert any("verify-failed" in detail and "mbedTLS" in detail for detail in failure.details)
    assert any(detail == "OpenSSL: ok" for detail in failure.details)


def test_a_broker_that_refuses_tls_1_2_fails_the_tls_step_as_a_version_refusal(broker_project, start_broker,
                                                                               tmp_path):
    project = broker_project("password")
    broker_dir = broker_files_copy(project, tmp_path)
    conf = broker_dir / "mosquitto.conf"
    conf.write_text(conf.read_text().replace("tls_version tlsv1.2", "tls_version tlsv1.3"))
    broker = start_broker(broker_dir)
    failure = first_failure(doctor(project, broker.port))
    assert failure.step == "tls"
    assert "refuses TLS 1.2" in failure.summary


def test_a_plaintext_listener_on_the_dialled_port_fails_the_tls_step_as_plaintext(broker_project, start_broker,
                                                                                   tmp_path):
    project = broker_project("mtls")
    broker_dir = broker_files_copy(project, tmp_path)
    conf = broker_dir / "mosquitto.conf"
    # the silent misconfiguration: certfile without keyfile makes Mosquitto serve plaintext
    conf.write_text(conf.read_text() + "\nlistener 1883\ncertfile /etc/mosquitto/gen/broker.pem\n")
    broker = start_broker(broker_dir, plaintext_port=find_free_port())
    failure = first_failure(doctor(project, broker.plaintext_port))
    assert failure.step == "tls"
    assert "plaintext MQTT" in failure.summary
    assert "keyfile" in failure.fix


# ---------------------------------------------------------------------------------------------- TCP


def test_nothing_listening_fails_the_tcp_step_as_refused(broker_project):
    project = broker_project("mtls")
    failure = first_failure(doctor(project, find_free_port()))
    assert failure.step == "tcp"
    assert "refused" in failure.summary and "nothing listens" in failure.summary


def test_a_name_that_does_not_resolve_fails_the_resolve_step(broker_project):
    project = broker_project("mtls")
    spec = project.spec
    target = DoctorTarget.for_device(spec, spec.device(DEVICE), "no-such-host.invalid:8883")
    failure = first_failure(run_doctor(spec, target))
    assert failure.step == "resolve"
    assert "does not resolve" in failure.summary


# ---------------------------------------------------------------------------------------------- client certs


def replace_device_cert(project: BrokerProject, cert: x509.Certificate) -> None:
    store = PkiStore.open(project.spec.pki.dir, project=project.spec.project, create=False)
    store.layout.cert_path("device", DEVICE).write_bytes(pem(cert))


def expired_device_cert(project: BrokerProject) -> x509.Certificate:
    key_pem = project.client(DEVICE).key_pem
    key = profiles.load_private_key_pem(key_pem, "device key")
    return profiles.issue_device_cert(key.public_key(), DEVICE, issuer=issuing_ca(project), validity_days=1,
                                 now=now() - dt.timedelta(days=30), project="broker-test")


def test_an_expired_device_cert_fails_the_pki_step(broker_project, copy_project, start_broker):
    project = copy_project(broker_project("mtls"))
    replace_device_cert(project, expired_device_cert(project))
    broker = start_broker(project.broker_dir)
    failure = first_failure(doctor(project, broker.port))
    assert failure.step == "pki"
    assert f"device {DEVICE}" in failure.summary and "expired on" in failure.summary
    assert f"gen pki renew {project.spec.path} {DEVICE}" in failure.fix


def test_the_broker_refusing_an_expired_device_cert_is_named_at_the_client_cert_step(broker_project, copy_project,
                                                                                     start_broker):
    project = copy_project(broker_project("mtls"))
    replace_device_cert(project, expired_device_cert(project))
    broker = start_broker(project.broker_dir)
    spec = project.spec
    target = DoctorTarget.for_device(spec, spec.device(DEVICE), f"{LOOPBACK}:{broker.port}")
    result = run_client_cert_step(target, load_material(spec, spec.device(DEVICE)), now())
    assert result.ok is False
    assert "refuses the device cert" in result.summary and "expired" in result.summary


def test_a_revoked_device_cert_fails_the_pki_step(broker_project, copy_project, start_broker):
    project = copy_project(broker_project("mtls"))
    store = PkiStore.open(project.spec.pki.dir, project=project.spec.project, create=False)
    store.revoke(DEVICE, "key-compromise")
    (project.broker_dir / "crl.pem").write_bytes(store.crl_pem())
    broker = start_broker(project.broker_dir)
    failure = first_failure(doctor(project, broker.port))
    assert failure.step == "pki"
    assert "revoked" in failure.summary and DEVICE in failure.summary


def test_the_broker_refusing_a_revoked_device_cert_is_named_at_the_client_cert_step(broker_project, copy_project,
                                                                                    start_broker):
    project = copy_project(broker_project("mtls"))
    store = PkiStore.open(project.spec.pki.dir, project=project.spec.project, create=False)
    store.revoke(DEVICE)
    (project.broker_dir / "crl.pem").write_bytes(store.crl_pem())
    broker = start_broker(project.broker_dir)
    spec = project.spec
    target = DoctorTarget.for_device(spec, spec.device(DEVICE), f"{LOOPBACK}:{broker.port}")
    result = run_client_cert_step(target, load_material(spec, spec.device(DEVICE)), now())
    assert result.ok is False
    assert "revoked" in result.summary and "CRL" in result.summary


def test_a_broker_that_does_not_trust_the_devices_ca_fails_the_client_cert_step(broker_project, start_broker,
                                                                                tmp_path):
    project = broker_project("mtls")
    broker_dir = broker_files_copy(project, tmp_path)
    other = broker_project("mtls+password")
    (broker_dir / "ca.pem").write_bytes(other.credentials.broker.cafile_pem)
    (broker_dir / "crl.pem").write_bytes(other.credentials.broker.crl_pem)
    broker = start_broker(broker_dir)
    failure = first_failure(doctor(project, broker.port))
    assert failure.step == "client-cert"
    assert "unknown CA" in failure.summary


# ---------------------------------------------------------------------------------------------- MQTT


def test_the_wrong_password_fails_the_connect_step_with_the_connack_explained(broker_project, copy_project,
                                                                              start_broker):
    project = copy_project(broker_project("password"))
    broker = start_broker(project.broker_dir)
    store = PkiStore.open(project.spec.pki.dir, project=project.spec.project, create=False)
    store.layout.password_path(DEVICE).write_text("not-the-password\n")
    failure = first_failure(doctor(project, broker.port))
    assert failure.step == "mqtt-connect"
    assert failure.summary.startswith("CONNACK 5: not authorized (Mosquitto 2.0 says this for a wrong password")
    assert "password" in failure.fix


def test_an_acl_that_denies_the_devices_publish_topic_fails_the_acl_step_naming_the_topic(broker_project,
                                                                                         start_broker, tmp_path):
    project = broker_project("mtls")
    broker_dir = broker_files_copy(project, tmp_path)
    acl = broker_dir / "acl"
    acl.write_text(acl.read_text().replace(f"topic write devices/{DEVICE}/telemetry\n", ""))
    broker = start_broker(broker_dir)
    failure = first_failure(doctor(project, broker.port))
    assert failure.step == "acl"
    assert f"denies device {DEVICE} publishing on devices/{DEVICE}/telemetry" in failure.summary


def test_an_acl_that_denies_the_devices_subscription_fails_the_acl_step_naming_the_filter(broker_project,
                                                                                         start_broker, tmp_path):
    project = broker_project("password")
    broker_dir = broker_files_copy(project, tmp_path)
    acl = broker_dir / "acl"
    acl.write_text(acl.read_text().replace(f"topic read devices/{DEVICE}/cmd/#\n", ""))
    broker = start_broker(broker_dir)
    failure = first_failure(doctor(project, broker.port))
    assert failure.step == "acl"
    assert f"does not receive messages on devices/{DEVICE}/cmd/#" in failure.summary


def test_a_broker_serving_an_expired_cert_fails_the_tls_step_as_expired(broker_project, start_broker, tmp_path):
    project = broker_project("password")
    broker_dir = broker_files_copy(project, tmp_path)
    issuer = issuing_ca(project)
    server_key = profiles.generate_key("ec-p256")
    server_cert = profiles.issue_broker_cert(server_key.public_key(), ["localhost", LOOPBACK], issuer=issuer,
                                        validity_days=1, now=now() - dt.timedelta(days=10), project="broker-test")
    serve_broker_cert(broker_dir, server_cert, server_key, issuer.cert)
    broker = start_broker(broker_dir)
    failure = first_failure(doctor(project, broker.port))
    assert failure.step == "tls"
    assert failure.summary.startswith("the broker's certificate expired on")


def test_a_broker_serving_its_cert_without_the_issuing_ca_fails_the_tls_step_naming_the_chain(broker_project,
                                                                                             start_broker, tmp_path):
    project = broker_project("password")  # no cafile: with one, OpenSSL on the broker completes the chain itself
    broker_dir = broker_files_copy(project, tmp_path)
    leaf_only = (broker_dir / "broker.pem").read_bytes().split(b"-----END CERTIFICATE-----")[0]
    (broker_dir / "broker.pem").write_bytes(leaf_only + b"-----END CERTIFICATE-----\n")
    broker = start_broker(broker_dir)
    failure = first_failure(doctor(project, broker.port))
    assert failure.step == "tls"
    assert "chain does not verify" in failure.summary and "issuing CA" in failure.fix
