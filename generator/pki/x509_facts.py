"""Facts about certificates and keys that every part of the PKI (and the doctor, and `gen inspect`) asks: one
function each."""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from generator.pki.profiles import PrivateKey


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def pem_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def public_key_sha256(key: PrivateKey | CertificatePublicKeyTypes) -> str:
    """SHA-256 of a key's SubjectPublicKeyInfo (DER): how the index names the key a cert certifies."""
    public = key.public_key() if isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)) else key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer` signed `cert` (its name and signature)."""
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except Exception:  # InvalidSignature, or a key type that cannot sign this way
        return False


def key_matches(key: PrivateKey, cert: x509.Certificate) -> bool:
    """Whether `key` is the private half of the key `cert` certifies."""
    return key.public_key() == cert.public_key()


def unique_certs(certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    unique: list[x509.Certificate] = []
    for cert in certs:
        if cert not in unique:
            unique.append(cert)
    return unique


def parse_cert_or_none(data: bytes | None) -> x509.Certificate | None:
    if not data:
        return None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        return None


def chains_to(cert: x509.Certificate, between: Sequence[x509.Certificate], root: x509.Certificate) -> bool:
    """cert is signed by between[0], which between[1] signed, ..., the last of which the root signed (an imported
    CA's intermediates; `between` is empty for our own issuing CA)."""
    subject = cert
    for issuer in (*between, root):
        if not issued_by(subject, issuer):
            return False
        subject = issuer
    return True
