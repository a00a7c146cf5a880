"""Certificate profiles: what every key, CA, broker cert, device cert and CRL of a project looks like.

Pure functions over `cryptography` objects; no files, no clock (callers pass `now`). `generator.pki.store`
keeps the results on disk. Everything that decides what a TLS stack will accept lives here, in one place:

- Root CA: CN "<project> Root CA", basicConstraints CA:TRUE pathlen 1 (critical), keyUsage keyCertSign +
  cRLSign (critical), SKI. What devices trust.
- Issuing CA (intermediate): CA:TRUE pathlen 0 (critical), keyCertSign + cRLSign (critical), SKI + AKI.
  Signs the broker cert, every client/device cert and the CRL.
- Broker: CN = first broker name; SAN = every DNS name, every IP as an iPAddress entry *and again as a dNSName
  string* (mbedTLS < 3.5, i.e. Arduino-ESP32 2.0.x, ignores iPAddress SANs and ignores the CN once a SAN
  exists; OpenSSL and Python match IPs only against iPAddress entries). EKU serverAuth.
- Device: CN = device id, O = project, SAN URI `urn:dev:<id>`, EKU clientAuth.
- Client (e.g. "backend"): CN = name, O = project, SAN URI `urn:client:<name>`, EKU clientAuth.
- Leaves: basicConstraints CA:FALSE (critical), keyUsage digitalSignature (+ keyEncipherment for RSA)
  (critical), SKI + AKI, validity clamped to the issuing CA's.
- Serials: `x509.random_serial_number()` (positive, at most 159 bits). Signatures: SHA-256.
- Keys: "ec-p256" (default, cheap ESP32 handshakes) or "rsa-2048" (the ESP32 DS peripheral signs RSA only).

Public API:
    KEY_TYPES; generate_key(key_type); key_type_of(key); private_key_pem(key); load_private_key_pem(data, what)
    CertificateAuthority(cert, key)
    build_root_ca(key, *, project, validity_days, now) -> x509.Certificate
    build_issuing_ca(key, *, root, project, validity_days, now) -> x509.Certificate
    broker_subject_alt_names(names) -> x509.SubjectAlternativeName;  leaf_subject_text(common_name, project)
    issue_broker_cert(public_key, names, *, issuer, validity_days, now, project) -> x509.Certificate
    issue_device_cert(public_key, device_id, *, issuer, validity_days, now, project) -> x509.Certificate
    issue_client_cert(public_key, name, *, issuer, validity_days, now, project) -> x509.Certificate
    Revocation(serial, revoked_at, reason); build_crl(revocations, *, issuer, crl_number, now, validity_days)
    check_identity_name(name, what); parse_broker_name(name)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Iterable, Sequence, Union

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from generator.core.errors import UserError
from generator.spec.contract import KEY_TYPES

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]
PublicKey = Union[ec.EllipticCurvePublicKey, rsa.RSAPublicKey]
IpAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

# Device ids and client names become a CN, a Mosquitto username (no '+', '#', '/'), an ACL %u level and a
# file name, so they stay within this alphabet.
_IDENTITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_NOT_BEFORE_SKEW = dt.timedelta(minutes=5)  # tolerate a broker clock slightly behind ours


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate with the key that signs for it."""

    cert: x509.Certificate
    key: PrivateKey

    @cached_property
    def authority_key_id(self) -> x509.AuthorityKeyIdentifier:
        """The AKI of everything this CA signs (computed once: bulk issuing stays cheap)."""
        return _authority_key_id(self.cert)

    @cached_property
    def leaf_profiles(self) -> dict:
        """Memo of `_leaf_profile` builders for this CA (a cache, not state: same inputs, same builder)."""
        return {}


@dataclass(frozen=True)
class Revocation:
    serial: int
    revoked_at: dt.datetime
    reason: x509.ReasonFlags = x509.ReasonFlags.unspecified


# ---------------------------------------------------------------------------------------------------- keys


def generate_key(key_type: str) -> PrivateKey:
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise UserError(f"unknown key type {key_type!r}", hint=f"use one of: {', '.join(KEY_TYPES)}")


def key_type_of(key: PrivateKey | PublicKey) -> str:
    """Our name for a key's type ("ec-p256", "rsa-2048"), or a plain description of a key we do not issue."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ec-p256" if isinstance(key.curve, ec.SECP256R1) else f"ec-{key.curve.name}"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"rsa-{key.key_size}"
    return type(key).__name__


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (Mosquitto and the ESP32 cannot read encrypted keys)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_private_key_pem(data: bytes, what: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise UserError(f"{what} is encrypted; leaf keys must be unencrypted PKCS#8 PEM",
                        hint="restore the unencrypted key, or issue a new one with `gen pki renew SPEC ID --new-key`")
    except (ValueError, UnsupportedAlgorithm):
        raise UserError(f"{what} is not a readable private key (corrupt or not PEM)",
                        hint="restore it from a backup, or issue a new key with `gen pki renew SPEC ID --new-key`")
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise UserError(f"{what} holds a {type(key).__name__}, not an EC or RSA key")
    return key


# ---------------------------------------------------------------------------------------------------- names


def check_identity_name(name: str, what: str) -> str:
    """A device id or client name, safe as CN, Mosquitto username, ACL level and file name."""
    if not isinstance(name, str) or not _IDENTITY_NAME.fullmatch(name):
        raise UserError(
            f"{what} {name!r} cannot be used as a certificate name",
            hint="use 1-64 characters from A-Z a-z 0-9 . _ - , starting with a letter or digit",
        )
    return name


def parse_broker_name(name: str) -> IpAddress | str:
    """An IP address, or a DNS name (a leading `*.` wildcard label is allowed)."""
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    labels = name.rstrip(".").split(".")
    if labels and labels[0] == "*":
        labels = labels[1:]
    if not name or len(name) > 253 or not labels or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise UserError(f"broker name {name!r} is neither an IP address nor a DNS name",
                        hint="use a host name like mqtt.example.com or an address like 192.168.1.10")
    return name.rstrip(".")


def broker_subject_alt_names(names: Sequence[str]) -> x509.SubjectAlternativeName:
    """Every DNS name; every IP as an iPAddress entry and again as a dNSName string (see module docstring)."""
    entries: list[x509.GeneralName] = []
    for name in names:
        parsed = parse_broker_name(name)
        if isinstance(parsed, str):
            entries.append(x509.DNSName(parsed))
        else:
            entries.append(x509.IPAddress(parsed))
            entries.append(x509.DNSName(name))          # the string a device dials, as written in the spec
            entries.append(x509.DNSName(str(parsed)))   # and its canonical form
    unique: list[x509.GeneralName] = []
    for entry in entries:
        if entry not in unique:
            unique.append(entry)
    return x509.SubjectAlternativeName(unique)


def leaf_subject_text(common_name: str, project: str) -> str:
    """`cert.subject.rfc4514_string()` of a device/client cert, without parsing the cert (indexing 10,000 certs).
    Identity names need no RFC 4514 escaping (see check_identity_name); the project part is escaped once."""
    return f"{_organization_text(project[:64])},CN={common_name}" if project else f"CN={common_name}"


@lru_cache(maxsize=8)
def _organization_text(project: str) -> str:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, project)]).rfc4514_string()


def _name(common_name: str, project: str) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]
    if project:
        attributes.append(_organization(project[:64]))
    return x509.Name(attributes)


@lru_cache(maxsize=8)
def _organization(project: str) -> x509.NameAttribute:
    return x509.NameAttribute(NameOID.ORGANIZATION_NAME, project)


# ---------------------------------------------------------------------------------------------------- CAs


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                         encipher_only=False, decipher_only=False)


def _start(now: dt.datetime) -> dt.datetime:
    return now.replace(microsecond=0) - _NOT_BEFORE_SKEW


def build_root_ca(key: PrivateKey, *, project: str, validity_days: int, now: dt.datetime) -> x509.Certificate:
    name = _name(f"{project} Root CA", project)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_start(now))
        .not_valid_after(_start(now) + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def build_issuing_ca(key: PrivateKey, *, root: CertificateAuthority, project: str, validity_days: int,
                     now: dt.datetime) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(f"{project} Issuing CA", project))
        .issuer_name(root.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_start(now))
        .not_valid_after(min(_start(now) + dt.timedelta(days=validity_days), root.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(root.authority_key_id, critical=False)
        .sign(root.key, hashes.SHA256())
    )


def _authority_key_id(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- leaves


@lru_cache(maxsize=2)
def _leaf_key_usage_for(rsa_key: bool) -> x509.KeyUsage:
    """digitalSignature, plus keyEncipherment for RSA (RSA key exchange in TLS 1.2)."""
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=rsa_key,
                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                         encipher_only=False, decipher_only=False)


_LEAF_CONSTRAINTS = x509.BasicConstraints(ca=False, path_length=None)
_EXTENDED_USAGES = {usage: x509.ExtendedKeyUsage([usage])
                    for usage in (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)}


def _issue_leaf(public_key: PublicKey, subject: x509.Name, san: x509.SubjectAlternativeName,
                usage: x509.ObjectIdentifier, *, issuer: CertificateAuthority, validity_days: int,
                now: dt.datetime) -> x509.Certificate:
    if validity_days < 1:
        raise UserError(f"certificate validity must be at least 1 day, not {validity_days}")
    not_after = min(_start(now) + dt.timedelta(days=validity_days), issuer.cert.not_valid_after_utc)
    return (
        _leaf_profile(issuer, usage, isinstance(public_key, rsa.RSAPublicKey), _start(now), not_after)
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .add_extension(san, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )


def _leaf_profile(issuer: CertificateAuthority, usage: x509.ObjectIdentifier, rsa_key: bool,
                  not_before: dt.datetime, not_after: dt.datetime) -> x509.CertificateBuilder:
    """What every leaf of one kind, issuer and validity shares: issuer, validity, basicConstraints CA:FALSE
    (critical), keyUsage (critical), EKU, AKI. Builders are immutable, so one serves a whole batch."""
    key = (usage, rsa_key, not_before, not_after)
    cache = issuer.leaf_profiles
    builder = cache.get(key)
    if builder is None:
        if len(cache) > 16:
            cache.clear()
        builder = cache[key] = (
            x509.CertificateBuilder()
            .issuer_name(issuer.cert.subject)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(_LEAF_CONSTRAINTS, critical=True)
            .add_extension(_leaf_key_usage_for(rsa_key), critical=True)
            .add_extension(_EXTENDED_USAGES[usage], critical=False)
            .add_extension(issuer.authority_key_id, critical=False)
        )
    return builder


def issue_broker_cert(public_key: PublicKey, names: Sequence[str], *, issuer: CertificateAuthority,
                      validity_days: int, now: dt.datetime, project: str) -> x509.Certificate:
    if not names:
        raise UserError("the broker needs at least one name (host name or IP address)")
    return _issue_leaf(public_key, _name(names[0], project), broker_subject_alt_names(names),
                       ExtendedKeyUsageOID.SERVER_AUTH, issuer=issuer, validity_days=validity_days, now=now)


def issue_device_cert(public_key: PublicKey, device_id: str, *, issuer: CertificateAuthority,
                      validity_days: int, now: dt.datetime, project: str) -> x509.Certificate:
    check_identity_name(device_id, "device id")
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"urn:dev:{device_id}")])
    return _issue_leaf(public_key, _name(device_id, project), san, ExtendedKeyUsageOID.CLIENT_AUTH,
                       issuer=issuer, validity_days=validity_days, now=now)


def issue_client_cert(public_key: PublicKey, name: str, *, issuer: CertificateAuthority, validity_days: int,
                      now: dt.datetime, project: str) -> x509.Certificate:
    check_identity_name(name, "client name")
    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"urn:client:{name}")])
    return _issue_leaf(public_key, _name(name, project), san, ExtendedKeyUsageOID.CLIENT_AUTH,
                       issuer=issuer, validity_days=validity_days, now=now)


def broker_names_of(cert: x509.Certificate) -> tuple[str, tuple[x509.GeneralName, ...]]:
    """(CN, SAN entries) of a broker cert, to tell whether the spec's broker names changed."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san = tuple(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        san = ()
    return (str(cn[0].value) if cn else "", san)


# ---------------------------------------------------------------------------------------------------- CRL

REVOCATION_REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key-compromise": x509.ReasonFlags.key_compromise,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
    "affiliation-changed": x509.ReasonFlags.affiliation_changed,
}


def build_crl(revocations: Iterable[Revocation], *, issuer: CertificateAuthority, crl_number: int,
              now: dt.datetime, validity_days: int) -> x509.CertificateRevocationList:
    """The issuing CA's CRL. Mosquitto rejects every client once it is past nextUpdate, so callers re-sign
    it well before (see `PkiStore.crl_pem`)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(_start(now))
        .next_update(_start(now) + dt.timedelta(days=validity_days))
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(issuer.authority_key_id, critical=False)
    )
    for revocation in sorted(revocations, key=lambda r: r.serial):
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(revocation.serial)
            .revocation_date(revocation.revoked_at.replace(microsecond=0))
        )
        if revocation.reason != x509.ReasonFlags.unspecified:
            entry = entry.add_extension(x509.CRLReason(revocation.reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(issuer.key, hashes.SHA256())
