"""`gen inspect`: any PEM or DER certificate, key, CSR or CRL, explained in plain words.

Pure: bytes in, a `FileReport` out (the CLI renders it). What it tells: what the object is for (root CA,
issuing CA, broker/server cert, device/client cert, private key, CSR, CRL), subject, SAN, validity, key type,
whether it chains to the project's CA (`trust`), whether it matches a given key, and the traps the TLS stacks
in play fall into (no SAN, an IP only as iPAddress for mbedTLS < 3.5, a stale CRL, ...).

Public API:
    read_objects(data, source) -> tuple[str, list[PkiObject]]         ("PEM" | "DER", objects in file order)
    explain(data, source, *, trust=(), key=None, now) -> FileReport
    convert(data, source, to) -> tuple[bytes, bool]                    (bytes in the other encoding, is_secret)
    load_trust(data, source) -> list[x509.Certificate]
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from typing import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from generator.core.errors import UserError
from generator.pki import profiles
from generator.pki.name_matching import mbedtls_accepts_name
from generator.pki.x509_facts import issued_by

# a certificate, CSR, CRL, private key, public key, or EncryptedKey
PkiObject = object

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)


@dataclass(frozen=True)
class EncryptedKey:
    """A passphrase-protected private key: we can say what it is, not what is inside."""

    der: bytes


@dataclass(frozen=True)
class ObjectReport:
    title: str                               # plain words: "broker (server) certificate", "private key", ...
    facts: tuple[tuple[str, str], ...]       # (label, value) rows
    warnings: tuple[str, ...] = ()           # traps a TLS stack will fall into
    errors: tuple[str, ...] = ()             # what makes the file wrong for this project (exit 2)


@dataclass(frozen=True)
class FileReport:
    source: str
    encoding: str                            # "PEM" | "DER"
    objects: tuple[ObjectReport, ...]

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(e for o in self.objects for e in o.errors)


# ---------------------------------------------------------------------------------------------- reading


def read_objects(data: bytes, source: str) -> tuple[str, list[PkiObject]]:
    if b"-----BEGIN " in data:
        objects = [_parse_pem_block(label.decode(), body, source) for label, body in _PEM_BLOCK.findall(data)]
        if not objects:
            raise UserError(f"{source} has a PEM header but no complete PEM block",
                            hint="check the file is not truncated (every BEGIN needs its END line)")
        return "PEM", objects
    return "DER", [_parse_der(data, source)]


def _parse_pem_block(label: str, body: bytes, source: str) -> PkiObject:
    pem = b"-----BEGIN " + label.encode() + b"-----\n" + body + b"-----END " + label.encode() + b"-----\n"
    try:
        if label in ("CERTIFICATE", "TRUSTED CERTIFICATE"):
            return x509.load_pem_x509_certificate(pem)
        if label in ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"):
            return x509.load_pem_x509_csr(pem)
        if label == "X509 CRL":
            return x509.load_pem_x509_crl(pem)
        if label == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in body:
            return EncryptedKey(_pem_body_der(body))
        if label.endswith("PRIVATE KEY"):
            return serialization.load_pem_private_key(pem, password=None)
        if label.endswith("PUBLIC KEY"):
            return serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise UserError(f"{source}: the {label} block is not readable ({error})",
                        hint="the file is damaged or not what its header says; get a fresh copy")
    raise UserError(f"{source}: a PEM block labelled {label!r} is not a certificate, key, CSR or CRL")


def _pem_body_der(body: bytes) -> bytes:
    lines = [line for line in body.splitlines() if line and b":" not in line]
    try:
        return base64.b64decode(b"".join(lines))
    except ValueError:
        return b""


def _parse_der(data: bytes, source: str) -> PkiObject:
    loaders = (x509.load_der_x509_certificate, lambda d: serialization.load_der_private_key(d, None),
               x509.load_der_x509_csr, x509.load_der_x509_crl, serialization.load_der_public_key)
    for load in loaders:
        try:
            return load(data)
        except TypeError:  # an encrypted DER private key: password required
            return EncryptedKey(data)
        except (ValueError, UnsupportedAlgorithm):
            continue
    raise UserError(f"{source} is not a certificate, private key, CSR or CRL (PEM or DER)",
                    hint="pass a .pem/.crt/.key/.csr/.der file; PKCS#12 (.p12) bundles are not read")


def public_key_of(data: bytes, source: str):
    """The public key in a file that holds a certificate, a CSR, a private key or a public key (the first one)."""
    _, objects = read_objects(data, source)
    for obj in objects:
        if isinstance(obj, (x509.Certificate, x509.CertificateSigningRequest)):
            return obj.public_key()
        if isinstance(obj, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
            return obj.public_key()
        if isinstance(obj, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
            return obj
        if isinstance(obj, EncryptedKey):
            raise UserError(f"{source} is an encrypted private key", hint="pass its certificate instead: it names the "
                                                                           "same public key")
    raise UserError(f"{source} holds no key or certificate", hint="pass the private key, public key or certificate")


def load_trust(data: bytes, source: str) -> list[x509.Certificate]:
    _, objects = read_objects(data, source)
    certs = [o for o in objects if isinstance(o, x509.Certificate)]
    if not certs:
        raise UserError(f"{source} holds no CA certificate", hint="pass the project's spec or its pki/ca.pem")
    return certs


# ---------------------------------------------------------------------------------------------- explaining


def explain(data: bytes, source: str, *, trust: Sequence[x509.Certificate] = (), key: bytes | None = None,
            now: dt.datetime) -> FileReport:
    encoding, objects = read_objects(data, source)
    given_key = _load_given_key(key) if key is not None else None
    file_certs = [o for o in objects if isinstance(o, x509.Certificate)]
    leaf = next((o for o in objects if _has_public_key(o)), None)  # the first cert or CSR: what --key is for
    if given_key is not None and leaf is None:
        raise UserError(f"{source} holds no certificate or CSR to match --key against")
    reports = []
    for obj in objects:
        if isinstance(obj, x509.Certificate):
            report = _explain_cert(obj, now)
            if trust:
                report = _with_chain(report, obj, file_certs, trust)
        elif isinstance(obj, x509.CertificateSigningRequest):
            report = _explain_csr(obj)
        elif isinstance(obj, x509.CertificateRevocationList):
            report = _explain_crl(obj, now, trust)
        elif isinstance(obj, EncryptedKey):
            report = ObjectReport("private key, encrypted (needs its passphrase)", (
                ("what", "a passphrase-protected private key; Mosquitto and ESP32 firmware cannot use it as is"),))
        elif isinstance(obj, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
            report = ObjectReport("private key", (("key type", _key_words(obj.public_key())),
                                                  ("public key SHA-256", _public_key_id(obj.public_key()))),
                                  warnings=("keep it secret: mode 0600, never commit it",))
        else:
            report = ObjectReport("public key", (("key type", _key_words(obj)),))  # type: ignore[arg-type]
        if given_key is not None and obj is leaf:
            report = _with_key_match(report, obj, given_key)
        reports.append(report)
    return FileReport(source, encoding, tuple(reports))


def _has_public_key(obj: PkiObject) -> bool:
    return isinstance(obj, (x509.Certificate, x509.CertificateSigningRequest))


def _load_given_key(data: bytes):
    try:
        return (serialization.load_pem_private_key(data, None) if b"-----BEGIN" in data
                else serialization.load_der_private_key(data, None))
    except TypeError:
        raise UserError("the key given with --key is encrypted", hint="pass the unencrypted key file")
    except (ValueError, UnsupportedAlgorithm):
        raise UserError("the file given with --key is not a readable private key",
                        hint="pass a PEM or DER private key, e.g. pki/private/devices/<id>-key.pem")


def _with_key_match(report: ObjectReport, obj: PkiObject, key) -> ObjectReport:
    if isinstance(obj, (x509.Certificate, x509.CertificateSigningRequest)):
        what = "certificate" if isinstance(obj, x509.Certificate) else "CSR"
        if obj.public_key() == key.public_key():
            return _add(report, facts=(("matches --key", f"yes: the key belongs to this {what}"),))
        return _add(report, facts=(("matches --key", "NO"),),
                    errors=(f"the key given with --key does not belong to this {what} "
                            "(a TLS server or client would fail with 'key values mismatch')",))
    return report


def _add(report: ObjectReport, *, facts=(), warnings=(), errors=()) -> ObjectReport:
    return ObjectReport(report.title, report.facts + tuple(facts), report.warnings + tuple(warnings),
                        report.errors + tuple(errors))


def _explain_cert(cert: x509.Certificate, now: dt.datetime) -> ObjectReport:
    ext = cert.extensions
    constraints = _ext(ext, x509.BasicConstraints)
    eku = _ext(ext, x509.ExtendedKeyUsage)
    san = _ext(ext, x509.SubjectAlternativeName)
    usages = {u for u in eku} if eku is not None else set()
    self_signed = cert.issuer == cert.subject and issued_by(cert, cert)
    warnings: list[str] = []
    if constraints is not None and constraints.ca:
        title = "root CA certificate (self-signed)" if self_signed else "intermediate (issuing) CA certificate"
    elif ExtendedKeyUsageOID.SERVER_AUTH in usages and ExtendedKeyUsageOID.CLIENT_AUTH in usages:
        title = "server and client certificate"
    elif ExtendedKeyUsageOID.SERVER_AUTH in usages:
        title = "broker (TLS server) certificate"
    elif ExtendedKeyUsageOID.CLIENT_AUTH in usages:
        title = "device / client certificate (TLS client)"
    else:
        title = "end-entity certificate, no extended key usage"
    is_ca = constraints is not None and constraints.ca
    facts = [
        ("subject", cert.subject.rfc4514_string() or "(empty)"),
        ("issuer", cert.issuer.rfc4514_string() + (" (itself)" if self_signed else "")),
        ("serial", f"{cert.serial_number:X}"),
        ("names (SAN)", ", ".join(_general_name_words(n) for n in san) if san is not None else "none"),
        ("valid", f"{_day(cert.not_valid_before_utc)} to {_day(cert.not_valid_after_utc)} "
                  f"({_days_left_words(cert.not_valid_after_utc, now)})"),
        ("key type", _key_words(cert.public_key())),
        ("signature", cert.signature_hash_algorithm.name.upper() if cert.signature_hash_algorithm else "none"),
        ("CA", "yes, may sign certificates" + (f" (path length {constraints.path_length})"
                                                 if constraints.path_length is not None else "")
         if is_ca else "no"),
        ("SHA-256", cert.fingerprint(hashes.SHA256()).hex(":")),
    ]
    if eku is not None:
        facts.insert(6, ("used for", ", ".join(_EKU_WORDS.get(u, u.dotted_string) for u in eku)))
    if cert.not_valid_after_utc < now:
        warnings.append("expired: OpenSSL (Mosquitto) rejects it, and so does gen's firmware once its clock is set")
    elif (cert.not_valid_after_utc - now).days < 30:
        warnings.append("expires within 30 days: renew it (gen pki renew SPEC ID)")
    if not is_ca:
        warnings.extend(_server_name_traps(cert, san, usages))
    return ObjectReport(title, tuple(facts), tuple(warnings))


def _server_name_traps(cert: x509.Certificate, san, usages) -> list[str]:
    if usages and ExtendedKeyUsageOID.SERVER_AUTH not in usages:
        return []
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if san is None:
        return [f"no subjectAltName: OpenSSL and Python reject it for every host name (the CN "
                f"{cn[0].value!r} is ignored); only mbedTLS compares the CN" if cn else "no subjectAltName"]
    traps = []
    for entry in san:
        if isinstance(entry, x509.IPAddress) and not mbedtls_accepts_name(cert, str(entry.value)):
            traps.append(f"IP {entry.value} is only an iPAddress entry: mbedTLS < 3.5 (Arduino-ESP32 2.0.x) "
                         f"rejects this broker when dialled as {entry.value}; add it as a DNS name too")
    return traps


def _with_chain(report: ObjectReport, cert: x509.Certificate, file_certs: Sequence[x509.Certificate],
                trust: Sequence[x509.Certificate]) -> ObjectReport:
    """Walks issuer links (checking each signature) as far as they go; it chains to the project if a cert of
    `trust` (the project's root or issuing CA) is on the way. Certs in the same file (a chain) fill gaps."""
    pool = list(trust) + [c for c in file_certs if c is not cert]
    path = [cert]
    while len(path) < 8 and not (path[-1].issuer == path[-1].subject and issued_by(path[-1], path[-1])):
        current = path[-1]
        issuer = next((c for c in pool if c.subject == current.issuer and c != current
                       and issued_by(current, c)), None)
        if issuer is None:
            break
        path.append(issuer)
    if any(c == anchor for c in path for anchor in trust):
        return _add(report, facts=(("chains to project CA", "yes: " + " <- ".join(_short(c) for c in path)),))
    return _add(report, facts=(("chains to project CA", "NO"),), errors=(
        f"{_short(cert)} does not chain to this project's CA: it was issued by "
        f"{path[-1].issuer.rfc4514_string()!r}, which is not this project's CA",))


def _explain_csr(csr: x509.CertificateSigningRequest) -> ObjectReport:
    san = None
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    facts = (
        ("subject", csr.subject.rfc4514_string() or "(empty)"),
        ("names (SAN)", ", ".join(_general_name_words(n) for n in san) if san is not None else "none requested"),
        ("key type", _key_words(csr.public_key())),
        ("self-signature", "valid" if csr.is_signature_valid else "INVALID"),
    )
    errors = () if csr.is_signature_valid else ("the CSR's self-signature is invalid (damaged or forged)",)
    return ObjectReport("certificate signing request (CSR)", facts, errors=errors)


def _explain_crl(crl: x509.CertificateRevocationList, now: dt.datetime,
                 trust: Sequence[x509.Certificate]) -> ObjectReport:
    next_update = crl.next_update_utc
    facts = [
        ("issuer", crl.issuer.rfc4514_string()),
        ("signed", _day(crl.last_update_utc)),
        ("next update", f"{_day(next_update)} ({_days_left_words(next_update, now)})" if next_update else "none"),
        ("revoked", ", ".join(f"{r.serial_number:X}" for r in crl) or "nothing"),
    ]
    warnings, errors = [], []
    if next_update is not None and next_update < now:
        warnings.append("past its next update: Mosquitto rejects EVERY client cert until a fresh CRL is installed "
                        "(gen generate re-signs it)")
    if trust:
        signer = next((c for c in trust if c.subject == crl.issuer), None)
        if signer is None or not crl.is_signature_valid(signer.public_key()):  # type: ignore[arg-type]
            errors.append("this CRL was not signed by this project's CA")
        else:
            facts.append(("signed by project CA", "yes"))
    return ObjectReport("certificate revocation list (CRL)", tuple(facts), tuple(warnings), tuple(errors))


# ---------------------------------------------------------------------------------------------- conversion


def convert(data: bytes, source: str, to: str) -> tuple[bytes, bool]:
    """The single object in `data` re-encoded as "der" or "pem" (a PEM chain may hold several certs).
    Returns (bytes, is_secret)."""
    if to not in ("der", "pem"):
        raise UserError(f"cannot convert to {to!r}", hint="use --to der or --to pem")
    _, objects = read_objects(data, source)
    if to == "der" and len(objects) != 1:
        raise UserError(f"{source} holds {len(objects)} objects; a DER file holds exactly one",
                        hint="split the PEM file first, or convert to pem")
    encoding = serialization.Encoding.DER if to == "der" else serialization.Encoding.PEM
    out, secret = b"", False
    for obj in objects:
        if isinstance(obj, EncryptedKey):
            raise UserError(f"{source} holds an encrypted key; it is converted only once decrypted")
        if isinstance(obj, (x509.Certificate, x509.CertificateSigningRequest, x509.CertificateRevocationList)):
            out += obj.public_bytes(encoding)
        elif hasattr(obj, "private_bytes"):
            out += obj.private_bytes(encoding, serialization.PrivateFormat.PKCS8,  # type: ignore[union-attr]
                                     serialization.NoEncryption())
            secret = True
        else:
            out += obj.public_bytes(encoding, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore
    return out, secret


# ---------------------------------------------------------------------------------------------- words

_EKU_WORDS = {
    ExtendedKeyUsageOID.SERVER_AUTH: "TLS server (serverAuth)",
    ExtendedKeyUsageOID.CLIENT_AUTH: "TLS client (clientAuth)",
    ExtendedKeyUsageOID.CODE_SIGNING: "code signing",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "e-mail",
}


def _ext(extensions: x509.Extensions, kind):
    try:
        return extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _general_name_words(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        try:
            ipaddress.ip_address(name.value)
            return f"DNS:{name.value} (an IP written as a DNS name, for mbedTLS < 3.5)"
        except ValueError:
            return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    return f"{type(name).__name__}:{name.value}"


def _key_words(key) -> str:
    name = profiles.key_type_of(key)
    if name == "ec-p256":
        return "ECDSA P-256 (fast ESP32 handshakes)"
    if name == "rsa-2048":
        return "RSA 2048-bit (slower ESP32 handshakes; what the DS peripheral needs)"
    return name


def _public_key_id(key) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex(":")[:47] + "..."


def _short(cert: x509.Certificate) -> str:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return repr(str(cn[0].value)) if cn else cert.subject.rfc4514_string()


def _day(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _days_left_words(moment: dt.datetime, now: dt.datetime) -> str:
    days = (moment - now).days
    if moment < now:
        return f"EXPIRED {-(moment - now).days} days ago"
    return f"{days} days left"
