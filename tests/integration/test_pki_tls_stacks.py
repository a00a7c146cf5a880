"""The broker and device certs verify with every TLS stack in play: OpenSSL (Python `ssl`, `openssl verify`),
mbedTLS 2.28 (python-mbedtls: Arduino-ESP32 2.0.x's stack) and `cryptography.x509.verification`.

Every handshake runs on 127.0.0.1; the name a device would dial (192.168.1.10, 2001:db8::10, a DNS name) is
what the client checks, independent of the loopback address it connects to."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification
from mbedtls import tls as mbedtls_tls
from mbedtls import x509 as mbedtls_x509
from mbedtls.exceptions import TLSError

from generator.pki import profiles
from generator.pki.store import PkiStore

TUTORIAL = Path(__file__).parent.parent / "data" / "tutorial"
X509_CERT_VERIFY_FAILED = 0x2700  # MBEDTLS_ERR_X509_CERT_VERIFY_FAILED
BROKER_NAMES = ["mqtt.example.com", "192.168.1.10", "2001:db8::10", "localhost"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> PkiStore:
    store = PkiStore.open(tmp_path_factory.mktemp("spec") / "pki", project="tls-demo")
    store.ensure_broker(BROKER_NAMES, validity_days=365)
    return store


# ------------------------------------------------------------------------------------------------ helpers


class TlsServer:
    """A Python `ssl` (OpenSSL) server on 127.0.0.1 presenting a cert chain to each client that connects."""

    def __init__(self, cert_chain: Path, key: Path):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_chain, key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.listener.close()


def serve(cert_pem: bytes, key_pem: bytes, tmp_path: Path) -> TlsServer:
    cert, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    return TlsServer(cert, key)


def mbedtls_connect(port: int, dialled_name: str, trusted_pem: bytes) -> bytes:
    """A TLS 1.2 handshake as Arduino-ESP32 2.0.x makes it: mbedTLS 2.28, verification on, hostname = the
    string dialled. Returns b"ok" once the handshake (and so verification) succeeded; raises mbedtls'
    TLSError when verification fails."""
    roots = [mbedtls_x509.CRT.from_PEM(block) for block in _pem_blocks(trusted_pem)]
    config = mbedtls_tls.TLSConfiguration(
        validate_certificates=True,
        trust_store=mbedtls_tls.TrustStore(roots),
        lowest_supported_version=mbedtls_tls.TLSVersion.TLSv1_2,
        highest_supported_version=mbedtls_tls.TLSVersion.TLSv1_2,
    )
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        conn = mbedtls_tls.ClientContext(config).wrap_socket(raw, server_hostname=dialled_name)
        conn.do_handshake()
        return b"ok"
    finally:
        raw.close()


def openssl_connect(port: int, dialled_name: str, trusted_pem: bytes) -> bytes:
    context = ssl.create_default_context(cadata=trusted_pem.decode())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=dialled_name) as conn:
            return conn.recv(2)


def _pem_blocks(data: bytes) -> list[str]:
    text, marker = data.decode(), "-----END CERTIFICATE-----"
    return [block + marker + "\n" for block in text.split(marker) if "BEGIN" in block]


def ip_only_broker_cert(store: PkiStore, ip: str) -> tuple[bytes, bytes]:
    """What most PKI tools make for an IP: SAN iPAddress only (the issuing CA and profile otherwise ours)."""
    key = profiles.generate_key("ec-p256")
    issuer = profiles.CertificateAuthority(store.issuing_ca_cert, serialization.load_pem_private_key(
        store.layout.issuing_key.read_bytes(), None))
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, ip)]))
            .issuer_name(issuer.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), False)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(issuer.authority_key_id, False)
            .sign(issuer.key, profiles.hashes.SHA256()))
    chain = cert.public_bytes(serialization.Encoding.PEM) + store.issuing_ca_cert.public_bytes(
        serialization.Encoding.PEM)
    return chain, profiles.private_key_pem(key)


@pytest.fixture
def broker_server(store, tmp_path):
    broker = store.ensure_broker(BROKER_NAMES, validity_days=365)
    server = TlsServer(broker.cert_path, broker.key_path)
    yield server
    server.close()


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("dialled", ["mqtt.example.com", "192.168.1.10", "2001:db8::10", "localhost"])
def test_mbedtls_2_28_accepts_the_broker_cert_dialled_by_dns_ipv4_or_ipv6(store, broker_server, dialled):
    assert mbedtls_connect(broker_server.port, dialled, store.device_trust_pem()) == b"ok"


@pytest.mark.parametrize("dialled", ["mqtt.example.com", "192.168.1.10", "2001:db8::10"])
def test_openssl_accepts_the_broker_cert_dialled_by_dns_ipv4_or_ipv6(store, broker_server, dialled):
    assert openssl_connect(broker_server.port, dialled, store.device_trust_pem()) == b"ok"


def test_mbedtls_rejects_the_broker_cert_for_a_name_it_was_not_issued_for(store, broker_server):
    with pytest.raises(TLSError) as rejected:
        mbedtls_connect(broker_server.port, "192.168.1.11", store.device_trust_pem())
    assert rejected.value.err == X509_CERT_VERIFY_FAILED


def test_mbedtls_rejects_a_broker_cert_from_another_ca(tmp_path, broker_server):
    other = PkiStore.open(tmp_path / "other" / "pki", project="other")
    with pytest.raises(TLSError):
        mbedtls_connect(broker_server.port, "mqtt.example.com", other.device_trust_pem())


def test_mbedtls_2_28_rejects_a_cert_whose_san_holds_only_the_ip_address(store, tmp_path):
    chain, key = ip_only_broker_cert(store, "192.168.1.10")
    server = serve(chain, key, tmp_path)
    try:
        assert openssl_connect(server.port, "192.168.1.10", store.device_trust_pem()) == b"ok"  # OpenSSL: fine
        with pytest.raises(TLSError) as rejected:                                    # mbedTLS 2.28: not
            mbedtls_connect(server.port, "192.168.1.10", store.device_trust_pem())
        assert rejected.value.err == X509_CERT_VERIFY_FAILED
    finally:
        server.close()


def test_the_tutorial_cn_only_cert_passes_mbedtls_but_fails_openssl_hostname_checks(tmp_path):
    ca_pem = (TUTORIAL / "ca.crt").read_bytes()
    server = TlsServer(TUTORIAL / "server.crt", TUTORIAL / "server.key")
    try:
        assert mbedtls_connect(server.port, "192.168.1.10", ca_pem) == b"ok"
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            openssl_connect(server.port, "192.168.1.10", ca_pem)
    finally:
        server.close()
    verify = subprocess.run(["openssl", "verify", "-CAfile", TUTORIAL / "ca.crt", "-verify_ip", "192.168.1.10",
                             TUTORIAL / "server.crt"], capture_output=True, text=True)
    assert verify.returncode != 0 and "IP address mismatch" in verify.stdout + verify.stderr


@pytest.mark.parametrize("flag,name", [("-verify_hostname", "mqtt.example.com"), ("-verify_ip", "192.168.1.10"),
                                       ("-verify_ip", "2001:db8::10")])
def test_openssl_verify_accepts_the_broker_chain_by_name(store, tmp_path, flag, name):
    broker = store.ensure_broker(BROKER_NAMES, validity_days=365)
    (tmp_path / "ca.pem").write_bytes(store.device_trust_pem())
    (tmp_path / "issuing.pem").write_bytes(store.issuing_ca_cert.public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(["openssl", "verify", "-CAfile", tmp_path / "ca.pem", "-untrusted",
                             tmp_path / "issuing.pem", "-purpose", "sslserver", flag, name, broker.cert_path],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("subject", [x509.DNSName("mqtt.example.com"),
                                     x509.IPAddress(ipaddress.ip_address("192.168.1.10")),
                                     x509.IPAddress(ipaddress.ip_address("2001:db8::10"))])
def test_cryptography_server_verifier_accepts_the_broker_chain(store, subject):
    broker = store.ensure_broker(BROKER_NAMES, validity_days=365)
    leaf, *chain = x509.load_pem_x509_certificates(broker.cert_pem)
    verifier = verification.PolicyBuilder().store(verification.Store([store.root_ca_cert])) \
        .build_server_verifier(subject)
    assert verifier.verify(leaf, chain)[-1] == store.root_ca_cert


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048"])
def test_cryptography_client_verifier_accepts_a_device_cert_with_its_urn_san(store, key_type):
    device = store.ensure_device(f"esp32-{key_type}", key_type=key_type, validity_days=365)
    verifier = verification.PolicyBuilder().store(verification.Store([store.root_ca_cert])).build_client_verifier()
    verified = verifier.verify(x509.load_pem_x509_certificate(device.cert_pem), [store.issuing_ca_cert])
    assert verified.subjects == [x509.UniformResourceIdentifier(f"urn:dev:esp32-{key_type}")]


def test_a_device_cert_cannot_serve_as_the_broker(store):
    device = store.ensure_device("esp32-not-a-server", key_type="ec-p256", validity_days=365)
    verifier = verification.PolicyBuilder().store(verification.Store([store.root_ca_cert])) \
        .build_server_verifier(x509.DNSName("esp32-not-a-server"))
    with pytest.raises(verification.VerificationError):
        verifier.verify(x509.load_pem_x509_certificate(device.cert_pem), [store.issuing_ca_cert])


def test_an_rsa_broker_cert_passes_mbedtls_and_openssl_by_ip(tmp_path):
    store = PkiStore.open(tmp_path / "pki", project="rsa-demo", key_type="rsa-2048")
    broker = store.ensure_broker(["10.0.0.2"], validity_days=365)
    server = TlsServer(broker.cert_path, broker.key_path)
    try:
        assert mbedtls_connect(server.port, "10.0.0.2", store.device_trust_pem()) == b"ok"
        assert openssl_connect(server.port, "10.0.0.2", store.device_trust_pem()) == b"ok"
    finally:
        server.close()
