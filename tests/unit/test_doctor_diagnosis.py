"""The pure half of `gen doctor`: name matching as mbedTLS 2.28 and OpenSSL do it, the PKI checks against a clock,
and the words for each TCP failure, CONNACK code and broker alert. No network."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from generator.doctor import probes
from generator.pki import profiles
from generator.doctor.material import DoctorTarget, load_material, parse_host_port
from generator.doctor.mqtt_steps import CONNACK_MEANINGS, concrete_topic, judge_connack
from generator.doctor.pki_check import check_pki
from generator.doctor.tls_steps import judge_client_cert, judge_tcp
from generator.pki.name_matching import mbedtls_accepts_name, openssl_accepts_name
from generator.core.errors import UserError

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)


def cert_with(names: list[x509.GeneralName] | None, cn: str = "broker") -> x509.Certificate:
    key = profiles.generate_key("ec-p256")
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")]))
               .public_key(key.public_key()).serial_number(1)
               .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=1)))
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256())


IP = ipaddress.ip_address("192.168.1.10")


@pytest.mark.parametrize("names, cn, dialled, mbedtls, openssl", [
    ([x509.DNSName("mqtt.example.com")], "x", "mqtt.example.com", True, True),
    ([x509.DNSName("MQTT.example.com")], "x", "mqtt.EXAMPLE.com", True, True),
    ([x509.DNSName("*.example.com")], "x", "mqtt.example.com", True, True),
    ([x509.DNSName("*.example.com")], "x", "example.com", False, False),
    ([x509.IPAddress(IP)], "192.168.1.10", "192.168.1.10", False, True),          # mbedTLS 2.28 skips iPAddress
    ([x509.IPAddress(IP), x509.DNSName("192.168.1.10")], "x", "192.168.1.10", True, True),  # what we issue
    ([x509.DNSName("192.168.1.10")], "x", "192.168.1.10", True, False),           # OpenSSL wants iPAddress
    ([x509.DNSName("other.example.com")], "mqtt.example.com", "mqtt.example.com", False, False),  # CN ignored
    (None, "mqtt.example.com", "mqtt.example.com", True, True),                    # no SAN: the CN counts
])
def test_names_are_matched_the_way_each_tls_stack_matches_them(names, cn, dialled, mbedtls, openssl):
    cert = cert_with(names, cn)
    assert mbedtls_accepts_name(cert, dialled) is mbedtls
    assert openssl_accepts_name(cert, dialled) is openssl


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:18883", ("127.0.0.1", 18883)),
    ("broker.lan", ("broker.lan", 8883)),
    ("[::1]:8884", ("::1", 8884)),
    ("::1", ("::1", 8883)),
])
def test_a_broker_override_is_read_as_host_and_port(text, expected):
    assert parse_host_port(text, default_port=8883) == expected


@pytest.mark.parametrize("text", ["host:0", "host:99999", "host:x", ":8883"])
def test_a_broker_override_without_a_usable_port_or_host_is_refused(text):
    with pytest.raises(UserError):
        parse_host_port(text, default_port=8883)


@pytest.mark.parametrize("topic_filter, topic", [
    ("devices/d1/cmd/#", "devices/d1/cmd/doctor"),
    ("devices/+/cmd", "devices/doctor/cmd"),
    ("devices/d1/led", "devices/d1/led"),
])
def test_a_wildcard_filter_is_proven_with_a_concrete_topic_it_matches(topic_filter, topic):
    assert concrete_topic(topic_filter) == topic


@pytest.fixture(scope="module")
def mtls(broker_project):
    project = broker_project("mtls")
    device = project.spec.device("sensor-a")
    target = DoctorTarget.for_device(project.spec, device, "127.0.0.1:8883")
    return project, target, load_material(project.spec, device)


def test_a_crl_past_its_next_update_fails_the_pki_step(mtls):
    project, target, material = mtls
    later = material.crl.next_update_utc + dt.timedelta(days=1)
    result = check_pki(project.spec, target, material, later)
    assert result.ok is False
    assert any("past its nextUpdate" in line for line in (result.summary, *result.details))


def test_the_pki_step_passes_for_a_fresh_project(mtls):
    project, target, material = mtls
    result = check_pki(project.spec, target, material, dt.datetime.now(dt.timezone.utc))
    assert result.ok, result.summary


def test_a_broker_that_says_expired_for_a_valid_cert_points_at_the_brokers_crl(mtls):
    project, target, material = mtls
    outcome = probes.HandshakeOutcome("alert", "sslv3 alert certificate expired",
                                      reason="SSLV3_ALERT_CERTIFICATE_EXPIRED")
    result = judge_client_cert(target, material, outcome, dt.datetime.now(dt.timezone.utc))
    assert result.ok is False
    assert "although it is valid until" in result.summary and "nextUpdate" in result.fix


def test_a_connection_dropped_without_an_alert_is_not_called_a_refused_cert(mtls):
    project, target, material = mtls
    outcome = probes.HandshakeOutcome("closed", "EOF occurred in violation of protocol")
    result = judge_client_cert(target, material, outcome, dt.datetime.now(dt.timezone.utc))
    assert result.ok is False
    assert "other than a refused cert" in result.summary


@pytest.mark.parametrize("code", [1, 2, 3, 4, 5])
def test_each_connack_refusal_is_explained_in_words_with_a_fix(code, mtls):
    _, target, _ = mtls
    result = judge_connack(target, code, None)
    assert result.ok is False
    assert result.summary.startswith(f"CONNACK {code}: {CONNACK_MEANINGS[code]}")
    assert result.fix


@pytest.mark.parametrize("kind, words", [
    ("refused", "nothing listens"),
    ("timeout", "timed out"),
    ("unreachable", "unreachable"),
])
def test_each_tcp_failure_has_its_own_reason(kind, words, mtls):
    _, target, _ = mtls
    result = judge_tcp(target, probes.TcpOutcome(kind, "raw"))
    assert result.ok is False and words in result.summary
