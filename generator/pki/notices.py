"""What the PKI tells the user while it works (the CLI prints it to stderr as `gen: ...`): a certificate re-issued
with the same key, a root CA key that is not where it belongs. Never a secret."""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography import x509

from generator.pki import profiles
from generator.pki.layout import PkiLayout

log = logging.getLogger("generator.pki.store")


def say_reissued(layout: PkiLayout, role: str, what: str, names: tuple[str, ...], cert: x509.Certificate | None,
                  serial: int, cert_path: Path) -> None:
    """A certificate re-issued with the same key is said, with what to do about it."""
    if cert is not None and cert.serial_number == serial and role == "broker":
        had = ", ".join(dict.fromkeys(str(name.value) for name in profiles.broker_names_of(cert)[1])) or "none"
        log.warning(f"re-issued the broker certificate {layout.rel(cert_path)} (same key) for the names "
                    f"{', '.join(names)} (it had {had}): install it on the broker (gen broker apply SPEC, "
                    "or copy OUT/broker/ where it runs)")
    else:
        log.warning(f"re-issued the certificate of {what} {layout.rel(cert_path)} (same key): its file was "
                    "missing or not the one the index records")


_NOTICED_MISSING_ROOT_KEYS: set[Path] = set()


def notice_missing_root_key(layout: PkiLayout, *, imported: bool) -> None:
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
