"""Issuing many fresh device or client identities at once: big batches are split over worker processes (fork),
each writing its keys and certs; the store records them in the index."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from generator.core.files import write_atomic
from generator.pki import profiles
from generator.pki.layout import PUBLIC_MODE, SECRET_MODE, PkiLayout
from generator.pki.x509_facts import pem_of, public_key_sha256

NAMES_PER_WORKER_MIN = 500      # EC keys: below this, forking costs more than it saves
RSA_NAMES_PER_WORKER_MIN = 2    # an RSA-2048 key takes tens of ms to make: two already pay for a worker


def names_per_worker(key_type: str) -> int:
    """The fewest names worth a worker process of their own, for keys of this type."""
    return RSA_NAMES_PER_WORKER_MIN if key_type.startswith("rsa") else NAMES_PER_WORKER_MIN


@dataclass(frozen=True)
class IssueJob:
    """Issues fresh device/client identities (key + cert files); runs in a worker process for big batches."""

    root: str
    issuer_cert_pem: bytes
    issuer_key_pem: bytes = field(repr=False)
    project: str
    role: str
    key_type: str
    validity_days: int
    now: dt.datetime             # the issue time (the store's clock)

    def run(self, names: list[str], issuer: profiles.CertificateAuthority | None = None,
            ) -> list[tuple[str, int, str, dt.datetime, dt.datetime, str, bytes, bytes]]:
        if issuer is None:
            issuer = profiles.CertificateAuthority(x509.load_pem_x509_certificate(self.issuer_cert_pem),
                                                   profiles.load_private_key_pem(self.issuer_key_pem, "issuing CA key"))
        issue = profiles.issue_device_cert if self.role == "device" else profiles.issue_client_cert
        layout, now, results = PkiLayout(Path(self.root)), self.now, []
        for name in names:
            key = profiles.generate_key(self.key_type)
            key_pem = profiles.private_key_pem(key)
            cert = issue(key.public_key(), name, issuer=issuer, validity_days=self.validity_days, now=now,
                         project=self.project)
            cert_pem = pem_of(cert)
            key_file, cert_file = layout.leaf_files(self.role, name)
            write_atomic(key_file, key_pem, mode=SECRET_MODE, fresh=True)
            write_atomic(cert_file, cert_pem, mode=PUBLIC_MODE, fresh=True)
            results.append((name, cert.serial_number, profiles.leaf_subject_text(name, self.project),
                            cert.not_valid_before_utc, cert.not_valid_after_utc, public_key_sha256(key), key_pem,
                            cert_pem))
        return results
