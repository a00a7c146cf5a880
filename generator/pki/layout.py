"""Where each file of a PKI directory lives (the one place these names are spelled), the modes its files and folders
get, and how files are read from it (messages name them relative to the spec's folder)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from generator.core.errors import UserError
from generator.core.files import PRIVATE_DIR_MODE, PUBLIC_DIR_MODE, PUBLIC_MODE, SECRET_MODE
from generator.pki import profiles
from generator.pki.x509_facts import parse_cert_or_none
from generator.spec.contract import KEY_TYPES

__all__ = ["PkiLayout", "ROLE_DIRS", "PUBLIC_MODE", "SECRET_MODE", "PUBLIC_DIR_MODE", "PRIVATE_DIR_MODE"]


@dataclass(frozen=True)
class PkiLayout:
    """Where each file of a PKI directory lives (the one place these names are spelled)."""

    root: Path

    @property
    def ca_cert(self) -> Path: return self.root / "ca.pem"
    @property
    def issuing_cert(self) -> Path: return self.root / "issuing-ca.pem"
    @property
    def crl(self) -> Path: return self.root / "crl.pem"
    @property
    def index(self) -> Path: return self.root / "index.json"
    @property
    def lock(self) -> Path: return self.root / ".lock"
    @property
    def private(self) -> Path: return self.root / "private"
    @property
    def root_key_plain(self) -> Path: return self.private / "ca-key.pem"
    @property
    def root_key_encrypted(self) -> Path: return self.private / "ca-key.p12"
    @property
    def issuing_key(self) -> Path: return self.private / "issuing-ca-key.pem"
    @property
    def issuing_key_encrypted(self) -> Path: return self.private / "issuing-ca-key.p12"
    @property
    def chain(self) -> Path: return self.root / "chain.pem"   # an imported CA's intermediates, up to the root
    @property
    def ota_signing_key(self) -> Path: return self.private / "ota-signing-key.pem"   # signs OTA images (generator.ota)
    @property
    def ota_signing_public(self) -> Path: return self.root / "ota-signing.pem"       # its public half, for git and CI

    def cert_path(self, role: str, name: str) -> Path:
        if role == "broker":
            return self.root / "broker.pem"
        if role == "root-ca":
            return self.ca_cert
        if role == "issuing-ca":
            return self.issuing_cert
        return Path(self.leaf_files(role, name)[1])

    def leaf_files(self, role: str, name: str) -> tuple[str, str]:
        """(key, cert) of a device or client, as strings: what a batch of thousands writes."""
        return f"{self.root}/private/{ROLE_DIRS[role]}/{name}-key.pem", f"{self.root}/{ROLE_DIRS[role]}/{name}.pem"

    def key_path(self, role: str, name: str) -> Path:
        if role == "broker":
            return self.private / "broker-key.pem"
        if role == "root-ca":
            return self.root_key_encrypted if self.root_key_encrypted.exists() else self.root_key_plain
        if role == "issuing-ca":
            return self.issuing_key
        return Path(self.leaf_files(role, name)[0])

    def password_path(self, username: str) -> Path:
        return self.private / "passwords" / f"{username}.txt"

    def bootstrap_secret_path(self, device_id: str) -> Path:
        """The first-boot password of a device that makes its own key (it also lies in the device's settings)."""
        return self.private / "bootstrap" / f"{device_id}.txt"

    def rel(self, path: Path) -> str:
        """How messages name a file: relative to the PKI dir's parent (usually the spec dir)."""
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)


ROLE_DIRS = {"device": "devices", "client": "clients"}


def secure_dirs(layout: PkiLayout) -> None:
    """Private folders exactly 0700; public ones no looser than 0755 (a PKI made under a lax umask is repaired)."""
    for directory in (layout.private, *(layout.private / d for d in (*ROLE_DIRS.values(), "passwords"))):
        if directory.is_dir() and (directory.stat().st_mode & 0o777) != PRIVATE_DIR_MODE:
            os.chmod(directory, PRIVATE_DIR_MODE)
    for directory in (layout.root, *(layout.root / d for d in ROLE_DIRS.values())):
        if directory.is_dir() and directory.stat().st_mode & 0o022:
            os.chmod(directory, PUBLIC_DIR_MODE)


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def read_required(layout: PkiLayout, path: Path, what: str, hint: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} is missing: {layout.rel(path)}", hint=hint)
    except OSError as error:
        raise UserError(f"cannot read {what} {layout.rel(path)}: {error.strerror}",
                        hint="check the file's owner and permissions")


def read_cert_or_none(path: Path) -> x509.Certificate | None:
    return parse_cert_or_none(read_or_none(path))


def load_cert_file(layout: PkiLayout, path: Path, what: str, hint: str) -> x509.Certificate:
    data = read_required(layout, path, f"the {what}", hint)
    cert = parse_cert_or_none(data)
    if cert is None:
        raise UserError(f"{layout.rel(path)} is not a readable PEM certificate (the {what} is corrupt)", hint=hint)
    return cert


def load_key_file(layout: PkiLayout, path: Path, what: str, hint: str) -> profiles.PrivateKey:
    data = read_required(layout, path, f"the {what}", hint)
    return parse_key(layout, data, path)


def parse_key(layout: PkiLayout, data: bytes, path: Path) -> profiles.PrivateKey:
    """A leaf or CA key; the file is named (relative path built) only when something is wrong with it.
    RSA's costly consistency check (~50 ms a key) is skipped: these are keys we generated, and every caller
    compares the key's public half with its cert, which catches a damaged or swapped key."""
    try:
        key = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
        if isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)) and profiles.key_type_of(key) in KEY_TYPES:
            return key
    except Exception:
        pass
    return profiles.load_private_key_pem(data, layout.rel(path))  # raises the UserError that says what is wrong
