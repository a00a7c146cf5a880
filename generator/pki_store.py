"""The project's PKI directory on disk: created on first use, reused byte-identical after that.

Layout (default `<spec dir>/pki/`):

    ca.pem                      root CA cert: what devices embed and trust
    issuing-ca.pem              issuing intermediate: signs the broker cert, every client/device cert and the CRL
    broker.pem                  broker leaf + issuing-ca.pem appended (Mosquitto's certfile sends the chain)
    devices/<id>.pem            device leaf
    clients/<name>.pem          other clients, e.g. "backend"
    crl.pem                     the issuing CA's CRL (always present, even empty: Mosquitto needs one per issuing CA)
    index.json                  every cert issued: serial, subject, role, id, not_after, status, key_type (no secrets)
    private/ca-key.pem          root key, unencrypted PKCS#8 ...
    private/ca-key.p12          ... or, with a passphrase, PKCS#12 (PBES2, AES-256-CBC, PBKDF2-SHA256 600000 rounds)
    private/issuing-ca-key.pem  issuing CA key (unencrypted: everyday `gen generate` signs with it)
    private/broker-key.pem, private/devices/<id>-key.pem, private/clients/<name>-key.pem
    private/passwords/<username>.txt

Files under private/ are 0600 in 0700 directories, certs 0644. Every write is atomic (temp file + rename) and
skipped when the content is unchanged. CA files, the index, the CRL and passwords are fsync'ed; leaf keys and
certs are not (bulk issuing stays fast); a leaf file lost in a crash is re-issued or reported, never guessed.

The passphrase protects the *root* key only. The root key is needed once, to sign the issuing CA at creation;
after that every operation (issue, renew, revoke, CRL) uses the issuing CA key. So `gen generate` works without
the passphrase, and the root key file can be moved offline (deleting private/ca-key.* is supported). When a
passphrase is given it is always checked against the root key, if that key is present: a wrong one is an error.
Given for a root key stored unencrypted, the key is encrypted with it in place.

The CA is never regenerated silently: a missing, corrupt or foreign ca.pem / issuing-ca.pem, or an issuing key
that does not match, is a UserError. index.json records both CA fingerprints to tell a foreign CA file apart.

Public API:
    PkiStore.open(directory, *, project, key_type="ec-p256", ca_validity_days=3650, passphrase=None,
                  create=True) -> PkiStore
    store.device_trust_pem() -> bytes            root CA PEM (what devices embed)
    store.broker_cafile_pem() -> bytes           issuing CA + root PEM (Mosquitto cafile: devices send leaf only)
    store.ensure_broker(names, *, validity_days, key_type=None) -> Identity
    store.ensure_device(device_id, *, key_type, validity_days) -> Identity
    store.ensure_devices(device_ids, *, key_type, validity_days) -> list[Identity]   (one index write)
    store.ensure_client(name, *, key_type, validity_days) -> Identity
    store.batch()                                context manager: one index write for everything inside
    store.password(username) -> str;  store.existing_password(username) -> str | None
    store.crl_pem() -> bytes
    store.revoke(identity, reason="unspecified") -> None
    store.renew(identity, *, new_key, key_type=None, validity_days=None) -> Identity
    store.identity(identity) -> Identity;  store.entry(identity) -> IndexEntry;  store.entries() -> list[IndexEntry]
    store.root_ca_cert, store.issuing_ca_cert (x509.Certificate);  store.layout (PkiLayout: every path)
    open_spec_pki(spec, *, create=True) -> PkiStore;  ensure_spec_identities(spec) -> SpecIdentities
An identity is named "broker", a device id, a client name, or explicitly "device/<id>" / "client/<name>".

Mutations hold an flock on pki/.lock (one writer at a time across processes). Big batches of new devices are
issued by worker processes (fork). POSIX only. The issuing CA is valid as long as the root (ca_validity_days);
rotating it is not implemented.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import multiprocessing
import os
import secrets
from dataclasses import dataclass, field, replace
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from generator import pki
from generator.errors import UserError

INDEX_VERSION = 1
CRL_VALIDITY_DAYS = 30          # Mosquitto locks every client out past nextUpdate ...
CRL_RESIGN_FRACTION = 0.5       # ... so it is re-signed once half of that has passed
ROOT_KEY_KDF_ROUNDS = 600_000
EXPIRY_WARNING_DAYS = 30

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

    def days_left(self, now: dt.datetime) -> int:
        return (self.not_after - now).days

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
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "IndexEntry":
        return cls(
            serial=int(data["serial"], 16), subject=data["subject"], role=data["role"], id=data["id"],
            not_after=_parse_iso(data["not_after"]), status=data["status"], key_type=data["key_type"],
            revoked_at=_parse_iso(data["revoked_at"]) if data.get("revoked_at") else None,
            reason=data.get("reason"), names=tuple(data.get("names", ())),
        )


@dataclass(frozen=True)
class SpecIdentities:
    """Everything `gen generate` needs from the PKI for one spec."""

    ca_pem: bytes                       # root CA: devices embed it to verify the broker
    broker_cafile_pem: bytes            # issuing CA + root: the broker's cafile
    crl_pem: bytes                      # the broker's crlfile
    broker: Identity
    backend: Identity                   # client cert for the backend (it also gets a password)
    doctor: Identity                    # gen doctor's own client cert (and password): never the backend's
    devices: Mapping[str, Identity]     # device id -> identity, for devices whose auth includes "mtls"
    passwords: Mapping[str, str] = field(repr=False)  # username -> password: devices whose auth includes
                                                      # "password", the backend and the doctor


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
    path.mkdir(parents=True, exist_ok=True)
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

    def cert_path(self, role: str, name: str) -> Path:
        if role == "broker":
            return self.root / "broker.pem"
        return Path(f"{self.root}/{_ROLE_DIRS[role]}/{name}.pem")

    def key_path(self, role: str, name: str) -> Path:
        if role == "broker":
            return self.private / "broker-key.pem"
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
_SECRET_DIR = 0o700


# ---------------------------------------------------------------------------------------------- the store


class PkiStore:
    """A project's PKI directory. Create with `PkiStore.open`; see the module docstring."""

    def __init__(self, layout: PkiLayout, *, project: str, key_type: str, issuing: pki.CertificateAuthority,
                 root_cert: x509.Certificate, index: dict[str, Any], index_stamp: bytes):
        self.layout = layout
        self.project = project
        self.key_type = key_type
        self.root_ca_cert = root_cert
        self.issuing_ca_cert = issuing.cert
        self._issuing = issuing
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
             ca_validity_days: int = 3650, passphrase: bytes | None = None, create: bool = True) -> "PkiStore":
        layout = PkiLayout(Path(directory).resolve())
        if key_type not in pki.KEY_TYPES:
            raise UserError(f"unknown key type {key_type!r}", hint=f"use one of: {', '.join(pki.KEY_TYPES)}")
        if passphrase is not None and not passphrase:
            raise UserError("the CA passphrase is empty", hint="set the passphrase variable to a non-empty value")
        if not layout.ca_cert.exists():
            if not create:
                raise UserError(f"there is no PKI in {layout.root}", hint="create it with `gen pki init SPEC`")
            layout.root.mkdir(parents=True, exist_ok=True)
            with _flock(layout.lock):
                if not layout.ca_cert.exists():
                    _create_ca(layout, project=project, key_type=key_type, validity_days=ca_validity_days,
                               passphrase=passphrase)
        return cls._load(layout, project=project, key_type=key_type, passphrase=passphrase)

    @classmethod
    def _load(cls, layout: PkiLayout, *, project: str, key_type: str, passphrase: bytes | None) -> "PkiStore":
        restore = "restore the pki/ directory from a backup. Never re-create the CA: every device trusts it"
        root_cert = _load_cert_file(layout, layout.ca_cert, "root CA certificate", restore)
        if not _is_ca(root_cert) or not _issued_by(root_cert, root_cert):
            raise UserError(f"{layout.rel(layout.ca_cert)} is not a self-signed CA certificate", hint=restore)
        index, index_stamp = _read_index(layout)
        if index["ca"].get("root_sha256") != _fingerprint(root_cert):
            raise UserError(f"{layout.rel(layout.ca_cert)} is not the root CA this PKI was created with "
                            f"(its fingerprint differs from {layout.rel(layout.index)})", hint=restore)
        issuing_cert = _load_cert_file(layout, layout.issuing_cert, "issuing CA certificate", restore)
        if index["ca"].get("issuing_sha256") != _fingerprint(issuing_cert) or not _issued_by(issuing_cert,
                                                                                              root_cert):
            raise UserError(f"{layout.rel(layout.issuing_cert)} is not the issuing CA this PKI was created with",
                            hint=restore)
        issuing_key = _load_key_file(layout, layout.issuing_key, "issuing CA key", restore)
        if not _same_public_key(issuing_key, issuing_cert):
            raise UserError(f"{layout.rel(layout.issuing_key)} does not belong to "
                            f"{layout.rel(layout.issuing_cert)}", hint=restore)
        _secure_private_dirs(layout)
        if passphrase is not None:
            _check_root_passphrase(layout, root_cert, passphrase)
        return cls(layout, project=project, key_type=key_type, root_cert=root_cert, index=index,
                   issuing=pki.CertificateAuthority(issuing_cert, issuing_key), index_stamp=index_stamp)

    # ------------------------------------------------------------------------------------------ trust

    def device_trust_pem(self) -> bytes:
        """The root CA: what a device embeds to verify the broker (which sends leaf + issuing CA)."""
        return _cert_pem(self.root_ca_cert)

    def broker_cafile_pem(self) -> bytes:
        """Issuing CA + root: Mosquitto's cafile, enough to verify a device that sends only its leaf."""
        return _cert_pem(self.issuing_ca_cert) + _cert_pem(self.root_ca_cert)

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
        self._make_dirs_for(role)
        job = _IssueJob(str(self.layout.root), _cert_pem(self.issuing_ca_cert),
                        pki.private_key_pem(self._issuing.key), self.project, role, key_type, validity_days)
        # two workers per CPU: file creation waits on the filesystem journal, and another worker computes meanwhile
        workers = min(2 * (os.cpu_count() or 1), len(names) // _NAMES_PER_WORKER_MIN)
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            chunk = -(-len(names) // (workers * 4))
            chunks = [names[i:i + chunk] for i in range(0, len(names), chunk)]
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                results = [r for part in pool.map(job.run, chunks) for r in part]
        else:
            results = job.run(names, issuer=self._issuing)
        issued: dict[str, Identity] = {}
        for name, serial, subject, not_after, key_pem, cert_pem in results:
            self._entries.append(IndexEntry(serial=serial, subject=subject, role=role, id=name, not_after=not_after,
                                            status="valid", key_type=key_type))
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
        """The MQTT password of `username`: generated once (32 URL-safe characters), kept 0600, reused."""
        pki.check_identity_name(username, "username")
        path = self.layout.password_path(username)
        value = self.existing_password(username)
        if value:
            return value
        value = secrets.token_urlsafe(24)
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

    def revoke(self, identity: str, reason: str = "unspecified") -> None:
        """Marks the identity's current cert revoked and re-signs the CRL at once."""
        if reason not in pki.REVOCATION_REASONS:
            raise UserError(f"unknown revocation reason {reason!r}",
                            hint=f"use one of: {', '.join(pki.REVOCATION_REASONS)}")
        with self.batch():
            role, name = self._resolve_leaf(identity, "revoke")
            position = self._current[(role, name)]
            entry = self._entries[position]
            if entry.status == "revoked":
                raise UserError(f"{role} {name!r} (serial {entry.serial:X}) is already revoked",
                                hint=f"to give it a new certificate: gen pki renew SPEC {name} --new-key")
            self._entries[position] = replace(entry, status="revoked", revoked_at=_utcnow(), reason=reason)
            self._dirty = True
            self._write_crl()

    def renew(self, identity: str, *, new_key: bool, key_type: str | None = None,
              validity_days: int | None = None) -> Identity:
        """A new cert for the same key (or a new key). The old cert is marked superseded (it is not revoked:
        revoke it explicitly if its key was exposed). A revoked identity can only be renewed with a new key."""
        with self.batch():
            role, name = self._resolve_leaf(identity, "renew")
            old = self._entries[self._current[(role, name)]]
            if old.status == "revoked" and not new_key:
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

    def crl_pem(self) -> bytes:
        """The CRL, re-signed first if it is missing, stale (half its lifetime gone), or out of date with the
        index; otherwise the file as it is."""
        existing = _read_or_none(self.layout.crl)
        if existing is not None and self._crl_is_current(existing):
            return existing
        with self.batch():
            return self._write_crl()

    # ------------------------------------------------------------------------------------------ batching

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Holds the PKI lock and writes index.json once, at the end of the outermost batch."""
        if self._depth == 0:
            self._lock_fd = _acquire_lock(self.layout.lock)
            if self._stat_index() != self._index_stamp:  # another process changed the index: start from it
                fresh = PkiStore._load(self.layout, project=self.project, key_type=self.key_type, passphrase=None)
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
        common = dict(issuer=self._issuing, validity_days=validity_days, now=now, project=self.project)
        if role == "broker":
            cert = pki.issue_broker_cert(key.public_key(), names, **common)
        elif role == "device":
            cert = pki.issue_device_cert(key.public_key(), name, **common)
        else:
            cert = pki.issue_client_cert(key.public_key(), name, **common)
        cert_pem = _cert_pem(cert)
        if role == "broker":
            cert_pem += _cert_pem(self.issuing_ca_cert)
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
            (self.layout.root / _ROLE_DIRS[role]).mkdir(exist_ok=True)
        self._dirs_made = self._dirs_made | {role}

    def _record(self, cert: x509.Certificate, role: str, name: str, key_type: str, names: tuple[str, ...]) -> None:
        self._entries.append(_entry_for(cert, role, name, key_type, names))
        self._current[(role, name)] = len(self._entries) - 1
        self._dirty = True

    def _revocations(self) -> list[pki.Revocation]:
        return [pki.Revocation(e.serial, e.revoked_at or _utcnow(), pki.REVOCATION_REASONS.get(
            e.reason or "unspecified", x509.ReasonFlags.unspecified))
            for e in self._entries if e.status == "revoked" and e.role in LEAF_ROLES]

    def _crl_is_current(self, crl_pem: bytes) -> bool:
        try:
            crl = x509.load_pem_x509_crl(crl_pem)
        except ValueError:
            return False
        if crl.issuer != self.issuing_ca_cert.subject or not crl.is_signature_valid(
                self.issuing_ca_cert.public_key()):  # type: ignore[arg-type]
            return False
        if crl.next_update_utc is None:
            return False
        lifetime = crl.next_update_utc - crl.last_update_utc
        if _utcnow() >= crl.last_update_utc + lifetime * CRL_RESIGN_FRACTION:
            return False
        return {r.serial_number for r in crl} == {r.serial for r in self._revocations()}

    def _write_crl(self) -> bytes:
        number = int(self._index_header.get("crl_number", 0)) + 1
        crl = pki.build_crl(self._revocations(), issuer=self._issuing, crl_number=number, now=_utcnow(),
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
            ) -> list[tuple[str, int, str, dt.datetime, bytes, bytes]]:
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
                            cert.not_valid_after_utc, key_pem, cert_pem))
        return results


# ---------------------------------------------------------------------------------------------- creation


def _create_ca(layout: PkiLayout, *, project: str, key_type: str, validity_days: int,
               passphrase: bytes | None) -> None:
    leftovers = [p for p in (layout.issuing_cert, layout.index, layout.issuing_key, layout.cert_path("broker", "-"),
                             layout.root / "devices", layout.root / "clients") if p.exists()]
    if leftovers:
        raise UserError(
            f"{layout.rel(layout.ca_cert)} is missing, but {layout.rel(leftovers[0])} exists: this PKI was already "
            "in use", hint="restore ca.pem from a backup. Never re-create the CA: every device trusts it")
    now = _utcnow()
    root_key = pki.generate_key(key_type)
    root = pki.CertificateAuthority(pki.build_root_ca(root_key, project=project, validity_days=validity_days,
                                                      now=now), root_key)
    issuing_key = pki.generate_key(key_type)
    issuing = pki.CertificateAuthority(pki.build_issuing_ca(issuing_key, root=root, project=project,
                                                            validity_days=validity_days, now=now), issuing_key)
    _make_dir(layout.private, _SECRET_DIR)
    if passphrase is None:
        write_file_atomic(layout.root_key_plain, pki.private_key_pem(root_key), mode=_SECRET, durable=True)
    else:
        write_file_atomic(layout.root_key_encrypted, _encrypt_root_key(root_key, passphrase), mode=_SECRET,
                          durable=True)
    write_file_atomic(layout.issuing_key, pki.private_key_pem(issuing_key), mode=_SECRET, durable=True)
    write_file_atomic(layout.issuing_cert, _cert_pem(issuing.cert), mode=_PUBLIC, durable=True)
    crl = pki.build_crl([], issuer=issuing, crl_number=1, now=now, validity_days=CRL_VALIDITY_DAYS)
    write_file_atomic(layout.crl, crl.public_bytes(serialization.Encoding.PEM), mode=_PUBLIC, durable=True)
    document = {
        "version": INDEX_VERSION,
        "project": project,
        "ca": {"root_sha256": _fingerprint(root.cert), "issuing_sha256": _fingerprint(issuing.cert)},
        "crl_number": 1,
        "certs": [_entry_for(root.cert, "root-ca", "root-ca", key_type).to_json(),
                  _entry_for(issuing.cert, "issuing-ca", "issuing-ca", key_type).to_json()],
    }
    write_file_atomic(layout.index, _index_bytes(document), mode=_PUBLIC, durable=True)
    # ca.pem last: its presence is what says "this PKI exists"
    write_file_atomic(layout.ca_cert, _cert_pem(root.cert), mode=_PUBLIC, durable=True)


def _encrypt_root_key(key: pki.PrivateKey, passphrase: bytes) -> bytes:
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(ROOT_KEY_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(passphrase)
    )
    return pkcs12.serialize_key_and_certificates(b"root-ca", key, None, None, encryption)  # type: ignore[arg-type]


def _check_root_passphrase(layout: PkiLayout, root_cert: x509.Certificate, passphrase: bytes) -> None:
    if layout.root_key_encrypted.exists():
        try:
            key, _, _ = pkcs12.load_key_and_certificates(layout.root_key_encrypted.read_bytes(), passphrase)
        except ValueError:
            raise UserError(f"wrong passphrase for the root CA key {layout.rel(layout.root_key_encrypted)}",
                            hint="set the passphrase variable named in the spec (pki.ca_passphrase_env) to the "
                                 "passphrase the PKI was created with")
        if key is None or not _same_public_key(key, root_cert):  # type: ignore[arg-type]
            raise UserError(f"{layout.rel(layout.root_key_encrypted)} does not belong to "
                            f"{layout.rel(layout.ca_cert)}", hint="restore both from the same backup")
    elif layout.root_key_plain.exists():  # protect a key created before a passphrase was configured
        key = _load_key_file(layout, layout.root_key_plain, "root CA key", "restore it from a backup")
        if not _same_public_key(key, root_cert):
            raise UserError(f"{layout.rel(layout.root_key_plain)} does not belong to {layout.rel(layout.ca_cert)}",
                            hint="restore both from the same backup")
        write_file_atomic(layout.root_key_encrypted, _encrypt_root_key(key, passphrase), mode=_SECRET,
                          durable=True)
        layout.root_key_plain.unlink()


# ---------------------------------------------------------------------------------------------- helpers


def _entry_for(cert: x509.Certificate, role: str, name: str, key_type: str,
               names: tuple[str, ...] = ()) -> IndexEntry:
    return IndexEntry(serial=cert.serial_number, subject=cert.subject.rfc4514_string(), role=role, id=name,
                      not_after=cert.not_valid_after_utc, status="valid", key_type=key_type, names=names)


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


def _secure_private_dirs(layout: PkiLayout) -> None:
    for directory in (layout.private, *(layout.private / d for d in (*_ROLE_DIRS.values(), "passwords"))):
        if directory.is_dir() and (directory.stat().st_mode & 0o777) != _SECRET_DIR:
            os.chmod(directory, _SECRET_DIR)


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    fd = _acquire_lock(path)
    try:
        yield
    finally:
        _release_lock(fd)


def _acquire_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _release_lock(fd: int | None) -> None:
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ---------------------------------------------------------------------------------------------- the spec


def open_spec_pki(spec: Any, *, create: bool = True) -> PkiStore:
    """The PKI a spec names (spec.pki.dir), with the root passphrase read from the env var it names, if set."""
    env = getattr(spec.pki, "ca_passphrase_env", None)
    passphrase: bytes | None = None
    if env:
        value = os.environ.get(env)
        if value is not None:
            passphrase = value.encode()
        elif create and not PkiLayout(Path(spec.pki.dir)).ca_cert.exists():
            raise UserError(f"the spec protects the CA key with the passphrase in ${env}, but {env} is not set",
                            hint=f"export {env}=<passphrase> (keep it somewhere safe), then run again")
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
        broker = store.ensure_broker(spec.broker.names, validity_days=spec.pki.validity_days)
        devices: dict[str, Identity] = {}
        by_profile: dict[tuple[str, int], list[str]] = {}
        for device in spec.devices:
            if device.uses_client_cert:
                by_profile.setdefault((device.pki.key_type, device.pki.validity_days), []).append(device.id)
        for (key_type, validity_days), ids in by_profile.items():
            for identity in store.ensure_devices(ids, key_type=key_type, validity_days=validity_days):
                devices[identity.name] = identity
        devices = {device.id: devices[device.id] for device in spec.devices if device.id in devices}  # spec order
        servers = {name: store.ensure_client(name, key_type=spec.pki.key_type, validity_days=spec.pki.validity_days)
                   for name in SERVER_IDENTITIES}
        passwords = {device.username: store.password(device.username)
                     for device in spec.devices if device.uses_password}
        passwords.update({name: store.password(name) for name in SERVER_IDENTITIES})
        crl = store.crl_pem()
    return SpecIdentities(ca_pem=store.device_trust_pem(), broker_cafile_pem=store.broker_cafile_pem(),
                          crl_pem=crl, broker=broker, backend=servers[BACKEND_IDENTITY],
                          doctor=servers[DOCTOR_IDENTITY], devices=devices, passwords=passwords)
