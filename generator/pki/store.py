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

import datetime as dt
from pathlib import Path
from typing import Any, Callable

from generator.core.errors import UserError
from generator.core.files import ensure_dir
from generator.core.locks import exclusive_lock
from generator.pki import profiles
from generator.pki.ca import (
    IMPORT_HINT,
    CaPassphrase,
    import_problem,
    load_import_key,
    parse_import_certs,
    refuse_leftovers,
    write_ca_files,
    write_ca_key,
)
from generator.pki.enrolment import DeviceEnrolment
from generator.pki.issuing import log, utcnow
from generator.pki.layout import PRIVATE_DIR_MODE, PUBLIC_DIR_MODE, PkiLayout
from generator.pki.x509_facts import fingerprint


class PkiStore(DeviceEnrolment):
    """A project's PKI directory. Create with `PkiStore.open`; see the module docstring. Its parts: issuing and
    custody (generator.pki.issuing), revocation and renewal (generator.pki.lifecycle), device-made keys
    (generator.pki.enrolment)."""


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
        write_ca_files(layout, project=project, root=root, issuing=profiles.CertificateAuthority(issuing_cert, key),
                       chain=between, ca=ca,
                       key_types=(profiles.key_type_of(root.public_key()),  # type: ignore[arg-type]
                                  profiles.key_type_of(key)), now=clock())
    log.info(f"imported {issuing_cert.subject.rfc4514_string()} to issue from; devices will trust "
             f"{root.subject.rfc4514_string()}")
    return PkiStore.open(layout.root, project=project, passphrase=passphrase, create=False, clock=clock)
