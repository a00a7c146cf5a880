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
    (spec_identities.py: open_spec_pki(spec, *, create=True) -> PkiStore;  ensure_spec_identities(spec))
An identity is named "broker", a device id, a client name, or explicitly "device/<id>" / "client/<name>".

Mutations hold an flock on pki/.lock (one writer at a time across processes). Big batches of new devices are
issued by worker processes (fork). POSIX only. The issuing CA is valid as long as the root (ca_validity_days);
rotating it is not implemented.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import secrets
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from generator.core.errors import UserError
from generator.core.files import ensure_dir, fsync_dir, write_atomic
from generator.core.locks import acquire_lock, exclusive_lock, release_lock
from generator.pki import profiles as pki
from generator.pki.ca import (
    CRL_RESIGN_FRACTION,
    CRL_VALIDITY_DAYS,
    IMPORT_HINT,
    CaPassphrase,
    checked_clear_key,
    create_ca,
    decrypt_ca_key,
    encrypt_ca_key,
    file_sha256,
    import_problem,
    load_import_key,
    parse_import_certs,
    refuse_leftovers,
    write_ca_files,
    write_ca_key,
)
from generator.pki.index import (
    LEAF_ROLES,
    DeviceStanding,
    IndexEntry,
    IndexState,
    device_standing,
    entry_for,
    index_bytes,
    index_digest,
    iso,
)
from generator.pki.layout import (
    PRIVATE_DIR_MODE,
    PUBLIC_DIR_MODE,
    PUBLIC_MODE,
    ROLE_DIRS,
    SECRET_MODE,
    PkiLayout,
    load_cert_file,
    parse_key,
    read_cert_or_none,
    read_or_none,
    read_required,
    secure_dirs,
)
from generator.pki.pool import NAMES_PER_WORKER_MIN, IssueJob
from generator.pki.x509_facts import (
    chains_to,
    fingerprint,
    is_ca,
    issued_by,
    key_matches,
    parse_cert_or_none,
    pem_of,
    public_key_sha256,
    unique_certs,
)

EXPIRY_WARNING_DAYS = 30

log = logging.getLogger(__name__)   # what the PKI does that the user should know (the CLI prints it to stderr)


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


class PkiStore:
    """A project's PKI directory. Create with `PkiStore.open`; see the module docstring."""

    def __init__(self, layout: PkiLayout, *, project: str, key_type: str, issuing_cert: x509.Certificate,
                 issuing_key: pki.PrivateKey | None, root_cert: x509.Certificate,
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

    # ------------------------------------------------------------------------------------------ open

    @classmethod
    def open(cls, directory: Path, *, project: str, key_type: str = pki.DEFAULT_KEY_TYPE,
             ca_validity_days: int = 3650, passphrase: bytes | CaPassphrase | None = None,
             create: bool = True, clock: Callable[[], dt.datetime] = utcnow) -> "PkiStore":
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
    def _load(cls, layout: PkiLayout, *, project: str, key_type: str, passphrase: CaPassphrase | None,
              clock: Callable[[], dt.datetime]) -> "PkiStore":
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
        _notice_missing_root_key(layout, imported=bool(index["ca"].get("imported")))
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

    def _signer(self, purpose: str) -> pki.CertificateAuthority:
        """The issuing CA with its key, decrypted first if it is encrypted (asking for the passphrase `purpose`)."""
        if self._issuing_key is None:
            if self._passphrase is None:
                raise UserError(f"gen must {purpose}, but the issuing CA key ({self.layout.rel(self.layout.issuing_key_encrypted)}) "
                                "is encrypted and the spec names no passphrase variable",
                                hint="set pki.ca_passphrase_env in the spec to the variable that holds the passphrase")
            self._issuing_key = decrypt_ca_key(self.layout, self.layout.issuing_key_encrypted, self.issuing_ca_cert,
                                                self._passphrase, purpose)
        return pki.CertificateAuthority(self.issuing_ca_cert, self._issuing_key)

    # ------------------------------------------------------------------------------------------ trust

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
                        pki.private_key_pem(signer.key), self.project, role, key_type, validity_days, self.clock())
        # two workers per CPU: file creation waits on the filesystem journal, and another worker computes meanwhile
        workers = min(2 * (os.cpu_count() or 1), len(names) // NAMES_PER_WORKER_MIN)
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            chunk = -(-len(names) // (workers * 4))
            chunks = [names[i:i + chunk] for i in range(0, len(names), chunk)]
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                results = [r for part in pool.map(job.run, chunks) for r in part]
        else:
            results = job.run(names, issuer=signer)
        issued: dict[str, Identity] = {}
        for name, serial, subject, not_before, not_after, key_sha256, key_pem, cert_pem in results:
            self._index.entries.append(IndexEntry(serial=serial, subject=subject, role=role, id=name, not_after=not_after,
                                            status="valid", key_type=key_type, key_sha256=key_sha256,
                                            issued_at=not_before))
            self._index.current[(role, name)] = len(self._index.entries) - 1
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
        """The MQTT password of `username`: generated once (pki.MQTT_PASSWORD_LENGTH URL-safe characters), kept
        0600, reused."""
        pki.check_identity_name(username, "username")
        return _kept_secret(self.layout.password_path(username))

    def existing_password(self, username: str) -> str | None:
        """The password of `username` if one was generated, without creating one (for `gen pki show`)."""
        pki.check_identity_name(username, "username")
        return _read_secret(self.layout.password_path(username))

    # ------------------------------------------------------------------------------------------ device-born keys

    def bootstrap_secret(self, device_id: str) -> str:
        """The first-boot password of a device that makes its own key: generated once, kept 0600, reused. The
        broker accepts it (as user <id>@bootstrap, on the bootstrap listener) only while the device has no identity."""
        pki.check_identity_name(device_id, "device id")
        return _kept_secret(self.layout.bootstrap_secret_path(device_id))

    def standing(self, device_id: str) -> DeviceStanding:
        """What the index says about a device that makes its own key: its live cert, a pending one, rotation."""
        self._take_up_index()
        return device_standing(self._index, device_id, self.clock())

    def certified_key(self, key_sha256: str) -> list[IndexEntry]:
        """Every certificate this PKI ever issued for the public key with this digest, whatever its status."""
        self._take_up_index()
        return [entry for entry in self._index.entries if entry.key_sha256 == key_sha256]

    def issue_from_public_key(self, device_id: str, public_key: pki.PublicKey, *, validity_days: int,
                              request: str, via: str, renew_at: Callable[[dt.datetime], dt.datetime]
                              ) -> tuple[IndexEntry, bytes]:
        """A device cert for a key the device made (its CSR, checked by the caller): written to devices/<id>.pem,
        recorded in the index as "pending" until the device confirms it connects. A pending cert of another key
        is revoked first (the device abandoned it). `renew_at(not_after)` says when the device should renew.
        No key file is written: the key never leaves the device. Returns the entry and the chain (leaf + issuing
        CA + intermediates) the device presents."""
        pki.check_identity_name(device_id, "device id")
        with self.batch():
            standing = device_standing(self._index, device_id, self.clock())
            if standing.pending is not None:
                self._revoke_positions([self._position(standing.pending)], "superseded",
                                       f"re-sign the CRL to revoke {device_id}'s abandoned pending certificate")
            issuer = self._signer(f"issue a certificate for device {device_id} from its CSR")
            cert = pki.issue_device_cert(public_key, device_id, issuer=issuer, validity_days=validity_days,
                                         now=self.clock(), project=self.project)
            cert_pem = pem_of(cert)
            self._make_dirs_for("device")
            write_atomic(self.layout.cert_path("device", device_id), cert_pem, mode=PUBLIC_MODE, fresh=True)
            entry = replace(entry_for(cert, "device", device_id, pki.key_type_of(public_key)), status="pending",
                            request=request, via=via, renew_at=renew_at(cert.not_valid_after_utc))
            self._index.entries.append(entry)
            self._index.current[("device", device_id)] = len(self._index.entries) - 1
            self._dirty = True
            return entry, cert_pem + self._broker_chain_pem()

    def chain_pem(self, entry: IndexEntry) -> bytes:
        """A device cert issued from its CSR (devices/<id>.pem while it is the latest), with the issuing chain."""
        cert = read_cert_or_none(self.layout.cert_path("device", entry.id))
        if cert is None or cert.serial_number != entry.serial:
            raise UserError(f"{self.layout.rel(self.layout.cert_path('device', entry.id))} is not the certificate "
                            f"serial {entry.serial:X} the index lists", hint="restore pki/ from a backup")
        return pem_of(cert) + self._broker_chain_pem()

    def confirm(self, device_id: str, serial: int) -> list[IndexEntry]:
        """The device connects with its pending cert `serial` and has switched to it for good: the cert becomes
        its live identity, every other unexpired cert of the device is revoked (superseded) and the CRL re-signed,
        a rotation request is done. Returns the entries revoked (none when it was confirmed already)."""
        with self.batch():
            standing = device_standing(self._index, device_id, self.clock())
            if standing.live is not None and standing.live.serial == serial and standing.pending is None:
                return []
            if standing.pending is None or standing.pending.serial != serial:
                raise UserError(f"device {device_id} has no pending certificate serial {serial:X}")
            position = self._position(standing.pending)
            self._index.entries[position] = replace(standing.pending, status="valid", confirmed_at=self.clock())
            self._index.current[("device", device_id)] = position
            self._index.header.get("rotations", {}).pop(device_id, None)
            reopened = self._index.header.get("bootstrap_reopened", [])
            if device_id in reopened:
                reopened.remove(device_id)
            self._dirty = True
            now = self.clock()
            older = [p for p, e in enumerate(self._index.entries) if (e.role, e.id) == ("device", device_id)
                     and p != position and e.status in ("valid", "pending", "superseded") and not e.expired(now)]
            if not older:
                return []
            return self._revoke_positions(older, "superseded", f"re-sign the CRL: device {device_id} rotated")

    def abandon(self, device_id: str, serial: int) -> list[IndexEntry]:
        """The device reports its pending cert `serial` failed its trial connect: it is revoked (superseded)."""
        with self.batch():
            standing = device_standing(self._index, device_id, self.clock())
            if standing.pending is None or standing.pending.serial != serial:
                return []
            revoked = self._revoke_positions([self._position(standing.pending)], "superseded",
                                             f"re-sign the CRL to revoke {device_id}'s failed certificate")
            if standing.live is not None:
                self._index.current[("device", device_id)] = self._position(standing.live)
            return revoked

    def request_rotation(self, device_id: str) -> None:
        """`gen pki rotate SPEC --device ID`: the provisioning service tells the device to make a fresh key and
        send a CSR; the request stands until the new cert is confirmed."""
        with self.batch():
            if ("device", device_id) not in self._index.current:
                raise UserError(f"device {device_id!r} has no certificate yet: there is nothing to rotate",
                                hint="it gets its first one when it boots and `gen provision serve SPEC` runs")
            self._index.header.setdefault("rotations", {})[device_id] = iso(self.clock())
            self._dirty = True

    def reopen_bootstrap(self, device_id: str) -> None:
        """`gen provision allow SPEC --device ID`: a device whose stored identity was erased may log in with its
        bootstrap password once more. Only when it has no live identity (revoke the old one first)."""
        with self.batch():
            standing = device_standing(self._index, device_id, self.clock())
            if standing.live is not None or standing.pending is not None:
                which = standing.live or standing.pending
                assert which is not None
                raise UserError(f"device {device_id!r} still has a valid certificate (serial {which.serial:X}); "
                                "whoever holds it would keep working", hint=f"revoke it first: gen pki revoke SPEC {device_id}")
            reopened = self._index.header.setdefault("bootstrap_reopened", [])
            if device_id not in reopened:
                reopened.append(device_id)
                self._dirty = True

    def allow_reissues(self, device_id: str) -> int:
        """`gen provision allow SPEC --device ID` for a device that got certificates it never confirmed: the count
        starts again from now. Returns how many were unconfirmed."""
        with self.batch():
            unconfirmed = device_standing(self._index, device_id, self.clock()).unconfirmed_issues
            self._index.header.setdefault("reissues_allowed_from", {})[device_id] = len(self._index.entries)
            self._dirty = True
            return unconfirmed

    def _position(self, entry: IndexEntry) -> int:
        return next(p for p, e in enumerate(self._index.entries) if e.serial == entry.serial and e.role == entry.role)

    def index_stamp(self) -> bytes | None:
        """A digest of index.json as it is on disk now: it changes with every write, by any process."""
        return index_digest(self.layout)

    def _take_up_index(self) -> None:
        """Reads index.json again when another process (another gen, the provisioning service) changed it."""
        if self._depth == 0 and index_digest(self.layout) != self._index.stamp:
            self._index = IndexState.read(self.layout)

    # ------------------------------------------------------------------------------------------ revocation

    def revoke(self, identity: str, reason: str = "unspecified") -> list[IndexEntry]:
        """Revokes every unexpired certificate of the identity: its current one and every earlier one (a renewal
        keeps the old certificate valid, and a stolen board may still carry it), then re-signs the CRL at once.
        Returns the entries revoked."""
        _check_reason(reason)
        with self.batch():
            role, name = self._resolve_leaf(identity, "revoke")
            now = self.clock()
            positions = [position for position, entry in enumerate(self._index.entries)
                         if (entry.role, entry.id) == (role, name) and entry.status != "revoked"
                         and not entry.expired(now)]
            if not positions:
                current = self._index.entries[self._index.current[(role, name)]]
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
            now = self.clock()
            matching = [position for position, entry in enumerate(self._index.entries) if entry.key_sha256 == digest]
            if any(self._index.entries[position].role not in LEAF_ROLES for position in matching):
                raise UserError("that is a CA key: a CA cannot be revoked here",
                                hint="a compromised CA means a new PKI: every device must be re-provisioned")
            positions = [position for position in matching if self._index.entries[position].status != "revoked"
                         and not self._index.entries[position].expired(now)]
            if not positions:
                unknown = sum(1 for entry in self._index.entries if entry.key_sha256 is None and entry.role in LEAF_ROLES
                              and entry.status != "revoked" and not entry.expired(now))
                raise UserError("no unrevoked, unexpired certificate of this PKI certifies that key" + (
                    f" ({unknown} older certificates were recorded without their key: revoke those by identity)"
                    if unknown else ""), hint="see every certificate and its key with `gen pki list SPEC`")
            return self._revoke_positions(positions, reason, "re-sign the CRL to revoke a key")

    def _revoke_positions(self, positions: list[int], reason: str, purpose: str) -> list[IndexEntry]:
        now = self.clock()
        for position in positions:
            self._index.entries[position] = replace(self._index.entries[position], status="revoked", revoked_at=now,
                                              reason=reason)
        self._dirty = True
        self._write_crl(purpose)
        return [self._index.entries[position] for position in positions]

    def _record_current_key_digests(self) -> None:
        """Index entries written before keys were recorded get their key digest from their cert file, when the
        file still holds that very cert (an earlier cert of the identity is gone: its key stays unknown)."""
        for (role, name), position in self._index.current.items():
            entry = self._index.entries[position]
            if entry.key_sha256 is not None or role not in LEAF_ROLES:
                continue
            cert = read_cert_or_none(self.layout.cert_path(role, name))
            if cert is not None and cert.serial_number == entry.serial:
                self._index.entries[position] = replace(entry, key_sha256=public_key_sha256(cert.public_key()))
                self._dirty = True

    def history(self) -> list[tuple[str, str, list[IndexEntry]]]:
        """Every identity (role, name) with all its certificates, oldest first; identities in order of issue."""
        grouped: dict[tuple[str, str], list[IndexEntry]] = {}
        for entry in self._index.entries:
            grouped.setdefault((entry.role, entry.id), []).append(entry)
        return [(role, name, entries) for (role, name), entries in grouped.items()]

    def renew(self, identity: str, *, new_key: bool, key_type: str | None = None,
              validity_days: int | None = None) -> Identity:
        """A new cert for the same key (or a new key). The old cert is marked superseded (it is not revoked:
        revoke it explicitly if its key was exposed). A revoked identity can only be renewed with a new key."""
        with self.batch():
            role, name = self._resolve_leaf(identity, "renew")
            old = self._index.entries[self._index.current[(role, name)]]
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
                key_pem = read_required(self.layout, key_path, f"{role} {name!r} key",
                                         f"issue a new key: gen pki renew SPEC {name} --new-key")
                key = parse_key(self.layout, key_pem, key_path)
                old_cert = read_cert_or_none(self.layout.cert_path(role, name))
                if old_cert is not None and not key_matches(key, old_cert):
                    raise UserError(f"{self.layout.rel(key_path)} does not belong to {role} {name!r}'s certificate",
                                    hint=f"restore the key from a backup, or: gen pki renew SPEC {name} --new-key")
            if validity_days is None:
                old_cert = read_cert_or_none(self.layout.cert_path(role, name))
                validity_days = (max(1, (old_cert.not_valid_after_utc - old_cert.not_valid_before_utc).days)
                                 if old_cert is not None else 365)
            if old.status != "revoked":
                self._index.entries[self._index.current[(role, name)]] = replace(old, status="superseded")
            del self._index.current[(role, name)]
            self._dirty = True
            return self._issue(role, name, key, key_pem, validity_days, old.names, write_key=new_key)

    def _key_was_revoked(self, role: str, name: str) -> bool:
        """Whether a certificate for the identity's current key was ever revoked (by identity or by key)."""
        cert = read_cert_or_none(self.layout.cert_path(role, name))
        if cert is None:
            return False
        digest = public_key_sha256(cert.public_key())
        return any(entry.status == "revoked" and entry.key_sha256 == digest for entry in self._index.entries)

    def crl_pem(self) -> bytes:
        """The CRL, re-signed first if it is missing, stale (half its lifetime gone), or out of date with the
        index; otherwise the file as it is (and no CA key is needed)."""
        existing = read_or_none(self.layout.crl)
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
        if key_type not in pki.KEY_TYPES:
            raise UserError(f"unknown key type {key_type!r}", hint=f"use one of: {', '.join(pki.KEY_TYPES)}")
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
        if pki.key_type_of(key) != key_type:
            raise UserError(f"{what} has a {pki.key_type_of(key)} key, but {key_type} is asked for",
                            hint=f"switch keys explicitly: gen pki renew SPEC {name} --new-key")
        cert_pem = read_or_none(cert_path)
        cert = parse_cert_or_none(cert_pem)
        if cert is not None and cert.serial_number == entry.serial and not key_matches(key, cert):
            raise UserError(f"{layout.rel(key_path)} does not belong to {layout.rel(cert_path)} (the key file was "
                            "replaced or damaged)", hint=f"restore the key from a backup, or issue a new one: "
                                                         f"gen pki renew SPEC {name} --new-key")
        reissue = (cert is None or cert_pem is None or cert.serial_number != entry.serial
                   or (role == "broker" and pki.broker_names_of(cert) != _wanted_broker_names(names)))
        if reissue:  # a lost/corrupt cert file (public data) or new broker names: same key, new cert
            if cert is not None and cert.serial_number == entry.serial and role == "broker":
                had = ", ".join(dict.fromkeys(str(name.value) for name in pki.broker_names_of(cert)[1])) or "none"
                log.warning(f"re-issued the broker certificate {layout.rel(cert_path)} (same key) for the names "
                            f"{', '.join(names)} (it had {had}): install it on the broker (gen broker apply SPEC, "
                            "or copy OUT/broker/ where it runs)")
            else:
                log.warning(f"re-issued the certificate of {what} {layout.rel(cert_path)} (same key): its file was "
                            "missing or not the one the index records")
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
            key = pki.generate_key(key_type)
            return self._issue(role, name, key, pki.private_key_pem(key), validity_days, names, write_key=True)
        key = parse_key(self.layout, key_pem, key_path)
        if pki.key_type_of(key) != key_type:
            raise UserError(f"{self.layout.rel(key_path)} holds a {pki.key_type_of(key)} key, not {key_type}",
                            hint="delete that key file if nothing uses it yet, or change key_type in the spec")
        cert_pem = read_or_none(cert_path)
        cert = parse_cert_or_none(cert_pem)
        if (cert is not None and cert_pem is not None and issued_by(cert, self.issuing_ca_cert)
                and key_matches(key, cert)
                and (role != "broker" or pki.broker_names_of(cert) == _wanted_broker_names(names))):
            self._record(cert, role, name, key_type, names)
            return Identity(name, role, cert_pem, key_pem, cert.serial_number, cert.not_valid_after_utc,
                            cert_path, key_path)
        return self._issue(role, name, key, key_pem, validity_days, names, write_key=False)

    def _issue(self, role: str, name: str, key: pki.PrivateKey, key_pem: bytes, validity_days: int,
               names: tuple[str, ...], *, write_key: bool) -> Identity:
        cert_path, key_path = self.layout.cert_path(role, name), self.layout.key_path(role, name)
        now = self.clock()
        what = "the broker" if role == "broker" else f"{role} {name}"
        issuer = self._signer(f"issue a certificate for {what}")
        if role == "broker":
            cert = pki.issue_broker_cert(key.public_key(), names, issuer=issuer, validity_days=validity_days, now=now,
                                         project=self.project)
        else:
            issue = pki.issue_device_cert if role == "device" else pki.issue_client_cert
            cert = issue(key.public_key(), name, issuer=issuer, validity_days=validity_days, now=now,
                         project=self.project)
        cert_pem = pem_of(cert)
        if role == "broker":
            cert_pem += self._broker_chain_pem()
        self._make_dirs_for(role)
        if write_key:
            write_atomic(key_path, key_pem, mode=SECRET_MODE, fresh=True)
        write_atomic(cert_path, cert_pem, mode=PUBLIC_MODE, fresh=True)  # a new serial: always new bytes
        self._record(cert, role, name, pki.key_type_of(key), names)
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

    def _revocations(self) -> list[pki.Revocation]:
        return [pki.Revocation(e.serial, e.revoked_at or self.clock(), pki.REVOCATION_REASONS.get(
            e.reason or "unspecified", x509.ReasonFlags.unspecified))
            for e in self._index.entries if e.status == "revoked" and e.role in LEAF_ROLES]

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
        if self.clock() >= crl.last_update_utc + lifetime * CRL_RESIGN_FRACTION:
            return f"it is due: Mosquitto refuses every client once it passes {crl.next_update_utc:%Y-%m-%d}"
        if {r.serial_number for r in crl} != {r.serial for r in self._revocations()}:
            return "it differs from the index"
        return None

    def _write_crl(self, purpose: str) -> bytes:
        number = int(self._index.header.get("crl_number", 0)) + 1
        crl = pki.build_crl(self._revocations(), issuer=self._signer(purpose), crl_number=number, now=self.clock(),
                            validity_days=CRL_VALIDITY_DAYS)
        data = crl.public_bytes(serialization.Encoding.PEM)
        write_atomic(self.layout.crl, data, mode=PUBLIC_MODE, durable=True)
        self._index.header["crl_number"] = number
        self._dirty = True
        return data

    def _write_index(self) -> None:
        write_atomic(self.layout.index, index_bytes(self._index.document()), mode=PUBLIC_MODE, durable=True)
        self._index.stamp = index_digest(self.layout)


def import_ca(directory: Path, *, project: str, cert_pem: bytes, key_pem: bytes, chain_pem: bytes = b"",
              passphrase: CaPassphrase | None = None, cert_name: str = "the CA certificate",
              key_name: str = "the CA key", clock: Callable[[], dt.datetime] = utcnow) -> "PkiStore":
    """A new PKI that issues from an existing CA (a corporate or team CA): its certificate and key, and, when it
    is not self-signed, the chain up to its self-signed root. Devices trust that root; the CA's key signs the
    broker and device certs and the CRL. Only into a directory that holds no PKI yet. The key is stored
    encrypted with the passphrase when there is one (an encrypted key file is read with the same passphrase)."""
    layout = PkiLayout(Path(directory).resolve())
    if layout.ca_cert.exists():
        raise UserError(f"{layout.root} already holds a PKI; gen never replaces a CA",
                        hint="import into a new project (or a new pki.dir), then move the devices over")
    issuing_cert = parse_import_certs(cert_pem, cert_name)[0]
    chain = parse_import_certs(chain_pem, "the chain") if chain_pem.strip() else []
    key = load_import_key(key_pem, key_name, passphrase)
    problem = import_problem(issuing_cert, key, chain, clock())
    if problem:
        raise UserError(f"cannot issue from {cert_name}: {problem}", hint=IMPORT_HINT)
    root = chain[-1] if chain else issuing_cert
    between = tuple(chain[:-1])
    ensure_dir(layout.root, PUBLIC_DIR_MODE)
    with exclusive_lock(layout.lock):
        if layout.ca_cert.exists():
            raise UserError(f"{layout.root} already holds a PKI; gen never replaces a CA")
        refuse_leftovers(layout)
        secret = passphrase.get("store the imported CA key encrypted") if passphrase else None
        ensure_dir(layout.private, PRIVATE_DIR_MODE)
        ca: dict[str, Any] = {"root_sha256": fingerprint(root), "issuing_sha256": fingerprint(issuing_cert),
                              "imported": True}
        ca.update(write_ca_key(layout, key, "issuing", secret))
        write_ca_files(layout, project=project, root=root, issuing=pki.CertificateAuthority(issuing_cert, key),
                       chain=between, ca=ca, key_types=(pki.key_type_of(root.public_key()),  # type: ignore[arg-type]
                                                        pki.key_type_of(key)), now=clock())
    log.info(f"imported {issuing_cert.subject.rfc4514_string()} to issue from; devices will trust "
             f"{root.subject.rfc4514_string()}")
    return PkiStore.open(layout.root, project=project, passphrase=passphrase, create=False, clock=clock)


def _check_reason(reason: str) -> None:
    if reason not in pki.REVOCATION_REASONS:
        raise UserError(f"unknown revocation reason {reason!r}", hint=f"use one of: {', '.join(pki.REVOCATION_REASONS)}")


_NOTICED_MISSING_ROOT_KEYS: set[Path] = set()


def _notice_missing_root_key(layout: PkiLayout, *, imported: bool) -> None:
    """Says once per run that the root CA key is not in private/ (neither in the clear nor encrypted): issuing goes
    on (the issuing CA signs), but a new issuing CA, or a CRL of the root, needs it back."""
    if imported or layout.root in _NOTICED_MISSING_ROOT_KEYS:
        return
    if layout.root_key_plain.exists() or layout.root_key_encrypted.exists():
        return
    _NOTICED_MISSING_ROOT_KEYS.add(layout.root)
    log.warning(f"the root CA key is not in {layout.rel(layout.root_key_plain.parent)}/ (neither "
                f"{layout.root_key_plain.name} nor {layout.root_key_encrypted.name}): issuing goes on, but a new "
                "issuing CA needs it. If you moved it offline on purpose, keep that copy safe; otherwise restore it "
                "from your backup now")


def _wanted_broker_names(names: tuple[str, ...]) -> tuple[str, tuple[x509.GeneralName, ...]]:
    return (names[0][:64] if names else "", tuple(pki.broker_subject_alt_names(names)))


def _read_secret(path: Path) -> str | None:
    """A generated secret (one line in a 0600 file), or None when there is none yet."""
    existing = read_or_none(path)
    value = existing.decode("utf-8", "replace").strip() if existing else ""
    return value or None


def _kept_secret(path: Path) -> str:
    """The secret in `path`: the one generated before, else a new one (pki.MQTT_PASSWORD_LENGTH URL-safe characters),
    written 0600 in a 0700 folder and kept."""
    value = _read_secret(path)
    if value:
        return value
    value = secrets.token_urlsafe(pki.MQTT_PASSWORD_LENGTH * 3 // 4)
    ensure_dir(path.parent, PRIVATE_DIR_MODE)
    write_atomic(path, value.encode() + b"\n", mode=SECRET_MODE, durable=True)
    return value
