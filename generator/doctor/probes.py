"""The network half of `gen doctor`: each probe dials the broker once and returns what happened as a plain value.
No probe decides what an outcome means; `generator.doctor.steps` does that, in pure functions.

Two TLS stacks are used on purpose:
- mbedTLS 2.28 (python-mbedtls): what Arduino-ESP32 2.0.x runs. TLS 1.2 at most, the device's CA as the only
  trust anchor, hostname = the name the device dials (dNSName SANs only; CN ignored once a SAN exists).
- OpenSSL (Python `ssl`): what mosquitto_pub, Python backends and most servers run.

Private keys reach OpenSSL through files in a fresh 0700 temporary directory removed straight after the
handshake; nothing is written anywhere else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass
from typing import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from mbedtls import exceptions, pk, tls
from mbedtls import x509 as mbedtls_x509

from generator.core.mqtt_wire import CONNACK, connect_packet

TIMEOUT_SECONDS = 5.0
MBEDTLS_VERIFY_FAILED = 0x2700        # MBEDTLS_ERR_X509_CERT_VERIFY_FAILED
MBEDTLS_FATAL_ALERT = 0x7780          # MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE

Address = tuple[str, int]


@dataclass(frozen=True)
class Resolution:
    addresses: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True)
class TcpOutcome:
    kind: str                   # "connected" | "refused" | "timeout" | "unreachable" | "error"
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "connected"


@dataclass(frozen=True)
class HandshakeOutcome:
    kind: str                   # "ok" | "verify-failed" | "alert" | "closed" | "not-tls" | "error"
    message: str = ""
    reason: str | None = None   # OpenSSL's reason code, e.g. "SSLV3_ALERT_CERTIFICATE_REVOKED"
    version: str | None = None  # negotiated protocol when kind == "ok"
    server_cert_der: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


@dataclass(frozen=True)
class ClientIdentity:
    """What a client presents: the CA it trusts, and its certificate and key when it has them."""

    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None


def resolve(host: str, port: int) -> Resolution:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        return Resolution((), error.strerror or str(error))
    except UnicodeError as error:
        return Resolution((), f"not a valid host name ({error})")
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return Resolution(tuple(addresses))


def tcp_connect(address: Address, timeout: float = TIMEOUT_SECONDS) -> TcpOutcome:
    try:
        with socket.create_connection(address, timeout=timeout):
            return TcpOutcome("connected")
    except ConnectionRefusedError as error:
        return TcpOutcome("refused", error.strerror or "connection refused")
    except (socket.timeout, TimeoutError):
        return TcpOutcome("timeout", f"no answer within {timeout:g} s")
    except OSError as error:
        if error.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
            return TcpOutcome("unreachable", error.strerror or str(error))
        return TcpOutcome("error", error.strerror or str(error))


# ---------------------------------------------------------------------------------------------- mbedTLS


def mbedtls_handshake(address: Address, server_name: str, client: ClientIdentity,
                      timeout: float = TIMEOUT_SECONDS) -> HandshakeOutcome:
    """The handshake as an ESP32 with Arduino-ESP32 2.0.x does it (mbedTLS 2.28, TLS 1.2)."""
    try:
        trust = tls.TrustStore([mbedtls_x509.CRT.from_DER(der) for der in _pem_certs_der(client.ca_pem)])
        chain = None
        if client.cert_pem and client.key_pem:
            chain = ((mbedtls_x509.CRT.from_DER(_pem_certs_der(client.cert_pem)[0]),), _mbedtls_key(client.key_pem))
        config = tls.TLSConfiguration(trust_store=trust, certificate_chain=chain, validate_certificates=True,
                                      lowest_supported_version=tls.TLSVersion.TLSv1_2,
                                      highest_supported_version=tls.TLSVersion.TLSv1_2)
        context = tls.ClientContext(config)
    except exceptions.TLSError as error:
        return HandshakeOutcome("error", f"mbedTLS could not load the credentials: {error.msg}")
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as error:
        return HandshakeOutcome("closed", error.strerror or str(error))
    with contextlib.closing(sock):
        wrapped = context.wrap_socket(sock, server_hostname=server_name)
        try:
            wrapped.do_handshake()
        except exceptions.TLSError as error:
            code = abs(getattr(error, "err", 0) or 0)   # python-mbedtls sets err on the instance
            if code == MBEDTLS_VERIFY_FAILED:
                return HandshakeOutcome("verify-failed", error.msg or "certificate verification failed")
            if code == MBEDTLS_FATAL_ALERT:
                return HandshakeOutcome("alert", error.msg or "fatal alert from the broker")
            return HandshakeOutcome("error", f"{error.msg} (-0x{code:04X})")
        except (socket.timeout, TimeoutError):
            return HandshakeOutcome("closed", f"no answer within {timeout:g} s")
        except OSError as error:
            return HandshakeOutcome("closed", error.strerror or str(error))
        version = str(wrapped.negotiated_tls_version())
        return HandshakeOutcome("ok", version=version.rsplit(".", 1)[-1].replace("_", "."))


def _mbedtls_key(key_pem: bytes):  # type: ignore[no-untyped-def]
    key = serialization.load_pem_private_key(key_pem, password=None)
    return (pk.RSA if isinstance(key, rsa.RSAPrivateKey) else pk.ECC).from_PEM(key_pem.decode())


def _pem_certs_der(pem: bytes) -> list[bytes]:
    return [c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(pem)]


# ---------------------------------------------------------------------------------------------- OpenSSL


@contextlib.contextmanager
def _openssl_context(client: ClientIdentity | None, *, verify: bool, max_tls12: bool) -> Iterator[ssl.SSLContext]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if max_tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if verify and client is not None:
        context.load_verify_locations(cadata=client.ca_pem.decode())
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client is None or not (client.cert_pem and client.key_pem):
        yield context
        return
    with tempfile.TemporaryDirectory(prefix="gen-doctor-") as private_dir:  # mode 0700
        cert_path, key_path = os.path.join(private_dir, "cert.pem"), os.path.join(private_dir, "key.pem")
        for path, data in ((cert_path, client.cert_pem), (key_path, client.key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        context.load_cert_chain(cert_path, key_path)
        yield context


def openssl_handshake(address: Address, server_name: str, client: ClientIdentity | None, *, verify: bool = True,
                      max_tls12: bool = False, timeout: float = TIMEOUT_SECONDS) -> HandshakeOutcome:
    """A handshake with Python's ssl (OpenSSL). `verify=False` only fetches what the server presents."""
    try:
        sock = socket.create_connection(address, timeout=timeout)
    except OSError as error:
        return HandshakeOutcome("closed", error.strerror or str(error))
    with contextlib.closing(sock), _openssl_context(client, verify=verify, max_tls12=max_tls12) as context:
        try:
            with context.wrap_socket(sock, server_hostname=server_name) as wrapped:
                return HandshakeOutcome("ok", version=wrapped.version(),
                                        server_cert_der=wrapped.getpeercert(binary_form=True))
        except ssl.SSLCertVerificationError as error:
            return HandshakeOutcome("verify-failed", error.verify_message or str(error), reason=error.reason)
        except ssl.SSLError as error:
            return _classify_ssl_error(error)
        except (socket.timeout, TimeoutError):
            return HandshakeOutcome("closed", f"no answer within {timeout:g} s")
        except OSError as error:
            return HandshakeOutcome("closed", error.strerror or str(error))


def _classify_ssl_error(error: ssl.SSLError) -> HandshakeOutcome:
    reason = error.reason or ""
    message = str(error)
    if isinstance(error, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
        return HandshakeOutcome("closed", message, reason=reason or None)
    if "ALERT" in reason:
        return HandshakeOutcome("alert", message, reason=reason)
    if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST",
                  "UNKNOWN_PROTOCOL", "RECORD_LENGTH_MISMATCH", "UNEXPECTED_RECORD"):
        return HandshakeOutcome("not-tls", message, reason=reason)
    return HandshakeOutcome("error", message, reason=reason or None)


def open_tls(address: Address, server_name: str, client: ClientIdentity,
             timeout: float = TIMEOUT_SECONDS) -> ssl.SSLSocket:
    """A verified TLS connection (OpenSSL) for the MQTT steps. Raises OSError (ssl.SSLError included)."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        with _openssl_context(client, verify=True, max_tls12=False) as context:
            return context.wrap_socket(sock, server_hostname=server_name)
    except BaseException:
        sock.close()
        raise


# ---------------------------------------------------------------------------------------------- plaintext


def speaks_plaintext_mqtt(address: Address, client_id: str, timeout: float = TIMEOUT_SECONDS) -> bool:
    """Whether the port answers a plaintext MQTT CONNECT (sent without any credentials) with a CONNACK."""
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(connect_packet(client_id, keepalive=10))
            reply = sock.recv(4)
    except OSError:
        return False
    return len(reply) >= 2 and reply[0] == CONNACK << 4 and reply[1] == 2
