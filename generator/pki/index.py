"""index.json: the project a PKI belongs to, both CA fingerprints, and every certificate ever issued (serial,
subject, role, id, dates, status, key type and key digest); no secret."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from cryptography import x509

from generator.core.errors import UserError
from generator.pki.layout import PkiLayout
from generator.pki.x509_facts import public_key_sha256

INDEX_VERSION = 1
ROLES = ("root-ca", "issuing-ca", "broker", "device", "client")
LEAF_ROLES = ("broker", "device", "client")


@dataclass(frozen=True)
class IndexEntry:
    serial: int
    subject: str                # RFC 4514, e.g. "O=demo,CN=esp32-0001"
    role: str                   # one of ROLES
    id: str                     # "root-ca", "issuing-ca", "broker", device id or client name
    not_after: dt.datetime
    status: str                 # "valid" | "revoked" | "superseded" | "pending" (from a CSR, not yet confirmed)
    key_type: str
    revoked_at: dt.datetime | None = None
    reason: str | None = None
    names: tuple[str, ...] = () # broker only: the names it was issued for
    key_sha256: str | None = None   # SHA-256 of the certified public key (SubjectPublicKeyInfo, DER); older
                                    # entries may lack it
    issued_at: dt.datetime | None = None  # the cert's notBefore
    # Issued from a device's CSR (generator.provision): the request it answered, the channel it came on
    # ("bootstrap" | "operational"), when the device should renew, and when it confirmed the cert connects.
    # Status "pending" until then: the device has not switched to it yet.
    request: str | None = None
    via: str | None = None
    renew_at: dt.datetime | None = None
    confirmed_at: dt.datetime | None = None

    def days_left(self, now: dt.datetime) -> int:
        return (self.not_after - now).days

    def expired(self, now: dt.datetime) -> bool:
        return self.not_after <= now

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "serial": f"{self.serial:X}", "subject": self.subject, "role": self.role, "id": self.id,
            "not_after": iso(self.not_after), "status": self.status, "key_type": self.key_type,
        }
        if self.revoked_at is not None:
            data["revoked_at"] = iso(self.revoked_at)
            data["reason"] = self.reason or "unspecified"
        if self.names:
            data["names"] = list(self.names)
        if self.key_sha256:
            data["key_sha256"] = self.key_sha256
        if self.issued_at is not None:
            data["issued_at"] = iso(self.issued_at)
        for key in ("request", "via"):
            if getattr(self, key):
                data[key] = getattr(self, key)
        for key in ("renew_at", "confirmed_at"):
            if getattr(self, key) is not None:
                data[key] = iso(getattr(self, key))
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "IndexEntry":
        return cls(
            serial=int(data["serial"], 16), subject=data["subject"], role=data["role"], id=data["id"],
            not_after=parse_iso(data["not_after"]), status=data["status"], key_type=data["key_type"],
            revoked_at=parse_iso(data["revoked_at"]) if data.get("revoked_at") else None,
            reason=data.get("reason"), names=tuple(data.get("names", ())), key_sha256=data.get("key_sha256"),
            issued_at=parse_iso(data["issued_at"]) if data.get("issued_at") else None,
            request=data.get("request"), via=data.get("via"),
            renew_at=parse_iso(data["renew_at"]) if data.get("renew_at") else None,
            confirmed_at=parse_iso(data["confirmed_at"]) if data.get("confirmed_at") else None,
        )


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_ISO_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")


def parse_iso(text: str) -> dt.datetime:
    """What `iso` wrote (strictly that form; fromisoformat is many times faster than strptime, for 10,000 entries)."""
    if not isinstance(text, str) or not _ISO_UTC.match(text):
        raise ValueError(f"time data {text!r} does not match format '%Y-%m-%dT%H:%M:%SZ'")
    return dt.datetime.fromisoformat(text[:-1]).replace(tzinfo=dt.timezone.utc)


def entry_for(cert: x509.Certificate, role: str, name: str, key_type: str,
               names: tuple[str, ...] = ()) -> IndexEntry:
    return IndexEntry(serial=cert.serial_number, subject=cert.subject.rfc4514_string(), role=role, id=name,
                      not_after=cert.not_valid_after_utc, status="valid", key_type=key_type, names=names,
                      key_sha256=public_key_sha256(cert.public_key()), issued_at=cert.not_valid_before_utc)


def index_bytes(document: Mapping[str, Any]) -> bytes:
    """Pretty enough to read and diff (one cert per line), and fast for 10,000 certs (the C encoder)."""
    header = {k: v for k, v in document.items() if k != "certs"}
    lines = [json.dumps(entry, ensure_ascii=False) for entry in document.get("certs", [])]
    head = json.dumps(header, indent=1, ensure_ascii=False)[:-2]
    return (head + ',\n "certs": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n").encode()


def read_index(layout: PkiLayout) -> tuple[dict[str, Any], list[IndexEntry], bytes]:
    """The index's header, its entries, and the digest of exactly the bytes it was parsed from (see _stat_index)."""
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
        entries = [IndexEntry.from_json(e) for e in document.get("certs", [])]
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{layout.rel(layout.index)} has a malformed entry ({error})", hint=hint)
    return {k: v for k, v in document.items() if k != "certs"}, entries, hashlib.sha256(raw).digest()


@dataclass
class IndexState:
    """index.json as a store holds it between reads: the header (project, CAs, CRL number), every entry, where each
    identity's current entry is, and the digest of exactly the bytes it was parsed from (never re-read: a race)."""

    header: dict[str, Any]
    entries: list[IndexEntry]
    stamp: bytes | None
    current: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.current:
            self.current = {(e.role, e.id): position for position, e in enumerate(self.entries)
                            if e.status != "superseded"}

    @classmethod
    def read(cls, layout: PkiLayout) -> "IndexState":
        header, entries, stamp = read_index(layout)
        return cls(header=header, entries=entries, stamp=stamp)

    def document(self) -> dict[str, Any]:
        return {**self.header, "certs": [entry.to_json() for entry in self.entries]}


def index_digest(layout: PkiLayout) -> bytes | None:
    """A digest of index.json's content. Not (inode, size, mtime): an atomic rename frees the old inode for the next
    file, two indexes often have the same size, and mtime has only jiffy resolution, so a stat stamp can match an
    index another process rewrote, and a store would then write over its entry."""
    try:
        return hashlib.sha256(layout.index.read_bytes()).digest()
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class DeviceStanding:
    """What the index says about a device that makes its own key (generator.provision reads it to decide)."""

    device_id: str
    live: IndexEntry | None          # the cert the device uses: its latest confirmed, unrevoked, unexpired one
    pending: IndexEntry | None       # issued from its CSR, not confirmed yet (unrevoked, unexpired)
    ever_confirmed: bool             # it once had an identity: bootstrap stays closed unless explicitly reopened
    rotation_requested: dt.datetime | None   # `gen pki rotate SPEC --device ID`, until the new cert is confirmed
    bootstrap_reopened: bool         # `gen provision allow SPEC --device ID`
    unconfirmed_issues: int = 0      # certificates issued from its CSRs since its last confirmed one (or since an
                                     # operator's `gen provision allow`) that it never confirmed

    @property
    def bootstrap_open(self) -> bool:
        """Whether the device may log in with its bootstrap password (it has had no identity yet, or the operator
        reopened it after the old one was revoked)."""
        return self.live is None and (not self.ever_confirmed or self.bootstrap_reopened)


def device_standing(state: IndexState, device_id: str, now: dt.datetime) -> DeviceStanding:
    live = pending = None
    ever = False
    unconfirmed = 0
    allowed_from = state.header.get("reissues_allowed_from", {}).get(device_id, 0)
    for position, entry in enumerate(state.entries):
        if entry.role != "device" or entry.id != device_id:
            continue
        if entry.confirmed_at is not None:
            unconfirmed = 0
        elif entry.request is not None and position >= allowed_from:
            unconfirmed += 1
        if entry.confirmed_at is not None:
            ever = True
        if entry.status == "valid" and not entry.expired(now):
            live = entry                # the latest confirmed wins (entries are in issue order)
        elif entry.status == "pending" and not entry.expired(now):
            pending = entry
    rotations = state.header.get("rotations", {})
    requested = parse_iso(rotations[device_id]) if device_id in rotations else None
    return DeviceStanding(device_id, live, pending, ever, requested,
                          device_id in state.header.get("bootstrap_reopened", []), unconfirmed)
