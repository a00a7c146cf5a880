"""The generated broker refuses what it must: one scenario per test, against the real Mosquitto, after the cases of
Mosquitto's own test suite (test/broker/08-ssl-*, 09-acl-*, 01-connect-allow-anonymous). TLS is pinned to 1.2
where the refusal reason is checked: with TLS 1.3 a refused client cert only shows on the first read."""

from __future__ import annotations

import datetime as dt
import socket
import ssl

import pytest

from conftest import (WAIT_S, client_tls_context, client_with_cert, foreign_ca, issuing_ca, mbedtls_connect,
                      mqtt_connack_code, mqtt_connect_over, mqtt_connect_packet, mqtt_session, paho_connack,
                      tls_connect)
from generator.pki import profiles
from generator.pki.store import PkiStore

CERT_MODES = ("mtls", "mtls+password")
PASSWORD_MODES = ("password", "mtls+password")
ALL_MODES = ("mtls", "password", "mtls+password")
CONNACK_NOT_AUTHORISED = 5   # MQTT 3.1.1 CONNACK return code


# ---------------------------------------------------------------------------------------------- helpers


def revoke_and_remove(project, device_id: str):
    """What an operator does: `gen pki revoke SPEC ID`, take the device out of the spec, `gen generate SPEC`.
    Returns the regenerated project."""
    PkiStore.open(project.spec.pki.dir, project=project.spec.project).revoke(device_id, reason="key-compromise")
    project.spec.path.write_text(project.spec.path.read_text().replace(f"  - id: {device_id}\n", ""))
    return project.regenerate()


def handshake_refused(broker, context, **options) -> ssl.SSLError:
    """Asserts that the TLS handshake fails and returns the error."""
    with pytest.raises(ssl.SSLError) as refused:
        tls_connect(broker, context, **options).close()
    return refused.value


# ---------------------------------------------------------------------------------------------- trust


@pytest.mark.parametrize("auth", ALL_MODES)
def test_a_client_that_trusts_another_ca_refuses_the_broker(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    context = client_tls_context(project.client("sensor-a"),
                                 ca_pem=foreign_ca().cert.public_bytes(profiles.serialization.Encoding.PEM))
    error = handshake_refused(broker, context)
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert "unable to get local issuer certificate" in error.verify_message


@pytest.mark.parametrize("auth", ALL_MODES)
def test_a_client_dialling_a_name_not_on_the_broker_cert_refuses_it(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    error = handshake_refused(broker, client_tls_context(project.client("sensor-a")),
                              server_hostname="wrong.example.net")
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in error.verify_message


@pytest.mark.parametrize("auth", ALL_MODES)
def test_mbedtls_dialling_a_name_not_on_the_broker_cert_refuses_it(auth, broker_project, start_broker):
    from mbedtls.exceptions import TLSError

    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    with pytest.raises(TLSError):
        mbedtls_connect(broker, project.client("sensor-a"), server_hostname="wrong.example.net")


# ---------------------------------------------------------------------------------------------- client certificates


@pytest.mark.parametrize("auth", CERT_MODES)
def test_a_client_cert_from_another_ca_is_refused(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    impostor = client_with_cert(project.client("sensor-a"), foreign_ca())
    error = handshake_refused(broker, client_tls_context(impostor))
    assert "UNKNOWN_CA" in str(error).upper()
    broker.wait_for_log("certificate verify failed")


@pytest.mark.parametrize("auth", CERT_MODES)
def test_a_client_without_a_cert_is_refused_where_one_is_required(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    handshake_refused(broker, client_tls_context(project.client("sensor-a"), with_cert=False))
    broker.wait_for_log("peer did not return a certificate")


@pytest.mark.parametrize("auth", CERT_MODES)
def test_an_expired_client_cert_is_refused(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=10)
    expired = client_with_cert(project.client("sensor-a"), issuing_ca(project), now=long_ago, validity_days=1)
    error = handshake_refused(broker, client_tls_context(expired))
    assert "CERTIFICATE_EXPIRED" in str(error).upper()


@pytest.mark.parametrize("auth", CERT_MODES)
def test_a_fresh_cert_from_our_ca_connects_so_the_refusals_above_are_about_the_cert(auth, broker_project,
                                                                                    start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    fresh = client_with_cert(project.client("sensor-a"), issuing_ca(project))
    with tls_connect(broker, client_tls_context(fresh)) as sock:
        assert mqtt_connect_over(sock, fresh) == 0


@pytest.mark.parametrize("auth", CERT_MODES)
def test_a_revoked_client_cert_is_refused_and_an_unrevoked_one_still_connects(auth, broker_project, copy_project,
                                                                             start_broker):
    project = copy_project(broker_project(auth))
    revoked = project.client("sensor-b")
    project = revoke_and_remove(project, "sensor-b")
    broker = start_broker(project.broker_dir)

    error = handshake_refused(broker, client_tls_context(revoked))
    assert "CERTIFICATE_REVOKED" in str(error).upper()
    with tls_connect(broker, client_tls_context(project.client("sensor-a"))) as sock:
        assert mqtt_connect_over(sock, project.client("sensor-a")) == 0


@pytest.mark.parametrize("auth", CERT_MODES)
def test_after_renew_then_revoke_the_old_certificate_is_refused_too(auth, broker_project, copy_project, start_broker):
    # A renewal keeps the key and leaves the old certificate unexpired: a stolen board may still carry it.
    project = copy_project(broker_project(auth))
    old = project.client("sensor-b")
    PkiStore.open(project.spec.pki.dir, project=project.spec.project).renew("sensor-b", new_key=False)
    renewed = project.regenerate().client("sensor-b")
    assert renewed.cert_pem != old.cert_pem and renewed.key_pem == old.key_pem
    project = revoke_and_remove(project, "sensor-b")
    broker = start_broker(project.broker_dir)

    for carried in (old, renewed):
        error = handshake_refused(broker, client_tls_context(carried))
        assert "CERTIFICATE_REVOKED" in str(error).upper()
    with tls_connect(broker, client_tls_context(project.client("sensor-a"))) as sock:
        assert mqtt_connect_over(sock, project.client("sensor-a")) == 0


def test_a_cert_revoked_while_the_broker_runs_is_refused_after_sighup(broker_project, copy_project, start_broker):
    project = copy_project(broker_project("mtls"))
    broker = start_broker(project.broker_dir)
    revoked = project.client("sensor-b")
    with mqtt_session(broker, revoked) as still_connected, \
            mqtt_session(broker, project.client("backend")) as backend:
        backend.subscribe("devices/#")
        project = revoke_and_remove(project, "sensor-b")
        broker.install(project.broker_dir)
        broker.reload()

        error = handshake_refused(broker, client_tls_context(revoked))
        assert "CERTIFICATE_REVOKED" in str(error).upper()
        with tls_connect(broker, client_tls_context(project.client("sensor-a"))) as sock:
            assert mqtt_connect_over(sock, project.client("sensor-a")) == 0
        # Its TLS session outlives the reload, but its ACL section is gone with it: nothing it sends gets through.
        still_connected.publish("devices/sensor-b/telemetry", b"after revocation")
        backend.publish("devices/sensor-a/cmd/sentinel", b"sentinel")
        assert [m.topic for m in backend.receive_until("devices/sensor-a/cmd/sentinel")] == [
            "devices/sensor-a/cmd/sentinel"]


# ---------------------------------------------------------------------------------------------- passwords


@pytest.mark.parametrize("auth", PASSWORD_MODES)
def test_the_wrong_password_is_refused(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    assert paho_connack(broker, project.client("sensor-a"), password="not-the-password") == "Not authorized"


@pytest.mark.parametrize("auth", PASSWORD_MODES)
def test_another_devices_password_is_refused(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    other = project.client("sensor-b").password
    assert paho_connack(broker, project.client("sensor-a"), password=other) == "Not authorized"


@pytest.mark.parametrize("auth", PASSWORD_MODES)
def test_an_anonymous_client_is_refused(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    with tls_connect(broker, client_tls_context(project.client("sensor-a"))) as sock:
        sock.send(mqtt_connect_packet("anonymous-client"))
        assert mqtt_connack_code(sock) == CONNACK_NOT_AUTHORISED


def test_with_mtls_the_username_a_client_sends_does_not_change_who_it_is(broker_project, start_broker):
    # use_identity_as_username: sensor-a's cert with sensor-b's name is still sensor-a to the ACL.
    project = broker_project("mtls")
    broker = start_broker(project.broker_dir)
    with tls_connect(broker, client_tls_context(project.client("sensor-a"))) as sock:
        sock.send(mqtt_connect_packet("sensor-a", username="sensor-b", password="whatever"))
        assert mqtt_connack_code(sock) == 0
    broker.wait_for_log("u'sensor-a'")
    assert "u'sensor-b'" not in broker.log_text()


def test_with_mtls_password_the_password_not_the_certificate_says_which_device_a_client_is(broker_project,
                                                                                          start_broker):
    # What Mosquitto 2.0 really does (the README and the broker README say so): it cannot bind the cert's CN to the
    # user name, so sensor-a's certificate with sensor-b's own password is accepted as sensor-b.
    project = broker_project("mtls+password")
    broker = start_broker(project.broker_dir)
    other = project.client("sensor-b")
    with tls_connect(broker, client_tls_context(project.client("sensor-a"))) as sock:
        sock.send(mqtt_connect_packet("sensor-a", username="sensor-b", password=other.password))
        assert mqtt_connack_code(sock) == 0
    broker.wait_for_log("as sensor-b (p2, c1, k30, u'sensor-b')")
    readme = " ".join((project.broker_dir / "README.md").read_text().split())
    assert "Mosquitto 2.0 cannot bind the certificate's CN to the username" in readme
    assert "use `auth: mtls`" in readme


# ---------------------------------------------------------------------------------------------- the listener


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
@pytest.mark.parametrize("auth", ALL_MODES)
def test_tls_1_1_is_refused_by_the_broker(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    context = client_tls_context(project.client("sensor-a"), min_version=ssl.TLSVersion.TLSv1_1,
                                 max_version=ssl.TLSVersion.TLSv1_1)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that our client really offers TLS 1.1 and the broker decides
    handshake_refused(broker, context)
    broker.wait_for_log("unsupported protocol")


@pytest.mark.parametrize("auth", ALL_MODES)
def test_plaintext_mqtt_to_the_tls_port_gets_no_connack(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    client = project.client("sensor-a")
    with socket.create_connection((broker.host, broker.port), timeout=WAIT_S) as sock:
        sock.send(mqtt_connect_packet(client.name, username=client.name, password=client.password or "x"))
        reply = b""
        try:
            while chunk := sock.recv(64):
                reply += chunk
        except ConnectionResetError:
            pass
    assert not reply.startswith(b"\x20\x02"), "the TLS port answered a plaintext CONNECT with a CONNACK"


# ---------------------------------------------------------------------------------------------- the ESP32's TLS stack


def mbedtls_refused(broker, client) -> None:
    """The handshake fails. python-mbedtls reports the broker's alert as a TLSError, or, when the broker has
    already closed the socket, as the OS error of the next write; the tests also check the broker's log."""
    from mbedtls.exceptions import TLSError

    with pytest.raises((TLSError, ConnectionError)):
        mbedtls_connect(broker, client).close()


@pytest.mark.parametrize("auth", CERT_MODES)
def test_mbedtls_without_a_client_cert_is_refused_where_one_is_required(auth, broker_project, start_broker):
    import dataclasses

    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    mbedtls_refused(broker, dataclasses.replace(project.client("sensor-a"), cert_pem=None, key_pem=None))
    broker.wait_for_log("peer did not return a certificate")


@pytest.mark.parametrize("auth", CERT_MODES)
def test_mbedtls_with_a_client_cert_from_another_ca_is_refused(auth, broker_project, start_broker):
    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    mbedtls_refused(broker, client_with_cert(project.client("sensor-a"), foreign_ca()))
    broker.wait_for_log("certificate verify failed")


@pytest.mark.parametrize("auth", ALL_MODES)
def test_mbedtls_trusting_another_ca_refuses_the_broker(auth, broker_project, start_broker):
    import dataclasses

    project = broker_project(auth)
    broker = start_broker(project.broker_dir)
    foreign_root = foreign_ca().cert.public_bytes(profiles.serialization.Encoding.PEM)
    mbedtls_refused(broker, dataclasses.replace(project.client("sensor-a"), ca_pem=foreign_root))


def test_mbedtls_with_a_revoked_client_cert_is_refused(broker_project, copy_project, start_broker):
    project = copy_project(broker_project("mtls"))
    revoked = project.client("sensor-b")
    project = revoke_and_remove(project, "sensor-b")
    broker = start_broker(project.broker_dir)
    mbedtls_refused(broker, revoked)
    broker.wait_for_log("certificate verify failed")
    sock = mbedtls_connect(broker, project.client("sensor-a"))
    try:
        assert mqtt_connect_over(sock, project.client("sensor-a")) == 0
    finally:
        sock.close()


def test_a_crl_past_its_next_update_locks_out_every_client_which_is_why_the_readme_says_refresh_weekly(
        broker_project, copy_project, start_broker):
    project = copy_project(broker_project("mtls"))
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=40)
    stale = profiles.build_crl([], issuer=issuing_ca(project), crl_number=1, now=long_ago, validity_days=30)
    (project.broker_dir / "crl.pem").write_bytes(stale.public_bytes(profiles.serialization.Encoding.PEM))
    broker = start_broker(project.broker_dir)
    error = handshake_refused(broker, client_tls_context(project.client("sensor-a")))
    assert "CRL_HAS_EXPIRED" in str(error).upper() or "CERTIFICATE_EXPIRED" in str(error).upper()
    assert "crl.pem" in (project.broker_dir / "README.md").read_text() and "weekly" in (
        project.broker_dir / "README.md").read_text()
