"""The PKI's custody and issuing: opening (or creating) the folder, the CA keys (decrypted only to sign), the
leaf identities gen issues and reuses (broker, devices, clients), their passwords, and the index, written once per
batch under the PKI's lock. See generator.pki.store for the layout and the whole API."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

from cryptography import x509

from generator.core.errors import UserError
from generator.core.files import ensure_dir, fsync_dir, write_atomic
from generator.core.locks import acquire_lock, exclusive_lock, release_lock
from generator.pki import pool, profiles
from generator.pki.ca import (
    CaPassphrase,
    checked_clear_key,
    create_ca,
    decrypt_ca_key,
    encrypt_ca_key,
    file_sha256,
)
from generator.pki.index import (
    LEAF_ROLES,
    IndexEntry,
    IndexState,
    entry_for,
    index_bytes,
    index_digest,
)
from generator.pki.kept_secrets import kept_secret, read_secret
from generator.pki.notices import notice_missing_root_key, say_reissued
from generator.pki.layout import (
    PRIVATE_DIR_MODE,
    PUBLIC_DIR_MODE,
    PUBLIC_MODE,
    ROLE_DIRS,
    SECRET_MODE,
    PkiLayout,
    load_cert_file,
    parse_key,
    read_or_none,
    read_required,
    secure_dirs,
)
from generator.pki.pool import IssueJob
from generator.pki.x509_facts import (
    chains_to,
    fingerprint,
    is_ca,
    issued_by,
    key_matches,
    parse_cert_or_none,
    pem_of,
    unique_certs,
)
from generator.spec.contract import DEFAULT_KEY_TYPE, KEY_TYPES

EXPIRY_WARNING_DAYS = 30

log = logging.getLogger("generator.pki.store")   # what the PKI does that the user should know (the CLI prints it)
S = TypeVar("S", bound="IssuingStore")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


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



class IssuingStore:
    """A project's PKI directory: the CAs, the leaves gen issues, the index. `PkiStore` (generator.pki.store) adds
    revocation and renewal (generator.pki.lifecycle) and certificates for device-made keys (generator.pki.enrolment)."""

    def __init__(self, layout: PkiLayout, *, project: str, key_type: str, issuing_cert: x509.Certificate,
                 issuing_key: profiles.PrivateKey | None, root_cert: x509.Certificate,
                 chain: tuple[x509.Certificate, ...], index: IndexState, passphrase: CaPassphrase | None,
                 clock: Callable[[], dt.datetime]):
        self.layout = layout
        self.clock = clock              # what "now" is: the issue time of certs, the CRL's dates, expiry
        self.project = project
        self.key_type = key_type
        self.root_ca_cert = root_cert
        self.issuing_ca_cert = issuing_cert
        self.chain = chain              # certs between the issuing CA and the root (an imported CA's), else ()
        self._issuing_key = issuing_key  # None while it is encrypted and not needed yet
        self._passphrase = passphrase
        self._index = index
        self._depth = 0
        self._dirty = False
        self._lock_fd: int | None = None
        self._dirs_made: set[str] = set()  # roles whose folders this store has made (or found) already

    @classmethod
    def open(cls: type[S], directory: Path, *, project: str, key_type: str = DEFAULT_KEY_TYPE,
             ca_validity_days: int = 3650, passphrase: bytes | CaPassphrase | None = None,
             create: bool = True, clock: Callable[[], dt.datetime] = utcnow) -> S:
        """Opens (or creates) the PKI. `passphrase` protects the CA keys: bytes (checked at once) or a
        CaPassphrase (an environment variable, read only when a CA key must be decrypted or encrypted). With a
        passphrase, a CA key still stored in the clear is encrypted now; without one, encrypted keys are used
        only if nothing needs signing."""
        layout = PkiLayout(Path(directory).resolve())
        if key_type not in KEY_TYPES:
            raise UserError(f"unknown key type {key_type!r}", hint=f"use one of: {', '.join(KEY_TYPES)}")
        if isinstance(passphrase, bytes):
            passphrase = CaPassphrase(value=passphrase)
        if not layout.ca_cert.exists():
            if not create:
                raise UserError(f"there is no PKI in {layout.root}", hint="create it with `gen pki init SPEC`")
            ensure_dir(layout.root, PUBLIC_DIR_MODE)
            with exclusive_lock(layout.lock):
                if not layout.ca_cert.exists():
                    create_ca(layout, project=project, key_type=key_type, validity_days=ca_validity_days,
                              passphrase=passphrase, now=clock())
        store = cls._load(layout, project=project, key_type=key_type, passphrase=passphrase, clock=clock)
        if passphrase is not None and store._clear_ca_keys():
            with store.batch():
                store._encrypt_clear_ca_keys()
        return store

    @classmethod
    def _load(cls: type[S], layout: PkiLayout, *, project: str, key_type: str, passphrase: CaPassphrase | None,
              clock: Callable[[], dt.datetime]) -> S:
        restore = "restore the pki/ directory from a backup. Never re-create the CA: every device trusts it"
        root_cert = load_cert_file(layout, layout.ca_cert, "root CA certificate", restore)
        if not is_ca(root_cert) or not issued_by(root_cert, root_cert):
            raise UserError(f"{layout.rel(layout.ca_cert)} is not a self-signed CA certificate", hint=restore)
        state = IndexState.read(layout)
        index = state.header
        if index.get("project") != project:
            raise UserError(f"{layout.rel(layout.index)} belongs to project {index.get('project')!r}, not to "
                            f"{project!r}: this is another project's PKI",
                            hint=f"point pki.dir at this project's own PKI (or, if you renamed the project, set "
                                 f"`project: {index.get('project')}` back in the spec)")
        if index["ca"].get("root_sha256") != fingerprint(root_cert):
            raise UserError(f"{layout.rel(layout.ca_cert)} is not the root CA this PKI was created with "
                            f"(its fingerprint differs from {layout.rel(layout.index)})", hint=restore)
        issuing_cert = load_cert_file(layout, layout.issuing_cert, "issuing CA certificate", restore)
        chain = tuple(x509.load_pem_x509_certificates(layout.chain.read_bytes())) if layout.chain.exists() else ()
        if index["ca"].get("issuing_sha256") != fingerprint(issuing_cert) or not chains_to(
                issuing_cert, chain, root_cert):
            raise UserError(f"{layout.rel(layout.issuing_cert)} is not the issuing CA this PKI was created with",
                            hint=restore)
        secure_dirs(layout)
        checked_clear_key(layout, layout.root_key_plain, root_cert, "root CA key")  # checked; it signs nothing now
        issuing_key = checked_clear_key(layout, layout.issuing_key, issuing_cert, "issuing CA key")
        for encrypted, cert, what in ((layout.root_key_encrypted, root_cert, "root"),
                                      (layout.issuing_key_encrypted, issuing_cert, "issuing")):
            if not encrypted.exists():
                continue
            if passphrase is not None and passphrase.given:  # at hand: check the key itself
                key = decrypt_ca_key(layout, encrypted, cert, passphrase, f"open the {what} CA key")
                if what == "issuing":
                    issuing_key = key
            elif index["ca"].get(f"{what}_key_p12_sha256") not in (None, file_sha256(encrypted)):
                raise UserError(f"{layout.rel(encrypted)} is not the encrypted {what} CA key this PKI recorded "
                                f"(its digest differs from {layout.rel(layout.index)})", hint=restore)
        if issuing_key is None and not layout.issuing_key_encrypted.exists():
            read_required(layout, layout.issuing_key, "the issuing CA key", restore)  # raises: it is missing
        notice_missing_root_key(layout, imported=bool(index["ca"].get("imported")))
        return cls(layout, project=project, key_type=key_type, root_cert=root_cert, issuing_cert=issuing_cert,
                   issuing_key=issuing_key, chain=chain, index=state, passphrase=passphrase, clock=clock)

    @property
    def imported(self) -> bool:
        """Whether the CA was imported (`import_ca`): its root's key was never ours."""
        return bool(self._index.header.get("ca", {}).get("imported"))

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
            key = checked_clear_key(self.layout, clear, cert, f"{what} CA key")
            assert key is not None
            write_atomic(encrypted, encrypt_ca_key(key, passphrase, f"{what}-ca"), mode=SECRET_MODE,
                              durable=True)
            decrypt_ca_key(self.layout, encrypted, cert, CaPassphrase(value=passphrase), "check it")
            fsync_dir(encrypted.parent)
            self._index.header.setdefault("ca", {})[f"{what}_key_p12_sha256"] = file_sha256(encrypted)
            self._dirty = True
            clear.unlink()
            fsync_dir(clear.parent)
            log.info(f"encrypted the {what} CA key with the passphrase: {self.layout.rel(encrypted)}")

    def _signer(self, purpose: str) -> profiles.CertificateAuthority:
        """The issuing CA with its key, decrypted first if it is encrypted (asking for the passphrase `purpose`)."""
        if self._issuing_key is None:
            if self._passphrase is None:
                raise UserError(f"gen must {purpose}, but the issuing CA key "
                                f"({self.layout.rel(self.layout.issuing_key_encrypted)}) "
                                "is encrypted and the spec names no passphrase variable",
                                hint="set pki.ca_passphrase_env in the spec to the variable that holds the passphrase")
            self._issuing_key = decrypt_ca_key(self.layout, self.layout.issuing_key_encrypted, self.issuing_ca_cert,
                                                self._passphrase, purpose)
        return profiles.CertificateAuthority(self.issuing_ca_cert, self._issuing_key)

    def device_trust_pem(self) -> bytes:
        """The root CA: what a device embeds to verify the broker (which sends leaf + issuing CA)."""
        return pem_of(self.root_ca_cert)

    def broker_cafile_pem(self) -> bytes:
        """Issuing CA (+ an imported CA's intermediates) + root: Mosquitto's cafile, enough to verify a device
        that sends only its leaf."""
        certs = unique_certs([self.issuing_ca_cert, *self.chain, self.root_ca_cert])
        return b"".join(pem_of(cert) for cert in certs)

    def _broker_chain_pem(self) -> bytes:
        """What the broker sends after its leaf: the issuing CA and any intermediates (never the root)."""
        certs = [cert for cert in unique_certs([self.issuing_ca_cert, *self.chain]) if cert != self.root_ca_cert]
        return b"".join(pem_of(cert) for cert in certs)

    def ensure_broker(self, names: Sequence[str], *, validity_days: int, key_type: str | None = None) -> Identity:
        """CN = names[0]; SAN per `profiles.broker_subject_alt_names`. Re-issued with the same key when the names
        change; otherwise reused byte-identical."""
        names = tuple(names)
        if not names:
            raise UserError("the broker needs at least one name (host name or IP address)",
                            hint="set broker.host in the spec")
        profiles.broker_subject_alt_names(names)  # validates every name before anything is written
        with self.batch():
            return self._ensure_leaf("broker", "broker", key_type or self.key_type, validity_days, names)

    def ensure_device(self, device_id: str, *, key_type: str, validity_days: int) -> Identity:
        return self.ensure_devices([device_id], key_type=key_type, validity_days=validity_days)[0]

    def ensure_devices(self, device_ids: Sequence[str], *, key_type: str, validity_days: int) -> list[Identity]:
        """CN = id, SAN URI urn:dev:<id>, EKU clientAuth. Existing identities are reused; the index is written
        once for the whole batch."""
        for device_id in device_ids:
            profiles.check_identity_name(device_id, "device id")
        if key_type not in KEY_TYPES:
            raise UserError(f"unknown key type {key_type!r}", hint=f"use one of: {', '.join(KEY_TYPES)}")
        with self.batch():
            new_ids = [i for i in dict.fromkeys(device_ids) if ("device", i) not in self._index.current
                       and not self.layout.key_path("device", i).exists()]
            issued = self._issue_new_keys("device", new_ids, key_type, validity_days) if new_ids else {}
            return [issued.get(i) or self._ensure_leaf("device", i, key_type, validity_days) for i in device_ids]

    def _issue_new_keys(self, role: str, names: list[str], key_type: str, validity_days: int) -> dict[str, Identity]:
        """Fresh key + cert for each name, spread over the CPUs when there are many (fork; Linux)."""
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        signer = self._signer(f"issue {len(names)} new {role} certificate{'s' if len(names) != 1 else ''} ({shown})")
        self._make_dirs_for(role)
        job = IssueJob(str(self.layout.root), pem_of(self.issuing_ca_cert),
                        profiles.private_key_pem(signer.key), self.project, role, key_type, validity_days, self.clock())
        # two workers per CPU: file creation waits on the filesystem journal, and another worker computes meanwhile
        workers = min(2 * (os.cpu_count() or 1), len(names) // pool.names_per_worker(key_type))
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            chunk = -(-len(names) // (workers * 4))
            chunks = [names[i:i + chunk] for i in range(0, len(names), chunk)]
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as processes:
                results = [r for part in processes.map(job.run, chunks) for r in part]
        else:
            results = job.run(names, issuer=signer)
        issued: dict[str, Identity] = {}
        for name, serial, subject, not_before, not_after, key_sha256, key_pem, cert_pem in results:
            self._index.entries.append(IndexEntry(serial=serial, subject=subject, role=role, id=name,
                                            not_after=not_after, status="valid", key_type=key_type,
                                            key_sha256=key_sha256, issued_at=not_before))
            self._index.current[(role, name)] = len(self._index.entries) - 1
            issued[name] = Identity(name, role, cert_pem, key_pem, serial, not_after,
                                    self.layout.cert_path(role, name), self.layout.key_path(role, name))
        self._dirty = True
        return issued

    def ensure_client(self, name: str, *, key_type: str, validity_days: int) -> Identity:
        profiles.check_identity_name(name, "client name")
        with self.batch():
            return self._ensure_leaf("client", name, key_type, validity_days)

    def identity(self, identity: str) -> Identity:
        """An identity already issued (its current cert), e.g. for `gen pki show`."""
        role, name = self._resolve(identity)
        entry = self._index.entries[self._index.current[(role, name)]]
        cert_path, key_path = self.layout.cert_path(role, name), self.layout.key_path(role, name)
        cert_pem = read_or_none(cert_path)
        key_pem = read_or_none(key_path)
        if cert_pem is None:
            raise UserError(f"{self.layout.rel(cert_path)} is missing", hint=f"re-issue it: gen pki issue SPEC {name}")
        return Identity(name, role, cert_pem, key_pem or b"", entry.serial, entry.not_after, cert_path, key_path)

    def entry(self, identity: str) -> IndexEntry:
        role, name = self._resolve(identity)
        return self._index.entries[self._index.current[(role, name)]]

    def entries(self) -> list[IndexEntry]:
        return list(self._index.entries)

    def password(self, username: str) -> str:
        """The MQTT password of `username`: generated once (profiles.MQTT_PASSWORD_LENGTH URL-safe characters), kept
        0600, reused."""
        profiles.check_identity_name(username, "username")
        return kept_secret(self.layout.password_path(username))

    def existing_password(self, username: str) -> str | None:
        """The password of `username` if one was generated, without creating one (for `gen pki show`)."""
        profiles.check_identity_name(username, "username")
        return read_secret(self.layout.password_path(username))

    def _position(self, entry: IndexEntry) -> int:
        return next(p for p, e in enumerate(self._index.entries) if e.serial == entry.serial and e.role == entry.role)

    def index_stamp(self) -> bytes | None:
        """A digest of index.json as it is on disk now: it changes with every write, by any process."""
        return index_digest(self.layout)

    def _take_up_index(self) -> None:
        """Reads index.json again when another process (another gen, the provisioning service) changed it."""
        if self._depth == 0 and index_digest(self.layout) != self._index.stamp:
            self._index = IndexState.read(self.layout)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Holds the PKI lock and writes index.json once, at the end of the outermost batch."""
        if self._depth == 0:
            self._lock_fd = acquire_lock(self.layout.lock)
            if index_digest(self.layout) != self._index.stamp:  # another process changed the index: take it up
                self._index = IndexState.read(self.layout)
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
                    release_lock(self._lock_fd)
                    self._lock_fd = None

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
        found = [c for c in candidates if c in self._index.current]
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
        if key_type not in KEY_TYPES:
            raise UserError(f"unknown key type {key_type!r}", hint=f"use one of: {', '.join(KEY_TYPES)}")
        layout = self.layout
        cert_path, key_path = layout.cert_path(role, name), layout.key_path(role, name)
        what = "the broker" if role == "broker" else f"{role} {name!r}"
        position = self._index.current.get((role, name))
        if position is None:
            return self._adopt_or_issue(role, name, key_type, validity_days, names)
        entry = self._index.entries[position]
        if entry.status == "revoked":
            raise UserError(f"{what} is revoked (serial {entry.serial:X})",
                            hint=f"remove it from the spec, or give it a new key: gen pki renew SPEC {name} --new-key")
        key_pem = read_required(layout, key_path, f"the key of {what}",
                                 f"issue a new key: gen pki renew SPEC {name} --new-key")
        key = parse_key(layout, key_pem, key_path)
        if profiles.key_type_of(key) != key_type:
            raise UserError(f"{what} has a {profiles.key_type_of(key)} key, but {key_type} is asked for",
                            hint=f"switch keys explicitly: gen pki renew SPEC {name} --new-key")
        cert_pem = read_or_none(cert_path)
        cert = parse_cert_or_none(cert_pem)
        if cert is not None and cert.serial_number == entry.serial and not key_matches(key, cert):
            raise UserError(f"{layout.rel(key_path)} does not belong to {layout.rel(cert_path)} (the key file was "
                            "replaced or damaged)", hint=f"restore the key from a backup, or issue a new one: "
                                                         f"gen pki renew SPEC {name} --new-key")
        reissue = (cert is None or cert_pem is None or cert.serial_number != entry.serial
                   or (role == "broker" and profiles.broker_names_of(cert) != _wanted_broker_names(names)))
        if reissue:  # a lost/corrupt cert file (public data) or new broker names: same key, new cert
            say_reissued(layout, role, what, names, cert, entry.serial, cert_path)
            self._index.entries[position] = replace(entry, status="superseded")
            del self._index.current[(role, name)]
            self._dirty = True
            return self._issue(role, name, key, key_pem, validity_days, names, write_key=False)
        assert cert_pem is not None   # reissue otherwise
        return Identity(name, role, cert_pem, key_pem, entry.serial, entry.not_after, cert_path, key_path)

    def _adopt_or_issue(self, role: str, name: str, key_type: str, validity_days: int,
                        names: tuple[str, ...]) -> Identity:
        """No index entry: either a fresh identity, or files left by a run interrupted before its index write."""
        cert_path, key_path = self.layout.cert_path(role, name), self.layout.key_path(role, name)
        key_pem = read_or_none(key_path)
        if key_pem is None:
            key = profiles.generate_key(key_type)
            return self._issue(role, name, key, profiles.private_key_pem(key), validity_days, names, write_key=True)
        key = parse_key(self.layout, key_pem, key_path)
        if profiles.key_type_of(key) != key_type:
            raise UserError(f"{self.layout.rel(key_path)} holds a {profiles.key_type_of(key)} key, not {key_type}",
                            hint="delete that key file if nothing uses it yet, or change key_type in the spec")
        cert_pem = read_or_none(cert_path)
        cert = parse_cert_or_none(cert_pem)
        if (cert is not None and cert_pem is not None and issued_by(cert, self.issuing_ca_cert)
                and key_matches(key, cert)
                and (role != "broker" or profiles.broker_names_of(cert) == _wanted_broker_names(names))):
            self._record(cert, role, name, key_type, names)
            return Identity(name, role, cert_pem, key_pem, cert.serial_number, cert.not_valid_after_utc,
                            cert_path, key_path)
        return self._issue(role, name, key, key_pem, validity_days, names, write_key=False)

    def _issue(self, role: str, name: str, key: profiles.PrivateKey, key_pem: bytes, validity_days: int,
               names: tuple[str, ...], *, write_key: bool) -> Identity:
        cert_path, key_path = self.layout.cert_path(role, name), self.layout.key_path(role, name)
        now = self.clock()
        what = "the broker" if role == "broker" else f"{role} {name}"
        issuer = self._signer(f"issue a certificate for {what}")
        if role == "broker":
            cert = profiles.issue_broker_cert(key.public_key(), names, issuer=issuer, validity_days=validity_days,
                                              now=now, project=self.project)
        else:
            issue = profiles.issue_device_cert if role == "device" else profiles.issue_client_cert
            cert = issue(key.public_key(), name, issuer=issuer, validity_days=validity_days, now=now,
                         project=self.project)
        cert_pem = pem_of(cert)
        if role == "broker":
            cert_pem += self._broker_chain_pem()
        self._make_dirs_for(role)
        if write_key:
            write_atomic(key_path, key_pem, mode=SECRET_MODE, fresh=True)
        write_atomic(cert_path, cert_pem, mode=PUBLIC_MODE, fresh=True)  # a new serial: always new bytes
        self._record(cert, role, name, profiles.key_type_of(key), names)
        return Identity(name, role, cert_pem, key_pem, cert.serial_number, cert.not_valid_after_utc,
                        cert_path, key_path)

    def _make_dirs_for(self, role: str) -> None:
        if role in self._dirs_made:
            return
        ensure_dir(self.layout.private, PRIVATE_DIR_MODE)
        if role in ROLE_DIRS:
            ensure_dir(self.layout.private / ROLE_DIRS[role], PRIVATE_DIR_MODE)
            ensure_dir(self.layout.root / ROLE_DIRS[role], PUBLIC_DIR_MODE)
        self._dirs_made.add(role)

    def _record(self, cert: x509.Certificate, role: str, name: str, key_type: str, names: tuple[str, ...]) -> None:
        self._index.entries.append(entry_for(cert, role, name, key_type, names))
        self._index.current[(role, name)] = len(self._index.entries) - 1
        self._dirty = True

    def _write_index(self) -> None:
        write_atomic(self.layout.index, index_bytes(self._index.document()), mode=PUBLIC_MODE, durable=True)
        self._index.stamp = index_digest(self.layout)


def _wanted_broker_names(names: tuple[str, ...]) -> tuple[str, tuple[x509.GeneralName, ...]]:
    return (names[0][:64] if names else "", tuple(profiles.broker_subject_alt_names(names)))
