"""The project's PKI directory on disk: created on first use, reused byte-identical after that.

Layout (default `<spec dir>/pki/`):

    ca.pem                      root CA cert: what devices embed and trust
    issuing-ca.pem              issuing CA: signs the broker cert, every client/device cert and the CRL
    chain.pem                   an imported CA's intermediates up to the root (only when there are any)
    broker.pem                  broker leaf + the issuing CA (+ chain) appended (Mosquitto's certfile sends the chain)
    devices/<id>.pem            device leaf
    clients/<name>.pem          other clients: "backend", "gen.doctor"
    crl.pem                     the issuing CA's CRL (always present, even empty: Mosquitto needs one per issuing CA)
    index.json                  the project it belongs to, both CA fingerprints, and every cert ever issued: serial,
                                subject, role, id, issued, not_after, status, key_type, key_sha256 (no secrets)
    private/ca-key.pem          root key, unencrypted PKCS#8 ...   (absent for an imported CA, or moved offline)
    private/ca-key.p12          ... or, with a passphrase, PKCS#12 (PBES2, AES-256-CBC, PBKDF2-SHA256 600000 rounds)
    private/issuing-ca-key.pem  issuing CA key, unencrypted ...
    private/issuing-ca-key.p12  ... or, with a passphrase, PKCS#12 like the root's
    private/broker-key.pem, private/devices/<id>-key.pem, private/clients/<name>-key.pem
    private/passwords/<username>.txt

Folders the store creates are 0755 (public) and 0700 (private/ and below), whatever the umask, and looser ones
are tightened on open. Files under private/ are 0600, certs 0644. Every write is atomic (temp file + rename) and
skipped when the content is unchanged. CA files, the index, the CRL and passwords are fsync'ed; leaf keys and
certs are not (bulk issuing stays fast); a leaf file lost in a crash is re-issued or reported, never guessed.

With a passphrase (spec: pki.ca_passphrase_env) no CA key is stored in the clear: both are PKCS#12 files, and a CA
key found in the clear is encrypted on open (the encrypted file is written and read back before the clear one
goes). The variable is read only when a CA key must be decrypted, i.e. when something must be signed (a new or
renewed cert, a CRL that is due or out of date) or encrypted, and gen says why (`log`, printed by the CLI). A
rerun that reuses everything works without it. The root key signs nothing after creation: it may be moved offline.

Every CA key is checked against its certificate: a clear one on every open, an encrypted one whenever it is
decrypted, and without the passphrase the encrypted files must be the ones index.json recorded (their SHA-256).
The CA is never regenerated silently: a missing, corrupt or foreign ca.pem / issuing-ca.pem, a key that does not
match, or an index.json of another project is a UserError.

Revocation is by identity (every unexpired cert ever issued to it: a renewal leaves the old cert valid, and a
stolen board may carry it) or by key (every cert that certifies a leaked key). The index keeps each identity's
history; superseded certs stay listed until they expire.

Public API:
    PkiStore.open(directory, *, project, key_type="ec-p256", ca_validity_days=3650, passphrase=None,
                  create=True) -> PkiStore          passphrase: bytes, or CaPassphrase(variable=...)
    import_ca(directory, *, project, cert_pem, key_pem, chain_pem=b"", passphrase=None) -> PkiStore
    store.device_trust_pem() -> bytes            root CA PEM (what devices embed)
    store.broker_cafile_pem() -> bytes           issuing CA (+ chain) + root PEM (Mosquitto cafile)
    store.ensure_broker(names, *, validity_days, key_type=None) -> Identity
    store.ensure_device(device_id, *, key_type, validity_days) -> Identity
    store.ensure_devices(device_ids, *, key_type, validity_days) -> list[Identity]   (one index write)
    store.ensure_client(name, *, key_type, validity_days) -> Identity
    store.batch()                                context manager: one index write for everything inside
    store.password(username) -> str;  store.existing_password(username) -> str | None
    store.crl_pem() -> bytes
    store.revoke(identity, reason="unspecified") -> list[IndexEntry];  store.revoke_key(key, reason) -> ...
    store.renew(identity, *, new_key, key_type=None, validity_days=None) -> Identity
    store.identity(identity) -> Identity;  store.entry(identity) -> IndexEntry;  store.entries() -> list[IndexEntry]
    store.history() -> [(role, name, [IndexEntry, ...])]
    store.root_ca_cert, store.issuing_ca_cert, store.chain;  store.layout (PkiLayout: every path)
    open_spec_pki(spec, *, create=True) -> PkiStore;  ensure_spec_identities(spec) -> SpecIdentities
An identity is named "broker", a device id, a client name, or explicitly "device/<id>" / "client/<name>".

Mutations hold an flock on pki/.lock (one writer at a time across processes). Big batches of new devices are
issued by worker processes (fork). POSIX only. The issuing CA is valid as long as the root (ca_validity_days);
rotating it is not implemented.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import secrets
from dataclasses import dataclass, field, replace
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from generator.pki import profiles as pki
from generator.core.errors import UserError

INDEX_VERSION = 1
CRL_VALIDITY_DAYS = 30          # Mosquitto locks every client out past nextUpdate ...
CRL_RESIGN_FRACTION = 0.5       # ... so it is re-signed once half of that has passed
CA_KEY_KDF_ROUNDS = 600_000     # PBKDF2-SHA256 rounds protecting an encrypted CA key
EXPIRY_WARNING_DAYS = 30

log = logging.getLogger(__name__)   # what the PKI does that the user should know (the CLI prints it to stderr)

ROLES = ("root-ca", "issuing-ca", "broker", "device", "client")
LEAF_ROLES = ("broker", "device", "client")


# ---------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Identity:
    name: str                   # "broker", the device id, or the client name
    role: str                   # "broker" | "device" | "client"
    cert_pem: bytes             # the leaf (for the broker: leaf + issuing CA)
    key_pem: bytes              # PKCS#8 PEM, unencrypted
    serial: int
    not_after: dt.datetime
    cert_path: Path
    key_path: Path


@dataclass(frozen=True)
class IndexEntry:
    serial: int
    subject: str                # RFC 4514, e.g. "O=demo,CN=esp32-0001"
    role: str                   # one of ROLES
    id: str                     # "root-ca", "issuing-ca", "broker", device id or client name
    not_after: dt.datetime
    status: str                 # "valid" | "revoked" | "superseded"
    key_type: str
    revoked_at: dt.datetime | None = None
    reason: str | None = None
    names: tuple[str, ...] = () # broker only: the names it was issued for
    key_sha256: str | None = None   # SHA-256 of the certified public key (SubjectPublicKeyInfo, DER); older
                                    # entries may lack it
    issued_at: dt.datetime | None = None  # the cert's notBefore

    def days_left(self, now: dt.datetime) -> int:
        return (self.not_after - now).days

    def expired(self, now: dt.datetime) -> bool:
        return self.not_after <= now

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "serial": f"{self.serial:X}", "subject": self.subject, "role": self.role, "id": self.id,
            "not_after": _iso(self.not_after), "status": self.status, "key_type": self.key_type,
        }
        if self.revoked_at is not None:
            data["revoked_at"] = _iso(self.revoked_at)
            data["reason"] = self.reason or "unspecified"
        if self.names:
            data["names"] = list(self.names)
        if self.key_sha256:
            data["key_sha256"] = self.key_sha256
        if self.issued_at is not None:
            data["issued_at"] = _iso(self.issued_at)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "IndexEntry":
        return cls(
            serial=int(data["serial"], 16), subject=data["subject"], role=data["role"], id=data["id"],
            not_after=_parse_iso(data["not_after"]), status=data["status"], key_type=data["key_type"],
            revoked_at=_parse_iso(data["revoked_at"]) if data.get("revoked_at") else None,
            reason=data.get("reason"), names=tuple(data.get("names", ())), key_sha256=data.get("key_sha256"),
            issued_at=_parse_iso(data["issued_at"]) if data.get("issued_at") else None,
        )


@dataclass(frozen=True)
class SpecIdentities:
    """Everything `gen generate` needs from the PKI for one spec."""

    ca_pem: bytes                       # root CA: devices embed it to verify the broker
    broker_cafile_pem: bytes            # issuing CA + root: the broker's cafile
    crl_pem: bytes                      # the broker's crlfile
    broker: Identity | None             # None when the broker's cert comes from elsewhere (spec broker.cert_file,
                                        # broker.external)
    backend: Identity                   # client cert for the backend (it also gets a password)
    doctor: Identity                    # gen doctor's own client cert (and password): never the backend's
    devices: Mapping[str, Identity]     # device id -> identity, for devices whose auth includes "mtls"
    passwords: Mapping[str, str] = field(repr=False)  # username -> password: devices whose auth includes
                                                      # "password", the backend and the doctor


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


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def public_key_sha256(key: pki.PrivateKey | pki.PublicKey) -> str:
    """SHA-256 of a key's SubjectPublicKeyInfo (DER): how the index names the key a cert certifies."""
    public = key.public_key() if hasattr(key, "private_bytes") else key
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


# ---------------------------------------------------------------------------------------------- files


def write_file_atomic(path: Path, data: bytes, *, mode: int, durable: bool = False, fresh: bool = False) -> bool:
    """Writes `data` to `path` via a temp file + rename, with `mode`. Returns False (and touches nothing)
    when the file already holds exactly `data`. `fresh=True` skips that comparison (a new key)."""
    if not fresh:
        try:
            with open(path, "rb") as existing:
                if existing.read() == data and (os.fstat(existing.fileno()).st_mode & 0o777) == mode:
                    return False
        except FileNotFoundError:
            pass
    # One temp name per directory and process: ext4 creates a reused name far faster than a new unique one,
    # and the PKI lock keeps other processes out.
    tmp = f"{path.parent}/.tmp-{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, mode)
    except FileExistsError:     # left behind by a crash
        os.unlink(tmp)
        fd = os.open(tmp, flags, mode)
    try:
        os.fchmod(fd, mode)     # independent of the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return True


def _make_dir(path: Path, mode: int) -> None:
    """`path` (and any missing parent, 0755) with exactly `mode`, whatever the umask."""
    missing = [d for d in (path, *path.parents) if not d.exists()]
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:  # another process made it meanwhile
            pass
        if directory != path:
            os.chmod(directory, _PUBLIC_DIR)
    if (path.stat().st_mode & 0o777) != mode:
        os.chmod(path, mode)


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
        return Path(f"{self.root}/{_ROLE_DIRS[role]}/{name}.pem")

    def key_path(self, role: str, name: str) -> Path:
        if role == "broker":
            return self.private / "broker-key.pem"
        if role == "root-ca":
            return self.root_key_encrypted if self.root_key_encrypted.exists() else self.root_key_plain
        if role == "issuing-ca":
            return self.issuing_key
        return Path(f"{self.root}/private/{_ROLE_DIRS[role]}/{name}-key.pem")

    def password_path(self, username: str) -> Path:
        return self.private / "passwords" / f"{username}.txt"

    def rel(self, path: Path) -> str:
        """How messages name a file: relative to the PKI dir's parent (usually the spec dir)."""
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)


_ROLE_DIRS = {"device": "devices", "client": "clients"}
_PUBLIC = 0o644
_SECRET = 0o600
_PUBLIC_DIR = 0o755
_SECRET_DIR = 0o700


# ---------------------------------------------------------------------------------------------- the store


class PkiStore:
    """A project's PKI directory. Create with `PkiStore.open`; see the module docstring."""

    def __init__(self, layout: PkiLayout, *, project: str, key_type: str, issuing_cert: x509.Certificate,
                 issuing_key: pki.PrivateKey | None, root_cert: x509.Certificate,
                 chain: tuple[x509.Certificate, ...], index: dict[str, Any], index_stamp: bytes,
                 passphrase: CaPassphrase | None):
        self.layout = layout
        self.project = project
        self.key_type = key_type
        self.root_ca_cert = root_cert
        self.issuing_ca_cert = issuing_cert
        self.chain = chain              # certs between the issuing CA and the root (an imported CA's), else ()
        self._issuing_key = issuing_key  # None while it is encrypted and not needed yet
        self._passphrase = passphrase
        self._index_header = {k: v for k, v in index.items() if k != "certs"}
        self._entries: list[IndexEntry] = [IndexEntry.from_json(e) for e in index.get("certs", [])]
        self._current: dict[tuple[str, str], int] = {}
        for position, entry in enumerate(self._entries):
            if entry.status != "superseded":
                self._current[(entry.role, entry.id)] = position
        self._index_stamp = index_stamp  # of the bytes `index` was parsed from, never re-read (a race)
        self._depth = 0
        self._dirty = False
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------------------------------ open

    @classmethod
    def open(cls, directory: Path, *, project: str, key_type: str = pki.DEFAULT_KEY_TYPE,
             ca_validity_days: int = 3650, passphrase: bytes | CaPassphrase | None = None,
             create: bool = True) -> "PkiStore":
        """Opens (or creates) the PKI. `passphrase` protects the CA keys: bytes (checked at once) or a
        CaPassphrase (an environment variable, read only when a CA key must be decrypted or encrypted). With a
        passphrase, a CA key still stored in the clear is encrypted now; without one, encrypted keys are used
        only if nothing needs signing."""
        layout = PkiLayout(Path(directory).resolve())
        if key_type not in pki.KEY_TYPES:
            raise UserError(f"unknown key type {key_type!r}", hint=f"use one of: {', '.join(pki.KEY_TYPES)}")
        if isinstance(passphrase, bytes):
            passphrase = CaPassphrase(value=passphrase)
        if not layout.ca_cert.exists():
            if not create:
                raise UserError(f"there is no PKI in {layout.root}", hint="create it with `gen pki init SPEC`")
            _make_dir(layout.root, _PUBLIC_DIR)
            with _flock(layout.lock):
                if not layout.ca_cert.exists():
                    _create_ca(layout, project=project, key_type=key_type, validity_days=ca_validity_days,
                               passphrase=passphrase)
        store = cls._load(layout, project=project, key_type=key_type, passphrase=passphrase)
        if passphrase is not None and store._clear_ca_keys():
            with store.batch():
                store._encrypt_clear_ca_keys()
        return store

    @classmethod
    def _load(cls, layout: PkiLayout, *, project: str, key_type: str,
              passphrase: CaPassphrase | None) -> "PkiStore":
        restore = "restore the pki/ directory from a backup. Never re-create the CA: every device trusts it"
        root_cert = _load_cert_file(layout, layout.ca_cert, "root CA certificate", restore)
        if not _is_ca(root_cert) or not _issued_by(root_cert, root_cert):
            raise UserError(f"{layout.rel(layout.ca_cert)} is not a self-signed CA certificate", hint=restore)
        index, index_stamp = _read_index(layout)
        if index.get("project") != project:
            raise UserError(f"{layout.rel(layout.index)} belongs to project {index.get('project')!r}, not to "
                            f"{project!r}: this is another project's PKI",
                            hint=f"point pki.dir at this project's own PKI (or, if you renamed the project, set "
                                 f"`project: {index.get('project')}` back in the spec)")
        if index["ca"].get("root_sha256") != _fingerprint(root_cert):
            raise UserError(f"{layout.rel(layout.ca_cert)} is not the root CA this PKI was created with "
                            f"(its fingerprint differs from {layout.rel(layout.index)})", hint=restore)
        issuing_cert = _load_cert_file(layout, layout.issuing_cert, "issuing CA certificate", restore)
        chain = tuple(x509.load_pem_x509_certificates(layout.chain.read_bytes())) if layout.chain.exists() else ()
        if index["ca"].get("issuing_sha256") != _fingerprint(issuing_cert) or not pki.chains_to(
                issuing_cert, chain, root_cert):
            raise UserError(f"{layout.rel(layout.issuing_cert)} is not the issuing CA this PKI was created with",
                            hint=restore)
        _secure_dirs(layout)
        _checked_clear_key(layout, layout.root_key_plain, root_cert, "root CA key")  # checked; it signs nothing now
        issuing_key = _checked_clear_key(layout, layout.issuing_key, issuing_cert, "issuing CA key")
        for encrypted, cert, what in ((layout.root_key_encrypted, root_cert, "root"),
                                      (layout.issuing_key_encrypted, issuing_cert, "issuing")):
            if not encrypted.exists():
                continue
            if passphrase is not None and passphrase.given:  # at hand: check the key itself
                key = _decrypt_ca_key(layout, encrypted, cert, passphrase, f"open the {what} CA key")
                if what == "issuing":
                    issuing_key = key
            elif index["ca"].get(f"{what}_key_p12_sha256") not in (None, _file_sha256(encrypted)):
                raise UserError(f"{layout.rel(encrypted)} is not the encrypted {what} CA key this PKI recorded "
                                f"(its digest differs from {layout.rel(layout.index)})", hint=restore)
        if issuing_key is None and not layout.issuing_key_encrypted.exists():
            _read_required(layout, layout.issuing_key, "the issuing CA key", restore)  # raises: it is missing
        return cls(layout, project=project, key_type=key_type, root_cert=root_cert, issuing_cert=issuing_cert,
                   issuing_key=issuing_key, chain=chain, index=index, index_stamp=index_stamp,
                   passphrase=passphrase)

    @property
    def imported(self) -> bool:
        """Whether the CA was imported (`import_ca`): its root's key was never ours."""
        return bool(self._index_header.get("ca", {}).get("imported"))

    def _clear_ca_keys(self) -> list[Path]:
        return [path for path in (self.layout.root_key_plain, self.layout.issuing_key) if path.exists()]

    def _encrypt_clear_ca_keys(self) -> None:
        """Encrypts every CA key stored in the clear with the passphrase: the encrypted file is written (durably)
        and read back before the clear one is removed, so the key is never lost."""
        assert self._passphrase is not None
        passphrase = self._passphrase.get("encrypt the CA keys stored in the clear")
        for clear, encrypted, cert, what in (
                (self.layout.root_key_plain, self.layout.root_key_encrypted, self.root_ca_cert, "root"),
                (self.layout.issuing_key, self.layout.issuing_key_encrypted, self.issuing_ca_cert, "issuing")):
            if not clear.exists():
                continue
            key = _checked_clear_key(self.layout, clear, cert, f"{what} CA key")
            assert key is not None
            write_file_atomic(encrypted, _encrypt_ca_key(key, passphrase, f"{what}-ca"), mode=_SECRET,
                              durable=True)
            _decrypt_ca_key(self.layout, encrypted, cert, CaPassphrase(value=passphrase), "check it")
            _fsync_dir(encrypted.parent)
            self._index_header.setdefault("ca", {})[f"{what}_key_p12_sha256"] = _file_sha256(encrypted)
            self._dirty = True
            clear.unlink()
            _fsync_dir(clear.parent)
            log.info(f"encrypted the {what} CA key with the passphrase: {self.layout.rel(encrypted)}")

    def _signer(self, purpose: str) -> pki.CertificateAuthority:
        """The issuing CA with its key, decrypted first if it is encrypted (asking for the passphrase `purpose`)."""
        if self._issuing_key is None:
            if self._passphrase is None:
                raise UserError(f"gen must {purpose}, but the issuing CA key ({self.layout.rel(self.layout.issuing_key_encrypted)}) "
                                "is encrypted and the spec names no passphrase variable",
                                hint="set pki.ca_passphrase_env in the spec to the variable that holds the passphrase")
            self._issuing_key = _decrypt_ca_key(self.layout, self.layout.issuing_key_encrypted, self.issuing_ca_cert,
                                                self._passphrase, purpose)
        return pki.CertificateAuthority(self.issuing_ca_cert, self._issuing_key)

    # ------------------------------------------------------------------------------------------ trust

    def device_trust_pem(self) -> bytes:
        """The root CA: what a device embeds to verify the broker (which sends leaf + issuing CA)."""
        return _cert_pem(self.root_ca_cert)

    def broker_cafile_pem(self) -> bytes:
        """Issuing CA (+ an imported CA's intermediates) + root: Mosquitto's cafile, enough to verify a device
        that sends only its leaf."""
        certs = _unique_certs([self.issuing_ca_cert, *self.chain, self.root_ca_cert])
        return b"".join(_cert_pem(cert) for cert in certs)

    def _broker_chain_pem(self) -> bytes:
        """What the broker sends after its leaf: the issuing CA and any intermediates (never the root)."""
        certs = [cert for cert in _unique_certs([self.issuing_ca_cert, *self.chain]) if cert != self.root_ca_cert]
        return b"".join(_cert_pem(cert) for cert in certs)

    # ------------------------------------------------------------------------------------------ identities

    def ensure_broker(self, names: Sequence[str], *, validity_days: int, key_type: str | None = None) -> Identity:
        """CN = names[0]; SAN per `pki.broker_subject_alt_names`. Re-issued with the same key when the names
        change; otherwise reused byte-identical."""
        names = tuple(names)
        if not names:
            raise UserError("the broker needs at least one name (host name or IP address)",
                            hint="set broker.host in the spec")
        pki.broker_subject_alt_names(names)  # validates every name before anything is written
        with self.batch():
            return self._ensure_leaf("broker", "broker", key_type or self.key_type, validity_days, names)

    def ensure_device(self, device_id: str, *, key_type: str, validity_days: int) -> Identity:
        return self.ensure_devices([device_id], key_type=key_type, validity_days=validity_days)[0]

    def ensure_devices(self, device_ids: Sequence[str], *, key_type: str, validity_days: int) -> list[Identity]:
        """CN = id, SAN URI urn:dev:<id>, EKU clientAuth. Existing identities are reused; the index is written
        once for the whole batch."""
        for device_id in device_ids:
            pki.check_identity_name(device_id, "device id")
        if key_type not in pki.KEY_TYPES:
            raise UserError(f"unknown key type {key_type!r}", hint=f"use one of: {', '.join(pki.KEY_TYPES)}")
        with self.batch():
            new_ids = [i for i in dict.fromkeys(device_ids) if ("device", i) not in self._current
                       and not self.layout.key_path("device", i).exists()]
            issued = self._issue_new_keys("device", new_ids, key_type, validity_days) if new_ids else {}
            return [issued.get(i) or self._ensure_leaf("device", i, key_type, validity_days) for i in device_ids]

    def _issue_new_keys(self, role: str, names: list[str], key_type: str, validity_days: int) -> dict[str, Identity]:
        """Fresh key + cert for each name, spread over the CPUs when there are many (fork; Linux)."""
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        signer = self._signer(f"issue {len(names)} new {role} certificate{'s' if len(names) != 1 else ''} ({shown})")
        self._make_dirs_for(role)
        job = _IssueJob(str(self.layout.root), _cert_pem(self.issuing_ca_cert),
                        pki.private_key_pem(signer.key), self.project, role, key_type, validity_days)
        # two workers per CPU: file creation waits on the filesystem journal, and another worker computes meanwhile
        workers = min(2 * (os.cpu_count() or 1), len(names) // _NAMES_PER_WORKER_MIN)
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            chunk = -(-len(names) // (workers * 4))
            chunks = [names[i:i + chunk] for i in range(0, len(names), chunk)]
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                results = [r for part in pool.map(job.run, chunks) for r in part]
        else:
            results = job.run(names, issuer=signer)
        issued: dict[str, Identity] = {}
        for name, serial, subject, not_before, not_after, key_sha256, key_pem, cert_pem in results:
            self._entries.append(IndexEntry(serial=serial, subject=subject, role=role, id=name, not_after=not_after,
                                            status="valid", key_type=key_type, key_sha256=key_sha256,
                                            issued_at=not_before))
            self._current[(role, name)] = len(self._entries) - 1
            issued[name] = Identity(name, role, cert_pem, key_pem, serial, not_after,
                                    self.layout.cert_path(role, name), self.layout.key_path(role, name))
        self._dirty = True
        return issued

    def ensure_client(self, name: str, *, key_type: str, validity_days: int) -> Identity:
        pki.check_identity_name(name, "client name")
        with self.batch():
            return self._ensure_leaf("client", name, key_type, validity_days)

    def identity(self, identity: str) -> Identity:
        """An identity already issued (its current cert), e.g. for `gen pki show`."""
        role, name = self._resolve(identity)
        entry = self._entries[self._current[(role, name)]]
        cert_path, key_path = self.layout.cert_path(role, name), self.layout.key_path(role, name)
        cert_pem = _read_or_none(cert_path)
        key_pem = _read_or_none(key_path)
        if cert_pem is None:
            raise UserError(f"{self.layout.rel(cert_path)} is missing", hint=f"re-issue it: gen pki issue SPEC {name}")
        return Identity(name, role, cert_pem, key_pem or b"", entry.serial, entry.not_after, cert_path, key_path)

    def entry(self, identity: str) -> IndexEntry:
        role, name = self._resolve(identity)
        return self._entries[self._current[(role, name)]]

    def entries(self) -> list[IndexEntry]:
        return list(self._entries)

    def password(self, username: str) -> str:
        """The MQTT password of `username`: generated once (pki.MQTT_PASSWORD_LENGTH URL-safe characters), kept
        0600, reused."""
        pki.check_identity_name(username, "username")
        path = self.layout.password_path(username)
        value = self.existing_password(username)
        if value:
            return value
        value = secrets.token_urlsafe(pki.MQTT_PASSWORD_LENGTH * 3 // 4)
        _make_dir(path.parent, _SECRET_DIR)
        write_file_atomic(path, value.encode() + b"\n", mode=_SECRET, durable=True)
        return value

    def existing_password(self, username: str) -> str | None:
        """The password of `username` if one was generated, without creating one (for `gen pki show`)."""
        pki.check_identity_name(username, "username")
        existing = _read_or_none(self.layout.password_path(username))
        value = existing.decode("utf-8", "replace").strip() if existing else ""
        return value or None

    # ------------------------------------------------------------------------------------------ revocation

    def revoke(self, identity: str, reason: str = "unspecified") -> list[IndexEntry]:
        """Revokes every unexpired certificate of the identity: its current one and every earlier one (a renewal
        keeps the old certificate valid, and a stolen board may still carry it), then re-signs the CRL at once.
        Returns the entries revoked."""
        _check_reason(reason)
        with self.batch():
            role, name = self._resolve_leaf(identity, "revoke")
            now = _utcnow()
            positions = [position for position, entry in enumerate(self._entries)
                         if (entry.role, entry.id) == (role, name) and entry.status != "revoked"
                         and not entry.expired(now)]
            if not positions:
                current = self._entries[self._current[(role, name)]]
                state = "already revoked" if current.status == "revoked" else "expired"
                raise UserError(f"{role} {name!r} is {state}: no certificate of it is left to revoke (the latest is "
                                f"serial {current.serial:X}; see gen pki list SPEC)",
                                hint=f"to give it a new certificate: gen pki renew SPEC {name} --new-key")
            return self._revoke_positions(positions, reason, f"re-sign the CRL to revoke {role} {name}")

    def revoke_key(self, key: pki.PrivateKey | pki.PublicKey, reason: str = "unspecified") -> list[IndexEntry]:
        """Revokes every unexpired certificate of this PKI that certifies `key` (a leaked key, whichever identity
        it was issued to), then re-signs the CRL. Returns the entries revoked."""
        _check_reason(reason)
        digest = public_key_sha256(key)
        with self.batch():
            self._record_current_key_digests()
            now = _utcnow()
            matching = [position for position, entry in enumerate(self._entries) if entry.key_sha256 == digest]
            if any(self._entries[position].role not in LEAF_ROLES for position in matching):
                raise UserError("that is a CA key: a CA cannot be revoked here",
                                hint="a compromised CA means a new PKI: every device must be re-provisioned")
            positions = [position for position in matching if self._entries[position].status != "revoked"
                         and not self._entries[position].expired(now)]
            if not positions:
                unknown = sum(1 for entry in self._entries if entry.key_sha256 is None and entry.role in LEAF_ROLES
                              and entry.status != "revoked" and not entry.expired(now))
                raise UserError("no unrevoked, unexpired certificate of this PKI certifies that key" + (
                    f" ({unknown} older certificates were recorded without their key: revoke those by identity)"
                    if unknown else ""), hint="see every certificate and its key with `gen pki list SPEC`")
            return self._revoke_positions(positions, reason, "re-sign the CRL to revoke a key")

    def _revoke_positions(self, positions: list[int], reason: str, purpose: str) -> list[IndexEntry]:
        now = _utcnow()
        for position in positions:
            self._entries[position] = replace(self._entries[position], status="revoked", revoked_at=now,
                                              reason=reason)
        self._dirty = True
        self._write_crl(purpose)
        return [self._entries[position] for position in positions]

    def _record_current_key_digests(self) -> None:
        """Index entries written before keys were recorded get their key digest from their cert file, when the
        file still holds that very cert (an earlier cert of the identity is gone: its key stays unknown)."""
        for (role, name), position in self._current.items():
            entry = self._entries[position]
            if entry.key_sha256 is not None or role not in LEAF_ROLES:
                continue
            cert = _read_cert_or_none(self.layout.cert_path(role, name))
            if cert is not None and cert.serial_number == entry.serial:
                self._entries[position] = replace(entry, key_sha256=public_key_sha256(cert.public_key()))
                self._dirty = True

    def history(self) -> list[tuple[str, str, list[IndexEntry]]]:
        """Every identity (role, name) with all its certificates, oldest first; identities in order of issue."""
        grouped: dict[tuple[str, str], list[IndexEntry]] = {}
        for entry in self._entries:
            grouped.setdefault((entry.role, entry.id), []).append(entry)
        return [(role, name, entries) for (role, name), entries in grouped.items()]

    def renew(self, identity: str, *, new_key: bool, key_type: str | None = None,
              validity_days: int | None = None) -> Identity:
        """A new cert for the same key (or a new key). The old cert is marked superseded (it is not revoked:
        revoke it explicitly if its key was exposed). A revoked identity can only be renewed with a new key."""
        with self.batch():
            role, name = self._resolve_leaf(identity, "renew")
            old = self._entries[self._current[(role, name)]]
            if not new_key and (old.status == "revoked" or self._key_was_revoked(role, name)):
                raise UserError(f"{role} {name!r} is revoked; its key must not be certified again",
                                hint=f"issue a new key: gen pki renew SPEC {name} --new-key")
            key_path = self.layout.key_path(role, name)
            if new_key:
                key = pki.generate_key(key_type or old.key_type)
                key_pem = pki.private_key_pem(key)
            else:
                if key_type and key_type != old.key_type:
                    raise UserError(f"{role} {name!r} has a {old.key_type} key; a {key_type} key needs a new key",
                                    hint=f"gen pki renew SPEC {name} --new-key")
                key_pem = _read_required(self.layout, key_path, f"{role} {name!r} key",
                                         f"issue a new key: gen pki renew SPEC {name} --new-key")
                key = _parse_key(self.layout, key_pem, key_path)
                old_cert = _read_cert_or_none(self.layout.cert_path(role, name))
                if old_cert is not None and not _same_public_key(key, old_cert):
                    raise UserError(f"{self.layout.rel(key_path)} does not belong to {role} {name!r}'s certificate",
                                    hint=f"restore the key from a backup, or: gen pki renew SPEC {name} --new-key")
            if validity_days is None:
                old_cert = _read_cert_or_none(self.layout.cert_path(role, name))
                validity_days = (max(1, (old_cert.not_valid_after_utc - old_cert.not_valid_before_utc).days)
                                 if old_cert is not None else 365)
            if old.status != "revoked":
                self._entries[self._current[(role, name)]] = replace(old, status="superseded")
            del self._current[(role, name)]
            self._dirty = True
            return self._issue(role, name, key, key_pem, validity_days, old.names, write_key=new_key)

    def _key_was_revoked(self, role: str, name: str) -> bool:
        """Whether a certificate for the identity's current key was ever revoked (by identity or by key)."""
        cert = _read_cert_or_none(self.layout.cert_path(role, name))
        if cert is None:
            return False
        digest = public_key_sha256(cert.public_key())
        return any(entry.status == "revoked" and entry.key_sha256 == digest for entry in self._entries)

    def crl_pem(self) -> bytes:
        """The CRL, re-signed first if it is missing, stale (half its lifetime gone), or out of date with the
        index; otherwise the file as it is (and no CA key is needed)."""
        existing = _read_or_none(self.layout.crl)
        stale = self._crl_staleness(existing)
        if stale is None:
            return existing  # type: ignore[return-value]
        with self.batch():
            return self._write_crl(f"re-sign the CRL ({stale})")

    # ------------------------------------------------------------------------------------------ batching

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Holds the PKI lock and writes index.json once, at the end of the outermost batch."""
        if self._depth == 0:
            self._lock_fd = _acquire_lock(self.layout.lock)
            if self._stat_index() != self._index_stamp:  # another process changed the index: start from it
                fresh = PkiStore._load(self.layout, project=self.project, key_type=self.key_type,
                                       passphrase=self._passphrase)
                if fresh.issuing_ca_cert == self.issuing_ca_cert and fresh._issuing_key is None:
                    fresh._issuing_key = self._issuing_key   # keep a key already decrypted
                self.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "_lock_fd"})
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                try:
                    if self._dirty:
                        self._write_index()
                finally:
                    self._dirty = False
                    _release_lock(self._lock_fd)
                    self._lock_fd = None

    # ------------------------------------------------------------------------------------------ internals

    def _resolve(self, identity: str) -> tuple[str, str]:
        if identity == "broker":
            candidates = [("broker", "broker")]
        elif identity in ("root-ca", "issuing-ca"):
            candidates = [(identity, identity)]
        elif "/" in identity:
            kind, _, name = identity.partition("/")
            role = {"device": "device", "devices": "device", "client": "client", "clients": "client"}.get(kind)
            candidates = [(role, name)] if role else []
        else:
            candidates = [("device", identity), ("client", identity)]
        found = [c for c in candidates if c in self._current]
        if not found:
            raise UserError(f"no certificate named {identity!r} in {self.layout.rel(self.layout.index)}",
                            hint="see what exists with `gen pki list SPEC`")
        if len(found) > 1:
            raise UserError(f"{identity!r} names both a device and a client",
                            hint=f"say which: device/{identity} or client/{identity}")
        return found[0]

    def _resolve_leaf(self, identity: str, action: str) -> tuple[str, str]:
        role, name = self._resolve(identity)
        if role not in LEAF_ROLES:
            raise UserError(f"`gen pki {action}` works on the broker, devices and clients, not on the {role}",
                            hint="the CAs are kept for their whole validity; devices trust the root")
        return role, name

    def _ensure_leaf(self, role: str, name: str, key_type: str, validity_days: int,
                     names: tuple[str, ...] = ()) -> Identity:
        if key_type not in pki.KEY_TYPES:
            raise UserError(f"unknown key type {key_type!r}", hint=f"use one of: {', '.join(pki.KEY_TYPES)}")
        layout = self.layout
        cert_path, key_path = layout.cert_path(role, name), layout.key_path(role, name)
        what = "the broker" if role == "broker" else f"{role} {name!r}"
        position = self._current.get((role, name))
        if position is None:
            return self._adopt_or_issue(role, name, key_type, validity_days, names)
        entry = self._entries[position]
        if entry.status == "revoked":
            raise UserError(f"{what} is revoked (serial {entry.serial:X})",
                            hint=f"remove it from the spec, or give it a new key: gen pki renew SPEC {name} --new-key")
        key_pem = _read_required(layout, key_path, f"the key of {what}",
                                 f"issue a new key: gen pki renew SPEC {name} --new-key")
        key = _parse_key(layout, key_pem, key_path)
        if pki.key_type_of(key) != key_type:
            raise UserError(f"{what} has a {pki.key_type_of(key)} key, but {key_type} is asked for",
                            hint=f"switch keys explicitly: gen pki renew SPEC {name} --new-key")
        cert_pem = _read_or_none(cert_path)
        cert = _parse_cert_or_none(cert_pem)
        if cert is not None and cert.serial_number == entry.serial and not _same_public_key(key, cert):
            raise UserError(f"{layout.rel(key_path)} does not belong to {layout.rel(cert_path)} (the key file was "
                            "replaced or damaged)", hint=f"restore the key from a backup, or issue a new one: "
                                                         f"gen pki renew SPEC {name} --new-key")
        reissue = (cert is None or cert.serial_number != entry.serial
                   or (role == "broker" and pki.broker_names_of(cert) != _wanted_broker_names(names)))
        if reissue:  # a lost/corrupt cert file (public data) or new broker names: same key, new cert
            self._entries[position] = replace(entry, status="superseded")
            del self._current[(role, name)]
            self._dirty = True
            return self._issue(role, name, key, key_pem, validity_days, names, write_key=False)
        return Identity(name, role, cert_pem, key_pem, entry.serial, entry.not_after, cert_path, key_path)

    def _adopt_or_issue(self, role: str, name: str, key_type: str, validity_days: int,
                        names: tuple[str, ...]) -> Identity:
        """No index entry: either a fresh identity, or files left by a run interrupted before its index write."""
        cert_path, key_path = self.layout.cert_path(role, name), self.layout.key_path(role, name)
        key_pem = _read_or_none(key_path)
        if key_pem is None:
            key = pki.generate_key(key_type)
            return self._issue(role, name, key, pki.private_key_pem(key), validity_days, names, write_key=True)
        key = _parse_key(self.layout, key_pem, key_path)
        if pki.key_type_of(key) != key_type:
            raise UserError(f"{self.layout.rel(key_path)} holds a {pki.key_type_of(key)} key, not {key_type}",
                            hint="delete that key file if nothing uses it yet, or change key_type in the spec")
        cert_pem = _read_or_none(cert_path)
        cert = _parse_cert_or_none(cert_pem)
        if (cert is not None and cert_pem is not None and _issued_by(cert, self.issuing_ca_cert)
                and _same_public_key(key, cert)
                and (role != "broker" or pki.broker_names_of(cert) == _wanted_broker_names(names))):
            self._record(cert, role, name, key_type, names)
            return Identity(name, role, cert_pem, key_pem, cert.serial_number, cert.not_valid_after_utc,
                            cert_path, key_path)
        return self._issue(role, name, key, key_pem, validity_days, names, write_key=False)

    def _issue(self, role: str, name: str, key: pki.PrivateKey, key_pem: bytes, validity_days: int,
               names: tuple[str, ...], *, write_key: bool) -> Identity:
        cert_path, key_path = self.layout.cert_path(role, name), self.layout.key_path(role, name)
        now = _utcnow()
        what = "the broker" if role == "broker" else f"{role} {name}"
        common = dict(issuer=self._signer(f"issue a certificate for {what}"), validity_days=validity_days, now=now,
                      project=self.project)
        if role == "broker":
            cert = pki.issue_broker_cert(key.public_key(), names, **common)
        elif role == "device":
            cert = pki.issue_device_cert(key.public_key(), name, **common)
        else:
            cert = pki.issue_client_cert(key.public_key(), name, **common)
        cert_pem = _cert_pem(cert)
        if role == "broker":
            cert_pem += self._broker_chain_pem()
        self._make_dirs_for(role)
        if write_key:
            write_file_atomic(key_path, key_pem, mode=_SECRET, fresh=True)
        write_file_atomic(cert_path, cert_pem, mode=_PUBLIC, fresh=True)  # a new serial: always new bytes
        self._record(cert, role, name, pki.key_type_of(key), names)
        return Identity(name, role, cert_pem, key_pem, cert.serial_number, cert.not_valid_after_utc,
                        cert_path, key_path)

    _dirs_made: frozenset[str] = frozenset()

    def _make_dirs_for(self, role: str) -> None:
        if role in self._dirs_made:
            return
        _make_dir(self.layout.private, _SECRET_DIR)
        if role in _ROLE_DIRS:
            _make_dir(self.layout.private / _ROLE_DIRS[role], _SECRET_DIR)
            _make_dir(self.layout.root / _ROLE_DIRS[role], _PUBLIC_DIR)
        self._dirs_made = self._dirs_made | {role}

    def _record(self, cert: x509.Certificate, role: str, name: str, key_type: str, names: tuple[str, ...]) -> None:
        self._entries.append(_entry_for(cert, role, name, key_type, names))
        self._current[(role, name)] = len(self._entries) - 1
        self._dirty = True

    def _revocations(self) -> list[pki.Revocation]:
        return [pki.Revocation(e.serial, e.revoked_at or _utcnow(), pki.REVOCATION_REASONS.get(
            e.reason or "unspecified", x509.ReasonFlags.unspecified))
            for e in self._entries if e.status == "revoked" and e.role in LEAF_ROLES]

    def _crl_staleness(self, crl_pem: bytes | None) -> str | None:
        """Why the CRL must be re-signed, or None when it is current."""
        if crl_pem is None:
            return "it is missing"
        try:
            crl = x509.load_pem_x509_crl(crl_pem)
        except ValueError:
            return "it is damaged"
        if crl.issuer != self.issuing_ca_cert.subject or not crl.is_signature_valid(
                self.issuing_ca_cert.public_key()):  # type: ignore[arg-type]
            return "it is not signed by the issuing CA"
        if crl.next_update_utc is None:
            return "it has no next update"
        lifetime = crl.next_update_utc - crl.last_update_utc
        if _utcnow() >= crl.last_update_utc + lifetime * CRL_RESIGN_FRACTION:
            return f"it is due: Mosquitto refuses every client once it passes {crl.next_update_utc:%Y-%m-%d}"
        if {r.serial_number for r in crl} != {r.serial for r in self._revocations()}:
            return "it differs from the index"
        return None

    def _write_crl(self, purpose: str) -> bytes:
        number = int(self._index_header.get("crl_number", 0)) + 1
        crl = pki.build_crl(self._revocations(), issuer=self._signer(purpose), crl_number=number, now=_utcnow(),
                            validity_days=CRL_VALIDITY_DAYS)
        data = crl.public_bytes(serialization.Encoding.PEM)
        write_file_atomic(self.layout.crl, data, mode=_PUBLIC, durable=True)
        self._index_header["crl_number"] = number
        self._dirty = True
        return data

    def _write_index(self) -> None:
        document = dict(self._index_header)
        document["certs"] = [entry.to_json() for entry in self._entries]
        write_file_atomic(self.layout.index, _index_bytes(document), mode=_PUBLIC, durable=True)
        self._index_stamp = self._stat_index()

    def _stat_index(self) -> bytes | None:
        """A digest of index.json's content. Not (inode, size, mtime): an atomic rename frees the old inode for
        the next file, two indexes often have the same size, and mtime has only jiffy resolution, so a stat
        stamp can match an index another process rewrote, and this store would then write over its entry."""
        try:
            return hashlib.sha256(self.layout.index.read_bytes()).digest()
        except FileNotFoundError:
            return None


_NAMES_PER_WORKER_MIN = 500  # below this, forking costs more than it saves


@dataclass(frozen=True)
class _IssueJob:
    """Issues fresh device/client identities (key + cert files); runs in a worker process for big batches."""

    root: str
    issuer_cert_pem: bytes
    issuer_key_pem: bytes = field(repr=False)
    project: str
    role: str
    key_type: str
    validity_days: int

    def run(self, names: list[str], issuer: pki.CertificateAuthority | None = None,
            ) -> list[tuple[str, int, str, dt.datetime, dt.datetime, str, bytes, bytes]]:
        if issuer is None:
            issuer = pki.CertificateAuthority(x509.load_pem_x509_certificate(self.issuer_cert_pem),
                                              pki.load_private_key_pem(self.issuer_key_pem, "issuing CA key"))
        issue = pki.issue_device_cert if self.role == "device" else pki.issue_client_cert
        layout, now, results = PkiLayout(Path(self.root)), _utcnow(), []
        for name in names:
            key = pki.generate_key(self.key_type)
            key_pem = pki.private_key_pem(key)
            cert = issue(key.public_key(), name, issuer=issuer, validity_days=self.validity_days, now=now,
                         project=self.project)
            cert_pem = _cert_pem(cert)
            write_file_atomic(layout.key_path(self.role, name), key_pem, mode=_SECRET, fresh=True)
            write_file_atomic(layout.cert_path(self.role, name), cert_pem, mode=_PUBLIC, fresh=True)
            results.append((name, cert.serial_number, pki.leaf_subject_text(name, self.project),
                            cert.not_valid_before_utc, cert.not_valid_after_utc, public_key_sha256(key), key_pem,
                            cert_pem))
        return results


# ---------------------------------------------------------------------------------------------- creation


def _create_ca(layout: PkiLayout, *, project: str, key_type: str, validity_days: int,
               passphrase: CaPassphrase | None) -> None:
    _refuse_leftovers(layout)
    secret = passphrase.get("create the CA (its keys are encrypted with the passphrase)") if passphrase else None
    now = _utcnow()
    root_key = pki.generate_key(key_type)
    root = pki.CertificateAuthority(pki.build_root_ca(root_key, project=project, validity_days=validity_days,
                                                      now=now), root_key)
    issuing_key = pki.generate_key(key_type)
    issuing = pki.CertificateAuthority(pki.build_issuing_ca(issuing_key, root=root, project=project,
                                                            validity_days=validity_days, now=now), issuing_key)
    ca: dict[str, Any] = {"root_sha256": _fingerprint(root.cert), "issuing_sha256": _fingerprint(issuing.cert)}
    _make_dir(layout.private, _SECRET_DIR)
    ca.update(_write_ca_key(layout, root_key, "root", secret))
    ca.update(_write_ca_key(layout, issuing_key, "issuing", secret))
    _write_ca_files(layout, project=project, root=root.cert, issuing=issuing, chain=(), ca=ca,
                    key_types=(key_type, key_type))


def _refuse_leftovers(layout: PkiLayout) -> None:
    leftovers = [p for p in (layout.issuing_cert, layout.index, layout.issuing_key, layout.issuing_key_encrypted,
                             layout.cert_path("broker", "-"), layout.root / "devices", layout.root / "clients")
                 if p.exists()]
    if leftovers:
        raise UserError(
            f"{layout.rel(layout.ca_cert)} is missing, but {layout.rel(leftovers[0])} exists: this PKI was already "
            "in use", hint="restore ca.pem from a backup. Never re-create the CA: every device trusts it")


def _write_ca_key(layout: PkiLayout, key: pki.PrivateKey, what: str, passphrase: bytes | None) -> dict[str, str]:
    """Writes a CA key, encrypted when there is a passphrase; returns what the index records of it."""
    if passphrase is None:
        write_file_atomic(layout.root_key_plain if what == "root" else layout.issuing_key, pki.private_key_pem(key),
                          mode=_SECRET, durable=True)
        return {}
    path = layout.root_key_encrypted if what == "root" else layout.issuing_key_encrypted
    write_file_atomic(path, _encrypt_ca_key(key, passphrase, f"{what}-ca"), mode=_SECRET, durable=True)
    return {f"{what}_key_p12_sha256": _file_sha256(path)}


def _write_ca_files(layout: PkiLayout, *, project: str, root: x509.Certificate, issuing: pki.CertificateAuthority,
                    chain: tuple[x509.Certificate, ...], ca: dict[str, Any], key_types: tuple[str, str]) -> None:
    """The public half of a new PKI: issuing CA (+ chain), an empty CRL, the index, and ca.pem last (its presence
    is what says "this PKI exists")."""
    write_file_atomic(layout.issuing_cert, _cert_pem(issuing.cert), mode=_PUBLIC, durable=True)
    if chain:
        write_file_atomic(layout.chain, b"".join(_cert_pem(cert) for cert in chain), mode=_PUBLIC, durable=True)
    crl = pki.build_crl([], issuer=issuing, crl_number=1, now=_utcnow(), validity_days=CRL_VALIDITY_DAYS)
    write_file_atomic(layout.crl, crl.public_bytes(serialization.Encoding.PEM), mode=_PUBLIC, durable=True)
    entries = [_entry_for(root, "root-ca", "root-ca", key_types[0])]
    if issuing.cert != root:
        entries.append(_entry_for(issuing.cert, "issuing-ca", "issuing-ca", key_types[1]))
    document = {"version": INDEX_VERSION, "project": project, "ca": ca, "crl_number": 1,
                "certs": [entry.to_json() for entry in entries]}
    write_file_atomic(layout.index, _index_bytes(document), mode=_PUBLIC, durable=True)
    write_file_atomic(layout.ca_cert, _cert_pem(root), mode=_PUBLIC, durable=True)


def import_ca(directory: Path, *, project: str, cert_pem: bytes, key_pem: bytes, chain_pem: bytes = b"",
              passphrase: CaPassphrase | None = None, cert_name: str = "the CA certificate",
              key_name: str = "the CA key") -> "PkiStore":
    """A new PKI that issues from an existing CA (a corporate or team CA): its certificate and key, and, when it
    is not self-signed, the chain up to its self-signed root. Devices trust that root; the CA's key signs the
    broker and device certs and the CRL. Only into a directory that holds no PKI yet. The key is stored
    encrypted with the passphrase when there is one (an encrypted key file is read with the same passphrase)."""
    layout = PkiLayout(Path(directory).resolve())
    if layout.ca_cert.exists():
        raise UserError(f"{layout.root} already holds a PKI; gen never replaces a CA",
                        hint="import into a new project (or a new pki.dir), then move the devices over")
    issuing_cert = _parse_import_certs(cert_pem, cert_name)[0]
    chain = _parse_import_certs(chain_pem, "the chain") if chain_pem.strip() else []
    key = _load_import_key(key_pem, key_name, passphrase)
    problem = _import_problem(issuing_cert, key, chain, _utcnow())
    if problem:
        raise UserError(f"cannot issue from {cert_name}: {problem}", hint=_IMPORT_HINT)
    root = chain[-1] if chain else issuing_cert
    between = tuple(chain[:-1])
    _make_dir(layout.root, _PUBLIC_DIR)
    with _flock(layout.lock):
        if layout.ca_cert.exists():
            raise UserError(f"{layout.root} already holds a PKI; gen never replaces a CA")
        _refuse_leftovers(layout)
        secret = passphrase.get("store the imported CA key encrypted") if passphrase else None
        _make_dir(layout.private, _SECRET_DIR)
        ca: dict[str, Any] = {"root_sha256": _fingerprint(root), "issuing_sha256": _fingerprint(issuing_cert),
                              "imported": True}
        ca.update(_write_ca_key(layout, key, "issuing", secret))
        _write_ca_files(layout, project=project, root=root, issuing=pki.CertificateAuthority(issuing_cert, key),
                        chain=between, ca=ca, key_types=(pki.key_type_of(root.public_key()),  # type: ignore[arg-type]
                                                         pki.key_type_of(key)))
    log.info(f"imported {issuing_cert.subject.rfc4514_string()} to issue from; devices will trust "
             f"{root.subject.rfc4514_string()}")
    return PkiStore.open(layout.root, project=project, passphrase=passphrase, create=False)


_IMPORT_HINT = ("give a CA certificate (basicConstraints CA:TRUE, keyUsage keyCertSign and cRLSign) with its own key, "
                "and --chain with the certificates above it up to the self-signed root")


def _parse_import_certs(data: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            raise UserError(f"{what} is not a PEM or DER certificate", hint=_IMPORT_HINT) from None
    return certs


def _load_import_key(data: bytes, what: str, passphrase: CaPassphrase | None) -> pki.PrivateKey:
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


def _import_problem(cert: x509.Certificate, key: pki.PrivateKey, chain: list[x509.Certificate],
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
    if not _same_public_key(key, cert):
        return "the key does not belong to it"
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        return f"it is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})"
    if not chain and not _issued_by(cert, cert):
        return "it is not self-signed, and no --chain up to its root was given"
    if chain and not _issued_by(chain[-1], chain[-1]):
        return "the last certificate of --chain is not a self-signed root"
    if chain and not pki.chains_to(cert, tuple(chain[:-1]), chain[-1]):
        return "--chain does not lead from it to the root (each certificate must sign the one before)"
    for ca in chain:
        if not _is_ca(ca):
            return f"{ca.subject.rfc4514_string()} in --chain is not a CA"
    return None


def _encrypt_ca_key(key: pki.PrivateKey, passphrase: bytes, name: str) -> bytes:
    """PKCS#12 with PBES2 (AES-256-CBC, PBKDF2-SHA256, CA_KEY_KDF_ROUNDS) and an HMAC-SHA256 MAC."""
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(CA_KEY_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase)
    )
    return pkcs12.serialize_key_and_certificates(name.encode(), key, None, None, encryption)  # type: ignore[arg-type]


def _decrypt_ca_key(layout: PkiLayout, path: Path, cert: x509.Certificate, passphrase: CaPassphrase,
                    purpose: str) -> pki.PrivateKey:
    """An encrypted CA key, checked against its certificate."""
    data = _read_required(layout, path, "an encrypted CA key", "restore it from a backup")
    secret = passphrase.get(purpose)
    try:
        key, _, _ = pkcs12.load_key_and_certificates(data, secret)
    except ValueError:
        raise UserError(f"wrong passphrase for the CA key {layout.rel(path)}" + (
            f" (from ${passphrase.variable})" if passphrase.variable else ""),
            hint="set the passphrase variable named in the spec (pki.ca_passphrase_env) to the passphrase the PKI "
                 "was created with") from None
    if key is None or not _same_public_key(key, cert):  # type: ignore[arg-type]
        raise UserError(f"{layout.rel(path)} does not belong to the CA certificate it stands beside",
                        hint="restore both from the same backup")
    return key  # type: ignore[return-value]


def _checked_clear_key(layout: PkiLayout, path: Path, cert: x509.Certificate, what: str) -> pki.PrivateKey | None:
    """A CA key stored in the clear, checked against its certificate; None when there is no such file."""
    data = _read_or_none(path)
    if data is None:
        return None
    key = _parse_key(layout, data, path)
    if not _same_public_key(key, cert):
        raise UserError(f"{layout.rel(path)} ({what}) does not belong to {cert.subject.rfc4514_string()} (the key "
                        "file was replaced or damaged)",
                        hint="restore the pki/ directory from a backup. Never re-create the CA: every device trusts it")
    return key


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------- helpers


def _check_reason(reason: str) -> None:
    if reason not in pki.REVOCATION_REASONS:
        raise UserError(f"unknown revocation reason {reason!r}", hint=f"use one of: {', '.join(pki.REVOCATION_REASONS)}")


def _entry_for(cert: x509.Certificate, role: str, name: str, key_type: str,
               names: tuple[str, ...] = ()) -> IndexEntry:
    return IndexEntry(serial=cert.serial_number, subject=cert.subject.rfc4514_string(), role=role, id=name,
                      not_after=cert.not_valid_after_utc, status="valid", key_type=key_type, names=names,
                      key_sha256=public_key_sha256(cert.public_key()), issued_at=cert.not_valid_before_utc)


def _index_bytes(document: Mapping[str, Any]) -> bytes:
    """Pretty enough to read and diff (one cert per line), and fast for 10,000 certs (the C encoder)."""
    header = {k: v for k, v in document.items() if k != "certs"}
    lines = [json.dumps(entry, ensure_ascii=False) for entry in document.get("certs", [])]
    head = json.dumps(header, indent=1, ensure_ascii=False)[:-2]
    return (head + ',\n "certs": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n").encode()


def _read_index(layout: PkiLayout) -> tuple[dict[str, Any], bytes]:
    """The index document, and the digest of exactly the bytes it was parsed from (see _stat_index)."""
    hint = "restore pki/index.json from a backup"
    try:
        raw = layout.index.read_bytes()
        document = json.loads(raw)
    except FileNotFoundError:
        raise UserError(f"{layout.rel(layout.index)} is missing", hint=hint)
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{layout.rel(layout.index)} is not valid JSON ({error})", hint=hint)
    if not isinstance(document, dict) or document.get("version") != INDEX_VERSION or "ca" not in document:
        raise UserError(f"{layout.rel(layout.index)} is not a PKI index of this tool (version {INDEX_VERSION})",
                        hint=hint)
    try:
        [IndexEntry.from_json(e) for e in document.get("certs", [])]
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{layout.rel(layout.index)} has a malformed entry ({error})", hint=hint)
    return document, hashlib.sha256(raw).digest()


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _read_required(layout: PkiLayout, path: Path, what: str, hint: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{what} is missing: {layout.rel(path)}", hint=hint)
    except OSError as error:
        raise UserError(f"cannot read {what} {layout.rel(path)}: {error.strerror}",
                        hint="check the file's owner and permissions")


def _parse_cert_or_none(data: bytes | None) -> x509.Certificate | None:
    if not data:
        return None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        return None


def _read_cert_or_none(path: Path) -> x509.Certificate | None:
    return _parse_cert_or_none(_read_or_none(path))


def _load_cert_file(layout: PkiLayout, path: Path, what: str, hint: str) -> x509.Certificate:
    data = _read_required(layout, path, f"the {what}", hint)
    cert = _parse_cert_or_none(data)
    if cert is None:
        raise UserError(f"{layout.rel(path)} is not a readable PEM certificate (the {what} is corrupt)", hint=hint)
    return cert


def _load_key_file(layout: PkiLayout, path: Path, what: str, hint: str) -> pki.PrivateKey:
    data = _read_required(layout, path, f"the {what}", hint)
    return _parse_key(layout, data, path)


def _parse_key(layout: PkiLayout, data: bytes, path: Path) -> pki.PrivateKey:
    """A leaf or CA key; the file is named (relative path built) only when something is wrong with it.
    RSA's costly consistency check (~50 ms a key) is skipped: these are keys we generated, and every caller
    compares the key's public half with its cert, which catches a damaged or swapped key."""
    try:
        key = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
        if pki.key_type_of(key) in pki.KEY_TYPES:
            return key  # type: ignore[return-value]
    except Exception:
        pass
    return pki.load_private_key_pem(data, layout.rel(path))  # raises the UserError that says what is wrong


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except Exception:  # InvalidSignature, or a key type that cannot sign this way
        return False


def _same_public_key(key: pki.PrivateKey, cert: x509.Certificate) -> bool:
    return key.public_key() == cert.public_key()


def _wanted_broker_names(names: tuple[str, ...]) -> tuple[str, tuple[x509.GeneralName, ...]]:
    return (names[0][:64] if names else "", tuple(pki.broker_subject_alt_names(names)))


def _secure_dirs(layout: PkiLayout) -> None:
    """Private folders exactly 0700; public ones no looser than 0755 (a PKI made under a lax umask is repaired)."""
    for directory in (layout.private, *(layout.private / d for d in (*_ROLE_DIRS.values(), "passwords"))):
        if directory.is_dir() and (directory.stat().st_mode & 0o777) != _SECRET_DIR:
            os.chmod(directory, _SECRET_DIR)
    for directory in (layout.root, *(layout.root / d for d in _ROLE_DIRS.values())):
        if directory.is_dir() and directory.stat().st_mode & 0o022:
            os.chmod(directory, _PUBLIC_DIR)


def _unique_certs(certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    unique: list[x509.Certificate] = []
    for cert in certs:
        if cert not in unique:
            unique.append(cert)
    return unique


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    fd = _acquire_lock(path)
    try:
        yield
    finally:
        _release_lock(fd)


def _acquire_lock(path: Path) -> int | None:
    """The PKI's lock, held exclusively. A PKI in a folder this user may not write (a read-only checkout, another
    user's project) is only read: its lock file, if there is one, is locked through a read-only descriptor, and
    with none there is nothing to lock, since no one can write here. A write that this run then needs fails with
    the folder's own permission error."""
    cloexec = getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | cloexec, 0o600)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        try:
            fd = os.open(path, os.O_RDONLY | cloexec)
        except FileNotFoundError:
            return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _release_lock(fd: int | None) -> None:
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ---------------------------------------------------------------------------------------------- the spec


def open_spec_pki(spec: Any, *, create: bool = True) -> PkiStore:
    """The PKI a spec names (spec.pki.dir). With pki.ca_passphrase_env, the CA keys are encrypted with the passphrase
    in that variable, which is read only when a CA key must be decrypted (to sign) or encrypted."""
    env = getattr(spec.pki, "ca_passphrase_env", None)
    passphrase = CaPassphrase(variable=env) if env else None
    return PkiStore.open(Path(spec.pki.dir), project=spec.project, key_type=spec.pki.key_type,
                         ca_validity_days=getattr(spec.pki, "ca_validity_days", 3650), passphrase=passphrase,
                         create=create)


def ensure_spec_identities(spec: Any) -> SpecIdentities:
    """The broker identity, one identity per device that uses a client cert, the backend client, the passwords
    the auth modes need (keyed by MQTT username), and a fresh-enough CRL. What `gen generate` calls; it reuses
    everything that already exists and writes the index once."""
    from generator.spec import BACKEND_IDENTITY, DOCTOR_IDENTITY, SERVER_IDENTITIES

    store = open_spec_pki(spec)
    with store.batch():
        broker = (store.ensure_broker(spec.broker.names, validity_days=spec.pki.validity_days)
                  if spec.broker.issues_cert else None)
        devices: dict[str, Identity] = {}
        by_profile: dict[tuple[str, int], list[str]] = {}
        for device in spec.devices:
            if device.uses_client_cert:
                by_profile.setdefault((device.pki.key_type, device.pki.validity_days), []).append(device.id)
        for (key_type, validity_days), ids in by_profile.items():
            for identity in store.ensure_devices(ids, key_type=key_type, validity_days=validity_days):
                devices[identity.name] = identity
        devices = {device.id: devices[device.id] for device in spec.devices if device.id in devices}  # spec order
        server_names = getattr(spec, "server_identities", SERVER_IDENTITIES)   # with ota:, gen's OTA publisher too
        servers = {name: store.ensure_client(name, key_type=spec.pki.key_type, validity_days=spec.pki.validity_days)
                   for name in server_names}
        passwords = {device.username: store.password(device.username)
                     for device in spec.devices if device.uses_password}
        passwords.update({name: store.password(name) for name in server_names})
        crl = store.crl_pem()
    return SpecIdentities(ca_pem=store.device_trust_pem(), broker_cafile_pem=store.broker_cafile_pem(),
                          crl_pem=crl, broker=broker, backend=servers[BACKEND_IDENTITY],
                          doctor=servers[DOCTOR_IDENTITY], devices=devices, passwords=passwords)
