"""Revocation and renewal: every unexpired cert of an identity or of a leaked key revoked and the CRL re-signed at
once; a renewal supersedes the old cert (it is not revoked); the CRL re-signed when it is due, damaged or out of
date with the index."""

from __future__ import annotations

from dataclasses import replace

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from generator.core.errors import UserError
from generator.core.files import write_atomic
from generator.pki import profiles
from generator.pki.ca import CRL_VALIDITY_DAYS, crl_due
from generator.pki.index import LEAF_ROLES, IndexEntry
from generator.pki.issuing import Identity, IssuingStore
from generator.pki.layout import PUBLIC_MODE, parse_key, read_cert_or_none, read_or_none, read_required
from generator.pki.x509_facts import key_matches, public_key_sha256


class CertificateLifecycle(IssuingStore):
    """An IssuingStore that also revokes, renews and keeps the CRL current."""

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

    def revoke_key(self, key: profiles.PrivateKey | profiles.PublicKey,
                   reason: str = "unspecified") -> list[IndexEntry]:
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
                unknown = sum(1 for entry in self._index.entries
                              if entry.key_sha256 is None and entry.role in LEAF_ROLES
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
                key = profiles.generate_key(key_type or old.key_type)
                key_pem = profiles.private_key_pem(key)
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

    def _revocations(self) -> list[profiles.Revocation]:
        return [profiles.Revocation(e.serial, e.revoked_at or self.clock(), profiles.REVOCATION_REASONS.get(
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
        due = crl_due(crl)
        if due is None or crl.next_update_utc is None:
            return "it has no next update"
        if self.clock() >= due:
            return f"it is due: Mosquitto refuses every client once it passes {crl.next_update_utc:%Y-%m-%d}"
        if {r.serial_number for r in crl} != {r.serial for r in self._revocations()}:
            return "it differs from the index"
        return None

    def _write_crl(self, purpose: str) -> bytes:
        number = int(self._index.header.get("crl_number", 0)) + 1
        crl = profiles.build_crl(self._revocations(), issuer=self._signer(purpose), crl_number=number, now=self.clock(),
                                 validity_days=CRL_VALIDITY_DAYS)
        data = crl.public_bytes(serialization.Encoding.PEM)
        write_atomic(self.layout.crl, data, mode=PUBLIC_MODE, durable=True)
        self._index.header["crl_number"] = number
        self._dirty = True
        return data


def _check_reason(reason: str) -> None:
    if reason not in profiles.REVOCATION_REASONS:
        raise UserError(f"unknown revocation reason {reason!r}",
                        hint=f"use one of: {', '.join(profiles.REVOCATION_REASONS)}")
