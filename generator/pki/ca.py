"""The PKI's two CAs: created once (root, then issuing), or imported from an existing CA; their keys in the clear
(0600) or, with a passphrase, encrypted (PKCS#12, PBES2 AES-256-CBC, PBKDF2-SHA256 600,000 rounds), and every key
checked against its certificate whenever it is read."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from generator.core.errors import UserError
from generator.core.files import ensure_dir, write_atomic
from generator.pki import profiles
from generator.pki.index import INDEX_VERSION, entry_for, index_bytes
from generator.pki.layout import (
    PRIVATE_DIR_MODE,
    PUBLIC_MODE,
    SECRET_MODE,
    PkiLayout,
    parse_key,
    read_or_none,
    read_required,
)
from generator.pki.x509_facts import chains_to, fingerprint, is_ca, issued_by, key_matches, pem_of

CA_KEY_KDF_ROUNDS = 600_000     # PBKDF2-SHA256 rounds protecting an encrypted CA key
CRL_VALIDITY_DAYS = 30          # Mosquitto locks every client out past nextUpdate ...
CRL_RESIGN_FRACTION = 0.5       # ... so it is re-signed once half of that has passed

def crl_due(crl: x509.CertificateRevocationList) -> dt.datetime | None:
    """When a CRL must be signed again (before Mosquitto refuses every client at its nextUpdate), or None when it
    has no nextUpdate."""
    if crl.next_update_utc is None:
        return None
    return crl.last_update_utc + (crl.next_update_utc - crl.last_update_utc) * CRL_RESIGN_FRACTION


def clock_acts_at(layout: PkiLayout) -> dt.datetime:
    """The first moment the PKI would act on the clock alone, with nothing else changed: the CRL falls due for
    re-signing, or the root CA, the issuing CA or the broker's certificate expires. Now, when any is unreadable."""
    now = dt.datetime.now(dt.timezone.utc)
    try:
        moments = [x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc
                   for path in (layout.ca_cert, layout.issuing_cert, layout.cert_path("broker", "broker"))]
        due = crl_due(x509.load_pem_x509_crl(layout.crl.read_bytes()))
    except (OSError, ValueError):
        return now
    return min([*moments, due or now])


log = logging.getLogger("generator.pki.store")   # what the PKI does that the user should know (the CLI prints it)


class CaPassphrase:
    """The passphrase that protects the CA keys: given (the API, tests), or read from an environment variable (the
    spec's pki.ca_passphrase_env) only when a CA key must be decrypted to sign or encrypted, and then once."""

    def __init__(self, *, variable: str | None = None, value: bytes | None = None,
                 environ: Mapping[str, str] | None = None):
        if value is not None and not value:
            raise UserError("the CA passphrase is empty", hint="set the passphrase variable to a non-empty value")
        self.variable = variable
        self._value = value
        self._environ = os.environ if environ is None else environ

    @property
    def given(self) -> bool:
        """Whether the value is at hand without reading anything (then it is checked at once, on open)."""
        return self._value is not None

    def get(self, purpose: str) -> bytes:
        """The passphrase, to `purpose` (said to the user: "issue a certificate for device x")."""
        if self._value is None:
            assert self.variable, "a CaPassphrase has a value or a variable"
            raw = self._environ.get(self.variable)
            if raw is None:
                raise UserError(f"gen must {purpose}, and the CA keys are protected by the passphrase in "
                                f"${self.variable}, but {self.variable} is not set",
                                hint=f"export {self.variable}=<passphrase> (keep it somewhere safe), then run again")
            if not raw:
                raise UserError(f"${self.variable} is empty", hint="set it to the CA passphrase")
            log.info(f"the CA keys are encrypted: reading their passphrase from ${self.variable} to {purpose}")
            self._value = raw.encode()
        return self._value

    def __repr__(self) -> str:
        return f"CaPassphrase(variable={self.variable!r})"


def create_ca(layout: PkiLayout, *, project: str, key_type: str, validity_days: int,
              passphrase: CaPassphrase | None, now: dt.datetime) -> None:
    refuse_leftovers(layout)
    secret = passphrase.get("create the CA (its keys are encrypted with the passphrase)") if passphrase else None
    root_key = profiles.generate_key(key_type)
    root = profiles.CertificateAuthority(profiles.build_root_ca(root_key, project=project, validity_days=validity_days,
                                                      now=now), root_key)
    issuing_key = profiles.generate_key(key_type)
    issuing = profiles.CertificateAuthority(profiles.build_issuing_ca(issuing_key, root=root, project=project,
                                                            validity_days=validity_days, now=now), issuing_key)
    ca: dict[str, Any] = {"root_sha256": fingerprint(root.cert), "issuing_sha256": fingerprint(issuing.cert)}
    ensure_dir(layout.private, PRIVATE_DIR_MODE)
    ca.update(write_ca_key(layout, root_key, "root", secret))
    ca.update(write_ca_key(layout, issuing_key, "issuing", secret))
    write_ca_files(layout, project=project, root=root.cert, issuing=issuing, chain=(), ca=ca,
                   key_types=(key_type, key_type), now=now)


def refuse_leftovers(layout: PkiLayout) -> None:
    leftovers = [p for p in (layout.issuing_cert, layout.index, layout.issuing_key, layout.issuing_key_encrypted,
                             layout.cert_path("broker", "-"), layout.root / "devices", layout.root / "clients")
                 if p.exists()]
    if leftovers:
        raise UserError(
            f"{layout.rel(layout.ca_cert)} is missing, but {layout.rel(leftovers[0])} exists: this PKI was already "
            "in use", hint="restore ca.pem from a backup. Never re-create the CA: every device trusts it")


def write_ca_key(layout: PkiLayout, key: profiles.PrivateKey, what: str, passphrase: bytes | None) -> dict[str, str]:
    """Writes a CA key, encrypted when there is a passphrase; returns what the index records of it."""
    if passphrase is None:
        write_atomic(layout.root_key_plain if what == "root" else layout.issuing_key, profiles.private_key_pem(key),
                          mode=SECRET_MODE, durable=True)
        return {}
    path = layout.root_key_encrypted if what == "root" else layout.issuing_key_encrypted
    write_atomic(path, encrypt_ca_key(key, passphrase, f"{what}-ca"), mode=SECRET_MODE, durable=True)
    return {f"{what}_key_p12_sha256": file_sha256(path)}


def write_ca_files(layout: PkiLayout, *, project: str, root: x509.Certificate, issuing: profiles.CertificateAuthority,
                   chain: tuple[x509.Certificate, ...], ca: dict[str, Any], key_types: tuple[str, str],
                   now: dt.datetime) -> None:
    """The public half of a new PKI: issuing CA (+ chain), an empty CRL, the index, and ca.pem last (its presence
    is what says "this PKI exists")."""
    write_atomic(layout.issuing_cert, pem_of(issuing.cert), mode=PUBLIC_MODE, durable=True)
    if chain:
        write_atomic(layout.chain, b"".join(pem_of(cert) for cert in chain), mode=PUBLIC_MODE, durable=True)
    crl = profiles.build_crl([], issuer=issuing, crl_number=1, now=now, validity_days=CRL_VALIDITY_DAYS)
    write_atomic(layout.crl, crl.public_bytes(serialization.Encoding.PEM), mode=PUBLIC_MODE, durable=True)
    entries = [entry_for(root, "root-ca", "root-ca", key_types[0])]
    if issuing.cert != root:
        entries.append(entry_for(issuing.cert, "issuing-ca", "issuing-ca", key_types[1]))
    document = {"version": INDEX_VERSION, "project": project, "ca": ca, "crl_number": 1,
                "certs": [entry.to_json() for entry in entries]}
    write_atomic(layout.index, index_bytes(document), mode=PUBLIC_MODE, durable=True)
    write_atomic(layout.ca_cert, pem_of(root), mode=PUBLIC_MODE, durable=True)


IMPORT_HINT = ("give a CA certificate (basicConstraints CA:TRUE, keyUsage keyCertSign and cRLSign) with its own key, "
                "and --chain with the certificates above it up to the self-signed root")


def parse_import_certs(data: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            raise UserError(f"{what} is not a PEM or DER certificate", hint=IMPORT_HINT) from None
    return certs


def load_import_key(data: bytes, what: str, passphrase: CaPassphrase | None) -> profiles.PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:   # encrypted
        if passphrase is None:
            raise UserError(f"{what} is encrypted", hint="set pki.ca_passphrase_env in the spec to the variable that "
                                                        "holds its passphrase (gen keeps it encrypted with it)")
        try:
            key = serialization.load_pem_private_key(data, password=passphrase.get(f"read {what}"))
        except ValueError:
            raise UserError(f"{what} does not open with the passphrase in ${passphrase.variable}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise UserError(f"{what} is not a readable PEM private key") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise UserError(f"{what} is a {type(key).__name__}; gen issues from EC and RSA keys only")
    return key


def import_problem(cert: x509.Certificate, key: profiles.PrivateKey, chain: list[x509.Certificate],
                    now: dt.datetime) -> str | None:
    """Why a certificate cannot be the issuing CA of a PKI, or None."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "it has no basicConstraints, so it is not a CA"
    if not constraints.ca:
        return "it is not a CA certificate (basicConstraints CA:FALSE)"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            return "its keyUsage lacks keyCertSign: it may not sign certificates"
        if not usage.crl_sign:
            return "its keyUsage lacks cRLSign: it cannot sign the CRL Mosquitto needs for client certificates"
    except x509.ExtensionNotFound:
        pass
    if not key_matches(key, cert):
        return "the key does not belong to it"
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        return (f"it is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
                f"to {cert.not_valid_after_utc:%Y-%m-%d})")
    if not chain and not issued_by(cert, cert):
        return "it is not self-signed, and no --chain up to its root was given"
    if chain and not issued_by(chain[-1], chain[-1]):
        return "the last certificate of --chain is not a self-signed root"
    if chain and not chains_to(cert, tuple(chain[:-1]), chain[-1]):
        return "--chain does not lead from it to the root (each certificate must sign the one before)"
    for ca in chain:
        if not is_ca(ca):
            return f"{ca.subject.rfc4514_string()} in --chain is not a CA"
    return None


def encrypt_ca_key(key: profiles.PrivateKey, passphrase: bytes, name: str) -> bytes:
    """PKCS#12 with PBES2 (AES-256-CBC, PBKDF2-SHA256, CA_KEY_KDF_ROUNDS) and an HMAC-SHA256 MAC."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(CA_KEY_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase)
    )
    return pkcs12.serialize_key_and_certificates(name.encode(), key, None, None, encryption)  # type: ignore[arg-type]


def decrypt_ca_key(layout: PkiLayout, path: Path, cert: x509.Certificate, passphrase: CaPassphrase,
                    purpose: str) -> profiles.PrivateKey:
    """An encrypted CA key, checked against its certificate."""
    data = read_required(layout, path, "an encrypted CA key", "restore it from a backup")
    secret = passphrase.get(purpose)
    try:
        key, _, _ = pkcs12.load_key_and_certificates(data, secret)
    except ValueError:
        raise UserError(f"wrong passphrase for the CA key {layout.rel(path)}" + (
            f" (from ${passphrase.variable})" if passphrase.variable else ""),
            hint="set the passphrase variable named in the spec (pki.ca_passphrase_env) to the passphrase the PKI "
                 "was created with") from None
    if key is None or not key_matches(key, cert):  # type: ignore[arg-type]
        raise UserError(f"{layout.rel(path)} does not belong to the CA certificate it stands beside",
                        hint="restore both from the same backup")
    return key  # type: ignore[return-value]


def checked_clear_key(layout: PkiLayout, path: Path, cert: x509.Certificate, what: str) -> profiles.PrivateKey | None:
    """A CA key stored in the clear, checked against its certificate; None when there is no such file."""
    data = read_or_none(path)
    if data is None:
        return None
    key = parse_key(layout, data, path)
    if not key_matches(key, cert):
        raise UserError(f"{layout.rel(path)} ({what}) does not belong to {cert.subject.rfc4514_string()} (the key "
                        "file was replaced or damaged)",
                        hint="restore the pki/ directory from a backup. Never re-create the CA: every device trusts it")
    return key


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
