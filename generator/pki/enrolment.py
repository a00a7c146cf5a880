"""Certificates for keys a device makes itself (`pki.key_origin: device`): the state machine of each such device,
kept in the index. A cert issued from the device's CSR is "pending" until the device confirms it connects with it
(it becomes the live identity, older ones are revoked as superseded) or reports it failed (revoked); a rotation
request stands until a new cert is confirmed; a device whose stored identity was erased may be let in with its
bootstrap password once more."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Callable

from generator.core.errors import UserError
from generator.core.files import write_atomic
from generator.pki import profiles
from generator.pki.index import DeviceStanding, IndexEntry, device_standing, entry_for, iso
from generator.pki.kept_secrets import kept_secret
from generator.pki.layout import PUBLIC_MODE, read_cert_or_none
from generator.pki.lifecycle import CertificateLifecycle
from generator.pki.x509_facts import pem_of


class DeviceEnrolment(CertificateLifecycle):
    """A CertificateLifecycle that also certifies device-made keys (`gen provision serve`)."""

    def bootstrap_secret(self, device_id: str) -> str:
        """The first-boot password of a device that makes its own key: generated once, kept 0600, reused. The
        broker accepts it (as user <id>@bootstrap, on the bootstrap listener) only while the device has no identity."""
        profiles.check_identity_name(device_id, "device id")
        return kept_secret(self.layout.bootstrap_secret_path(device_id))

    def standing(self, device_id: str) -> DeviceStanding:
        """What the index says about a device that makes its own key: its live cert, a pending one, rotation."""
        self._take_up_index()
        return device_standing(self._index, device_id, self.clock())

    def certified_key(self, key_sha256: str) -> list[IndexEntry]:
        """Every certificate this PKI ever issued for the public key with this digest, whatever its status."""
        self._take_up_index()
        return [entry for entry in self._index.entries if entry.key_sha256 == key_sha256]

    def issue_from_public_key(self, device_id: str, public_key: profiles.PublicKey, *, validity_days: int,
                              request: str, via: str, renew_at: Callable[[dt.datetime], dt.datetime]
                              ) -> tuple[IndexEntry, bytes]:
        """A device cert for a key the device made (its CSR, checked by the caller): written to devices/<id>.pem,
        recorded in the index as "pending" until the device confirms it connects. A pending cert of another key
        is revoked first (the device abandoned it). `renew_at(not_after)` says when the device should renew.
        No key file is written: the key never leaves the device. Returns the entry and the chain (leaf + issuing
        CA + intermediates) the device presents."""
        profiles.check_identity_name(device_id, "device id")
        with self.batch():
            standing = device_standing(self._index, device_id, self.clock())
            if standing.pending is not None:
                self._revoke_positions([self._position(standing.pending)], "superseded",
                                       f"re-sign the CRL to revoke {device_id}'s abandoned pending certificate")
            issuer = self._signer(f"issue a certificate for device {device_id} from its CSR")
            cert = profiles.issue_device_cert(public_key, device_id, issuer=issuer, validity_days=validity_days,
                                              now=self.clock(), project=self.project)
            cert_pem = pem_of(cert)
            self._make_dirs_for("device")
            write_atomic(self.layout.cert_path("device", device_id), cert_pem, mode=PUBLIC_MODE, fresh=True)
            entry = replace(entry_for(cert, "device", device_id, profiles.key_type_of(public_key)), status="pending",
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

    def allow_reissues(self, device_id: str) -> int:
        """`gen provision allow SPEC --device ID` for a device that got certificates it never confirmed: the count
        starts again from now. Returns how many were unconfirmed."""
        with self.batch():
            unconfirmed = device_standing(self._index, device_id, self.clock()).unconfirmed_issues
            self._index.header.setdefault("reissues_allowed_from", {})[device_id] = len(self._index.entries)
            self._dirty = True
            return unconfirmed

    def reopen_bootstrap(self, device_id: str) -> None:
        """`gen provision allow SPEC --device ID`: a device whose stored identity was erased may log in with its
        bootstrap password once more. Only when it has no live identity (revoke the old one first)."""
        with self.batch():
            standing = device_standing(self._index, device_id, self.clock())
            if standing.live is not None or standing.pending is not None:
                which = standing.live or standing.pending
                assert which is not None
                raise UserError(f"device {device_id!r} still has a valid certificate (serial {which.serial:X}); "
                                "whoever holds it would keep working",
                                hint=f"revoke it first: gen pki revoke SPEC {device_id}")
            reopened = self._index.header.setdefault("bootstrap_reopened", [])
            if device_id not in reopened:
                reopened.append(device_id)
                self._dirty = True
