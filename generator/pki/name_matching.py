"""Which names a certificate answers to, as each TLS stack decides it: mbedTLS 2.28 (the ESP32's: dNSName entries only,
even for an IP; the CN only without a SAN) and OpenSSL (an IP matches iPAddress entries, a host name dNSName
entries). The one place gen matches a name against a certificate: the doctor, broker trust brought from elsewhere
and `gen inspect` ask it."""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.x509.oid import NameOID


def cert_names(cert: x509.Certificate) -> list[str]:
    """What a cert can be matched against, for messages: `DNS:x`, `IP:y`, and `CN=z`."""
    names = [f"DNS:{n}" for n in san_values(cert, x509.DNSName)]
    names += [f"IP:{n}" for n in san_values(cert, x509.IPAddress)]
    names += [f"CN={cn}" for cn in common_names(cert)]
    return names


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def san_values(cert: x509.Certificate, kind: type) -> list[str]:
    san = _san(cert)
    return [str(value) for value in san.get_values_for_type(kind)] if san is not None else []  # type: ignore[arg-type]


def common_names(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def _dns_pattern_matches(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        return "." in name and name.split(".", 1)[1] == pattern[2:]
    return pattern == name


def mbedtls_accepts_name(cert: x509.Certificate, name: str) -> bool:
    """mbedTLS 2.28 (`x509_crt_verify_name`): with a SAN extension only its dNSName entries count (iPAddress
    entries are skipped, even for an IP), and the CN is ignored; without one, the CN is compared."""
    if _san(cert) is not None:
        return any(_dns_pattern_matches(pattern, name) for pattern in san_values(cert, x509.DNSName))
    return any(_dns_pattern_matches(cn, name) for cn in common_names(cert))


def openssl_accepts_name(cert: x509.Certificate, name: str) -> bool:
    """OpenSSL via Python's ssl: an IP matches iPAddress entries only; a host name matches dNSName entries (the CN
    only when the cert has no dNSName)."""
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        dns_names = san_values(cert, x509.DNSName)
        candidates = dns_names or common_names(cert)
        return any(_dns_pattern_matches(pattern, name) for pattern in candidates)
    return any(ipaddress.ip_address(value) == address for value in san_values(cert, x509.IPAddress))
